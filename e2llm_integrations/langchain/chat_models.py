"""``E2LLMChat``: a LangChain chat model that reads long documents as soft tokens."""

from __future__ import annotations

from typing import Any, ClassVar

from langchain_core.messages import BaseMessage
from pydantic import Field

from .._fields import ExpansionFields
from ..core.prompt import LONG_PROMPT_CHARS
from ..core.runtime import TokenStream
from ._base import PipelineChatModel
from ._messages import parse_messages, sources_from_documents
from .document_compressors import CORPUS_STORE


class E2LLMChat(ExpansionFields, PipelineChatModel):
    """E2LLM as a LangChain chat model: every document chunk becomes one soft token.

    Documents come as ``text-plain`` blocks in human messages, as ``documents=`` (``str``
    or ``Document``, e.g. from :class:`E2LLMDocumentCompressor`), or in a last human turn
    over ``auto_context_chars`` (split by ``core.prompt.split_prompt``). The
    ``expand_top_k`` chunks closest to the question (per call too) are also shown as raw
    text and cited in ``response_metadata["sources"]``. ``usage_metadata`` counts decoder
    input positions. No tool calling or structured output. Details: README, LangChain.

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
    cites_sources: ClassVar[bool] = True

    auto_context_chars: int | None = Field(
        default=LONG_PROMPT_CHARS,
        gt=0,
        description="A last human turn longer than this is split into context + question "
        "(core.prompt.split_prompt); None disables the split.",
    )

    @property
    def _llm_type(self) -> str:
        return "e2llm-chat"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {**super()._identifying_params, "expand_top_k": self.expand_top_k}

    def _open(
        self, messages: list[BaseMessage], stop: list[str] | None, options: dict[str, Any]
    ) -> TokenStream:
        gen = self.generation_config(stop, options)
        top_k = options.get("expand_top_k", self.expand_top_k)
        request = parse_messages(messages, self.auto_context_chars)
        if options.get("documents") is not None:
            request.sources += sources_from_documents(options["documents"])
        return request.stream(self.get_pipeline(), gen, top_k, CORPUS_STORE)
