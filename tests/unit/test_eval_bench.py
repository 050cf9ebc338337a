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


@pytest.mark.parametrize("system", ["e2llm_cold", "e2llm_warm", "e2llm_cached", "full", "rag"])
def test_measure_each_system(tiny_pipeline, system: str) -> None:  # type: ignore[no-untyped-def]
    cfg = BenchConfig(new_tokens=3, isolate=False)
    row = measure(tiny_pipeline, system, essay(20), 250, cfg)
    assert row.skipped is None
    assert row.ttft_s and row.ttft_s > 0 and row.decode_tok_s and row.decode_tok_s > 0
    assert row.input_positions > 0 and row.weights_mb and row.weights_mb > 0
    if system.startswith("e2llm"):  # one soft token per chunk, not one per text token
        assert row.input_positions < row.context_tokens


def test_cached_prefills_only_the_question_and_reports_the_cache(tiny_pipeline) -> None:  # type: ignore[no-untyped-def]
    """The warm repeat question reuses the KV over [prefix] <soft tokens>: same positions
    as e2llm_warm, a prefill over the question only, the same greedy first token."""
    text, cfg = essay(20), BenchConfig(new_tokens=2, isolate=False)
    corpus = tiny_pipeline.encode([text], progress=False)
    prof = tiny_pipeline.profiler
    full_input = prof.soft_inputs(corpus, bench.QUESTION, 2)
    cached = prof.cached_inputs(corpus, bench.QUESTION, 2)
    assert cached.cached_positions + cached.suffix.shape[1] == full_input.shape[1]
    assert 0 < cached.suffix.shape[1] < full_input.shape[1] // 2
    assert torch.equal(cached.suffix, full_input[:, cached.cached_positions :])
    decoder_cfg = tiny_pipeline.profiler._model.decoder.config
    head_dim = getattr(decoder_cfg, "head_dim", None) or (
        decoder_cfg.hidden_size // decoder_cfg.num_attention_heads
    )
    layers = cached.past.layers
    assert len(layers) == decoder_cfg.num_hidden_layers
    shape = (1, decoder_cfg.num_key_value_heads, cached.cached_positions, head_dim)
    assert all(tuple(t.shape) == shape for layer in layers for t in (layer.keys, layer.values))
    held = sum(t.numel() * t.element_size() for layer in layers for t in (layer.keys, layer.values))
    assert cached.cache_bytes == held
    seen: list[int] = []
    base = tiny_pipeline.profiler._model.decoder.get_base_model().model
    hook = base.register_forward_pre_hook(
        lambda _m, args, kwargs: (
            seen.append(kwargs["inputs_embeds"].shape[1])
            if kwargs.get("inputs_embeds") is not None
            else None
        ),
        with_kwargs=True,
    )
    try:
        row = measure(tiny_pipeline, "e2llm_cached", text, 250, cfg)
    finally:
        hook.remove()
    warm = measure(tiny_pipeline, "e2llm_warm", text, 250, cfg)
    assert row.input_positions == warm.input_positions
    assert seen and seen[-1] == cached.suffix.shape[1]  # the timed prefill: the question only
    assert row.cache_mb == pytest.approx(cached.cache_bytes / 2**20)
    with torch.inference_mode():
        warm_logits = tiny_pipeline.profiler._model.decoder(inputs_embeds=full_input).logits
        past = prof.cached_inputs(corpus, bench.QUESTION, 2)
        cached_logits = tiny_pipeline.profiler._model.decoder(
            inputs_embeds=past.suffix, past_key_values=past.past
        ).logits
    assert torch.argmax(warm_logits[0, -1]) == torch.argmax(cached_logits[0, -1])


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

    def row(system: str, mode: str, ttft: float, **extra: float) -> dict[str, object]:
        return {"system": system, "autocast": mode, "context_tokens": 7990, "wall_s": ttft + 1,
                "ttft_s": ttft, "peak_mb": 50.0, "weights_mb": 600.0, "input_positions": 150,
                **extra}  # fmt: skip

    rows = [
        row("full", "fp32", 30.0, prefill_s=29.0, decode_tok_s=10.0),
        row("e2llm_cold", "fp32", 3.0, setup_s=2.5),
        row("e2llm_cached", "fp32", 0.05, cache_mb=3.25),
        row("full", "bf16", 15.0, prefill_s=14.5, decode_tok_s=12.0),
        row("e2llm_cold", "bf16", 2.0, setup_s=1.25),
        row("e2llm_cached", "bf16", 0.04, cache_mb=2.5),
    ]
    text = bench_8k_summary({"meta": {"model": "checkpoint X"}, "rows": rows})
    assert "7990 decoder tokens" in text
    assert "TTFT 50.0 ms (**600x** faster than full)" in text  # 30 s / 0.05 s, same precision
    assert "TTFT 40.0 ms (**375x** faster than full)" in text  # 15 s / 0.04 s in bf16
    assert "cache 3.2 MiB per corpus" in text or "cache 3.3 MiB per corpus" in text
    assert "encode + adapter 2.00x, full-context prefill 2.00x, decode 1.20x" in text


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
