"""The systems every evaluation compares, run over the same text.

* ``e2llm``: the product as shipped: soft tokens for every chunk plus the
  :data:`~e2llm_integrations.core.expansion.DEFAULT_EXPAND_TOP_K` most relevant chunks as
  raw text (selective expansion), through ``E2LLMPipeline.ask`` itself.
* ``e2llm@K``: the same with ``expand_top_k=K``; ``e2llm@0`` is soft tokens only.
* ``full``: the plain base decoder (LoRA off, no soft tokens) with the whole text in its
  prompt; over its window the text is cut in the middle, as LongBench does.
* ``rag@k``: the top-k chunks by MiniLM cosine similarity (FAISS) as text into the plain
  base decoder. ``rag`` and ``hybrid`` (= ``e2llm@k``) take k from ``SystemConfig.top_k``.

Example:
    >>> ctx = EvalContext.from_text(pipe, "A long report ...")  # doctest: +SKIP
    >>> run_system("full", pipe, ctx, "Who wrote it?", SystemConfig()).text  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..core.corpus import EncodedCorpus
from ..core.generation import GenerationConfig
from ..core.options import PrefilterOptions, check_option
from ..core.pipeline import E2LLMPipeline
from ..retrieval.faiss_index import ChunkPrefilter

logger = logging.getLogger(__name__)

SystemKind = Literal["e2llm", "full", "rag"]
SYSTEMS: tuple[str, ...] = ("e2llm", "e2llm@0", "full", "rag@2", "rag@4", "rag@8")
"""The default comparison: the product, soft tokens only, full context, RAG at three k."""

TEXT_INSTRUCTION = (
    "You are given a long context. Answer the question using the context. "
    "Reply with a short answer only."
)
"""Instruction for the text baselines (the E2LLM prompt's instruction, minus "compressed")."""

TRUNCATION_SAFETY = 8
"""Tokens kept free when cutting: re-tokenizing the joined halves can add a few."""


@dataclass(frozen=True)
class SystemConfig:
    """Options shared by the systems.

    The evaluation protocol fixes its own values (k = 8, 32-token short answers), not the
    library defaults of :mod:`~e2llm_integrations.core.options`; it checks them by the
    core rules.

    Attributes:
        top_k: Chunks retrieved for ``rag`` and shown as excerpts by ``hybrid``.
        max_new_tokens: Upper bound on answer tokens.
        instruction: Instruction of the text baselines' prompt.
    """

    top_k: int = 8
    max_new_tokens: int = 32
    instruction: str = TEXT_INSTRUCTION

    def __post_init__(self) -> None:
        if self.top_k is None:
            raise ValueError("top_k must be a number of chunks >= 1 for the rag systems.")
        check_option(PrefilterOptions, "top_k", self.top_k)
        check_option(GenerationConfig, "max_new_tokens", self.max_new_tokens)


@dataclass
class EvalContext:
    """One context as plain text and as an encoded corpus of the same text.

    Attributes:
        text: The document(s) exactly as the ``full`` baseline reads them.
        corpus: The same text chunked and encoded (``e2llm``, ``rag``, ``hybrid``).
    """

    text: str
    corpus: EncodedCorpus

    @classmethod
    def from_text(cls, pipe: E2LLMPipeline, text: str) -> EvalContext:
        return cls(text, pipe.encode([text]))

    @property
    def context_tokens(self) -> int:
        return self.corpus.total_context_tokens


@dataclass
class Answer:
    """One system's answer and what it cost."""

    system: str
    text: str
    input_positions: int
    truncated: bool
    seconds: float
    expanded: list[int] = field(default_factory=list)
    """Chunk indices E2LLM showed as raw text (its citations)."""
    cached: bool = False
    """Taken from a :class:`BaselineCache` (``seconds`` is then the original run's)."""

    def to_dict(self) -> dict[str, Any]:
        out = {
            "answer": self.text[:300],
            "input_positions": self.input_positions,
            "truncated": self.truncated,
            "seconds": round(self.seconds, 3),
        }
        if self.expanded:
            out["expanded"] = self.expanded
        if self.cached:
            out["cached"] = True
        return out


class BaselineCache:
    """Answers of the base-decoder baselines (``full``, ``rag@k``), reused across runs.

    Those systems run SmolLM2 with its LoRA off on text only, so no E2LLM checkpoint
    changes their answers; evaluating a new checkpoint need not rerun them. An answer is
    keyed by everything it depends on (system, base models, chunking, prompt, options,
    question, context text) and appended to a JSON-lines file, one line per answer, so
    several evaluation processes can share the file.

    Example:
        >>> cache = BaselineCache(Path("data/cache/baseline_answers.jsonl"))  # doctest: +SKIP
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._answers: dict[str, dict[str, Any]] = {}
        self._read = 0  # bytes of the file already read
        self._refresh()

    def _refresh(self) -> None:
        """Read the lines appended since the last read (by this or another process)."""
        if not self.path.is_file():
            return
        with open(self.path, "rb") as fh:
            fh.seek(self._read)
            data = fh.read()
        complete = data[: data.rfind(b"\n") + 1]  # a line still being written waits
        self._read += len(complete)
        for line in complete.decode("utf-8").splitlines():
            try:
                record = json.loads(line)
                self._answers[record["key"]] = record
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # a line cut short by a killed run: answered again

    def __len__(self) -> int:
        return len(self._answers)

    @staticmethod
    def key(
        name: str, pipe: E2LLMPipeline, ctx: EvalContext, question: str, cfg: SystemConfig
    ) -> str:
        parts = [
            parse_system(name, cfg.top_k),
            pipe.config.decoder.name_or_path,
            pipe.fingerprint,
            pipe.max_positions,
            # the decoder's precision: bf16 answers get their own keys, fp32 keeps the old ones
            *(["bf16"] if pipe.precision["decoder"] == "bf16" else []),
            cfg.instruction,
            cfg.max_new_tokens,
            question,
            hashlib.sha256(ctx.text.encode("utf-8", "surrogatepass")).hexdigest(),
        ]
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()

    def get(self, key: str, name: str) -> Answer | None:
        if key not in self._answers:
            self._refresh()  # another evaluation may have answered it meanwhile
        r = self._answers.get(key)
        if r is None:
            return None
        return Answer(name, r["text"], r["positions"], r["truncated"], r["seconds"], cached=True)

    def put(self, key: str, answer: Answer) -> None:
        record = {
            "key": key,
            "text": answer.text,
            "positions": answer.input_positions,
            "truncated": answer.truncated,
            "seconds": round(answer.seconds, 3),
        }
        self._answers[key] = record
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as fh:  # one short O_APPEND write a line
            fh.write(json.dumps(record) + "\n")


def text_messages(instruction: str, context: str, question: str) -> list[dict[str, str]]:
    """The text baselines' chat: one user turn with the context and the question."""
    content = f"{instruction}\n\nContext:\n{context}\n\nQuestion: {question}"
    return [{"role": "user", "content": content}]


def truncate_middle(tokenizer: Any, text: str, max_tokens: int) -> tuple[str, bool]:
    """Keep the first and last ``max_tokens // 2`` tokens of ``text`` (LongBench's rule).

    ``tokenizer`` is a Hugging Face tokenizer or ``pipeline.tokenizer`` (thread-safe).

    Returns:
        The (possibly) shortened text and whether anything was cut.
    """
    if max_tokens < 2:
        raise ValueError(f"max_tokens must be >= 2, got {max_tokens}.")
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) <= max_tokens:
        return text, False
    head = max_tokens // 2
    tail = max_tokens - head
    left = tokenizer.decode(ids[:head], skip_special_tokens=True)
    right = tokenizer.decode(ids[-tail:], skip_special_tokens=True)
    return left + right, True


def text_budget(pipe: E2LLMPipeline, question: str, cfg: SystemConfig) -> int:
    """Context tokens that fit the base decoder's window next to the prompt and answer."""
    overhead = len(pipe.chat_ids(text_messages(cfg.instruction, "", question))) + 1
    return pipe.max_positions - overhead - cfg.max_new_tokens - TRUNCATION_SAFETY


def generate_text(
    pipe: E2LLMPipeline, context: str, question: str, cfg: SystemConfig
) -> tuple[str, int, bool]:
    """The plain base decoder on text: (answer, input positions, truncated)."""
    context, cut = truncate_middle(pipe.tokenizer, context, text_budget(pipe, question, cfg))
    messages = text_messages(cfg.instruction, context, question)
    gen = GenerationConfig(max_new_tokens=cfg.max_new_tokens)
    stream = pipe.stream_text(messages, gen)
    return "".join(piece.text for piece in stream), stream.usage.input_positions, cut


def top_chunks(pipe: E2LLMPipeline, corpus: EncodedCorpus, question: str, top_k: int) -> list[str]:
    """Texts of the ``top_k`` chunks most similar to the question, in document order."""
    kept, _ = ChunkPrefilter(top_k=top_k).filter(pipe, corpus, question)
    return [c.text for c in kept.chunks]


def parse_system(name: str, top_k: int = SystemConfig.top_k) -> tuple[SystemKind, int | None]:
    """``(kind, k)`` of a system name: ``e2llm``, ``e2llm@K``, ``full``, ``rag@k``, ...

    ``k`` is the expansion / retrieval count; ``None`` for ``full`` and for ``e2llm``
    (the pipeline's default expansion). ``rag`` and ``hybrid`` use ``top_k``.
    """
    base, sep, count = name.partition("@")
    if base == "hybrid" and not sep:
        return "e2llm", top_k
    if base in ("e2llm", "rag") and sep and count.isdigit():
        if base == "rag" and int(count) < 1:
            raise ValueError(f"rag needs k >= 1 chunks, got {name!r}.")
        return base, int(count)  # type: ignore[return-value]
    if base in ("e2llm", "full", "rag") and not sep:
        return base, (top_k if base == "rag" else None)  # type: ignore[return-value]
    raise ValueError(
        f"Unknown system {name!r}; use e2llm, e2llm@K (K chunks expanded, 0 = soft tokens "
        f"only), full, rag@k or hybrid; the default set is {', '.join(SYSTEMS)}."
    )


def check_systems(names: Sequence[str]) -> None:
    """Raise ``ValueError`` naming the first unknown system in ``names``."""
    for name in names:
        parse_system(name)


def run_system(
    name: str,
    pipe: E2LLMPipeline,
    ctx: EvalContext,
    question: str,
    cfg: SystemConfig,
    cache: BaselineCache | None = None,
) -> Answer:
    """Answer ``question`` over ``ctx`` with system ``name`` (see :func:`parse_system`).

    With ``cache``, base-decoder baselines (``full``, ``rag@k``) are read from it when
    answered before, and written to it otherwise.
    """
    kind, k = parse_system(name, cfg.top_k)
    if cache is not None and kind != "e2llm":
        key = BaselineCache.key(name, pipe, ctx, question, cfg)
        hit = cache.get(key, name)
        if hit is None:
            hit = run_system(name, pipe, ctx, question, cfg)
            cache.put(key, hit)
        return hit
    start = time.perf_counter()
    gen = GenerationConfig(max_new_tokens=cfg.max_new_tokens)
    truncated, sources = False, []
    if kind == "e2llm":
        result = pipe.ask(ctx.corpus, question, gen, expand_top_k=k)
        text, positions = result.text, result.usage.input_positions
        sources = [s.chunk_index for s in result.sources]
    elif kind == "full":
        text, positions, truncated = generate_text(pipe, ctx.text, question, cfg)
    else:
        assert k is not None
        joined = "\n\n".join(top_chunks(pipe, ctx.corpus, question, k))
        text, positions, truncated = generate_text(pipe, joined, question, cfg)
    return Answer(name, text, positions, truncated, time.perf_counter() - start, sources)
