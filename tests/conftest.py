"""Shared fixtures: tiny random-weight models built in code (hub-free, seconds).

The tiny encoder and decoder reuse the real bundled tokenizers (MiniLM's WordPiece and
SmolLM2's BPE with its chat template), so chunking and prompts behave as in production
while the networks stay a few hundred kilobytes.
"""

from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path

import pytest
import torch

from e2llm_integrations.core import (
    AdapterConfig,
    ChunkingConfig,
    DecoderConfig,
    E2LLMConfig,
    E2LLMPipeline,
    EncoderConfig,
    LoraSettings,
)
from e2llm_integrations.core.models import BUNDLED, cache_dir, resolve

SMOL = BUNDLED["smollm2-135m-instruct"]


def _decoder_tokenizer():  # type: ignore[no-untyped-def]
    from transformers import AutoTokenizer

    converted = cache_dir() / "models" / f"smollm2-135m-instruct-{SMOL.version}"
    if (converted / "tokenizer.json").exists():
        return AutoTokenizer.from_pretrained(converted)
    spec = importlib.util.find_spec(SMOL.package)
    assert spec is not None and spec.submodule_search_locations
    folder = Path(next(iter(spec.submodule_search_locations)))
    return AutoTokenizer.from_pretrained(folder, gguf_file=SMOL.gguf_file)


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Save a tiny BERT encoder and a tiny Llama decoder with real tokenizers."""
    from transformers import AutoTokenizer, BertConfig, BertModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("tiny_models")
    enc_tok = AutoTokenizer.from_pretrained(resolve("all-minilm-l6-v2"))
    enc = BertModel(
        BertConfig(
            vocab_size=enc_tok.vocab_size,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=64,
            max_position_embeddings=256,
        )
    )
    enc.save_pretrained(root / "encoder")
    enc_tok.save_pretrained(root / "encoder")
    dec_tok = _decoder_tokenizer()
    dec = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(dec_tok),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=512,
            tie_word_embeddings=True,
            bos_token_id=dec_tok.bos_token_id,
            eos_token_id=dec_tok.eos_token_id,
        )
    )
    dec.save_pretrained(root / "decoder")
    dec_tok.save_pretrained(root / "decoder")
    return {"encoder": str(root / "encoder"), "decoder": str(root / "decoder")}


def tiny_config(dirs: dict[str, str], **overrides: object) -> E2LLMConfig:
    """An E2LLMConfig over the tiny models; keyword overrides replace whole sections."""
    base = {
        "encoder": EncoderConfig(name_or_path=dirs["encoder"], max_length=64, batch_size=8),
        "adapter": AdapterConfig(kind="mlp", num_heads=4),
        "decoder": DecoderConfig(name_or_path=dirs["decoder"], lora=LoraSettings(r=4, alpha=8)),
        "chunking": ChunkingConfig(chunk_tokens=32),
    }
    base.update(overrides)
    return E2LLMConfig(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def tiny_pipeline(tiny_model_dirs: dict[str, str]) -> E2LLMPipeline:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return E2LLMPipeline.from_pretrained(config=tiny_config(tiny_model_dirs), device="cpu")


@pytest.fixture(autouse=True)
def _llama_index_settings_restored():  # type: ignore[no-untyped-def]
    """Every test leaves LlamaIndex's global ``Settings.llm`` as it found it.

    ``E2LLMSynthesizer`` stands in for an unset ``Settings.llm`` (when OpenAI's
    integration is missing); without this, that would leak from test to test.
    """
    module = sys.modules.get("llama_index.core.settings")
    before = module.Settings._llm if module is not None else None
    yield
    module = sys.modules.get("llama_index.core.settings")
    if module is not None:
        module.Settings._llm = before


def _weights_digest(pipeline: E2LLMPipeline) -> list[float]:
    with torch.no_grad():
        return [float(p.double().square().sum()) for p in pipeline.model.parameters()]


@pytest.fixture(autouse=True)
def _tiny_pipeline_unchanged(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """A test may read the session-wide ``tiny_pipeline`` but never change its weights:
    otherwise results would depend on test order. Tests that train or perturb build their
    own model (``E2LLMModel.from_config(tiny_config(tiny_model_dirs))``)."""
    if "tiny_pipeline" not in request.fixturenames:
        yield
        return
    pipeline = request.getfixturevalue("tiny_pipeline")
    before = _weights_digest(pipeline)
    yield
    assert _weights_digest(pipeline) == before, "this test changed tiny_pipeline's weights"
