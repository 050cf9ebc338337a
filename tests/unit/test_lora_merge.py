"""The decoder LoRA folded into the base weights for inference (``E2LLMModel.merge_lora``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from e2llm_integrations.core import E2LLMModel, E2LLMPipeline, GenerationConfig
from e2llm_integrations.core.checkpoint import DECODER_LORA_NAME

from ..conftest import tiny_config

TEXT = "Cats sleep in the sun. Dogs bark at the postman. " * 6


@pytest.fixture
def model(tiny_model_dirs) -> E2LLMModel:  # type: ignore[no-untyped-def]
    """A model of the test's own with a non-zero LoRA (B starts at zero: merging would be a no-op)."""
    torch.manual_seed(0)
    model = E2LLMModel.from_config(tiny_config(tiny_model_dirs), device="cpu")
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=generator) * 0.5)
    return model


def _logits(model: E2LLMModel, base_only: bool = False) -> torch.Tensor:
    ids = torch.arange(3, 40).unsqueeze(0)
    with torch.inference_mode(), model.base_only(base_only):
        return model.decoder(input_ids=ids).logits


def _base_weight(model: E2LLMModel) -> torch.Tensor:
    name = next(
        n for n, _ in model.decoder.named_parameters() if n.endswith("q_proj.base_layer.weight")
    )
    return dict(model.decoder.named_parameters())[name].detach().clone()


def test_merged_decoder_computes_what_the_unmerged_one_does(model: E2LLMModel) -> None:
    before, weight = _logits(model), _base_weight(model)
    assert model.merge_lora() is True and model.lora_merged
    assert not torch.allclose(_base_weight(model), weight)  # the LoRA went into the weights
    torch.testing.assert_close(_logits(model), before, rtol=1e-4, atol=1e-4)
    assert model.merge_lora(False) is False
    torch.testing.assert_close(_base_weight(model), weight, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(_logits(model), before, rtol=1e-4, atol=1e-4)


def test_base_only_runs_the_base_llm_on_a_merged_model_and_merges_again(
    model: E2LLMModel,
) -> None:
    base, adapted = _logits(model, base_only=True), _logits(model)
    assert not torch.allclose(base, adapted, atol=1e-3)  # the LoRA matters here
    model.merge_lora()
    torch.testing.assert_close(_logits(model, base_only=True), base, rtol=1e-4, atol=1e-4)
    assert model.lora_merged
    torch.testing.assert_close(_logits(model), adapted, rtol=1e-4, atol=1e-4)


def test_half_precision_weights_are_not_merged(model: E2LLMModel) -> None:
    model.decoder.to(torch.bfloat16)
    weight = _base_weight(model)
    assert model.merge_lora() is False and not model.lora_merged
    torch.testing.assert_close(_base_weight(model), weight, rtol=0, atol=0)


def test_a_merged_model_saves_the_same_lora(model: E2LLMModel, tmp_path: Path) -> None:
    unmerged = model.save_pretrained(tmp_path / "unmerged")
    model.merge_lora()
    merged = model.save_pretrained(tmp_path / "merged")
    assert (merged / DECODER_LORA_NAME).read_bytes() == (unmerged / DECODER_LORA_NAME).read_bytes()


def test_from_pretrained_answers_merged_and_as_the_unmerged_model(
    model: E2LLMModel, tmp_path: Path
) -> None:
    path = model.save_pretrained(tmp_path / "ckpt")
    pipe = E2LLMPipeline.from_pretrained(path, device="cpu", autocast="off")
    assert pipe.model.lora_merged
    plain = E2LLMPipeline(model)
    assert not model.lora_merged
    gen = GenerationConfig(max_new_tokens=12)
    corpus = plain.encode([TEXT])
    assert pipe.ask(corpus, "Who barks?", gen).text == plain.ask(corpus, "Who barks?", gen).text
