"""Selective expansion: the top-scoring chunks as raw text, in document order, cited, in the window."""

from __future__ import annotations

import random
import warnings

import pytest
import torch

from e2llm_integrations.core import E2LLMPipeline, GenerationConfig
from e2llm_integrations.core.encoder import sentence_embeddings
from e2llm_integrations.core.expansion import check_top_k, chunk_scores, expand
from e2llm_integrations.retrieval.faiss_index import ChunkPrefilter

WORDS = ["river", "stone", "apple", "violet", "thunder", "copper", "meadow", "lantern", "harbor", "cedar", "falcon", "glacier"]


def _documents(n_docs: int = 3, sentences: int = 12, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    docs = []
    for d in range(n_docs):
        lines = [
            f"Sentence {i} of document {d} talks about " + " ".join(rng.sample(WORDS, 5)) + "."
            for i in range(sentences)
        ]
        docs.append(" ".join(lines))
    return docs


@pytest.fixture(scope="module")
def corpus(tiny_pipeline: E2LLMPipeline):  # type: ignore[no-untyped-def]
    return tiny_pipeline.encode(_documents())


QUESTION = "Which document talks about the copper lantern near the harbor?"


def test_expanded_chunks_are_the_top_scoring_in_document_order(tiny_pipeline, corpus) -> None:  # type: ignore[no-untyped-def]
    gen = GenerationConfig(max_new_tokens=4)
    result = tiny_pipeline.ask(corpus, QUESTION, gen, expand_top_k=3)
    key = tiny_pipeline.query_key(QUESTION)
    scores = chunk_scores(corpus, key)
    top3 = set(torch.topk(scores, 3).indices.tolist())
    assert {s.chunk_index for s in result.sources} == top3
    assert [s.chunk_index for s in result.sources] == sorted(top3)  # document order
    for s in result.sources:
        chunk = corpus.chunks[s.chunk_index]
        assert (s.doc_id, s.start, s.end, s.text) == (chunk.doc_id, chunk.start, chunk.end, chunk.text)
        assert s.score == pytest.approx(float(scores[s.chunk_index]), abs=1e-5)
    assert result.usage.expanded_chunks == 3
    # The same chunks and scores as the FAISS prefilter (the retriever users already know).
    q_feats, q_mask = tiny_pipeline.model.encoder.encode([QUESTION])
    faiss_top = ChunkPrefilter(top_k=3).select(corpus, q_feats, q_mask)
    assert [c.index for c in faiss_top] == [s.chunk_index for s in result.sources]
    for c, s in zip(faiss_top, result.sources, strict=True):
        assert c.score == pytest.approx(s.score, abs=1e-4)


def test_excerpts_reach_the_prompt_and_cost_positions(tiny_pipeline, corpus) -> None:  # type: ignore[no-untyped-def]
    gen = GenerationConfig(max_new_tokens=2)
    soft_only = tiny_pipeline.ask(corpus, QUESTION, gen, expand_top_k=0)
    expanded = tiny_pipeline.ask(corpus, QUESTION, gen, expand_top_k=2)
    assert soft_only.sources == [] and soft_only.usage.expanded_chunks == 0
    prompt = tiny_pipeline.model.prompt(QUESTION, excerpts=[s.text for s in expanded.sources])
    n_soft = tiny_pipeline.model.n_soft_tokens(corpus.mask)
    assert expanded.usage.input_positions == len(prompt) + n_soft
    assert expanded.usage.input_positions > soft_only.usage.input_positions


def test_stream_reports_the_same_sources_on_its_last_chunk(tiny_pipeline, corpus) -> None:  # type: ignore[no-untyped-def]
    gen = GenerationConfig(max_new_tokens=3)
    pieces = list(tiny_pipeline.stream(corpus, QUESTION, gen, expand_top_k=2))
    assert all(p.sources == () for p in pieces[:-1])
    asked = tiny_pipeline.ask(corpus, QUESTION, gen, expand_top_k=2)
    assert list(pieces[-1].sources) == asked.sources
    assert "".join(p.text for p in pieces) == asked.text


def test_excerpts_never_push_past_the_window(tiny_pipeline) -> None:  # type: ignore[no-untyped-def]
    # The tiny decoder's window is 512 positions; 40 chunks of ~32 tokens cannot all be shown.
    long_corpus = tiny_pipeline.encode(_documents(n_docs=2, sentences=40, seed=1))
    gen = GenerationConfig(max_new_tokens=8)
    with pytest.warns(UserWarning, match="excerpts"):
        result = tiny_pipeline.ask(long_corpus, QUESTION, gen, expand_top_k=40)
    assert 0 < len(result.sources) < 40
    assert result.usage.input_positions + gen.max_new_tokens <= tiny_pipeline.model.max_positions
    # The ones kept are the best-scoring ones.
    best = expand(long_corpus, tiny_pipeline.query_key(QUESTION), len(result.sources))
    assert {s.chunk_index for s in best} == {s.chunk_index for s in result.sources}


def test_explicit_excerpts_bypass_expansion(tiny_pipeline, corpus) -> None:  # type: ignore[no-untyped-def]
    gen = GenerationConfig(max_new_tokens=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = tiny_pipeline.ask(corpus, QUESTION, gen, excerpts=["copper lantern"])
    assert result.sources == []
    prompt = tiny_pipeline.model.prompt(QUESTION, excerpts=["copper lantern"])
    assert result.usage.input_positions == len(prompt) + tiny_pipeline.model.n_soft_tokens(corpus.mask)


@pytest.mark.parametrize(("value", "error"), [(-1, ValueError), (2.0, TypeError), (True, TypeError), ("4", TypeError)])
def test_bad_expand_top_k_is_refused(tiny_pipeline, corpus, value, error) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error, match="expand_top_k"):
        tiny_pipeline.ask(corpus, QUESTION, expand_top_k=value)
    with pytest.raises(error, match="expand_top_k"):
        check_top_k(value)


def test_sentence_embeddings_are_unit_masked_means() -> None:
    feats = torch.tensor([[[3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 0]])
    key = sentence_embeddings(feats, mask)
    torch.testing.assert_close(key, torch.tensor([[0.6, 0.8]]))
