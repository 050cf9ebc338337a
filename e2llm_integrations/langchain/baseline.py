"""``PlainDecoderChat``: the E2LLM decoder reading raw text, a baseline for comparisons."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

from langchain_core.messages import BaseMessage

from ..core.generation import GenerationChunk
from ..core.pipeline import E2LLMPipeline
from ..core.prompt import render_chat
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
    ) -> tuple[Iterator[GenerationChunk], int]:
        gen = self.generation_config(stop, options)
        turns = chat_turns(messages)
        pipeline = self.get_pipeline()
        with pipeline.lock:
            tokenizer = pipeline.model.tokenizer
            n_input = len(
                tokenizer(render_chat(tokenizer, turns), add_special_tokens=False)["input_ids"]
            )
        return _locked(pipeline, pipeline.model.stream_text(turns, gen, base_only=True)), n_input


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


def _locked(
    pipeline: E2LLMPipeline, stream: Iterator[GenerationChunk]
) -> Iterator[GenerationChunk]:
    with pipeline.lock:
        yield from stream
