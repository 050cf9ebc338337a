"""Long-context QA on the held-out test split: single-document (SQuAD) and multi-document
(HotpotQA) questions at several context lengths.

* ``single_doc``: the SQuAD test article around the gold paragraph (its neighbours first),
  topped up with other test articles to reach the target length.
* ``multi_doc``: a HotpotQA test question's 10 paragraphs, topped up with paragraphs of
  other test questions (titles of this question's paragraphs excluded).

The gold paragraph(s) sit at a varied position (0, 25, ..., 100 % of the context, cycled
over questions; the same question keeps its position at every length). Only the test
split is read, so no question was seen in training.

Example:
    >>> cells = run_qa(pipe, "data", QAConfig(n=5))  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.metrics import answer_contained, best_score
from ..core.pipeline import E2LLMPipeline
from ..data import Record, load_hotpotqa, load_squad
from .systems import SYSTEMS, BaselineCache, EvalContext, SystemConfig, check_systems, run_system

logger = logging.getLogger(__name__)

TASKS: tuple[str, ...] = ("single_doc", "multi_doc")
SEPARATOR = "\n\n"


@dataclass(frozen=True)
class QAConfig:
    """The QA grid.

    Attributes:
        lengths: Context lengths in decoder tokens.
        tasks: ``single_doc`` (SQuAD) and/or ``multi_doc`` (HotpotQA).
        n: Questions per (task, length) cell; the same questions at every length.
        systems: Systems to run.
        positions: Gold positions (fractions of the context), cycled over questions.
        seed: Seed of the question sample.
        system: Options of the systems.
        split: ``test`` (the reported numbers) or ``val`` (for choosing settings, such as
            the default number of expanded chunks, without looking at test).
    """

    lengths: tuple[int, ...] = (2000, 4000, 8000)
    tasks: tuple[str, ...] = TASKS
    n: int = 30
    systems: tuple[str, ...] = SYSTEMS
    positions: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    seed: int = 0
    system: SystemConfig = SystemConfig(max_new_tokens=32)
    split: str = "test"

    def __post_init__(self) -> None:
        if self.split not in ("val", "test"):
            raise ValueError(f"split must be val or test, got {self.split!r}.")
        if self.n < 1:
            raise ValueError(f"n (questions per cell) must be >= 1, got {self.n}.")
        if any(t not in TASKS for t in self.tasks):
            raise ValueError(f"Unknown task in {self.tasks}; choose from {TASKS}.")
        check_systems(self.systems)
        if not self.positions or any(not 0.0 <= p <= 1.0 for p in self.positions):
            raise ValueError(f"positions are fractions in [0, 1], got {self.positions}.")


QUICK_QA = QAConfig(lengths=(2000,), n=2)
"""A tiny grid for smoke tests."""


@dataclass
class QASample:
    """One question with the material to build its context at any length.

    Attributes:
        task: ``single_doc`` or ``multi_doc``.
        qid: Question id.
        question: The question.
        answers: Reference answers.
        gold: Paragraphs that hold the answer (kept together).
        before: Paragraphs to put before the gold ones, nearest first.
        after: Paragraphs to put after the gold ones, nearest first.
        position: Requested gold position (fraction of the context).
    """

    task: str
    qid: str
    question: str
    answers: list[str]
    gold: list[str]
    before: list[str]
    after: list[str]
    position: float


Counter = Callable[[str], int]


def assemble(sample: QASample, target: int, count: Counter) -> tuple[str, float]:
    """The context text of ``sample`` at ``target`` tokens and the gold's actual position.

    Paragraphs are added around the gold ones, nearest first, until the next one would
    pass ``target``; ``position`` decides how much of the room goes before the gold.
    """
    room = target - sum(count(p) for p in sample.gold)
    want_before, used = sample.position * room, 0
    pre: list[str] = []
    post: list[str] = []
    b = 0
    while b < len(sample.before):  # nearest to want_before, never past the room
        size = count(sample.before[b])
        if used + size / 2 > want_before or used + size > room:
            break
        used += size
        pre.append(sample.before[b])
        b += 1
    for para in sample.after:
        if used + count(para) > room:
            break
        used += count(para)
        post.append(para)
    for para in sample.before[b:]:  # the after side ran out: fill before instead
        if used + count(para) > room:
            break
        used += count(para)
        pre.append(para)
    head = sum(count(p) for p in pre)
    total = head + sum(count(p) for p in sample.gold) + sum(count(p) for p in post)
    text = SEPARATOR.join([*reversed(pre), *sample.gold, *post])
    return text, head / max(1, total)


def _rotate(items: Sequence[Any], start: int) -> list[Any]:
    start %= max(1, len(items))
    return [*items[start:], *items[:start]]


def squad_samples(articles: list[Record], n: int, cfg: QAConfig) -> list[QASample]:
    """``n`` single-document samples from SQuAD test articles."""
    pairs = [(a, q) for a in range(len(articles)) for q in articles[a]["questions"]]
    if not pairs:
        raise ValueError("The SQuAD test split has no questions; rerun `e2llm data prepare`.")
    chosen = random.Random(cfg.seed).sample(pairs, min(n, len(pairs)))
    out = []
    for i, (a, q) in enumerate(chosen):
        paras, g = articles[a]["paragraphs"], q["paragraph_index"]
        others = [x["paragraphs"] for x in _rotate(articles, a + 1)[:-1]]
        half = (len(others) + 1) // 2
        before = [p for doc in others[:half] for p in reversed(doc)]
        after = [p for doc in others[half:] for p in doc]
        out.append(QASample(
            "single_doc", q["id"], q["question"], list(q["answers"]), [paras[g]],
            [*reversed(paras[:g]), *before], [*paras[g + 1 :], *after],
            cfg.positions[i % len(cfg.positions)],
        ))  # fmt: skip
    return out


def _paragraph(p: Record) -> str:
    return f"{p['title']}\n{p['text']}"


def hotpot_samples(questions: list[Record], n: int, cfg: QAConfig) -> list[QASample]:
    """``n`` multi-document samples from HotpotQA test questions."""
    if not questions:
        raise ValueError("The HotpotQA test split is empty; rerun `e2llm data prepare`.")
    order = random.Random(cfg.seed).sample(range(len(questions)), min(n, len(questions)))
    out = []
    for i, k in enumerate(order):
        q = questions[k]
        titles = {p["title"] for p in q["paragraphs"]}
        own = [_paragraph(p) for p in q["paragraphs"] if not p["is_gold"]]
        seen, others = set(titles), []
        for other in _rotate(questions, k + 1)[:-1]:
            for p in other["paragraphs"]:
                if p["title"] not in seen:
                    seen.add(p["title"])
                    others.append(_paragraph(p))
        pool = own + others
        out.append(QASample(
            "multi_doc", q["id"], q["question"], [q["answer"]],
            [_paragraph(p) for p in q["paragraphs"] if p["is_gold"]],
            pool[0::2], pool[1::2], cfg.positions[i % len(cfg.positions)],
        ))  # fmt: skip
    return out


def load_samples(data_dir: str | Path | None, cfg: QAConfig) -> dict[str, list[QASample]]:
    """The samples of every task in ``cfg``, from ``cfg.split``."""
    out = {}
    if "single_doc" in cfg.tasks:
        out["single_doc"] = squad_samples(load_squad(data_dir, cfg.split), cfg.n, cfg)  # type: ignore[arg-type]
    if "multi_doc" in cfg.tasks:
        out["multi_doc"] = hotpot_samples(load_hotpotqa(data_dir, cfg.split), cfg.n, cfg)  # type: ignore[arg-type]
    return out


def token_counter(pipe: E2LLMPipeline) -> Counter:
    """Decoder tokens of a paragraph plus its separator (memoised)."""
    cache: dict[str, int] = {}

    def count(text: str) -> int:
        if text not in cache:
            cache[text] = pipe.tokenizer.count([text + SEPARATOR])[0]
        return cache[text]

    return count


def run_qa(
    pipe: E2LLMPipeline,
    data_dir: str | Path | None,
    cfg: QAConfig,
    cache: BaselineCache | None = None,
) -> list[dict[str, Any]]:
    """Every system on every sample at every length; one record per answer.

    ``cache`` reuses the base-decoder baselines' answers (see :class:`BaselineCache`).
    """
    samples, count = load_samples(data_dir, cfg), token_counter(pipe)
    cells: list[dict[str, Any]] = []
    for task, items in samples.items():
        for length in cfg.lengths:
            for sample in items:
                text, where = assemble(sample, length, count)
                ctx = EvalContext.from_text(pipe, text)
                for name in cfg.systems:
                    ans = run_system(name, pipe, ctx, sample.question, cfg.system, cache)
                    f1, em = best_score(ans.text, sample.answers)
                    held = answer_contained(ans.text, sample.answers)
                    cells.append({
                        "system": name, "task": task, "length": length, "qid": sample.qid,
                        "position": sample.position, "position_actual": round(where, 4),
                        "context_tokens": ctx.context_tokens, "f1": round(f1, 4), "em": em,
                        "contained": held, "gold": sample.answers[0], **ans.to_dict(),
                    })  # fmt: skip
            logger.info("QA %s %d tokens: %s", task, length, _progress(cells, task, length))
    return cells


def _progress(cells: list[dict[str, Any]], task: str, length: int) -> str:
    table = summarize_qa([c for c in cells if c["task"] == task and c["length"] == length])
    return ", ".join(f"{s}: F1={v[task][str(length)]['f1']:.3f}" for s, v in table.items())


def contained(cell: dict[str, Any]) -> float:
    """A cell's ``contained`` score; files written before it existed get it from their
    answer and first reference answer (``gold``)."""
    if "contained" in cell:
        return float(cell["contained"])
    return answer_contained(cell["answer"], [cell["gold"]])


def summarize_qa(cells: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """``{system: {task: {length: {"f1", "em", "contained", "n"}}}}`` means over questions."""
    acc: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for c in cells:
        acc.setdefault((c["system"], c["task"], c["length"]), []).append(c)
    out: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for (system, task, length), rows in acc.items():
        out.setdefault(system, {}).setdefault(task, {})[str(length)] = {
            "f1": round(sum(r["f1"] for r in rows) / len(rows), 4),
            "em": round(sum(r["em"] for r in rows) / len(rows), 4),
            "contained": round(sum(contained(r) for r in rows) / len(rows), 4),
            "n": len(rows),
        }
    return out
