"""Shared checks of the example notebooks: their saved outputs and a quick-mode execution."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def outputs(nb: dict[str, Any]) -> tuple[str, set[str]]:
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


def saved_outputs(path: Path) -> tuple[str, set[str]]:
    """Outputs of the notebook as saved, after checking every code cell ran without error."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and all(c.get("execution_count") for c in code), (
        "execute the notebook before saving"
    )
    assert not any(o.get("output_type") == "error" for c in code for o in c["outputs"])
    return outputs(nb)


def run_quick(path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, set[str]]:
    """Execute the notebook in quick mode (``E2LLM_NOTEBOOK_QUICK=1``) and return its outputs."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("E2LLM_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # torch's pool thrashes on a busy 2-core machine
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()  # raises CellExecutionError on any failing cell
    return outputs(nb)
