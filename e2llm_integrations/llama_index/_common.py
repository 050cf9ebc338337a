"""Where a LlamaIndex wrapper gets its pipeline: the core model options, or one given.

Stream priming (errors at call time) is the core's, :func:`~e2llm_integrations.core.runtime.prime`.
"""

from __future__ import annotations

from typing import Any

from llama_index.core.bridge.pydantic import PrivateAttr

from .._fields import ModelSourceFields
from ..core.pipeline import E2LLMPipeline


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
