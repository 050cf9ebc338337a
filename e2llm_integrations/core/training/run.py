"""Assemble a training run from a ``TrainConfig`` and export its result."""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import random
import shutil
from pathlib import Path
from typing import Any, Literal

import torch

from ..checkpoint import CONFIG_NAME, load_weights, read_manifest
from ..io import atomic_folder, write_json
from ..model import E2LLMModel
from .config import TrainConfig
from .distributed import Distributed
from .examples import Corpus, ExampleFactory, ExcerptPolicy, build_corpus
from .features import ParagraphStore, question_keys
from .prepared import load_hotpotqa, load_recon, load_squad
from .state import LAST
from .trainer import METRICS_NAME, Trainer

logger = logging.getLogger(__name__)

RECORD_NAME = "training_record.json"
TRAIN_CONFIG_NAME = "train_config.json"


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def load_corpus(cfg: TrainConfig, split: Literal["train", "val"]) -> Corpus:
    """Prepared records of ``split`` turned into a paragraph corpus (sizes capped by cfg)."""
    squad = load_squad(cfg.data_dir, split)
    hotpot = load_hotpotqa(cfg.data_dir, split)[: cfg.hotpot_questions]
    recon = load_recon(cfg.data_dir, split)[: cfg.recon_texts]
    return build_corpus(_records(squad), _records(hotpot), _records(recon))


def _records(items: list[Any]) -> list[dict[str, Any]]:
    return [i if isinstance(i, dict) else dict(vars(i)) for i in items]


def _cache_dir(model: E2LLMModel, cfg: TrainConfig, split: str) -> Path:
    key = hashlib.sha256(
        json.dumps(model.feature_fingerprint(), sort_keys=True).encode()
    ).hexdigest()[:12]
    return Path(cfg.data_dir) / "cache" / f"{split}-{key}"


def _store(
    model: E2LLMModel, cfg: TrainConfig, corpus: Corpus, split: str, dist: Distributed
) -> ParagraphStore:
    with dist.main_first():  # rank 0 encodes the cache once; the others then load it
        return ParagraphStore.build(model, corpus.paragraphs, _cache_dir(model, cfg, split))


def _excerpts(
    model: E2LLMModel, cfg: TrainConfig, corpus: Corpus, split: str, dist: Distributed
) -> ExcerptPolicy | None:
    """The excerpt policy of ``cfg`` with the split's question keys (``None``: soft only)."""
    if max(cfg.expand_top_k) == 0 or not corpus.qa:
        return None
    with dist.main_first():
        keys = question_keys(model, [q.question for q in corpus.qa], _cache_dir(model, cfg, split))
    return ExcerptPolicy(tuple(cfg.expand_top_k), cfg.expand_drop_gold, keys)


# Settings that change how features are made, not the shape of any weight: a run may
# change them from its init_checkpoint (e.g. 4 windows per chunk instead of 1 through
# the same per-vector MLP adapter). Everything else must be the checkpoint's.
_INIT_FREE = {
    "encoder": ("tokens_per_chunk", "max_length", "batch_size"),
    "chunking": ("chunk_tokens", "overlap_tokens"),
}


def fresh_adapter(saved: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Whether ``wanted`` asks for another kind of adapter than ``saved`` was trained with.

    Then only the LoRA weights carry over and the new adapter trains from scratch.
    """
    return saved.get("adapter", {}).get("kind") != wanted.get("adapter", {}).get("kind")


def new_encoder_lora(saved: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Whether ``wanted`` adds a LoRA to an encoder that ``saved`` kept frozen.

    The new LoRA starts at zero (peft's B matrices), so the model starts out computing
    exactly what the checkpoint did; its weights are not loaded from the checkpoint.
    """
    return (
        saved.get("encoder", {}).get("lora") is None
        and wanted.get("encoder", {}).get("lora") is not None
    )


def init_differences(saved: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """Settings of ``wanted`` that differ from ``saved`` but keep the weights loadable.

    Another adapter kind is allowed (see :func:`fresh_adapter`): its settings, and the
    soft tokens per chunk it makes, are then free too. So is a LoRA on an encoder the
    checkpoint kept frozen (see :func:`new_encoder_lora`).

    Raises:
        ValueError: When a difference would change the weights' meaning or shape
            (base models, LoRA, the settings of a kept adapter, or windows through a
            kept PMA adapter).
    """
    free: dict[str, tuple[str, ...]] = dict(_INIT_FREE)
    if fresh_adapter(saved, wanted):
        free["adapter"] = tuple(set(saved.get("adapter", {})) | set(wanted.get("adapter", {})))
    elif wanted.get("adapter", {}).get("kind") == "pma":  # PMA queries are per soft token
        free["encoder"] = ("max_length", "batch_size")
    if new_encoder_lora(saved, wanted):
        free["encoder"] = (*free.get("encoder", ()), "lora")
    changed: list[str] = []
    fixed: list[str] = []
    for section in sorted(set(saved) | set(wanted)):
        a, b = saved.get(section), wanted.get(section)
        if a == b:
            continue
        if not (isinstance(a, dict) and isinstance(b, dict)):
            fixed.append(section)
            continue
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                name = f"{section}.{key}"
                (changed if key in free.get(section, ()) else fixed).append(name)
    if fixed:
        allowed = [f"{s}.{k}" for s, ks in _INIT_FREE.items() for k in ks]
        raise ValueError(
            f"init_checkpoint was trained with other model settings ({', '.join(fixed)}); "
            "copy its e2llm_config.json `config` into the training config's `model:` section "
            f"(only {', '.join(allowed)} may differ, or adapter.kind, which starts a new "
            "adapter from scratch)."
        )
    return changed


def _init_weights(model: E2LLMModel, path: str) -> None:
    """Start from a checkpoint's adapter + LoRA weights (see :func:`init_differences`)."""
    manifest = read_manifest(path)
    try:
        changed = init_differences(manifest["config"], model.config.to_dict())
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err
    if changed:
        logger.info("init_checkpoint %s: this run changes %s", path, ", ".join(changed))
    saved, wanted = manifest["config"], model.config.to_dict()
    fresh, encoder_lora = fresh_adapter(saved, wanted), new_encoder_lora(saved, wanted)
    load_weights(model, Path(path), manifest, adapter=not fresh, encoder_lora=not encoder_lora)
    logger.info(
        "Initialised %s from %s%s%s",
        "LoRA weights" if fresh else "adapter and LoRA weights",
        path,
        "; the new adapter starts from scratch" if fresh else "",
        "; the new encoder LoRA starts at zero" if encoder_lora else "",
    )


def build_trainer(cfg: TrainConfig, dist: Distributed | None = None) -> Trainer:
    """Load models and data, build (or reuse) the feature caches, return a Trainer.

    ``dist`` places this process in a multi-process job (see
    :meth:`Distributed.from_env`); by default the run is a single process.
    """
    dist = dist or Distributed(device=resolve_device(cfg.device))
    torch.manual_seed(cfg.seed)  # the same on every rank: identical initial weights
    random.seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    model = E2LLMModel.from_config(cfg.model, device=dist.device)
    if cfg.init_checkpoint:
        _init_weights(model, cfg.init_checkpoint)
    train = load_corpus(cfg, "train")
    val = load_corpus(cfg, "val")
    train_store = _store(model, cfg, train, "train", dist)
    val_store = _store(model, cfg, val, "val", dist)
    factory = ExampleFactory(
        train,
        train_store,
        cfg.context_tokens,
        cfg.recon_ratio,
        cfg.max_recon_chunks,
        cfg.seed,
        _excerpts(model, cfg, train, "train", dist),
    )
    val_factory = ExampleFactory(
        val,
        val_store,
        cfg.context_tokens,
        0.25,
        cfg.max_recon_chunks,
        cfg.seed + 1,
        _excerpts(model, cfg, val, "val", dist),
    )
    val_specs = [val_factory.example(i) for i in range(cfg.val_examples)]
    Path(cfg.out_dir).mkdir(parents=True, exist_ok=True)
    if dist.is_main:
        write_json(Path(cfg.out_dir) / TRAIN_CONFIG_NAME, cfg.to_dict())
    logger.info(
        "Training on %d paragraphs (%d chunks), %d QA items, %d recon texts",
        len(train.paragraphs),
        len(train_store.chunk_texts),
        len(train.qa),
        len(train.recon),
    )
    return Trainer(cfg, model, factory, val_specs, val_store, dist)


def read_metrics(out_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(out_dir) / METRICS_NAME
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def training_record(cfg: TrainConfig) -> dict[str, Any]:
    records = read_metrics(cfg.out_dir)
    evals = [r for r in records if "val_f1" in r]
    return {
        "steps": records[-1]["step"] if records else 0,
        "train_seconds": round(sum(r.get("sec", 0.0) for r in records), 1),
        "hardware": {
            "device": "cuda" if torch.cuda.is_available() and cfg.device != "cpu" else "cpu",
            "cpu_threads": cfg.threads or torch.get_num_threads(),
            "machine": platform.machine(),
            "torch": torch.__version__,
        },
        "final_train": {
            k: v for k, v in (records[-1] if records else {}).items() if k.startswith("loss")
        },
        "validations": evals,
        "config": cfg.to_dict(),
    }


def export(cfg: TrainConfig, dest: str | Path) -> Path:
    """Copy the run's last weights (no optimizer state) plus its record into ``dest``."""
    src = Path(cfg.out_dir) / LAST
    read_manifest(src)  # refuses a corrupt or incomplete checkpoint
    out = Path(dest)
    manifest = json.loads((src / CONFIG_NAME).read_text())
    with atomic_folder(out) as tmp:
        for name in [CONFIG_NAME, *manifest["files"]]:
            shutil.copy2(src / name, tmp / name)
        write_json(tmp / RECORD_NAME, training_record(cfg))
    logger.info("Exported checkpoint to %s", out)
    return out
