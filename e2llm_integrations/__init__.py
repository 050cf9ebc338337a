"""E2LLM long-context models for LangChain and LlamaIndex."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("e2llm-integrations")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

from .core import (
    E2LLMConfig,
    E2LLMModel,
    E2LLMPipeline,
    EncodedCorpus,
    GenerationConfig,
)

__all__ = [
    "E2LLMConfig",
    "E2LLMModel",
    "E2LLMPipeline",
    "EncodedCorpus",
    "GenerationConfig",
    "__version__",
]
