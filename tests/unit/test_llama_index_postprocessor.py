"""``E2LLMNodePostprocessor`` and the per-pipeline encoded-node cache (tiny E2LLM)."""

from __future__ import annotations

from typing import Any

import pytest
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from e2llm_integrations.core import E2LLMPipeline
from e2llm_integrations.llama_index import E2LLMNodePostprocessor, NodeCorpusCache, node_cache

from .llama_index_support import PASSAGES

QUERY = QueryBundle("What causes the tides?")


@pytest.fixture
def nodes() -> list[NodeWithScore]:
    return [
        NodeWithScore(node=TextNode(text=text, id_=name), score=1.0 - i / 10)
        for i, (name, text) in enumerate(PASSAGES.items())
    ]


@pytest.fixture
def cache(tiny_pipeline: E2LLMPipeline) -> NodeCorpusCache:
    cache = node_cache(tiny_pipeline)
    cache.clear()
    return cache


def test_without_prefilter_nodes_and_scores_pass_through(
    tiny_pipeline: E2LLMPipeline, nodes: list[NodeWithScore], cache: NodeCorpusCache
) -> None:
    post = E2LLMNodePostprocessor(pipeline=tiny_pipeline)
    out = post.postprocess_nodes(nodes, QUERY)
    assert [(n.node.node_id, n.score) for n in out] == [(n.node.node_id, n.score) for n in nodes]
    assert len(cache) == len(nodes) and cache.misses == len(nodes)
    corpora = cache.encode([n.node.get_content(metadata_mode="llm") for n in nodes])
    assert cache.hits == len(nodes)  # already encoded by the postprocessor
    assert [c.chunks[0].doc_id for c in corpora] == [n.node.node_id for n in nodes]


def test_top_k_keeps_nodes_of_the_best_chunks(
    tiny_pipeline: E2LLMPipeline, nodes: list[NodeWithScore], cache: NodeCorpusCache
) -> None:
    out = E2LLMNodePostprocessor(pipeline=tiny_pipeline, top_k=2).postprocess_nodes(nodes, QUERY)
    assert 1 <= len(out) <= 2
    kept_ids = [n.node.node_id for n in out]
    assert kept_ids == [n.node.node_id for n in nodes if n.node.node_id in kept_ids]  # order kept
    everything = E2LLMNodePostprocessor(pipeline=tiny_pipeline, score_threshold=-1.0)
    all_scores = {n.node.node_id: n.score for n in everything.postprocess_nodes(nodes, QUERY)}
    assert len(all_scores) == len(nodes)
    assert all(-1.0 <= s <= 1.0 for s in all_scores.values())
    # A kept node's score is its best chunk's similarity: the highest scores overall.
    best = sorted(all_scores.values(), reverse=True)[: len(out)]
    assert sorted((n.score for n in out), reverse=True) == pytest.approx(best)


def test_threshold_filters_and_needs_a_query(
    tiny_pipeline: E2LLMPipeline, nodes: list[NodeWithScore], cache: NodeCorpusCache
) -> None:
    strict = E2LLMNodePostprocessor(pipeline=tiny_pipeline, score_threshold=0.9999)
    assert strict.postprocess_nodes(nodes, QUERY) == []
    with pytest.raises(ValueError, match="needs the query"):
        strict.postprocess_nodes(nodes)
    assert E2LLMNodePostprocessor(pipeline=tiny_pipeline).postprocess_nodes([], QUERY) == []


def test_empty_node_text_is_a_clear_error(tiny_pipeline: E2LLMPipeline) -> None:
    bad = [
        NodeWithScore(node=TextNode(text=PASSAGES["tides"])),
        NodeWithScore(node=TextNode(text="")),
    ]
    with pytest.raises(ValueError, match="Node 1 has no text"):
        E2LLMNodePostprocessor(pipeline=tiny_pipeline).postprocess_nodes(bad, QUERY)


def test_fields_are_validated() -> None:
    with pytest.raises(ValueError):
        E2LLMNodePostprocessor(top_k=0)
    with pytest.raises(ValueError):
        E2LLMNodePostprocessor(score_threshold=2.0)
    assert E2LLMNodePostprocessor.class_name() == "E2LLMNodePostprocessor"


async def test_async_postprocess(
    tiny_pipeline: E2LLMPipeline, nodes: list[NodeWithScore], cache: NodeCorpusCache
) -> None:
    post = E2LLMNodePostprocessor(pipeline=tiny_pipeline, top_k=1)
    out = await post.apostprocess_nodes(nodes, QUERY)
    assert [n.node.node_id for n in out] == [
        n.node.node_id for n in post.postprocess_nodes(nodes, QUERY)
    ]


def test_cache_is_bounded_and_shared_per_pipeline(tiny_pipeline: E2LLMPipeline) -> None:
    small = NodeCorpusCache(tiny_pipeline, max_nodes=2)
    texts = list(PASSAGES.values())[:3]
    first = small.encode(texts)
    assert len(small) == 2 and small.misses == 3
    assert [len(c) for c in first[1:]] == [len(c) for c in small.encode(texts[1:])]
    assert small.hits == 2
    assert node_cache(tiny_pipeline) is node_cache(tiny_pipeline)
    with pytest.raises(ValueError, match="max_nodes"):
        NodeCorpusCache(tiny_pipeline, max_nodes=0)


def test_duplicate_node_texts_are_encoded_once(
    tiny_pipeline: E2LLMPipeline, monkeypatch: Any
) -> None:
    cache = NodeCorpusCache(tiny_pipeline)
    seen: list[int] = []
    real = tiny_pipeline.encode_chunks
    monkeypatch.setattr(
        tiny_pipeline, "encode_chunks", lambda ch, p=None: seen.append(len(ch)) or real(ch, p)
    )
    a, b = cache.encode([PASSAGES["tides"], PASSAGES["tides"]])
    assert a is b and len(seen) == 1 and seen[0] == len(a)
