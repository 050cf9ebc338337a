"""LangChain integration: ``E2LLMChat``, ``E2LLMDocumentCompressor`` and an LCEL RAG helper.

Example:
    >>> from e2llm_integrations.langchain import E2LLMChat, E2LLMDocumentCompressor
    >>> chat = E2LLMChat()  # cheap: weights load on the first call  # doctest: +SKIP
"""

from __future__ import annotations

try:
    import langchain_core  # noqa: F401
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError(
        "The LangChain integration needs langchain-core: pip install 'e2llm-integrations[langchain]'"
    ) from err

from ..core.registry import clear_pipelines, get_pipeline
from ._messages import document_id, documents_to_blocks, split_stuffed_prompt
from .baseline import PlainDecoderChat
from .chains import create_e2llm_rag_chain
from .chat_models import E2LLMChat
from .document_compressors import CORPUS_KEY, CORPUS_STORE, CorpusStore, E2LLMDocumentCompressor
from .embeddings import LocalSentenceEmbeddings

__all__ = [
    "CORPUS_KEY",
    "CORPUS_STORE",
    "CorpusStore",
    "E2LLMChat",
    "E2LLMDocumentCompressor",
    "LocalSentenceEmbeddings",
    "PlainDecoderChat",
    "clear_pipelines",
    "create_e2llm_rag_chain",
    "document_id",
    "documents_to_blocks",
    "get_pipeline",
    "split_stuffed_prompt",
]
