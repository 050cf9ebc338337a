"""Deprecated: the loaders moved to :mod:`e2llm_integrations.data`.

``from e2llm_integrations.core.training.data import load_squad`` keeps working (with a
``DeprecationWarning``); data preparation (``prepare``, ``PrepareConfig``, the split
rule) is in :mod:`e2llm_integrations.data` only, since ``core`` does not prepare data.
"""

from __future__ import annotations

import warnings
from typing import Any

from .prepared import (
    DATA_DIR_ENV,
    HAYSTACK_FILE,
    HOTPOT_FILE,
    RECON_FILE,
    RECON_SPLITS,
    SPLITS,
    SPLITS_FILE,
    SQUAD_FILE,
    Record,
    Split,
    default_data_dir,
    load_haystack,
    load_hotpotqa,
    load_recon,
    load_splits,
    load_squad,
)

__all__ = [
    "DATA_DIR_ENV",
    "HAYSTACK_FILE",
    "HOTPOT_FILE",
    "RECON_FILE",
    "RECON_SPLITS",
    "SPLITS",
    "SPLITS_FILE",
    "SQUAD_FILE",
    "Record",
    "Split",
    "default_data_dir",
    "load_haystack",
    "load_hotpotqa",
    "load_recon",
    "load_splits",
    "load_squad",
]

warnings.warn(
    "e2llm_integrations.core.training.data is deprecated; import the loaders from "
    "e2llm_integrations.data instead.",
    DeprecationWarning,
    stacklevel=2,
)


def __getattr__(name: str) -> Any:
    raise AttributeError(
        f"e2llm_integrations.core.training.data has no {name!r}: data preparation moved to "
        f"e2llm_integrations.data (e.g. `from e2llm_integrations.data import {name}`)."
    )
