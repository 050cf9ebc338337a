"""Process-local runtime shared by the LangChain wrappers.

Two caches serve them:

* the **pipeline cache** (``core.registry``): one :class:`E2LLMPipeline` per
  ``(checkpoint, device)``, loaded lazily on first use and shared by every wrapper
  (LangChain or LlamaIndex) built with the same settings, so constructing them stays cheap;
* the **corpus store**: encoded chunks produced by ``E2LLMDocumentCompressor``, kept
  under a random key that travels in ``Document.metadata`` so that ``E2LLMChat`` reads
  the features directly instead of encoding the text again. The store is bounded (least
  recently used entries are dropped first); a handle that is missing or was made with
  other encoder settings makes the chat re-encode the document's text with a warning.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

import torch

from ..core.corpus import EncodedCorpus
from ..core.expansion import Source
from ..core.generation import GenerationChunk, GenerationConfig
from ..core.pipeline import E2LLMPipeline

logger = logging.getLogger(__name__)

CORPUS_KEY = "e2llm_corpus_id"
"""Metadata / block ``extras`` key holding a handle into :data:`CORPUS_STORE`."""

DEFAULT_STORE_BYTES = 512 * 2**20
"""Default bound on the feature bytes kept by :data:`CORPUS_STORE`."""


def corpus_nbytes(corpus: EncodedCorpus) -> int:
    """Bytes held by a corpus' tensors."""
    return sum(t.element_size() * t.nelement() for t in (corpus.features, corpus.mask))


class CorpusStore:
    """A thread-safe LRU map from random keys to encoded corpora, bounded in bytes.

    Args:
        max_bytes: Feature bytes kept before the least recently used entries go.

    Example:
        >>> store = CorpusStore(max_bytes=2**20)
        >>> key = store.put(corpus)  # doctest: +SKIP
        >>> store.get(key) is corpus  # doctest: +SKIP
        True
    """

    def __init__(self, max_bytes: int = DEFAULT_STORE_BYTES) -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be > 0, got {max_bytes}.")
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, EncodedCorpus] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def put(self, corpus: EncodedCorpus) -> str:
        """Keep ``corpus`` (features moved to CPU) and return its handle."""
        kept = EncodedCorpus(
            corpus.chunks,
            corpus.features.detach().cpu(),
            corpus.mask.detach().cpu(),
            list(corpus.context_tokens),
            dict(corpus.fingerprint),
        )
        key = uuid.uuid4().hex
        size = corpus_nbytes(kept)
        with self._lock:
            self._items[key] = kept
            self._bytes += size
            while self._bytes > self.max_bytes and len(self._items) > 1:
                _, old = self._items.popitem(last=False)
                self._bytes -= corpus_nbytes(old)
        return key

    def get(self, key: str) -> EncodedCorpus | None:
        """The corpus stored under ``key``, or ``None`` if unknown or evicted."""
        with self._lock:
            corpus = self._items.get(key)
            if corpus is not None:
                self._items.move_to_end(key)
            return corpus

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0


CORPUS_STORE = CorpusStore()
"""The process-wide store the compressor writes to and the chat model reads from."""


def empty_corpus(pipeline: E2LLMPipeline) -> EncodedCorpus:
    """A corpus with no chunks (a question asked without documents)."""
    width = pipeline.model.encoder.hidden_size
    return EncodedCorpus(
        [],
        torch.zeros(0, 1, width),
        torch.zeros(0, 1, dtype=torch.long),
        [],
        pipeline.fingerprint,
    )


def stored_corpus(pipeline: E2LLMPipeline, handle: str | None) -> EncodedCorpus | None:
    """The stored chunks behind ``handle`` if they exist and match ``pipeline``'s encoder."""
    corpus = CORPUS_STORE.get(handle) if handle else None
    if corpus is None or (corpus.fingerprint and corpus.fingerprint != pipeline.fingerprint):
        return None
    return corpus


def encode_texts(pipeline: E2LLMPipeline, texts: Sequence[str]) -> list[EncodedCorpus]:
    """Each text's encoded chunks; all texts are chunked and encoded in one pass.

    Empty texts get a corpus with no chunks. Chunking runs under the pipeline's lock too:
    a fast tokenizer's padding/truncation state is shared, so tokenizing for chunks while
    another thread encodes a padded batch breaks that batch.
    """
    with pipeline.lock:
        chunks = pipeline.chunk(list(texts))
        if not chunks:
            return [empty_corpus(pipeline) for _ in texts]
        encoded = pipeline.encode_chunks(chunks)
    rows: dict[str, list[int]] = {}
    for row, chunk in enumerate(chunks):
        rows.setdefault(chunk.doc_id, []).append(row)
    return [encoded.select(rows.get(str(i), [])) for i in range(len(texts))]


def cited_as(corpus: EncodedCorpus, doc_id: str) -> EncodedCorpus:
    """``corpus`` with every chunk's ``doc_id`` set to ``doc_id`` (tensors shared, not copied)."""
    chunks = [c if c.doc_id == doc_id else replace(c, doc_id=doc_id) for c in corpus.chunks]
    return EncodedCorpus(
        chunks, corpus.features, corpus.mask, list(corpus.context_tokens), corpus.fingerprint
    )


def expanded_stream(
    pipeline: E2LLMPipeline,
    corpus: EncodedCorpus,
    question: str,
    generation: GenerationConfig | None,
    expand_top_k: int | None,
    **prompt: Any,
) -> tuple[Iterator[GenerationChunk], list[Source], dict[str, Any]]:
    """Pick the expanded chunks now, then stream the answer over them.

    The same choice as ``pipeline.stream(corpus, question, generation, expand_top_k,
    **prompt)``, made before the first token, so callers know the prompt (to count its
    input positions) up front. The last chunk carries the sources and
    ``usage.expanded_chunks``, as the pipeline's own stream does.

    Returns:
        The token stream, the expanded chunks (document order) and the prompt keywords
        the stream runs with (``excerpts`` included).
    """
    corpus, sources, kwargs = pipeline.prepare(corpus, question, generation, expand_top_k, **prompt)
    stream = pipeline.stream_prepared(corpus, sources, question, generation, kwargs)
    return stream, sources, kwargs
