"""init_checkpoint may change how features are made, never what the weights mean."""

from __future__ import annotations

import pytest

from e2llm_integrations.core.config import E2LLMConfig
from e2llm_integrations.core.training.run import init_differences


def _config(**encoder: object) -> dict[str, object]:
    cfg = E2LLMConfig().to_dict()
    cfg["encoder"] = {**cfg["encoder"], **encoder}  # type: ignore[dict-item]
    return cfg


def test_same_settings_have_no_differences() -> None:
    assert init_differences(_config(), _config()) == []


def test_more_windows_through_the_mlp_adapter_are_allowed() -> None:
    changed = init_differences(_config(), _config(tokens_per_chunk=4, batch_size=8))
    assert changed == ["encoder.batch_size", "encoder.tokens_per_chunk"]


def test_chunk_length_may_change() -> None:
    wanted = _config()
    wanted["chunking"] = {**wanted["chunking"], "chunk_tokens": 32}  # type: ignore[dict-item]
    assert init_differences(_config(), wanted) == ["chunking.chunk_tokens"]


def test_another_base_model_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"encoder\.name_or_path.*may differ"):
        init_differences(_config(), _config(name_or_path="thenlper/gte-large"))


def test_windows_through_a_pma_adapter_are_refused() -> None:
    saved, wanted = _config(), _config(tokens_per_chunk=4)
    for cfg in (saved, wanted):
        cfg["adapter"] = {**cfg["adapter"], "kind": "pma"}  # type: ignore[dict-item]
    with pytest.raises(ValueError, match=r"encoder\.tokens_per_chunk"):
        init_differences(saved, wanted)


def test_lora_settings_must_match() -> None:
    saved, wanted = _config(), _config()
    wanted["decoder"] = {**wanted["decoder"], "lora": None}  # type: ignore[dict-item]
    with pytest.raises(ValueError, match=r"decoder\.lora"):
        init_differences(saved, wanted)


def test_another_adapter_kind_starts_a_new_adapter() -> None:
    from e2llm_integrations.core.training.run import fresh_adapter

    saved, wanted = _config(), _config(tokens_per_chunk=4)
    wanted["adapter"] = {**wanted["adapter"], "kind": "pma", "num_heads": 8}  # type: ignore[dict-item]
    assert fresh_adapter(saved, wanted) and not fresh_adapter(saved, _config(tokens_per_chunk=4))
    changed = init_differences(saved, wanted)
    assert changed == ["adapter.kind", "adapter.num_heads", "encoder.tokens_per_chunk"]
    wanted["decoder"] = {**wanted["decoder"], "lora": None}  # type: ignore[dict-item]
    with pytest.raises(ValueError, match=r"decoder\.lora.*adapter\.kind"):
        init_differences(saved, wanted)


def test_init_with_a_new_adapter_loads_the_lora_only(tiny_model_dirs, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import torch

    from e2llm_integrations.core import AdapterConfig, E2LLMModel, EncoderConfig
    from e2llm_integrations.core.training.run import _init_weights

    from ..conftest import tiny_config

    torch.manual_seed(0)
    mlp = E2LLMModel.from_config(tiny_config(tiny_model_dirs), device="cpu")
    with torch.no_grad():
        for name, p in mlp.decoder.named_parameters():
            if "lora_B" in name:
                p.normal_()  # trained-looking LoRA (B starts at zero)
    mlp.save_pretrained(tmp_path / "mlp")
    encoder = EncoderConfig(name_or_path=tiny_model_dirs["encoder"], max_length=64, batch_size=8, tokens_per_chunk=2)
    pma = E2LLMModel.from_config(
        tiny_config(tiny_model_dirs, adapter=AdapterConfig(kind="pma", num_heads=4), encoder=encoder), device="cpu"
    )
    before = {n: p.detach().clone() for n, p in pma.adapter.named_parameters()}
    _init_weights(pma, str(tmp_path / "mlp"))
    saved = dict(mlp.decoder.named_parameters())
    loras = [n for n, _ in pma.decoder.named_parameters() if "lora_" in n]
    assert loras
    for name, p in pma.decoder.named_parameters():
        if "lora_" in name:
            torch.testing.assert_close(p, saved[name], msg=name)
    for name, p in pma.adapter.named_parameters():
        torch.testing.assert_close(p, before[name], msg=name)  # untouched: trains from scratch


def test_a_lora_on_a_frozen_encoder_may_be_added_not_changed() -> None:
    from e2llm_integrations.core.training.run import new_encoder_lora

    lora = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["query", "value"]}
    frozen, tuned = _config(), _config(lora=lora)
    assert new_encoder_lora(frozen, tuned) and not new_encoder_lora(tuned, tuned)
    assert init_differences(frozen, tuned) == ["encoder.lora"]
    with pytest.raises(ValueError, match=r"encoder\.lora"):  # a trained one keeps its shape
        init_differences(tuned, _config(lora={**lora, "r": 8}))
    with pytest.raises(ValueError, match=r"encoder\.lora"):  # and is not dropped
        init_differences(tuned, frozen)


def test_init_adding_an_encoder_lora_loads_the_rest_and_starts_it_at_zero(tiny_model_dirs, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import torch

    from e2llm_integrations.core import E2LLMModel, EncoderConfig, LoraSettings
    from e2llm_integrations.core.training.run import _init_weights

    from ..conftest import tiny_config

    torch.manual_seed(0)
    frozen = E2LLMModel.from_config(tiny_config(tiny_model_dirs), device="cpu")
    with torch.no_grad():
        for name, p in frozen.decoder.named_parameters():
            if "lora_B" in name:
                p.normal_()  # trained-looking LoRA (B starts at zero)
    frozen.save_pretrained(tmp_path / "frozen")
    encoder = EncoderConfig(
        name_or_path=tiny_model_dirs["encoder"], max_length=64, batch_size=8,
        lora=LoraSettings(r=2, alpha=4, target_modules=["query", "value"]),
    )
    tuned = E2LLMModel.from_config(tiny_config(tiny_model_dirs, encoder=encoder), device="cpu")
    _init_weights(tuned, str(tmp_path / "frozen"))
    saved = dict(frozen.named_parameters())
    for name, p in tuned.decoder.named_parameters():
        if "lora_" in name:
            torch.testing.assert_close(p, saved[f"decoder.{name}"], msg=name)
    for name, p in tuned.adapter.named_parameters():
        torch.testing.assert_close(p, saved[f"adapter.{name}"], msg=name)
    enc_b = [p for n, p in tuned.encoder.model.named_parameters() if "lora_B" in n]
    assert enc_b and all(float(p.detach().abs().max()) == 0.0 for p in enc_b)  # starts as the base
    texts = ["The tortoise sleeps in the office.", "A quiet harbour town."]
    a, b = frozen.encoder(**frozen.encoder.tokenize(texts)), tuned.encoder(**tuned.encoder.tokenize(texts))
    torch.testing.assert_close(a[0], b[0])  # same features: the model computes what it did
