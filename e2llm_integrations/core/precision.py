"""Mixed precision: bf16 autocast where the hardware runs it fast, fp32 elsewhere.

On CPUs with AVX512-BF16 or AMX, ``torch.autocast("cpu", dtype=torch.bfloat16)`` runs the
decoder's matrix products in bf16 at a large speed-up over fp32; on CPUs without them bf16
is emulated and slower, so ``auto`` keeps fp32 there.

Inference follows the same rule per module: :func:`set_inference_autocast` records a
mode on the encoder and the decoder, and every inference forward runs inside
:func:`inference_autocast` (no autocast state is left set across a ``yield``).

Example:
    >>> with autocast(torch.device("cpu"), "off"):
    ...     pass
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path

import torch

from .options import AUTOCAST_MODES, Autocast, check_autocast  # noqa: F401  (public here too)

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.cache
def cpu_has_fast_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU has bf16 instructions (AVX512-BF16 or AMX-BF16)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return False
    flags = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return any(flag in flags.split() for flag in BF16_CPU_FLAGS)


def bf16_enabled(device: torch.device, mode: Autocast) -> bool:
    """Resolve ``mode`` for ``device``: ``auto`` is bf16 where the hardware supports it."""
    if mode not in AUTOCAST_MODES:
        raise ValueError(f"autocast must be one of {', '.join(AUTOCAST_MODES)}, got {mode!r}.")
    if mode == "off":
        return False
    if mode == "bf16":
        return True
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    return device.type == "cpu" and cpu_has_fast_bf16()


@contextlib.contextmanager
def autocast(device: torch.device, mode: Autocast) -> Iterator[None]:
    """``torch.autocast`` in bf16 when :func:`bf16_enabled`, else nothing."""
    if bf16_enabled(device, mode):
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            yield
    else:
        yield


_MODE_ATTR = "_e2llm_inference_autocast"


def set_inference_autocast(module: torch.nn.Module, mode: Autocast) -> None:
    """Run ``module``'s inference forwards (see :func:`inference_autocast`) in ``mode``."""
    setattr(module, _MODE_ATTR, check_autocast(mode))


def inference_mode_of(module: torch.nn.Module) -> Autocast:
    """The mode recorded by :func:`set_inference_autocast` (``off`` when none was)."""
    return getattr(module, _MODE_ATTR, "off")  # type: ignore[no-any-return]


def inference_autocast(module: torch.nn.Module) -> contextlib.AbstractContextManager[None]:
    """The autocast context for one inference forward of ``module``."""
    mode = inference_mode_of(module)
    if mode == "off":
        return contextlib.nullcontext()
    device = next(module.parameters()).device
    return autocast(device, mode)
