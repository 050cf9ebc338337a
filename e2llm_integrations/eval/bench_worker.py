"""One ``e2llm bench`` measurement in a fresh process: load, warm up, measure, print JSON.

Run by :func:`e2llm_integrations.eval.bench.run_worker` as
``python -m e2llm_integrations.eval.bench_worker SPEC.json [--checkpoint PATH | --model-config
PATH] [--device DEV] [--threads N]``; the last line of stdout is the measurement.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from .bench import BenchConfig, measure, warm_up
from .common import ModelSource


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", help="JSON file: system, length, text, config")
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--model-config", default=None)
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--autocast", default="auto")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    with open(args.spec, encoding="utf-8") as fh:
        spec = json.load(fh)
    raw = spec["config"]
    cfg = BenchConfig(**{**raw, "lengths": tuple(raw["lengths"]), "systems": tuple(raw["systems"])})
    source = ModelSource(
        args.checkpoint, args.model_config, args.device, args.threads, args.autocast
    )
    pipe = source.load()
    warm_up(pipe, spec["system"], spec["text"])
    row = measure(pipe, spec["system"], spec["text"], spec["length"], cfg)
    sys.stdout.write(json.dumps(row.to_dict()) + "\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
