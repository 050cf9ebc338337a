"""Checkpoints: adapter + LoRA weights in safetensors and one JSON manifest.

Layout of a checkpoint folder::

    e2llm_config.json        format version, E2LLMConfig, base-model shapes, sha256 per file,
                             and (format 2) the sha256 of the manifest itself
    adapter.safetensors      adapter weights
    decoder_lora.safetensors decoder LoRA weights (if the decoder has LoRA)
    encoder_lora.safetensors encoder LoRA weights (if the encoder has LoRA)

Base-model weights are never written. Every file is written to a temporary name and
renamed into place (:mod:`.io`), the manifest last, so a crash never leaves a checkpoint that
loads half-written weights: the checksums would not match.

Loading checks everything before any weight is read: the manifest's own checksum
(format 2; format-1 checkpoints such as the shipped one predate it), its ``config``,
``bases`` and ``files`` entries, that every weight file its config implies is listed
(adapter always, decoder/encoder LoRA when configured), every file's sha256, and that
a config asking for the decoder's own Python code (``trust_remote_code``) is only
honoured when the caller allows it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from .config import E2LLMConfig, allow_remote_code, remote_code_refusal
from .io import save_tensors, write_bytes

if TYPE_CHECKING:
    from .model import E2LLMModel

logger = logging.getLogger(__name__)

CONFIG_NAME = "e2llm_config.json"
ADAPTER_NAME = "adapter.safetensors"
DECODER_LORA_NAME = "decoder_lora.safetensors"
ENCODER_LORA_NAME = "encoder_lora.safetensors"
WEIGHT_NAMES = (ADAPTER_NAME, DECODER_LORA_NAME, ENCODER_LORA_NAME)

CHECKPOINT_FORMAT_VERSION = 2
"""Manifest format written by this library (2: the manifest carries its own sha256)."""
READABLE_FORMATS = (1, 2)
DIGEST_KEY = "manifest_sha256"
_HEX64 = re.compile(r"[0-9a-f]{64}")

atomic_write_bytes = write_bytes
"""Old name of :func:`e2llm_integrations.core.io.write_bytes`, kept importable."""
atomic_save_tensors = save_tensors
"""Old name of :func:`e2llm_integrations.core.io.save_tensors`, kept importable."""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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


def manifest_digest(manifest: dict[str, Any]) -> str:
    """sha256 of a manifest's canonical JSON, every entry but the digest itself."""
    body = {k: v for k, v in manifest.items() if k != DIGEST_KEY}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def write_manifest(root: Path, manifest: dict[str, Any]) -> None:
    """Write ``manifest`` (format 2, with its own checksum) to ``root/e2llm_config.json``."""
    body = json.loads(json.dumps({k: v for k, v in manifest.items() if k != DIGEST_KEY}))
    body["format_version"] = CHECKPOINT_FORMAT_VERSION
    body[DIGEST_KEY] = manifest_digest(body)
    write_bytes(root / CONFIG_NAME, json.dumps(body, indent=2, sort_keys=True).encode())


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
        save_tensors(tensors, out / name)
        sums[name] = sha256(out / name)
    manifest = {
        "library_version": __version__,
        "config": model.config.to_dict(),
        "bases": base_shapes(model),
        "files": sums,
    }
    write_manifest(out, manifest)
    logger.info("Saved E2LLM checkpoint to %s", out)
    return out


def required_files(config: E2LLMConfig) -> list[str]:
    """Weight files a checkpoint with ``config`` must list: adapter, plus each LoRA."""
    names = [ADAPTER_NAME]
    if config.decoder.lora is not None:
        names.append(DECODER_LORA_NAME)
    if config.encoder.lora is not None:
        names.append(ENCODER_LORA_NAME)
    return names


def _parse_manifest(cfg_path: Path) -> dict[str, Any]:
    """The manifest as a dict: format known, own checksum (format 2) matching."""
    try:
        manifest = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{cfg_path} is corrupt ({err}); re-save or re-download it.") from err
    version = manifest.get("format_version") if isinstance(manifest, dict) else None
    if not isinstance(manifest, dict) or version not in READABLE_FORMATS:
        raise ValueError(
            f"{cfg_path} has format_version {version!r}; this library reads "
            f"{' and '.join(map(str, READABLE_FORMATS))}. Upgrade e2llm-integrations or "
            "re-export the checkpoint."
        )
    if version >= 2 and manifest.get(DIGEST_KEY) != manifest_digest(manifest):
        raise ValueError(
            f"{cfg_path} does not match its recorded {DIGEST_KEY}: the manifest (config "
            "included) was edited or is corrupt. Re-save or re-download the checkpoint."
        )
    return manifest


def _check_entries(manifest: dict[str, Any], cfg_path: Path) -> E2LLMConfig:
    """Validate the ``config``, ``bases`` and ``files`` entries; return the config."""
    for key in ("config", "bases", "files"):
        if not isinstance(manifest.get(key), dict):
            state = "missing" if key not in manifest else "not a JSON object"
            raise ValueError(
                f"The {key!r} entry of {cfg_path} is {state}; the manifest is incomplete or "
                "malformed. Re-save or re-download the checkpoint."
            )
    try:
        config = E2LLMConfig.from_dict(manifest["config"])
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"The 'config' entry of {cfg_path} is malformed ({err}); re-save or re-download "
            "the checkpoint."
        ) from err
    for name, value in manifest["bases"].items():
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"'bases' entry {name!r} of {cfg_path} is {value!r}, not a size.")
    files = manifest["files"]
    for name, digest in files.items():
        if name not in WEIGHT_NAMES or not isinstance(digest, str) or not _HEX64.fullmatch(digest):
            raise ValueError(
                f"'files' entry {name!r}: {digest!r} of {cfg_path} is malformed (expected one of "
                f"{list(WEIGHT_NAMES)} with a sha256). Re-save or re-download the checkpoint."
            )
    for name in WEIGHT_NAMES:
        needed = name in required_files(config)
        if needed != (name in files):
            why = "lists no" if needed else "lists"
            what = "configures" if needed else "does not configure"
            raise ValueError(
                f"{cfg_path} {why} {name} although its config {what} those weights (without "
                "them the model would silently load untrained). Re-save or re-download the "
                "checkpoint."
            )
    return config


def read_manifest(path: str | Path, trust_remote_code: bool | None = None) -> dict[str, Any]:
    """Read and validate a checkpoint's manifest and file checksums.

    Args:
        path: The checkpoint folder.
        trust_remote_code: Whether the caller allows a config that asks for the decoder's
            own Python code (``None``: ``$E2LLM_TRUST_REMOTE_CODE``, default no).
    """
    root = Path(path)
    cfg_path = root / CONFIG_NAME
    if not cfg_path.is_file():
        raise ValueError(
            f"{root} is not an E2LLM checkpoint: {CONFIG_NAME} is missing. Pass the folder that "
            "save_pretrained() wrote."
        )
    manifest = _parse_manifest(cfg_path)
    config = _check_entries(manifest, cfg_path)
    if config.decoder.trust_remote_code and not allow_remote_code(trust_remote_code):
        raise ValueError(remote_code_refusal(f"Checkpoint {root}", config.decoder.name_or_path))
    for name, digest in manifest["files"].items():
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


def _load_lora(module: torch.nn.Module, file: Path, listed: bool) -> None:
    """Load one LoRA file into ``module``, refusing a missing, partial or foreign one."""
    from peft import set_peft_model_state_dict

    expected = _lora_state(module)
    if expected is None or not listed:
        if expected is not None or listed:
            has = "has" if expected is not None else "has no"
            raise ValueError(
                f"This model {has} LoRA for {file.name}, but checkpoint {file.parent} does not "
                "match; load it with the config it was saved with."
            )
        return
    tensors = _load_tensors(file)
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        raise ValueError(
            f"{file} does not hold this model's LoRA weights ({len(missing)} missing, e.g. "
            f"{missing[:2]}; {len(extra)} unknown, e.g. {extra[:2]}); the checkpoint is "
            "incomplete or for another model. Re-save or re-download it."
        )
    try:
        set_peft_model_state_dict(module, tensors)
    except RuntimeError as err:
        raise ValueError(f"LoRA weights in {file} do not fit this model: {err}") from err


def load_weights(
    model: E2LLMModel,
    root: Path,
    manifest: dict[str, Any],
    adapter: bool = True,
    encoder_lora: bool = True,
) -> None:
    """Load adapter and LoRA weights from ``root`` into ``model`` (keys and shapes checked).

    ``adapter=False`` loads the LoRA weights only (a run that starts a new adapter);
    ``encoder_lora=False`` leaves the encoder's LoRA as it is (a run that adds one to a
    checkpoint whose encoder was frozen).
    """
    _check_bases(manifest, model, root)
    try:
        if adapter:
            model.adapter.load_state_dict(_load_tensors(root / ADAPTER_NAME))
    except RuntimeError as err:
        raise ValueError(f"Adapter weights in {root} do not fit this adapter: {err}") from err
    loras = [(DECODER_LORA_NAME, model.decoder)]
    if encoder_lora:
        loras.append((ENCODER_LORA_NAME, model.encoder.model))
    for name, module in loras:
        _load_lora(module, root / name, name in manifest["files"])


def load_checkpoint(
    path: str | Path,
    device: str | torch.device | None = None,
    trust_remote_code: bool | None = None,
    **base_overrides: str,
) -> E2LLMModel:
    """Rebuild an :class:`E2LLMModel` from a checkpoint folder.

    Args:
        path: Folder written by ``save_pretrained``.
        device: Where to put the model (default: CUDA if available, else CPU).
        trust_remote_code: Allow the decoder's own Python code (``auto_map``). The
            caller's decision only: ``None`` reads ``$E2LLM_TRUST_REMOTE_CODE`` (default
            no); a checkpoint that asks for it is refused unless allowed.
        **base_overrides: ``encoder=...`` / ``decoder=...`` to load the same base models
            from another location (a local copy of the hub model, say).
    """
    from .model import E2LLMModel

    root = Path(path)
    allowed = allow_remote_code(trust_remote_code)
    manifest = read_manifest(root, trust_remote_code=allowed)
    config = E2LLMConfig.from_dict(manifest["config"])
    requested, config.decoder.trust_remote_code = config.decoder.trust_remote_code, allowed
    for key, value in base_overrides.items():
        if key not in ("encoder", "decoder"):
            raise TypeError(f"Unknown base override {key!r}; use encoder= or decoder=.")
        getattr(config, key).name_or_path = value
    model = E2LLMModel.from_config(config, device=device)
    config.decoder.trust_remote_code = requested  # what a re-save records: the request only
    load_weights(model, root, manifest)
    model.eval()
    return model
