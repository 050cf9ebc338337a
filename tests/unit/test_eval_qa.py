"""QA context assembly (length, gold position, test split only) and the QA runner."""

from __future__ import annotations

from pathlib import Path

import pytest

from e2llm_integrations.core.metrics import answer_contained
from e2llm_integrations.data import load_hotpotqa, load_squad
from e2llm_integrations.eval import qa
from e2llm_integrations.eval.qa import (
    QAConfig,
    QASample,
    assemble,
    hotpot_samples,
    load_samples,
    run_qa,
    squad_samples,
    summarize_qa,
)
from e2llm_integrations.eval.report import cost_points, qa_table
from e2llm_integrations.eval.systems import Answer

from .eval_support import write_data


def _words(text: str) -> int:
    return len(text.split())


def _sample(position: float) -> QASample:
    before = [f"before{i} " + "x " * 9 for i in range(20)]
    after = [f"after{i} " + "y " * 9 for i in range(20)]
    return QASample("t", "q", "Q?", ["a"], ["GOLD " + "g " * 9], before, after, position)


@pytest.mark.parametrize("position", [0.0, 0.25, 0.5, 0.75, 1.0])
def test_assemble_reaches_length_with_gold_at_position(position: float) -> None:
    text, where = assemble(_sample(position), 100, _words)
    paragraphs = text.split("\n\n")
    assert _words(text) == 100  # 10 paragraphs of 10 "tokens"
    assert sum(p.startswith("GOLD") for p in paragraphs) == 1
    assert abs(where - position) <= 0.1
    gold_at = next(i for i, p in enumerate(paragraphs) if p.startswith("GOLD"))
    assert abs(gold_at / 9 - position) <= 0.12
    # nearest neighbours first: the paragraph right before the gold is before0
    if gold_at > 0:
        assert paragraphs[gold_at - 1].startswith("before0")
    if gold_at < len(paragraphs) - 1:
        assert paragraphs[gold_at + 1].startswith("after0")


def test_assemble_fills_the_other_side_when_one_runs_out() -> None:
    sample = _sample(0.0)
    sample.after = sample.after[:2]
    text, where = assemble(sample, 100, _words)
    assert _words(text) == 100 and where > 0.5


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_data(tmp_path_factory.mktemp("evaldata") / "data")


def test_samples_come_from_the_test_split_only(data_dir: Path) -> None:
    cfg = QAConfig(n=50)
    train_text = {p for a in load_squad(data_dir, "train") for p in a["paragraphs"]}
    train_text |= {p["text"] for q in load_hotpotqa(data_dir, "train") for p in q["paragraphs"]}
    train_ids = {q["id"] for a in load_squad(data_dir, "train") for q in a["questions"]}
    train_ids |= {q["id"] for q in load_hotpotqa(data_dir, "train")}
    for items in load_samples(data_dir, cfg).values():
        assert items
        for s in items:
            assert s.qid not in train_ids
            for para in s.gold + s.before + s.after:
                assert not any(t in para for t in train_text)


def test_squad_sample_keeps_article_neighbours_nearest(data_dir: Path) -> None:
    articles = load_squad(data_dir, "test")
    for s in squad_samples(articles, 8, QAConfig()):
        article = next(a for a in articles if s.gold[0] in a["paragraphs"])
        g = article["paragraphs"].index(s.gold[0])
        assert s.before[:g] == article["paragraphs"][:g][::-1]
        assert s.after[: 4 - g] == article["paragraphs"][g + 1 :]
        assert not set(s.before) & set(s.after)


def test_hotpot_sample_has_gold_and_no_same_title_distractor(data_dir: Path) -> None:
    questions = load_hotpotqa(data_dir, "test")
    cfg = QAConfig(positions=(0.5,))
    for s in hotpot_samples(questions, 5, cfg):
        q = next(x for x in questions if x["id"] == s.qid)
        assert len(s.gold) == 2 and all("born in" in g for g in s.gold)
        titles = [p.split("\n")[0] for p in s.before + s.after]
        assert len(titles) == len(set(titles))
        assert sum(t.startswith(f"T{q['id'][1:]}-") for t in titles) == 8  # its own distractors
        assert s.position == 0.5


def _echo_gold(name, pipe, ctx, question, cfg, cache=None) -> Answer:  # type: ignore[no-untyped-def]
    """Answers "City<q>2" when that string is in its context, else nothing."""
    wanted = "City" + question.split()[3].replace("-", "")
    return Answer(name, wanted if wanted in ctx.text and name != "rag" else "no", 1, False, 0.0)


def test_run_qa_scores_every_system_and_length(tiny_pipeline, data_dir: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(qa, "run_system", _echo_gold)
    cfg = QAConfig(lengths=(200, 400), tasks=("multi_doc",), n=3, systems=("e2llm", "rag"))
    cells = run_qa(tiny_pipeline, data_dir, cfg)
    assert len(cells) == 2 * 3 * 2
    assert all(c["context_tokens"] <= c["length"] + 10 for c in cells)
    summary = summarize_qa(cells)
    assert summary["e2llm"]["multi_doc"]["400"] == {"f1": 1.0, "em": 1.0, "contained": 1.0, "n": 3}
    assert summary["rag"]["multi_doc"]["200"]["f1"] == 0.0
    assert summary["rag"]["multi_doc"]["200"]["contained"] == 0.0
    assert all(c["contained"] in (0.0, 1.0) for c in cells)


@pytest.mark.parametrize(
    ("reply", "answers", "expected"),
    [
        ("The answer to this question is: static friction, as shown.", ["static friction"], 1.0),
        ("Static Friction", ["static friction"], 1.0),
        ("It was the Eiffelturm.", ["Eiffel"], 0.0),  # whole words only
        ("friction that is static", ["static friction"], 0.0),  # in order
        ("He was born in 1879.", ["Ulm", "1879"], 1.0),  # any reference answer
        ("nothing here", ["the"], 0.0),  # an answer that normalises to nothing never matches
    ],
)
def test_answer_contained(reply: str, answers: list[str], expected: float) -> None:
    assert answer_contained(reply, answers) == expected


def test_answer_contained_needs_a_reference() -> None:
    with pytest.raises(ValueError, match="reference"):
        answer_contained("x", [])


def test_summary_and_table_fill_contained_for_old_files() -> None:
    old = [  # cells written before the metric existed: no "contained" key
        {"system": "rag@2", "task": "single_doc", "length": 2000, "f1": 0.1, "em": 0.0,
         "gold": "static friction", "answer": "It is static friction, I think.", "input_positions": 9},
        {"system": "rag@2", "task": "single_doc", "length": 2000, "f1": 0.0, "em": 0.0,
         "gold": "Denver", "answer": "no idea", "input_positions": 11},
    ]  # fmt: skip
    assert summarize_qa(old)["rag@2"]["single_doc"]["2000"]["contained"] == 0.5
    table = qa_table({"summary": {}, "cells": old})
    assert "F1 / EM / contained" in table
    assert "0.050 / 0.000 / 0.500" in table
    assert cost_points({"cells": old}, "contained") == [("rag@2", 10.0, 0.5)]


def test_config_refuses_unknown_task() -> None:
    with pytest.raises(ValueError, match="Unknown task"):
        QAConfig(tasks=("summarization",))
    with pytest.raises(ValueError, match="n"):
        QAConfig(n=0)
