"""Issue 13, case 4: saved ``EncodedCorpus`` folders carry checksums and a required
fingerprint; anything corrupt, incomplete or mismatched is refused with "re-encode"."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from e2llm_integrations.core import E2LLMPipeline, EncodedCorpus, GenerationConfig
from e2llm_integrations.core.checkpoint import sha256
from e2llm_integrations.core.corpus import (
    CORPUS_FORMAT_VERSION,
    CORPUS_META,
    CORPUS_TENSORS,
    _meta_digest,
)

TEXT = ["A report about harbours and tides. " * 12, "Second document on lighthouses. " * 12]


@pytest.fixture
def corpus(tiny_pipeline: E2LLMPipeline) -> EncodedCorpus:
    return tiny_pipeline.encode(TEXT)


@pytest.fixture
def saved(corpus: EncodedCorpus, tmp_path: Path) -> Path:
    return corpus.save(tmp_path / "corpus")


def _meta(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((path / CORPUS_META).read_text())
    return data


def _resign(path: Path, meta: dict[str, Any]) -> None:
    """Write ``meta`` with a valid own checksum, to test the checks behind it."""
    meta["meta_sha256"] = _meta_digest(meta)
    (path / CORPUS_META).write_text(json.dumps(meta))


def test_round_trip_keeps_everything_and_records_checksums(
    tiny_pipeline: E2LLMPipeline, corpus: EncodedCorpus, saved: Path
) -> None:
    meta = _meta(saved)
    assert meta["format_version"] == CORPUS_FORMAT_VERSION == 2
    assert meta["files"] == {CORPUS_TENSORS: sha256(saved / CORPUS_TENSORS)}
    again = EncodedCorpus.load(saved)
    assert again.chunks == corpus.chunks and again.context_tokens == corpus.context_tokens
    assert again.fingerprint == corpus.fingerprint == tiny_pipeline.fingerprint
    torch.testing.assert_close(again.features, corpus.features)
    gen = GenerationConfig(max_new_tokens=4)
    assert (
        tiny_pipeline.ask(again, "tides?", gen).text
        == tiny_pipeline.ask(corpus, "tides?", gen).text
    )


def test_overwritten_feature_bytes_are_refused(saved: Path) -> None:
    file = saved / CORPUS_TENSORS
    data = bytearray(file.read_bytes())
    data[-64:] = b"\xff" * 64  # NaN floats once loaded
    file.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="sha256.*Re-encode"):
        EncodedCorpus.load(saved)


def test_missing_tensors_are_refused(saved: Path) -> None:
    (saved / CORPUS_TENSORS).unlink()
    with pytest.raises(ValueError, match="features.safetensors is missing.*Re-encode"):
        EncodedCorpus.load(saved)


def test_edited_metadata_is_refused(saved: Path) -> None:
    meta = _meta(saved)
    meta["chunks"][0]["text"] = "Something the documents never said."
    (saved / CORPUS_META).write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="sha256 recorded in corpus.json.*Re-encode"):
        EncodedCorpus.load(saved)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m.pop("context_tokens"), r"missing \['context_tokens'\]"),
        (lambda m: m.pop("fingerprint"), r"missing \['fingerprint'\]"),
        (lambda m: m.update(colour="red"), r"unknown \['colour'\]"),
        (lambda m: m.update(fingerprint={}), "no fingerprint"),
        (lambda m: m.update(fingerprint=None), "no fingerprint"),
        (lambda m: m["chunks"][0].pop("doc_id"), "malformed chunk records"),
        (lambda m: m["chunks"].pop(), "inconsistent"),
        (lambda m: m.update(context_tokens=["x"]), "malformed context_tokens"),
        (lambda m: m.update(files={}), "no checksum for features"),
        (lambda m: m.update(format_version=1), "format 1, not 2"),
    ],
)
def test_incomplete_or_malformed_metadata_is_named(saved: Path, edit: Any, message: str) -> None:
    meta = _meta(saved)
    edit(meta)
    _resign(saved, meta)
    with pytest.raises(ValueError, match=message) as err:
        EncodedCorpus.load(saved)
    assert "re-encode" in str(err.value).lower()


def test_wrong_tensors_are_refused(saved: Path, corpus: EncodedCorpus) -> None:
    file = saved / CORPUS_TENSORS
    save_file({"features": corpus.features.contiguous()}, str(file))  # the mask is gone
    meta = _meta(saved)
    meta["files"][CORPUS_TENSORS] = sha256(file)
    _resign(saved, meta)
    with pytest.raises(ValueError, match="not features and mask"):
        EncodedCorpus.load(saved)


def test_non_finite_features_are_refused_even_with_valid_checksums(
    corpus: EncodedCorpus, tmp_path: Path
) -> None:
    corpus.features[1, 0, :4] = float("nan")
    path = corpus.save(tmp_path / "nan")
    with pytest.raises(ValueError, match="NaN/inf"):
        EncodedCorpus.load(path)


def test_old_format_corpora_are_refused(saved: Path) -> None:
    meta = _meta(saved)
    old = {k: meta[k] for k in ("fingerprint", "chunks", "context_tokens")}
    (saved / CORPUS_META).write_text(json.dumps({**old, "format_version": 1}))
    with pytest.raises(ValueError, match="older ones lack checksums.*Re-encode"):
        EncodedCorpus.load(saved)


def test_a_corpus_without_fingerprint_is_refused(
    tiny_pipeline: E2LLMPipeline, corpus: EncodedCorpus, tmp_path: Path
) -> None:
    bare = EncodedCorpus(corpus.chunks, corpus.features, corpus.mask, corpus.context_tokens)
    with pytest.raises(ValueError, match="no fingerprint"):
        bare.save(tmp_path / "bare")
    with pytest.raises(ValueError, match="no fingerprint.*re-encode"):
        tiny_pipeline.ask(bare, "tides?")


def test_a_corpus_from_other_settings_is_refused_after_loading(
    tiny_pipeline: E2LLMPipeline, corpus: EncodedCorpus, tmp_path: Path
) -> None:
    corpus.fingerprint = {**corpus.fingerprint, "chunk_tokens": 128}
    loaded = EncodedCorpus.load(corpus.save(tmp_path / "other"))
    with pytest.raises(ValueError, match="other encoder/chunk settings.*re-encode"):
        tiny_pipeline.ask(loaded, "tides?")
