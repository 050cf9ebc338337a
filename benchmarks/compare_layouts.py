"""Soft-token layouts side by side: one markdown table from their result files.

Issue 10, build item 4 compares 64 x 1, 64 x 4 (PMA) and 32 x 1 soft tokens trained at an
equal wall-clock budget (configs/budget-*.yaml). For each run name this reads what the
run and its evaluations wrote, and prints one row per run: the training budget actually
used, the held-out validation losses, the reconstruction gain, QA F1 and paraphrased NIAH,
each in the default mode (K=1 excerpt) and with soft tokens only (K=0). Nothing is
recomputed here; the commands that made each file are in the files.

Files read, for run ``NAME``:
    results/NAME/training_record.json   (copied from the exported checkpoint)
    results/probe/gain-NAME.json        (benchmarks/probe_soft_gain.py)
    results/NAME/qa.json                (e2llm eval qa --systems e2llm,e2llm@0)
    results/NAME/niah_paraphrase.json   (e2llm eval niah --variant paraphrase)
    results/NAME/niah.json              (e2llm eval niah, the magic-number variant; optional)

Usage:
    python benchmarks/compare_layouts.py budget-64x1 budget-64x4-pma budget-32x1
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def _read(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def qa_f1(qa: dict[str, Any], system: str) -> tuple[float, list[float]]:
    """Mean F1 over the length cells of ``system`` and the cells in order (single, multi)."""
    cells = [
        cell["f1"]
        for kind in ("single_doc", "multi_doc")
        for _, cell in sorted(qa["summary"][system][kind].items(), key=lambda kv: int(kv[0]))
    ]
    return _mean(cells), cells


def layout(record: dict[str, Any]) -> str:
    model = record["config"]["model"]
    chunk = model["chunking"]["chunk_tokens"]
    k = model["encoder"]["tokens_per_chunk"]
    kind = model["adapter"]["kind"]
    return f"{chunk} x {k} ({kind})"


def row(results: Path, name: str) -> dict[str, str]:
    record = _read(results / name / "training_record.json")
    if record is None:
        raise SystemExit(f"{results / name / 'training_record.json'} is missing: run {name} first.")
    val = record["validations"][-1] if record["validations"] else {}
    out = {
        "run": name,
        "layout": layout(record),
        "steps": str(record["steps"]),
        "step seconds": f"{record['train_seconds']:.0f}",
        "val loss QA / recon": f"{val.get('val_loss_qa', float('nan')):.3f} / "
        f"{val.get('val_loss_recon', float('nan')):.3f}",
    }
    gain = _read(results / "probe" / f"gain-{name}.json")
    if gain is not None:
        g = gain["nats_per_token"]
        out["recon gain (nats/token)"] = f"{g['gain']:.3f} ± {g['gain_stderr']:.3f}"
    qa = _read(results / name / "qa.json")
    if qa is not None:
        mean, cells = qa_f1(qa, "e2llm")
        out["QA F1, K=1 (cells)"] = f"{mean:.3f} ({' / '.join(f'{c:.2f}' for c in cells)})"
        out["QA F1, K=0"] = f"{qa_f1(qa, 'e2llm@0')[0]:.3f}"
    for variant, file in (("paraphrase", "niah_paraphrase.json"), ("magic", "niah.json")):
        niah = _read(results / name / file)
        if niah is None:
            continue
        by_length = niah["summary"]["by_length"]
        lengths = sorted(by_length["e2llm"], key=int)
        out[f"NIAH {variant}, K=1 ({'/'.join(lengths)})"] = " / ".join(
            f"{by_length['e2llm'][n]:.2f}" for n in lengths
        )
        out[f"NIAH {variant}, K=0"] = f"{niah['summary']['overall']['e2llm@0']:.2f}"
    return out


def table(rows: list[dict[str, str]]) -> str:
    """Markdown with one column per measure (those every row has, in first-seen order)."""
    keys = [k for k in rows[0] if all(k in r for r in rows)]
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(r[k] for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="run names (results/NAME/...)")
    ap.add_argument("--results", default="results", type=Path)
    args = ap.parse_args()
    print(table([row(args.results, name) for name in args.runs]))


if __name__ == "__main__":
    main()
