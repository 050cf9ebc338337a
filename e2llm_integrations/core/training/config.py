"""Training configuration: one dataclass, loaded from YAML/JSON with unknown keys refused."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import E2LLMConfig, _from_dict
from ..precision import AUTOCAST_MODES


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

    def __post_init__(self) -> None:
        if isinstance(self.model, dict):
            self.model = E2LLMConfig.from_dict(self.model)
        for name in ("steps", "batch_size", "grad_accum", "eval_every", "save_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")
        if not 0 <= self.stage1_steps < self.steps:
            raise ValueError(
                f"stage1_steps must be in [0, steps={self.steps}), got {self.stage1_steps}."
            )
        if not 0.0 <= self.recon_ratio <= 1.0:
            raise ValueError(f"recon_ratio must be in [0, 1], got {self.recon_ratio}.")
        if not self.context_tokens or min(self.context_tokens) < 1:
            raise ValueError("context_tokens must list positive target lengths, e.g. [1024, 4096].")
        if not self.expand_top_k or min(self.expand_top_k) < 0:
            raise ValueError(
                f"expand_top_k must list excerpt counts >= 0, e.g. [0, 2, 4]; got {self.expand_top_k}."
            )
        if not 0.0 <= self.expand_drop_gold <= 1.0:
            raise ValueError(f"expand_drop_gold must be in [0, 1], got {self.expand_drop_gold}.")
        if self.autocast not in AUTOCAST_MODES:
            raise ValueError(
                f"autocast must be one of {', '.join(AUTOCAST_MODES)}, got {self.autocast!r}."
            )
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, got {self.device!r}.")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
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
