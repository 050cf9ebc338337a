"""The LangChain RAG-vs-E2LLM notebook: saved with outputs, and runs end to end in quick mode."""

from __future__ import annotations

import pytest

from ._notebooks import EXAMPLES, run_quick, saved_outputs

NOTEBOOK = EXAMPLES / "langchain_rag_vs_e2llm.ipynb"
SYSTEMS = (
    "RAG top-{rag} + SmolLM2 (stuff)",
    "E2LLM top-{e2}",
    "E2LLM all ",
    "E2LLM all + FAISS prefilter",
)


def _check_results(text: str, rag: int, e2: int) -> None:
    for system in SYSTEMS:
        assert f"| {system.format(rag=rag, e2=e2)}" in text, system
    rows = [line for line in text.splitlines() if line.startswith(("| RAG", "| E2LLM"))]
    positions = {row.split("|")[1].strip(): float(row.split("|")[6]) for row in rows}
    rag_positions = next(v for k, v in positions.items() if k.startswith("RAG"))
    e2llm_all = next(
        v for k, v in positions.items() if k.startswith("E2LLM all") and "FAISS" not in k
    )
    # E2LLM reads every paragraph in fewer decoder positions than RAG needs for its top-k.
    assert e2llm_all < rag_positions


def test_saved_notebook_has_its_outputs() -> None:
    text, mimes = saved_outputs(NOTEBOOK)
    assert "image/png" in mimes  # the quality / latency plot
    assert "quick=False" in text  # saved from a full run, not a smoke run
    _check_results(text, rag=4, e2=16)


@pytest.mark.integration
@pytest.mark.enable_socket  # the Jupyter kernel talks over localhost ZMQ
@pytest.mark.allow_hosts(["127.0.0.1"])
def test_notebook_runs_in_quick_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    text, mimes = run_quick(NOTEBOOK, monkeypatch)
    assert "quick=True" in text
    _check_results(text, rag=2, e2=4)
    assert "image/png" in mimes
