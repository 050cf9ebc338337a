"""Checkpoints: adapter + LoRA weights in safetensors and one JSON manifest.

Layout of a checkpoint folder::

    e2llm_config.json        format version, E2LLMConfig, base-model shapes, sha256 per file
    adapter.safetensors      adapter weights
    decoder_lora.safetensors decoder LoRA weights (if the decoder has LoRA)
    encoder_lora.safetensors encoder LoRA weights (if the encoder has LoRA)

Base-model weights are never written. Every file is written to a temporary name and
renamed into place, the manifest last, so a crash never leaves a checkpoint that
loads half-written weights: the checksums would not match.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .config import FORMAT_VERSION, E2LLMConfig

if TYPE_CHECKING:
    from .model import E2LLMModel

logger = logging.getLogger(__name__)

CONFIG_NAME = "e2llm_config.json"
ADAPTER_NAME = "adapter.safetensors"
DECODER_LORA_NAME = "decoder_lora.safetensors"
ENCODER_LORA_NAME = "encoder_lora.safetensors"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; checkpoints are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _lora_state(module: torch.nn.Module) -> dict[str, torch.Tensor] | None:
    from peft import PeftModel, get_peft_model_state_dict

    if not isinstance(module, PeftModel):
        return None
    return get_peft_model_state_dict(module)


def base_shapes(model: E2LLMModel) -> dict[str, int]:
    emb = model.decoder.get_input_embeddings().weight
    return {
        "encoder_hidden": model.encoder.hidden_size,
        "decoder_hidden": int(emb.shape[1]),
        "decoder_vocab": int(emb.shape[0]),
    }


def save_checkpoint(model: E2LLMModel, path: str | Path) -> Path:
    """Write ``model``'s trainable weights and config to folder ``path``."""
    from .. import __version__

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, dict[str, torch.Tensor]] = {ADAPTER_NAME: model.adapter.state_dict()}
    for name, module in (
        (DECODER_LORA_NAME, model.decoder),
        (ENCODER_LORA_NAME, model.encoder.model),
    ):
        state = _lora_state(module)
        if state is not None:
            files[name] = state
        else:
            (out / name).unlink(missing_ok=True)
    sums = {}
    for name, tensors in files.items():
        atomic_save_tensors(tensors, out / name)
        sums[name] = sha256(out / name)
    manifest = {
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        "config": model.config.to_dict(),
        "bases": base_shapes(model),
        "files": sums,
    }
    atomic_write_bytes(out / CONFIG_NAME, json.dumps(manifest, indent=2, sort_keys=True).encode())
    logger.info("Saved E2LLM checkpoint to %s", out)
    return out


def read_manifest(path: str | Path) -> dict[str, Any]:
    """Read and validate a checkpoint's manifest and file checksums."""
    root = Path(path)
    cfg_path = root / CONFIG_NAME
    if not cfg_path.is_file():
        raise ValueError(
            f"{root} is not an E2LLM checkpoint: {CONFIG_NAME} is missing. Pass the folder that "
            "save_pretrained() wrote."
        )
    try:
        manifest = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{cfg_path} is corrupt ({err}); re-save or re-download it.") from err
    if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
        version = manifest.get("format_version") if isinstance(manifest, dict) else None
        raise ValueError(
            f"{cfg_path} has format_version {version!r}; this library reads {FORMAT_VERSION}. "
            "Upgrade e2llm-integrations or re-export the checkpoint."
        )
    for name, digest in manifest.get("files", {}).items():
        file = root / name
        if not file.is_file():
            raise ValueError(f"Checkpoint file {file} is missing; the checkpoint is incomplete.")
        if sha256(file) != digest:
            raise ValueError(
                f"Checkpoint file {file} does not match its recorded sha256; it is corrupt or was "
                "modified. Re-save or re-download the checkpoint."
            )
    return manifest


def _check_bases(manifest: dict[str, Any], model: E2LLMModel, root: Path) -> None:
    actual = base_shapes(model)
    for key, expected in manifest.get("bases", {}).items():
        if actual.get(key) != expected:
            cfg = manifest["config"]
            raise ValueError(
                f"Checkpoint {root} was trained for base models with {key}={expected}, but the "
                f"loaded models have {key}={actual.get(key)}. Load it with the base models it names "
                f"(encoder {cfg['encoder']['name_or_path']!r}, decoder "
                f"{cfg['decoder']['name_or_path']!r})."
            )


def _load_tensors(file: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(file))
    except (SafetensorError, OSError) as err:
        raise ValueError(f"Cannot read {file} ({err}); the checkpoint is corrupt.") from err


def load_weights(model: E2LLMModel, root: Path, manifest: dict[str, Any]) -> None:
    """Load adapter and LoRA weights from ``root`` into ``model`` (shapes checked)."""
    from peft import set_peft_model_state_dict

    _check_bases(manifest, model, root)
    try:
        model.adapter.load_state_dict(_load_tensors(root / ADAPTER_NAME))
    except RuntimeError as err:
        raise ValueError(f"Adapter weights in {root} do not fit this adapter: {err}") from err
    for name, module in (
        (DECODER_LORA_NAME, model.decoder),
        (ENCODER_LORA_NAME, model.encoder.model),
    ):
        if name in manifest["files"]:
            result = set_peft_model_state_dict(module, _load_tensors(root / name))
            unexpected = getattr(result, "unexpected_keys", None)
            if unexpected:
                raise ValueError(f"{root / name} has weights this model lacks: {unexpected[:3]}")


def load_checkpoint(
    path: str | Path,
    device: str | torch.device | None = None,
    **base_overrides: str,
) -> E2LLMModel:
    """Rebuild an :class:`E2LLMModel` from a checkpoint folder.

    Args:
        path: Folder written by ``save_pretrained``.
        device: Where to put the model (default: CUDA if available, else CPU).
        **base_overrides: ``encoder=...`` / ``decoder=...`` to load the same base models
            from another location (a local copy of the hub model, say).
    """
    from .model import E2LLMModel

    root = Path(path)
    manifest = read_manifest(root)
    config = E2LLMConfig.from_dict(manifest["config"])
    for key, value in base_overrides.items():
        if key not in ("encoder", "decoder"):
            raise TypeError(f"Unknown base override {key!r}; use encoder= or decoder=.")
        getattr(config, key).name_or_path = value
    model = E2LLMModel.from_config(config, device=device)
    load_weights(model, root, manifest)
    model.eval()
    return model
