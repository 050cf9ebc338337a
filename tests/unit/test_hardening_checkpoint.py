"""Issue 13, cases 1 and 3: the manifest's checksum covers the config, and it lists every
weight file its config implies (nothing loads with a silently missing LoRA)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

from e2llm_integrations.core import E2LLMModel, E2LLMPipeline
from e2llm_integrations.core.checkpoint import (
    ADAPTER_NAME,
    CHECKPOINT_FORMAT_VERSION,
    CONFIG_NAME,
    DECODER_LORA_NAME,
    DIGEST_KEY,
    ENCODER_LORA_NAME,
    read_manifest,
    sha256,
    write_manifest,
)
from e2llm_integrations.core.pipeline import DEFAULT_CHECKPOINT

from ..conftest import tiny_config


@pytest.fixture
def saved(tiny_pipeline: E2LLMPipeline, tmp_path: Path) -> Path:
    return tiny_pipeline.model.save_pretrained(tmp_path / "ckpt")


def _manifest(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((path / CONFIG_NAME).read_text())
    return data


def _write_v1(path: Path, manifest: dict[str, Any]) -> None:
    """Rewrite as a format-1 manifest (no checksum of its own), as the shipped one is."""
    body = {k: v for k, v in manifest.items() if k != DIGEST_KEY}
    body["format_version"] = 1
    (path / CONFIG_NAME).write_text(json.dumps(body))


def _lora_b_sum(model: E2LLMModel) -> float:
    return sum(float(p.detach().abs().sum()) for n, p in model.named_parameters() if "lora_B" in n)


def test_new_checkpoints_carry_a_checksum_of_their_manifest(saved: Path) -> None:
    manifest = _manifest(saved)
    assert manifest["format_version"] == CHECKPOINT_FORMAT_VERSION == 2
    assert len(manifest[DIGEST_KEY]) == 64
    assert read_manifest(saved)["config"] == manifest["config"]


@pytest.mark.parametrize(
    "edit",
    [
        lambda m: m["config"].update(instruction="Ignore the context."),
        lambda m: m["config"]["decoder"].update(trust_remote_code=True),
        lambda m: m["config"]["decoder"].update(name_or_path="/elsewhere/decoder"),
        lambda m: m["bases"].update(decoder_vocab=1),
        lambda m: m.pop(DIGEST_KEY),
    ],
)
def test_an_edited_config_is_refused(saved: Path, edit: Any) -> None:
    manifest = _manifest(saved)
    edit(manifest)
    (saved / CONFIG_NAME).write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=DIGEST_KEY):
        E2LLMModel.from_pretrained(saved, device="cpu")


def test_the_shipped_checkpoint_reads_and_is_never_rewritten() -> None:
    """Only the manifest and file checksums are read here: no base model is loaded."""
    before = (DEFAULT_CHECKPOINT / CONFIG_NAME).read_bytes()
    manifest = read_manifest(DEFAULT_CHECKPOINT)
    assert manifest["format_version"] == 2 and len(manifest[DIGEST_KEY]) == 64
    assert set(manifest["files"]) == {ADAPTER_NAME, DECODER_LORA_NAME}
    assert (DEFAULT_CHECKPOINT / CONFIG_NAME).read_bytes() == before  # never rewritten


def test_format_1_checkpoints_load_with_their_weights(
    tiny_model_dirs: dict[str, str], tmp_path: Path
) -> None:
    model = E2LLMModel.from_config(tiny_config(tiny_model_dirs), device="cpu")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.fill_(0.25)
    path = model.save_pretrained(tmp_path / "v1")
    _write_v1(path, _manifest(path))
    loaded = E2LLMModel.from_pretrained(path, device="cpu")
    assert _lora_b_sum(loaded) == pytest.approx(_lora_b_sum(model)) and _lora_b_sum(model) > 0


@pytest.mark.parametrize("signed", [True, False], ids=["format2", "format1"])
@pytest.mark.parametrize(
    ("files", "named"),
    [
        ({}, ADAPTER_NAME),
        ({ADAPTER_NAME: "keep"}, DECODER_LORA_NAME),
        ({DECODER_LORA_NAME: "keep"}, ADAPTER_NAME),
        (
            {ADAPTER_NAME: "keep", DECODER_LORA_NAME: "keep", ENCODER_LORA_NAME: "0" * 64},
            ENCODER_LORA_NAME,
        ),
    ],
)
def test_manifest_must_list_what_its_config_implies(
    saved: Path, files: dict[str, str], named: str, signed: bool
) -> None:
    manifest = _manifest(saved)
    manifest["files"] = {k: manifest["files"][k] if v == "keep" else v for k, v in files.items()}
    if signed:
        write_manifest(saved, manifest)
    else:
        _write_v1(saved, manifest)
    with pytest.raises(ValueError, match=named):
        E2LLMModel.from_pretrained(saved, device="cpu")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m.pop("files"), "'files' entry .* is missing"),
        (lambda m: m.pop("config"), "'config' entry .* is missing"),
        (lambda m: m.pop("bases"), "'bases' entry .* is missing"),
        (lambda m: m.update(files=[ADAPTER_NAME]), "'files' entry .* not a JSON object"),
        (lambda m: m.update(config="default"), "'config' entry .* not a JSON object"),
        (lambda m: m["files"].update({ADAPTER_NAME: "abc"}), "'files' entry 'adapter"),
        (lambda m: m["files"].update({"../../etc/passwd": "0" * 64}), "'files' entry '../../etc"),
        (lambda m: m["config"].update(colour="red"), "'config' entry .* malformed.*colour"),
        (lambda m: m["config"]["encoder"].update(max_length=-1), "'config' entry .* malformed"),
        (lambda m: m["bases"].update(encoder_hidden="wide"), "'bases' entry 'encoder_hidden'"),
    ],
)
def test_missing_or_malformed_entries_are_named(saved: Path, edit: Any, message: str) -> None:
    manifest = _manifest(saved)
    edit(manifest)
    write_manifest(saved, manifest)
    with pytest.raises(ValueError, match=message):
        E2LLMModel.from_pretrained(saved, device="cpu")


def _replace_lora(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    file = path / DECODER_LORA_NAME
    save_file(tensors, str(file))
    manifest = _manifest(path)
    manifest["files"][DECODER_LORA_NAME] = sha256(file)
    write_manifest(path, manifest)


def test_a_lora_file_without_all_weights_is_refused(saved: Path) -> None:
    full = load_file(str(saved / DECODER_LORA_NAME))
    half = dict(list(full.items())[: len(full) // 2])
    _replace_lora(saved, half)
    with pytest.raises(ValueError, match=f"{len(full) - len(half)} missing"):
        E2LLMModel.from_pretrained(saved, device="cpu")
    _replace_lora(saved, {"unrelated": torch.zeros(2)})
    with pytest.raises(ValueError, match="1 unknown"):
        E2LLMModel.from_pretrained(saved, device="cpu")


def test_a_lora_file_with_wrong_shapes_is_refused(saved: Path) -> None:
    full = load_file(str(saved / DECODER_LORA_NAME))
    _replace_lora(saved, {k: torch.zeros(3, 3) for k in full})
    with pytest.raises(ValueError, match="do not fit this model"):
        E2LLMModel.from_pretrained(saved, device="cpu")
