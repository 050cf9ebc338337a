"""The ``e2llm`` command line: ``ask``, ``info`` and the data, training and evaluation commands.

Answers go to stdout (with ``--json``: one JSON object with the answer, usage, sources
and finish reason); diagnostics go to stderr; bad input exits with status 2 and a
message that says what to fix.

One module per command group registers its subcommands (``add_commands``) and imports
what it runs only when it runs: :mod:`.ask` (``ask``, ``info``), :mod:`.data`
(``data prepare``), :mod:`.train` (``train``), :mod:`.sweep` (``sweep``),
:mod:`e2llm_integrations.eval.cli` (``eval ...``, ``bench``) and :mod:`.export`
(``export --merged-decoder``, for vLLM).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from ..eval import cli as eval_cli
from . import ask, data, export, sweep, train
from .errors import EXIT_USAGE, CLIError

__all__ = ["EXIT_USAGE", "CLIError", "build_parser", "main"]

COMMAND_GROUPS = (ask, data, train, sweep, eval_cli, export)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="e2llm", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in COMMAND_GROUPS:
        group.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args) or 0)
    except (CLIError, ValueError, TypeError) as err:
        print(f"e2llm: error: {err}", file=sys.stderr)
        return EXIT_USAGE
