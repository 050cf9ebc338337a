"""Selective expansion: every chunk as soft tokens, the most relevant few also as raw text.

A soft token keeps a chunk's topic but rarely its exact names and numbers; REFRAG-style
expansion shows the ``top_k`` chunks most similar to the question as raw-text excerpts
after the soft tokens, in document order. Similarity is the cosine between the
question and each chunk, both embedded by the E2LLM encoder (the masked mean of its
features: the same keys and scores as the FAISS prefilter, computed exactly), so no
second embedding model runs. The expanded chunks come back as :class:`Source` records:
the answer's citations.

Example:
    >>> sources = expand(corpus, query_key, top_k=4)  # doctest: +SKIP
    >>> [s.doc_id for s in sources]  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .corpus import EncodedCorpus
from .encoder import sentence_embeddings
from .options import DEFAULT_EXPAND_TOP_K, check_top_k

__all__ = [
    "DEFAULT_EXPAND_TOP_K",
    "Source",
    "check_top_k",
    "chunk_scores",
    "document_order",
    "expand",
]


@dataclass(frozen=True)
class Source:
    """A chunk the decoder read as raw text: where it comes from and how it scored.

    Attributes:
        chunk_index: Position of the chunk in the corpus.
        doc_id: Id of its document (the path for files, the position for strings).
        start: Character offset of the chunk in its document.
        end: Character offset one past its end.
        score: Cosine similarity to the question.
        text: The chunk's text, ``document[start:end]``.
    """

    chunk_index: int
    doc_id: str
    start: int
    end: int
    score: float
    text: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "chunk_index": self.chunk_index,
            "doc_id": self.doc_id,
            "start": self.start,
            "end": self.end,
            "score": round(self.score, 4),
            "text": self.text,
        }


def chunk_scores(corpus: EncodedCorpus, query_key: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every chunk to the query.

    Args:
        corpus: Encoded chunks, (n, L, d_enc) features.
        query_key: (d_enc,) unit query vector (see :func:`encoder.sentence_embeddings`).

    Returns:
        (n,) float32 scores.
    """
    return sentence_embeddings(corpus.features, corpus.mask) @ query_key.float()


def expand(corpus: EncodedCorpus, query_key: torch.Tensor, top_k: int) -> list[Source]:
    """The ``top_k`` chunks most similar to the query, best first (ties: document order)."""
    if check_top_k(top_k) == 0 or len(corpus) == 0:
        return []
    scores = chunk_scores(corpus, query_key)
    best = torch.sort(scores, descending=True, stable=True).indices[:top_k].tolist()
    return [_source(corpus, i, float(scores[i])) for i in best]


def document_order(sources: list[Source]) -> list[Source]:
    """Sources sorted as their chunks appear in the corpus (how the decoder sees them)."""
    return sorted(sources, key=lambda s: s.chunk_index)


def _source(corpus: EncodedCorpus, index: int, score: float) -> Source:
    chunk = corpus.chunks[index]
    return Source(index, chunk.doc_id, chunk.start, chunk.end, score, chunk.text)
