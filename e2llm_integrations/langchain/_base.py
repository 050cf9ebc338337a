"""Shared plumbing for chat models on an :class:`E2LLMPipeline`: subclasses implement
:meth:`PipelineChatModel._open`; this base makes it ``_stream``, ``_generate`` and ``_astream``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, ClassVar

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LangSmithParams
from langchain_core.language_models.chat_models import generate_from_stream
from langchain_core.messages import AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from pydantic import ConfigDict, Field

from .._fields import ChatDecodingFields, ModelSourceFields, check_call_options
from ..core.expansion import Source
from ..core.generation import GenerationConfig, Usage
from ..core.pipeline import E2LLMPipeline
from ..core.runtime import TokenStream, aiter_in_thread


class PipelineSource(ModelSourceFields):
    """Where a LangChain component gets its E2LLM pipeline: the core model options or one given."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    pipeline: E2LLMPipeline | None = Field(
        default=None,
        exclude=True,
        repr=False,
        description="An already-built pipeline to use instead of loading `checkpoint`.",
    )

    def get_pipeline(self) -> E2LLMPipeline:
        """The injected pipeline, or the shared one for the model options (loads once)."""
        return self.pipeline if self.pipeline is not None else self.load_pipeline()


class PipelineChatModel(ChatDecodingFields, PipelineSource, BaseChatModel):
    """Fields, tracing params and (a)sync generation shared by the pipeline chat models.

    The decoding fields are the core ``GenerationConfig`` (defaults and checks); LangChain
    names ``max_new_tokens`` ``max_tokens``, and ``stop=None`` means no stop strings.
    ``response_metadata`` cites the expanded chunks where ``cites_sources``.
    """

    model_config = ConfigDict(populate_by_name=True, arbitrary_types_allowed=True)

    call_options: ClassVar[frozenset[str]] = frozenset(
        {"temperature", "max_tokens", "top_p", "seed", "model", "stream"}
    )
    name_prefix: ClassVar[str] = "e2llm"
    cites_sources: ClassVar[bool] = False

    model_name: str | None = Field(
        default=None,
        alias="model",
        description="Name reported in metadata and traces; defaults to one made from checkpoint.",
    )
    streaming: bool = Field(default=False, description="Generate through the streaming path.")

    @property
    def resolved_model_name(self) -> str:
        """The configured ``model_name``, else the prefix plus the checkpoint folder name."""
        return self.model_name or self.model_label(self.name_prefix)

    @property
    def _identifying_params(self) -> dict[str, Any]:
        decoding = {field: getattr(self, field) for field in self.generation_fields}
        return {"model_name": self.resolved_model_name, "checkpoint": self.checkpoint, **decoding}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(
            ls_provider="e2llm",
            ls_model_name=kwargs.get("model") or self.resolved_model_name,
            ls_model_type="chat",
            ls_temperature=kwargs.get("temperature", self.temperature),
            ls_max_tokens=kwargs.get("max_tokens", self.max_tokens),
        )
        stops = stop if stop is not None else self.stop
        if stops:
            params["ls_stop"] = list(stops)
        return params

    def generation_config(
        self, stop: list[str] | None, options: dict[str, Any]
    ) -> GenerationConfig:
        """Decoding options: per-call values over the instance's (unknown options refused)."""
        check_call_options(self, options, self.call_options, self.resolved_model_name)
        overrides = options if stop is None else {**options, "stop": stop}  # LangChain's stop=
        return self.decoding(overrides)

    def _open(
        self, messages: list[BaseMessage], stop: list[str] | None, options: dict[str, Any]
    ) -> TokenStream:
        """Validate a call; return the core token stream (its usage known up front)."""
        raise NotImplementedError

    def response_metadata(
        self, finish_reason: str, usage: Usage, sources: Sequence[Source] = ()
    ) -> dict[str, Any]:
        """``response_metadata`` of the final message (``sources``: the expanded chunks)."""
        cited = sources if self.cites_sources else None
        summary = usage.summary(cited)
        return {"model_name": self.resolved_model_name, "finish_reason": finish_reason, **summary}

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return generate_from_stream(self._stream(messages, stop, None, **kwargs))

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        stream = self._open(messages, stop, kwargs)
        pending = stream.usage.input_positions
        with contextlib.closing(stream):  # a stream left early stops decoding at once
            for piece in stream:
                if piece.usage is None:
                    usage = usage_metadata(pending, 0) if pending else None
                    chunk = ChatGenerationChunk(
                        message=AIMessageChunk(content=piece.text, usage_metadata=usage)
                    )
                    pending = 0  # input tokens go on the first chunk only
                    if run_manager:
                        run_manager.on_llm_new_token(piece.text, chunk=chunk)
                    yield chunk
                    continue
                finish = piece.finish_reason or "stop"
                last = AIMessageChunk(
                    content="",
                    chunk_position="last",
                    usage_metadata=usage_metadata(pending, piece.usage.output_tokens),
                    response_metadata=self.response_metadata(finish, piece.usage, piece.sources),
                )
                yield ChatGenerationChunk(message=last, generation_info={"finish_reason": finish})

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        # The sync stream runs in a worker thread; its chunks cross to the event loop.
        chunks = aiter_in_thread(lambda: self._stream(messages, stop, None, **kwargs))
        async with contextlib.aclosing(chunks):  # leaving early stops the worker
            async for chunk in chunks:
                if run_manager and chunk.text:
                    await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                yield chunk


def usage_metadata(input_tokens: int, output_tokens: int) -> UsageMetadata:
    """LangChain usage counts."""
    return UsageMetadata(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        total_tokens=input_tokens + output_tokens,
    )
