"""The prepared data folder: its file names, split names and readers.

``e2llm data prepare`` (:mod:`e2llm_integrations.data`) writes the folder; training
reads it through these loaders, and evaluation through the same loaders re-exported
by :mod:`e2llm_integrations.data`. The schema of every file is in ``DATA_CARD.md``.

Example:
    >>> squad_test = load_squad("data", "test")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

SQUAD_FILE = "squad.jsonl"
HOTPOT_FILE = "hotpotqa.jsonl"
RECON_FILE = "recon.jsonl"
HAYSTACK_FILE = "haystack.txt"
SPLITS_FILE = "splits.json"
DATA_DIR_ENV = "E2LLM_DATA_DIR"

SPLITS: tuple[str, ...] = ("train", "val", "test")
RECON_SPLITS: tuple[str, ...] = ("train", "val")

Split = Literal["train", "val", "test"]
Record = dict[str, Any]


def default_data_dir() -> Path:
    """``$E2LLM_DATA_DIR`` if set, else ``./data``."""
    return Path(os.environ.get(DATA_DIR_ENV) or "data")


def data_root(data_dir: str | Path | None) -> Path:
    """``data_dir``, or :func:`default_data_dir` when it is ``None``."""
    return Path(data_dir) if data_dir is not None else default_data_dir()


def _require(data_dir: str | Path | None, name: str) -> Path:
    path = data_root(data_dir) / name
    if not path.is_file():
        raise ValueError(
            f"{path} is missing. Run `e2llm data prepare --data-dir {path.parent}` first."
        )
    return path


def _read_jsonl(data_dir: str | Path | None, name: str) -> list[Record]:
    path = _require(data_dir, name)
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _check_split(split: str, allowed: Sequence[str]) -> None:
    if split not in allowed:
        raise ValueError(f"Unknown split {split!r}; use one of {', '.join(allowed)}.")


def load_squad(data_dir: str | Path | None, split: Split) -> list[Record]:
    """SQuAD articles of ``split``: ``{"article_id", "title", "paragraphs", "questions", "split"}``."""
    _check_split(split, SPLITS)
    return [r for r in _read_jsonl(data_dir, SQUAD_FILE) if r["split"] == split]


def load_hotpotqa(data_dir: str | Path | None, split: Split) -> list[Record]:
    """HotpotQA questions of ``split``: ``{"id", "question", "answer", "paragraphs", "split"}``."""
    _check_split(split, SPLITS)
    return [r for r in _read_jsonl(data_dir, HOTPOT_FILE) if r["split"] == split]


def load_recon(data_dir: str | Path | None, split: Literal["train", "val"]) -> list[Record]:
    """Reconstruction texts of ``split`` (train or val): ``{"id", "text", "source", "split"}``."""
    _check_split(split, RECON_SPLITS)
    return [r for r in _read_jsonl(data_dir, RECON_FILE) if r["split"] == split]


def load_haystack(data_dir: str | Path | None) -> str:
    """The essay haystack for needle-in-a-haystack evaluation (never for training)."""
    path = _require(data_dir, HAYSTACK_FILE)
    return path.read_text(encoding="utf-8")


def load_splits(data_dir: str | Path | None) -> dict[str, Any]:
    """The content of ``splits.json``: rule, counts, sources and the ids of every split."""
    path = _require(data_dir, SPLITS_FILE)
    return dict(json.loads(path.read_text(encoding="utf-8")))
