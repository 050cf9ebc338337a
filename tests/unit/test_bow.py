"""Bag-of-words loss and its stage 0: values, groups, the trainer's use of them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from e2llm_integrations.core.training.bow import BOW_SCALE, bow_loss, bow_warmup, chunk_words

from ._resume_worker import build


def _cos(model, feats, mask) -> torch.Tensor:  # type: ignore[no-untyped-def]
    soft = model.soft_tokens(feats, mask)
    table = model.decoder.get_input_embeddings().weight
    return torch.nn.functional.normalize(soft, dim=-1) @ torch.nn.functional.normalize(table, dim=-1).T


def test_bow_loss_scores_a_soft_tokens_own_words(tiny_model_dirs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    trainer = build(tiny_model_dirs["encoder"], tiny_model_dirs["decoder"], str(tmp_path), 4)
    model, store = trainer.model, trainer.factory.store
    feats, mask = store.gather([0])
    with torch.no_grad():
        cos = _cos(model, feats, mask)
        near, far = cos[0].topk(5).indices.tolist(), (-cos[0]).topk(5).indices.tolist()
        expected = -(BOW_SCALE * cos[0]).log_softmax(-1)[near].mean()
        assert float(bow_loss(model, feats, mask, [near])) == pytest.approx(float(expected), rel=1e-5)
        assert float(bow_loss(model, feats, mask, [near])) < float(bow_loss(model, feats, mask, [far])) - 1.0
    with pytest.raises(ValueError, match="soft tokens"):
        bow_loss(model, feats, mask, [near, far])


def test_a_group_scores_the_mean_probability_of_its_soft_tokens(tiny_model_dirs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    trainer = build(tiny_model_dirs["encoder"], tiny_model_dirs["decoder"], str(tmp_path), 4)
    model, store = trainer.model, trainer.factory.store
    feats, mask = store.gather([0, 1])  # two soft tokens, as one group of 2
    with torch.no_grad():
        cos = _cos(model, feats, mask)
        words = [cos[0].topk(3).indices.tolist() + cos[1].topk(3).indices.tolist()]
        probs = (BOW_SCALE * cos).softmax(-1).mean(0)
        expected = -probs[sorted(set(words[0]))].log().mean()
        grouped = float(bow_loss(model, feats, mask, words, group=2))
        assert grouped == pytest.approx(float(expected), rel=1e-4)
        # Each word needs only one soft token of the group: lower than asking both for all.
        assert grouped < float(bow_loss(model, feats, mask, words * 2, group=1))


def test_chunk_words_are_every_decoder_token_in_order(tiny_model_dirs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    trainer = build(tiny_model_dirs["encoder"], tiny_model_dirs["decoder"], str(tmp_path), 4)
    model, texts = trainer.model, trainer.factory.store.chunk_texts[:3]
    words, group = chunk_words(model, texts)
    ids = [model.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    assert group == 1 and words == ids  # one window-pooled soft token per chunk here
    model.config.encoder.tokens_per_chunk = 2  # a copy of the model's config, this test's own
    halves, _ = chunk_words(model, texts[:1])
    assert len(halves) == 2 and halves[0] + halves[1] == ids[0]
    assert abs(len(halves[0]) - len(halves[1])) <= 1


def test_bow_weight_adds_the_loss_to_recon_batches(tiny_model_dirs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    enc, dec = tiny_model_dirs["encoder"], tiny_model_dirs["decoder"]
    plain = build(enc, dec, str(tmp_path / "a"), 4, recon_ratio=1.0, autocast="off")
    bow = build(enc, dec, str(tmp_path / "b"), 4, recon_ratio=1.0, autocast="off", bow_weight=0.5)
    specs = [plain.factory.example(i, "recon") for i in range(3)]
    with torch.no_grad():
        base, logs = plain.batch_loss(specs, plain.factory.store)
        total, bow_logs = bow.batch_loss(specs, bow.factory.store)
    assert "loss_bow" not in logs and bow_logs["loss_bow"] > 0
    assert float(total) == pytest.approx(float(base) + 0.5 * bow_logs["loss_bow"], rel=1e-5)
    assert "loss_bow" in bow.micro_step(0, 0) and "loss_bow" not in plain.micro_step(0, 0)


def test_stage_0_lowers_the_loss_and_repeats_exactly(tiny_model_dirs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    enc, dec = tiny_model_dirs["encoder"], tiny_model_dirs["decoder"]
    runs = [build(enc, dec, str(tmp_path / n), 3, bow_warmup_steps=60, bow_warmup_batch=4, autocast="off") for n in "ab"]
    store = runs[0].factory.store
    ids = list(range(len(store.chunk_texts)))
    words, group = chunk_words(runs[0].model, [store.chunk_texts[i] for i in ids])
    with torch.no_grad():
        before = float(bow_loss(runs[0].model, *store.gather(ids), words, group))
    for run in runs:
        run.train()
    log = json.loads((tmp_path / "a" / "bow_warmup.json").read_text())
    assert [r["bow_step"] for r in log] == [50, 60]
    with torch.no_grad():
        after = float(bow_loss(runs[0].model, *store.gather(ids), words, group))
    assert after < before - 0.5
    a, b = runs[0].model.adapter.state_dict(), runs[1].model.adapter.state_dict()
    for name in a:
        torch.testing.assert_close(a[name], b[name], msg=name)


def test_stage_0_trains_the_adapter_only(tiny_model_dirs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    trainer = build(tiny_model_dirs["encoder"], tiny_model_dirs["decoder"], str(tmp_path), 3)
    model, store = trainer.model, trainer.factory.store
    lora = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}
    adapter = {n: p.detach().clone() for n, p in model.adapter.named_parameters()}
    bow_warmup(model, store, 5, 4, 1e-2, 0, lambda: torch.autocast("cpu", enabled=False))
    for n, p in model.named_parameters():
        if n in lora:
            torch.testing.assert_close(p, lora[n], msg=n)
    assert any(not torch.equal(p, adapter[n]) for n, p in model.adapter.named_parameters())
