"""Node encoding (cached per pipeline) and an E2LLM node postprocessor with a FAISS prefilter.

Each node is chunked on its own, so no chunk ever spans two nodes. Encoded nodes are
kept in a per-pipeline cache keyed by the node's LLM text, so when
:class:`E2LLMNodePostprocessor` has encoded the retrieved nodes the synthesizer reuses
their chunks instead of encoding them again.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Sequence

from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle

from .._fields import PrefilterFields
from ..core.corpus import EncodedCorpus
from ..core.corpus_cache import CorpusCache
from ..core.pipeline import E2LLMPipeline
from ..retrieval.faiss_index import ChunkPrefilter
from ._common import PipelineFields

logger = logging.getLogger(__name__)

DEFAULT_CACHE_NODES = 4096
"""Encoded nodes each pipeline's cache keeps (least recently used dropped first)."""


def empty_corpus(pipeline: E2LLMPipeline) -> EncodedCorpus:
    """A corpus with no chunks (a question with no context)."""
    return pipeline.empty_corpus()


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
        pipeline = self._pipeline()
        if pipeline is None:  # pragma: no cover - the cache lives only as long as its pipeline
            raise RuntimeError("The pipeline of this cache was garbage-collected.")
        return super().encode(pipeline, texts, ids)


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


class E2LLMNodePostprocessor(PipelineFields, PrefilterFields, BaseNodePostprocessor):
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

    @classmethod
    def class_name(cls) -> str:
        return "E2LLMNodePostprocessor"

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
        prefilter = ChunkPrefilter(self.top_k, self.score_threshold)
        kept = prefilter.per_document(self.pipeline, corpora, query_bundle.query_str)
        best = {i: max(c.score for c in chunks) for i, chunks in enumerate(kept) if chunks}
        logger.debug("E2LLM prefilter kept %d of %d nodes", len(best), len(nodes))
        return [NodeWithScore(node=n.node, score=best[i]) for i, n in enumerate(nodes) if i in best]
