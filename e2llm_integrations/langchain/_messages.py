"""LangChain messages to an E2LLM request (``core.chat.chat_request``, shared with LlamaIndex).

Documents are ``text-plain`` blocks (``core.chat.read_blocks``); ``extras[CORPUS_KEY]``
points at encoded chunks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.documents import Document
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    SystemMessage,
)

from ..core.chat import ROLE_NAMES, ChatRequest, DocumentSource, chat_request, read_blocks
from ..core.prompt import split_stuffed_prompt  # noqa: F401  (public here too)
from .document_compressors import CORPUS_KEY


def _role(message: BaseMessage, position: int) -> str:
    if isinstance(message, SystemMessage):
        return "system"
    if isinstance(message, HumanMessage):
        return "user"
    if isinstance(message, AIMessage):
        return "assistant"
    if isinstance(message, ChatMessage) and message.role.lower() in ROLE_NAMES:
        return ROLE_NAMES[message.role.lower()]
    raise TypeError(
        f"Message {position} is a {type(message).__name__} (type {message.type!r}); E2LLMChat "
        "reads system, human and AI messages only (it does not support tool calling)."
    )


def read_human(message: BaseMessage, position: int) -> tuple[str, list[DocumentSource]]:
    """The text and the document blocks of one human message (``core.chat.read_blocks``)."""
    try:
        blocks = message.content_blocks
    except (KeyError, TypeError, ValueError) as err:  # LangChain could not parse a block
        raise TypeError(
            f"Message {position} has a content block LangChain cannot read ({err!r}); use "
            "'text' blocks for the question and 'text-plain' blocks with text=... for documents."
        ) from err
    return read_blocks(blocks, position, CORPUS_KEY)


def parse_messages(
    messages: Sequence[BaseMessage], auto_context_chars: int | None = None
) -> ChatRequest:
    """Split ``messages`` into system prompt, history, documents and question.

    The messages become ``(role, text)`` turns and documents; the request is then the
    core rule's (:func:`~e2llm_integrations.core.chat.chat_request`).

    Raises:
        ValueError: No human message, the conversation does not end with one, or the
            last turn has no question text.
        TypeError: Tool messages or non-text content blocks.
    """
    turns: list[tuple[str, str]] = []
    sources: list[DocumentSource] = []
    for i, message in enumerate(messages):
        role = _role(message, i)
        text, found = read_human(message, i) if role == "user" else (message.text, [])
        turns.append((role, text))
        sources.extend(found)
    return chat_request(turns, sources, auto_context_chars)


def document_id(doc: Document) -> str | None:
    """The id a document's chunks are cited under: ``doc.id``, else ``metadata["source"]``.

    Example:
        >>> document_id(Document("...", metadata={"source": "notes/q3.txt"}))
        'notes/q3.txt'
    """
    if doc.id:
        return str(doc.id)
    source = doc.metadata.get("source")
    return None if source is None or source == "" else str(source)


def document_source(doc: Document) -> DocumentSource:
    """A LangChain document as a source: its text, ``title``, E2LLM handle and :func:`document_id`."""
    return DocumentSource(
        doc.page_content, doc.metadata.get("title"), doc.metadata.get(CORPUS_KEY), document_id(doc)
    )


def sources_from_documents(documents: Sequence[str | Document]) -> list[DocumentSource]:
    """Sources for the ``documents=`` call argument (texts or LangChain documents)."""
    if isinstance(documents, str | Document):
        raise TypeError("documents= takes a list of str or Document; wrap the single one in [].")
    sources: list[DocumentSource] = []
    for i, doc in enumerate(documents):
        if isinstance(doc, Document):
            source = document_source(doc)
        elif isinstance(doc, str):
            source = DocumentSource(doc)
        else:
            raise TypeError(
                f"documents[{i}] is a {type(doc).__name__}; pass str or langchain Document."
            )
        if not source.text.strip() and source.handle is None:
            raise ValueError(f"documents[{i}] is empty; drop it or give it text.")
        sources.append(source)
    return sources


def documents_to_blocks(documents: Sequence[Document]) -> list[dict[str, Any]]:
    """``text-plain`` content blocks for documents, keeping E2LLM handles in ``extras``.

    A document's :func:`document_id` becomes the block's ``id``, so that ``E2LLMChat``
    cites its chunks under it.

    Example:
        >>> blocks = documents_to_blocks([Document("Paris is in France.")])
        >>> blocks[0]["type"], blocks[0]["text"]
        ('text-plain', 'Paris is in France.')
    """
    return [document_source(doc).to_block(CORPUS_KEY) for doc in documents]
