"""Training examples for the two E2LLM objectives, as a pure function of an index.

* **Reconstruction** ("understanding"): the soft tokens of one or a few consecutive
  chunks, and the instruction to repeat them; the target is their original text.
* **Long-context QA** ("reasoning"): the gold paragraph(s) hidden among distractor
  paragraphs up to a sampled context length, in random order; the target is the answer.

``ExampleFactory.example(i)`` depends only on ``(seed, i)``, so a resumed run sees
exactly the examples an uninterrupted run would have seen.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from ..prompt import RECONSTRUCT_QUESTION
from .features import ParagraphStore


@dataclass
class QAItem:
    """A question with its gold paragraphs and same-source distractors (paragraph ids)."""

    question: str
    answers: list[str]
    gold: list[int]
    related: list[int] = field(default_factory=list)


@dataclass
class ExampleSpec:
    """What one training or evaluation sequence holds (chunk ids into a ParagraphStore)."""

    kind: str
    chunk_ids: list[int]
    question: str
    target: str
    answers: list[str] = field(default_factory=list)
    depth: float | None = None


@dataclass
class Corpus:
    """Paragraph texts plus the QA items and reconstruction paragraphs that use them."""

    paragraphs: list[str] = field(default_factory=list)
    qa: list[QAItem] = field(default_factory=list)
    recon: list[int] = field(default_factory=list)
    _ids: dict[str, int] = field(default_factory=dict, repr=False)

    def pid(self, text: str) -> int:
        text = text.strip()
        if text not in self._ids:
            self._ids[text] = len(self.paragraphs)
            self.paragraphs.append(text)
        return self._ids[text]


def build_corpus(
    squad: list[dict[str, Any]],
    hotpot: list[dict[str, Any]],
    recon: list[dict[str, Any]],
) -> Corpus:
    """Turn prepared records (see ``e2llm data prepare``) into a paragraph corpus."""
    corpus = Corpus()
    for article in squad:
        pids = [corpus.pid(p) for p in article["paragraphs"] if p.strip()]
        for q in article["questions"]:
            gold_pid = corpus.pid(article["paragraphs"][q["paragraph_index"]])
            others = [p for p in pids if p != gold_pid]
            corpus.qa.append(QAItem(q["question"], list(q["answers"]), [gold_pid], others))
    for item in hotpot:
        paras = [p for p in item["paragraphs"] if p["text"].strip()]
        gold = [corpus.pid(p["text"]) for p in paras if p["is_gold"]]
        related = [corpus.pid(p["text"]) for p in paras if not p["is_gold"]]
        if gold:
            corpus.qa.append(QAItem(item["question"], [item["answer"]], gold, related))
    for rec in recon:
        if rec["text"].strip():
            corpus.recon.append(corpus.pid(rec["text"]))
    return corpus


class ExampleFactory:
    """Deterministic example generator over a corpus and its feature store.

    Args:
        corpus: Paragraphs and items.
        store: Chunks/features of ``corpus.paragraphs`` (same order).
        context_tokens: Target QA context lengths in encoder tokens.
        recon_ratio: Fraction of reconstruction examples (when not forced).
        max_recon_chunks: Consecutive chunks reconstructed at most.
        seed: Seed mixed into every example's RNG.
    """

    def __init__(
        self,
        corpus: Corpus,
        store: ParagraphStore,
        context_tokens: list[int],
        recon_ratio: float,
        max_recon_chunks: int,
        seed: int,
    ) -> None:
        if len(store) != len(corpus.paragraphs):
            raise ValueError("The feature store does not match the corpus; rebuild the cache.")
        self.corpus = corpus
        self.store = store
        self.context_tokens = context_tokens
        self.recon_ratio = recon_ratio
        self.max_recon_chunks = max_recon_chunks
        self.seed = seed
        self._pool = sorted({p for item in corpus.qa for p in item.gold + item.related})

    def example(self, index: int, kind: str | None = None) -> ExampleSpec:
        """The ``index``-th example; ``kind`` forces ``recon`` or ``qa``."""
        rng = random.Random(f"{self.seed}:{index}")
        if kind is None:
            use_recon = self.corpus.recon and (
                not self.corpus.qa or rng.random() < self.recon_ratio
            )
            kind = "recon" if use_recon else "qa"
        return self._recon(rng) if kind == "recon" else self._qa(rng)

    def _recon(self, rng: random.Random) -> ExampleSpec:
        pid = rng.choice(self.corpus.recon)
        chunks = list(self.store.chunk_range(pid))
        count = rng.randint(1, min(self.max_recon_chunks, len(chunks)))
        start = rng.randint(0, len(chunks) - count)
        ids = chunks[start : start + count]
        target = " ".join(self.store.chunk_texts[i] for i in ids)
        return ExampleSpec("recon", ids, RECONSTRUCT_QUESTION, target, [target])

    def _qa(self, rng: random.Random) -> ExampleSpec:
        item = rng.choice(self.corpus.qa)
        budget = rng.choice(self.context_tokens)
        chosen = list(item.gold)
        used = sum(self.store.paragraph_tokens(p) for p in chosen)
        extras = rng.sample(item.related, len(item.related))
        while used < budget:
            pid = extras.pop() if extras else rng.choice(self._pool)
            if pid in chosen:
                if not extras and len(chosen) >= len(self._pool):
                    break
                continue
            chosen.append(pid)
            used += self.store.paragraph_tokens(pid)
        rng.shuffle(chosen)
        ids = [c for p in chosen for c in self.store.chunk_range(p)]
        first_gold = min(ids.index(self.store.offsets[g]) for g in item.gold)
        depth = first_gold / max(1, len(ids) - 1)
        return ExampleSpec("qa", ids, item.question, item.answers[0], item.answers, depth)
