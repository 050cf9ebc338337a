"""``LocalSentenceEmbeddings``: sentence-transformers embeddings that resolve bundled models offline."""

from __future__ import annotations

from typing import Any

from langchain_core.embeddings import Embeddings
from pydantic import Field

from .._fields import EmbedderFields


class LocalSentenceEmbeddings(EmbedderFields, Embeddings):
    """Embeddings from a local sentence-transformers model (default: the bundled MiniLM).

    Bundled short names (``all-minilm-l6-v2``) resolve to the model installed with the
    package (no network); other names or folders go to sentence-transformers as they are.
    The model loads on first use and is shared (``retrieval.embeddings.SentenceEmbedder``).
    The async methods are LangChain's own (they run the sync ones in a worker thread).

    Example:
        >>> from langchain_core.vectorstores import InMemoryVectorStore
        >>> store = InMemoryVectorStore(LocalSentenceEmbeddings())  # doctest: +SKIP
        >>> store.add_texts(["Paris is the capital of France."])  # doctest: +SKIP
    """

    batch_size: int = Field(default=32, gt=0, description="Texts embedded per forward pass.")

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
