"""One option source: every wrapper's defaults and checks are the core's.

``core.options`` defines each option once. The tables below name, for every wrapper,
which of its fields is which core option; a default or a rule changed in a wrapper
without the core (or the other way round, for a wrapper that stops deriving its field)
fails here.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

import pytest

from e2llm_integrations.core.backend import BackendOptions
from e2llm_integrations.core.options import (
    DEFAULT_EXPAND_TOP_K,
    ExpansionOptions,
    GenerationConfig,
    ModelOptions,
    PrefilterOptions,
    check_option,
    option_default,
    option_help,
)
from e2llm_integrations.core.prompt import LONG_PROMPT_CHARS

GEN = {n: n for n in ("max_new_tokens", "temperature", "top_p", "stop", "seed")}
LANGCHAIN_GEN = {**GEN, "max_tokens": "max_new_tokens"}
del LANGCHAIN_GEN["max_new_tokens"]
MODEL = {n: n for n in ("checkpoint", "device", "trust_remote_code")}
BACKEND = {"backend": "backend", "base_url": "base_url"}
PREFILTER = {"top_k": "top_k", "score_threshold": "score_threshold"}
EXPANSION = {"expand_top_k": "expand_top_k"}


def _wrappers() -> list[tuple[Any, type, dict[str, str]]]:
    from e2llm_integrations.langchain import E2LLMChat, E2LLMDocumentCompressor, PlainDecoderChat
    from e2llm_integrations.llama_index import E2LLM, E2LLMNodePostprocessor, PlainDecoderLLM

    return [
        (E2LLMChat, GenerationConfig, LANGCHAIN_GEN),
        (E2LLMChat, ModelOptions, MODEL),
        (E2LLMChat, BackendOptions, BACKEND),
        (E2LLMChat, ExpansionOptions, EXPANSION),
        (PlainDecoderChat, GenerationConfig, LANGCHAIN_GEN),
        (PlainDecoderChat, ModelOptions, MODEL),
        (PlainDecoderChat, BackendOptions, BACKEND),
        (E2LLMDocumentCompressor, ModelOptions, MODEL),
        (E2LLMDocumentCompressor, BackendOptions, BACKEND),
        (E2LLMDocumentCompressor, PrefilterOptions, PREFILTER),
        (E2LLM, GenerationConfig, GEN),
        (E2LLM, ModelOptions, MODEL),
        (E2LLM, BackendOptions, BACKEND),
        (E2LLM, PrefilterOptions, PREFILTER),
        (E2LLM, ExpansionOptions, EXPANSION),
        (PlainDecoderLLM, GenerationConfig, GEN),
        (PlainDecoderLLM, ModelOptions, MODEL),
        (PlainDecoderLLM, BackendOptions, BACKEND),
        (E2LLMNodePostprocessor, ModelOptions, MODEL),
        (E2LLMNodePostprocessor, BackendOptions, BACKEND),
        (E2LLMNodePostprocessor, PrefilterOptions, PREFILTER),
    ]


WRAPPER_FIELDS = [
    pytest.param(cls, options, field, core, id=f"{cls.__name__}.{field}")
    for cls, options, names in _wrappers()
    for field, core in names.items()
]

BAD_VALUES: dict[str, list[Any]] = {
    "max_new_tokens": [0, -3, True],
    "temperature": [-0.5, math.nan],
    "top_p": [0.0, 1.5],
    "stop": [[""], [3]],
    "seed": [1.5],
    "checkpoint": ["  ", 3],
    "device": ["gpu", 0.5],
    "trust_remote_code": ["yes"],
    "top_k": [0, 2.5],
    "score_threshold": [1.5, math.inf],
    "expand_top_k": [-1, True],
    "backend": ["gpu"],
    "base_url": [],  # checked with backend, by the model validator
}


@pytest.mark.parametrize(("cls", "options", "field", "core"), WRAPPER_FIELDS)
def test_wrapper_default_is_the_core_default(
    cls: Any, options: type, field: str, core: str
) -> None:
    info = cls.model_fields[field]
    default = info.get_default(call_default_factory=True)
    # The framework may spell "none" its own way (stop=None or []): same value to the core.
    assert check_option(options, core, default) == option_default(options, core)
    assert info.description == option_help(options, core)


@pytest.mark.parametrize(("cls", "options", "field", "core"), WRAPPER_FIELDS)
def test_wrapper_refuses_what_the_core_refuses(
    cls: Any, options: type, field: str, core: str
) -> None:
    for bad in BAD_VALUES[core]:
        with pytest.raises((TypeError, ValueError)) as expected:
            check_option(options, core, bad)
        with pytest.raises(type(expected.value), match=re.escape(str(expected.value))):
            cls(**{field: bad})


def test_wrapper_decoding_options_build_the_default_config() -> None:
    from e2llm_integrations.langchain import E2LLMChat
    from e2llm_integrations.llama_index import E2LLM

    assert E2LLMChat().generation_config(None, {}) == GenerationConfig()
    assert E2LLM()._generation({}) == GenerationConfig()
    assert E2LLMChat().auto_context_chars == LONG_PROMPT_CHARS


def test_synthesizer_inherits_the_llm_expansion(tiny_pipeline: Any) -> None:
    from e2llm_integrations.llama_index import E2LLMSynthesizer

    synth = E2LLMSynthesizer(pipeline=tiny_pipeline)
    assert (
        synth.expand_top_k
        == DEFAULT_EXPAND_TOP_K
        == option_default(ExpansionOptions, "expand_top_k")
    )


def test_cli_flag_defaults_are_the_core_defaults() -> None:
    from e2llm_integrations.cli import build_parser

    args = build_parser().parse_args(["ask", "--docs", "a.txt", "--", "q"])
    assert args.max_new_tokens == option_default(GenerationConfig, "max_new_tokens")
    assert args.temperature == option_default(GenerationConfig, "temperature")
    assert args.checkpoint == option_default(ModelOptions, "checkpoint")
    assert args.device == option_default(ModelOptions, "device")
    assert args.expand == option_default(ExpansionOptions, "expand_top_k")
    assert args.on_overflow == option_default(ExpansionOptions, "on_overflow")


def test_prefilter_and_eval_source_check_by_the_core_rules() -> None:
    from e2llm_integrations.eval.common import ModelSource
    from e2llm_integrations.eval.systems import SystemConfig
    from e2llm_integrations.retrieval import ChunkPrefilter

    pre = ChunkPrefilter()
    assert (pre.top_k, pre.score_threshold) == dataclasses.astuple(PrefilterOptions())
    with pytest.raises(ValueError, match="top_k must be >= 1"):
        ChunkPrefilter(top_k=0)
    with pytest.raises(TypeError, match="top_k must be a whole number"):
        ChunkPrefilter(top_k=2.5)  # type: ignore[arg-type]
    assert ChunkPrefilter.from_options(PrefilterOptions()) is None
    source = ModelSource()
    assert (source.checkpoint, source.device) == (ModelOptions().checkpoint, ModelOptions().device)
    with pytest.raises(ValueError, match="not a torch device"):
        ModelSource(device="gpu")
    with pytest.raises(ValueError, match="max_new_tokens must be >= 1"):
        SystemConfig(max_new_tokens=0)


def test_options_are_frozen_normalised_and_reject_unknown_names() -> None:
    cfg = GenerationConfig(stop="END")
    assert cfg.stop == ("END",)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.max_new_tokens = 3  # type: ignore[misc]
    assert ExpansionOptions(expand_top_k=None).expand_top_k == DEFAULT_EXPAND_TOP_K
    assert ModelOptions(checkpoint=__import__("pathlib").Path("ckpt")).checkpoint == "ckpt"
    assert PrefilterOptions().active is False and PrefilterOptions(top_k=3).active
    with pytest.raises(KeyError, match="no option 'max_tokens'"):
        option_default(GenerationConfig, "max_tokens")
    with pytest.raises(ValueError, match="on_overflow must be"):
        ExpansionOptions(on_overflow="truncate")  # type: ignore[arg-type]
