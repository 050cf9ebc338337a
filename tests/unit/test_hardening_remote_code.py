"""Issue 13, case 1: a checkpoint cannot make the library run its decoder's own Python code.

The decoder folder here holds an ``auto_map`` module that writes a marker file when it
is imported. The marker must only appear when the caller allows remote code.
"""

from __future__ import annotations

import json
import shutil
import sys
import uuid
from pathlib import Path

import pytest
import transformers.dynamic_module_utils as dynamic

from e2llm_integrations.core import DecoderConfig, E2LLMModel, E2LLMPipeline, LoraSettings
from e2llm_integrations.core.checkpoint import (
    CONFIG_NAME,
    load_checkpoint,
    read_manifest,
    write_manifest,
)
from e2llm_integrations.core.config import TRUST_REMOTE_CODE_ENV, allow_remote_code

from ..conftest import tiny_config

MODULE = """
from pathlib import Path

Path({marker!r}).write_text("remote code ran")

from transformers import LlamaForCausalLM


class MarkerLlamaForCausalLM(LlamaForCausalLM):
    pass
"""


@pytest.fixture
def marker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv(TRUST_REMOTE_CODE_ENV, raising=False)
    monkeypatch.setattr(dynamic, "HF_MODULES_CACHE", str(tmp_path / "hf_modules"))
    monkeypatch.setattr(sys, "path", list(sys.path))
    return tmp_path / "remote_code_ran.txt"


@pytest.fixture
def marker_decoder(tiny_model_dirs: dict[str, str], tmp_path: Path, marker: Path) -> Path:
    """The tiny decoder plus an ``auto_map`` module that writes ``marker`` on import."""
    folder = tmp_path / f"marker_decoder_{uuid.uuid4().hex[:8]}"
    shutil.copytree(tiny_model_dirs["decoder"], folder)
    (folder / "marker_model.py").write_text(MODULE.format(marker=str(marker)))
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "marker_model.MarkerLlamaForCausalLM"}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def _checkpoint(dirs: dict[str, str], decoder: Path, out: Path, request: bool) -> Path:
    """A checkpoint over ``decoder``; ``request`` re-signs its manifest asking for remote code."""
    cfg = tiny_config(
        dirs, decoder=DecoderConfig(name_or_path=str(decoder), lora=LoraSettings(r=2, alpha=4))
    )
    path = E2LLMModel.from_config(cfg, device="cpu").save_pretrained(out)
    if request:  # a copied checkpoint: its author can recompute any checksum
        manifest = json.loads((path / CONFIG_NAME).read_text())
        manifest["config"]["decoder"]["trust_remote_code"] = True
        write_manifest(path, manifest)
    return path


def test_checkpoint_asking_for_remote_code_is_refused(
    tiny_model_dirs: dict[str, str], marker_decoder: Path, marker: Path, tmp_path: Path
) -> None:
    ckpt = _checkpoint(tiny_model_dirs, marker_decoder, tmp_path / "ckpt", request=True)
    assert not marker.exists(), "building the checkpoint must not have run the module"
    for load in (
        lambda: E2LLMPipeline.from_pretrained(checkpoint=ckpt, device="cpu"),
        lambda: load_checkpoint(ckpt, device="cpu"),
        lambda: E2LLMModel.from_pretrained(ckpt, device="cpu"),
        lambda: read_manifest(ckpt),
    ):
        with pytest.raises(ValueError, match="trust_remote_code") as err:
            load()
        assert f"{TRUST_REMOTE_CODE_ENV}=1" in str(err.value)
        assert "trust_remote_code=True" in str(err.value)
    with pytest.raises(ValueError, match="trust_remote_code"):  # an explicit no beats the env
        load_checkpoint(ckpt, device="cpu", trust_remote_code=False)
    assert not marker.exists()


def test_remote_code_runs_only_when_the_caller_allows_it(
    tiny_model_dirs: dict[str, str], marker_decoder: Path, marker: Path, tmp_path: Path
) -> None:
    ckpt = _checkpoint(tiny_model_dirs, marker_decoder, tmp_path / "ckpt", request=True)
    pipe = E2LLMPipeline.from_pretrained(checkpoint=ckpt, device="cpu", trust_remote_code=True)
    assert marker.read_text() == "remote code ran"
    assert type(pipe.model.decoder.get_base_model()).__name__ == "MarkerLlamaForCausalLM"


def test_environment_variable_allows_remote_code(
    tiny_model_dirs: dict[str, str],
    marker_decoder: Path,
    marker: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ckpt = _checkpoint(tiny_model_dirs, marker_decoder, tmp_path / "ckpt", request=True)
    monkeypatch.setenv(TRUST_REMOTE_CODE_ENV, "1")
    model = load_checkpoint(ckpt, device="cpu")
    assert marker.exists()
    assert type(model.decoder.get_base_model()).__name__ == "MarkerLlamaForCausalLM"


def test_auto_map_without_a_request_or_permission_is_not_run(
    tiny_model_dirs: dict[str, str], marker_decoder: Path, marker: Path, tmp_path: Path
) -> None:
    ckpt = _checkpoint(tiny_model_dirs, marker_decoder, tmp_path / "ckpt", request=False)
    pipe = E2LLMPipeline.from_pretrained(checkpoint=ckpt, device="cpu")
    assert type(pipe.model.decoder.get_base_model()).__name__ == "LlamaForCausalLM"
    assert not marker.exists()


def test_config_asking_for_remote_code_is_refused(
    tiny_model_dirs: dict[str, str], marker_decoder: Path, marker: Path
) -> None:
    decoder = DecoderConfig(name_or_path=str(marker_decoder), trust_remote_code=True)
    with pytest.raises(ValueError, match=TRUST_REMOTE_CODE_ENV):
        E2LLMPipeline.from_pretrained(config=tiny_config(tiny_model_dirs, decoder=decoder))
    assert not marker.exists()


def test_allow_remote_code_reads_the_argument_then_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(TRUST_REMOTE_CODE_ENV, raising=False)
    assert allow_remote_code() is False
    for value, expected in (("1", True), ("true", True), ("0", False), ("", False)):
        monkeypatch.setenv(TRUST_REMOTE_CODE_ENV, value)
        assert allow_remote_code() is expected
    monkeypatch.setenv(TRUST_REMOTE_CODE_ENV, "1")
    assert allow_remote_code(False) is False
    monkeypatch.setenv(TRUST_REMOTE_CODE_ENV, "maybe")
    with pytest.raises(ValueError, match="set it to 1"):
        allow_remote_code()
    with pytest.raises(TypeError, match="True, False or None"):
        allow_remote_code("yes")  # type: ignore[arg-type]
