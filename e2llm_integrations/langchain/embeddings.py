"""``LocalSentenceEmbeddings``: sentence-transformers embeddings that resolve bundled models offline."""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from typing import Any

from langchain_core.embeddings import Embeddings
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from ..core.models import resolve

logger = logging.getLogger(__name__)

_LOAD_LOCK = threading.Lock()


@functools.lru_cache(maxsize=4)
def _load(path: str, device: str | None) -> Any:
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as err:  # pragma: no cover - a declared dependency
        raise ImportError("LocalSentenceEmbeddings needs sentence-transformers.") from err
    logger.info("Loading sentence-transformers model from %s.", path)
    return SentenceTransformer(path, device=device)


class LocalSentenceEmbeddings(BaseModel, Embeddings):
    """Embeddings from a local sentence-transformers model (default: the bundled MiniLM).

    Bundled short names (``all-minilm-l6-v2``) resolve to the model installed with the
    package, so this works with no network; any other name or folder is passed to
    sentence-transformers unchanged. The model loads on first use and is shared.

    Example:
        >>> from langchain_core.vectorstores import InMemoryVectorStore
        >>> store = InMemoryVectorStore(LocalSentenceEmbeddings())  # doctest: +SKIP
        >>> store.add_texts(["Paris is the capital of France."])  # doctest: +SKIP
    """

    model_config = ConfigDict(protected_namespaces=())

    model_name: str = Field(
        default="all-minilm-l6-v2", description="Bundled short name, hub id or local folder."
    )
    device: str | None = Field(default=None, description="Torch device; None lets ST choose.")
    batch_size: int = Field(default=32, gt=0, description="Texts embedded per forward pass.")
    normalize: bool = Field(default=True, description="L2-normalise vectors (cosine = dot).")
    _model: Any = PrivateAttr(default=None)

    @property
    def client(self) -> Any:
        """The loaded ``SentenceTransformer`` (loaded on first access)."""
        if self._model is None:
            with _LOAD_LOCK:
                self._model = _load(str(resolve(self.model_name)), self.device)
        return self._model

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed a list of texts."""
        if not texts:
            return []
        vectors = self.client.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=self.normalize,
            show_progress_bar=False,
        )
        return [list(map(float, v)) for v in vectors]

    def embed_query(self, text: str) -> list[float]:
        """Embed one query."""
        return self.embed_documents([text])[0]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        return await asyncio.to_thread(self.embed_query, text)
