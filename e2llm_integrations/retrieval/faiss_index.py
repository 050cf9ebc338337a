"""FAISS prefilter: keep the chunks most similar to the query, in document order.

Similarity is cosine between the query and each chunk, both embedded by the E2LLM
encoder itself (mean of the chunk's features), so no second embedding model runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..core.corpus import EncodedCorpus
from ..core.encoder import sentence_embeddings as chunk_keys
from ..core.options import PrefilterOptions
from ..core.pipeline import E2LLMPipeline


def _faiss():  # type: ignore[no-untyped-def]
    try:
        import faiss
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "The FAISS prefilter needs faiss-cpu: pip install 'e2llm-integrations[faiss]'"
        ) from err
    return faiss


def sentence_embeddings(features: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    """L2-normalised masked mean of features: (n, L, d), (n, L) -> (n, d) float32."""
    return chunk_keys(features, mask).numpy().astype("float32")


@dataclass(frozen=True)
class ScoredChunk:
    """A chunk's position in the corpus and its cosine similarity to the query."""

    index: int
    score: float


class ChunkPrefilter:
    """Select chunks by similarity to a query with a FAISS inner-product index.

    Args:
        top_k: Keep at most this many chunks (``None``: no limit).
        score_threshold: Keep only chunks with cosine similarity >= this (``None``: no floor).

    Example:
        >>> pre = ChunkPrefilter(top_k=8)
        >>> kept = pre.select(corpus, query_features, query_mask)  # doctest: +SKIP
    """

    def __init__(self, top_k: int | None = None, score_threshold: float | None = None) -> None:
        options = PrefilterOptions(top_k, score_threshold)  # the one check of both
        self.top_k = options.top_k
        self.score_threshold = options.score_threshold

    @classmethod
    def from_options(cls, options: PrefilterOptions) -> ChunkPrefilter | None:
        """The prefilter for ``options``, or ``None`` when they keep every chunk."""
        return cls(options.top_k, options.score_threshold) if options.active else None

    def scores(
        self, corpus: EncodedCorpus, query_features: torch.Tensor, query_mask: torch.Tensor
    ) -> list[ScoredChunk]:
        """Every chunk scored against the query, best first."""
        if len(corpus) == 0:
            return []
        faiss = _faiss()
        keys = sentence_embeddings(corpus.features, corpus.mask)
        query = sentence_embeddings(query_features, query_mask)
        index = faiss.IndexFlatIP(keys.shape[1])
        index.add(keys)
        k = len(corpus) if self.top_k is None else min(self.top_k, len(corpus))
        sims, ids = index.search(query, k)
        return [
            ScoredChunk(int(i), float(s)) for i, s in zip(ids[0], sims[0], strict=True) if i >= 0
        ]

    def select(
        self, corpus: EncodedCorpus, query_features: torch.Tensor, query_mask: torch.Tensor
    ) -> list[ScoredChunk]:
        """The kept chunks, in their original (document) order."""
        kept = self.scores(corpus, query_features, query_mask)
        if self.score_threshold is not None:
            kept = [c for c in kept if c.score >= self.score_threshold]
        return sorted(kept, key=lambda c: c.index)

    def filter(
        self, pipeline: E2LLMPipeline, corpus: EncodedCorpus, question: str
    ) -> tuple[EncodedCorpus, list[ScoredChunk]]:
        """Embed ``question`` with the pipeline's encoder and keep the selected chunks.

        Returns:
            The reduced corpus (document order) and the kept chunks' scores.
        """
        kept = self.select(corpus, *pipeline.query_features(question))
        return corpus.select([c.index for c in kept]), kept

    def per_document(
        self, pipeline: E2LLMPipeline, corpora: Sequence[EncodedCorpus], question: str
    ) -> list[list[ScoredChunk]]:
        """Select over several documents' chunks at once, reported per document.

        ``top_k`` counts over all documents together. Returns, for each corpus, its kept
        chunks (indices local to that corpus, document order); empty if none is kept.

        Raises:
            ValueError: ``question`` is empty (there is nothing to score against).
        """
        if not isinstance(question, str) or not question.strip():
            raise ValueError("The prefilter needs a non-empty query string to score chunks.")
        owners = [(d, i) for d, corpus in enumerate(corpora) for i in range(len(corpus))]
        kept: list[list[ScoredChunk]] = [[] for _ in corpora]
        if owners:
            for chunk in self.filter(pipeline, EncodedCorpus.concat(corpora), question)[1]:
                doc, local = owners[chunk.index]
                kept[doc].append(ScoredChunk(local, chunk.score))
        return kept
