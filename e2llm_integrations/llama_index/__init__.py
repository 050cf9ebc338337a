"""LlamaIndex integration: E2LLM as an LLM, a response synthesizer and a node postprocessor.

Example:
    >>> from e2llm_integrations.llama_index import E2LLM, E2LLMSynthesizer  # doctest: +SKIP
    >>> engine = index.as_query_engine(response_synthesizer=E2LLMSynthesizer(E2LLM()))  # doctest: +SKIP
"""

try:
    import llama_index.core  # noqa: F401
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError(
        "The LlamaIndex integration needs llama-index-core: "
        "pip install 'e2llm-integrations[llama-index]'"
    ) from err

from ._common import split_prompt
from .embeddings import SentenceTransformerEmbedding
from .llms import E2LLM, PlainDecoderLLM, context_window
from .postprocessors import E2LLMNodePostprocessor, NodeCorpusCache, node_cache
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
    "node_cache",
    "split_prompt",
]
