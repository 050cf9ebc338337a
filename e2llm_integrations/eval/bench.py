"""Speed and memory against context length: time to first token, decode tokens/s, peak memory.

Systems: ``e2llm_cold`` (chunk + encode + adapter + prefill), ``e2llm_warm`` (the encoded
corpus is reused), ``e2llm_cached`` (a repeat question: the encoded corpus and the decoder's
KV cache over ``[prefix] <soft tokens>`` are reused, so only the question is prefilled; the
cache's size is reported as ``cache_mb``), ``full`` (the plain base decoder with the whole text, only where it
fits its window) and ``rag`` (question embedding + FAISS top-k + prefill of their text;
the chunk index is built beforehand, as a RAG index would be).

Every system decodes exactly ``new_tokens`` greedy tokens (end-of-sequence ignored), so
decode speed is measured on the same number of steps everywhere. By default each
(system, length) runs in a fresh worker process (``python -m
e2llm_integrations.eval.bench_worker``) after a short warm-up, so the peak memory of one
measurement cannot hide in memory freed by another.

Example:
    >>> rows = run_bench(ModelSource(), texts, BenchConfig(lengths=(1000, 2000)))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from ..core.pipeline import E2LLMPipeline
from ..core.timing import (
    CachedInputs,
    timed_decode,  # noqa: F401  (public here too)
)
from .common import ModelSource
from .memory import MB, PeakMemory
from .systems import TEXT_INSTRUCTION, text_messages, top_chunks

logger = logging.getLogger(__name__)

BENCH_SYSTEMS: tuple[str, ...] = ("e2llm_cold", "e2llm_warm", "e2llm_cached", "full", "rag")
FIRST_QUESTION = "Who is the text about?"
"""Asked before ``e2llm_cached`` is timed: it fills the prefix cache, as a first user would."""
QUESTION = "What is the main point of the text?"
WORKER = "e2llm_integrations.eval.bench_worker"
WARM_UP_CHARS = 400


@dataclass(frozen=True)
class BenchConfig:
    """What ``e2llm bench`` measures.

    Attributes:
        lengths: Context lengths in decoder tokens.
        systems: Subset of :data:`BENCH_SYSTEMS`.
        new_tokens: Tokens decoded per measurement (all of them, EOS ignored).
        top_k: Chunks the ``rag`` system retrieves.
        repeats: Measurements per cell; the median time is kept, the largest memory.
        isolate: One fresh worker process per (system, length).
        timeout_s: Limit for one worker process.
    """

    lengths: tuple[int, ...] = (1000, 2000, 4000, 8000, 16000, 32000, 64000, 128000)
    systems: tuple[str, ...] = BENCH_SYSTEMS
    new_tokens: int = 32
    top_k: int = 8
    repeats: int = 1
    isolate: bool = True
    timeout_s: float = 1800.0

    def __post_init__(self) -> None:
        if any(s not in BENCH_SYSTEMS for s in self.systems):
            raise ValueError(f"Unknown system in {self.systems}; choose from {BENCH_SYSTEMS}.")
        if self.new_tokens < 2 or self.repeats < 1:
            raise ValueError("new_tokens must be >= 2 and repeats >= 1.")


QUICK_BENCH = BenchConfig(lengths=(1000, 2000), new_tokens=8, isolate=False)
"""A tiny grid for smoke tests (in-process: memory numbers only indicative)."""


@dataclass
class Measurement:
    """One (system, length) measurement; times in seconds, memory in MiB."""

    system: str
    length: int
    context_tokens: int = 0
    input_positions: int = 0
    ttft_s: float | None = None
    setup_s: float | None = None
    prefill_s: float | None = None
    decode_tok_s: float | None = None
    wall_s: float | None = None
    peak_mb: float | None = None
    weights_mb: float | None = None
    memory_method: str = ""
    cache_mb: float | None = None
    autocast: str | None = None
    skipped: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}


class Skip(Exception):
    """A system cannot run at this length (e.g. the text is over the decoder's window)."""


def _mb(pipe: E2LLMPipeline, system: str) -> float:
    """Weights the system reads: the decoder, plus the encoder and adapter where used."""
    sizes = pipe.profiler.weight_bytes()
    parts = ["decoder"] + ([] if system == "full" else ["encoder"])
    parts += ["adapter"] if "e2llm" in system else []
    return sum(sizes[p] for p in parts) / MB


def _text_embeds(pipe: E2LLMPipeline, context: str, new_tokens: int) -> torch.Tensor:
    ids = pipe.chat_ids(text_messages(TEXT_INSTRUCTION, context, QUESTION))
    if len(ids) + new_tokens > pipe.max_positions:
        raise Skip(f"{len(ids)} prompt tokens + {new_tokens} > window {pipe.max_positions}")
    return pipe.profiler.text_inputs(ids)  # (1, P, d_dec)


def _prepare(
    pipe: E2LLMPipeline, system: str, text: str, top_k: int
) -> Callable[[int], torch.Tensor | CachedInputs]:
    """A function of ``new_tokens`` that builds the decoder input: the timed setup part."""
    soft = pipe.profiler.soft_inputs
    if system == "e2llm_cold":
        return lambda n: soft(pipe.encode([text], progress=False), QUESTION, n)
    if system == "full":
        return lambda n: _text_embeds(pipe, text, n)
    corpus = pipe.encode([text], progress=False)  # built before timing: an existing index
    if system == "e2llm_warm":
        return lambda n: soft(corpus, QUESTION, n)
    if system == "e2llm_cached":
        cached = pipe.profiler.cached_inputs
        cached(corpus, FIRST_QUESTION, 2)  # an earlier question filled the prefix cache
        return lambda n: cached(corpus, QUESTION, n)
    if system == "rag":
        return lambda n: _text_embeds(
            pipe, "\n\n".join(top_chunks(pipe, corpus, QUESTION, top_k)), n
        )
    raise ValueError(f"Unknown bench system {system!r}; choose from {BENCH_SYSTEMS}.")


def measure(
    pipe: E2LLMPipeline, system: str, text: str, length: int, cfg: BenchConfig
) -> Measurement:
    """Time and memory of ``system`` on ``text`` in this process (``repeats`` times)."""
    row = Measurement(system, length, context_tokens=_tokens(pipe, text))
    row.weights_mb, row.autocast = _mb(pipe, system), _precision(pipe)
    times: list[tuple[float, float, float, float, float]] = []
    try:
        build = _prepare(pipe, system, text, cfg.top_k)
        for _ in range(cfg.repeats):
            with PeakMemory(pipe.device, collect=cfg.isolate) as mem:
                run = pipe.profiler.timed_decode(
                    lambda: _kept(row, build(cfg.new_tokens)),
                    cfg.new_tokens,
                    system in ("full", "rag"),
                )
            times.append((run.ttft_s, run.decode_s, run.wall_s, run.setup_s, run.prefill_s))
            row.peak_mb = max(row.peak_mb or 0.0, mem.peak_mb)
            row.input_positions, row.memory_method = run.input_positions, mem.method
    except Skip as why:
        row.skipped = str(why)
        return row
    ttft, decode, wall, row.setup_s, row.prefill_s = sorted(times)[len(times) // 2]
    row.ttft_s, row.wall_s = ttft, wall
    row.decode_tok_s = (cfg.new_tokens - 1) / decode if decode > 0 else None
    return row


def _precision(pipe: E2LLMPipeline) -> str:
    """``fp32``, ``bf16`` or e.g. ``bf16/fp32`` (encoder/decoder) for a result row."""
    enc, dec = pipe.precision["encoder"], pipe.precision["decoder"]
    return enc if enc == dec else f"{enc}/{dec}"


def _kept(row: Measurement, built: torch.Tensor | CachedInputs) -> torch.Tensor | CachedInputs:
    """``built``, noting on ``row`` the size of the KV cache a warm input reuses."""
    if isinstance(built, CachedInputs):
        row.cache_mb = built.cache_bytes / MB
    return built


def _tokens(pipe: E2LLMPipeline, text: str) -> int:
    return pipe.tokenizer.count([text])[0]


def warm_up(pipe: E2LLMPipeline, system: str, text: str) -> None:
    """Run ``system`` once on the start of ``text`` (kernels, lazy imports).

    The warm-up text is short, so the memory it frees is small next to any measurement.
    """
    measure(pipe, system, text[:WARM_UP_CHARS], 0, replace(BenchConfig(), new_tokens=2))


def run_in_process(
    pipe: E2LLMPipeline, texts: dict[int, str], cfg: BenchConfig
) -> list[Measurement]:
    """Every (system, length) in this process (memory is then only indicative)."""
    rows = []
    for system in cfg.systems:
        warm_up(pipe, system, next(iter(texts.values())))
        for length, text in sorted(texts.items()):
            rows.append(measure(pipe, system, text, length, cfg))
            logger.info("bench %s", rows[-1].to_dict())
    return rows


def run_worker(
    source: ModelSource, system: str, text: str, length: int, cfg: BenchConfig
) -> Measurement:
    """One measurement in a fresh ``bench_worker`` process."""
    with tempfile.TemporaryDirectory(prefix="e2llm-bench-") as tmp:
        spec = Path(tmp) / "spec.json"
        spec.write_text(json.dumps({
            "system": system, "length": length, "text": text,
            "config": {**asdict(cfg), "lengths": list(cfg.lengths), "systems": list(cfg.systems)},
        }), encoding="utf-8")  # fmt: skip
        cmd = [sys.executable, "-m", WORKER, str(spec), *source.to_args()]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=cfg.timeout_s)
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-5:]
        raise RuntimeError(f"bench worker failed for {system} @ {length}: {' | '.join(tail)}")
    return Measurement(**json.loads(done.stdout.strip().splitlines()[-1]))


def run_bench(
    source: ModelSource, texts: dict[int, str], cfg: BenchConfig, pipe: E2LLMPipeline | None = None
) -> list[Measurement]:
    """Measure every (system, length): in worker processes, or in-process with ``pipe``."""
    if not cfg.isolate:
        return run_in_process(pipe or source.load(), texts, cfg)
    rows = []
    for length, text in sorted(texts.items()):
        for system in cfg.systems:
            rows.append(run_worker(source, system, text, length, cfg))
            logger.info("bench %s", rows[-1].to_dict())
    return rows


def with_ratios(rows: list[Measurement]) -> list[dict[str, Any]]:
    """Rows as dicts plus ratios against ``full`` at the same length and precision.

    ``ttft_speedup`` = full's TTFT / this TTFT; ``memory_ratio`` = this peak / full's peak.
    """
    full = {(r.length, r.autocast): r for r in rows if r.system == "full" and r.skipped is None}
    out = []
    for r in rows:
        d = r.to_dict()
        ref = full.get((r.length, r.autocast))
        if ref is not None and r.skipped is None and r.ttft_s and ref.ttft_s:
            d["ttft_speedup"] = round(ref.ttft_s / r.ttft_s, 3)
            if ref.peak_mb and r.peak_mb is not None:
                d["memory_ratio"] = round(r.peak_mb / ref.peak_mb, 3)
        out.append(d)
    return out


def haystack_texts(pipe: E2LLMPipeline, haystack: str, lengths: tuple[int, ...]) -> dict[int, str]:
    """The first ``n`` decoder tokens of ``haystack`` (repeated if short) for each length."""
    if not haystack.strip():
        raise ValueError("The haystack is empty; run `e2llm data prepare` first.")
    need = max(lengths) * 6 + 1000
    text = haystack
    while len(text) < need:
        text += "\n\n" + haystack
    tok = pipe.tokenizer
    ids = tok(text[:need], add_special_tokens=False)["input_ids"]
    return {n: tok.decode(ids[:n]) for n in lengths}
