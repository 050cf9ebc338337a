"""``e2llm export --merged-decoder DIR``: the decoder a vLLM server loads.

See :mod:`e2llm_integrations.serving.export` and ``docs/SERVING.md``.
"""

from __future__ import annotations

import argparse
import json

from .errors import CLIError


def cmd_export(args: argparse.Namespace) -> int:
    """Merge the checkpoint's decoder LoRA into its base decoder and write the folder."""
    from ..serving.export import DTYPES, export_merged_decoder, read_export_record

    if args.dtype not in DTYPES:
        raise CLIError(f"--dtype must be one of {sorted(DTYPES)}, got {args.dtype!r}.")
    out = export_merged_decoder(args.checkpoint, args.merged_decoder, args.dtype)
    print(json.dumps({"merged_decoder": str(out), **(read_export_record(out) or {})}, indent=2))
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "export",
        help="write the checkpoint's decoder with its LoRA merged in (what vLLM serves)",
        description="Write the checkpoint's decoder, LoRA merged in, as a plain causal-LM "
        "folder for `vllm serve DIR --enable-prompt-embeds` (see docs/SERVING.md).",
    )
    p.add_argument("--merged-decoder", required=True, metavar="DIR", help="folder to write")
    p.add_argument("--checkpoint", default=None, help="checkpoint folder (default: shipped)")
    p.add_argument(
        "--dtype",
        default="float32",
        help="weights dtype: float32 (matches the library's CPU decoder token for token), "
        "bfloat16 or float16 (half the size; GPUs)",
    )
    p.set_defaults(func=cmd_export)
