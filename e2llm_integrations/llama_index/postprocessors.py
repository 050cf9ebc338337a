"""An E2LLM node postprocessor: encode retrieved nodes once (cached), prefilter with FAISS."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle

from .._fields import PipelineFields, PrefilterFields
from ..core.corpus_cache import (  # noqa: F401  (public here too)
    DEFAULT_CACHE_NODES,
    NodeCorpusCache,
    check_texts,
    node_cache,
)

logger = logging.getLogger(__name__)


def node_texts(nodes: Sequence[NodeWithScore]) -> list[str]:
    """The texts LlamaIndex's synthesizers give the LLM (content plus LLM metadata)."""
    return [n.node.get_content(metadata_mode=MetadataMode.LLM) for n in nodes]


class E2LLMNodePostprocessor(PipelineFields, PrefilterFields, BaseNodePostprocessor):
    """Encode retrieved nodes for E2LLM (once, cached) and optionally prefilter them.

    Each node is encoded on its own into the pipeline's cache (``core.corpus_cache``),
    which an :class:`E2LLMSynthesizer` reuses. With ``top_k`` / ``score_threshold`` a node
    is kept (in order) when one of its chunks is, scored by its best chunk's cosine
    similarity to the query; without, nodes pass through unchanged.

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
        prefilter = self.chunk_prefilter
        if prefilter is None:
            return list(nodes)
        if query_bundle is None or not query_bundle.query_str.strip():
            raise ValueError("The E2LLM prefilter needs the query; pass query_bundle or query_str.")
        kept = prefilter.per_document(self.pipeline, corpora, query_bundle.query_str)
        best = {i: max(c.score for c in chunks) for i, chunks in enumerate(kept) if chunks}
        logger.debug("E2LLM prefilter kept %d of %d nodes", len(best), len(nodes))
        return [NodeWithScore(node=n.node, score=best[i]) for i, n in enumerate(nodes) if i in best]
