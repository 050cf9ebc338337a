"""``e2llm train``: train an adapter + LoRA from a config file, plot, optionally export."""

from __future__ import annotations

import argparse
import json

from .errors import CLIError


def cmd_train(args: argparse.Namespace) -> int:
    """Train (resuming from ``out_dir/checkpoint-last`` if present), plot, optionally export.

    Under ``torchrun`` or ``accelerate launch`` every process trains its share of each
    batch; rank 0 alone prints, plots and exports.
    """
    from ..core.training.config import TrainConfig
    from ..core.training.distributed import Distributed
    from ..core.training.run import build_trainer, export, resolve_device
    from ..eval.plots import plot_losses

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


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``train`` on the ``e2llm`` subparsers."""
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
