"""Chunk size x soft tokens per chunk, trained at an equal budget (``e2llm sweep``).

Every cell of the grid is an ordinary training run (same data, steps, batch, seed and
learning rates; only ``chunking.chunk_tokens`` and ``encoder.tokens_per_chunk`` change),
followed by the same validation:

* **QA**: validation loss and greedy-answer F1/EM on held-out SQuAD/HotpotQA contexts.
* **Reconstruction**: validation loss, and token F1 of the greedy reconstruction of
  single held-out chunks against their text (what survives compression).
* **Cost**: decoder positions per 1,000 encoder tokens of context.

Cells are independent run folders under ``root``; an interrupted sweep resumes each
cell from its last checkpoint, and finished cells are not retrained.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..core.generation import GenerationConfig
from ..core.io import write_json
from ..core.metrics import best_score
from ..core.model import E2LLMModel
from ..core.prompt import RECONSTRUCT_QUESTION
from ..core.training.config import TrainConfig
from ..core.training.features import ParagraphStore

logger = logging.getLogger(__name__)

CELL_RESULT = "sweep_cell.json"


@dataclass(frozen=True)
class SweepCell:
    """One grid point: chunk length (encoder tokens) and soft tokens per chunk."""

    chunk_tokens: int
    soft_tokens: int

    @property
    def name(self) -> str:
        return f"c{self.chunk_tokens}-k{self.soft_tokens}"


def grid(chunk_tokens: Sequence[int], soft_tokens: Sequence[int]) -> list[SweepCell]:
    """All (chunk, soft tokens) pairs; a soft-token count above the chunk length is refused."""
    cells = [SweepCell(c, k) for c in chunk_tokens for k in soft_tokens]
    for cell in cells:
        if cell.chunk_tokens < 1 or cell.soft_tokens < 1 or cell.soft_tokens > cell.chunk_tokens:
            raise ValueError(
                f"Cell {cell.name}: need 1 <= soft tokens <= chunk tokens; fix the grid."
            )
    return cells


def cell_config(base: TrainConfig, cell: SweepCell, root: str | Path) -> TrainConfig:
    """``base`` with the cell's chunking and soft tokens, writing to ``root/<cell>``."""
    data = base.to_dict()
    data["model"]["chunking"]["chunk_tokens"] = cell.chunk_tokens
    data["model"]["encoder"]["tokens_per_chunk"] = cell.soft_tokens
    data["out_dir"] = str(Path(root) / cell.name)
    return TrainConfig.from_dict(data)


def positions_per_1k(store: ParagraphStore, soft_tokens: int) -> float:
    """Decoder positions the soft tokens take per 1,000 encoder tokens of ``store``."""
    tokens = sum(store.n_tokens)
    return 1000.0 * soft_tokens * len(store.n_tokens) / max(1, tokens)


@torch.no_grad()
def reconstruction_f1(
    model: E2LLMModel, store: ParagraphStore, paragraphs: Sequence[int], n: int, seed: int = 0
) -> dict[str, float]:
    """Token F1 (SQuAD normalisation) of greedy reconstructions of ``n`` single chunks.

    ``paragraphs`` index ``store`` (use validation reconstruction texts: never trained on).
    """
    model.eval()
    candidates = [i for p in paragraphs for i in store.chunk_range(p)]
    picks = random.Random(f"recon-eval:{seed}").sample(candidates, min(n, len(candidates)))
    scores = []
    for i in picks:
        feats, mask = store.gather([i])
        gen = GenerationConfig(max_new_tokens=int(store.n_tokens[i] * 1.5) + 8)
        text = model.generate(feats, mask, RECONSTRUCT_QUESTION, gen).text
        scores.append(best_score(text, [store.chunk_texts[i]])[0])
    return {"recon_f1": sum(scores) / max(1, len(scores)), "recon_chunks": len(scores)}


def run_cell(
    base: TrainConfig, cell: SweepCell, root: str | Path, recon_eval: int = 12
) -> dict[str, Any]:
    """Train (or resume) one cell, validate it, write and return its result."""
    from ..core.training.run import build_trainer, load_corpus, read_metrics, training_record

    cfg = cell_config(base, cell, root)
    out = Path(cfg.out_dir) / CELL_RESULT
    if out.exists():
        return json.loads(out.read_text())
    trainer = build_trainer(cfg)
    trainer.train()
    last = next((r for r in reversed(read_metrics(cfg.out_dir)) if "val_f1" in r), None)
    if last is None or last["step"] != cfg.steps:
        last = {**trainer.validate(), "step": cfg.steps}
    val_store = trainer.val_store
    assert val_store is not None, "build_trainer always builds the validation store"
    result: dict[str, Any] = {
        "cell": cell.name,
        "chunk_tokens": cell.chunk_tokens,
        "soft_tokens": cell.soft_tokens,
        "positions_per_1k": round(positions_per_1k(val_store, cell.soft_tokens), 2),
        **{k: last[k] for k in ("val_loss_qa", "val_loss_recon", "val_f1", "val_em") if k in last},
        **reconstruction_f1(
            trainer.model, val_store, load_corpus(cfg, "val").recon, recon_eval, cfg.seed
        ),
        "train_seconds": training_record(cfg)["train_seconds"],
        "steps": cfg.steps,
    }
    write_json(out, result)
    logger.info("Sweep cell %s: %s", cell.name, result)
    return result


def collect(root: str | Path, cells: Sequence[SweepCell]) -> list[dict[str, Any]]:
    """Results of the finished cells, in grid order."""
    rows = []
    for cell in cells:
        path = Path(root) / cell.name / CELL_RESULT
        if path.exists():
            rows.append(json.loads(path.read_text()))
    return rows


def sweep_table(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown table of sweep results (one row per cell)."""
    header = [
        "chunk tokens",
        "soft tokens",
        "positions / 1k tokens",
        "val QA F1",
        "val QA EM",
        "val QA loss",
        "recon F1",
        "val recon loss",
        "train s",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [
            str(r["chunk_tokens"]),
            str(r["soft_tokens"]),
            f"{r['positions_per_1k']:.1f}",
            f"{r.get('val_f1', float('nan')):.3f}",
            f"{r.get('val_em', float('nan')):.3f}",
            f"{r.get('val_loss_qa', float('nan')):.2f}",
            f"{r['recon_f1']:.3f}",
            f"{r.get('val_loss_recon', float('nan')):.2f}",
            f"{r['train_seconds']:.0f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
