"""One ~8k-token document: E2LLM (cold, warm, prefix-cached) vs SmolLM2 reading it, fp32 and bf16.

Issue 2's benchmark. The document is the longest held-out SQuAD test article, cut at a
paragraph boundary to at most ``--tokens`` decoder tokens (default 8000, which still fits
SmolLM2's 8192-token window with the prompt and 32 new tokens). Both systems run in the
same invocation, each in a fresh worker process (see ``e2llm bench``), in fp32 and in
bf16 autocast; the ratios (against full context in the same precision, and bf16 against
fp32) are printed and written to ``results/bench_8k.json``. ``e2llm_cached`` is a repeat
question over the same document: its decoder KV over the prompt prefix and soft tokens
comes from the prefix cache, whose size is reported.

Usage:
    python benchmarks/bench_8k.py [--checkpoint PATH] [--device cuda] [--threads 2]
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
from typing import Any

from e2llm_integrations.data import load_squad
from e2llm_integrations.eval.bench import BenchConfig, run_bench, with_ratios
from e2llm_integrations.eval.common import ModelSource, RunMeta, machine_info, write_json
from e2llm_integrations.eval.report import bench_8k_summary

logger = logging.getLogger("bench_8k")


def document(data_dir: str | None, tokenizer: Any, max_tokens: int) -> str:
    """The longest SQuAD test article, whole paragraphs up to ``max_tokens`` tokens."""
    articles = load_squad(data_dir, "test")
    article = max(articles, key=lambda a: sum(len(p) for p in a["paragraphs"]))
    kept: list[str] = []
    for para in article["paragraphs"]:
        text = "\n\n".join([*kept, para])
        if len(tokenizer(text, add_special_tokens=False)["input_ids"]) > max_tokens:
            break
        kept.append(para)
    return "\n\n".join(kept)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="default: the shipped checkpoint")
    parser.add_argument("--model-config", default=None, help="untrained model from a config")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: auto)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--data-dir", default=None, help="default: $E2LLM_DATA_DIR or ./data")
    parser.add_argument("--tokens", type=int, default=8000, help="document length cap")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--out", default="results/bench_8k.json")
    parser.add_argument("--in-process", action="store_true", help="no worker processes")
    parser.add_argument(
        "--autocast",
        default="off,bf16",
        help="inference precisions measured, comma-separated (auto, bf16, off = fp32)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sources = {
        mode: ModelSource(args.checkpoint, args.model_config, args.device, args.threads, mode)
        for mode in args.autocast.split(",")
    }
    source = next(iter(sources.values()))
    pipe, start = source.load(), time.perf_counter()
    text = document(args.data_dir, pipe.tokenizer, args.tokens)
    n_tokens = pipe.tokenizer.count([text])[0]
    cfg = BenchConfig(
        lengths=(n_tokens,),
        systems=("e2llm_cold", "e2llm_warm", "e2llm_cached", "full"),
        new_tokens=args.new_tokens,
        isolate=not args.in_process,
    )
    meta = RunMeta(  # before the run: the machine's load is recorded at the start
        kind="bench_8k",
        model=source.label(pipe),
        trained=pipe.trained,
        config={
            "tokens": n_tokens,
            "new_tokens": args.new_tokens,
            "isolate": cfg.isolate,
            "autocast": list(sources),
        },
        command=shlex.join(["python", "benchmarks/bench_8k.py", *sys.argv[1:]]),
        machine=machine_info(args.device),
    )
    measured = []
    for each in sources.values():  # one worker process (or in-process model) per precision
        measured += run_bench(each, {n_tokens: text}, cfg, None if cfg.isolate else each.load())
    rows = with_ratios(measured)
    meta.seconds = round(time.perf_counter() - start, 1)
    result = {"meta": meta.to_dict(), "rows": rows}
    write_json(args.out, result)
    print(bench_8k_summary(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
