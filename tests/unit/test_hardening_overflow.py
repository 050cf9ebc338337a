"""Issue 13, case 5: document sets larger than the decoder's window get answered.

The tiny decoder has a 512-position window and one soft token per chunk; a large
``max_new_tokens`` leaves room for a few dozen chunks, so a hundred short documents
overflow it. The kept chunks must be the ones most similar to the question (the
expansion keys), chosen in bounded batches, and the caller must be told.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import pytest
import torch

from e2llm_integrations.core import E2LLMPipeline, EncodedCorpus, GenerationConfig, Usage
from e2llm_integrations.core import pipeline as pipeline_module
from e2llm_integrations.core.chunking import Chunk
from e2llm_integrations.core.corpus import TopChunks, top_chunks
from e2llm_integrations.core.expansion import chunk_scores

DOCS = [
    f"Fact number {i}: the sky over harbour {i} was {('blue', 'grey', 'red')[i % 3]}."
    for i in range(100)
]
QUESTION = "What colour was the sky over harbour 42?"
NEW = 400  # leaves 512 - prompt - 400 positions (~38 chunks)


def _room(pipe: E2LLMPipeline, **prompt: Any) -> int:
    return pipe.model.max_positions - len(pipe.model.prompt(QUESTION, **prompt)) - NEW


def _scores(pipe: E2LLMPipeline, chunks: Sequence[Chunk]) -> dict[tuple[str, int], float]:
    """Every chunk's cosine to the question, from an independent full encoding."""
    full = pipe.encode(DOCS)
    scores = chunk_scores(full, pipe.query_key(QUESTION))
    return {(c.doc_id, c.start): float(s) for c, s in zip(full.chunks, scores, strict=True)}


def _prepare(pipe: E2LLMPipeline, context: Any, **kw: Any) -> tuple[EncodedCorpus, Any, Any]:
    with pytest.warns(UserWarning, match="most relevant to the question") as record:
        out = pipe.prepare(context, QUESTION, GenerationConfig(max_new_tokens=NEW), **kw)
    assert "on_overflow='error'" in str(record[-1].message)
    return out


def test_estimate_needs_no_encoding_and_error_mode_refuses_up_front(
    tiny_pipeline: E2LLMPipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    monkeypatch.setattr(tiny_pipeline, "encode_chunks", lambda c, p=None: calls.append(len(c)))
    monkeypatch.setattr(tiny_pipeline, "query_key", lambda q: calls.append(-1))
    gen = GenerationConfig(max_new_tokens=NEW)
    with pytest.raises(ValueError, match="100 chunks.*on_overflow='select'") as err:
        tiny_pipeline.ask(DOCS, QUESTION, gen, on_overflow="error")
    assert f"room for {_room(tiny_pipeline)} chunks" in str(err.value)
    with pytest.raises(ValueError, match="100 chunks"):
        next(tiny_pipeline.stream(DOCS, QUESTION, gen, on_overflow="error"))
    assert calls == [], "the overflow is known from the chunking; nothing was encoded"
    with pytest.raises(ValueError, match="on_overflow must be 'select'"):
        tiny_pipeline.ask(DOCS, QUESTION, gen, on_overflow="truncate")  # type: ignore[arg-type]


def test_kept_chunks_fill_the_window_and_are_the_most_relevant(
    tiny_pipeline: E2LLMPipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pipeline_module, "ENCODE_BATCH_CHUNKS", 8)
    sizes: list[int] = []
    real = tiny_pipeline.encode_chunks

    def spy(chunks: Sequence[Chunk], progress: bool | None = None) -> EncodedCorpus:
        sizes.append(len(chunks))
        return real(chunks, progress)

    monkeypatch.setattr(tiny_pipeline, "encode_chunks", spy)
    corpus, sources, kwargs = _prepare(tiny_pipeline, DOCS, expand_top_k=0)
    room = _room(tiny_pipeline)
    assert 10 < room < 100 and len(corpus) == room and corpus.dropped_chunks == 100 - room
    assert max(sizes) <= 8 and sum(sizes) == 100, "encoded in bounded batches"
    scores = _scores(tiny_pipeline, corpus.chunks)
    kept = {(c.doc_id, c.start) for c in corpus.chunks}
    worst_kept = min(scores[k] for k in kept)
    best_dropped = max(s for k, s in scores.items() if k not in kept)
    assert worst_kept >= best_dropped - 1e-5
    assert [int(c.doc_id) for c in corpus.chunks] == sorted(int(c.doc_id) for c in corpus.chunks)
    assert sources == [] and kwargs["excerpts"] == []


def test_an_encoded_corpus_too_large_is_cut_the_same_way(tiny_pipeline: E2LLMPipeline) -> None:
    full = tiny_pipeline.encode(DOCS)
    corpus, _, _ = _prepare(tiny_pipeline, full, expand_top_k=0)
    want = top_chunks(
        full, chunk_scores(full, tiny_pipeline.query_key(QUESTION)), _room(tiny_pipeline)
    )
    assert corpus.chunks == want.chunks and corpus.dropped_chunks == 100 - len(want)
    torch.testing.assert_close(corpus.features, want.features)


def test_excerpts_fit_next_to_the_kept_chunks(tiny_pipeline: E2LLMPipeline) -> None:
    new = 340  # ~98 positions for chunks: two excerpts take less than half of them
    gen = GenerationConfig(max_new_tokens=new)
    with pytest.warns(UserWarning, match="most relevant to the question"):
        corpus, sources, kwargs = tiny_pipeline.prepare(DOCS, QUESTION, gen, expand_top_k=2)
    full = tiny_pipeline.encode(DOCS)
    best = {(s.doc_id, s.start) for s in tiny_pipeline.expand(full, QUESTION, 2)}
    assert {(s.doc_id, s.start) for s in sources} == best  # the global top 2, shown
    length = len(tiny_pipeline.model.prompt(QUESTION, excerpts=kwargs["excerpts"]))
    assert len(corpus) == tiny_pipeline.model.max_positions - length - new  # the rest: soft
    assert len(corpus) + corpus.dropped_chunks == 100 and corpus.dropped_chunks > 0
    for s in sources:  # chunk_index points into the corpus the decoder read
        assert corpus.chunks[s.chunk_index].text == s.text


def test_excerpts_never_take_more_than_half_the_room(tiny_pipeline: E2LLMPipeline) -> None:
    # ~38 positions: one excerpt (~20 tokens) would leave fewer than half for soft chunks.
    corpus, sources, _ = _prepare(tiny_pipeline, DOCS, expand_top_k=2)
    assert sources == [] and len(corpus) == _room(tiny_pipeline)


def test_ask_and_stream_answer_and_report_dropped_chunks(tiny_pipeline: E2LLMPipeline) -> None:
    gen = GenerationConfig(max_new_tokens=NEW)
    with pytest.warns(UserWarning, match="most relevant to the question"):
        result = tiny_pipeline.ask(DOCS, QUESTION, gen, expand_top_k=0)
    usage = result.usage
    assert isinstance(result.text, str) and usage.n_chunks == _room(tiny_pipeline)
    assert usage.dropped_chunks == 100 - usage.n_chunks > 0
    assert usage.to_dict()["dropped_chunks"] == usage.dropped_chunks
    assert usage.input_positions + NEW <= tiny_pipeline.model.max_positions
    with pytest.warns(UserWarning, match="most relevant to the question"):
        pieces = list(tiny_pipeline.stream(DOCS, QUESTION, gen, expand_top_k=0))
    last = pieces[-1].usage
    assert last is not None and last.dropped_chunks == usage.dropped_chunks
    assert "".join(p.text for p in pieces) == result.text


def test_input_that_fits_is_untouched(tiny_pipeline: E2LLMPipeline) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warning
        result = tiny_pipeline.ask(DOCS[:10], QUESTION, GenerationConfig(max_new_tokens=4))
    assert result.usage.n_chunks == 10 and result.usage.dropped_chunks == 0
    assert Usage().to_dict()["dropped_chunks"] == 0


def test_a_prompt_with_no_room_for_any_chunk_is_a_clear_error(tiny_pipeline: E2LLMPipeline) -> None:
    gen = GenerationConfig(max_new_tokens=4)
    with pytest.raises(ValueError, match="no room for any chunk.*shorten the question"):
        tiny_pipeline.ask(DOCS[:3], "why " * 600, gen)


def _part(n: int, start: int, fingerprint: dict[str, Any]) -> EncodedCorpus:
    chunks = [Chunk(f"c{i}", "d", i, i + 1, i, 1) for i in range(start, start + n)]
    feats = torch.arange(start, start + n, dtype=torch.float32).view(n, 1, 1)
    return EncodedCorpus(chunks, feats, torch.ones(n, 1), [1] * n, fingerprint)


def test_running_top_set_is_bounded_and_exact() -> None:
    fp = {"encoder": "x"}
    torch.manual_seed(0)
    scores = torch.rand(70)
    top = TopChunks(5)
    for i in range(0, 70, 7):
        top.add(_part(7, i, fp), scores[i : i + 7])
        assert top.kept is not None and len(top.kept) <= 5
    result = top.result()
    want = sorted(torch.topk(scores, 5).indices.tolist())
    assert [c.start for c in result.chunks] == want  # document order
    assert result.features.view(-1).tolist() == [float(i) for i in want]
    assert result.dropped_chunks == 65
    ties = top_chunks(_part(4, 0, fp), torch.ones(4), 2)  # ties: the earlier chunks
    assert [c.start for c in ties.chunks] == [0, 1] and ties.dropped_chunks == 2
    with pytest.raises(ValueError, match="capacity"):
        TopChunks(0)
