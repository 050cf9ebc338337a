"""``E2LLMChat``: a LangChain chat model that reads long documents as soft tokens."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, ClassVar

from langchain_core.messages import BaseMessage
from pydantic import Field

from .._fields import core_field, core_validator
from ..core.corpus import EncodedCorpus
from ..core.expansion import Source
from ..core.generation import Usage
from ..core.options import ExpansionOptions
from ..core.pipeline import E2LLMPipeline
from ..core.prompt import LONG_PROMPT_CHARS
from ..core.runtime import TokenStream
from ._base import PipelineChatModel
from ._messages import DocumentSource, parse_messages, sources_from_documents
from ._runtime import stored_corpus

logger = logging.getLogger(__name__)


class E2LLMChat(PipelineChatModel):
    """E2LLM as a LangChain chat model: every document chunk becomes one soft token.

    Documents reach the model three ways, all encoded by the E2LLM chunk encoder:

    * ``text-plain`` content blocks in a human message (``title`` goes on the first line);
    * the ``documents=`` call argument (``str`` or ``Document``; documents returned by
      :class:`E2LLMDocumentCompressor` carry their encoded chunks and are not re-encoded);
    * a long plain-string prompt ("stuff" chains): when the last human turn is longer than
      ``auto_context_chars``, its last paragraph (else last line, else last sentence; a
      trailing ``Answer:`` cue stays attached) is the question and the rest is context.

    Documents in earlier human messages stay in the context on later turns. System
    messages become the system prompt; earlier human/AI turns are chat history.

    **Selective expansion**: besides the soft tokens, the ``expand_top_k`` chunks most
    similar to the question (default :data:`~e2llm_integrations.core.expansion.DEFAULT_EXPAND_TOP_K`;
    0 for soft tokens only; per call too: ``invoke(..., expand_top_k=2)``) are shown to the
    decoder as raw-text excerpts. ``response_metadata["sources"]`` cites them
    (``Source.to_dict()``: ``chunk_index``, ``doc_id``, ``start``, ``end``, ``score``,
    ``text``, in document order) and ``response_metadata["expanded_chunks"]`` counts them;
    when streaming both are on the last chunk. ``doc_id`` is the document's
    :func:`~e2llm_integrations.langchain.document_id` (a ``Document``'s ``id``,
    else ``metadata["source"]``; a block's ``id``), else its position among the call's
    documents; ``start``/``end`` are offsets into its text (after a ``title`` line, if any).

    ``usage_metadata["input_tokens"]`` counts decoder input positions (prompt tokens,
    excerpts included, plus one soft token per chunk); ``response_metadata`` adds
    ``context_tokens`` (what the chunks' raw text would have cost), ``soft_tokens``,
    ``n_chunks``, ``compression_ratio``, ``finish_reason`` and ``model_name``. Weights load
    lazily on first use and are shared by every instance with the same ``checkpoint`` and
    ``device``. Tool calling and structured output are not supported.

    Example:
        >>> chat = E2LLMChat.from_pretrained(max_tokens=64)  # doctest: +SKIP
        >>> msg = HumanMessage(content=[
        ...     {"type": "text-plain", "mime_type": "text/plain", "text": report, "title": "Q3"},
        ...     {"type": "text", "text": "What was the revenue?"},
        ... ])  # doctest: +SKIP
        >>> chat.invoke([msg]).content  # doctest: +SKIP
    """

    call_options: ClassVar[frozenset[str]] = PipelineChatModel.call_options | {
        "documents",
        "expand_top_k",
    }

    auto_context_chars: int | None = Field(
        default=LONG_PROMPT_CHARS,
        gt=0,
        description="A last human turn longer than this is split into context + question "
        "(core.prompt.split_prompt); None disables the split.",
    )
    expand_top_k: int | None = core_field(ExpansionOptions, "expand_top_k")
    _check_expansion = core_validator(ExpansionOptions, "expand_top_k")

    @property
    def _llm_type(self) -> str:
        return "e2llm-chat"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {**super()._identifying_params, "expand_top_k": self.expand_top_k}

    def response_metadata(
        self, finish_reason: str, usage: Usage, sources: Sequence[Source] = ()
    ) -> dict[str, Any]:
        """The base metadata plus ``expanded_chunks`` and ``sources`` (list of dicts)."""
        return {
            **super().response_metadata(finish_reason, usage, sources),
            "expanded_chunks": usage.expanded_chunks,
            "sources": [s.to_dict() for s in sources],
        }

    def _open(
        self, messages: list[BaseMessage], stop: list[str] | None, options: dict[str, Any]
    ) -> tuple[TokenStream, int]:
        gen = self.generation_config(stop, options)
        top_k = options.get("expand_top_k", self.expand_top_k)
        request = parse_messages(messages, self.auto_context_chars)
        sources = request.sources
        if options.get("documents") is not None:
            sources = sources + sources_from_documents(options["documents"])
        pipeline = self.get_pipeline()
        corpus = build_corpus(pipeline, sources)
        # Prepared before the first token, so the input positions are known up front.
        corpus, shown, kwargs = pipeline.prepare(
            corpus, request.question, gen, top_k, system=request.system, history=request.history
        )
        stream = pipeline.stream_prepared(corpus, shown, request.question, gen, kwargs)
        return stream, stream.usage.input_positions


def _stored(pipeline: E2LLMPipeline, source: DocumentSource) -> EncodedCorpus | None:
    """The encoded chunks behind ``source.handle``, if still stored and compatible."""
    if source.handle is None:
        return None
    corpus = stored_corpus(pipeline, source.handle)
    if corpus is not None:
        return corpus
    if not source.text.strip():
        raise ValueError(
            f"Encoded chunks {source.handle!r} are gone (evicted, another process, or made with "
            "other encoder settings) and the document has no text to re-encode; run the "
            "E2LLMDocumentCompressor again."
        )
    logger.warning(
        "Encoded chunks %s are unavailable or incompatible with this model; re-encoding the text.",
        source.handle,
    )
    return None


def build_corpus(pipeline: E2LLMPipeline, sources: Sequence[DocumentSource]) -> EncodedCorpus:
    """One corpus for ``sources`` in order: stored chunks reused, texts encoded in one pass.

    Every chunk's ``doc_id`` is its source's ``doc_id``, else the source's position.
    """
    parts: list[EncodedCorpus | None] = [_stored(pipeline, s) for s in sources]
    missing = [i for i, part in enumerate(parts) if part is None]
    if missing:
        encoded = pipeline.encode_texts([sources[i].titled for i in missing])
        for i, corpus in zip(missing, encoded, strict=True):
            parts[i] = corpus
    kept = [
        part.cited_as(source.doc_id if source.doc_id is not None else str(i))
        for i, (source, part) in enumerate(zip(sources, parts, strict=True))
        if part is not None and len(part)
    ]
    return EncodedCorpus.concat(kept) if kept else pipeline.empty_corpus()
