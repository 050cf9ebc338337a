"""A chat call as the pipeline answers it: system prompt, history, documents, question.

Both integrations read their framework's messages into ``(role, text)`` turns plus the
documents that came with them (role names through :data:`ROLE_NAMES`, content blocks
through :func:`read_blocks`), and :func:`chat_request` applies the one rule:

* system turns are joined into one system prompt;
* the **question** is the text of the trailing run of user turns; earlier user and
  assistant turns are the history, same-role neighbours merged, empty ones dropped;
* a question longer than ``split_above`` characters is cut by
  :func:`~.prompt.split_prompt`: its context becomes one more document.

:func:`build_corpus` then encodes the documents (reusing chunks a
:class:`~.corpus_cache.CorpusCache` holds for them), and :meth:`ChatRequest.text_turns`
pastes them as text for the plain-decoder baselines; :meth:`ChatRequest.stream` answers a
request, :func:`answer_stream` any corpus.

Example:
    >>> chat_request([("system", "Be brief."), ("user", "Who?")]).question
    'Who?'
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .corpus import EncodedCorpus
from .prompt import split_prompt

if TYPE_CHECKING:
    from .corpus_cache import CorpusCache
    from .generation import GenerationConfig
    from .pipeline import E2LLMPipeline
    from .runtime import TokenStream

logger = logging.getLogger(__name__)

ROLES = ("system", "user", "assistant")
"""The turn roles :func:`chat_request` reads (wrappers map their frameworks' names)."""
ROLE_NAMES = {
    **{role: role for role in ROLES},
    "developer": "system",
    "human": "user",
    "ai": "assistant",
    "model": "assistant",
    "chatbot": "assistant",
}
"""The frameworks' role names (LangChain's ``ChatMessage.role``, LlamaIndex's ``MessageRole``)
as :data:`ROLES`; a name not here (``tool``, ``function``) is refused by the wrappers."""


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

    @classmethod
    def from_block(cls, block: Mapping[str, Any], position: int, handle_key: str) -> DocumentSource:
        """A ``text-plain`` document block (a plain dict, as in LangChain's standard content
        blocks): ``text`` or UTF-8 ``base64``, optional ``title`` and ``id``;
        ``extras[handle_key]`` is a :class:`~.corpus_cache.CorpusCache` handle.

        Args:
            block: The block.
            position: Index of the message holding it (for error messages).
            handle_key: The ``extras`` key of a handle.

        Raises:
            ValueError: The block has no text (and no handle), or base64 that is not UTF-8.

        Example:
            >>> DocumentSource.from_block({"type": "text-plain", "text": "Hi."}, 0, "key").text
            'Hi.'
        """
        extras = block.get("extras") or {}
        handle = extras.get(handle_key) if isinstance(extras, dict) else None
        text = _block_text(block, position) if handle is None or block.get("text") else ""
        if not text.strip() and handle is None:
            raise ValueError(
                f"A text-plain document block in message {position} is empty; drop it or give "
                "it text."
            )
        doc_id = block.get("id")
        return cls(
            text=text,
            title=block.get("title"),
            handle=handle,
            doc_id=None if doc_id is None else str(doc_id),
        )

    def to_block(self, handle_key: str) -> dict[str, Any]:
        """This source as a ``text-plain`` block (the inverse of :meth:`from_block`)."""
        block: dict[str, Any] = {"type": "text-plain", "mime_type": "text/plain", "text": self.text}
        if self.doc_id is not None:
            block["id"] = self.doc_id
        if self.title:
            block["title"] = str(self.title)
        if self.handle:
            block["extras"] = {handle_key: self.handle}
        return block


def read_blocks(
    blocks: Iterable[Mapping[str, Any]], position: int, handle_key: str
) -> tuple[str, list[DocumentSource]]:
    """The text and the documents of one message's content blocks (plain dicts).

    ``text`` blocks make the text (joined by newlines, empty ones dropped), ``text-plain``
    blocks the documents (:meth:`DocumentSource.from_block`).

    Raises:
        TypeError: Any other kind of block (images, files...).
    """
    texts: list[str] = []
    sources: list[DocumentSource] = []
    for block in blocks:
        kind = block.get("type")
        if kind == "text":
            texts.append(str(block.get("text", "")))
        elif kind == "text-plain":
            sources.append(DocumentSource.from_block(block, position, handle_key))
        else:
            raise TypeError(
                f"Message {position} has a {kind!r} content block; E2LLM reads 'text' blocks "
                "(the question) and 'text-plain' blocks (documents). Convert other inputs to text."
            )
    return "\n".join(t for t in texts if t.strip()), sources


def _block_text(block: Mapping[str, Any], position: int) -> str:
    """The text of a ``text-plain`` block: ``text``, else its ``base64`` data decoded."""
    if block.get("text") is not None:
        return str(block["text"])
    if block.get("base64"):
        try:
            return base64.b64decode(block["base64"]).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as err:
            raise ValueError(
                f"The text-plain block in message {position} has base64 data that is not "
                f"UTF-8 text ({err}); pass the document as text=..."
            ) from err
    raise ValueError(
        f"The text-plain block in message {position} has no text (url/file_id are not fetched); "
        "download the document and pass it as text=..."
    )


@dataclass
class ChatRequest:
    """What one chat call asks of the pipeline."""

    question: str
    system: str | None = None
    history: list[dict[str, str]] = field(default_factory=list)
    sources: list[DocumentSource] = field(default_factory=list)

    def text_turns(self) -> list[dict[str, str]]:
        """``{"role", "content"}`` turns for a plain decoder: documents pasted before the question.

        Example:
            >>> ChatRequest("Who?", sources=[DocumentSource("Ann did.", "Note")]).text_turns()
            [{'role': 'user', 'content': 'Note\nAnn did.\n\nWho?'}]
        """
        if any(s.handle and not s.text.strip() for s in self.sources):
            raise ValueError(
                "A plain decoder reads document text; a document carries only E2LLM encoded "
                "chunks. Give it the text (the LangChain compressor keeps page_content)."
            )
        docs = [f"{s.title}\n{s.text}" if s.title else s.text for s in self.sources]
        question = "\n\n".join([*docs, self.question])
        turns = [{"role": "system", "content": self.system}] if self.system else []
        return [*turns, *self.history, {"role": "user", "content": question}]

    @property
    def prompt(self) -> dict[str, Any]:
        """The prompt keywords of the pipeline's answering methods: ``system``, ``history``."""
        return {"system": self.system, "history": self.history}

    def stream(
        self,
        pipeline: E2LLMPipeline,
        generation: GenerationConfig,
        expand_top_k: int | None = None,
        cache: CorpusCache | None = None,
    ) -> TokenStream:
        """The answer: the documents encoded (:func:`build_corpus`, reusing ``cache``), then
        :func:`answer_stream` (usage and sources known before the first token)."""
        corpus = build_corpus(pipeline, self.sources, cache)
        return answer_stream(
            pipeline, corpus, self.question, generation, expand_top_k, **self.prompt
        )


def answer_stream(
    pipeline: E2LLMPipeline,
    corpus: EncodedCorpus,
    question: str,
    generation: GenerationConfig,
    expand_top_k: int | None = None,
    **prompt: Any,
) -> TokenStream:
    """:meth:`~.pipeline.E2LLMPipeline.prepare`, then its ``stream_prepared``: a stream whose
    usage and sources (``stream.sources``) are known before the first token."""
    corpus, shown, kwargs = pipeline.prepare(corpus, question, generation, expand_top_k, **prompt)
    return pipeline.stream_prepared(corpus, shown, question, generation, kwargs)


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


def source_corpora(
    pipeline: E2LLMPipeline, sources: Sequence[DocumentSource], cache: CorpusCache | None = None
) -> list[EncodedCorpus]:
    """Each source's chunks: those ``cache`` holds under its handle when still there and
    made by this encoder, else its (titled) text encoded, all such texts in one pass.
    Without a ``cache`` no handle can be found.

    Raises:
        ValueError: A handle is gone and its source has no text to encode again.
    """
    parts = [
        cache.get(s.handle, pipeline.fingerprint) if s.handle and cache is not None else None
        for s in sources
    ]
    missing = [i for i, part in enumerate(parts) if part is None]
    for source in (sources[i] for i in missing if sources[i].handle is not None):
        if not source.text.strip():
            raise ValueError(
                f"Encoded chunks {source.handle!r} are gone (evicted, another process, or made "
                "with other encoder settings) and the document has no text to re-encode; encode "
                "it again (e.g. run the E2LLMDocumentCompressor again)."
            )
        logger.warning(
            "Encoded chunks %s are unavailable or incompatible with this model; re-encoding "
            "the text.",
            source.handle,
        )
    encoded = pipeline.encode_texts([sources[i].titled for i in missing]) if missing else []
    for i, corpus in zip(missing, encoded, strict=True):
        parts[i] = corpus
    return [part for part in parts if part is not None]


def build_corpus(
    pipeline: E2LLMPipeline, sources: Sequence[DocumentSource], cache: CorpusCache | None = None
) -> EncodedCorpus:
    """One corpus for ``sources`` in order (:func:`source_corpora`), empty ones left out.

    Every chunk's ``doc_id`` is its source's ``doc_id``, else the source's position.
    """
    kept = [
        part.cited_as(source.doc_id if source.doc_id is not None else str(i))
        for i, (source, part) in enumerate(
            zip(sources, source_corpora(pipeline, sources, cache), strict=True)
        )
        if len(part)
    ]
    return EncodedCorpus.concat(kept) if kept else pipeline.empty_corpus()
