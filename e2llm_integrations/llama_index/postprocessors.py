"""An E2LLM node postprocessor: encode retrieved nodes once (cached), prefilter with FAISS.

Each node is chunked on its own (no chunk spans two nodes) into the pipeline's node cache
(:func:`~e2llm_integrations.core.corpus_cache.node_cache`, keyed by the node's LLM text),
so the synthesizer reuses the chunks instead of encoding them again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle

from .._fields import PrefilterFields
from ..core.corpus_cache import (  # noqa: F401  (public here too)
    DEFAULT_CACHE_NODES,
    NodeCorpusCache,
    check_texts,
    node_cache,
)
from ..core.pipeline import E2LLMPipeline
from ..retrieval.faiss_index import ChunkPrefilter
from ._common import PipelineFields

logger = logging.getLogger(__name__)

empty_corpus = E2LLMPipeline.empty_corpus
"""A corpus with no chunks (a question with no context): ``empty_corpus(pipeline)``."""


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
