"""``PlainDecoderChat``: the E2LLM decoder reading raw text, a baseline for comparisons."""

from __future__ import annotations

from typing import Any, ClassVar

from langchain_core.messages import BaseMessage

from ..core.runtime import TokenStream
from ._base import PipelineChatModel
from ._messages import parse_messages


class PlainDecoderChat(PipelineChatModel):
    """The pipeline's decoder LLM on plain text: no encoder, no adapter, LoRA switched off.

    This is ordinary "stuff the documents into the prompt" generation with the same small
    LLM that E2LLM uses, so RAG and E2LLM chains can be compared on equal terms. It
    accepts the same messages as :class:`E2LLMChat`: ``text-plain`` document blocks are
    pasted into the prompt as text (title first). Prompts longer than the decoder's
    window raise a ``ValueError``. It shares the loaded pipeline with ``E2LLMChat``.

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
    ) -> tuple[TokenStream, int]:
        gen = self.generation_config(stop, options)
        turns = chat_turns(messages)
        stream = self.get_pipeline().stream_text(turns, gen)  # over the window: ValueError
        return stream, stream.usage.input_positions


def chat_turns(messages: list[BaseMessage]) -> list[dict[str, str]]:
    """Messages as ``{"role", "content"}`` turns, documents pasted before the question."""
    request = parse_messages(messages)
    docs = [f"{s.title}\n{s.text}" if s.title else s.text for s in request.sources]
    if any(s.handle and not s.text.strip() for s in request.sources):
        raise ValueError(
            "PlainDecoderChat reads document text; a document carries only E2LLM encoded "
            "chunks. Give it the text (the compressor keeps page_content)."
        )
    question = "\n\n".join([*docs, request.question])
    turns = [{"role": "system", "content": request.system}] if request.system else []
    return [*turns, *request.history, {"role": "user", "content": question}]
