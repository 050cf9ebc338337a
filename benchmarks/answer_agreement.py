"""How often two evaluation runs give the same answers (e.g. bf16 vs fp32 inference).

Reads two ``e2llm eval qa`` (or ``niah``) result files, pairs their per-question rows by
(system, task, length, question id, position) and reports, per system: rows paired,
identical answers, and each run's mean F1 (or accuracy), with the bootstrap-free
standard error of the F1 difference over paired questions.

Usage:
    python benchmarks/answer_agreement.py results/qa.json results/bf16/qa.json \
        --out results/bf16/agreement.json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path
from typing import Any

KEY_FIELDS = ("system", "task", "length", "qid", "position", "depth", "needle")


def _rows(path: str) -> dict[tuple[Any, ...], dict[str, Any]]:
    cells = json.loads(Path(path).read_text(encoding="utf-8"))["cells"]
    return {tuple(c.get(k) for k in KEY_FIELDS): c for c in cells}


def _score(row: dict[str, Any]) -> float:
    for name in ("f1", "score"):
        if name in row:
            return float(row[name])
    raise ValueError(f"row has no f1 or score field: {sorted(row)}")


def agreement(a: str, b: str, systems: list[str] | None = None) -> dict[str, Any]:
    rows_a, rows_b = _rows(a), _rows(b)
    shared = sorted(set(rows_a) & set(rows_b), key=str)
    out: dict[str, Any] = {}
    for system in sorted({k[0] for k in shared}):
        if systems and system not in systems:
            continue
        keys = [k for k in shared if k[0] == system]
        sa = [_score(rows_a[k]) for k in keys]
        sb = [_score(rows_b[k]) for k in keys]
        diffs = [y - x for x, y in zip(sa, sb, strict=True)]
        same = sum(rows_a[k]["answer"].strip() == rows_b[k]["answer"].strip() for k in keys)
        se = statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else 0.0
        out[system] = {
            "paired": len(keys),
            "identical_answers": same,
            "identical_share": round(same / len(keys), 4),
            "score_a": round(statistics.fmean(sa), 4),
            "score_b": round(statistics.fmean(sb), 4),
            "score_diff": round(statistics.fmean(diffs), 4),
            "score_diff_se": round(se, 4),
        }
    return {"a": a, "b": b, "systems": out}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", help="first result file (e.g. fp32)")
    parser.add_argument("b", help="second result file (e.g. bf16)")
    parser.add_argument("--systems", default=None, help="comma-separated subset")
    parser.add_argument("--out", default=None, help="also write the summary here")
    args = parser.parse_args()
    result = agreement(args.a, args.b, args.systems.split(",") if args.systems else None)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
