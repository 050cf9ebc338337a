"""``e2llm sweep``: grid, per-cell configs, a real tiny run per cell, resume and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from e2llm_integrations import data
from e2llm_integrations.cli import main
from e2llm_integrations.core.training.config import TrainConfig
from e2llm_integrations.eval.report import render_results
from e2llm_integrations.eval.sweep import (
    CELL_RESULT,
    SweepCell,
    cell_config,
    collect,
    grid,
    run_cell,
    sweep_table,
)

from ..conftest import tiny_config
from .test_data import CFG, make_wheels, no_download


@pytest.fixture
def base(tiny_model_dirs, tmp_path: Path) -> TrainConfig:  # type: ignore[no-untyped-def]
    make_wheels(tmp_path / "data" / "raw")
    data.prepare(tmp_path / "data", config=CFG, runner=no_download)
    return TrainConfig(
        model=tiny_config(tiny_model_dirs), data_dir=str(tmp_path / "data"),
        out_dir=str(tmp_path / "unused"), steps=3, stage1_steps=1, batch_size=2, warmup_steps=1,
        eval_every=3, save_every=1, context_tokens=[40, 80], val_examples=4, val_generations=2,
        max_target_tokens=24, threads=1,
    )  # fmt: skip


def test_grid_orders_cells_and_refuses_more_soft_tokens_than_chunk_tokens() -> None:
    cells = grid([64, 128], [1, 4])
    assert [c.name for c in cells] == ["c64-k1", "c64-k4", "c128-k1", "c128-k4"]
    with pytest.raises(ValueError, match="soft tokens <= chunk tokens"):
        grid([2], [4])


def test_cell_config_changes_only_chunking_soft_tokens_and_out_dir(base: TrainConfig) -> None:
    cfg = cell_config(base, SweepCell(16, 2), "root")
    assert cfg.model.chunking.chunk_tokens == 16 and cfg.model.encoder.tokens_per_chunk == 2
    assert cfg.out_dir == str(Path("root") / "c16-k2")
    a, b = base.to_dict(), cfg.to_dict()
    for d in (a, b):
        d.pop("out_dir")
        d["model"]["chunking"].pop("chunk_tokens")
        d["model"]["encoder"].pop("tokens_per_chunk")
    assert a == b


def test_run_cell_trains_validates_and_is_reused(base: TrainConfig, tmp_path: Path) -> None:
    root = tmp_path / "sweep"
    one = run_cell(base, SweepCell(16, 1), root, recon_eval=2)
    two = run_cell(base, SweepCell(16, 2), root, recon_eval=2)
    for row in (one, two):
        assert row["steps"] == 3 and row["recon_chunks"] == 2
        assert 0.0 <= row["recon_f1"] <= 1.0 and 0.0 <= row["val_f1"] <= 1.0
        assert row["val_loss_qa"] > 0 and row["val_loss_recon"] > 0
    # Same chunks, twice the soft tokens: twice the decoder positions.
    assert two["positions_per_1k"] == pytest.approx(2 * one["positions_per_1k"], rel=0.01)
    metrics = (root / "c16-k1" / "metrics.jsonl").read_text()
    assert run_cell(base, SweepCell(16, 1), root) == one  # finished: read back, not retrained
    assert (root / "c16-k1" / "metrics.jsonl").read_text() == metrics
    rows = collect(root, grid([16], [1, 2, 4]))
    assert [r["cell"] for r in rows] == ["c16-k1", "c16-k2"]
    table = sweep_table(rows)
    assert table.count("\n") == 3 and "| 16 | 2 |" in table


def test_cli_runs_chosen_cells_and_refuses_unknown_ones(
    base: TrainConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "sweep.json"
    config.write_text(json.dumps(base.to_dict()))
    out, root = tmp_path / "results" / "sweep.json", tmp_path / "runs"
    args = ["sweep", "--config", str(config), "--chunk-tokens", "16,24", "--soft-tokens", "1",
            "--root", str(root), "--out", str(out), "--recon-eval", "1"]  # fmt: skip
    assert main([*args, "--cells", "c16-k9"]) == 2
    assert "c16-k9" in capsys.readouterr().err
    assert main([*args, "--cells", "c24-k1"]) == 0
    result = json.loads(out.read_text())
    assert result["meta"]["cells_finished"] == 1 and result["meta"]["cells_total"] == 2
    assert [r["cell"] for r in result["rows"]] == ["c24-k1"]
    assert (root / "c24-k1" / CELL_RESULT).exists() and not (root / "c16-k1").exists()
    assert main([*args, "--chunk-tokens", "x"]) == 2
    report = render_results(out.parent, tmp_path / "docs" / "RESULTS.md")
    assert result["meta"]["command"] in report and "| 24 | 1 |" in report
    assert "cells finished: 1 of 2" in report
