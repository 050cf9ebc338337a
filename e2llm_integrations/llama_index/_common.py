"""Helpers shared by the LlamaIndex wrappers: where the pipeline comes from, stream priming.

How a plain prompt is split into context (read as compressed chunks) and question
(read as text) is the core rule, :func:`~e2llm_integrations.core.prompt.split_prompt`
(the LangChain wrapper uses it too).
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from typing import Any, TypeVar

from llama_index.core.bridge.pydantic import PrivateAttr

from .._fields import ModelSourceFields
from ..core.pipeline import E2LLMPipeline

T = TypeVar("T")


# ---------------------------------------------------------------------- option fields
class PipelineFields(ModelSourceFields):
    """Where a LlamaIndex component gets its pipeline: the core model options, or one given.

    ``pipeline=`` (a loaded :class:`E2LLMPipeline`) wins over the model options.
    """

    _pipeline: E2LLMPipeline | None = PrivateAttr(default=None)

    def __init__(self, pipeline: E2LLMPipeline | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._pipeline = pipeline

    @property
    def pipeline(self) -> E2LLMPipeline:
        """The pipeline, loaded (and shared through the core registry) on first use."""
        if self._pipeline is None:
            self._pipeline = self.load_pipeline()
        return self._pipeline


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
