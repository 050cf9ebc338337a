"""Trainer: schedule, examples, exact resume (also after kill -9), metrics."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from e2llm_integrations.core.training.config import TrainConfig
from e2llm_integrations.core.training.state import LAST, find_resume
from e2llm_integrations.core.training.trainer import get_lr

from ._resume_worker import build

ROOT = Path(__file__).resolve().parents[2]


def _weights(trainer) -> dict[str, torch.Tensor]:  # type: ignore[no-untyped-def]
    return {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}


def test_lr_schedule_warmup_cosine_and_stage_start() -> None:
    assert get_lr(0, 1.0, 10, 100) == pytest.approx(0.1)
    assert get_lr(9, 1.0, 10, 100) == pytest.approx(1.0)
    assert get_lr(100, 1.0, 10, 100, min_ratio=0.1) == pytest.approx(0.1)
    assert get_lr(5, 1.0, 10, 100, start=20) == 0.0
    assert get_lr(20, 1.0, 10, 100, start=20) == pytest.approx(0.1)
    mid = [get_lr(s, 1.0, 10, 100) for s in range(10, 100)]
    assert all(a >= b for a, b in zip(mid, mid[1:], strict=False))


def test_examples_are_a_pure_function_of_the_index(tiny_model_dirs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    trainer = build(tiny_model_dirs["encoder"], tiny_model_dirs["decoder"], str(tmp_path), 4)
    f = trainer.factory
    assert f.example(3) == f.example(3)
    qa = f.example(7, "qa")
    assert qa.kind == "qa" and qa.answers and 0.0 <= qa.depth <= 1.0
    assert sum(f.store.n_tokens[i] for i in qa.chunk_ids) >= 40 or len(qa.chunk_ids) == len(f.store.chunk_texts)
    assert len(set(qa.chunk_ids)) == len(qa.chunk_ids)  # no paragraph is repeated
    recon = f.example(1, "recon")
    assert recon.target == " ".join(f.store.chunk_texts[i] for i in recon.chunk_ids)


def test_resume_is_exact(tiny_model_dirs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    enc, dec = tiny_model_dirs["encoder"], tiny_model_dirs["decoder"]
    straight = build(enc, dec, str(tmp_path / "a"), 6)
    straight.train()
    first = build(enc, dec, str(tmp_path / "b"), 6)
    first.train(max_steps_this_run=3)  # stops after step 3; last save was at step 3
    assert find_resume(tmp_path / "b") is not None
    resumed = build(enc, dec, str(tmp_path / "b"), 6)
    resumed.train()
    a, b = _weights(straight), _weights(resumed)
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], msg=name)
    steps = [json.loads(line)["step"] for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 7))


def test_resume_after_kill_9(tiny_model_dirs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    enc, dec = tiny_model_dirs["encoder"], tiny_model_dirs["decoder"]
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.unit._resume_worker", enc, dec, str(out), "200"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while time.time() < deadline and not (out / LAST / "trainer_state.pt").exists():
        time.sleep(0.2)
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    resume = find_resume(out)
    assert resume is not None, "no checkpoint was written before the kill"
    state = torch.load(resume / "trainer_state.pt", weights_only=True)
    n = int(state["step"]) + 2  # same 200-step schedule, stopped 2 steps after the resume point
    resumed = build(enc, dec, str(out), 200)
    resumed.train(max_steps_this_run=2)
    straight = build(enc, dec, str(tmp_path / "straight"), 200)
    straight.train(max_steps_this_run=n)
    a, b = _weights(straight), _weights(resumed)
    for name in a:
        torch.testing.assert_close(a[name], b[name], msg=name)


def test_train_config_file_refuses_unknown_keys(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("steps: 10\nstage1_steps: 2\nlearning_rate: 1.0\n")
    with pytest.raises(ValueError, match="learning_rate"):
        TrainConfig.from_file(path)
    path.write_text("steps: 10\nstage1_steps: 20\n")
    with pytest.raises(ValueError, match="stage1_steps"):
        TrainConfig.from_file(path)


def test_qa_excerpts_are_picked_as_at_inference(tiny_model_dirs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from e2llm_integrations.core.encoder import sentence_embeddings
    from e2llm_integrations.core.training.examples import ExampleFactory, ExcerptPolicy
    from e2llm_integrations.core.training.features import question_keys

    trainer = build(tiny_model_dirs["encoder"], tiny_model_dirs["decoder"], str(tmp_path), 4)
    f, model = trainer.factory, trainer.model
    keys = question_keys(model, [q.question for q in f.corpus.qa], tmp_path / "cache")
    again = question_keys(model, [q.question for q in f.corpus.qa], tmp_path / "cache")
    torch.testing.assert_close(keys, again)  # reused from the cache
    policy = ExcerptPolicy((2,), 0.0, keys)
    factory = ExampleFactory(f.corpus, f.store, [40, 80], 0.0, 2, seed=0, excerpts=policy)
    for i in range(6):
        spec = factory.example(i, "qa")
        assert len(spec.excerpt_ids) == 2
        assert spec.excerpt_ids == sorted(spec.excerpt_ids, key=spec.chunk_ids.index)
        qa_index = next(j for j, q in enumerate(f.corpus.qa) if q.question == spec.question)
        scores = sentence_embeddings(*f.store.gather(spec.chunk_ids)) @ keys[qa_index]
        top = {spec.chunk_ids[p] for p in torch.topk(scores, 2).indices.tolist()}
        assert set(spec.excerpt_ids) == top
        # The prompt the trainer builds shows those chunks' text after the soft tokens.
        example = trainer.to_example(spec, f.store)
        suffix = model.tokenizer.decode(example.prompt.suffix_ids)
        assert all(f.store.chunk_texts[c].split()[0] in suffix for c in spec.excerpt_ids)
    no_gold = ExampleFactory(
        f.corpus, f.store, [40, 80], 0.0, 2, seed=0, excerpts=ExcerptPolicy((2,), 1.0, keys)
    )
    for i in range(6):
        spec = no_gold.example(i, "qa")
        item = next(q for q in f.corpus.qa if q.question == spec.question)
        gold = {c for g in item.gold for c in f.store.chunk_range(g)}
        assert spec.gold_in_excerpts is False and not gold & set(spec.excerpt_ids)



def test_time_budget_stops_validates_and_saves_then_resume_does_nothing(tiny_model_dirs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    enc, dec = tiny_model_dirs["encoder"], tiny_model_dirs["decoder"]
    out = tmp_path / "budget"
    first = build(enc, dec, str(out), 50, time_budget_s=1e-9)
    last = first.train()
    assert last["step"] == 1 and last["stopped"] == "time_budget_s"
    assert any(k.startswith("val_loss") for k in last)  # validated like the last step
    state = torch.load(find_resume(out) / "trainer_state.pt", weights_only=True)
    assert int(state["step"]) == 1
    again = build(enc, dec, str(out), 50, time_budget_s=1e-9)
    assert again.train() == {}  # resumes at step 1, budget spent: no step
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1]
    trained = _weights(first)
    for name, weight in _weights(again).items():
        torch.testing.assert_close(weight, trained[name], msg=name)


def test_an_encoder_lora_trains_from_live_features(tiny_model_dirs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from e2llm_integrations.core.config import (
        ChunkingConfig,
        DecoderConfig,
        E2LLMConfig,
        EncoderConfig,
        LoraSettings,
    )

    enc, dec = tiny_model_dirs["encoder"], tiny_model_dirs["decoder"]
    model = E2LLMConfig(
        encoder=EncoderConfig(name_or_path=enc, max_length=64, lora=LoraSettings(r=2, alpha=4, target_modules=["query", "value"])),
        decoder=DecoderConfig(name_or_path=dec, lora=LoraSettings(r=4, alpha=8)),
        chunking=ChunkingConfig(chunk_tokens=16),
    )
    trainer = build(enc, dec, str(tmp_path), 6, model=model, bow_weight=0.5)
    before = {n: p.detach().clone() for n, p in trainer.model.encoder.model.named_parameters() if "lora_B" in n}
    assert before and all(float(p.abs().max()) == 0.0 for p in before.values())
    last = trainer.train()
    assert last["step"] == 6 and "loss_bow" in json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    after = dict(trainer.model.encoder.model.named_parameters())
    moved = [n for n in before if float((after[n].detach() - before[n]).abs().max()) > 0]
    assert set(moved) == set(before)  # every encoder LoRA B learned from the loss
