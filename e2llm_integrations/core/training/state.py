"""Resumable training state: model weights + optimizer + RNG + step, swapped in atomically."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import load_weights, read_manifest, save_checkpoint
from ..io import atomic_folder, atomic_path
from ..model import E2LLMModel

logger = logging.getLogger(__name__)

LAST = "checkpoint-last"
OLD = "checkpoint-old"
TMP = "checkpoint-tmp"
STATE_NAME = "trainer_state.pt"


def save_state(
    model: E2LLMModel, optimizer: torch.optim.Optimizer, step: int, out_dir: Path
) -> Path:
    """Write a full resumable checkpoint to ``out_dir/checkpoint-last``.

    The new checkpoint is built in ``checkpoint-tmp`` and swapped in by renames, the
    previous one waiting in ``checkpoint-old`` meanwhile, so a kill at any moment leaves
    either the previous or the new checkpoint intact (:func:`find_resume` looks at both).
    """
    last = out_dir / LAST
    with atomic_folder(last, tmp=out_dir / TMP, old=out_dir / OLD) as tmp:
        save_checkpoint(model, tmp)
        state = {
            "step": step,
            "optimizer": optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
        }
        with atomic_path(tmp / STATE_NAME) as path:
            torch.save(state, path)
    return last


def find_resume(out_dir: Path) -> Path | None:
    """The newest complete checkpoint in ``out_dir`` (``last``, else a leftover ``old``)."""
    for name in (LAST, OLD):
        path = out_dir / name
        if (path / STATE_NAME).is_file():
            return path
    return None


def load_state(model: E2LLMModel, optimizer: torch.optim.Optimizer, path: Path) -> int:
    """Restore weights, optimizer and RNG from ``path``; return the step to continue from.

    Every rank of a multi-process run loads the same checkpoint; tensors are read to
    the CPU and the optimizer moves its state next to each rank's parameters.
    """
    load_weights(model, path, read_manifest(path))
    state: dict[str, Any] = torch.load(path / STATE_NAME, map_location="cpu", weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"])
    logger.info("Resumed from %s at step %d", path, state["step"])
    return int(state["step"])
