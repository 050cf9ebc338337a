"""The RAG-vs-E2LLM notebook: saved with outputs, and runs end to end in quick mode."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "llamaindex_rag_vs_e2llm.ipynb"


def _outputs(nb: dict) -> tuple[str, set[str]]:
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
    for system in (
        "RAG top-2 + SmolLM2 (compact)",
        "E2LLM synthesizer, top-4",
        "E2LLM synthesizer, all",
    ):
        assert f"| {system}" in text
    assert "image/png" in mimes
