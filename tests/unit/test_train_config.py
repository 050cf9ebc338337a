"""``TrainConfig``: every field validated with a message that says how to fix it, and a
``format_version`` written with the config (files without one still load)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from e2llm_integrations.cli import main
from e2llm_integrations.core.training.config import TRAIN_FORMAT_VERSION, TrainConfig

CONFIGS = Path(__file__).resolve().parents[2] / "configs"

# (field, bad value, error type, words the message must hold)
BAD: list[tuple[str, Any, type[Exception], str]] = [
    ("steps", 0, ValueError, "steps must be >= 1"),
    ("steps", 10.0, TypeError, "whole number"),
    ("steps", True, TypeError, "whole number"),
    ("stage1_steps", -1, ValueError, ">= 0"),
    ("stage1_steps", 2000, ValueError, "below steps=2000"),
    ("batch_size", 0, ValueError, ">= 1"),
    ("grad_accum", "2", TypeError, "whole number"),
    ("warmup_steps", -5, ValueError, ">= 0"),
    ("max_recon_chunks", 0, ValueError, ">= 1"),
    ("max_target_tokens", 0, ValueError, ">= 1"),
    ("hotpot_questions", -1, ValueError, ">= 0"),
    ("recon_texts", None, TypeError, "whole number"),
    ("eval_every", 0, ValueError, ">= 1"),
    ("save_every", 0, ValueError, ">= 1"),
    ("val_examples", 0, ValueError, "at least one example"),
    ("val_generations", -1, ValueError, ">= 0"),
    ("seed", -1, ValueError, ">= 0"),
    ("bow_warmup_steps", -1, ValueError, ">= 0"),
    ("bow_warmup_batch", 0, ValueError, ">= 1"),
    ("threads", -2, ValueError, ">= 0"),
    ("lr_adapter", 0.0, ValueError, "lr_adapter must be > 0"),
    ("lr_adapter", -1e-3, ValueError, "e.g.|such as"),
    ("lr_adapter", "1e-3", TypeError, "write 1.0e-3"),
    ("lr_lora", float("nan"), ValueError, "lr_lora must be > 0"),
    ("lr_lora", float("inf"), ValueError, "lr_lora must be > 0"),
    ("min_lr_ratio", 1.5, ValueError, ">= 0 and <= 1"),
    ("min_lr_ratio", -0.1, ValueError, ">= 0 and <= 1"),
    ("weight_decay", -0.01, ValueError, "weight_decay must be >= 0"),
    ("max_grad_norm", 0.0, ValueError, "max_grad_norm must be > 0"),
    ("recon_ratio", 1.01, ValueError, "<= 1"),
    ("recon_weight", -1.0, ValueError, ">= 0"),
    ("bow_weight", -0.5, ValueError, ">= 0"),
    ("time_budget_s", -1.0, ValueError, "time_budget_s must be >= 0"),
    ("time_budget_s", "30m", TypeError, "a number"),
    ("expand_drop_gold", 2.0, ValueError, "<= 1"),
    ("expand_drop_gold", False, TypeError, "a number"),
    ("context_tokens", [], TypeError, "non-empty list"),
    ("context_tokens", [512, 0], ValueError, ">= 1"),
    ("context_tokens", "512", TypeError, "e.g. \\[1024, 4096\\]"),
    ("expand_top_k", [0, -1], ValueError, ">= 0"),
    ("expand_top_k", [0, 1.5], ValueError, "whole numbers"),
    ("data_dir", "", ValueError, "data_dir must name a folder"),
    ("out_dir", 3, TypeError, "out_dir must be a folder path"),
    ("init_checkpoint", "  ", ValueError, "init_checkpoint"),
    ("device", "gpu", ValueError, "auto, cpu, cuda"),
    ("autocast", "fp16", ValueError, "auto, bf16, off"),
    ("model", 5, TypeError, "E2LLMConfig or a mapping"),
    ("format_version", 0, ValueError, "format_version must be"),
    ("format_version", 2, ValueError, "upgrade"),
]


@pytest.mark.parametrize(("name", "value", "error", "words"), BAD, ids=lambda v: str(v)[:20])
def test_each_bad_value_is_refused_with_a_fix(
    name: str, value: Any, error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=words) as info:
        TrainConfig(**{name: value})
    assert name in str(info.value)


def test_every_field_is_covered_by_a_check() -> None:
    """A new field without validation shows up here (model and format_version included)."""
    checked = {name for name, *_ in BAD}
    assert {f.name for f in dataclasses.fields(TrainConfig)} - checked == set()


def test_good_values_are_kept_and_normalised(tmp_path: Path) -> None:
    cfg = TrainConfig(
        out_dir=tmp_path / "run",  # type: ignore[arg-type]
        lr_adapter=1,
        max_grad_norm=2,
        context_tokens=(256, 512),  # type: ignore[arg-type]
        stage1_steps=0,
        min_lr_ratio=0,
        weight_decay=0,
        recon_ratio=1,
        init_checkpoint=tmp_path / "ckpt",  # type: ignore[arg-type]
    )
    assert cfg.out_dir == str(tmp_path / "run") and cfg.init_checkpoint == str(tmp_path / "ckpt")
    assert isinstance(cfg.lr_adapter, float) and cfg.lr_adapter == 1.0
    assert isinstance(cfg.max_grad_norm, float) and cfg.context_tokens == [256, 512]
    json.dumps(cfg.to_dict())  # everything is JSON


def test_overrides_are_checked_again() -> None:
    cfg = TrainConfig()
    cfg.steps = 500  # what `e2llm train --steps` does before re-running the checks
    cfg.__post_init__()
    cfg.steps = 0
    with pytest.raises(ValueError, match="steps must be >= 1"):
        cfg.__post_init__()


def test_format_version_is_written_and_old_files_load(tmp_path: Path) -> None:
    data = TrainConfig(steps=30, stage1_steps=3).to_dict()
    assert data["format_version"] == TRAIN_FORMAT_VERSION == 1
    path = tmp_path / "train_config.json"
    path.write_text(json.dumps(data))
    assert TrainConfig.from_file(path) == TrainConfig(steps=30, stage1_steps=3)
    del data["format_version"]  # written before the field existed
    path.write_text(json.dumps(data))
    assert TrainConfig.from_file(path).format_version == 1


def test_a_newer_format_is_named_before_its_unknown_keys(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("format_version: 2\nsteps: 10\nstage1_steps: 2\nnew_option: 1\n")
    with pytest.raises(ValueError, match="format_version 2.*upgrade the package"):
        TrainConfig.from_file(path)


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load_and_round_trip(path: Path) -> None:
    cfg = TrainConfig.from_file(path)
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_e2llm_train_reports_a_bad_config_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("steps: 10\nstage1_steps: 2\nlr_adapter: 1e-3\n")
    assert main(["train", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "lr_adapter" in err and "1.0e-3" in err
