"""A sentence-transformers embedding model for LlamaIndex that works offline.

The default is the bundled all-MiniLM-L6-v2 (installed with its weights), so a
``VectorStoreIndex`` can be built without any model download or API key.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
from llama_index.core.bridge.pydantic import Field, PrivateAttr

from ..core.models import resolve

DEFAULT_EMBED_MODEL = "all-minilm-l6-v2"
"""Bundled short name of the default embedding model."""


def _sentence_transformers() -> Any:
    try:
        import sentence_transformers
    except ImportError as err:  # pragma: no cover - a core dependency
        raise ImportError(
            "SentenceTransformerEmbedding needs sentence-transformers: "
            "pip install sentence-transformers"
        ) from err
    return sentence_transformers


class SentenceTransformerEmbedding(BaseEmbedding):
    """Embed text with a sentence-transformers model, loaded lazily on first use.

    ``model_name`` is a bundled short name (default ``all-minilm-l6-v2``, shipped with
    its weights), a local sentence-transformers folder, or a hub id.

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

    _model: Any = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @classmethod
    def class_name(cls) -> str:
        return "SentenceTransformerEmbedding"

    @property
    def model(self) -> Any:
        """The loaded ``SentenceTransformer`` (loaded on first access)."""
        with self._lock:
            if self._model is None:
                st = _sentence_transformers()
                self._model = st.SentenceTransformer(resolve(self.model_name), device=self.device)
            return self._model

    @property
    def dimension(self) -> int:
        """Embedding width."""
        model = self.model
        getter = (
            getattr(model, "get_embedding_dimension", None)
            or model.get_sentence_embedding_dimension
        )
        return int(getter())

    def _embed(self, prefix: str, texts: list[str]) -> list[Embedding]:
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"Text {i} is a {type(text).__name__}; embed str only.")
        model = self.model
        with self._lock:
            vectors = model.encode(
                [prefix + t for t in texts],
                batch_size=self.embed_batch_size,
                normalize_embeddings=self.normalize,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return [v.tolist() for v in vectors]

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
