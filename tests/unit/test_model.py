"""Model behaviour on tiny random models: parity, pooling, adapters, generation, training."""

from __future__ import annotations

import pytest
import torch

from e2llm_integrations.core import E2LLMModel
from e2llm_integrations.core.adapter import MLPAdapter, PMAAdapter
from e2llm_integrations.core.encoder import window_pool
from e2llm_integrations.core.generation import GenerationConfig, _held_back
from e2llm_integrations.core.model import TrainExample

from ..conftest import tiny_config


def test_window_pool_matches_manual_means() -> None:
    states = torch.arange(2 * 6 * 3, dtype=torch.float32).reshape(2, 6, 3)
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])
    pooled = window_pool(states, mask, 2)  # (2, 2, 3)
    torch.testing.assert_close(pooled[0, 0], states[0, :2].mean(0))
    torch.testing.assert_close(pooled[0, 1], states[0, 2:4].mean(0))
    torch.testing.assert_close(pooled[1, 1], states[1, 3:].mean(0))
    torch.testing.assert_close(window_pool(states, mask, 1)[0, 0], states[0, :4].mean(0))


@pytest.mark.parametrize("kind", ["mlp", "pma"])
def test_adapters_output_on_the_decoder_embedding_scale(kind: str) -> None:
    feats, mask = torch.randn(3, 5, 8), torch.ones(3, 5, dtype=torch.long)
    if kind == "mlp":
        adapter = MLPAdapter(8, 16, 2, embed_norm=3.5)
    else:
        adapter = PMAAdapter(8, 16, k=2, num_heads=4, hidden_mult=2, embed_norm=3.5)
    out, out_mask = adapter(feats, mask)
    assert out.shape == (3, 5 if kind == "mlp" else 2, 16)
    torch.testing.assert_close(out.norm(dim=-1), torch.full(out.shape[:2], 3.5))
    assert out_mask.shape == out.shape[:2]


def test_zero_chunks_logits_equal_plain_decoder(tiny_pipeline) -> None:  # type: ignore[no-untyped-def]
    model = tiny_pipeline.model
    prompt = model.prompt("What is the capital of France?")
    feats = torch.zeros(0, 1, model.encoder.hidden_size)
    with torch.no_grad():
        soft = model.soft_tokens(feats, torch.zeros(0, 1, dtype=torch.long))
        embeds = model.embed_sequence(prompt, soft).unsqueeze(0)
        ours = model.decoder(inputs_embeds=embeds).logits
        ids = torch.tensor([prompt.prefix_ids + prompt.suffix_ids])
        plain = model.decoder(input_ids=ids).logits
    torch.testing.assert_close(ours, plain)


def test_greedy_generation_is_deterministic_and_reports_usage(tiny_pipeline) -> None:  # type: ignore[no-untyped-def]
    corpus = tiny_pipeline.encode(["Paris is the capital of France. " * 20])
    gen = GenerationConfig(max_new_tokens=6)
    a = tiny_pipeline.ask(corpus, "What is the capital?", gen)
    b = tiny_pipeline.ask(corpus, "What is the capital?", gen)
    assert a.text == b.text
    assert a.usage.n_chunks == len(corpus)
    assert a.usage.soft_tokens == len(corpus)
    assert a.usage.context_tokens == corpus.total_context_tokens > 0
    assert a.usage.output_tokens <= 6
    assert a.usage.input_positions > a.usage.soft_tokens


def test_stream_concatenates_to_generate(tiny_pipeline) -> None:  # type: ignore[no-untyped-def]
    corpus = tiny_pipeline.encode(["Some text to talk about. " * 10])
    gen = GenerationConfig(max_new_tokens=8)
    pieces = list(tiny_pipeline.stream(corpus, "Say something", gen))
    assert pieces[-1].finish_reason in ("stop", "length") and pieces[-1].usage is not None
    assert "".join(p.text for p in pieces) == tiny_pipeline.ask(corpus, "Say something", gen).text


def test_sampling_with_seed_is_reproducible(tiny_pipeline) -> None:  # type: ignore[no-untyped-def]
    corpus = tiny_pipeline.encode(["Some text. " * 10])
    gen = GenerationConfig(max_new_tokens=8, temperature=1.0, top_p=0.9, seed=7)
    assert tiny_pipeline.ask(corpus, "q", gen).text == tiny_pipeline.ask(corpus, "q", gen).text


def test_stop_strings_cut_output(tiny_pipeline) -> None:  # type: ignore[no-untyped-def]
    corpus = tiny_pipeline.encode(["Some text. " * 10])
    # Seeded sampling from the random model gives varied text, identical up to the stop.
    sample = {"max_new_tokens": 16, "temperature": 1.0, "seed": 3}
    full = tiny_pipeline.ask(corpus, "q", GenerationConfig(**sample)).text
    assert len(full) >= 6
    stop = full[3:6]
    cut = tiny_pipeline.ask(corpus, "q", GenerationConfig(**sample, stop=[stop]))
    assert cut.finish_reason == "stop"
    assert cut.text == full[: full.index(stop)]
    streamed = "".join(
        p.text for p in tiny_pipeline.stream(corpus, "q", GenerationConfig(**sample, stop=[stop]))
    )
    assert streamed == cut.text


def test_held_back_suffix() -> None:
    assert _held_back("hello wor", ["world"]) == 3
    assert _held_back("hello", ["xyz"]) == 0


def test_question_over_the_window_is_refused(tiny_pipeline) -> None:  # type: ignore[no-untyped-def]
    corpus = tiny_pipeline.encode(["Some text. " * 10])
    with pytest.raises(ValueError, match="window"):
        tiny_pipeline.ask(corpus, "why " * 600, GenerationConfig(max_new_tokens=4))


def test_generation_config_validation() -> None:
    with pytest.raises(ValueError, match="max_new_tokens"):
        GenerationConfig(max_new_tokens=0)
    with pytest.raises(ValueError, match="top_p"):
        GenerationConfig(top_p=0)


def test_training_lowers_the_loss_and_leaves_base_weights_alone(tiny_model_dirs) -> None:  # type: ignore[no-untyped-def]
    # Its own model: training the session-wide tiny_pipeline would change every later test.
    # (Which positions carry the loss: tests/unit/test_model_inputs.py.)
    torch.manual_seed(0)
    model = E2LLMModel.from_config(tiny_config(tiny_model_dirs), device="cpu")
    feats, mask = model.encoder.encode(["The answer is blue."])
    target = model.tokenizer("blue", add_special_tokens=False)["input_ids"]
    ex = TrainExample(feats, mask, model.prompt("What colour?"), target)
    params = [p for group in model.trainable_parameters().values() for p in group]
    assert params and all(p.requires_grad for p in params)
    frozen = {
        n: p.detach().clone() for n, p in model.decoder.named_parameters() if "lora_" not in n
    }
    encoder = {n: p.detach().clone() for n, p in model.encoder.named_parameters()}
    opt = torch.optim.AdamW(params, lr=1e-2)
    with torch.no_grad():
        first = float(model([ex]))
    for _ in range(15):
        opt.zero_grad()
        model([ex, ex]).backward()
        opt.step()
    with torch.no_grad():
        assert float(model([ex])) < first
    for name, p in model.decoder.named_parameters():
        if name in frozen:
            assert not p.requires_grad
            torch.testing.assert_close(p, frozen[name], msg=name)
    for name, p in model.encoder.named_parameters():
        torch.testing.assert_close(p, encoder[name], msg=name)  # no encoder LoRA here
