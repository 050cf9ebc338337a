"""bf16 inference: the mode reaches every encoder and decoder forward, and only those."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch

from e2llm_integrations.core.options import GenerationConfig
from e2llm_integrations.core.pipeline import E2LLMPipeline
from e2llm_integrations.core.precision import check_autocast, cpu_has_fast_bf16
from tests.conftest import tiny_config


@pytest.fixture(scope="module")
def pipe(tiny_model_dirs: dict[str, str]) -> E2LLMPipeline:
    """A private pipeline: switching its mode must not touch the session's tiny one."""
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return E2LLMPipeline.from_pretrained(
            config=tiny_config(tiny_model_dirs), device="cpu", autocast="off"
        )


def _record_autocast(module: torch.nn.Module, seen: list[bool]) -> Any:
    def hook(*_: Any) -> None:
        seen.append(torch.is_autocast_enabled("cpu"))

    return module.register_forward_pre_hook(hook)


@pytest.mark.parametrize(
    ("mode", "encoder_bf16", "decoder_bf16"),
    [
        ("bf16", True, True),
        ("off", False, False),
        # auto on a CPU: the encoder where the CPU has bf16 instructions, never the decoder
        ("auto", cpu_has_fast_bf16(), False),
    ],
)
def test_mode_reaches_encoder_and_decoder_forwards(
    pipe: E2LLMPipeline, mode: str, encoder_bf16: bool, decoder_bf16: bool
) -> None:
    pipe.model.set_autocast(mode)  # type: ignore[arg-type]
    enc_seen: list[bool] = []
    dec_seen: list[bool] = []
    hooks = [
        _record_autocast(pipe.model.encoder.model, enc_seen),
        _record_autocast(pipe.model.decoder, dec_seen),
    ]
    try:
        precision = pipe.precision
        corpus = pipe.encode(["Lisbon is the capital of Portugal. " * 6])
        stream = pipe.stream(corpus, "What is the capital?", GenerationConfig(max_new_tokens=4))
        between_yields = [torch.is_autocast_enabled("cpu") for _ in stream]
    finally:
        for h in hooks:
            h.remove()
        pipe.model.set_autocast("off")
    names = {True: "bf16", False: "fp32"}
    assert precision == {"encoder": names[encoder_bf16], "decoder": names[decoder_bf16]}
    assert enc_seen and set(enc_seen) == {encoder_bf16}
    assert dec_seen and set(dec_seen) == {decoder_bf16}
    assert not any(between_yields)  # the caller's code never runs under autocast


def test_bf16_features_come_back_as_float32(pipe: E2LLMPipeline) -> None:
    pipe.model.set_autocast("bf16")
    try:
        feats, _ = pipe.model.encoder.encode(["A sentence to encode."])
    finally:
        pipe.model.set_autocast("off")
    assert feats.dtype == torch.float32
    off, _ = pipe.model.encoder.encode(["A sentence to encode."])
    assert torch.allclose(feats, off, atol=0.1) and not torch.equal(feats, off)


def test_model_reports_its_mode(pipe: E2LLMPipeline) -> None:
    assert pipe.model.autocast == "off"
    pipe.model.set_autocast("auto")
    try:
        assert pipe.model.autocast == "auto"
    finally:
        pipe.model.set_autocast("off")


@pytest.mark.parametrize("bad", ["fp16", "BF16", None, 1])
def test_unknown_modes_are_refused_with_the_choices(bad: object) -> None:
    with pytest.raises(ValueError, match="'auto', 'bf16', 'off'"):
        check_autocast(bad)


def test_from_pretrained_refuses_a_bad_mode(tiny_model_dirs: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="autocast must be one of"):
        E2LLMPipeline.from_pretrained(config=tiny_config(tiny_model_dirs), autocast="fp16")  # type: ignore[arg-type]
