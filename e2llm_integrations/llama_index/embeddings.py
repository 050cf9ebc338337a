"""A sentence-transformers embedding model for LlamaIndex that works offline (bundled MiniLM)."""

from __future__ import annotations

import asyncio
from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
from llama_index.core.bridge.pydantic import Field, PrivateAttr

from ..retrieval.embeddings import DEFAULT_EMBED_MODEL, SentenceEmbedder


class SentenceTransformerEmbedding(BaseEmbedding):
    """Embed text with a sentence-transformers model (``retrieval.embeddings``), loaded lazily.

    Example:
        >>> from llama_index.core import Settings, VectorStoreIndex
        >>> Settings.embed_model = SentenceTransformerEmbedding()  # doctest: +SKIP
        >>> index = VectorStoreIndex.from_documents(docs)  # doctest: +SKIP
    """

    model_name: str = Field(
        default=DEFAULT_EMBED_MODEL,
        description="Bundled short name, local sentence-transformers folder or hub id.",
    )
    device: str | None = Field(
        default=None, description="Torch device; None lets sentence-transformers choose."
    )
    normalize: bool = Field(
        default=True, description="L2-normalise embeddings (cosine = dot product)."
    )
    query_prefix: str = Field(default="", description="Text put before every query.")
    text_prefix: str = Field(default="", description="Text put before every document text.")

    _model: SentenceEmbedder | None = PrivateAttr(default=None)

    @classmethod
    def class_name(cls) -> str:
        return "SentenceTransformerEmbedding"

    @property
    def embedder(self) -> SentenceEmbedder:
        if self._model is None:
            self._model = SentenceEmbedder(self.model_name, self.device)
        return self._model

    @property
    def model(self) -> Any:
        """The loaded ``SentenceTransformer`` (loaded on first access)."""
        return self.embedder.model

    @property
    def dimension(self) -> int:
        """Embedding width."""
        return self.embedder.dimension

    def _embed(self, prefix: str, texts: list[str]) -> list[Embedding]:
        return self.embedder.embed(texts, self.embed_batch_size, self.normalize, prefix)

    def _get_query_embedding(self, query: str) -> Embedding:
        return self._embed(self.query_prefix, [query])[0]

    async def _aget_query_embedding(self, query: str) -> Embedding:
        return await asyncio.to_thread(self._get_query_embedding, query)

    def _get_text_embedding(self, text: str) -> Embedding:
        return self._embed(self.text_prefix, [text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return self._embed(self.text_prefix, texts)

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return await asyncio.to_thread(self._get_text_embedding, text)

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return await asyncio.to_thread(self._get_text_embeddings, texts)
