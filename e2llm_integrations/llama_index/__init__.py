"""LlamaIndex integration: E2LLM as an LLM, a response synthesizer, a node postprocessor
and a query-engine factory that needs no other LLM.

Example:
    >>> from e2llm_integrations.llama_index import create_e2llm_query_engine  # doctest: +SKIP
    >>> engine = create_e2llm_query_engine(index, similarity_top_k=8)  # doctest: +SKIP
    >>> engine.query("Who founded the city?").response  # doctest: +SKIP
"""

try:
    import llama_index.core  # noqa: F401
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError(
        "The LlamaIndex integration needs llama-index-core: "
        "pip install 'e2llm-integrations[llama-index]'"
    ) from err

from ..core.prompt import split_prompt
from .embeddings import SentenceTransformerEmbedding
from .llms import E2LLM, PlainDecoderLLM, context_window
from .postprocessors import E2LLMNodePostprocessor, NodeCorpusCache, node_cache
from .query_engines import create_e2llm_query_engine
from .synthesizers import EXPANDED_NODES_KEY, SOURCES_KEY, E2LLMSynthesizer

__all__ = [
    "E2LLM",
    "E2LLMNodePostprocessor",
    "E2LLMSynthesizer",
    "EXPANDED_NODES_KEY",
    "NodeCorpusCache",
    "PlainDecoderLLM",
    "SOURCES_KEY",
    "SentenceTransformerEmbedding",
    "context_window",
    "create_e2llm_query_engine",
    "node_cache",
    "split_prompt",
]
