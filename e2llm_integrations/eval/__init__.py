"""Evaluation and benchmarks: needle in a haystack, long-context QA, speed and memory.

Command line: ``e2llm eval niah``, ``e2llm eval qa``, ``e2llm eval report``,
``e2llm bench`` (see :mod:`.cli`). Every command compares E2LLM with the plain base
decoder reading the text (``full``), retrieval into the base decoder (``rag``) and
E2LLM with retrieved raw excerpts (``hybrid``), over exactly the same text.

Names are imported lazily, so ``e2llm --help`` does not load torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BENCH_SYSTEMS": "bench", "BenchConfig": "bench", "Measurement": "bench",
    "run_bench": "bench", "ModelSource": "common", "Haystack": "niah", "Needle": "niah",
    "NiahConfig": "niah", "make_needles": "niah", "needle_found": "niah", "plant": "niah",
    "run_niah": "niah", "QAConfig": "qa", "run_qa": "qa", "SYSTEMS": "systems",
    "EvalContext": "systems", "SystemConfig": "systems", "run_system": "systems",
    "truncate_middle": "systems",
}  # fmt: skip

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
