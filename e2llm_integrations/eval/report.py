"""Markdown tables of result files, and ``docs/RESULTS.md`` rendered from them.

Every number in the rendered document comes from a result JSON; every table names the
command, model and machine recorded in that file's ``meta`` block.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .common import length_label, read_json
from .qa import contained, summarize_qa

REPRODUCE = """## How to reproduce

On a prepared data folder (`e2llm data prepare`), with the checkpoint to evaluate
(default: the shipped one; add `--checkpoint PATH` to every command otherwise):

```
e2llm eval niah                  # results/niah.json + results/niah_<system>.png
e2llm eval niah --variant paraphrase   # results/niah_paraphrase.json (+ heatmaps)
e2llm eval qa                    # results/qa.json
e2llm bench                      # results/bench.json + results/bench.png
python benchmarks/bench_8k.py    # results/bench_8k.json
e2llm sweep --config configs/sweep.yaml   # results/sweep.json (trains 9 small runs)
e2llm eval report                # rewrites this file from results/
```

Systems: `e2llm` (the default mode: soft tokens for every chunk plus the few chunks most
similar to the question as raw text), `e2llm@K` (K chunks expanded; `e2llm@0` is soft
tokens only), `full` (plain SmolLM2, LoRA off, whole text in the prompt, cut in the middle
beyond its 8k window as LongBench does), `rag@k` (FAISS top-k MiniLM chunks as text into
plain SmolLM2); older files may show `rag` (k=8) and `hybrid` (soft tokens + top-8
excerpts). The `full` and `rag` answers are reused from `data/cache/baseline_answers.jsonl`
when the same question over the same text was answered before (`--baseline-cache none`
reruns them). See `benchmarks/README.md` for how speed and memory are measured.
"""

HAND_WRITTEN = "<!-- Written by hand from here on: `e2llm eval report` keeps it. -->"
"""Marker in ``docs/RESULTS.md``: what follows it is carried over when the file is rendered."""

NIAH_FILE = "niah.json"
NIAH_PARAPHRASE_FILE = "niah_paraphrase.json"
QUALITY_COST_PNG = "quality_vs_cost.png"
QA_FILE = "qa.json"
BENCH_FILE = "bench.json"
BENCH_8K_FILE = "bench_8k.json"
SWEEP_FILE = "sweep.json"


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def niah_table(result: dict[str, Any]) -> str:
    """Systems x lengths: share of needles found (all depths and needles)."""
    by_length = result["summary"]["by_length"]
    lengths = sorted({int(n) for v in by_length.values() for n in v})
    header = ["system", *(length_label(n) for n in lengths), "all"]
    rows = [
        [s, *(_fmt(v.get(str(n))) for n in lengths), _fmt(result["summary"]["overall"][s])]
        for s, v in by_length.items()
    ]
    return _table(header, rows)


def qa_table(result: dict[str, Any]) -> str:
    """Systems x (task, length): F1 / EM / answer contained (re-summarised from the cells,
    so files written before ``contained`` existed get it too)."""
    summary = summarize_qa(result["cells"]) if result.get("cells") else result["summary"]
    cols = sorted({(t, int(n)) for v in summary.values() for t, by_n in v.items() for n in by_n})
    header = ["system", *(f"{t} {length_label(n)} F1 / EM / contained" for t, n in cols)]
    rows = []
    for system, v in summary.items():
        cells = []
        for t, n in cols:
            cell = v.get(t, {}).get(str(n))
            cells.append(
                "-"
                if cell is None
                else f"{cell['f1']:.3f} / {cell['em']:.3f} / {cell['contained']:.3f}"
            )
        rows.append([system, *cells])
    n_per = {c["n"] for v in summary.values() for by_n in v.values() for c in by_n.values()}
    return _table(header, rows) + f"\n\nQuestions per cell: {', '.join(map(str, sorted(n_per)))}."


def cost_points(result: dict[str, Any], score: str) -> list[tuple[str, float, float]]:
    """``(system, mean input positions, mean score)`` over all cells of a result file."""
    acc: dict[str, list[tuple[float, float]]] = {}
    for c in result["cells"]:
        value = contained(c) if score == "contained" else c[score]
        acc.setdefault(c["system"], []).append((c["input_positions"], value))
    return [
        (name, sum(p for p, _ in v) / len(v), sum(x for _, x in v) / len(v))
        for name, v in acc.items()
    ]


def quality_cost(root: Path, plot: bool = True, doc_dir: Path | None = None) -> str:
    """Quality against cost (decoder positions) per system, over QA and both NIAH variants."""
    sources = (("QA F1", QA_FILE, "f1"), ("QA answer contained", QA_FILE, "contained"),
               ("needles found", NIAH_FILE, "score"),
               ("paraphrased needles found", NIAH_PARAPHRASE_FILE, "score"))  # fmt: skip
    points = {
        label: cost_points(read_json(root / name), key)
        for label, name, key in sources
        if (root / name).is_file()
    }
    if not points:
        return "Not run yet (no QA or NIAH results)."
    systems = sorted({n for rows in points.values() for n, _, _ in rows}, key=_system_order)
    header = ["system"] + [h for label in points for h in (f"{label}", "positions")]
    table = []
    for name in systems:
        row = [name]
        for rows in points.values():
            hit = next(((p, s) for n, p, s in rows if n == name), None)
            row += ["-", "-"] if hit is None else [f"{hit[1]:.3f}", f"{hit[0]:,.0f}"]
        table.append(row)
    image = ""
    if plot and any(n.startswith("e2llm@") for rows in points.values() for n, _, _ in rows):
        from .plots import quality_cost_plot

        quality_cost_plot(points, root / QUALITY_COST_PNG)
        link = Path(os.path.relpath(root / QUALITY_COST_PNG, doc_dir or root)).as_posix()
        image = f"\n![quality vs cost]({link})\n"
    note = (
        "Means over every cell of each result file (all lengths, tasks, depths); positions "
        "are decoder input positions per answer. `e2llm@K` shows the K chunks most similar "
        "to the question as raw text next to the soft tokens; `e2llm` is the shipped default."
    )
    return f"{note}\n\n{_table(header, table)}\n{image}"


def _system_order(name: str) -> tuple[int, int, str]:
    base, _, k = name.partition("@")
    rank = {"e2llm": 0, "hybrid": 1, "full": 2, "rag": 3}.get(base, 4)
    return rank, int(k) if k.isdigit() else -1, name


def bench_table(result: dict[str, Any]) -> str:
    """One row per (length, system): times, memory and ratios against ``full``."""
    header = ["length", "system", "positions", "TTFT s", "decode tok/s", "peak extra MiB",
              "weights MiB", "TTFT speed-up vs full", "memory vs full"]  # fmt: skip
    rows = []
    for r in sorted(
        result["rows"], key=lambda r: (r["length"], str(r.get("autocast")), r["system"])
    ):
        system = f"{r['system']} [{r['autocast']}]" if r.get("autocast") else r["system"]
        if r.get("skipped"):
            rows.append([length_label(r["length"]), system, "-", "skipped: over window",
                         "-", "-", "-", "-", "-"])  # fmt: skip
            continue
        rows.append([
            length_label(r["length"]), system, str(r["input_positions"]),
            _fmt(r["ttft_s"], 3), _fmt(r["decode_tok_s"], 1), _fmt(r["peak_mb"], 0),
            _fmt(r["weights_mb"], 0), _fmt(r.get("ttft_speedup")), _fmt(r.get("memory_ratio")),
        ])  # fmt: skip
    return _table(header, rows)


def bench_8k_summary(result: dict[str, Any]) -> str:
    """E2LLM (cold, warm, prefix-cached) vs the base decoder on one document, per precision,
    with ratios against full context and bf16 against fp32."""
    rows: dict[tuple[str, str | None], dict[str, Any]] = {
        (r["system"], r.get("autocast")): r for r in result["rows"] if not r.get("skipped")
    }
    modes = sorted({m for _, m in rows}, key=lambda m: (m != "fp32", str(m)))
    lines: list[str] = []
    for mode in modes:
        full = rows.get(("full", mode))
        e2 = rows.get(("e2llm_cold", mode))
        if full is None or e2 is None:
            continue
        if not lines:
            lines.append(
                f"* Document: {e2['context_tokens']} decoder tokens; {result['meta']['model']}."
            )
        tag = f" [{mode}]" if mode else ""
        lines.append(
            f"* SmolLM2 reading it{tag}: TTFT {full['ttft_s']:.2f} s, wall {full['wall_s']:.2f} s, "
            f"peak extra memory {full['peak_mb']:.0f} MiB"
        )
        for system, label in (
            ("e2llm_cold", "E2LLM cold (encode + prefill)"),
            ("e2llm_warm", "E2LLM warm (corpus encoded)"),
            ("e2llm_cached", "E2LLM repeat question (prefix KV cached)"),
        ):
            r = rows.get((system, mode))
            if r is None:
                continue
            extra = f", cache {r['cache_mb']:.1f} MiB per corpus" if r.get("cache_mb") else ""
            lines.append(
                f"* {label}{tag}: TTFT {r['ttft_s'] * 1000:.1f} ms "
                f"(**{full['ttft_s'] / r['ttft_s']:.0f}x** faster than full), "
                f"{r['input_positions']} positions{extra}"
            )
    fp32, bf16 = "fp32", "bf16"
    cold32, cold16 = rows.get(("e2llm_cold", fp32)), rows.get(("e2llm_cold", bf16))
    full32, full16 = rows.get(("full", fp32)), rows.get(("full", bf16))
    if (
        cold32
        and cold16
        and full32
        and full16
        and cold16.get("setup_s")
        and full16.get("prefill_s")
    ):
        lines.append(
            f"* bf16 over fp32: encode + adapter {cold32['setup_s'] / cold16['setup_s']:.2f}x, "
            f"full-context prefill {full32['prefill_s'] / full16['prefill_s']:.2f}x, "
            f"decode {full16['decode_tok_s'] / full32['decode_tok_s']:.2f}x tokens/s"
        )
    return "\n".join(lines) or "bench_8k needs both e2llm_cold and full measurements."


def meta_block(result: dict[str, Any]) -> str:
    """Command, model, machine and date of one result file, as markdown."""
    m = result["meta"]
    mach = m.get("machine", {})
    load, cores = mach.get("load_average_1m"), mach.get("cpu_count") or 0
    where = (
        f"{cores} CPU cores ({mach.get('processor')}), torch {mach.get('torch')}, "
        f"torch threads: {mach.get('torch_threads')}"
        + (f", GPU {mach['gpu']}" if mach.get("gpu") else "")
        + f", 1-min load average at start: {load if load is not None else '-'}"
    )
    if load is not None and load > cores and not mach.get("gpu"):
        where += " (**the machine was shared: timings are not comparable**)"
    note = ""
    if not m["trained"]:
        speed = m["kind"] in ("bench", "bench_8k")
        note = (
            " (untrained: speed and memory do not depend on training)"
            if speed
            else " (**untrained: scores are noise**)"
        )
    return "\n".join([
        f"* Command: `{m['command']}`",
        f"* Model: {m['model']}{note}",
        f"* Machine: {where}",
        f"* Run: {m['started']}, {m['seconds']:.0f} s, git {m.get('git_commit') or '-'}",
    ])  # fmt: skip


def _section(title: str, path: Path, body: Any, extra: str = "") -> str:
    if not path.is_file():
        return f"## {title}\n\nNot run yet (`{path}` is missing).\n"
    result = read_json(path)
    return f"## {title}\n\n{meta_block(result)}\n\n{body(result)}\n{extra}"


def sweep_section(path: Path) -> str:
    """The chunk-size x soft-tokens sweep (``e2llm sweep``), if it was run."""
    from .sweep import sweep_table

    title = "## Chunk size x soft tokens per chunk (validation split, equal training budget)"
    if not path.is_file():
        return f"{title}\n\nNot run yet (`{path}` is missing).\n"
    result = json.loads(path.read_text())
    m, cfg = result["meta"], result["meta"]["config"]
    recon = result["rows"][0]["recon_chunks"] if result["rows"] else 0
    mach = m.get("machine", {})
    return "\n".join([
        title,
        "",
        f"* Command: `{m['command']}`",
        f"* Budget per cell: {cfg['steps']} steps x {cfg['batch_size']} examples "
        f"({cfg['stage1_steps']} reconstruction-only), seed {cfg['seed']}; cells finished: "
        f"{m['cells_finished']} of {m['cells_total']}",
        f"* Machine: {mach.get('platform')}, torch {mach.get('torch')}, "
        f"torch threads: {mach.get('threads')}",
        "",
        f"QA F1/EM: greedy answers to {cfg['val_generations']} held-out questions in "
        "256-2,048-token contexts (one question more or less right moves F1 by about 0.03). "
        f"Recon F1: token F1 of the greedy reconstruction of {recon} single held-out chunks. "
        "Losses: teacher-forced, on held-out examples. Positions / 1k tokens: decoder "
        "positions the soft tokens take per 1,000 encoder tokens.",
        "",
        sweep_table(result["rows"]),
        "",
    ])  # fmt: skip


def _images(result_dir: Path, prefix: str, doc_dir: Path, exclude: str | None = None) -> str:
    pngs = sorted(result_dir.glob(f"{prefix}*.png"))
    pngs = [p for p in pngs if exclude is None or not p.name.startswith(exclude)]
    return "".join(f"\n![{p.stem}]({Path(os.path.relpath(p, doc_dir)).as_posix()})\n" for p in pngs)


def _banner(root: Path) -> str:
    """A warning when the results are smoke runs or come from an untrained model."""
    metas = [
        read_json(root / name)["meta"]
        for name in (NIAH_FILE, NIAH_PARAPHRASE_FILE, QA_FILE, BENCH_FILE, BENCH_8K_FILE)
        if (root / name).is_file()
    ]
    notes = []
    if any(not m["trained"] for m in metas):
        notes.append("some results below come from an **untrained** adapter")
    if any("--quick" in m["command"] for m in metas):
        notes.append("some are `--quick` smoke-test grids")
    if not notes:
        return ""
    return f"> **Note:** {' and '.join(notes)}; rerun the commands below to replace them.\n"


def render_results(result_dir: str | Path, doc_path: str | Path = "docs/RESULTS.md") -> str:
    """The whole ``docs/RESULTS.md`` from the result files in ``result_dir``."""
    root, doc_dir = Path(result_dir), Path(doc_path).parent
    parts = [
        "# Results\n",
        "Generated by `e2llm eval report` from the JSON files in "
        f"`{root.as_posix()}/`; every number below was produced by the command shown with it. "
        "Scores: NIAH = share of needles whose 7-digit number (paraphrase variant: whose word "
        "or name) appears in the answer; QA = "
        "SQuAD/LongBench-normalised F1 and exact match on the held-out **test** split.\n",
        _banner(root),
        REPRODUCE,
        _section("Needle in a haystack", root / NIAH_FILE, niah_table,
                 _images(root, "niah_", doc_dir, exclude="niah_paraphrase")),
        _section("Needle in a haystack, paraphrased questions", root / NIAH_PARAPHRASE_FILE,
                 niah_table, _images(root, "niah_paraphrase_", doc_dir)),
        _section("Long-context QA (test split)", root / QA_FILE, qa_table),
        "## Quality vs cost\n\n" + quality_cost(root, doc_dir=doc_dir) + "\n",
        _section("Speed and memory", root / BENCH_FILE, bench_table,
                 _images(root, "bench", doc_dir)),
        _section("One 8k-token document: E2LLM vs SmolLM2 reading it directly",
                 root / BENCH_8K_FILE, lambda r: bench_table(r) + "\n\n" + bench_8k_summary(r)),
        sweep_section(root / SWEEP_FILE),
    ]  # fmt: skip
    return "\n".join(parts).rstrip() + "\n"


def keep_hand_written(rendered: str, previous: str | None) -> str:
    """``rendered`` followed by whatever ``previous`` holds from :data:`HAND_WRITTEN` on."""
    if not previous or HAND_WRITTEN not in previous:
        return rendered
    return rendered + "\n" + previous[previous.index(HAND_WRITTEN) :].rstrip() + "\n"
