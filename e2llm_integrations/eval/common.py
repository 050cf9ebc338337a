"""Shared pieces of the evaluation commands: model loading, run metadata, lengths, JSON.

Every result file starts with a ``meta`` block (command, checkpoint, machine, load
average, timings) so a table in ``docs/RESULTS.md`` can always name what produced it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import shlex
import subprocess
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core import io
from ..core.config import E2LLMConfig
from ..core.options import Autocast, ModelOptions

if TYPE_CHECKING:
    from ..core.pipeline import E2LLMPipeline

logger = logging.getLogger(__name__)

RESULTS_FORMAT_VERSION = 1
"""Version of the JSON written by ``e2llm eval`` / ``e2llm bench``."""


@dataclass(frozen=True)
class ModelSource:
    """Where the evaluated model comes from.

    ``checkpoint`` and ``device`` are those of :class:`~e2llm_integrations.core.options.ModelOptions`.

    Attributes:
        checkpoint: Checkpoint folder; ``None`` is the shipped one (or untrained).
        model_config: Path of an ``E2LLMConfig`` JSON file: builds an untrained model
            from it (a test seam: tiny models, or a base-model-only sanity run).
        device: Torch device (``None``: CUDA when available, else CPU).
        threads: ``torch.set_num_threads`` value (``None``: torch's default).
        autocast: Inference precision (``auto``: bf16 where the hardware runs it fast).
    """

    checkpoint: str | None = None
    model_config: str | None = None
    device: str | None = None
    threads: int | None = None
    autocast: Autocast = "auto"

    def __post_init__(self) -> None:
        ModelOptions(self.checkpoint, self.device, autocast=self.autocast)  # the core checks
        if self.checkpoint is not None and self.model_config is not None:
            raise ValueError("Pass either --checkpoint or --model-config, not both.")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}.")

    def load(self) -> E2LLMPipeline:
        """Load the pipeline (and apply ``threads``)."""
        import torch

        from ..core.pipeline import E2LLMPipeline

        if self.threads is not None:
            torch.set_num_threads(self.threads)
        config = None
        if self.model_config is not None:
            config = E2LLMConfig.from_json(Path(self.model_config).read_text(encoding="utf-8"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the pipeline also logs the untrained warning
            return E2LLMPipeline.from_pretrained(
                self.checkpoint,
                self.device,
                config,
                autocast=self.autocast,
            )

    def label(self, pipe: E2LLMPipeline | None = None) -> str:
        """A human-readable name of the model, saying when it is untrained."""
        from ..core.pipeline import default_checkpoint

        if self.model_config is not None:
            return f"untrained model from config {self.model_config}"
        path = self.checkpoint or default_checkpoint()
        if path is None or (pipe is not None and not pipe.trained):
            return "untrained adapter (no checkpoint)"
        return f"checkpoint {path} (sha256 {checkpoint_digest(path)})"

    def to_args(self) -> list[str]:
        """Command-line flags that rebuild this source (for worker subprocesses)."""
        args: list[str] = []
        for flag, value in (
            ("--checkpoint", self.checkpoint),
            ("--model-config", self.model_config),
            ("--device", self.device),
            ("--threads", self.threads),
            ("--autocast", None if self.autocast == "auto" else self.autocast),
        ):
            if value is not None:
                args += [flag, str(value)]
        return args


def checkpoint_digest(path: str | Path) -> str:
    """First 12 hex digits of the sha256 over a checkpoint folder's files (names + bytes)."""
    digest = hashlib.sha256()
    for file in sorted(p for p in Path(path).rglob("*") if p.is_file()):
        digest.update(file.relative_to(path).as_posix().encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()[:12]


def parse_lengths(text: str) -> tuple[int, ...]:
    """``"1k,2k,4000"`` -> ``(1000, 2000, 4000)`` (``k`` = 1000 tokens)."""
    out = []
    for part in text.split(","):
        part = part.strip().lower()
        if not part:
            continue
        try:
            value = int(float(part[:-1]) * 1000) if part.endswith("k") else int(part)
        except ValueError as err:
            raise ValueError(f"Bad length {part!r}; use token counts like 1k,2k,4000.") from err
        if value < 1:
            raise ValueError(f"Lengths must be >= 1 token, got {part!r}.")
        out.append(value)
    if not out:
        raise ValueError("Give at least one length, e.g. --lengths 1k,2k.")
    return tuple(out)


def parse_floats(text: str) -> tuple[float, ...]:
    """``"0,0.5,1"`` -> ``(0.0, 0.5, 1.0)``."""
    try:
        return tuple(float(p) for p in text.split(",") if p.strip())
    except ValueError as err:
        raise ValueError(f"Bad number list {text!r}; use e.g. 0,0.25,0.5.") from err


def length_label(tokens: int) -> str:
    """``8000`` -> ``"8k"``, ``1500`` -> ``"1.5k"``, ``300`` -> ``"300"``."""
    if tokens >= 1000 and tokens % 100 == 0:
        return f"{tokens / 1000:g}k"
    return str(tokens)


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def machine_info(device: str | None = None) -> dict[str, Any]:
    """CPU/GPU, threads and load average: enough to judge whether timings are comparable."""
    import torch

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
    }
    if hasattr(os, "getloadavg"):
        info["load_average_1m"] = round(os.getloadavg()[0], 2)
    if (device or "").startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


@dataclass
class RunMeta:
    """The ``meta`` block of a result file."""

    kind: str
    model: str
    trained: bool
    config: dict[str, Any]
    command: str = field(default_factory=lambda: shlex.join(["e2llm", *sys.argv[1:]]))
    machine: dict[str, Any] = field(default_factory=dict)
    git_commit: str | None = field(default_factory=_git_commit)
    started: str = field(default_factory=lambda: time.strftime("%Y-%m-%d %H:%M:%S"))
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"format_version": RESULTS_FORMAT_VERSION, **self.__dict__}


def write_json(path: str | Path, data: dict[str, Any]) -> Path:
    """Write ``data`` as indented JSON, atomically (:func:`.core.io.write_json`)."""
    out = io.write_json(path, data, indent=1)
    logger.info("Wrote %s", out)
    return out


def read_json(path: str | Path) -> dict[str, Any]:
    """Read a result file written by :func:`write_json`."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise ValueError(f"{path} does not exist; run the command that writes it first.") from err
    if data.get("meta", {}).get("format_version") != RESULTS_FORMAT_VERSION:
        raise ValueError(f"{path} is not an e2llm result file of format {RESULTS_FORMAT_VERSION}.")
    return data


def check_choices(values: Sequence[str], allowed: Sequence[str], what: str) -> tuple[str, ...]:
    """Refuse unknown names with a message listing the valid ones."""
    unknown = [v for v in values if v not in allowed]
    if unknown or not values:
        raise ValueError(f"Unknown {what} {unknown or values}; choose from {', '.join(allowed)}.")
    return tuple(values)
