"""Node encoding (cached per pipeline) and an E2LLM node postprocessor with a FAISS prefilter.

Each node is chunked on its own, so no chunk ever spans two nodes. Encoded nodes are
kept in a per-pipeline cache keyed by the node's LLM text, so when
:class:`E2LLMNodePostprocessor` has encoded the retrieved nodes the synthesizer reuses
their chunks instead of encoding them again.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle

from ..core.corpus import EncodedCorpus
from ..core.pipeline import E2LLMPipeline
from ..core.registry import get_pipeline
from ..retrieval.faiss_index import ChunkPrefilter

logger = logging.getLogger(__name__)

DEFAULT_CACHE_NODES = 4096
"""Encoded nodes each pipeline's cache keeps (least recently used dropped first)."""


def empty_corpus(pipeline: E2LLMPipeline) -> EncodedCorpus:
    """A corpus with no chunks (a question with no context)."""
    width = pipeline.model.encoder.hidden_size
    return EncodedCorpus([], torch.zeros(0, 1, width), torch.zeros(0, 1), [], pipeline.fingerprint)


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


class NodeCorpusCache:
    """Encoded chunks of node texts for one pipeline (thread-safe LRU).

    Example:
        >>> cache = node_cache(pipeline)  # doctest: +SKIP
        >>> corpora = cache.encode(["First node.", "Second node."])  # doctest: +SKIP
        >>> [len(c) for c in corpora]  # chunks per node  # doctest: +SKIP
        [1, 1]
    """

    def __init__(self, pipeline: E2LLMPipeline, max_nodes: int = DEFAULT_CACHE_NODES) -> None:
        if max_nodes < 1:
            raise ValueError(f"max_nodes must be >= 1, got {max_nodes}.")
        self._pipeline = weakref.ref(pipeline)
        self._items: OrderedDict[str, EncodedCorpus] = OrderedDict()
        self._lock = threading.Lock()
        self.max_nodes = max_nodes
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        """Forget every encoded node and reset the hit/miss counters."""
        with self._lock:
            self._items.clear()
            self.hits = self.misses = 0

    def encode(self, texts: Sequence[str], ids: Sequence[str] | None = None) -> list[EncodedCorpus]:
        """One corpus per text (its own chunks, in order), encoding only unseen texts.

        Args:
            texts: Node texts, as the synthesizer will see them.
            ids: Optional node ids, recorded as the chunks' ``doc_id``.
        """
        check_texts(texts)
        keys = [_key(t) for t in texts]
        with self._lock:
            found = {k: self._items[k] for k in keys if k in self._items}
        todo = {k: i for i, k in enumerate(keys) if k not in found}  # first index of each new text
        if todo:
            names = [ids[i] for i in todo.values()] if ids is not None else None
            found.update(
                zip(todo, self._encode([texts[i] for i in todo.values()], names), strict=True)
            )
        with self._lock:
            self.hits += len(keys) - len(todo)
            self.misses += len(todo)
            for key in keys:
                self._items[key] = found[key]
                self._items.move_to_end(key)
            while len(self._items) > self.max_nodes:
                self._items.popitem(last=False)
        return [found[k] for k in keys]

    def _encode(self, texts: list[str], ids: list[str] | None) -> list[EncodedCorpus]:
        pipeline = self._pipeline()
        if pipeline is None:  # pragma: no cover - the cache lives only as long as its pipeline
            raise RuntimeError("The pipeline of this cache was garbage-collected.")
        names = [str(i) for i in range(len(texts))]
        chunks = list(pipeline.chunker.chunk(texts, names))
        corpus = pipeline.encode_chunks(chunks)
        owners = [int(c.doc_id) for c in chunks]
        parts = []
        for i, text in enumerate(texts):
            rows = [r for r, owner in enumerate(owners) if owner == i]
            if not rows:
                raise ValueError(f"Node text {text[:60]!r} produced no chunks; it has no words.")
            part = corpus.select(rows)
            if ids is not None:
                part.chunks = [replace(c, doc_id=ids[i]) for c in part.chunks]
            parts.append(part)
        return parts


def _key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


_CACHES: weakref.WeakKeyDictionary[E2LLMPipeline, NodeCorpusCache] = weakref.WeakKeyDictionary()
_CACHES_LOCK = threading.Lock()


def node_cache(pipeline: E2LLMPipeline) -> NodeCorpusCache:
    """The encoded-node cache shared by everything that uses ``pipeline``."""
    with _CACHES_LOCK:
        if pipeline not in _CACHES:
            _CACHES[pipeline] = NodeCorpusCache(pipeline)
        return _CACHES[pipeline]


def node_texts(nodes: Sequence[NodeWithScore]) -> list[str]:
    """The texts LlamaIndex's synthesizers give the LLM (content plus LLM metadata)."""
    return [n.node.get_content(metadata_mode=MetadataMode.LLM) for n in nodes]


class E2LLMNodePostprocessor(BaseNodePostprocessor):
    """Encode retrieved nodes for E2LLM (once, cached) and optionally prefilter them.

    Every node is chunked and encoded on its own into the pipeline's shared cache, so an
    :class:`~e2llm_integrations.llama_index.E2LLMSynthesizer` over the same pipeline
    answers without encoding again. With ``top_k`` or ``score_threshold`` the chunks are
    scored against the query by the E2LLM encoder (cosine, FAISS); a node is kept when
    one of its chunks is, with its best chunk's similarity as its score. Without a
    prefilter the nodes and their retrieval scores pass through unchanged. Nodes keep
    their retrieval order.

    Example:
        >>> post = E2LLMNodePostprocessor(top_k=8)  # doctest: +SKIP
        >>> engine = index.as_query_engine(  # doctest: +SKIP
        ...     node_postprocessors=[post], response_synthesizer=E2LLMSynthesizer()
        ... )
    """

    checkpoint: str | None = Field(
        default=None, description="E2LLM checkpoint folder; None uses the shipped default."
    )
    device: str | None = Field(
        default=None, description="Torch device; None picks CUDA when available, else CPU."
    )
    top_k: int | None = Field(
        default=None,
        gt=0,
        description="Keep the nodes holding the k chunks most similar to the query.",
    )
    score_threshold: float | None = Field(
        default=None, ge=-1.0, le=1.0, description="Keep nodes with a chunk at least this similar."
    )

    _pipeline: E2LLMPipeline | None = PrivateAttr(default=None)

    def __init__(self, pipeline: E2LLMPipeline | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._pipeline = pipeline

    @classmethod
    def class_name(cls) -> str:
        return "E2LLMNodePostprocessor"

    @property
    def pipeline(self) -> E2LLMPipeline:
        """The pipeline, loaded (and shared through the core registry) on first use."""
        if self._pipeline is None:
            self._pipeline = get_pipeline(self.checkpoint, self.device)
        return self._pipeline

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        if not nodes:
            return []
        corpora = node_cache(self.pipeline).encode(
            node_texts(nodes), [n.node.node_id for n in nodes]
        )
        if self.top_k is None and self.score_threshold is None:
            return list(nodes)
        if query_bundle is None or not query_bundle.query_str.strip():
            raise ValueError("The E2LLM prefilter needs the query; pass query_bundle or query_str.")
        owners = [i for i, corpus in enumerate(corpora) for _ in range(len(corpus))]
        prefilter = ChunkPrefilter(self.top_k, self.score_threshold)
        _, kept = prefilter.filter(
            self.pipeline, EncodedCorpus.concat(corpora), query_bundle.query_str
        )
        best: dict[int, float] = {}
        for scored in kept:
            node = owners[scored.index]
            best[node] = max(best.get(node, -1.0), scored.score)
        logger.debug("E2LLM prefilter kept %d of %d nodes", len(best), len(nodes))
        return [NodeWithScore(node=n.node, score=best[i]) for i, n in enumerate(nodes) if i in best]
