"""A sentence-transformers embedding model for LlamaIndex that works offline (bundled MiniLM)."""

from __future__ import annotations

import asyncio
from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
from llama_index.core.bridge.pydantic import Field

from .._fields import EmbedderFields


class SentenceTransformerEmbedding(EmbedderFields, BaseEmbedding):
    """Embed text with a sentence-transformers model (``retrieval.embeddings``), loaded lazily.

    Example:
        >>> from llama_index.core import Settings, VectorStoreIndex
        >>> Settings.embed_model = SentenceTransformerEmbedding()  # doctest: +SKIP
        >>> index = VectorStoreIndex.from_documents(docs)  # doctest: +SKIP
    """

    query_prefix: str = Field(default="", description="Text put before every query.")
    text_prefix: str = Field(default="", description="Text put before every document text.")

    @classmethod
    def class_name(cls) -> str:
        return "SentenceTransformerEmbedding"

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
