"""Sentence-transformers embeddings for vector stores, offline: the bundled MiniLM by default.

Both integrations' embedding classes (LangChain's ``LocalSentenceEmbeddings``, LlamaIndex's
``SentenceTransformerEmbedding``) are thin views of a :class:`SentenceEmbedder`. Bundled
short names (``all-minilm-l6-v2``) resolve to the model installed with the package, so
no download is needed; any other name or folder goes to sentence-transformers as is.
A model loads on first use and is shared by every embedder with the same name and device.

Example:
    >>> embedder = SentenceEmbedder()
    >>> vectors = embedder.embed(["Paris is the capital of France."])  # doctest: +SKIP
    >>> len(vectors[0]) == embedder.dimension  # doctest: +SKIP
    True
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from ..core.models import resolve

logger = logging.getLogger(__name__)

DEFAULT_EMBED_MODEL = "all-minilm-l6-v2"
"""Bundled short name of the default embedding model."""

_MODELS: dict[tuple[str, str | None], tuple[Any, threading.Lock]] = {}
_LOAD_LOCK = threading.Lock()


def _load(path: str, device: str | None) -> tuple[Any, threading.Lock]:
    """The shared model for ``(path, device)`` and the lock its ``encode`` calls take."""
    with _LOAD_LOCK:
        if (path, device) not in _MODELS:
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError as err:  # pragma: no cover - a declared dependency
                raise ImportError(
                    "Sentence embeddings need sentence-transformers: pip install "
                    "sentence-transformers"
                ) from err
            logger.info("Loading sentence-transformers model from %s.", path)
            _MODELS[path, device] = (SentenceTransformer(path, device=device), threading.Lock())
        return _MODELS[path, device]


class SentenceEmbedder:
    """A sentence-transformers model by bundled short name, local folder or hub id.

    Args:
        model_name: Bundled short name (default ``all-minilm-l6-v2``), folder or hub id.
        device: Torch device; ``None`` lets sentence-transformers choose.
    """

    def __init__(self, model_name: str = DEFAULT_EMBED_MODEL, device: str | None = None) -> None:
        self.model_name = model_name
        self.device = device
        self._loaded: tuple[Any, threading.Lock] | None = None

    @property
    def model(self) -> Any:
        """The loaded ``SentenceTransformer`` (loaded on first access, then shared)."""
        if self._loaded is None:
            self._loaded = _load(str(resolve(self.model_name)), self.device)
        return self._loaded[0]

    @property
    def dimension(self) -> int:
        """Embedding width."""
        model = self.model
        getter = getattr(model, "get_embedding_dimension", None)
        return int((getter or model.get_sentence_embedding_dimension)())

    def embed(
        self,
        texts: Sequence[str],
        batch_size: int = 32,
        normalize: bool = True,
        prefix: str = "",
    ) -> list[list[float]]:
        """One vector per text (``prefix`` put before each); unit length with ``normalize``.

        Raises:
            TypeError: A text is not a ``str``.
        """
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"Text {i} is a {type(text).__name__}; embed str only.")
        if not texts:
            return []
        model = self.model
        assert self._loaded is not None
        with self._loaded[1]:  # a fast tokenizer's padding state is not thread-safe
            vectors = model.encode(
                [prefix + t for t in texts],
                batch_size=batch_size,
                normalize_embeddings=normalize,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return [[float(x) for x in v] for v in vectors]
