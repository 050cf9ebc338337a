"""A chat call as the pipeline answers it: system prompt, history, documents, question.

Both integrations read their framework's messages into ``(role, text)`` turns plus the
documents that came with them, and :func:`chat_request` applies the one rule:

* system turns are joined into one system prompt;
* the **question** is the text of the trailing run of user turns; earlier user and
  assistant turns are the history, same-role neighbours merged, empty ones dropped;
* a question longer than ``split_above`` characters is cut by
  :func:`~.prompt.split_prompt`: its context becomes one more document.

Example:
    >>> chat_request([("system", "Be brief."), ("user", "Who?")]).question
    'Who?'
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .prompt import split_prompt

ROLES = ("system", "user", "assistant")
"""The turn roles :func:`chat_request` reads (wrappers map their frameworks' names)."""


@dataclass
class DocumentSource:
    """One document for the context: raw text, or a handle to already encoded chunks.

    Attributes:
        text: The document's text (the fallback when a handle has expired).
        title: Optional title, put on the first line before chunking.
        handle: Key into a :class:`~.corpus_cache.CorpusCache` (e.g. set by the LangChain
            document compressor).
        doc_id: The document's id in citations (``Source.doc_id``); ``None``: its position
            among the call's documents.
    """

    text: str
    title: str | None = None
    handle: str | None = None
    doc_id: str | None = None

    @property
    def titled(self) -> str:
        """The text the encoder reads: the title, a blank line, then the text."""
        return f"{self.title}\n\n{self.text}" if self.title else self.text


@dataclass
class ChatRequest:
    """What one chat call asks of the pipeline."""

    question: str
    system: str | None = None
    history: list[dict[str, str]] = field(default_factory=list)
    sources: list[DocumentSource] = field(default_factory=list)


def chat_request(
    turns: Sequence[tuple[str, str]],
    sources: Sequence[DocumentSource] = (),
    split_above: int | None = None,
) -> ChatRequest:
    """The request for ``turns`` (oldest first) and the documents given with them.

    Args:
        turns: ``(role, text)`` pairs, roles from :data:`ROLES`.
        sources: Documents given with the messages, in order.
        split_above: Split a question longer than this many characters into context and
            question (:func:`~.prompt.split_prompt`); ``None``: never.

    Raises:
        ValueError: No user turn, the conversation does not end with one, the last user
            turns hold no text, or an unknown role.
    """
    for role, _ in turns:
        if role not in ROLES:
            raise ValueError(f"Unknown chat role {role!r}; E2LLM reads {list(ROLES)}.")
    system = [text for role, text in turns if role == "system" and text.strip()]
    talk = [(role, text) for role, text in turns if role != "system"]
    if not any(role == "user" for role, _ in talk):
        raise ValueError(
            "The chat needs a user (human) message with the question; got none. Pass at "
            "least one user message."
        )
    if talk[-1][0] != "user":
        raise ValueError(
            f"The conversation must end with a user (human) message holding the question, "
            f"not an {talk[-1][0]!r} one."
        )
    start = len(talk) - 1
    while start > 0 and talk[start - 1][0] == "user":
        start -= 1
    question = "\n\n".join(text for _, text in talk[start:] if text.strip())
    if not question.strip():
        raise ValueError(
            "The last user (human) message has documents but no question text; add the "
            "question, e.g. 'What does the report conclude?'."
        )
    documents = list(sources)
    if split_above is not None and len(question) > split_above:
        split = split_prompt(question)
        if split.context:
            documents.append(DocumentSource(text=split.context))
            question = split.question
    history = _merged(talk[:start])
    return ChatRequest(question, "\n\n".join(system) or None, history, documents)


def _merged(turns: Sequence[tuple[str, str]]) -> list[dict[str, str]]:
    """Turns as ``{"role", "content"}`` dicts, same-role neighbours joined, empty ones dropped."""
    history: list[dict[str, str]] = []
    for role, text in turns:
        if not text.strip():
            continue
        if history and history[-1]["role"] == role:
            history[-1]["content"] += "\n\n" + text
        else:
            history.append({"role": role, "content": text})
    return history
