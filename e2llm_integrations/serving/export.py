"""Export a checkpoint's decoder, LoRA merged in, as a plain folder that vLLM serves.

An E2LLM checkpoint holds only the adapter and the LoRA weights; its decoder is the base
model it names. A serving engine needs one ordinary causal-LM folder instead, so
:func:`export_merged_decoder` loads the checkpoint, merges the decoder's LoRA into the
base weights (``merge_and_unload``) and writes ``config.json``, ``model.safetensors``,
the generation config and the tokenizer, plus :data:`EXPORT_RECORD` saying which
checkpoint it came from. The folder is built aside and swapped in whole
(:func:`~e2llm_integrations.core.io.atomic_folder`).

Why merged rather than vLLM's LoRA support: see ``docs/SERVING.md`` ("Merged decoder or
LoRA"): one checkpoint is one adapter + LoRA pair, so a merged decoder serves it with
no LoRA kernels per token and no LoRA limits (rank, target modules) to configure.

Example:
    >>> export_merged_decoder(None, "exports/default-decoder")  # doctest: +SKIP
    PosixPath('exports/default-decoder')
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from ..core.checkpoint import CONFIG_NAME, load_checkpoint, sha256
from ..core.io import atomic_folder, write_json

logger = logging.getLogger(__name__)

EXPORT_RECORD = "e2llm_export.json"
"""What a merged folder was made from: checkpoint, its manifest's sha256, library version."""
EXPORT_FORMAT_VERSION = 1
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def checkpoint_folder(checkpoint: str | Path | None) -> Path:
    """``checkpoint`` as a folder; ``None`` is the shipped checkpoint."""
    if checkpoint is not None:
        return Path(checkpoint)
    from ..core.pipeline import default_checkpoint

    shipped = default_checkpoint()
    if shipped is None:
        raise ValueError(
            "This installation ships no checkpoint; pass the checkpoint folder to export."
        )
    return shipped


def export_record(checkpoint: Path, dtype: str) -> dict[str, Any]:
    """The :data:`EXPORT_RECORD` content for a decoder merged from ``checkpoint``."""
    from .. import __version__

    return {
        "format_version": EXPORT_FORMAT_VERSION,
        "checkpoint": str(checkpoint.resolve()),
        "checkpoint_manifest_sha256": sha256(checkpoint / CONFIG_NAME),
        "library_version": __version__,
        "dtype": dtype,
    }


def export_merged_decoder(
    checkpoint: str | Path | None, out: str | Path, dtype: str = "float32"
) -> Path:
    """Write ``checkpoint``'s decoder with its LoRA merged in to folder ``out``.

    Args:
        checkpoint: E2LLM checkpoint folder (``None``: the shipped one).
        out: The folder to create (replaced whole if it exists).
        dtype: Weight dtype of the written decoder: ``float32`` (greedy answers match
            the library's CPU decoder token for token), ``bfloat16`` or ``float16``
            (half the size; what GPUs serve).

    Returns:
        ``out``, ready for ``vllm serve OUT --enable-prompt-embeds``.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}.")
    source = checkpoint_folder(checkpoint)
    model = load_checkpoint(source, device="cpu")
    decoder = model.decoder
    if hasattr(decoder, "merge_and_unload"):
        decoder = decoder.merge_and_unload()
    decoder = decoder.to(DTYPES[dtype])
    with atomic_folder(out) as folder:
        decoder.save_pretrained(folder, safe_serialization=True)
        model.tokenizer.save_pretrained(folder)
        write_json(folder / EXPORT_RECORD, export_record(source, dtype))
        for path in folder.rglob("*"):  # save_pretrained may write 0600 files
            path.chmod(0o755 if path.is_dir() else 0o644)
    logger.info("Exported the merged decoder of %s to %s", source, out)
    return Path(out)


def read_export_record(folder: str | Path) -> dict[str, Any] | None:
    """The :data:`EXPORT_RECORD` of a merged folder, or ``None`` if it has none."""
    path = Path(folder) / EXPORT_RECORD
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    return record if isinstance(record, dict) else None


def is_current_export(folder: str | Path, checkpoint: str | Path | None, dtype: str) -> bool:
    """Whether ``folder`` holds the merged decoder of ``checkpoint`` as it is now."""
    record = read_export_record(folder)
    if record is None:
        return False
    source = checkpoint_folder(checkpoint)
    current = export_record(source, dtype)
    keys = ("format_version", "checkpoint_manifest_sha256", "dtype")
    return all(record.get(k) == current[k] for k in keys)


def default_export_dir(checkpoint: str | Path | None) -> Path:
    """Where the in-process vLLM backend keeps ``checkpoint``'s merged decoder (cache dir)."""
    from ..core.models import cache_dir

    source = checkpoint_folder(checkpoint)
    return cache_dir() / "vllm" / f"{source.name}-{sha256(source / CONFIG_NAME)[:16]}"


def ensure_export(
    checkpoint: str | Path | None, folder: str | Path, dtype: str = "float32"
) -> Path:
    """``folder``, (re)exported first unless it holds ``checkpoint``'s current decoder."""
    if not is_current_export(folder, checkpoint, dtype):
        export_merged_decoder(checkpoint, folder, dtype)
    return Path(folder)
