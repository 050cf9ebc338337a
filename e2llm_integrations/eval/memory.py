"""Peak memory of a block of code: CUDA allocator peak, or the process's peak RSS.

On Linux the kernel's peak-RSS counter (``VmHWM``) is reset before the block by writing
``5`` to ``/proc/self/clear_refs``, so the peak belongs to the block alone. Elsewhere
``ru_maxrss`` is the process's lifetime peak: run each measurement in a fresh process
(``e2llm bench`` does by default) and treat the delta as an upper bound.

Example:
    >>> with PeakMemory("cpu") as mem:  # doctest: +SKIP
    ...     run()
    >>> mem.peak_mb  # doctest: +SKIP
"""

from __future__ import annotations

import ctypes
import gc
import resource
import sys
from pathlib import Path
from types import TracebackType

import torch

CLEAR_REFS = Path("/proc/self/clear_refs")
STATUS = Path("/proc/self/status")
MB = 1024 * 1024


def _status_kb(field: str) -> int | None:
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def release_free_memory() -> bool:
    """Hand memory that ``free`` kept for reuse back to the OS (glibc ``malloc_trim``).

    Without this, a block can reuse pages an earlier block freed and its peak RSS would
    not show them. Returns False where there is no glibc.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        return False
    return True


def rss_mb() -> float:
    """Current resident set size in MiB (0 where unknown)."""
    kb = _status_kb("VmRSS")
    return kb / 1024 if kb is not None else 0.0


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter; False where the OS does not allow it."""
    try:
        CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return _status_kb("VmHWM") is not None


def peak_rss_mb() -> float:
    """Peak RSS in MiB since the last reset (or since the process started)."""
    kb = _status_kb("VmHWM")
    if kb is not None:
        return kb / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MB if sys.platform == "darwin" else peak / 1024


class PeakMemory:
    """Context manager measuring the extra memory a block needed at its peak.

    Args:
        device: Where the block allocates (CUDA peak, or CPU resident memory).
        collect: Run the garbage collector before taking the baseline (freed memory is
            always handed back to the OS first).

    Attributes:
        peak_mb: Peak minus the memory in use when the block started (MiB).
        method: ``cuda``, ``vmhwm`` (exact, Linux) or ``ru_maxrss`` (upper bound).
    """

    def __init__(self, device: str | torch.device = "cpu", collect: bool = True) -> None:
        self.device = torch.device(device)
        self.collect = collect
        self.peak_mb = 0.0
        self.base_mb = 0.0
        self.method = ""

    def __enter__(self) -> PeakMemory:
        if self.collect:  # free cyclic garbage first (can take a second on a big heap)
            gc.collect()
        release_free_memory()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base_mb = torch.cuda.memory_allocated(self.device) / MB
            self.method = "cuda"
        else:
            self.method = "vmhwm" if reset_peak_rss() else "ru_maxrss"
            self.base_mb = rss_mb()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        err: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device) / MB
        else:
            peak = peak_rss_mb()
        self.peak_mb = max(0.0, peak - self.base_mb)
