"""Process-local state shared by the LangChain wrappers.

Two caches serve them:

* the **pipeline cache** (``core.registry``): one :class:`E2LLMPipeline` per model
  options, loaded lazily on first use and shared by every wrapper (LangChain or
  LlamaIndex) built with the same settings, so constructing them stays cheap;
* the **corpus store** (a ``core.corpus_cache.CorpusCache``): encoded chunks produced by
  ``E2LLMDocumentCompressor``, kept under a random key that travels in
  ``Document.metadata`` so that ``E2LLMChat`` reads the features directly instead of
  encoding the text again. The store is bounded (least recently used entries are dropped
  first); a handle that is missing or was made with other encoder settings makes the
  chat re-encode the document's text with a warning.
"""

from __future__ import annotations

from ..core.corpus import EncodedCorpus
from ..core.corpus_cache import DEFAULT_CACHE_BYTES, CorpusCache, corpus_nbytes  # noqa: F401
from ..core.pipeline import E2LLMPipeline

CORPUS_KEY = "e2llm_corpus_id"
"""Metadata / block ``extras`` key holding a handle into :data:`CORPUS_STORE`."""

DEFAULT_STORE_BYTES = DEFAULT_CACHE_BYTES
"""Default bound on the feature bytes kept by :data:`CORPUS_STORE`."""


class CorpusStore(CorpusCache):
    """The core :class:`~e2llm_integrations.core.corpus_cache.CorpusCache`, bounded in bytes.

    Example:
        >>> store = CorpusStore(max_bytes=2**20)
        >>> key = store.put(corpus)  # doctest: +SKIP
        >>> store.get(key) is not None  # doctest: +SKIP
        True
    """

    def __init__(self, max_bytes: int = DEFAULT_STORE_BYTES) -> None:
        super().__init__(max_bytes=max_bytes)


CORPUS_STORE = CorpusStore()
"""The process-wide store the compressor writes to and the chat model reads from."""


def stored_corpus(pipeline: E2LLMPipeline, handle: str | None) -> EncodedCorpus | None:
    """The stored chunks behind ``handle`` if they exist and match ``pipeline``'s encoder."""
    return CORPUS_STORE.get(handle, pipeline.fingerprint)
