"""Data-parallel training: a real 2-process ``torchrun`` job on CPU (gloo) against one process.

The worker (``tests/unit/_resume_worker.py``) trains with ``EQUAL_TARGETS``: every
example has a target of exactly 8 tokens, so the per-rank token means add up to the
single-process token mean and the 2-process gradient must equal the 1-process one
(up to float rounding from the different batch padding).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from e2llm_integrations import data
from e2llm_integrations.core.training.config import TrainConfig
from e2llm_integrations.core.training.distributed import Distributed
from e2llm_integrations.core.training.state import LAST, find_resume
from e2llm_integrations.core.training.trainer import Trainer

from ..conftest import tiny_config
from ._resume_worker import EQUAL_TARGETS, build, train_and_dump
from .test_data import CFG, make_wheels, no_download

ROOT = Path(__file__).resolve().parents[2]
STEPS = 4


def _records(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _steps(run: Path) -> list[int]:
    return [r["step"] for r in _records(run)]


def _torchrun(*args: str) -> subprocess.CompletedProcess[str]:
    """``torchrun --standalone --nproc_per_node 2 ARGS`` from the repository root, on CPU."""
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         *args],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_shard_takes_every_world_size_th_example_and_single_process_is_a_no_op() -> None:
    assert Distributed(rank=1, world_size=3).shard(list(range(8))) == [1, 4, 7]
    single = Distributed()
    assert single.is_main and not single.enabled and single.shard([5, 6]) == [5, 6]
    values = {"loss": 0.5}
    assert single.all_reduce_sum(values) is values
    with single.main_first():
        single.barrier()


def test_batch_smaller_than_the_processes_is_refused(tiny_model_dirs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    t = build(tiny_model_dirs["encoder"], tiny_model_dirs["decoder"], str(tmp_path), 4)
    with pytest.raises(ValueError, match="launch fewer processes"):  # batch_size=2
        Trainer(t.cfg, t.model, t.factory, t.val_specs, dist=Distributed(world_size=3))


def test_two_processes_train_like_one(tiny_model_dirs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    enc, dec = tiny_model_dirs["encoder"], tiny_model_dirs["decoder"]
    two = tmp_path / "two"
    proc = _torchrun("-m", "tests.unit._resume_worker", enc, dec, str(two), str(STEPS))
    assert proc.returncode == 0, proc.stderr[-4000:]
    one = build(enc, dec, str(tmp_path / "one"), STEPS, **EQUAL_TARGETS)
    train_and_dump(one)

    # Rank 0 alone logs (one record per step, none twice) and checkpoints.
    assert _steps(two) == list(range(1, STEPS + 1))
    resume = find_resume(two)
    assert resume is not None and resume.name == LAST
    assert int(torch.load(resume / "trainer_state.pt", weights_only=True)["step"]) == STEPS

    # Both ranks end with the same weights, after the same summed gradient.
    grads = [load_file(two / f"grads-rank{r}.safetensors") for r in (0, 1)]
    weights = [load_file(two / f"weights-rank{r}.safetensors") for r in (0, 1)]
    for name in weights[0]:
        assert torch.equal(weights[0][name], weights[1][name]), name
        assert torch.equal(grads[0][name], grads[1][name]), name

    # Step 1's gradient is the single-process gradient of the same 4 examples.
    single = load_file(tmp_path / "one" / "grads-rank0.safetensors")
    assert single.keys() == grads[0].keys()
    assert sum(float(g.norm()) for g in single.values()) > 0
    for name, g in single.items():
        torch.testing.assert_close(grads[0][name], g, rtol=1e-4, atol=1e-7, msg=name)

    # So are the logged losses, and after all steps (with a resume) the weights.
    for a, b in zip(_records(two), _records(tmp_path / "one"), strict=True):
        for key in ("loss", "loss_recon", "grad_norm"):
            assert a[key] == pytest.approx(b[key], rel=1e-4), (a["step"], key)
    final = load_file(tmp_path / "one" / "weights-rank0.safetensors")
    for name, w in final.items():
        torch.testing.assert_close(weights[0][name], w, rtol=1e-4, atol=1e-6, msg=name)


def test_e2llm_train_under_torchrun(tiny_model_dirs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    make_wheels(tmp_path / "data" / "raw")
    data.prepare(tmp_path / "data", config=CFG, runner=no_download)
    cfg = TrainConfig(
        model=tiny_config(tiny_model_dirs), data_dir=str(tmp_path / "data"),
        out_dir=str(tmp_path / "run"), steps=3, stage1_steps=1, batch_size=2, warmup_steps=1,
        eval_every=3, save_every=2, context_tokens=[40, 80], val_examples=2, val_generations=1,
        max_target_tokens=16, threads=1,
    )  # fmt: skip
    config = tmp_path / "train.json"
    config.write_text(json.dumps(cfg.to_dict()))
    export = tmp_path / "export"
    proc = _torchrun(
        "-m", "e2llm_integrations.cli", "train", "--config", str(config), "--device", "cpu",
        "--export", str(export),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert json.loads(proc.stdout)["step"] == 3  # one JSON document: rank 0 alone prints
    assert _steps(tmp_path / "run") == [1, 2, 3]
    assert "val_loss_qa" in _records(tmp_path / "run")[-1]  # rank 0 validated at the end
    caches = sorted(p.name.split("-")[0] for p in (tmp_path / "data" / "cache").iterdir())
    assert caches == ["train", "val"]
    # Rank 0 encoded each cache once, then rank 1 loaded it.
    assert proc.stderr.count("(once)") == 2 and proc.stderr.count("Reusing feature cache") == 2
    assert json.loads((export / "training_record.json").read_text())["steps"] == 3
    assert (tmp_path / "run" / "loss_curve.png").is_file()
