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
