"""``e2llm ask`` and ``e2llm info``: answer a question over documents, show the setup.

The answer goes to stdout (with ``--json``: one JSON object with the answer, usage,
sources and finish reason); diagnostics go to stderr.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..core.backend import BACKENDS, BackendOptions, backend_pipeline
from ..core.expansion import DEFAULT_EXPAND_TOP_K, Source, check_top_k
from ..core.generation import Usage
from ..core.model import GenerationResult
from ..core.options import (
    AUTOCAST_MODES,
    ExpansionOptions,
    GenerationConfig,
    ModelOptions,
    option_default,
    option_help,
)
from .errors import CLIError

logger = logging.getLogger("e2llm")


def _read_stdin() -> str:
    """stdin as UTF-8 text; other bytes are refused with a hint instead of being escaped."""
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is None:  # replaced by a text stream (tests, embedding)
        return str(sys.stdin.read())
    data = buffer.read()
    try:
        return str(data.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise CLIError(
            f"stdin is not UTF-8 text (byte {data[err.start]:#04x} at offset {err.start}); "
            "convert it first, e.g. `iconv -f latin1 -t utf-8 FILE | e2llm ask --docs - ...`."
        ) from err


def _unreadable(path: Path) -> str | None:
    """Why ``path`` cannot be read as UTF-8 text, or ``None`` if it can."""
    try:
        path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        return f"not UTF-8 text ({err.reason} at byte {err.start})"
    except OSError as err:
        return err.strerror or str(err)
    return None


def _folder_files(path: Path, skip_unreadable: bool) -> list[Path]:
    files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise CLIError(f"Folder {path} holds no files.")
    if not skip_unreadable:
        return files
    kept = []
    for file in files:
        reason = _unreadable(file)
        if reason is None:
            kept.append(file)
        else:
            print(f"e2llm: skipped unreadable file {file}: {reason}", file=sys.stderr)
    if not kept:
        raise CLIError(f"Folder {path} holds no readable files ({len(files)} skipped).")
    if len(kept) < len(files):
        print(
            f"e2llm: skipped {len(files) - len(kept)} of {len(files)} files in {path}",
            file=sys.stderr,
        )
    return kept


def _collect_documents(paths: Sequence[str], skip_unreadable: bool = False) -> list[Path | str]:
    docs: list[Path | str] = []
    for raw in paths:
        if raw == "-":
            docs.append(_read_stdin())
            continue
        path = Path(raw)
        if path.is_dir():
            docs.extend(_folder_files(path, skip_unreadable))
        elif path.is_file():
            docs.append(path)
        else:
            raise CLIError(f"{path} does not exist. Pass text files, folders, or - for stdin.")
    return docs


def cmd_ask(args: argparse.Namespace) -> int:
    from ..core import E2LLMPipeline, GenerationConfig

    if args.question is None:
        # `--docs A B "question"`: argparse gives the trailing question to --docs.
        if len(args.docs) < 2:
            raise CLIError('Give a question: e2llm ask --docs FILE [FILE ...] "question"')
        args.question = args.docs.pop()
    if args.json and args.stream:
        raise CLIError(
            "--json prints one JSON object once the answer is complete; drop --stream or --json."
        )
    docs = _collect_documents(args.docs, args.skip_unreadable)
    gen = GenerationConfig(max_new_tokens=args.max_new_tokens, temperature=args.temperature)
    backend = BackendOptions(backend=args.backend, base_url=args.base_url)
    trust: dict[str, Any] = {"trust_remote_code": True} if args.trust_remote_code else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the pipeline logs the same warnings
        if backend.remote:  # the decoder in vLLM; encoder and adapter here
            pipe = backend_pipeline(
                args.checkpoint, args.device, backend=backend, autocast=args.autocast, **trust
            )
        else:
            pipe = E2LLMPipeline.from_pretrained(
                checkpoint=args.checkpoint, device=args.device, autocast=args.autocast, **trust
            )
        usage, sources = _answer(pipe, docs, args, gen)
    if usage is not None:
        logger.info("usage: %s", json.dumps(usage.to_dict()))
    for i, source in enumerate(sources, 1):
        logger.info(
            "source %d: %s [%d:%d] (chunk %d, score %.3f)",
            i,
            source.doc_id,
            source.start,
            source.end,
            source.chunk_index,
            source.score,
        )
    if not pipe.trained:
        logger.warning("The answer above came from an UNTRAINED adapter and is noise.")
    return 0


def _answer(
    pipe: Any, docs: list[Path | str], args: argparse.Namespace, gen: Any
) -> tuple[Usage | None, tuple[Source, ...]]:
    """Answer over ``docs`` (estimated, then encoded, by the pipeline); print the answer."""
    usage: Usage | None = None
    sources: tuple[Source, ...] = ()
    options = {"expand_top_k": args.expand, "on_overflow": args.on_overflow}
    if args.stream:
        for piece in pipe.stream(docs, args.question, gen, **options):
            sys.stdout.write(piece.text)
            sys.stdout.flush()
            if piece.usage is not None:
                usage, sources = piece.usage, piece.sources
        sys.stdout.write("\n")
    else:
        result = pipe.ask(docs, args.question, gen, **options)
        usage, sources = result.usage, tuple(result.sources)
        print(json.dumps(_answer_json(result)) if args.json else result.text)
    return usage, sources


def _answer_json(result: GenerationResult) -> dict[str, Any]:
    """``--json`` output: answer, usage, sources (``Source.to_dict()``) and finish reason."""
    return {
        "answer": result.text,
        "usage": result.usage.to_dict(),
        "sources": [s.to_dict() for s in result.sources],
        "finish_reason": result.finish_reason,
    }


def _expand_k(value: str) -> int:
    """argparse type for ``--expand``: an int >= 0."""
    try:
        return check_top_k(int(value))
    except ValueError as err:  # not an int, or negative
        raise argparse.ArgumentTypeError(
            f"expected a whole number of chunks >= 0 (0: soft tokens only), got {value!r}."
        ) from err


def cmd_info(args: argparse.Namespace) -> int:
    from .. import __version__
    from ..core.config import DEFAULT_DECODER, DEFAULT_ENCODER
    from ..core.models import BUNDLED, cache_dir
    from ..core.pipeline import default_checkpoint

    info = {
        "version": __version__,
        "cache_dir": str(cache_dir()),
        "default_checkpoint": str(default_checkpoint() or "none (untrained adapter)"),
        "default_encoder": DEFAULT_ENCODER,
        "default_decoder": DEFAULT_DECODER,
        "bundled_models": {
            name: {
                "package": m.package,
                "installed": importlib.util.find_spec(m.package) is not None,
                "install": m.install_hint,
            }
            for name, m in BUNDLED.items()
        },
    }
    print(json.dumps(info, indent=2))
    return 0


def _add_ask(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("ask", help="answer a question over documents")
    p.add_argument("question", nargs="?", help="the question to answer")
    p.add_argument("--docs", nargs="+", required=True, help="files, folders, or - for stdin")
    model, gen = ModelOptions, GenerationConfig  # the flags' defaults: core.options
    p.add_argument(
        "--checkpoint",
        default=option_default(model, "checkpoint"),
        help="checkpoint folder (default: shipped)",
    )
    p.add_argument("--max-new-tokens", type=int, default=option_default(gen, "max_new_tokens"))
    p.add_argument("--temperature", type=float, default=option_default(gen, "temperature"))
    p.add_argument(
        "--device", default=option_default(model, "device"), help="cpu, cuda, ... (default: auto)"
    )
    p.add_argument("--stream", action="store_true", help="print tokens as they come")
    p.add_argument(
        "--expand",
        type=_expand_k,
        default=option_default(ExpansionOptions, "expand_top_k"),
        metavar="K",
        help="also show the K chunks most similar to the question as raw text (default: "
        f"{DEFAULT_EXPAND_TOP_K}; 0: soft tokens only); they are logged as sources",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object: answer, usage, sources, finish_reason",
    )
    p.add_argument(
        "--on-overflow",
        choices=("select", "error"),
        default=option_default(ExpansionOptions, "on_overflow"),
        help="documents too large for the decoder's window: answer from the chunks most "
        "relevant to the question (select, the default; logged, usage.dropped_chunks) or "
        "refuse before encoding (error)",
    )
    p.add_argument(
        "--skip-unreadable",
        action="store_true",
        help="skip files in folders that cannot be read as UTF-8 text (each is reported)",
    )
    p.add_argument(
        "--autocast",
        default=option_default(ModelOptions, "autocast"),
        choices=AUTOCAST_MODES,
        help=option_help(ModelOptions, "autocast"),
    )
    p.add_argument(
        "--backend",
        default=option_default(BackendOptions, "backend"),
        choices=BACKENDS,
        help=option_help(BackendOptions, "backend") + " See docs/SERVING.md.",
    )
    p.add_argument(
        "--base-url",
        default=option_default(BackendOptions, "base_url"),
        help=option_help(BackendOptions, "base_url"),
    )
    p.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow a checkpoint's decoder to run its own Python code (off by default; or "
        "set E2LLM_TRUST_REMOTE_CODE=1)",
    )
    p.set_defaults(func=cmd_ask)


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``ask`` and ``info`` on the ``e2llm`` subparsers."""
    _add_ask(sub)
    sub.add_parser("info", help="models, checkpoint and cache locations").set_defaults(
        func=cmd_info
    )
