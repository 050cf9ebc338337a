"""Builds the tiny training run used by the resume tests (also run as a subprocess).

Usage: python -m tests.unit._resume_worker ENCODER_DIR DECODER_DIR OUT_DIR STEPS
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import torch

from e2llm_integrations.core import (
    ChunkingConfig,
    DecoderConfig,
    E2LLMConfig,
    E2LLMModel,
    EncoderConfig,
    LoraSettings,
)
from e2llm_integrations.core.training.config import TrainConfig
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


def build(encoder: str, decoder: str, out_dir: str, steps: int) -> Trainer:
    warnings.simplefilter("ignore")
    torch.manual_seed(0)
    mcfg = E2LLMConfig(
        encoder=EncoderConfig(name_or_path=encoder, max_length=64),
        decoder=DecoderConfig(name_or_path=decoder, lora=LoraSettings(r=4, alpha=8)),
        chunking=ChunkingConfig(chunk_tokens=16),
    )
    cfg = TrainConfig(
        model=mcfg, out_dir=out_dir, steps=steps, stage1_steps=2, batch_size=2, grad_accum=2,
        warmup_steps=2, eval_every=1000, save_every=2, context_tokens=[40, 80], val_examples=2,
        val_generations=1,
    )
    model = E2LLMModel.from_config(mcfg, device="cpu")
    corpus = build_corpus(*records())
    store = ParagraphStore.build(model, corpus.paragraphs, Path(out_dir) / "cache")
    factory = ExampleFactory(corpus, store, cfg.context_tokens, 0.5, 2, seed=0)
    return Trainer(cfg, model, factory, [factory.example(10_000 + i) for i in range(2)])


if __name__ == "__main__":
    enc, dec, out, n = sys.argv[1:5]
    build(enc, dec, out, int(n)).train()
