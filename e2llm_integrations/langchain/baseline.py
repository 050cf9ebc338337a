"""``PlainDecoderChat``: the E2LLM decoder reading raw text, a baseline for comparisons."""

from __future__ import annotations

from typing import Any, ClassVar

from langchain_core.messages import BaseMessage

from ..core.runtime import TokenStream
from ._base import PipelineChatModel
from ._messages import parse_messages


class PlainDecoderChat(PipelineChatModel):
    """The pipeline's decoder LLM on plain text: no encoder, no adapter, LoRA switched off.

    "Stuff" RAG with E2LLM's own small LLM, to compare on equal terms: the messages
    :class:`E2LLMChat` takes, documents pasted as text; over the window: ``ValueError``.

    Example:
        >>> from langchain_core.prompts import ChatPromptTemplate
        >>> prompt = ChatPromptTemplate.from_template("{context}\\n\\nQuestion: {question}")
        >>> chain = prompt | PlainDecoderChat(max_tokens=32)  # doctest: +SKIP
        >>> chain.invoke({"context": text, "question": "Who?"})  # doctest: +SKIP
    """

    name_prefix: ClassVar[str] = "plain-decoder"

    @property
    def _llm_type(self) -> str:
        return "e2llm-plain-decoder"

    def _open(
        self, messages: list[BaseMessage], stop: list[str] | None, options: dict[str, Any]
    ) -> TokenStream:
        gen = self.generation_config(stop, options)
        return self.get_pipeline().stream_text(chat_turns(messages), gen)  # too long: ValueError


def chat_turns(messages: list[BaseMessage]) -> list[dict[str, str]]:
    """Messages as ``{"role", "content"}`` turns, documents pasted before the question."""
    return parse_messages(messages).text_turns()
