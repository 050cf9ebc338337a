"""Core E2LLM: chunking, encoder, adapter, model, checkpoints, pipeline.

This subpackage never imports LangChain, LlamaIndex or FAISS.
"""

from .chunking import Chunk, Chunker
from .config import (
    AdapterConfig,
    ChunkingConfig,
    DecoderConfig,
    E2LLMConfig,
    EncoderConfig,
    LoraSettings,
)
from .corpus import EncodedCorpus
from .generation import GenerationChunk, GenerationConfig, Usage
from .model import E2LLMModel, GenerationResult
from .options import ExpansionOptions, ModelOptions, PrefilterOptions
from .pipeline import E2LLMPipeline

__all__ = [
    "AdapterConfig",
    "Chunk",
    "Chunker",
    "ChunkingConfig",
    "DecoderConfig",
    "E2LLMConfig",
    "E2LLMModel",
    "E2LLMPipeline",
    "EncodedCorpus",
    "EncoderConfig",
    "ExpansionOptions",
    "GenerationChunk",
    "GenerationConfig",
    "GenerationResult",
    "LoraSettings",
    "ModelOptions",
    "PrefilterOptions",
    "Usage",
]
