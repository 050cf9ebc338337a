"""LlamaIndex LLMs over an :class:`E2LLMPipeline`: :class:`E2LLM` (context as soft tokens)
and :class:`PlainDecoderLLM` (its decoder on the raw prompt, the ordinary-RAG baseline)."""

from __future__ import annotations

import asyncio
from collections.abc import Generator, Iterator, Sequence
from typing import Any

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
)
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.custom import CustomLLM

from .._fields import DecodingFields, ExpansionFields, PipelineFields, PrefilterFields
from ..core.chat import ROLE_NAMES, build_corpus, chat_request
from ..core.corpus import EncodedCorpus
from ..core.fitting import CHUNK_FILL, QUESTION_RESERVE, check_question, context_window  # noqa: F401
from ..core.generation import GenerationChunk, GenerationConfig
from ..core.runtime import LastCall, ReportsLastCall, aiter_in_thread, aprime, prime


class _PipelineLLM(ReportsLastCall, DecodingFields, PipelineFields, CustomLLM):
    """Pipeline, decoding fields (the core ``GenerationConfig``'s), (a)sync API and the last
    call's usage and sources (``last_usage``, ``last_sources``) of both LLMs."""

    is_chat_model: bool = Field(
        default=True, description="Report as a chat model (LlamaIndex then sends chat messages)."
    )

    _last: LastCall = PrivateAttr(default_factory=LastCall)

    def _generation(self, kwargs: dict[str, Any]) -> GenerationConfig:
        """Decoding options from the fields, overridden by matching call keyword arguments."""
        return self.decoding(kwargs)

    def _stream_messages(
        self, messages: Sequence[ChatMessage], cfg: GenerationConfig, kwargs: dict[str, Any]
    ) -> Iterator[GenerationChunk]:
        raise NotImplementedError

    def _start(
        self, messages: Sequence[ChatMessage], kwargs: dict[str, Any]
    ) -> Iterator[GenerationChunk]:
        """Begin generation now (input errors raise here, not at the first ``next``)."""
        cfg = self._generation(kwargs)
        return prime(self._last.track(self._stream_messages(messages, cfg, kwargs)))

    # ------------------------------------------------------------------ sync API
    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return _collect(self._start([_user(prompt)], kwargs))

    @llm_completion_callback()
    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        return _completions(self._start([_user(prompt)], kwargs))

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return _to_chat(_collect(self._start(messages, kwargs)))

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        return (_to_chat(r) for r in _completions(self._start(messages, kwargs)))

    # ------------------------------------------------------------------ async API
    @llm_completion_callback()
    async def acomplete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponse:
        return await asyncio.to_thread(lambda: _collect(self._start([_user(prompt)], kwargs)))

    @llm_completion_callback()
    async def astream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseAsyncGen:
        stream = aiter_in_thread(lambda: _completions(self._start([_user(prompt)], kwargs)))
        return await aprime(stream)  # type: ignore[return-value]

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return await asyncio.to_thread(lambda: _to_chat(_collect(self._start(messages, kwargs))))

    @llm_chat_callback()
    async def astream_chat(
        self, messages: Sequence[ChatMessage], **kwargs: Any
    ) -> ChatResponseAsyncGen:
        stream = aiter_in_thread(
            lambda: (_to_chat(r) for r in _completions(self._start(messages, kwargs)))
        )
        return await aprime(stream)  # type: ignore[return-value]


class E2LLM(ExpansionFields, PrefilterFields, _PipelineLLM):
    """An E2LLM model as a LlamaIndex LLM: long context in, compressed to one token per chunk.

    Messages are read as by LangChain's ``E2LLMChat`` (``core.chat.chat_request``); the
    prompt is split into context and question by ``core.prompt.split_prompt``, which knows
    LlamaIndex's QA, refine and tree-summarize templates (so ``compact`` engines work).
    For one chunk per node use :class:`E2LLMSynthesizer`. The ``expand_top_k`` chunks
    closest to the question (per call too) are also shown as raw text, cited in
    ``additional_kwargs["sources"]`` and :attr:`last_sources` (README, LlamaIndex).

    Example:
        >>> llm = E2LLM(max_new_tokens=64)  # loads nothing yet
        >>> llm.complete("<long report>\\n\\nWho wrote the report?").text  # doctest: +SKIP
        >>> index.as_query_engine(llm=llm).query("Who wrote it?")  # doctest: +SKIP
    """

    @classmethod
    def class_name(cls) -> str:
        return "E2LLM"

    @property
    def metadata(self) -> LLMMetadata:
        """Model facts; reading them loads the pipeline (the window depends on the decoder)."""
        return LLMMetadata(
            context_window=context_window(self.pipeline, self.max_new_tokens),
            num_output=self.max_new_tokens,
            is_chat_model=self.is_chat_model,
            model_name=f"e2llm:{self.checkpoint or 'default'}",
        )

    def _stream_messages(
        self, messages: Sequence[ChatMessage], cfg: GenerationConfig, kwargs: dict[str, Any]
    ) -> Iterator[GenerationChunk]:
        request = chat_request(_turns(messages), split_above=0)  # the core rule, as LangChain's
        check_question(self.pipeline, request.question, cfg.max_new_tokens)
        corpus = self.prefilter(build_corpus(self.pipeline, request.sources), request.question)
        top_k = kwargs.get("expand_top_k", self.expand_top_k)
        return self.pipeline.stream(
            corpus, request.question, cfg, expand_top_k=top_k, **request.prompt
        )

    def prefilter(self, corpus: EncodedCorpus, question: str) -> EncodedCorpus:
        """``corpus`` reduced by the ``top_k`` / ``score_threshold`` prefilter, if one is set."""
        return self.prefilter_corpus(self.pipeline, corpus, question)


class PlainDecoderLLM(_PipelineLLM):
    """The pipeline's decoder reading the raw prompt (no encoder, no adapter, LoRA off).

    The ordinary-RAG baseline; a prompt over the decoder window raises a ``ValueError``.

    Example:
        >>> llm = PlainDecoderLLM(pipeline=E2LLM().pipeline)  # doctest: +SKIP
        >>> index.as_query_engine(llm=llm).query("Who wrote it?")  # doctest: +SKIP
    """

    @classmethod
    def class_name(cls) -> str:
        return "PlainDecoderLLM"

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(
            context_window=self.pipeline.max_positions,
            num_output=self.max_new_tokens,
            is_chat_model=self.is_chat_model,
            model_name=f"plain-decoder:{self.pipeline.config.decoder.name_or_path}",
        )

    def _stream_messages(
        self, messages: Sequence[ChatMessage], cfg: GenerationConfig, kwargs: dict[str, Any]
    ) -> Iterator[GenerationChunk]:
        turns = [{"role": _role(m), "content": m.content or ""} for m in messages]
        return self.pipeline.stream_text(turns, cfg)  # over the window: ValueError now


# ---------------------------------------------------------------------- conversions
def _user(prompt: str) -> ChatMessage:
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a str, got {type(prompt).__name__}.")
    return ChatMessage(role=MessageRole.USER, content=prompt)


def _role(message: ChatMessage) -> str:
    role = message.role.value if isinstance(message.role, MessageRole) else str(message.role)
    if role not in ROLE_NAMES:
        raise TypeError(
            f"E2LLM reads system, user and assistant messages, got a {role!r} one (it does not "
            "support tool calling)."
        )
    return ROLE_NAMES[role]


def _turns(messages: Sequence[ChatMessage]) -> list[tuple[str, str]]:
    """Chat messages as ``(role, text)`` turns."""
    if not messages:
        raise ValueError("No messages given; pass at least one user message.")
    return [(_role(m), m.content or "") for m in messages]


def _collect(chunks: Iterator[GenerationChunk]) -> CompletionResponse:
    pieces, last = [], GenerationChunk("")
    for last in chunks:
        pieces.append(last.text)
    return CompletionResponse(text="".join(pieces), additional_kwargs=last.metadata())


def _completions(chunks: Iterator[GenerationChunk]) -> Generator[CompletionResponse, None, None]:
    """Streamed responses: ``text`` so far and ``delta``; the last one carries usage."""
    text = ""
    for chunk in chunks:
        text += chunk.text
        extra = chunk.metadata() if chunk.finish_reason is not None else {}
        yield CompletionResponse(text=text, delta=chunk.text, additional_kwargs=extra)


def _to_chat(response: CompletionResponse) -> ChatResponse:
    message = ChatMessage(role=MessageRole.ASSISTANT, content=response.text)
    return ChatResponse(
        message=message, delta=response.delta, additional_kwargs=response.additional_kwargs
    )
