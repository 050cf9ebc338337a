"""Training examples for the two E2LLM objectives, as a pure function of an index.

* **Reconstruction** ("understanding"): the soft tokens of one or a few consecutive
  chunks, and the instruction to repeat them; the target is their original text.
* **Long-context QA** ("reasoning"): the gold paragraph(s) hidden among distractor
  paragraphs up to a sampled context length, in random order; the target is the answer.
  With an :class:`ExcerptPolicy`, a QA example also shows the ``k`` chunks most similar
  to the question as raw text after the soft tokens, picked exactly as at inference
  (cosine of the encoder's pooled features), so the model learns to read excerpts when
  they hold the answer and to fall back on the soft tokens when they do not.

``ExampleFactory.example(i)`` depends only on ``(seed, i)``, so a resumed run sees
exactly the examples an uninterrupted run would have seen.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..encoder import sentence_embeddings
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
    excerpt_ids: list[int] = field(default_factory=list)
    gold_in_excerpts: bool | None = None


@dataclass(frozen=True)
class ExcerptPolicy:
    """Raw-text excerpts shown with QA examples (selective expansion).

    Attributes:
        top_k: Excerpt counts to draw from, uniformly (repeat a value to weight it);
            ``0`` is a soft-tokens-only example.
        drop_gold: Probability of leaving the gold paragraphs' chunks out of the
            candidates, so that the answer is only in the soft tokens.
        question_keys: (n_qa, d_enc) unit query vectors of ``corpus.qa``, in order.
    """

    top_k: Sequence[int]
    drop_gold: float
    question_keys: torch.Tensor

    def __post_init__(self) -> None:
        if not self.top_k or min(self.top_k) < 0:
            raise ValueError(f"top_k must list excerpt counts >= 0, got {list(self.top_k)}.")
        if not 0.0 <= self.drop_gold <= 1.0:
            raise ValueError(f"drop_gold must be in [0, 1], got {self.drop_gold}.")


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
        excerpts: Raw-text excerpts for QA examples (``None``: soft tokens only).
    """

    def __init__(
        self,
        corpus: Corpus,
        store: ParagraphStore,
        context_tokens: list[int],
        recon_ratio: float,
        max_recon_chunks: int,
        seed: int,
        excerpts: ExcerptPolicy | None = None,
    ) -> None:
        if len(store) != len(corpus.paragraphs):
            raise ValueError("The feature store does not match the corpus; rebuild the cache.")
        if excerpts is not None and excerpts.question_keys.shape[0] != len(corpus.qa):
            raise ValueError("The question keys do not match the corpus; rebuild the cache.")
        self.excerpts = excerpts if excerpts is not None and max(excerpts.top_k) > 0 else None
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
        qa_index = rng.randrange(len(self.corpus.qa))
        item = self.corpus.qa[qa_index]
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
        spec = ExampleSpec("qa", ids, item.question, item.answers[0], item.answers, depth)
        if self.excerpts is not None:
            gold = {c for g in item.gold for c in self.store.chunk_range(g)}
            self._add_excerpts(spec, qa_index, gold, rng)
        return spec

    def _add_excerpts(
        self, spec: ExampleSpec, qa_index: int, gold: set[int], rng: random.Random
    ) -> None:
        """Pick the chunks most similar to the question, as inference does; document order."""
        assert self.excerpts is not None
        k = rng.choice(list(self.excerpts.top_k))
        drop = rng.random() < self.excerpts.drop_gold
        if k == 0:
            return
        keys = sentence_embeddings(*self.store.gather(spec.chunk_ids))  # (n, d_enc)
        scores = keys @ self.excerpts.question_keys[qa_index].float()
        ranked = torch.sort(scores, descending=True, stable=True).indices.tolist()
        if drop:
            ranked = [p for p in ranked if spec.chunk_ids[p] not in gold]
        spec.excerpt_ids = [spec.chunk_ids[p] for p in sorted(ranked[:k])]
        spec.gold_in_excerpts = any(c in gold for c in spec.excerpt_ids)
