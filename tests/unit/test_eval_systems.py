"""The four evaluated systems and LongBench-style middle truncation, on the tiny models."""

from __future__ import annotations

import pytest

from e2llm_integrations.eval.systems import (
    EvalContext,
    SystemConfig,
    run_system,
    text_budget,
    top_chunks,
    truncate_middle,
)

from .eval_support import essay


def _numbered(n: int) -> str:
    return " ".join(f"w{i}" for i in range(n))


def test_truncate_middle_keeps_head_and_tail(tiny_pipeline) -> None:  # type: ignore[no-untyped-def]
    tok = tiny_pipeline.model.tokenizer
    text = _numbered(400)
    cut, truncated = truncate_middle(tok, text, 100)
    assert truncated
    assert len(tok(cut, add_special_tokens=False)["input_ids"]) <= 100 + 2
    assert cut.startswith("w0 w1 w2") and cut.endswith("w398 w399")
    assert "w200" not in cut.split()  # the middle is gone


def test_truncate_middle_leaves_short_text_alone(tiny_pipeline) -> None:  # type: ignore[no-untyped-def]
    text = _numbered(10)
    assert truncate_middle(tiny_pipeline.model.tokenizer, text, 100) == (text, False)
    with pytest.raises(ValueError, match="max_tokens"):
        truncate_middle(tiny_pipeline.model.tokenizer, text, 1)


@pytest.fixture(scope="module")
def long_ctx(tiny_pipeline) -> EvalContext:  # type: ignore[no-untyped-def]
    return EvalContext.from_text(tiny_pipeline, essay(120))  # ~1.3k tokens: over the 512 window


def test_full_cuts_text_over_the_window(tiny_pipeline, long_ctx: EvalContext) -> None:  # type: ignore[no-untyped-def]
    cfg = SystemConfig(max_new_tokens=3)
    assert long_ctx.context_tokens > tiny_pipeline.model.max_positions
    ans = run_system("full", tiny_pipeline, long_ctx, "What do founders learn?", cfg)
    assert ans.truncated
    assert ans.input_positions + cfg.max_new_tokens <= tiny_pipeline.model.max_positions
    budget = text_budget(tiny_pipeline, "What do founders learn?", cfg)
    assert ans.input_positions > budget  # the window is used, not wasted


def test_short_text_is_not_cut(tiny_pipeline) -> None:  # type: ignore[no-untyped-def]
    ctx = EvalContext.from_text(tiny_pipeline, essay(4))
    ans = run_system("full", tiny_pipeline, ctx, "Who?", SystemConfig(max_new_tokens=2))
    assert not ans.truncated


def test_top_chunks_are_k_chunks_in_document_order(tiny_pipeline, long_ctx: EvalContext) -> None:  # type: ignore[no-untyped-def]
    texts = top_chunks(tiny_pipeline, long_ctx.corpus, "founders growth", 3)
    assert len(texts) == 3
    order = [long_ctx.text.index(t) for t in texts]
    assert order == sorted(order)


def test_systems_read_what_they_should(tiny_pipeline, long_ctx: EvalContext) -> None:  # type: ignore[no-untyped-def]
    cfg = SystemConfig(top_k=4, max_new_tokens=2)
    q = "What do founders learn?"
    answers = {s: run_system(s, tiny_pipeline, long_ctx, q, cfg)
               for s in ("e2llm@0", "hybrid", "e2llm@4", "rag", "rag@2")}  # fmt: skip
    pos = {s: a.input_positions for s, a in answers.items()}
    excerpt_tokens = sum(
        len(tiny_pipeline.model.tokenizer(t)["input_ids"])
        for t in top_chunks(tiny_pipeline, long_ctx.corpus, q, 4)
    )
    # e2llm@0: one soft token per chunk; hybrid (= e2llm@top_k) adds the excerpts' raw text.
    assert pos["e2llm@0"] < len(long_ctx.corpus) + 100
    assert pos["hybrid"] >= pos["e2llm@0"] + excerpt_tokens
    assert pos["hybrid"] == pos["e2llm@4"]
    assert answers["e2llm@4"].expanded == answers["hybrid"].expanded and len(answers["hybrid"].expanded) == 4
    assert answers["e2llm@0"].expanded == []
    assert pos["rag"] >= excerpt_tokens > pos["rag@2"] - 60
    with pytest.raises(ValueError, match="Unknown system"):
        run_system("oracle", tiny_pipeline, long_ctx, q, cfg)
    with pytest.raises(ValueError, match="Unknown system"):
        run_system("rag@x", tiny_pipeline, long_ctx, q, cfg)


def test_baseline_cache_reuses_answers_across_runs(tiny_pipeline, long_ctx: EvalContext, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from e2llm_integrations.eval.systems import BaselineCache

    cfg = SystemConfig(top_k=4, max_new_tokens=3)
    q = "What do founders learn?"
    cache = BaselineCache(tmp_path / "answers.jsonl")
    first = run_system("rag@2", tiny_pipeline, long_ctx, q, cfg, cache)
    assert not first.cached and len(cache) == 1
    run_system("e2llm@0", tiny_pipeline, long_ctx, q, cfg, cache)
    assert len(cache) == 1  # E2LLM answers depend on the checkpoint: never cached
    reread = BaselineCache(tmp_path / "answers.jsonl")  # a later run, e.g. a new checkpoint
    again = run_system("rag@2", tiny_pipeline, long_ctx, q, cfg, reread)
    assert again.cached and (again.text, again.input_positions) == (first.text, first.input_positions)
    other = run_system("rag@2", tiny_pipeline, long_ctx, "Another question?", cfg, reread)
    assert not other.cached and len(reread) == 2
    with open(tmp_path / "answers.jsonl", "a") as fh:
        fh.write('{"key": "cut sho')  # a run killed mid-line
    assert len(BaselineCache(tmp_path / "answers.jsonl")) == 2
    # A process that loaded the file earlier sees answers another process appended later.
    (tmp_path / "shared.jsonl").write_text("")
    early, late = BaselineCache(tmp_path / "shared.jsonl"), BaselineCache(tmp_path / "shared.jsonl")
    answered = run_system("rag@2", tiny_pipeline, long_ctx, q, cfg, late)
    seen = run_system("rag@2", tiny_pipeline, long_ctx, q, cfg, early)
    assert seen.cached and seen.text == answered.text and len(early) == 1
