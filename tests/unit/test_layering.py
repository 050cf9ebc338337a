"""``core`` holds the model and its runtime only: its modules import no app layer (CLI, data
preparation, evaluation, framework integrations), no plotting, no argparse, no framework.

Every import statement counts, also those inside functions (lazy imports), and so do
``importlib.import_module("...")`` / ``__import__("...")`` calls with a literal name.
"""

from __future__ import annotations

import ast
import warnings
from pathlib import Path

import pytest

import e2llm_integrations

PACKAGE = Path(e2llm_integrations.__file__).parent
CORE = PACKAGE / "core"

FORBIDDEN = (
    "e2llm_integrations.cli",
    "e2llm_integrations.data",
    "e2llm_integrations.eval",
    "e2llm_integrations.langchain",
    "e2llm_integrations.llama_index",
    "matplotlib",
    "argparse",
    "langchain",
    "langchain_core",
    "langchain_classic",
    "llama_index",
    "faiss",
)


def _module_parts(path: Path) -> tuple[list[str], bool]:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    return (parts[:-1] if is_package else parts), is_package


def imported_modules(source: str, path: Path) -> set[str]:
    """Every module name ``source`` (the text of ``path``) imports, relative ones resolved."""
    parts, is_package = _module_parts(path)
    package = parts if is_package else parts[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source, filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + (node.module.split(".") if node.module else []))
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)  # `from . import data`
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, (ast.Name, ast.Attribute))
            and (node.func.id if isinstance(node.func, ast.Name) else node.func.attr)
            in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.add(node.args[0].value)
    return found


def forbidden(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == f or m.startswith(f + ".") for f in FORBIDDEN))


def test_core_imports_nothing_from_the_app_layer_plotting_or_frameworks() -> None:
    files = sorted(CORE.rglob("*.py"))
    assert len(files) > 20  # the walk found core
    bad = {
        str(f.relative_to(PACKAGE)): forbidden(imported_modules(f.read_text(), f)) for f in files
    }
    assert {name: mods for name, mods in bad.items() if mods} == {}


def test_the_walker_resolves_relative_lazy_and_dynamic_imports() -> None:
    """The check above could fail: these are the ways a core module could break the rule."""
    path = CORE / "training" / "example.py"
    source = """
import argparse
from ...cli import CLIError
from ... import data
def later():
    from ...eval.plots import plot_losses
    import matplotlib.pyplot
    importlib.import_module("e2llm_integrations.llama_index")
from ..io import write_json
"""
    found = imported_modules(source, path)
    assert "e2llm_integrations.core.io" in found
    assert forbidden(found) == [
        "argparse",
        "e2llm_integrations.cli",
        "e2llm_integrations.cli.CLIError",
        "e2llm_integrations.data",
        "e2llm_integrations.eval.plots",
        "e2llm_integrations.eval.plots.plot_losses",
        "e2llm_integrations.llama_index",
        "matplotlib.pyplot",
    ]
    run = CORE / "training" / "run.py"
    real = imported_modules(run.read_text(), run)
    assert {"e2llm_integrations.core.io", "e2llm_integrations.core.training.prepared"} <= real


def test_old_loader_path_warns_and_points_preparation_elsewhere() -> None:
    import importlib
    import sys

    sys.modules.pop("e2llm_integrations.core.training.data", None)
    with pytest.warns(DeprecationWarning, match="e2llm_integrations.data"):
        old = importlib.import_module("e2llm_integrations.core.training.data")
    from e2llm_integrations import data

    assert old.load_squad is data.load_squad and old.DATA_DIR_ENV == data.DATA_DIR_ENV
    with warnings.catch_warnings(), pytest.raises(AttributeError, match="e2llm_integrations.data"):
        old.prepare  # noqa: B018
