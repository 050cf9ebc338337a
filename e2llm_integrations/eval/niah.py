"""Needle in a haystack: a fact planted at a depth of an essay haystack of a given length.

The haystack (Paul Graham essays, ``load_haystack``) is chunked and encoded once, up to
the longest length. A context of ``L`` decoder tokens is its leading chunks; the needle
sentence goes into the one chunk at the requested depth, at the sentence boundary nearest
to it, and only that chunk is re-encoded. Every system reads exactly the same text.

Example:
    >>> hay = Haystack.build(pipe, load_haystack("data"), max_tokens=8000)  # doctest: +SKIP
    >>> ctx = plant(pipe, hay, hay.chunks_for(4000, needle), needle, depth=0.5)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import logging
import random
import re
from dataclasses import dataclass
from typing import Any

from ..core.chunking import Chunk
from ..core.corpus import EncodedCorpus
from ..core.pipeline import E2LLMPipeline
from .systems import SYSTEMS, BaselineCache, EvalContext, SystemConfig, check_systems, run_system

logger = logging.getLogger(__name__)

CITIES = (
    "Chicago", "Lisbon", "Nairobi", "Osaka", "Montreal", "Krakow", "Lima", "Hanoi",
    "Oslo", "Perth", "Dakar", "Seville", "Tbilisi", "Quito", "Bergen", "Cork",
)  # fmt: skip
_BOUNDARY = re.compile(r"[.!?][\"')\]]*\s+|\n+")
CHARS_PER_TOKEN = 6
"""Generous characters per decoder token when cutting the haystack before chunking."""


@dataclass(frozen=True)
class Needle:
    """The classic needle: a magic number for a city, asked for in the same words."""

    city: str
    number: str

    @property
    def sentence(self) -> str:
        return f"The special magic number for {self.city} is {self.number}."

    @property
    def question(self) -> str:
        return f"What is the special magic number for {self.city}?"

    def found(self, answer: str) -> float:
        return needle_found(answer, self.number)


@dataclass(frozen=True)
class ParaphraseNeedle:
    """A fact whose question shares few words with it, answered by a word or a name.

    Retrieval cannot match such a question word for word, as with real questions.
    """

    sentence: str
    question: str
    answer: str

    def found(self, answer: str) -> float:
        """1.0 when the answer word/name appears in ``answer`` as whole words (any case)."""
        pattern = rf"(?<!\w){re.escape(self.answer.lower())}(?!\w)"
        return float(re.search(pattern, answer.lower()) is not None)


PARAPHRASES = (
    ParaphraseNeedle("The bakery on the corner was founded by a retired pilot named Greta Halvorsen.", "Which former aviator opened the local bread shop?", "Halvorsen"),
    ParaphraseNeedle("Our team's secret password for the archive room has always been marmalade.", "What word unlocks the records storage?", "marmalade"),
    ParaphraseNeedle("The tallest tree in the valley is a sequoia that locals call Old Bartholomew.", "What nickname do residents give the biggest plant in the dale?", "Bartholomew"),
    ParaphraseNeedle("My grandmother's favourite painter was a Dutchman called Pieter Vandermolen.", "Which artist did the narrator's granny admire most?", "Vandermolen"),
    ParaphraseNeedle("The committee finally chose turquoise as the colour for the new city buses.", "What shade will the town's public coaches be painted?", "turquoise"),
    ParaphraseNeedle("Every winter the festival crowns a mascot, and this year it was a badger named Clementine.", "Which animal character won the seasonal celebration's title?", "Clementine"),
    ParaphraseNeedle("The expedition's ship, the Northern Wren, was built in a small Norwegian shipyard.", "What was the name of the vessel the explorers sailed on?", "Northern Wren"),
    ParaphraseNeedle("Dr. Ingrid Osterman discovered that the rare orchid only blooms after a thunderstorm.", "Which scientist found out when the unusual flower opens?", "Osterman"),
    ParaphraseNeedle("The recipe's secret ingredient, according to the chef, is a pinch of cardamom.", "What spice does the cook say makes the dish special?", "cardamom"),
    ParaphraseNeedle("In the old story, the dragon guarding the mountain pass was called Vesperine.", "What was the name of the beast protecting the route through the peaks?", "Vesperine"),
    ParaphraseNeedle("The startup's first office was a converted garage in the town of Millbrook.", "Where did the young company begin working?", "Millbrook"),
    ParaphraseNeedle("After the match, the captain gave her winning racket to a boy named Tobias.", "Who received the tennis champion's equipment?", "Tobias"),
    ParaphraseNeedle("The museum's most valuable coin was minted under the emperor Aurelian.", "During which ruler's reign was the gallery's priciest piece of money made?", "Aurelian"),
    ParaphraseNeedle("The band rehearsed every Tuesday in the basement of a laundromat on Fern Street.", "On which road did the musicians practise?", "Fern Street"),
    ParaphraseNeedle("The village's annual race is won by whoever first reaches the windmill at Hollow Ridge.", "Where is the finish line of the yearly contest in the hamlet?", "Hollow Ridge"),
    ParaphraseNeedle("Professor Lindqvist keeps a tortoise called Socrates in her office.", "What is the name of the reptile living in the academic's workroom?", "Socrates"),
)  # fmt: skip
"""Hand-written for evaluation only (never trained on): facts and paraphrased questions."""

NIAH_VARIANTS = ("magic", "paraphrase")
AnyNeedle = Needle | ParaphraseNeedle


def make_needles(count: int, seed: int = 0, variant: str = "magic") -> list[AnyNeedle]:
    """``count`` distinct needles of ``variant`` (deterministic in ``seed``).

    ``magic``: random cities with random 7-digit numbers; ``paraphrase``: a sample of
    :data:`PARAPHRASES`.
    """
    pool = len(CITIES) if variant == "magic" else len(PARAPHRASES)
    if variant not in NIAH_VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(NIAH_VARIANTS)}, got {variant!r}.")
    if not 1 <= count <= pool:
        raise ValueError(f"needles must be in [1, {pool}], got {count}.")
    rng = random.Random(seed)
    if variant == "paraphrase":
        return list(rng.sample(PARAPHRASES, count))
    cities = rng.sample(CITIES, count)
    return [Needle(city, str(rng.randint(1_000_000, 9_999_999))) for city in cities]


def needle_found(answer: str, number: str) -> float:
    """1.0 when ``number`` appears in ``answer`` as a whole number (commas/spaces ignored)."""
    digits = re.sub(r"(?<=\d)[,\s](?=\d)", "", answer)
    return float(re.search(rf"(?<!\d){re.escape(number)}(?!\d)", digits) is not None)


@dataclass
class Haystack:
    """The haystack text, its leading chunks and their features, up to a maximum length.

    Attributes:
        text: The haystack text the chunks index into (offsets refer to it).
        corpus: Its leading chunks, encoded, covering at least ``max_tokens``.
    """

    text: str
    corpus: EncodedCorpus

    @classmethod
    def build(cls, pipe: E2LLMPipeline, haystack: str, max_tokens: int) -> Haystack:
        """Chunk and encode enough of ``haystack`` (repeated if short) for ``max_tokens``."""
        if not haystack.strip():
            raise ValueError("The haystack is empty; run `e2llm data prepare` first.")
        text = haystack
        while len(text) < max_tokens * CHARS_PER_TOKEN:
            text += "\n\n" + haystack
        text = text[: max_tokens * CHARS_PER_TOKEN + 2000]
        chunks = pipe.chunk([text])
        total, keep = 0, 0
        for count in pipe.tokenizer.count([c.text for c in chunks]):
            total += count
            keep += 1
            if total >= max_tokens:
                break
        logger.info("Encoding %d haystack chunks (%d decoder tokens)", keep, total)
        return cls(text, pipe.encode_chunks(chunks[:keep]))

    def chunks_for(self, length: int, reserve: int = 0) -> int:
        """Leading chunks whose decoder tokens, plus ``reserve``, stay within ``length``."""
        total, n = 0, 0
        for count in self.corpus.context_tokens:
            if total + count + reserve > length:
                break
            total, n = total + count, n + 1
        if n == 0:
            raise ValueError(f"Length {length} is shorter than one chunk; use longer lengths.")
        if n == len(self.corpus) and total + reserve < length * 0.95:
            logger.warning("The haystack covers only %d of %d tokens.", total + reserve, length)
        return n


@dataclass
class Planted:
    """A context with a needle in it, and where the needle ended up."""

    context: EvalContext
    chunk_index: int
    depth_actual: float


def _insertion(text: str, before: int, count: int, target: float) -> int:
    """Character offset in a chunk, at a sentence boundary, whose token position is closest
    to ``target`` (``before`` tokens precede the chunk, which has ``count`` tokens)."""
    offsets = [0, *(m.end() for m in _BOUNDARY.finditer(text)), len(text)]
    return min(offsets, key=lambda o: abs(before + count * o / max(1, len(text)) - target))


def _insert(text: str, offset: int, sentence: str) -> str:
    if offset == 0:
        return f"{sentence} {text}"
    if offset >= len(text):
        return f"{text} {sentence}"
    return f"{text[:offset]}{sentence} {text[offset:]}"


def _locate(counts: list[int], depth: float) -> tuple[int, int, float]:
    """(chunk index, tokens before it, target token position) for ``depth``."""
    target, before, i = depth * sum(counts), 0, 0
    while i < len(counts) - 1 and before + counts[i] < target:
        before, i = before + counts[i], i + 1
    return i, before, target


def _swap_chunk(
    pipe: E2LLMPipeline, corpus: EncodedCorpus, n_chunks: int, i: int, new: Chunk
) -> EncodedCorpus:
    """The first ``n_chunks`` of ``corpus`` with chunk ``i`` replaced (and re-encoded)."""
    parts = [corpus.select(range(i)), pipe.encode_chunks([new], progress=False)]
    if i + 1 < n_chunks:
        parts.append(corpus.select(range(i + 1, n_chunks)))
    joined = EncodedCorpus.concat([p for p in parts if len(p)])
    grow = new.end - corpus.chunks[i].end
    chunks = [*joined.chunks[: i + 1], *(_shift(c, grow) for c in joined.chunks[i + 1 :])]
    return EncodedCorpus(
        chunks, joined.features, joined.mask, joined.context_tokens, joined.fingerprint
    )


def plant(
    pipe: E2LLMPipeline, hay: Haystack, n_chunks: int, needle: AnyNeedle, depth: float
) -> Planted:
    """The first ``n_chunks`` haystack chunks with ``needle`` at ``depth`` (0 = start, 1 = end).

    Returns:
        The planted context (text and corpus agree), the chunk holding the needle, and
        the needle's actual depth as a fraction of the context's decoder tokens.
    """
    if not 0.0 <= depth <= 1.0:
        raise ValueError(f"depth must be in [0, 1], got {depth}.")
    if not 1 <= n_chunks <= len(hay.corpus):
        raise ValueError(f"n_chunks must be in [1, {len(hay.corpus)}], got {n_chunks}.")
    counts = hay.corpus.context_tokens[:n_chunks]
    i, before, target = _locate(counts, depth)
    old = hay.corpus.chunks[i]
    offset = _insertion(old.text, before, counts[i], target)
    new_text = _insert(old.text, offset, needle.sentence)
    n_enc = pipe.encoder_tokenizer.count([new_text])[0]
    new = dataclasses.replace(old, text=new_text, end=old.start + len(new_text), n_tokens=n_enc)
    corpus = _swap_chunk(pipe, hay.corpus, n_chunks, i, new)
    first, last = hay.corpus.chunks[0].start, hay.corpus.chunks[n_chunks - 1].end
    text = hay.text[first : old.start] + new_text + hay.text[old.end : last]
    head = before + pipe.tokenizer.count([old.text[:offset]])[0]
    return Planted(EvalContext(text, corpus), i, head / max(1, sum(counts)))


def _shift(chunk: Chunk, by: int) -> Chunk:
    return dataclasses.replace(chunk, start=chunk.start + by, end=chunk.end + by)


@dataclass(frozen=True)
class NiahConfig:
    """The needle-in-a-haystack grid.

    Attributes:
        lengths: Context lengths in decoder tokens (haystack + needle).
        depths: Needle depths as fractions of the context (0 = first, 1 = last).
        needles: Needles per cell, each a separate trial.
        variant: ``magic`` (a number, asked for in the needle's own words) or
            ``paraphrase`` (a word or name, asked for in other words).
        systems: Systems to run (see :data:`~e2llm_integrations.eval.systems.SYSTEMS`).
        full_max_length: Longest length the ``full`` baseline runs at (default: the 8k
            window of SmolLM2). Beyond it the text is cut in the middle to that window, so
            every call costs a full window and middle needles are lost by construction.
        seed: Seed of the needles.
        system: Options of the systems (answers need only a few tokens).
    """

    lengths: tuple[int, ...] = (1000, 2000, 4000, 8000, 16000, 32000, 64000, 128000)
    depths: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    needles: int = 2
    variant: str = "magic"
    systems: tuple[str, ...] = SYSTEMS
    full_max_length: int | None = 8000
    seed: int = 0
    system: SystemConfig = SystemConfig(max_new_tokens=24)

    def __post_init__(self) -> None:
        if not self.lengths or not self.depths:
            raise ValueError("NIAH needs at least one length and one depth.")
        if self.variant not in NIAH_VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(NIAH_VARIANTS)}.")
        if any(not 0.0 <= d <= 1.0 for d in self.depths):
            raise ValueError(f"depths are fractions in [0, 1], got {self.depths}.")
        check_systems(self.systems)

    def runs(self, system: str, length: int) -> bool:
        """Whether ``system`` runs at ``length`` (``full`` stops at ``full_max_length``)."""
        limit = self.full_max_length
        return not (system == "full" and limit is not None and length > limit)


QUICK_NIAH = NiahConfig(lengths=(1000, 2000), depths=(0.0, 0.5, 1.0), needles=1)
"""A tiny grid for smoke tests (about a minute on 2 CPU cores)."""


def run_niah(
    pipe: E2LLMPipeline, haystack: str, cfg: NiahConfig, cache: BaselineCache | None = None
) -> list[dict[str, Any]]:
    """Run every system over the grid; one record per (system, length, depth, needle).

    ``cache`` reuses the base-decoder baselines' answers (see :class:`BaselineCache`).
    """
    hay = Haystack.build(pipe, haystack, max(cfg.lengths))
    needles = make_needles(cfg.needles, cfg.seed, cfg.variant)
    cells: list[dict[str, Any]] = []
    for length in sorted(cfg.lengths):
        systems = [s for s in cfg.systems if cfg.runs(s, length)]
        for depth in cfg.depths:
            for k, needle in enumerate(needles):
                reserve = pipe.tokenizer.count([f" {needle.sentence} "], special_tokens=True)[0]
                planted = plant(pipe, hay, hay.chunks_for(length, reserve), needle, depth)
                for name in systems:
                    ans = run_system(
                        name, pipe, planted.context, needle.question, cfg.system, cache
                    )
                    cells.append({
                        "system": name, "length": length, "depth": depth, "needle": k,
                        "depth_actual": round(planted.depth_actual, 4),
                        "context_tokens": planted.context.context_tokens,
                        "score": needle.found(ans.text), **ans.to_dict(),
                    })  # fmt: skip
            logger.info("NIAH %d tokens, depth %.0f%%: %s", length, depth * 100,
                        _progress(cells, length, depth))  # fmt: skip
    return cells


def _progress(cells: list[dict[str, Any]], length: int, depth: float) -> str:
    here = [c for c in cells if c["length"] == length and c["depth"] == depth]
    by: dict[str, list[float]] = {}
    for c in here:
        by.setdefault(c["system"], []).append(c["score"])
    return ", ".join(f"{s}={sum(v) / len(v):.2f}" for s, v in by.items())


def summarize_niah(cells: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean score per system: ``{"grid": {system: {length: {depth: mean}}}, "by_length": ...}``."""
    grid: dict[str, dict[int, dict[float, list[float]]]] = {}
    for c in cells:
        grid.setdefault(c["system"], {}).setdefault(c["length"], {}).setdefault(
            c["depth"], []
        ).append(c["score"])
    return {
        "grid": {
            s: {str(n): {str(d): _mean(v) for d, v in by_d.items()} for n, by_d in by_n.items()}
            for s, by_n in grid.items()
        },
        "by_length": {
            s: {str(n): _mean([x for v in by_d.values() for x in v]) for n, by_d in by_n.items()}
            for s, by_n in grid.items()
        },
        "overall": {
            s: _mean([x for by_d in by_n.values() for v in by_d.values() for x in v])
            for s, by_n in grid.items()
        },
    }


def _mean(values: list[float]) -> float:
    return round(sum(values) / len(values), 4)
