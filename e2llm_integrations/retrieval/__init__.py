"""Chunk retrieval over encoded corpora (FAISS)."""

from .faiss_index import ChunkPrefilter, ScoredChunk

__all__ = ["ChunkPrefilter", "ScoredChunk"]
