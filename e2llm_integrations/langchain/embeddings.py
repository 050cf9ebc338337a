"""``LocalSentenceEmbeddings``: sentence-transformers embeddings that resolve bundled models offline."""

from __future__ import annotations

import asyncio
from typing import Any

from langchain_core.embeddings import Embeddings
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from ..retrieval.embeddings import DEFAULT_EMBED_MODEL, SentenceEmbedder


class LocalSentenceEmbeddings(BaseModel, Embeddings):
    """Embeddings from a local sentence-transformers model (default: the bundled MiniLM).

    Bundled short names (``all-minilm-l6-v2``) resolve to the model installed with the
    package (no network); other names or folders go to sentence-transformers as they are.
    The model loads on first use and is shared (``retrieval.embeddings.SentenceEmbedder``).

    Example:
        >>> from langchain_core.vectorstores import InMemoryVectorStore
        >>> store = InMemoryVectorStore(LocalSentenceEmbeddings())  # doctest: +SKIP
        >>> store.add_texts(["Paris is the capital of France."])  # doctest: +SKIP
    """

    model_config = ConfigDict(protected_namespaces=())

    model_name: str = Field(
        default=DEFAULT_EMBED_MODEL, description="Bundled short name, hub id or local folder."
    )
    device: str | None = Field(default=None, description="Torch device; None lets ST choose.")
    batch_size: int = Field(default=32, gt=0, description="Texts embedded per forward pass.")
    normalize: bool = Field(default=True, description="L2-normalise vectors (cosine = dot).")
    _embedder: SentenceEmbedder | None = PrivateAttr(default=None)

    @property
    def embedder(self) -> SentenceEmbedder:
        if self._embedder is None:
            self._embedder = SentenceEmbedder(self.model_name, self.device)
        return self._embedder

    @property
    def client(self) -> Any:
        """The loaded ``SentenceTransformer`` (loaded on first access)."""
        return self.embedder.model

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed a list of texts."""
        return self.embedder.embed(list(texts), self.batch_size, self.normalize)

    def embed_query(self, text: str) -> list[float]:
        """Embed one query."""
        return self.embed_documents([text])[0]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        return await asyncio.to_thread(self.embed_query, text)
