"""What the probe scripts share: their common options, the pipeline load, the JSON record."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import torch

from e2llm_integrations import E2LLMPipeline
from e2llm_integrations.core.training.prepared import load_recon
from e2llm_integrations.eval.common import write_json


def parser(doc: str) -> argparse.ArgumentParser:
    """An argument parser with ``--checkpoint``, ``--data-dir``, ``--threads`` and ``--out``."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--checkpoint", default=None, help="checkpoint folder (default: shipped)")
    ap.add_argument("--data-dir", default="data")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None, help="write the result as JSON here")
    return ap


def load(args: argparse.Namespace) -> tuple[E2LLMPipeline, float]:
    """Set the thread count and load the pipeline; returns it and the start time."""
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    return E2LLMPipeline.from_pretrained(args.checkpoint), start


def val_chunks(pipe: E2LLMPipeline, data_dir: str, n: int) -> list[str]:
    """Up to ``n`` chunks (each of at least 32 characters) of the val paragraphs, in order."""
    out: list[str] = []
    for rec in load_recon(data_dir, "val"):
        text = rec["text"] if isinstance(rec, dict) else rec.text
        for chunk in pipe.chunk([text]) if text.strip() else []:
            if len(chunk.text) >= 32:
                out.append(chunk.text)
            if len(out) == n:
                return out
    return out


def record(args: argparse.Namespace, script: str, **fields: Any) -> dict[str, Any]:
    """The result's header: the checkpoint and the command that reproduces it."""
    return {
        "checkpoint": args.checkpoint or "shipped",
        "command": f"python benchmarks/{script} " + " ".join(sys.argv[1:]),
        **fields,
    }


def finish(
    args: argparse.Namespace, result: dict[str, Any], start: float, hide: tuple[str, ...] = ()
) -> None:
    """Add the elapsed seconds, print the result (less ``hide``), write it to ``--out``."""
    result["seconds"] = round(time.perf_counter() - start, 1)
    print({k: v for k, v in result.items() if k not in hide})
    if args.out:
        write_json(args.out, result)
