"""vLLM vs the library's own decoder, from the same E2LLM decoder inputs (issue 11).

Both backends decode from the same input embeddings, ``[instruction] <soft tokens>
[excerpt, question]``, built by the library (encoder + adapter + embedding table) before
the clock starts; every request decodes exactly ``--new-tokens`` tokens (end of sequence
ignored), greedily. Measured in one run, so the ratios compare like with like:

* **batch 1**: requests one after the other; time to first token and decode tokens/s
  (tokens after the first / their seconds), medians over ``--batch1`` requests.
* **concurrent**: ``--concurrency`` requests over different documents submitted at once;
  total throughput (all new tokens / wall seconds) and p50/p95 latency (submission to
  last token). The local decoder serves them one at a time (one model, one lock), vLLM
  batches them.

Documents are consecutive paragraphs of the held-out SQuAD test articles, about
``--doc-tokens`` decoder tokens each, a different one per request (``--synthetic``:
generated text, no data needed). The vLLM server is started from ``--vllm-python``
(``make vllm-setup``) over the checkpoint's merged decoder, or ``--base-url`` names a
running one. Writes ``results/bench_vllm.json`` and prints a table.

Usage:
    python benchmarks/bench_vllm.py [--checkpoint PATH] [--base-url URL] [--synthetic]
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from e2llm_integrations.core import E2LLMPipeline, GenerationConfig
from e2llm_integrations.eval.common import machine_info, write_json
from e2llm_integrations.serving.export import export_merged_decoder
from e2llm_integrations.serving.launch import ServerSpec, vllm_server
from e2llm_integrations.serving.vllm import VLLMServerBackend

logger = logging.getLogger("bench_vllm")

Decode = Callable[[torch.Tensor], list[float]]
"""Decodes one request; returns ``time.perf_counter()`` at each token."""
"""(1, P, d_dec) embeddings -> exactly ``new_tokens`` generated ids."""


def squad_documents(
    data_dir: str | None, tokenizer: Any, n: int, tokens: int
) -> list[tuple[str, str]]:
    """``n`` (document, question) pairs: runs of test-article paragraphs of ~``tokens``."""
    from e2llm_integrations.data import load_squad

    pairs: list[tuple[str, str]] = []
    for article in load_squad(data_dir, "test"):
        questions = [q["question"] for q in article.get("questions", [])] or ["What is it about?"]
        kept: list[str] = []
        for para in article["paragraphs"]:
            kept.append(para)
            text = "\n\n".join(kept)
            if len(tokenizer(text, add_special_tokens=False)["input_ids"]) >= tokens:
                pairs.append((text, questions[len(pairs) % len(questions)]))
                kept = []
            if len(pairs) == n:
                return pairs
    if len(pairs) < n:
        raise ValueError(
            f"The SQuAD test articles give {len(pairs)} documents of {tokens} tokens, not {n}."
        )
    return pairs


def synthetic_documents(n: int, tokens: int) -> list[tuple[str, str]]:
    """``n`` distinct generated (document, question) pairs of roughly ``tokens`` tokens."""
    pairs = []
    for i in range(n):
        line = f"Report {i}: the depot in town {i} stores {i * 7 + 3} crates of grain and {i + 2} carts. "
        pairs.append(
            (line * max(1, tokens // 25), f"How many crates does the depot in town {i} store?")
        )
    return pairs


def decoder_inputs(
    pipe: E2LLMPipeline, pairs: list[tuple[str, str]], new_tokens: int
) -> list[torch.Tensor]:
    """Each pair's E2LLM decoder input, (1, P, d_dec), built the way ``ask`` builds it."""
    gen = GenerationConfig(max_new_tokens=new_tokens)
    inputs = []
    for doc, question in pairs:
        corpus, _, kwargs = pipe.prepare(pipe.encode([doc]), question, gen)
        inputs.append(pipe.profiler.soft_inputs(corpus, question, new_tokens, **kwargs))
    return inputs


def timed(decode: Decode, embeds: torch.Tensor, start: float | None = None) -> dict[str, float]:
    """Run one request; seconds to its first and last token (from ``start``, default now)."""
    t0 = time.perf_counter() if start is None else start
    times = decode(embeds)
    assert times, "the decoder produced no token"
    first, end = times[0], times[-1]
    return {
        "ttft_s": first - t0,
        "latency_s": end - t0,
        "decode_s": end - first,
        "tokens": len(times),
    }


def batch1(decode: Decode, inputs: list[torch.Tensor]) -> dict[str, Any]:
    runs = [timed(decode, e) for e in inputs]
    rates = [(r["tokens"] - 1) / r["decode_s"] for r in runs if r["decode_s"] > 0]
    return {
        "requests": len(runs),
        "ttft_s": statistics.median(r["ttft_s"] for r in runs),
        "decode_tokens_per_s": statistics.median(rates),
        "latency_s": statistics.median(r["latency_s"] for r in runs),
    }


def concurrent(decode: Decode, inputs: list[torch.Tensor]) -> dict[str, Any]:
    start = time.perf_counter()
    with ThreadPoolExecutor(len(inputs)) as pool:
        runs = list(pool.map(lambda e: timed(decode, e, start), inputs))
    wall = time.perf_counter() - start
    latencies = sorted(r["latency_s"] for r in runs)
    return {
        "requests": len(runs),
        "wall_s": wall,
        "throughput_tokens_per_s": sum(r["tokens"] for r in runs) / wall,
        "p50_latency_s": _quantile(latencies, 0.50),
        "p95_latency_s": _quantile(latencies, 0.95),
        "median_ttft_s": statistics.median(r["ttft_s"] for r in runs),
    }


def _quantile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolation quantile of already sorted values."""
    pos = q * (len(sorted_values) - 1)
    low = int(pos)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (pos - low)


def local_decoder(pipe: E2LLMPipeline, new_tokens: int) -> Decode:
    """The library's decoder: one model behind the pipeline's lock, as ``ask`` uses it."""
    profiler = pipe.profiler
    return lambda embeds: profiler.token_times(embeds, new_tokens)


def vllm_decoder(base_url: str, new_tokens: int, served_model: str | None = None) -> Decode:
    backend = VLLMServerBackend(base_url, served_model, request_fields={"ignore_eos": True})
    gen = GenerationConfig(max_new_tokens=new_tokens)
    return lambda embeds: [time.perf_counter() for _ in backend.token_ids(embeds[0], gen)]


@contextlib.contextmanager
def server(args: argparse.Namespace, workdir: Path) -> Iterator[tuple[str, float | None]]:
    """The vLLM base URL (started here over the merged decoder unless ``--base-url``)."""
    if args.base_url:
        yield args.base_url, None
        return
    decoder = export_merged_decoder(args.checkpoint, workdir / "decoder")
    spec = ServerSpec(args.vllm_python, str(decoder), max_model_len=args.max_model_len)
    start = time.perf_counter()
    with vllm_server(spec, workdir / "server.log") as url:
        yield url, time.perf_counter() - start


def warm_up(decode: Decode, embeds: torch.Tensor) -> None:
    decode(embeds)


def measure(pipe: E2LLMPipeline, url: str, args: argparse.Namespace) -> dict[str, Any]:
    n_batch1, n_conc = args.batch1, args.concurrency
    if args.synthetic:
        pairs = synthetic_documents(1 + n_batch1 + n_conc, args.doc_tokens)
    else:
        pairs = squad_documents(
            args.data_dir, pipe.tokenizer, 1 + n_batch1 + n_conc, args.doc_tokens
        )
    inputs = decoder_inputs(pipe, pairs, args.new_tokens)
    warm, one, many = inputs[0], inputs[1 : 1 + n_batch1], inputs[1 + n_batch1 :]
    backends = {
        "local": local_decoder(pipe, args.new_tokens),
        "vllm": vllm_decoder(url, args.new_tokens, args.served_model),
    }
    results: dict[str, Any] = {
        "input_positions": statistics.median(int(e.shape[1]) for e in inputs)
    }
    for name, decode in backends.items():  # each document is new to both (no prefix reuse)
        warm_up(decode, warm)
        results[name] = {"batch1": batch1(decode, one), "concurrent": concurrent(decode, many)}
    return results


def with_ratios(results: dict[str, Any]) -> dict[str, Any]:
    """vLLM over local: > 1 means vLLM is better (faster, more throughput, lower latency)."""
    local, vllm = results["local"], results["vllm"]
    results["ratios_vllm_over_local"] = {
        "batch1_decode_tokens_per_s": vllm["batch1"]["decode_tokens_per_s"]
        / local["batch1"]["decode_tokens_per_s"],
        "batch1_ttft_speedup": local["batch1"]["ttft_s"] / vllm["batch1"]["ttft_s"],
        "concurrent_throughput": vllm["concurrent"]["throughput_tokens_per_s"]
        / local["concurrent"]["throughput_tokens_per_s"],
        "p50_latency_speedup": local["concurrent"]["p50_latency_s"]
        / vllm["concurrent"]["p50_latency_s"],
        "p95_latency_speedup": local["concurrent"]["p95_latency_s"]
        / vllm["concurrent"]["p95_latency_s"],
    }
    return results


def table(results: dict[str, Any]) -> str:
    rows = ["| metric | local | vLLM | vLLM / local |", "|---|---|---|---|"]
    ratios = results["ratios_vllm_over_local"]
    spec = [
        ("batch 1: decode tokens/s", "batch1", "decode_tokens_per_s", "batch1_decode_tokens_per_s"),
        ("batch 1: time to first token (s)", "batch1", "ttft_s", "batch1_ttft_speedup"),
        (
            "concurrent: throughput (tokens/s)",
            "concurrent",
            "throughput_tokens_per_s",
            "concurrent_throughput",
        ),
        ("concurrent: p50 latency (s)", "concurrent", "p50_latency_s", "p50_latency_speedup"),
        ("concurrent: p95 latency (s)", "concurrent", "p95_latency_s", "p95_latency_speedup"),
    ]
    for label, phase, key, ratio in spec:
        local, vllm = results["local"][phase][key], results["vllm"][phase][key]
        rows.append(f"| {label} | {local:.3g} | {vllm:.3g} | {ratios[ratio]:.2f}x |")
    return "\n".join(rows)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="default: the shipped checkpoint")
    parser.add_argument("--vllm-python", default=".venv-vllm/bin/python", help="Python with vLLM")
    parser.add_argument("--base-url", default=None, help="use this running vLLM server instead")
    parser.add_argument("--served-model", default=None, help="its model name (default: asked)")
    parser.add_argument("--data-dir", default=None, help="default: $E2LLM_DATA_DIR or ./data")
    parser.add_argument("--synthetic", action="store_true", help="generated documents, no data")
    parser.add_argument("--doc-tokens", type=int, default=2000, help="decoder tokens per document")
    parser.add_argument("--new-tokens", type=int, default=64, help="tokens decoded per request")
    parser.add_argument("--batch1", type=int, default=4, help="requests in the batch-1 phase")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent requests")
    parser.add_argument("--max-model-len", type=int, default=8192)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (local decoder)")
    parser.add_argument("--out", default="results/bench_vllm.json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe = E2LLMPipeline.from_pretrained(args.checkpoint, device="cpu")
    machine = machine_info("cpu")
    started = time.perf_counter()
    with (
        tempfile.TemporaryDirectory(prefix="bench-vllm-") as tmp,
        server(args, Path(tmp)) as (url, boot),
    ):
        results = with_ratios(measure(pipe, url, args))
    results["meta"] = {
        "command": " ".join(["python", *sys.argv]),
        "config": {k: v for k, v in vars(args).items()},
        "machine": machine,
        "server_start_s": boot,
        "seconds": time.perf_counter() - started,
        "model": args.checkpoint or "shipped checkpoint",
    }
    write_json(args.out, results)
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
