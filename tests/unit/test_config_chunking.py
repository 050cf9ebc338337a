"""Config validation/round trip and chunking on the real MiniLM tokenizer."""

from __future__ import annotations

import logging

import pytest
from transformers import AutoTokenizer

from e2llm_integrations.core.chunking import Chunker
from e2llm_integrations.core.config import ChunkingConfig, E2LLMConfig, EncoderConfig, LoraSettings
from e2llm_integrations.core.models import resolve


@pytest.fixture(scope="module")
def tokenizer():  # type: ignore[no-untyped-def]
    return AutoTokenizer.from_pretrained(resolve("all-minilm-l6-v2"))


def test_config_json_round_trip() -> None:
    cfg = E2LLMConfig(
        encoder=EncoderConfig(tokens_per_chunk=2, lora=LoraSettings(r=4)),
        chunking=ChunkingConfig(chunk_tokens=128, overlap_tokens=16),
    )
    again = E2LLMConfig.from_json(cfg.to_json())
    assert again == cfg
    assert isinstance(again.encoder.lora, LoraSettings)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: ChunkingConfig(chunk_tokens=0), "chunk_tokens"),
        (lambda: ChunkingConfig(chunk_tokens=32, overlap_tokens=32), "overlap_tokens"),
        (lambda: EncoderConfig(pooling="max"), "pooling"),  # type: ignore[arg-type]
        (lambda: E2LLMConfig.from_dict({"encoderr": {}}), "Unknown"),
        (lambda: E2LLMConfig.from_dict({"format_version": 99}), "format_version"),
        (lambda: E2LLMConfig(chunking=ChunkingConfig(chunk_tokens=300)), "max_length"),
        (lambda: E2LLMConfig.from_json("{not json"), "corrupt"),
    ],
)
def test_config_errors_name_the_problem(make, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=message):
        make()


def test_chunks_respect_size_offsets_and_boundaries(tokenizer) -> None:  # type: ignore[no-untyped-def]
    sentence = "The quick brown fox jumps over the lazy dog near the river bank. "
    text = sentence * 40
    chunker = Chunker(tokenizer, ChunkingConfig(chunk_tokens=40))
    chunks = list(chunker.chunk([text], ["doc"]))
    assert len(chunks) > 5
    for c in chunks:
        assert c.text == text[c.start : c.end]
        assert c.doc_id == "doc"
        assert c.n_tokens <= 40
        assert len(tokenizer(c.text, add_special_tokens=False)["input_ids"]) <= 40
    # every chunk but the last ends at a sentence end, since a boundary is always in reach
    assert all(c.text.endswith(".") for c in chunks[:-1])
    # consecutive chunks tile the text without gaps (no overlap configured)
    for a, b in zip(chunks, chunks[1:], strict=False):
        assert text[a.end : b.start].strip() == ""
    assert [c.index for c in chunks] == list(range(len(chunks)))


def test_overlap_repeats_tokens(tokenizer) -> None:  # type: ignore[no-untyped-def]
    text = " ".join(f"word{i}" for i in range(300))
    chunker = Chunker(tokenizer, ChunkingConfig(chunk_tokens=30, overlap_tokens=10, respect_boundaries=False))
    chunks = list(chunker.chunk([text]))
    assert all(b.start < a.end for a, b in zip(chunks, chunks[1:], strict=False))


def test_empty_documents_are_skipped_with_warning(tokenizer, caplog) -> None:  # type: ignore[no-untyped-def]
    chunker = Chunker(tokenizer, ChunkingConfig(chunk_tokens=32))
    with caplog.at_level(logging.WARNING):
        chunks = list(chunker.chunk(["   \n", "Real text here."], ["empty", "full"]))
    assert [c.doc_id for c in chunks] == ["full"]
    assert "empty" in caplog.text


def test_wrong_document_type_is_a_type_error(tokenizer) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TypeError, match="pass documents as str"):
        list(Chunker(tokenizer).chunk([b"bytes"]))  # type: ignore[list-item]


def test_long_document_is_segmented_and_complete(tokenizer) -> None:  # type: ignore[no-untyped-def]
    paragraph = "Alpha beta gamma delta. Epsilon zeta eta theta.\n"
    text = paragraph * 3000  # ~150k characters: several tokenizer segments
    chunks = list(Chunker(tokenizer, ChunkingConfig(chunk_tokens=64)).chunk([text]))
    covered = sum(c.end - c.start for c in chunks)
    assert covered >= 0.97 * len(text.replace("\n", ""))
    assert chunks[-1].end >= len(text) - 2
