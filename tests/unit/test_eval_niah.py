"""Needle planting, scoring and the NIAH grid runner, on the tiny models."""

from __future__ import annotations

import re

import pytest

from e2llm_integrations.eval import niah
from e2llm_integrations.eval.niah import (
    Haystack,
    NiahConfig,
    make_needles,
    needle_found,
    plant,
    run_niah,
    summarize_niah,
)
from e2llm_integrations.eval.systems import Answer

from .eval_support import essay


@pytest.fixture(scope="module")
def hay(tiny_pipeline) -> Haystack:  # type: ignore[no-untyped-def]
    return Haystack.build(tiny_pipeline, essay(200), max_tokens=800)


def test_needles_are_deterministic_distinct_and_seven_digits() -> None:
    a, b = make_needles(4, seed=3), make_needles(4, seed=3)
    assert a == b
    assert len({n.city for n in a}) == 4
    assert all(re.fullmatch(r"\d{7}", n.number) for n in a)
    assert make_needles(4, seed=4) != a
    assert a[0].city in a[0].question and a[0].number in a[0].sentence
    with pytest.raises(ValueError, match="needles"):
        make_needles(0)


@pytest.mark.parametrize(
    ("answer", "found"),
    [
        ("The special magic number for Oslo is 4821937.", 1.0),
        ("4,821,937", 1.0),
        ("It is 4821937", 1.0),
        ("48219370", 0.0),  # a longer number is not the needle
        ("482193", 0.0),
        ("I do not know.", 0.0),
    ],
)
def test_needle_found_matches_whole_number_only(answer: str, found: float) -> None:
    assert needle_found(answer, "4821937") == found


def test_haystack_covers_the_longest_length(tiny_pipeline, hay: Haystack) -> None:  # type: ignore[no-untyped-def]
    assert hay.corpus.total_context_tokens >= 800
    assert hay.corpus.total_context_tokens - hay.corpus.context_tokens[-1] < 800
    n = hay.chunks_for(400, reserve=20)
    assert sum(hay.corpus.context_tokens[:n]) + 20 <= 400
    assert sum(hay.corpus.context_tokens[: n + 1]) + 20 > 400
    with pytest.raises(ValueError, match="shorter than one chunk"):
        hay.chunks_for(3)


@pytest.mark.parametrize("depth", [0.0, 0.1, 0.33, 0.5, 0.8, 1.0])
def test_needle_lands_at_the_requested_depth(tiny_pipeline, hay: Haystack, depth: float) -> None:  # type: ignore[no-untyped-def]
    needle = make_needles(1)[0]
    n = hay.chunks_for(600, reserve=20)
    planted = plant(tiny_pipeline, hay, n, needle, depth)
    text, corpus = planted.context.text, planted.context.corpus
    assert text.count(needle.sentence) == 1
    holders = [i for i, c in enumerate(corpus.chunks) if needle.sentence in c.text]
    assert holders == [planted.chunk_index]
    assert len(corpus) == n
    for chunk in corpus.chunks:  # chunk offsets index the planted text
        assert text[chunk.start : chunk.end] == chunk.text
    biggest = max(hay.corpus.context_tokens[:n])
    assert abs(planted.depth_actual - depth) <= biggest / sum(hay.corpus.context_tokens[:n])
    tokens = len(tiny_pipeline.model.tokenizer(text, add_special_tokens=False)["input_ids"])
    assert 600 - 2 * biggest <= tokens <= 600 + 5
    if depth == 0.0:
        assert text.startswith(needle.sentence)
    if depth == 1.0:
        assert text.rstrip().endswith(needle.sentence)


def test_only_the_needle_chunk_is_re_encoded(tiny_pipeline, hay: Haystack) -> None:  # type: ignore[no-untyped-def]
    n = hay.chunks_for(500)
    planted = plant(tiny_pipeline, hay, n, make_needles(1)[0], 0.5)
    feats, base = planted.context.corpus.features, hay.corpus.features
    i = planted.chunk_index
    assert not feats[i, :1].equal(base[i, :1])
    for j in (0, n - 1):
        if j != i:
            assert feats[j, :1].equal(base[j, :1])


def test_plant_rejects_bad_depth(tiny_pipeline, hay: Haystack) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="depth"):
        plant(tiny_pipeline, hay, 3, make_needles(1)[0], 1.5)


def test_config_validates_and_limits_full() -> None:
    cfg = NiahConfig(lengths=(1000, 32000), full_max_length=16000)
    assert cfg.runs("full", 1000) and not cfg.runs("full", 32000) and cfg.runs("e2llm", 32000)
    with pytest.raises(ValueError, match="Unknown system"):
        NiahConfig(systems=("gpt",))
    with pytest.raises(ValueError, match="depths"):
        NiahConfig(depths=(50.0,))


def _oracle(name, pipe, ctx, question, cfg, cache=None) -> Answer:  # type: ignore[no-untyped-def]
    """Answers with every 7-digit number its context holds (the full system sees none)."""
    seen = "" if name == "full" else " ".join(re.findall(r"\d{7}", ctx.text))
    return Answer(name, seen, 1, False, 0.0)


def test_grid_scores_every_cell(tiny_pipeline, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(niah, "run_system", _oracle)
    cfg = NiahConfig(lengths=(300, 500), depths=(0.0, 1.0), needles=2,
                     systems=("e2llm", "full"), full_max_length=300)  # fmt: skip
    cells = run_niah(tiny_pipeline, essay(150), cfg)
    assert len(cells) == 2 * 2 * 2 + 1 * 2 * 2  # full runs at 300 only
    assert {c["score"] for c in cells if c["system"] == "e2llm"} == {1.0}
    assert {c["score"] for c in cells if c["system"] == "full"} == {0.0}
    summary = summarize_niah(cells)
    assert summary["overall"] == {"e2llm": 1.0, "full": 0.0}
    assert set(summary["grid"]["full"]) == {"300"}
    assert summary["grid"]["e2llm"]["500"] == {"0.0": 1.0, "1.0": 1.0}


def test_paraphrase_needles_share_few_words_and_score_whole_words() -> None:
    needles = make_needles(16, seed=0, variant="paraphrase")
    assert len({n.answer for n in needles}) == 16 and needles == make_needles(16, 0, "paraphrase")
    stop = {"the", "a", "of", "in", "was", "is", "to", "and", "what", "which", "who", "her", "his", "on", "at", "did", "does", "by"}
    for n in needles:
        words = lambda t: {w.strip(".,?'s").lower() for w in t.split()} - stop  # noqa: E731
        assert n.answer.lower() in n.sentence.lower() and n.answer.lower() not in n.question.lower()
        assert len(words(n.sentence) & words(n.question)) <= 1, n.question
    socrates = next(n for n in niah.PARAPHRASES if n.answer == "Socrates")
    assert socrates.found("It is called SOCRATES.") == 1.0
    assert socrates.found("Socratest") == 0.0 and socrates.found("a tortoise") == 0.0
    with pytest.raises(ValueError, match="variant"):
        make_needles(2, variant="riddle")
    with pytest.raises(ValueError, match="needles"):
        make_needles(17, variant="paraphrase")


def test_paraphrase_grid_plants_and_scores_the_fact(tiny_pipeline, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    def echo(name, pipe, ctx, question, cfg, cache=None) -> Answer:  # type: ignore[no-untyped-def]
        return Answer(name, "" if name == "full" else ctx.text, 1, False, 0.0)

    monkeypatch.setattr(niah, "run_system", echo)
    cfg = NiahConfig(lengths=(300,), depths=(0.5,), needles=3, variant="paraphrase",
                     systems=("e2llm", "full"))  # fmt: skip
    cells = run_niah(tiny_pipeline, essay(150), cfg)
    assert {c["score"] for c in cells if c["system"] == "e2llm"} == {1.0}
    assert {c["score"] for c in cells if c["system"] == "full"} == {0.0}
