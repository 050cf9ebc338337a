"""Where a LlamaIndex wrapper gets its pipeline: the core model options, or one given."""

from __future__ import annotations

from typing import Any

from llama_index.core.bridge.pydantic import PrivateAttr

from .._fields import ModelSourceFields
from ..core.pipeline import E2LLMPipeline


class PipelineFields(ModelSourceFields):
    """The core model options as fields; ``pipeline=`` (a loaded one) wins over them."""

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
