"""The RAG-vs-E2LLM notebook: saved with outputs, and runs end to end in quick mode."""

from __future__ import annotations

import pytest

from ._notebooks import EXAMPLES, run_quick, saved_outputs

NOTEBOOK = EXAMPLES / "llamaindex_rag_vs_e2llm.ipynb"


def test_saved_notebook_has_its_outputs() -> None:
    text, mimes = saved_outputs(NOTEBOOK)
    assert "image/png" in mimes  # the quality / latency plot
    assert "quick=False" in text  # saved from a full run, not a smoke run


@pytest.mark.integration
@pytest.mark.enable_socket  # the Jupyter kernel talks over localhost ZMQ
@pytest.mark.allow_hosts(["127.0.0.1"])
def test_notebook_runs_in_quick_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    text, mimes = run_quick(NOTEBOOK, monkeypatch)
    assert "quick=True" in text
    for system in (
        "RAG top-2 + SmolLM2 (compact)",
        "E2LLM synthesizer, top-4",
        "E2LLM synthesizer, all",
    ):
        assert f"| {system}" in text
    assert "image/png" in mimes
