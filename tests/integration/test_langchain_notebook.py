"""The LangChain RAG-vs-E2LLM notebook: saved with outputs, and runs end to end in quick mode."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "langchain_rag_vs_e2llm.ipynb"
SYSTEMS = (
    "RAG top-{rag} + SmolLM2 (stuff)",
    "E2LLM top-{e2}",
    "E2LLM all ",
    "E2LLM all + FAISS prefilter",
)


def _outputs(nb: dict[str, Any]) -> tuple[str, set[str]]:
    """All text/markdown output of the notebook, and the MIME types it produced."""
    texts, mimes = [], set()
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            texts.append("".join(out.get("text", "")))
            for mime, value in out.get("data", {}).items():
                mimes.add(mime)
                if mime in ("text/markdown", "text/plain"):
                    texts.append("".join(value))
    return "\n".join(texts), mimes


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
    nb = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and all(c.get("execution_count") for c in code), (
        "execute the notebook before saving"
    )
    assert not any(o.get("output_type") == "error" for c in code for o in c["outputs"])
    text, mimes = _outputs(nb)
    assert "image/png" in mimes  # the quality / latency plot
    assert "quick=False" in text  # saved from a full run, not a smoke run
    _check_results(text, rag=4, e2=16)


@pytest.mark.integration
@pytest.mark.enable_socket  # the Jupyter kernel talks over localhost ZMQ
@pytest.mark.allow_hosts(["127.0.0.1"])
def test_notebook_runs_in_quick_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("E2LLM_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # torch's pool thrashes on a busy 2-core machine
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    client.execute()  # raises CellExecutionError on any failing cell
    text, mimes = _outputs(nb)
    assert "quick=True" in text
    _check_results(text, rag=2, e2=4)
    assert "image/png" in mimes
