"""``e2llm sweep``: chunk size x soft tokens per chunk, trained at an equal budget.

The grid, the per-cell runs and the results table are in :mod:`e2llm_integrations.eval.sweep`.
"""

from __future__ import annotations

import argparse

from .errors import CLIError


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise CLIError(
            f"Expected comma-separated integers, e.g. 64,128,256; got {text!r}."
        ) from None
    if not values:
        raise CLIError("Give at least one value, e.g. 64,128,256.")
    return values


def cmd_sweep(args: argparse.Namespace) -> int:
    """Train and validate every (chunk tokens, soft tokens) cell; write the results JSON."""
    import platform
    import sys

    import torch

    from ..core.io import write_json
    from ..core.training.config import TrainConfig
    from ..eval.sweep import collect, grid, run_cell, sweep_table

    try:
        base = TrainConfig.from_file(args.config)
        cells = grid(_ints(args.chunk_tokens), _ints(args.soft_tokens))
    except (ValueError, TypeError) as err:
        raise CLIError(str(err)) from err
    if args.data_dir is not None:
        base.data_dir = args.data_dir
    wanted = set(args.cells.split(",")) if args.cells else None
    unknown = (wanted or set()) - {c.name for c in cells}
    if unknown:
        raise CLIError(f"Unknown cells {sorted(unknown)}; cells are {[c.name for c in cells]}.")
    for cell in cells:
        if wanted is None or cell.name in wanted:
            run_cell(base, cell, args.root, recon_eval=args.recon_eval)
    rows = collect(args.root, cells)
    result = {
        "meta": {
            "command": "e2llm " + " ".join(sys.argv[1:]),
            "config": base.to_dict(),
            "machine": {
                "platform": platform.platform(),
                "torch": torch.__version__,
                "threads": base.threads or torch.get_num_threads(),
            },
            "cells_finished": len(rows),
            "cells_total": len(cells),
        },
        "rows": rows,
    }
    write_json(args.out, result)
    print(sweep_table(rows))
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``sweep`` on the ``e2llm`` subparsers."""
    sweep = sub.add_parser(
        "sweep",
        help="chunk size x soft tokens per chunk at an equal training budget",
        description="Train one run per (chunk tokens, soft tokens) cell from the same base "
        "config (same data, steps, batch, seed), validate each (QA F1/loss, reconstruction "
        "F1/loss, decoder positions per 1k tokens) and write a results JSON. Interrupted "
        "cells resume; finished cells are reused.",
    )
    sweep.add_argument("--config", required=True, help="base TrainConfig, e.g. configs/sweep.yaml")
    sweep.add_argument(
        "--chunk-tokens", default="64,128,256", help="chunk lengths (encoder tokens)"
    )
    sweep.add_argument("--soft-tokens", default="1,2,4", help="soft tokens per chunk")
    sweep.add_argument("--cells", default=None, help="run only these cells, e.g. c64-k1,c128-k2")
    sweep.add_argument("--root", default="runs/sweep", help="folder of the cells' runs")
    sweep.add_argument("--data-dir", default=None, help="override the config's data_dir")
    sweep.add_argument("--recon-eval", type=int, default=12, help="chunks reconstructed per cell")
    sweep.add_argument("--out", default="results/sweep.json", help="results JSON")
    sweep.set_defaults(func=cmd_sweep)
