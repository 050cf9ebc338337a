"""Builds the tiny training run used by the resume and multi-process tests (also a subprocess).

Usage: python -m tests.unit._resume_worker ENCODER_DIR DECODER_DIR OUT_DIR STEPS
       torchrun --standalone --nproc_per_node 2 -m tests.unit._resume_worker ENC DEC OUT STEPS

Under torchrun every rank trains with ``EQUAL_TARGETS`` and writes its gradient after
step 1 and its final trainable weights (see :func:`train_and_dump`).
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from e2llm_integrations.core import (
    ChunkingConfig,
    DecoderConfig,
    E2LLMConfig,
    E2LLMModel,
    EncoderConfig,
    LoraSettings,
)
from e2llm_integrations.core.training.config import TrainConfig
from e2llm_integrations.core.training.distributed import Distributed
from e2llm_integrations.core.training.examples import ExampleFactory, build_corpus
from e2llm_integrations.core.training.features import ParagraphStore
from e2llm_integrations.core.training.trainer import Trainer

WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet", "kilo", "lima", "mike"]


def records() -> tuple[list[dict], list[dict], list[dict]]:
    paragraphs = [" ".join(WORDS[(i + j) % len(WORDS)] for j in range(20 + i)) + "." for i in range(8)]
    squad = [{
        "paragraphs": paragraphs,
        "questions": [{"question": f"Which word starts part {i}?", "answers": [WORDS[i]], "paragraph_index": i} for i in range(8)],
    }]
    hotpot = [{
        "question": "Which two words?",
        "answer": "alpha bravo",
        "paragraphs": [{"text": p, "is_gold": i < 2} for i, p in enumerate(paragraphs[:4])],
    }]
    recon = [{"text": p} for p in paragraphs]
    return squad, hotpot, recon


# Every example is reconstruction with a target cut to exactly 8 tokens, so the loss
# (a mean over target tokens) of a split batch is exactly the mean of its parts; no
# clipping, so the gradients stored after step 1 are the raw ones; fp32, because bf16
# sums in a different order on two processes differ by more than the 1e-4 tolerance.
EQUAL_TARGETS: dict[str, Any] = {
    "recon_ratio": 1.0, "max_target_tokens": 8, "max_grad_norm": 1e9, "autocast": "off",
}


def build(
    encoder: str, decoder: str, out_dir: str, steps: int, dist: Distributed | None = None,
    **overrides: Any,
) -> Trainer:
    dist = dist or Distributed()
    warnings.simplefilter("ignore")
    torch.manual_seed(0)
    mcfg = overrides.pop("model", None) or E2LLMConfig(
        encoder=EncoderConfig(name_or_path=encoder, max_length=64),
        decoder=DecoderConfig(name_or_path=decoder, lora=LoraSettings(r=4, alpha=8)),
        chunking=ChunkingConfig(chunk_tokens=16),
    )
    options: dict[str, Any] = dict(
        stage1_steps=2, batch_size=2, grad_accum=2, warmup_steps=2, eval_every=1000, save_every=2,
        context_tokens=[40, 80], val_examples=2, val_generations=1, recon_ratio=0.5,
    )
    cfg = TrainConfig(model=mcfg, out_dir=out_dir, steps=steps, **{**options, **overrides})
    model = E2LLMModel.from_config(mcfg, device="cpu")
    corpus = build_corpus(*records())
    with dist.main_first():
        store = ParagraphStore.build(model, corpus.paragraphs, Path(out_dir) / "cache")
    factory = ExampleFactory(corpus, store, cfg.context_tokens, cfg.recon_ratio, 2, seed=0)
    val_specs = [factory.example(10_000 + i) for i in range(2)]
    return Trainer(cfg, model, factory, val_specs, dist=dist)


def trainable(trainer: Trainer, grads: bool = False) -> dict[str, torch.Tensor]:
    """The optimizer's weights (or their gradients) by name, copied."""
    trained = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    out = {}
    for name, p in trainer.model.named_parameters():
        if id(p) in trained:
            value = p.grad if grads else p
            assert value is not None, f"{name} has no gradient"
            out[name] = value.detach().clone().contiguous()
    return out


def train_and_dump(trainer: Trainer) -> None:
    """Step 1, save the gradient, resume from the checkpoint and finish; save the weights."""
    rank = trainer.dist.rank
    trainer.train(max_steps_this_run=1)
    save_file(trainable(trainer, grads=True), trainer.out_dir / f"grads-rank{rank}.safetensors")
    trainer.train()  # every rank reloads checkpoint-last, written by rank 0 after step 1
    save_file(trainable(trainer), trainer.out_dir / f"weights-rank{rank}.safetensors")


if __name__ == "__main__":
    enc, dec, out, n = sys.argv[1:5]
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        with Distributed.from_env(torch.device("cpu")) as job:
            train_and_dump(build(enc, dec, out, int(n), job, **EQUAL_TARGETS))
    else:
        build(enc, dec, out, int(n)).train()
