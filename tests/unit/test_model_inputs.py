"""What the decoder actually receives: soft tokens in place, labels masked, adapters, pooling.

Each test checks the model against a computation done independently of the code under
test (the embedding table, the encoder's own hidden states, a hand-written loss), so a
soft token moved, a label left unmasked or a pooling mode ignored makes it fail.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from e2llm_integrations.core import (
    AdapterConfig,
    E2LLMModel,
    E2LLMPipeline,
    EncoderConfig,
    GenerationConfig,
)
from e2llm_integrations.core.model import IGNORE_INDEX, TrainExample

from ..conftest import tiny_config

CHUNKS = ["The tower stands on the island.", "Ships sail past it at night."]


class DecoderSpy:
    """Records the keyword arguments of every call to ``module``'s forward."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.calls: list[dict[str, Any]] = []
        self._hook = module.register_forward_pre_hook(self._record, with_kwargs=True)

    def _record(self, module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        self.calls.append(dict(kwargs))

    def __enter__(self) -> DecoderSpy:
        return self

    def __exit__(self, *exc: object) -> None:
        self._hook.remove()


def test_soft_tokens_change_the_logits_after_them_only(tiny_pipeline: E2LLMPipeline) -> None:
    model = tiny_pipeline.model
    prompt = model.prompt("Where is the tower?")
    logits = []
    for texts in (CHUNKS, ["Bees dance to show where the flowers are.", "Honey is stored."]):
        feats, mask = model.encoder.encode(texts)
        with torch.no_grad():
            embeds = model.embed_sequence(prompt, model.soft_tokens(feats, mask))[None]
            logits.append(model.decoder(inputs_embeds=embeds).logits[0])
    n_prefix = len(prompt.prefix_ids)
    assert logits[0].shape[0] == len(prompt) + 2
    # Causal attention: the instruction before the soft tokens cannot see them ...
    torch.testing.assert_close(logits[0][:n_prefix], logits[1][:n_prefix])
    # ... and the question after them reads them (the tiny random decoder's logits are
    # small, ~0.05; float noise is ~1e-7).
    assert (logits[0][-1] - logits[1][-1]).abs().max() > 1e-5


def test_soft_tokens_sit_between_the_instruction_and_the_question(
    tiny_pipeline: E2LLMPipeline,
) -> None:
    model = tiny_pipeline.model
    question, excerpt = "Where is the tower?", "Ships sail past it at night."
    prompt = model.prompt(question, excerpts=[excerpt])
    before = model.tokenizer.decode(prompt.prefix_ids)
    after = model.tokenizer.decode(prompt.suffix_ids)
    assert model.config.instruction in before and before.endswith("Context:\n")
    assert after.startswith(f"\n\nExcerpt:\n{excerpt}\n\nQuestion: {question}")
    feats, mask = model.encoder.encode(CHUNKS)
    with torch.no_grad():
        soft = model.soft_tokens(feats, mask)
    with DecoderSpy(model.decoder) as spy:
        list(
            model.stream(
                feats, mask, question, GenerationConfig(max_new_tokens=1), excerpts=[excerpt]
            )
        )
    embeds = spy.calls[0]["inputs_embeds"][0]  # the prefill: (P, d_dec)
    table = model.decoder.get_input_embeddings()
    n, k = len(prompt.prefix_ids), soft.shape[0]
    assert embeds.shape[0] == len(prompt) + k
    with torch.no_grad():
        torch.testing.assert_close(embeds[:n], table(torch.tensor(prompt.prefix_ids)))
        torch.testing.assert_close(embeds[n : n + k], soft)
        torch.testing.assert_close(embeds[n + k :], table(torch.tensor(prompt.suffix_ids)))


def test_loss_is_taken_on_the_target_tokens_only(tiny_pipeline: E2LLMPipeline) -> None:
    model = tiny_pipeline.model
    feats, mask = model.encoder.encode(["The answer is blue."])
    target = model.tokenizer(" blue, like the sky", add_special_tokens=False)["input_ids"]
    examples = [
        TrainExample(feats, mask, model.prompt("What colour?"), target),
        TrainExample(feats, mask, model.prompt("What colour is the sky over the sea?"), target[:2]),
    ]
    with DecoderSpy(model.decoder) as spy, torch.no_grad():
        loss = model(examples)
    labels = spy.calls[0]["labels"]
    total, count = torch.tensor(0.0), 0
    for row, ex in zip(labels, examples, strict=True):
        n_ctx = len(ex.prompt) + 1  # prompt tokens + one soft token
        assert (row[:n_ctx] == IGNORE_INDEX).all(), "prompt and soft tokens carry no loss"
        assert row[n_ctx : n_ctx + len(ex.target_ids)].tolist() == ex.target_ids
        assert (row[n_ctx + len(ex.target_ids) :] == IGNORE_INDEX).all(), "padding carries none"
        with torch.no_grad():  # the same loss by hand, on this example alone (no padding)
            soft = model.soft_tokens(ex.features, ex.mask)
            embeds = model.embed_sequence(ex.prompt, soft, ex.target_ids)[None]
            logits = model.decoder(inputs_embeds=embeds).logits[0]
        predicted = logits[n_ctx - 1 : n_ctx - 1 + len(ex.target_ids)]  # position t predicts t+1
        ce = torch.nn.functional.cross_entropy(
            predicted.float(), torch.tensor(ex.target_ids), reduction="sum"
        )
        total, count = total + ce, count + len(ex.target_ids)
    torch.testing.assert_close(loss, total / count)


def test_pma_adapter_through_the_model(tiny_model_dirs: dict[str, str], tmp_path: Any) -> None:
    k = 3
    encoder = EncoderConfig(
        name_or_path=tiny_model_dirs["encoder"], max_length=64, tokens_per_chunk=k
    )
    cfg = tiny_config(
        tiny_model_dirs, encoder=encoder, adapter=AdapterConfig(kind="pma", num_heads=4)
    )
    torch.manual_seed(0)
    model = E2LLMModel.from_config(cfg, device="cpu")
    feats, mask = model.encoder.encode(
        ["A short chunk.", "A much longer chunk of text, with more words in it."]
    )
    assert feats.shape[1] == mask.shape[1] > k  # token states, not pooled vectors
    with torch.no_grad():
        soft = model.soft_tokens(feats, mask)
    assert soft.shape == (2 * k, model.config.adapter.output_dim)
    assert model.n_soft_tokens(mask) == 2 * k
    # A padded token state must not change its chunk's soft tokens.
    padded = torch.nn.functional.pad(feats[:1], (0, 0, 0, 4), value=7.0)
    pad_mask = torch.nn.functional.pad(mask[:1], (0, 4))
    with torch.no_grad():
        torch.testing.assert_close(model.soft_tokens(padded, pad_mask), soft[:k])
    example = TrainExample(feats, mask, model.prompt("Which chunk is longer?"), [5, 6])
    model([example]).backward()
    assert all(
        p.grad is not None and p.grad.abs().sum() > 0
        for p in model.adapter.parameters()
        if p.requires_grad
    )
    pipe = E2LLMPipeline(model)
    result = pipe.ask(
        pipe.encode(CHUNKS), "Where is the tower?", GenerationConfig(max_new_tokens=3)
    )
    assert result.usage.soft_tokens == k * result.usage.n_chunks
    loaded = E2LLMModel.from_pretrained(model.save_pretrained(tmp_path / "pma"), device="cpu")
    with torch.no_grad():
        torch.testing.assert_close(loaded.soft_tokens(feats, mask), soft)


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_pooling_uses_the_encoder_states_it_names(
    tiny_model_dirs: dict[str, str], pooling: str
) -> None:
    encoder = EncoderConfig(name_or_path=tiny_model_dirs["encoder"], max_length=64, pooling=pooling)  # type: ignore[arg-type]
    model = E2LLMModel.from_config(tiny_config(tiny_model_dirs, encoder=encoder), device="cpu")
    feats, mask = model.encoder.encode(CHUNKS)
    assert feats.shape[:2] == mask.shape == (2, 1)
    batch = model.encoder.tokenize(CHUNKS)
    with torch.no_grad():
        states = model.encoder.model(**batch).last_hidden_state  # (2, T, d_enc)
    valid = batch["attention_mask"].unsqueeze(-1).float()
    cls, mean = states[:, 0], (states * valid).sum(1) / valid.sum(1)
    want, other = (cls, mean) if pooling == "cls" else (mean, cls)
    torch.testing.assert_close(feats[:, 0], want)
    assert (feats[:, 0] - other).abs().max() > 1e-3
    assert model.feature_fingerprint()["pooling"] == pooling  # corpora record it
