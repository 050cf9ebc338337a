"""Encoded corpora kept for reuse across framework steps: one thread-safe LRU cache.

A LangChain compressor hands its encoded documents to the chat model, and a LlamaIndex
postprocessor its encoded nodes to the synthesizer, through a :class:`CorpusCache`:
the features are computed once. Entries are kept on the CPU and bounded by feature
bytes and/or by count; the least recently used go first. :meth:`CorpusCache.encode`
keys texts by their content, so a text seen before is never encoded again.

Example:
    >>> cache = CorpusCache(max_bytes=2**20)
    >>> key = cache.put(corpus)  # doctest: +SKIP
    >>> cache.get(key, pipeline.fingerprint) is not None  # doctest: +SKIP
    True
    >>> parts = cache.encode(pipeline, ["First node.", "Second node."])  # doctest: +SKIP

:func:`node_cache` is the per-pipeline cache of framework nodes (LlamaIndex's node
postprocessor and synthesizer share it).
"""

from __future__ import annotations

import hashlib
import threading
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .corpus import EncodedCorpus

if TYPE_CHECKING:
    from .pipeline import E2LLMPipeline

DEFAULT_CACHE_BYTES = 512 * 2**20
"""Default bound on the feature bytes a cache keeps."""


def corpus_nbytes(corpus: EncodedCorpus) -> int:
    """Bytes held by a corpus' tensors."""
    return sum(t.element_size() * t.nelement() for t in (corpus.features, corpus.mask))


def content_key(text: str) -> str:
    """The key :meth:`CorpusCache.encode` files a text under (sha256 of its UTF-8)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class CorpusCache:
    """A thread-safe LRU map from keys to encoded corpora.

    Args:
        max_bytes: Feature bytes kept before the least recently used entries go
            (``None``: no byte bound). The newest entry is always kept.
        max_items: Entries kept (``None``: no count bound).
    """

    def __init__(
        self, max_bytes: int | None = DEFAULT_CACHE_BYTES, max_items: int | None = None
    ) -> None:
        for name, bound in (("max_bytes", max_bytes), ("max_items", max_items)):
            if bound is not None and bound < 1:
                raise ValueError(f"{name} must be >= 1 (or None for no bound), got {bound}.")
        self.max_bytes = max_bytes
        self.max_items = max_items
        self.hits = 0
        self.misses = 0
        self._items: OrderedDict[str, EncodedCorpus] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        """Feature bytes held now."""
        return self._bytes

    def put(self, corpus: EncodedCorpus, key: str | None = None) -> str:
        """Keep ``corpus`` (tensors moved to the CPU) under ``key`` (default: a random one)."""
        kept = EncodedCorpus(
            corpus.chunks,
            corpus.features.detach().cpu(),
            corpus.mask.detach().cpu(),
            list(corpus.context_tokens),
            dict(corpus.fingerprint),
            corpus.dropped_chunks,
        )
        key = uuid.uuid4().hex if key is None else key
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= corpus_nbytes(old)
            self._items[key] = kept
            self._bytes += corpus_nbytes(kept)
            self._evict()
        return key

    def _evict(self) -> None:
        """Drop the least recently used entries until both bounds hold (lock held)."""
        while len(self._items) > 1 and (
            (self.max_bytes is not None and self._bytes > self.max_bytes)
            or (self.max_items is not None and len(self._items) > self.max_items)
        ):
            _, old = self._items.popitem(last=False)
            self._bytes -= corpus_nbytes(old)

    def get(
        self, key: str | None, fingerprint: dict[str, Any] | None = None
    ) -> EncodedCorpus | None:
        """The corpus under ``key``; ``None`` if unknown, evicted, or (given a ``fingerprint``)
        encoded with other settings. A hit makes the entry the most recently used."""
        with self._lock:
            corpus = self._items.get(key) if key else None
            usable = corpus is not None and (
                fingerprint is None or not corpus.fingerprint or corpus.fingerprint == fingerprint
            )
            if usable and key is not None:
                self._items.move_to_end(key)
                self.hits += 1
            else:
                self.misses += 1
            return corpus if usable else None

    def clear(self) -> None:
        """Forget every entry and reset the hit/miss counters."""
        with self._lock:
            self._items.clear()
            self._bytes = 0
            self.hits = self.misses = 0

    def encode(
        self, pipeline: E2LLMPipeline, texts: Sequence[str], ids: Sequence[str] | None = None
    ) -> list[EncodedCorpus]:
        """One corpus per text (its own chunks), encoding only texts not cached yet.

        The new texts are encoded together in one pass (a repeated text once). With
        ``ids``, each text's chunks are cited under its id (``Chunk.doc_id``), and a new
        text is cached so; without, a cached text keeps the id it was first cached with.

        Raises:
            ValueError: A text yields no chunks (it has no words).
        """
        keys = [content_key(t) for t in texts]
        found: dict[str, EncodedCorpus] = {}
        for key in dict.fromkeys(keys):
            corpus = self.get(key, pipeline.fingerprint)
            if corpus is not None:
                found[key] = corpus
        new = {k: i for i, k in enumerate(keys) if k not in found}  # first index of each
        if new:
            encoded = pipeline.encode_texts([texts[i] for i in new.values()])
            for (key, i), corpus in zip(new.items(), encoded, strict=True):
                if not len(corpus):
                    raise ValueError(f"Text {texts[i][:60]!r} produced no chunks; it has no words.")
                corpus = corpus if ids is None else corpus.cited_as(ids[i])
                self.put(corpus, key)
                found[key] = corpus
        parts = [found[k] for k in keys]
        return parts if ids is None else [p.cited_as(n) for p, n in zip(parts, ids, strict=True)]


class CorpusStore(CorpusCache):
    """A :class:`CorpusCache` bounded in bytes only (the LangChain compressor's store).

    Example:
        >>> store = CorpusStore(max_bytes=2**20)
        >>> key = store.put(corpus)  # doctest: +SKIP
    """

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        super().__init__(max_bytes=max_bytes)


DEFAULT_CACHE_NODES = 4096
"""Encoded nodes each pipeline's cache keeps (least recently used dropped first)."""


def check_texts(texts: Sequence[str]) -> None:
    """Raise a ``ValueError``/``TypeError`` naming the first node text that cannot be encoded."""
    if not texts:
        raise ValueError(
            "No nodes to answer from: the retriever returned none (is the index empty?) or a "
            "postprocessor removed them all. Add documents or loosen the retrieval filters."
        )
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"Node {i} text is a {type(text).__name__}; nodes must hold text.")
        if not text.strip():
            raise ValueError(
                f"Node {i} has no text. Drop empty nodes before synthesis (fix the reader or "
                "node parser that produced them)."
            )


class NodeCorpusCache(CorpusCache):
    """Encoded chunks of node texts for one pipeline: the core ``CorpusCache`` by content.

    Example:
        >>> cache = node_cache(pipeline)  # doctest: +SKIP
        >>> corpora = cache.encode(["First node.", "Second node."])  # doctest: +SKIP
        >>> [len(c) for c in corpora]  # chunks per node  # doctest: +SKIP
        [1, 1]
    """

    def __init__(self, pipeline: E2LLMPipeline, max_nodes: int = DEFAULT_CACHE_NODES) -> None:
        if max_nodes < 1:
            raise ValueError(f"max_nodes must be >= 1, got {max_nodes}.")
        super().__init__(max_bytes=None, max_items=max_nodes)
        self._pipeline = weakref.ref(pipeline)

    @property
    def max_nodes(self) -> int:
        return int(self.max_items or 0)

    def encode(  # type: ignore[override]
        self, texts: Sequence[str], ids: Sequence[str] | None = None
    ) -> list[EncodedCorpus]:
        """One corpus per node text (its own chunks), encoding only unseen texts.

        Args:
            texts: Node texts, as the synthesizer will see them.
            ids: Optional node ids, recorded as the chunks' ``doc_id``.
        """
        check_texts(texts)
        if ids is not None and len(ids) != len(texts):
            raise ValueError(
                f"Got {len(ids)} node ids for {len(texts)} node texts; pass one id per text "
                "(or none)."
            )
        pipeline = self._pipeline()
        if pipeline is None:  # pragma: no cover - the cache lives only as long as its pipeline
            raise RuntimeError("The pipeline of this cache was garbage-collected.")
        return super().encode(pipeline, texts, ids)

    def corpus(self, texts: Sequence[str], ids: Sequence[str] | None = None) -> EncodedCorpus:
        """All nodes' chunks in node order as one corpus, each node chunked on its own.

        Each chunk's ``doc_id`` is its node's id from ``ids``, else the node's position.
        """
        names = [str(i) for i in range(len(texts))] if ids is None else list(ids)
        return EncodedCorpus.concat(self.encode(texts, names))


_CACHES: weakref.WeakKeyDictionary[E2LLMPipeline, NodeCorpusCache] = weakref.WeakKeyDictionary()
_CACHES_LOCK = threading.Lock()


def node_cache(pipeline: E2LLMPipeline) -> NodeCorpusCache:
    """The encoded-node cache shared by everything that uses ``pipeline``."""
    with _CACHES_LOCK:
        if pipeline not in _CACHES:
            _CACHES[pipeline] = NodeCorpusCache(pipeline)
        return _CACHES[pipeline]
