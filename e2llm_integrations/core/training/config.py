"""Training configuration: one dataclass, loaded from YAML/JSON with unknown keys refused.

Every field is checked in ``__post_init__`` (type and range, with the fix in the
message), and the config carries a ``format_version`` that is written with it
(``train_config.json``, ``e2llm sweep`` results); a file without one is format 1.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import E2LLMConfig, _from_dict
from ..precision import AUTOCAST_MODES

TRAIN_FORMAT_VERSION = 1
"""Version of the ``TrainConfig`` format written by this library (absent in a file: 1)."""
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")

# Whole-number fields: smallest allowed value and what it means.
_INTS: dict[str, tuple[int, str]] = {
    "steps": (1, "optimizer steps in total"),
    "stage1_steps": (0, "0 skips the adapter-only stage"),
    "batch_size": (1, "examples per micro-batch"),
    "grad_accum": (1, "1 means no accumulation"),
    "warmup_steps": (0, "0 starts at the peak learning rate"),
    "max_recon_chunks": (1, "chunks reconstructed at once"),
    "max_target_tokens": (1, "decoder tokens per target"),
    "hotpot_questions": (0, "0 uses no HotpotQA question"),
    "recon_texts": (0, "0 uses no reconstruction text"),
    "eval_every": (1, "steps between validations"),
    "save_every": (1, "steps between checkpoints"),
    "val_examples": (1, "validation needs at least one example"),
    "val_generations": (0, "0 skips the greedy-answer F1"),
    "seed": (0, "any non-negative number"),
    "bow_warmup_steps": (0, "0 skips the bag-of-words stage 0"),
    "bow_warmup_batch": (1, "chunks per bag-of-words step"),
    "threads": (0, "0 keeps torch's default"),
}
# Number fields: lowest value, whether the lowest itself is allowed, highest (None: no bound).
_FLOATS: dict[str, tuple[float, bool, float | None, str]] = {
    "lr_adapter": (0.0, False, None, "a peak learning rate such as 1e-3"),
    "lr_lora": (0.0, False, None, "a peak learning rate such as 2e-4"),
    "min_lr_ratio": (0.0, True, 1.0, "the cosine floor as a fraction of the peak, e.g. 0.1"),
    "weight_decay": (0.0, True, None, "0 disables decay; 0.01 is usual"),
    "max_grad_norm": (0.0, False, None, "the clipping norm, e.g. 1.0"),
    "recon_ratio": (0.0, True, 1.0, "a fraction of the examples"),
    "recon_weight": (0.0, True, None, "a loss weight, e.g. 1.0"),
    "bow_weight": (0.0, True, None, "a loss weight, e.g. 0.5 (0 disables it)"),
    "expand_drop_gold": (0.0, True, 1.0, "a probability"),
    "time_budget_s": (0.0, True, None, "seconds of step time, e.g. 1800 (0: no budget)"),
}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_int(name: str, value: Any, low: int, meaning: str) -> None:
    if not _is_int(value):
        raise TypeError(f"{name} must be a whole number ({meaning}), got {value!r}.")
    if value < low:
        raise ValueError(f"{name} must be >= {low} ({meaning}), got {value}.")


def _check_float(name: str, value: Any, rule: tuple[float, bool, float | None, str]) -> float:
    low, low_ok, high, meaning = rule
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        hint = " (YAML reads 1e-3 as text: write 1.0e-3)" if isinstance(value, str) else ""
        raise TypeError(f"{name} must be a number ({meaning}), got {value!r}{hint}.")
    span = f"{'>=' if low_ok else '>'} {low:g}" + ("" if high is None else f" and <= {high:g}")
    if not math.isfinite(value) or value < low or (value == low and not low_ok):
        raise ValueError(f"{name} must be {span} ({meaning}), got {value!r}.")
    if high is not None and value > high:
        raise ValueError(f"{name} must be {span} ({meaning}), got {value!r}.")
    return float(value)


def _int_list(name: str, value: Any, low: int, example: str) -> list[int]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)) or not value:
        raise TypeError(
            f"{name} must be a non-empty list of whole numbers, e.g. {example}; got {value!r}."
        )
    if not all(_is_int(v) and v >= low for v in value):
        raise ValueError(f"{name} must list whole numbers >= {low}, e.g. {example}; got {value!r}.")
    return list(value)


def _check_format(version: Any) -> None:
    if not _is_int(version) or version < 1:
        raise ValueError(f"format_version must be a whole number >= 1, got {version!r}.")
    if version > TRAIN_FORMAT_VERSION:
        raise ValueError(
            f"This training config has format_version {version}, newer than the "
            f"{TRAIN_FORMAT_VERSION} this e2llm-integrations reads; upgrade the package."
        )


def _path(name: str, value: Any, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a folder path (a string), got {value!r}.")
    if not value.strip():
        raise ValueError(f"{name} must name a folder, got an empty string.")
    return value


@dataclass
class TrainConfig:
    """Everything a training run needs; ``e2llm train --config FILE`` reads one.

    Attributes:
        model: The E2LLM model to train (base models, adapter, LoRA, chunking).
        data_dir: Folder written by ``e2llm data prepare``.
        out_dir: Run folder: checkpoints, metrics.jsonl, loss curve.
        steps: Optimizer steps in total (both stages).
        stage1_steps: First steps that train the adapter alone on reconstruction.
        batch_size: Examples per micro-batch.
        grad_accum: Micro-batches per optimizer step.
        lr_adapter: Peak learning rate of the adapter.
        lr_lora: Peak learning rate of the LoRA weights (stage 2).
        warmup_steps: Linear warm-up steps of each stage.
        min_lr_ratio: Cosine floor as a fraction of the peak.
        weight_decay: AdamW decay on matrices (not on biases and norms).
        max_grad_norm: Gradient clipping norm.
        recon_ratio: Fraction of stage-2 examples that are reconstruction.
        recon_weight: Loss weight of reconstruction examples.
        bow_weight: Weight of the bag-of-words loss on reconstruction examples (each soft
            token against the decoder's token embeddings of the words it stands for).
        bow_warmup_steps: Stage 0: steps that train the adapter alone on the bag-of-words
            loss over cached chunk features, before step 1 (no decoder pass).
        bow_warmup_batch: Chunks per stage-0 step.
        time_budget_s: Stop (validate, checkpoint) once the steps have taken this many
            seconds in all, across resumes, even before ``steps``; the learning-rate
            schedule still follows ``steps``. 0: no budget. For equal wall-clock comparisons.
        max_recon_chunks: Reconstruct up to this many consecutive chunks at once.
        max_target_tokens: Longest target (answer or reconstructed text), in decoder tokens.
        context_tokens: Target context lengths (encoder tokens) for QA examples.
        hotpot_questions: HotpotQA training questions used (their paragraphs are cached).
        recon_texts: Reconstruction texts used.
        eval_every: Steps between validations.
        save_every: Steps between checkpoints.
        val_examples: Validation examples for the loss.
        val_generations: Validation questions answered greedily for F1.
        seed: Seed of the data order and initialisation.
        device: ``auto``, ``cpu`` or ``cuda``.
        threads: Torch CPU threads (0: torch's default).
        expand_top_k: Raw-text excerpts per QA example, drawn uniformly from this list
            (``[0]``: soft tokens only; e.g. ``[0, 1, 2, 4]`` trains for selective expansion).
        expand_drop_gold: Probability that a QA example's excerpts leave out the gold
            paragraphs, so the answer is only in the soft tokens.
        init_checkpoint: Start from this checkpoint's adapter and LoRA weights (same base
            models and settings) instead of fresh ones.
        autocast: ``auto`` (bf16 where the CPU/GPU runs it fast), ``bf16`` or ``off``.
        format_version: Format of this config; files written before it existed are
            format 1 and load unchanged.

    Example:
        >>> cfg = TrainConfig(steps=100, stage1_steps=10)
        >>> TrainConfig.from_dict(cfg.to_dict()) == cfg
        True
        >>> TrainConfig(lr_adapter=0)
        Traceback (most recent call last):
        ...
        ValueError: lr_adapter must be > 0 (a peak learning rate such as 1e-3), got 0.
    """

    model: E2LLMConfig = field(default_factory=E2LLMConfig)
    data_dir: str = "data"
    out_dir: str = "runs/default"
    steps: int = 2000
    stage1_steps: int = 200
    batch_size: int = 4
    grad_accum: int = 1
    lr_adapter: float = 1e-3
    lr_lora: float = 2e-4
    warmup_steps: int = 50
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    recon_ratio: float = 0.3
    recon_weight: float = 1.0
    bow_weight: float = 0.0
    bow_warmup_steps: int = 0
    bow_warmup_batch: int = 128
    time_budget_s: float = 0.0
    max_recon_chunks: int = 2
    max_target_tokens: int = 96
    context_tokens: list[int] = field(default_factory=lambda: [512, 1024, 2048, 4096])
    hotpot_questions: int = 1000
    recon_texts: int = 3000
    eval_every: int = 250
    save_every: int = 50
    val_examples: int = 32
    val_generations: int = 24
    seed: int = 0
    device: str = "auto"
    threads: int = 0
    expand_top_k: list[int] = field(default_factory=lambda: [0])
    expand_drop_gold: float = 0.0
    init_checkpoint: str | None = None
    autocast: str = "auto"
    format_version: int = TRAIN_FORMAT_VERSION

    def __post_init__(self) -> None:
        if isinstance(self.model, dict):
            self.model = E2LLMConfig.from_dict(self.model)
        if not isinstance(self.model, E2LLMConfig):
            raise TypeError(
                f"model must be an E2LLMConfig or a mapping of its options (encoder, adapter, "
                f"decoder, chunking), got {type(self.model).__name__}."
            )
        _check_format(self.format_version)
        for name, (low, meaning) in _INTS.items():
            _check_int(name, getattr(self, name), low, meaning)
        for name, rule in _FLOATS.items():
            setattr(self, name, _check_float(name, getattr(self, name), rule))
        self.data_dir = str(_path("data_dir", self.data_dir))
        self.out_dir = str(_path("out_dir", self.out_dir))
        self.init_checkpoint = _path("init_checkpoint", self.init_checkpoint, optional=True)
        self.context_tokens = _int_list("context_tokens", self.context_tokens, 1, "[1024, 4096]")
        self.expand_top_k = _int_list("expand_top_k", self.expand_top_k, 0, "[0, 2, 4]")
        if self.stage1_steps >= self.steps:
            raise ValueError(
                f"stage1_steps must be below steps={self.steps} (stage 2 trains the LoRA), "
                f"got {self.stage1_steps}; lower it or raise steps."
            )
        for name, allowed in (("device", DEVICES), ("autocast", AUTOCAST_MODES)):
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}."
                )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from a mapping; a newer format is named before its unknown keys are."""
        if isinstance(data, dict):
            _check_format(data.get("format_version", TRAIN_FORMAT_VERSION))
        return _from_dict(cls, dict(data))

    @classmethod
    def from_file(cls, path: str | Path) -> TrainConfig:
        """Read a ``.yaml``/``.yml`` or ``.json`` config file."""
        p = Path(path)
        if not p.is_file():
            raise ValueError(f"Training config {p} does not exist.")
        text = p.read_text()
        if p.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"{p} must hold a mapping of options.")
        return cls.from_dict(data)
