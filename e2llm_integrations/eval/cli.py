"""Evaluation subcommands of ``e2llm``: ``eval niah``, ``eval qa``, ``eval report``, ``bench``.

``add_commands`` is called by :func:`e2llm_integrations.cli.build_parser`. Result tables
go to stdout (markdown), JSON and PNG files to ``--out-dir`` (default ``results/``, or
``results/quick/`` with ``--quick``), progress to stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import shlex
import time
from pathlib import Path
from typing import Any, TypeVar

from ..core.io import write_text
from ..core.options import AUTOCAST_MODES
from .common import ModelSource, RunMeta, machine_info, parse_floats, parse_lengths, write_json

logger = logging.getLogger(__name__)

T = TypeVar("T")
DEFAULT_OUT = "results"
QUICK_OUT = "results/quick"


def _override(base: T, **values: Any) -> T:
    """``base`` with every non-``None`` value replaced."""
    return dataclasses.replace(base, **{k: v for k, v in values.items() if v is not None})  # type: ignore[type-var]


def _csv(text: str | None) -> tuple[str, ...] | None:
    return None if text is None else tuple(p.strip() for p in text.split(",") if p.strip())


def command_line(args: argparse.Namespace) -> str:
    """The command as typed (options that differ from their defaults), for result files."""
    parser: argparse.ArgumentParser = args._parser
    words = ["e2llm", *args._prog]
    for action in parser._actions:
        if not action.option_strings or action.dest == "help":
            continue
        value = getattr(args, action.dest, None)
        if value == action.default:
            continue
        flag = action.option_strings[-1]
        words += [flag] if isinstance(action, argparse._StoreTrueAction) else [flag, str(value)]
    return shlex.join(words)


def _source(args: argparse.Namespace) -> ModelSource:
    return ModelSource(args.checkpoint, args.model_config, args.device, args.threads, args.autocast)


def _meta(args: argparse.Namespace, kind: str, source: ModelSource, pipe: Any, cfg: Any) -> RunMeta:
    return RunMeta(
        kind=kind,
        model=source.label(pipe),
        trained=bool(pipe.trained),
        config=dataclasses.asdict(cfg),
        command=command_line(args),
        machine={
            **machine_info(args.device),
            "autocast": args.autocast,
            "precision": pipe.precision,
        },
    )


def _cache(args: argparse.Namespace) -> Any:
    """The baseline-answer cache named by ``--baseline-cache`` (``none``: no cache)."""
    from .systems import BaselineCache

    if args.baseline_cache == "none":
        return None
    if args.baseline_cache:
        return BaselineCache(args.baseline_cache)
    from ..data import DATA_DIR_ENV

    data = args.data_dir or os.environ.get(DATA_DIR_ENV) or "data"
    return BaselineCache(Path(data) / "cache" / "baseline_answers.jsonl")


def _baseline_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--baseline-cache", default=None,
        help="JSON-lines file reusing the full/rag answers (no checkpoint changes them); "
        "default DATA_DIR/cache/baseline_answers.jsonl, `none` to always rerun them",
    )  # fmt: skip


def _out_dir(args: argparse.Namespace) -> Path:
    return Path(args.out_dir or (QUICK_OUT if args.quick else DEFAULT_OUT))


def cmd_niah(args: argparse.Namespace) -> int:
    from ..data import load_haystack
    from .niah import QUICK_NIAH, NiahConfig, run_niah, summarize_niah
    from .plots import niah_heatmap
    from .report import NIAH_FILE, niah_table

    base = QUICK_NIAH if args.quick else NiahConfig()
    system = _override(base.system, top_k=args.top_k, max_new_tokens=args.max_new_tokens)
    depths = parse_floats(args.depths) if args.depths else None
    cfg = _override(
        base, lengths=parse_lengths(args.lengths) if args.lengths else None,
        depths=tuple(d / 100 for d in depths) if depths else None, needles=args.needles,
        variant=args.variant,
        systems=_csv(args.systems), seed=args.seed, system=system,
        full_max_length=parse_lengths(args.full_max_length)[0] if args.full_max_length else None,
    )  # fmt: skip
    source = _source(args)
    haystack = load_haystack(args.data_dir)
    pipe = source.load()
    meta, start = _meta(args, "niah", source, pipe, cfg), time.perf_counter()
    cells = run_niah(pipe, haystack, cfg, _cache(args))
    meta.seconds = round(time.perf_counter() - start, 1)
    summary = summarize_niah(cells)
    result = {"meta": meta.to_dict(), "summary": summary, "cells": cells}
    out = _out_dir(args)
    stem = "niah" if cfg.variant == "magic" else f"niah_{cfg.variant}"
    write_json(out / (NIAH_FILE if cfg.variant == "magic" else f"{stem}.json"), result)
    for name, grid in summary["grid"].items():
        title = f"NIAH ({cfg.variant}): {name} - {meta.model}"
        png = out / f"{stem}_{name.replace('@', '_k')}.png"
        niah_heatmap(grid, sorted(cfg.lengths), list(cfg.depths), title, png)
    print(niah_table(result))
    return 0


def cmd_qa(args: argparse.Namespace) -> int:
    from .qa import QUICK_QA, QAConfig, run_qa, summarize_qa
    from .report import QA_FILE, qa_table

    base = QUICK_QA if args.quick else QAConfig()
    system = _override(base.system, top_k=args.top_k, max_new_tokens=args.max_new_tokens)
    cfg = _override(
        base, lengths=parse_lengths(args.lengths) if args.lengths else None,
        tasks=_csv(args.tasks), n=args.n, systems=_csv(args.systems), seed=args.seed,
        system=system, split=args.split,
    )  # fmt: skip
    source = _source(args)
    pipe = source.load()
    meta, start = _meta(args, "qa", source, pipe, cfg), time.perf_counter()
    cells = run_qa(pipe, args.data_dir, cfg, _cache(args))
    meta.seconds = round(time.perf_counter() - start, 1)
    result = {"meta": meta.to_dict(), "summary": summarize_qa(cells), "cells": cells}
    write_json(_out_dir(args) / QA_FILE, result)
    print(qa_table(result))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from ..data import load_haystack
    from .bench import QUICK_BENCH, BenchConfig, haystack_texts, run_bench, with_ratios
    from .plots import bench_plot
    from .report import BENCH_FILE, bench_table

    base = QUICK_BENCH if args.quick else BenchConfig()
    cfg = _override(
        base, lengths=parse_lengths(args.lengths) if args.lengths else None,
        systems=_csv(args.systems), new_tokens=args.new_tokens, repeats=args.repeats,
        top_k=args.top_k, isolate=False if args.in_process else None,
    )  # fmt: skip
    source = _source(args)
    pipe = source.load()
    meta, start = _meta(args, "bench", source, pipe, cfg), time.perf_counter()
    texts = haystack_texts(pipe, load_haystack(args.data_dir), cfg.lengths)
    rows = with_ratios(run_bench(source, texts, cfg, pipe))
    meta.seconds = round(time.perf_counter() - start, 1)
    result = {"meta": meta.to_dict(), "rows": rows}
    out = _out_dir(args)
    write_json(out / BENCH_FILE, result)
    bench_plot(rows, f"e2llm bench - {meta.model}", out / "bench.png")
    print(bench_table(result))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report import keep_hand_written, render_results

    text = render_results(args.results_dir, args.out)
    if args.out != "-" and Path(args.out).is_file():
        text = keep_hand_written(text, Path(args.out).read_text())
    if args.out == "-":
        print(text)
    else:
        write_text(args.out, text)
        logger.info("Wrote %s", args.out)
    return 0


def _common(p: argparse.ArgumentParser, prog: list[str]) -> None:
    """Model, data, output and speed flags shared by every evaluation command."""
    p.add_argument("--checkpoint", default=None, help="checkpoint folder (default: shipped)")
    p.add_argument("--model-config", default=None,
                   help="E2LLMConfig JSON: evaluate an UNTRAINED model built from it (tests)")  # fmt: skip
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: auto)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--autocast", default="auto", choices=AUTOCAST_MODES,
                   help="inference precision: auto (bf16 where the CPU has AVX512-BF16/AMX), "
                   "bf16, off (fp32)")  # fmt: skip
    p.add_argument(
        "--data-dir", default=None, help="prepared data (default: $E2LLM_DATA_DIR or ./data)"
    )
    p.add_argument(
        "--out-dir", default=None, help=f"default: {DEFAULT_OUT}/ ({QUICK_OUT}/ with --quick)"
    )
    p.add_argument("--quick", action="store_true", help="tiny grid for smoke tests (~1 min)")
    p.add_argument(
        "--lengths", default=None, help="context lengths in decoder tokens, e.g. 1k,2k,8k"
    )
    p.add_argument("--systems", default=None, help="comma-separated subset of the systems")
    p.add_argument(
        "--top-k", type=int, default=None, help="k of the plain `rag` and `hybrid` systems"
    )
    p.set_defaults(_parser=p, _prog=prog)


def _add_eval(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    ev = sub.add_parser("eval", help="needle-in-a-haystack and QA evaluation")
    ev_sub = ev.add_subparsers(dest="eval_command", required=True)
    niah = ev_sub.add_parser("niah", help="needles at depths 0-100%% x context lengths; heat-maps",
                             description="Systems: e2llm, full, rag, hybrid. Default grid "
                             "1k-128k x 5 depths x 2 needles (full up to 8k).")  # fmt: skip
    _common(niah, ["eval", "niah"])
    _baseline_flag(niah)
    niah.add_argument("--depths", default=None, help="percent, e.g. 0,25,50,75,100")
    niah.add_argument("--needles", type=int, default=None, help="needles (trials) per cell")
    niah.add_argument(
        "--variant", default=None, choices=["magic", "paraphrase"],
        help="magic: a number asked for in the needle's words (results/niah.json); "
        "paraphrase: a word or name asked for in other words (results/niah_paraphrase.json)",
    )  # fmt: skip
    niah.add_argument("--full-max-length", default=None, help="longest length for full (8k)")
    niah.add_argument("--max-new-tokens", type=int, default=None)
    niah.add_argument("--seed", type=int, default=None)
    niah.set_defaults(func=cmd_niah)
    qa = ev_sub.add_parser("qa", help="SQuAD single-doc and HotpotQA multi-doc QA (test split)",
                           description="F1/EM per system x task x length (2k, 4k, 8k).")  # fmt: skip
    _common(qa, ["eval", "qa"])
    _baseline_flag(qa)
    qa.add_argument("--tasks", default=None, help="single_doc,multi_doc")
    qa.add_argument("--n", type=int, default=None, help="questions per (task, length) cell")
    qa.add_argument("--max-new-tokens", type=int, default=None)
    qa.add_argument("--seed", type=int, default=None)
    qa.add_argument(
        "--split", default=None, choices=["val", "test"],
        help="test (default; the reported numbers) or val (to choose settings)",
    )  # fmt: skip
    qa.set_defaults(func=cmd_qa)
    rep = ev_sub.add_parser("report", help="render docs/RESULTS.md from result files")
    rep.add_argument("--results-dir", default=DEFAULT_OUT)
    rep.add_argument("--out", default="docs/RESULTS.md", help="output file, or - for stdout")
    rep.set_defaults(func=cmd_report)


def _add_bench(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    b = sub.add_parser("bench", help="TTFT, decode speed and peak memory against context length",
                       description="Systems: e2llm_cold, e2llm_warm, full, rag. One fresh "
                       "process per measurement unless --in-process.")  # fmt: skip
    _common(b, ["bench"])
    b.add_argument("--new-tokens", type=int, default=None, help="tokens decoded (default 32)")
    b.add_argument("--repeats", type=int, default=None, help="measurements per cell")
    b.add_argument("--in-process", action="store_true",
                   help="measure in this process (faster; memory only indicative)")  # fmt: skip
    b.set_defaults(func=cmd_bench)


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``eval`` and ``bench`` on the ``e2llm`` subparsers."""
    _add_eval(sub)
    _add_bench(sub)
