"""Checkpoint round trip and refusal, encoded corpora, pipeline input handling, layering."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from e2llm_integrations.core import E2LLMModel, E2LLMPipeline, EncodedCorpus, GenerationConfig
from e2llm_integrations.core.checkpoint import (
    ADAPTER_NAME,
    CONFIG_NAME,
    DECODER_LORA_NAME,
    ENCODER_LORA_NAME,
)
from e2llm_integrations.core.config import EncoderConfig, LoraSettings

from ..conftest import tiny_config

CHUNKS = ["A few words about cats and dogs.", "Dogs bark at the cats in the garden."]


def _perturb(model: E2LLMModel) -> None:
    """Give LoRA B matrices non-zero values: they start at zero, so a LoRA that failed to
    load would otherwise be indistinguishable from one that loaded."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=generator) * 0.5)


@pytest.fixture
def own_model(tiny_model_dirs) -> E2LLMModel:  # type: ignore[no-untyped-def]
    """A model of the test's own: tests that change weights never touch the shared pipeline."""
    torch.manual_seed(0)
    return E2LLMModel.from_config(tiny_config(tiny_model_dirs), device="cpu")


def _lora_b(model: E2LLMModel) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_B" in n}


def test_save_load_round_trip_gives_identical_generation(
    own_model: E2LLMModel, tmp_path: Path
) -> None:
    model = own_model
    _perturb(model)
    path = model.save_pretrained(tmp_path / "ckpt")
    files = {p.name for p in path.iterdir()}
    assert {CONFIG_NAME, ADAPTER_NAME, DECODER_LORA_NAME} <= files
    assert ENCODER_LORA_NAME not in files  # the encoder is frozen in this config
    assert not any(f.endswith((".bin", ".pt", ".pkl")) for f in files)
    assert not any(f == "model.safetensors" for f in files)  # base weights never written
    loaded = E2LLMModel.from_pretrained(path, device="cpu")
    want = _lora_b(model)
    assert want and all(t.abs().sum() > 0 for t in want.values())
    got = _lora_b(loaded)
    assert got.keys() == want.keys()
    for name, tensor in want.items():
        torch.testing.assert_close(got[name], tensor, msg=name)
    for (n, a), (_, b) in zip(
        model.adapter.state_dict().items(), loaded.adapter.state_dict().items(), strict=True
    ):
        torch.testing.assert_close(a, b, msg=n)
    original, reloaded = E2LLMPipeline(model), E2LLMPipeline(loaded)
    corpus = original.encode([" ".join(CHUNKS) * 4])
    gen = GenerationConfig(max_new_tokens=10, temperature=1.0, seed=5)
    assert (
        reloaded.ask(corpus, "Which animals?", gen).text
        == original.ask(corpus, "Which animals?", gen).text
    )


def test_the_round_trip_test_can_fail(own_model: E2LLMModel, tiny_model_dirs) -> None:  # type: ignore[no-untyped-def]
    """A model whose LoRA did not load (fresh, B = 0) decodes differently from a perturbed one."""
    _perturb(own_model)
    fresh = E2LLMModel.from_config(tiny_config(tiny_model_dirs), device="cpu")
    fresh.adapter.load_state_dict(own_model.adapter.state_dict())
    feats, mask = own_model.encoder.encode(CHUNKS)
    prompt = own_model.prompt("Which animals?")
    with torch.no_grad():
        logits = [
            m.decoder(
                inputs_embeds=m.embed_sequence(prompt, m.soft_tokens(feats, mask))[None]
            ).logits
            for m in (own_model, fresh)
        ]
    assert (logits[0] - logits[1]).abs().max() > 1e-3


def test_encoder_lora_round_trip(tiny_model_dirs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cfg = tiny_config(
        tiny_model_dirs,
        encoder=EncoderConfig(
            name_or_path=tiny_model_dirs["encoder"], max_length=64, lora=LoraSettings(r=2)
        ),
    )
    model = E2LLMModel.from_config(cfg, device="cpu")
    assert model.encoder.trainable
    base, _ = model.encoder.encode(CHUNKS)  # LoRA B = 0: the base encoder's features
    _perturb(model)
    feats, _ = model.encoder.encode(CHUNKS)
    assert (feats - base).abs().max() > 1e-4, "the perturbed encoder LoRA changes the features"
    path = model.save_pretrained(tmp_path / "ckpt")
    assert (path / ENCODER_LORA_NAME).exists()
    loaded = E2LLMModel.from_pretrained(path, device="cpu")
    torch.testing.assert_close(loaded.encoder.encode(CHUNKS)[0], feats)
    digest = loaded.feature_fingerprint()["encoder_lora"]
    assert digest == model.feature_fingerprint()["encoder_lora"]
    assert isinstance(digest, str) and len(digest) == 16
    with torch.no_grad():  # another encoder LoRA: corpora encoded by the first must not match
        next(p for n, p in loaded.encoder.model.named_parameters() if "lora_B" in n).add_(0.01)
    assert loaded.feature_fingerprint()["encoder_lora"] != digest


def test_frozen_encoder_fingerprint_is_unchanged(tiny_model_dirs) -> None:  # type: ignore[no-untyped-def]
    """Corpora saved before encoder LoRA digests existed (``encoder_lora: False``) still load."""
    model = E2LLMModel.from_config(tiny_config(tiny_model_dirs), device="cpu")
    assert model.feature_fingerprint()["encoder_lora"] is False


@pytest.fixture()
def saved(tiny_pipeline, tmp_path: Path) -> Path:  # type: ignore[no-untyped-def]
    return tiny_pipeline.model.save_pretrained(tmp_path / "ckpt")


def test_corrupt_weights_are_refused(saved: Path) -> None:
    data = bytearray((saved / ADAPTER_NAME).read_bytes())
    data[-10:] = b"\x00" * 10
    (saved / ADAPTER_NAME).write_bytes(bytes(data))
    with pytest.raises(ValueError, match="sha256"):
        E2LLMModel.from_pretrained(saved, device="cpu")


def test_missing_file_and_bad_manifest_are_refused(saved: Path, tmp_path: Path) -> None:
    (saved / DECODER_LORA_NAME).unlink()
    with pytest.raises(ValueError, match="missing"):
        E2LLMModel.from_pretrained(saved, device="cpu")
    (saved / CONFIG_NAME).write_text("{ not json")
    with pytest.raises(ValueError, match="corrupt"):
        E2LLMModel.from_pretrained(saved, device="cpu")
    with pytest.raises(ValueError, match="not an E2LLM checkpoint"):
        E2LLMModel.from_pretrained(tmp_path / "nowhere", device="cpu")


def test_unknown_format_version_is_refused(saved: Path) -> None:
    manifest = json.loads((saved / CONFIG_NAME).read_text())
    manifest["format_version"] = 999
    (saved / CONFIG_NAME).write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="format_version 999"):
        E2LLMModel.from_pretrained(saved, device="cpu")


def test_mismatched_base_model_is_refused(saved: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer, BertConfig, BertModel

    manifest = json.loads((saved / CONFIG_NAME).read_text())
    other = tmp_path / "wider_encoder"
    enc_dir = manifest["config"]["encoder"]["name_or_path"]
    BertModel(
        BertConfig(
            vocab_size=30522,
            hidden_size=48,
            num_hidden_layers=1,
            num_attention_heads=4,
            intermediate_size=64,
        )
    ).save_pretrained(other)
    AutoTokenizer.from_pretrained(enc_dir).save_pretrained(other)
    from e2llm_integrations.core.checkpoint import load_checkpoint

    with pytest.raises(ValueError, match="encoder_hidden=32"):
        load_checkpoint(saved, device="cpu", encoder=str(other))


def test_encoded_corpus_save_load_and_reuse(tiny_pipeline, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    corpus = tiny_pipeline.encode(["First document. " * 30, "Second document. " * 30])
    assert {c.doc_id for c in corpus.chunks} == {"0", "1"}
    again = EncodedCorpus.load(corpus.save(tmp_path / "corpus"))
    torch.testing.assert_close(again.features, corpus.features)
    assert again.chunks == corpus.chunks and again.fingerprint == corpus.fingerprint
    gen = GenerationConfig(max_new_tokens=5)
    assert tiny_pipeline.ask(again, "q", gen).text == tiny_pipeline.ask(corpus, "q", gen).text
    sub = corpus.select([2, 0])
    assert [c.index for c in sub.chunks] == [corpus.chunks[2].index, corpus.chunks[0].index]


def test_corpus_from_other_settings_is_refused(tiny_pipeline) -> None:  # type: ignore[no-untyped-def]
    corpus = tiny_pipeline.encode(["Some text. " * 10])
    corpus.fingerprint = {**corpus.fingerprint, "chunk_tokens": 999}
    with pytest.raises(ValueError, match="re-encode"):
        tiny_pipeline.ask(corpus, "q")


def test_corrupt_corpus_is_refused(tiny_pipeline, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tiny_pipeline.encode(["Some text. " * 10]).save(tmp_path / "c")
    (path / "features.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="corrupt"):
        EncodedCorpus.load(path)


def test_pipeline_reads_paths_and_rejects_bad_input(tiny_pipeline, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    doc = tmp_path / "doc.txt"
    doc.write_text("Text from a file. " * 20)
    corpus = tiny_pipeline.encode([doc])
    assert corpus.chunks[0].doc_id == str(doc)
    with pytest.raises(ValueError, match="empty or whitespace"):
        tiny_pipeline.encode(["", "   "])
    with pytest.raises(TypeError, match="not a single one"):
        tiny_pipeline.encode("just a string")
    with pytest.raises(TypeError, match="pathlib.Path"):
        tiny_pipeline.encode([42])
    with pytest.raises(ValueError, match="does not exist"):
        tiny_pipeline.encode([tmp_path / "missing.txt"])
    with pytest.raises(ValueError, match="question is empty"):
        tiny_pipeline.ask(corpus, "  ")
    with pytest.raises(TypeError, match="question must be a str"):
        tiny_pipeline.ask(corpus, None)


def test_untrained_pipeline_warns(tiny_model_dirs) -> None:  # type: ignore[no-untyped-def]
    with pytest.warns(UserWarning, match="UNTRAINED"):
        E2LLMPipeline.from_pretrained(config=tiny_config(tiny_model_dirs), device="cpu")


def test_core_never_imports_integrations() -> None:
    code = (
        "import sys, e2llm_integrations.core;"
        "bad=[m for m in sys.modules if m.split('.')[0] in ('langchain_core','llama_index','faiss')];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_cli_empty_document_exits_nonzero(tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    result = subprocess.run(
        [sys.executable, "-m", "e2llm_integrations.cli", "ask", "--docs", str(empty), "a question"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "empty" in result.stderr and result.stdout == ""


def test_cli_missing_path_exits_nonzero(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "e2llm_integrations.cli",
            "ask",
            "--docs",
            str(tmp_path / "no.txt"),
            "q",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "does not exist" in result.stderr


def test_concurrent_encodes_from_threads_are_safe(tiny_pipeline) -> None:  # type: ignore[no-untyped-def]
    from concurrent.futures import ThreadPoolExecutor

    docs = [f"Document number {i}. " * (5 + 7 * i) for i in range(8)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        corpora = list(pool.map(lambda d: tiny_pipeline.encode([d]), docs))
    for doc, corpus in zip(docs, corpora, strict=True):
        torch.testing.assert_close(corpus.features, tiny_pipeline.encode([doc]).features)
