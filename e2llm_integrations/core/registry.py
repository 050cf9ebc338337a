"""A process-wide cache of loaded pipelines, so integrations share one model.

LangChain and LlamaIndex wrappers (and several wrappers of the same kind) that name the
same checkpoint and device get the same :class:`E2LLMPipeline`, loaded once. The
pipeline serialises model calls with its own lock, so sharing it is safe.
"""

from __future__ import annotations

import threading
from pathlib import Path

import torch

from .config import allow_remote_code
from .pipeline import E2LLMPipeline
from .precision import Autocast, check_autocast

_PIPELINES: dict[tuple[str | None, str, bool, str], E2LLMPipeline] = {}
_LOCK = threading.Lock()


def _key(
    checkpoint: str | Path | None, device: str | torch.device | None, trust: bool, autocast: str
) -> tuple[str | None, str, bool, str]:
    path = str(Path(checkpoint).expanduser().resolve()) if checkpoint is not None else None
    if device is None:  # the device from_pretrained would pick, so None and "cpu" share
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return path, str(torch.device(device)), trust, autocast


def get_pipeline(
    checkpoint: str | Path | None = None,
    device: str | torch.device | None = None,
    trust_remote_code: bool | None = None,
    autocast: Autocast = "auto",
) -> E2LLMPipeline:
    """The shared pipeline for these :class:`~.options.ModelOptions`, loaded on first use.

    The arguments are those of :class:`~.options.ModelOptions`.

    Args:
        checkpoint: Checkpoint folder; ``None`` is the shipped default checkpoint (or an
            untrained model, with a warning, where none is shipped).
        device: Torch device; ``None`` picks CUDA when available, else CPU.
        trust_remote_code: Allow the decoder folder's own Python code; ``None`` reads
            ``$E2LLM_TRUST_REMOTE_CODE``. A pipeline loaded with remote code allowed is
            never handed to a caller that did not allow it.
        autocast: Inference precision (``auto``: bf16 where the hardware runs it fast).

    Example:
        >>> pipe = get_pipeline()  # doctest: +SKIP
        >>> pipe is get_pipeline()  # doctest: +SKIP
        True
    """
    trust = allow_remote_code(trust_remote_code)
    key = _key(checkpoint, device, trust, check_autocast(autocast))
    with _LOCK:
        if key not in _PIPELINES:
            _PIPELINES[key] = E2LLMPipeline.from_pretrained(
                checkpoint, device=device, trust_remote_code=trust, autocast=autocast
            )
        return _PIPELINES[key]


def clear_pipelines() -> None:
    """Forget every cached pipeline (their memory is freed once nothing else holds them)."""
    with _LOCK:
        _PIPELINES.clear()
