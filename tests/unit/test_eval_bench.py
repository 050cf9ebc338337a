"""Peak-memory measurement, timed decoding and the bench runner, on the tiny models."""

from __future__ import annotations

import contextlib
import io
import subprocess
from pathlib import Path

import pytest
import torch

from e2llm_integrations.data import load_squad
from e2llm_integrations.eval import bench, bench_worker
from e2llm_integrations.eval.bench import (
    BenchConfig,
    Measurement,
    measure,
    run_worker,
    timed_decode,
    with_ratios,
)
from e2llm_integrations.eval.common import ModelSource
from e2llm_integrations.eval.memory import PeakMemory, reset_peak_rss

from ..conftest import tiny_config
from .eval_support import essay


def test_peak_memory_sees_a_large_allocation_and_not_a_small_one() -> None:
    with PeakMemory("cpu") as big:
        block = torch.ones(64 * 1024 * 1024 // 4 * 3)  # 192 MiB, touched
        del block
    with PeakMemory("cpu") as small:
        torch.ones(1024)
    if big.method != "vmhwm":
        pytest.skip("no resettable peak RSS on this OS")
    assert big.peak_mb >= 150
    assert small.peak_mb < 50


def test_peak_reset_is_available_on_linux() -> None:
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("not Linux")
    assert reset_peak_rss()


def test_timed_decode_runs_exactly_the_requested_steps(tiny_pipeline) -> None:  # type: ignore[no-untyped-def]
    decoder = tiny_pipeline.model.decoder
    calls: list[int] = []
    hook = decoder.get_base_model().model.register_forward_hook(lambda *a: calls.append(1))
    try:
        embeds = torch.randn(1, 20, decoder.get_input_embeddings().weight.shape[1])
        with torch.inference_mode():
            first, rest = timed_decode(decoder, embeds, 6)
    finally:
        hook.remove()
    assert len(calls) == 6  # one prefill + 5 decode steps, EOS never stops it
    assert first > 0 and rest > 0


@pytest.mark.parametrize("system", ["e2llm_cold", "e2llm_warm", "full", "rag"])
def test_measure_each_system(tiny_pipeline, system: str) -> None:  # type: ignore[no-untyped-def]
    cfg = BenchConfig(new_tokens=3, isolate=False)
    row = measure(tiny_pipeline, system, essay(20), 250, cfg)
    assert row.skipped is None
    assert row.ttft_s and row.ttft_s > 0 and row.decode_tok_s and row.decode_tok_s > 0
    assert row.input_positions > 0 and row.weights_mb and row.weights_mb > 0
    if system.startswith("e2llm"):  # one soft token per chunk, not one per text token
        assert row.input_positions < row.context_tokens


def test_full_is_skipped_over_its_window(tiny_pipeline) -> None:  # type: ignore[no-untyped-def]
    row = measure(tiny_pipeline, "full", essay(120), 1300, BenchConfig(new_tokens=3))
    assert row.skipped and "window" in row.skipped and row.ttft_s is None


def test_ratios_are_against_full_at_the_same_length() -> None:
    rows = [
        Measurement("full", 1000, ttft_s=4.0, peak_mb=200.0),
        Measurement("e2llm_warm", 1000, ttft_s=0.5, peak_mb=50.0),
        Measurement("e2llm_warm", 64000, ttft_s=2.0, peak_mb=80.0),
        Measurement("full", 64000, skipped="over window"),
    ]
    out = {(r["system"], r["length"]): r for r in with_ratios(rows)}
    assert out[("e2llm_warm", 1000)]["ttft_speedup"] == 8.0
    assert out[("e2llm_warm", 1000)]["memory_ratio"] == 0.25
    assert out[("full", 1000)]["ttft_speedup"] == 1.0
    assert "ttft_speedup" not in out[("e2llm_warm", 64000)]


def test_worker_protocol_round_trip(tiny_model_dirs, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """run_worker's command line and JSON reply, with the worker's main run in-process."""
    config = tmp_path / "tiny.json"
    config.write_text(tiny_config(tiny_model_dirs).to_json())
    source = ModelSource(model_config=str(config), device="cpu", threads=1)
    seen: list[list[str]] = []

    def fake_run(cmd: list[str], **kwargs):  # type: ignore[no-untyped-def]
        seen.append(cmd)
        assert cmd[1:3] == ["-m", bench.WORKER]
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = bench_worker.main(cmd[3:])
        return subprocess.CompletedProcess(cmd, code, out.getvalue(), "")

    monkeypatch.setattr(bench.subprocess, "run", fake_run)
    row = run_worker(source, "e2llm_warm", essay(20), 250, BenchConfig(new_tokens=3))
    assert row.system == "e2llm_warm" and row.length == 250 and row.ttft_s
    assert row.memory_method in ("vmhwm", "ru_maxrss")
    assert ["--model-config", str(config)] == seen[0][4:6] and "--threads" in seen[0]


def test_worker_failure_is_reported(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(
        bench.subprocess, "run",
        lambda cmd, **kw: subprocess.CompletedProcess(cmd, 1, "", "Traceback\nOSError: boom"),
    )  # fmt: skip
    with pytest.raises(RuntimeError, match="boom"):
        run_worker(ModelSource(), "full", "text", 10, BenchConfig())


def test_bench_config_refuses_unknown_system() -> None:
    with pytest.raises(ValueError, match="Unknown system"):
        BenchConfig(systems=("e2llm",))


def test_bench_8k_summary_prints_ratios() -> None:
    from e2llm_integrations.eval.report import bench_8k_summary

    rows = [
        {"system": "e2llm_cold", "context_tokens": 7990, "wall_s": 2.0, "ttft_s": 1.0,
         "peak_mb": 50.0, "weights_mb": 600.0},
        {"system": "full", "context_tokens": 7990, "wall_s": 30.0, "ttft_s": 28.0,
         "peak_mb": 500.0, "weights_mb": 500.0},
    ]  # fmt: skip
    text = bench_8k_summary({"meta": {"model": "checkpoint X"}, "rows": rows})
    assert "wall time 15.00x" in text and "peak extra memory 10.00x" in text
    assert "total memory 1.54x" in text and "7990 decoder tokens" in text


def test_bench_8k_document_is_cut_at_a_paragraph(tiny_pipeline, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import importlib.util

    from .eval_support import write_data

    root = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_8k.py"
    spec = importlib.util.spec_from_file_location("bench_8k", root)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    tok = tiny_pipeline.model.tokenizer
    data = write_data(tmp_path / "data")
    text = module.document(data, tok, 200)
    assert 100 < len(tok(text, add_special_tokens=False)["input_ids"]) <= 200
    paragraphs = next(a for a in load_squad(data, "test") if text.startswith(a["paragraphs"][0]))[
        "paragraphs"
    ]
    kept = next(k for k in range(len(paragraphs), 0, -1) if "\n\n".join(paragraphs[:k]) == text)
    longer = "\n\n".join(paragraphs[: kept + 1])
    assert len(tok(longer, add_special_tokens=False)["input_ids"]) > 200  # whole paragraphs only
