"""Shared plumbing for chat models on an :class:`E2LLMPipeline`: subclasses implement
:meth:`PipelineChatModel._open`; this base makes it ``_stream``, ``_generate`` and ``_astream``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LangSmithParams
from langchain_core.language_models.chat_models import generate_from_stream
from langchain_core.messages import AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from pydantic import ConfigDict, Field

from .._fields import ModelSourceFields, core_field, core_validator, generation_config
from ..core.expansion import Source
from ..core.generation import GenerationConfig, Usage
from ..core.pipeline import E2LLMPipeline
from ..core.runtime import TokenStream, aiter_in_thread

GENERATION_FIELDS = {
    "max_tokens": "max_new_tokens",
    "temperature": "temperature",
    "top_p": "top_p",
    "stop": "stop",
    "seed": "seed",
}
"""The chat models' decoding fields and the core ``GenerationConfig`` option each one is."""


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


class PipelineChatModel(PipelineSource, BaseChatModel):
    """Fields, tracing params and (a)sync generation shared by the pipeline chat models.

    The decoding fields are the core ``GenerationConfig`` (defaults and checks); LangChain
    names ``max_new_tokens`` ``max_tokens``, and ``stop=None`` means no stop strings.
    """

    model_config = ConfigDict(populate_by_name=True, arbitrary_types_allowed=True)

    call_options: ClassVar[frozenset[str]] = frozenset(
        {"temperature", "max_tokens", "top_p", "seed", "model", "stream"}
    )
    name_prefix: ClassVar[str] = "e2llm"

    model_name: str | None = Field(
        default=None,
        alias="model",
        description="Name reported in metadata and traces; defaults to one made from checkpoint.",
    )
    temperature: float = core_field(GenerationConfig, "temperature")
    max_tokens: int = core_field(GenerationConfig, "max_new_tokens")
    top_p: float = core_field(GenerationConfig, "top_p")
    stop: list[str] | None = core_field(GenerationConfig, "stop", default=None)
    seed: int | None = core_field(GenerationConfig, "seed")
    _check_generation = core_validator(GenerationConfig, **GENERATION_FIELDS)
    streaming: bool = Field(default=False, description="Generate through the streaming path.")

    @property
    def resolved_model_name(self) -> str:
        """The configured ``model_name``, else the prefix plus the checkpoint folder name."""
        if self.model_name:
            return self.model_name
        suffix = Path(self.checkpoint).name if self.checkpoint else "default"
        return f"{self.name_prefix}:{suffix}"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        decoding = {field: getattr(self, field) for field in GENERATION_FIELDS}
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
        """Decoding options: per-call values over the instance's."""
        unknown = sorted(set(options) - self.call_options)
        if unknown:
            raise TypeError(
                f"{type(self).__name__} got unsupported call option(s) {unknown}; it accepts "
                f"{sorted(self.call_options - {'stream'})} (no tools or structured output)."
            )
        model = options.get("model")
        if model and model != self.resolved_model_name:
            raise ValueError(
                f"{type(self).__name__} cannot switch models per call (got model={model!r}); "
                "build another instance with checkpoint=... instead."
            )
        overrides = options if stop is None else {**options, "stop": stop}  # LangChain's stop=
        return generation_config(self, GENERATION_FIELDS, overrides)

    def _open(
        self, messages: list[BaseMessage], stop: list[str] | None, options: dict[str, Any]
    ) -> tuple[TokenStream, int]:
        """Validate a call; return the core token stream and its decoder input positions."""
        raise NotImplementedError

    def response_metadata(
        self, finish_reason: str, usage: Usage, sources: Sequence[Source] = ()
    ) -> dict[str, Any]:
        """``response_metadata`` of the final message (``sources``: the expanded chunks)."""
        return {
            "model_name": self.resolved_model_name,
            "finish_reason": finish_reason,
            "compression_ratio": round(usage.compression_ratio, 3),
            "context_tokens": usage.context_tokens,
            "soft_tokens": usage.soft_tokens,
            "n_chunks": usage.n_chunks,
        }

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
        stream, pending = self._open(messages, stop, kwargs)
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
