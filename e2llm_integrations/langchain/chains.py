"""LCEL helper: retriever (+ optional E2LLM compressor) -> E2LLMChat, one chunk per soft token."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.documents import BaseDocumentCompressor, Document
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import Runnable, RunnableLambda, RunnablePassthrough

from ._messages import documents_to_blocks
from .chat_models import E2LLMChat


def _as_inputs(value: Any) -> dict[str, Any]:
    """``"question"`` or ``{"question": ...}`` -> ``{"question": str}``."""
    question = value.get("question") if isinstance(value, dict) else value
    if not isinstance(question, str) or not question.strip():
        raise TypeError(
            "The E2LLM RAG chain takes a question string or {'question': str}; "
            f"got {type(value).__name__}."
        )
    return {"question": question}


def build_messages(inputs: dict[str, Any], system: str | None = None) -> list[BaseMessage]:
    """Messages for E2LLMChat: documents as ``text-plain`` blocks, then the question.

    Example:
        >>> msgs = build_messages({"question": "Who?", "documents": [Document("Ann did.")]})
        >>> [b["type"] for b in msgs[-1].content]
        ['text-plain', 'text']
    """
    documents: Sequence[Document] = inputs.get("documents") or []
    content = [*documents_to_blocks(documents), {"type": "text", "text": inputs["question"]}]
    messages: list[BaseMessage] = [SystemMessage(system)] if system else []
    messages.append(HumanMessage(content=content))  # type: ignore[arg-type]
    return messages


def _compress_step(compressor: BaseDocumentCompressor) -> Runnable[dict[str, Any], Any]:
    def compress(inputs: dict[str, Any]) -> Sequence[Document]:
        return compressor.compress_documents(inputs["documents"], inputs["question"])

    async def acompress(inputs: dict[str, Any]) -> Sequence[Document]:
        return await compressor.acompress_documents(inputs["documents"], inputs["question"])

    return RunnableLambda(compress, afunc=acompress, name="compress_documents")


def create_e2llm_rag_chain(
    retriever: BaseRetriever | Runnable[str, list[Document]],
    chat: E2LLMChat,
    compressor: BaseDocumentCompressor | None = None,
    *,
    system: str | None = None,
    return_documents: bool = False,
) -> Runnable[Any, Any]:
    """Retrieve documents, optionally compress them, and answer with E2LLM.

    Each document reaches ``chat`` as a ``text-plain`` block (compressed ones are not
    encoded again); citations use :func:`document_id`.

    Args:
        retriever: Any retriever (or runnable) mapping the question to documents.
        chat: The E2LLM chat model that answers.
        compressor: Optional document compressor run on the retrieved documents.
        system: Optional system message.
        return_documents: Return ``{"question", "documents", "answer"}`` instead of the
            answer string.

    Returns:
        A runnable taking a question string or ``{"question": str}``.

    Example:
        >>> chain = create_e2llm_rag_chain(
        ...     store.as_retriever(search_kwargs={"k": 8}),
        ...     E2LLMChat(),
        ...     E2LLMDocumentCompressor(top_k=32),
        ... )  # doctest: +SKIP
        >>> chain.invoke("When was the bridge opened?")  # doctest: +SKIP
    """
    get_question = RunnableLambda(lambda inputs: inputs["question"], name="question")
    prepared = RunnableLambda(_as_inputs, name="inputs") | RunnablePassthrough.assign(
        documents=get_question | retriever
    )
    if compressor is not None:
        prepared = prepared | RunnablePassthrough.assign(documents=_compress_step(compressor))
    to_messages: Runnable[dict[str, Any], list[BaseMessage]] = RunnableLambda(
        lambda inputs: build_messages(inputs, system), name="messages"
    )
    answer = to_messages | chat | StrOutputParser()
    chain: Runnable[Any, Any]
    if return_documents:
        chain = prepared | RunnablePassthrough.assign(answer=answer)
    else:
        chain = prepared | answer
    return chain.with_config(run_name="e2llm_rag_chain")
