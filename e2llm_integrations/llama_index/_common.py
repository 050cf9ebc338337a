"""Helpers shared by the LlamaIndex wrappers: option fields and stream priming.

How a plain prompt is split into context (read as compressed chunks) and question
(read as text) is the core rule, :func:`~e2llm_integrations.core.prompt.split_prompt`
(the LangChain wrapper uses it too).
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from typing import Any, TypeVar

from llama_index.core.bridge.pydantic import BaseModel, PrivateAttr, model_validator

from .._fields import core_field, core_validator
from ..core.backend import BackendName, BackendOptions, backend_pipeline
from ..core.options import ModelOptions, PrefilterOptions
from ..core.pipeline import E2LLMPipeline
from ..core.registry import get_pipeline

T = TypeVar("T")


# ---------------------------------------------------------------------- option fields
class PipelineFields(BaseModel):
    """Where a LlamaIndex component gets its pipeline: the core ``ModelOptions``, or one given.

    ``pipeline=`` (a loaded :class:`E2LLMPipeline`) wins over the model options.
    """

    checkpoint: str | None = core_field(ModelOptions, "checkpoint")
    device: str | None = core_field(ModelOptions, "device")
    trust_remote_code: bool | None = core_field(ModelOptions, "trust_remote_code")
    _check_model_options = core_validator(ModelOptions, "checkpoint", "device", "trust_remote_code")
    backend: BackendName = core_field(BackendOptions, "backend")
    base_url: str | None = core_field(BackendOptions, "base_url")
    _check_backend = core_validator(BackendOptions, "backend")

    _pipeline: E2LLMPipeline | None = PrivateAttr(default=None)

    def __init__(self, pipeline: E2LLMPipeline | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._pipeline = pipeline

    @property
    def pipeline(self) -> E2LLMPipeline:
        """The pipeline, loaded (and shared through the core registry) on first use."""
        if self._pipeline is None:
            options = self.backend_options
            if options.remote:  # the decoder runs in vLLM: a pipeline of its own
                self._pipeline = backend_pipeline(
                    self.checkpoint, self.device, self.trust_remote_code, options
                )
            else:
                self._pipeline = get_pipeline(self.checkpoint, self.device, self.trust_remote_code)
        return self._pipeline

    @property
    def backend_options(self) -> BackendOptions:
        """Where the decoder runs (``backend``, ``base_url``; see ``docs/SERVING.md``)."""
        return BackendOptions(backend=self.backend, base_url=self.base_url)

    @model_validator(mode="after")
    def _check_backend_options(self) -> Any:
        self.backend_options  # noqa: B018  (raises for base_url without backend="vllm")
        return self


class PrefilterFields(BaseModel):
    """The core ``PrefilterOptions`` as fields: which chunks to keep by similarity."""

    top_k: int | None = core_field(PrefilterOptions, "top_k")
    score_threshold: float | None = core_field(PrefilterOptions, "score_threshold")
    _check_prefilter_options = core_validator(PrefilterOptions, "top_k", "score_threshold")

    @property
    def prefilter_options(self) -> PrefilterOptions:
        return PrefilterOptions(self.top_k, self.score_threshold)


# ---------------------------------------------------------------------- streams
def prime(iterator: Iterator[T]) -> Iterator[T]:
    """Run ``iterator`` up to its first item now, so that its errors raise at call time."""
    try:
        first = next(iterator)
    except StopIteration:
        return iter(())
    return itertools.chain([first], iterator)


async def aprime(stream: AsyncIterator[T]) -> AsyncIterator[T]:
    """Await ``stream``'s first item now (raising its errors), then return the full stream."""
    try:
        first = [await stream.__anext__()]
    except StopAsyncIteration:
        first = []

    async def rest() -> AsyncIterator[T]:
        for item in first:
            yield item
        async for item in stream:
            yield item

    return rest()
