"""LangChain's standard chat-model suites over the tiny random-weight pipeline.

``ChatModelUnitTests`` checks construction, standard params and init time;
``ChatModelIntegrationTests`` (run here against the tiny in-memory model, so it stays a
unit test) exercises invoke/stream/batch/async/usage/stop through the real code path.
Tool calling, structured output and multimodal inputs are not claimed and are skipped.
Both E2LLMChat and the PlainDecoderChat baseline run both suites.
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_tests.integration_tests import ChatModelIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests

from e2llm_integrations.core import E2LLMPipeline
from e2llm_integrations.langchain import E2LLMChat, PlainDecoderChat


class _TinyParams:
    tiny: E2LLMPipeline | None = None

    @pytest.fixture(autouse=True)
    def _inject(self, tiny_pipeline: E2LLMPipeline) -> None:
        type(self).tiny = tiny_pipeline

    @property
    def chat_model_class(self) -> type[E2LLMChat]:
        return E2LLMChat

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"pipeline": type(self).tiny, "model": "e2llm-tiny", "seed": 0}

    @property
    def supports_model_override(self) -> bool:
        return False


class TestE2LLMChatUnitStandard(_TinyParams, ChatModelUnitTests):
    """Construction-level conformance."""


class TestE2LLMChatTinyStandard(_TinyParams, ChatModelIntegrationTests):
    """Call-level conformance against the tiny model (no network, seconds)."""

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {**super().chat_model_params, "max_tokens": 8}


class TestPlainDecoderChatUnitStandard(TestE2LLMChatUnitStandard):
    """The raw-text baseline model passes the same construction-level suite."""

    @property
    def chat_model_class(self) -> type[PlainDecoderChat]:
        return PlainDecoderChat


class TestPlainDecoderChatTinyStandard(TestE2LLMChatTinyStandard):
    """The raw-text baseline model passes the same call-level suite."""

    @property
    def chat_model_class(self) -> type[PlainDecoderChat]:
        return PlainDecoderChat
