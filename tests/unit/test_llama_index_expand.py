"""Selective expansion through ``E2LLM`` and ``E2LLMSynthesizer``: the sources ``pipe.ask`` reports.

Expectations come from the core pipeline on the same chunks, encoded independently
(``pipe.encode`` per node), so a wrapper that drops, reorders, re-scores or mislabels an
expanded chunk, or cites a chunk of the wrong node, fails here.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.base.response.schema import AsyncStreamingResponse, StreamingResponse
from llama_index.core.schema import MetadataMode

from e2llm_integrations.core import E2LLMPipeline, EncodedCorpus, GenerationConfig
from e2llm_integrations.core.expansion import DEFAULT_EXPAND_TOP_K
from e2llm_integrations.llama_index import E2LLM, E2LLMSynthesizer, PlainDecoderLLM
from e2llm_integrations.retrieval import ChunkPrefilter

from . import llama_index_support as support
from .llama_index_support import PASSAGES

embed_model = support.embed_model  # shared fixture
prose_index = support.prose_index  # shared fixture

CONTEXT = "\n\n".join(PASSAGES[k] for k in ("lighthouse", "tides", "printing"))
QUESTION = "When was the printing press with movable type developed?"
PROMPT = f"{CONTEXT}\n\n{QUESTION}"
NEW_TOKENS = 4


def _ask(pipe: E2LLMPipeline, corpus: EncodedCorpus, k: int | None) -> list[dict[str, Any]]:
    gen = GenerationConfig(max_new_tokens=NEW_TOKENS)
    return [s.to_dict() for s in pipe.ask(corpus, QUESTION, gen, expand_top_k=k).sources]


def _assert_same_sources(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    assert [{k: v for k, v in s.items() if k != "score"} for s in got] == [
        {k: v for k, v in s.items() if k != "score"} for s in want
    ]
    assert [s["score"] for s in got] == pytest.approx([s["score"] for s in want], abs=2e-4)


# ---------------------------------------------------------------------- E2LLM (CustomLLM)
@pytest.mark.parametrize("k", [1, 3])
def test_complete_cites_what_the_pipeline_expands(tiny_pipeline: E2LLMPipeline, k: int) -> None:
    llm = E2LLM(pipeline=tiny_pipeline, max_new_tokens=NEW_TOKENS, expand_top_k=k)
    response = llm.complete(PROMPT)
    want = _ask(tiny_pipeline, tiny_pipeline.encode([CONTEXT]), k)
    assert len(want) == k
    _assert_same_sources(response.additional_kwargs["sources"], want)
    assert response.additional_kwargs["usage"]["expanded_chunks"] == k
    assert [s.to_dict() for s in llm.last_sources] == response.additional_kwargs["sources"]
    assert llm.last_usage is not None and llm.last_usage.expanded_chunks == k
    for s in want:
        assert CONTEXT[s["start"] : s["end"]] == s["text"]


def test_default_and_per_call_values(tiny_pipeline: E2LLMPipeline) -> None:
    llm = E2LLM(pipeline=tiny_pipeline, max_new_tokens=NEW_TOKENS)
    corpus = tiny_pipeline.encode([CONTEXT])
    assert llm.expand_top_k == DEFAULT_EXPAND_TOP_K and len(corpus) > DEFAULT_EXPAND_TOP_K
    default = llm.complete(PROMPT).additional_kwargs
    assert default["usage"]["expanded_chunks"] == DEFAULT_EXPAND_TOP_K
    _assert_same_sources(default["sources"], _ask(tiny_pipeline, corpus, None))
    one = llm.complete(PROMPT, expand_top_k=1).additional_kwargs
    _assert_same_sources(one["sources"], _ask(tiny_pipeline, corpus, 1))


def test_soft_only_has_no_sources_and_fewer_positions(tiny_pipeline: E2LLMPipeline) -> None:
    llm = E2LLM(pipeline=tiny_pipeline, max_new_tokens=NEW_TOKENS)
    soft = llm.complete(PROMPT, expand_top_k=0).additional_kwargs
    expanded = llm.complete(PROMPT, expand_top_k=2).additional_kwargs
    assert soft["sources"] == [] and soft["usage"]["expanded_chunks"] == 0
    model = tiny_pipeline.model
    n_soft = soft["usage"]["soft_tokens"]
    excerpts = [s["text"] for s in expanded["sources"]]
    assert soft["usage"]["input_positions"] == len(model.prompt(QUESTION)) + n_soft
    assert (
        expanded["usage"]["input_positions"]
        == len(model.prompt(QUESTION, excerpts=excerpts)) + n_soft
    )
    assert soft["usage"]["input_positions"] < expanded["usage"]["input_positions"]


def test_stream_and_chat_carry_the_same_sources(tiny_pipeline: E2LLMPipeline) -> None:
    llm = E2LLM(pipeline=tiny_pipeline, max_new_tokens=NEW_TOKENS, expand_top_k=2)
    full = llm.complete(PROMPT)
    parts = list(llm.stream_complete(PROMPT))
    assert all("sources" not in p.additional_kwargs for p in parts[:-1])
    assert parts[-1].additional_kwargs["sources"] == full.additional_kwargs["sources"]
    assert parts[-1].text == full.text
    messages = [ChatMessage(role=MessageRole.USER, content=PROMPT)]
    assert llm.chat(messages).additional_kwargs["sources"] == full.additional_kwargs["sources"]
    streamed = list(llm.stream_chat(messages))
    assert streamed[-1].additional_kwargs["sources"] == full.additional_kwargs["sources"]


def test_expansion_picks_among_prefiltered_chunks(tiny_pipeline: E2LLMPipeline) -> None:
    llm = E2LLM(pipeline=tiny_pipeline, max_new_tokens=NEW_TOKENS, top_k=3, expand_top_k=2)
    response = llm.complete(PROMPT)
    kept = ChunkPrefilter(top_k=3).filter(tiny_pipeline, tiny_pipeline.encode([CONTEXT]), QUESTION)
    want = _ask(tiny_pipeline, kept[0], 2)
    _assert_same_sources(response.additional_kwargs["sources"], want)
    assert response.additional_kwargs["usage"]["n_chunks"] == 3


async def test_async_calls_carry_the_same_sources(tiny_pipeline: E2LLMPipeline) -> None:
    llm = E2LLM(pipeline=tiny_pipeline, max_new_tokens=NEW_TOKENS, expand_top_k=2)
    sync = llm.complete(PROMPT).additional_kwargs["sources"]
    assert len(sync) == 2
    assert (await llm.acomplete(PROMPT)).additional_kwargs["sources"] == sync
    parts = [p async for p in await llm.astream_complete(PROMPT)]
    assert parts[-1].additional_kwargs["sources"] == sync


@pytest.mark.parametrize(
    ("value", "error"), [(-1, ValueError), (2.5, TypeError), (True, TypeError)]
)
def test_bad_expand_top_k_is_refused(
    tiny_pipeline: E2LLMPipeline, value: Any, error: type[Exception]
) -> None:
    with pytest.raises(error, match="expand_top_k"):
        E2LLM(pipeline=tiny_pipeline, expand_top_k=value)
    llm = E2LLM(pipeline=tiny_pipeline, max_new_tokens=NEW_TOKENS)
    with pytest.raises(error, match="expand_top_k"):
        llm.complete(PROMPT, expand_top_k=value)
    with pytest.raises(error, match="expand_top_k"):
        llm.stream_complete(PROMPT, expand_top_k=value)  # raised at call time
    with pytest.raises(error, match="expand_top_k"):
        E2LLMSynthesizer(llm, expand_top_k=value)


def test_plain_decoder_llm_never_expands(tiny_pipeline: E2LLMPipeline) -> None:
    llm = PlainDecoderLLM(pipeline=tiny_pipeline, max_new_tokens=2)
    extra = llm.complete(QUESTION).additional_kwargs
    assert extra["sources"] == [] and extra["usage"]["expanded_chunks"] == 0


# ---------------------------------------------------------------------- E2LLMSynthesizer
def _node_corpus(pipe: E2LLMPipeline, nodes: list[Any]) -> EncodedCorpus:
    """Each node encoded on its own, its chunks named by the node's id."""
    parts = []
    for n in nodes:
        part = pipe.encode([n.node.get_content(metadata_mode=MetadataMode.LLM)])
        part.chunks = [replace(c, doc_id=n.node.node_id) for c in part.chunks]
        parts.append(part)
    return EncodedCorpus.concat(parts)


def _engine(index: Any, synth: E2LLMSynthesizer, llm: E2LLM) -> Any:
    return index.as_query_engine(llm=llm, response_synthesizer=synth, similarity_top_k=3)


def _expanded_ids(sources: list[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(s["doc_id"] for s in sources))


def test_synthesizer_cites_expanded_chunks_of_retrieved_nodes(
    tiny_pipeline: E2LLMPipeline, prose_index: Any
) -> None:
    llm = E2LLM(pipeline=tiny_pipeline, max_new_tokens=NEW_TOKENS)
    synth = E2LLMSynthesizer(llm, expand_top_k=3)
    response = _engine(prose_index, synth, llm).query(QUESTION)
    retrieved = prose_index.as_retriever(similarity_top_k=3).retrieve(QUESTION)
    ids = [n.node.node_id for n in retrieved]
    assert [n.node.node_id for n in response.source_nodes] == ids  # the retrieved nodes, all
    want = _ask(tiny_pipeline, _node_corpus(tiny_pipeline, retrieved), 3)
    assert len(want) == 3
    _assert_same_sources(response.metadata["e2llm_sources"], want)
    assert response.metadata["e2llm_expanded_node_ids"] == _expanded_ids(want)
    assert set(response.metadata["e2llm_expanded_node_ids"]) <= set(ids)
    texts = {n.node.node_id: n.node.get_content(metadata_mode=MetadataMode.LLM) for n in retrieved}
    for s in response.metadata["e2llm_sources"]:
        assert texts[s["doc_id"]][s["start"] : s["end"]] == s["text"]  # the node's own text
    assert all(i in response.metadata for i in ids)  # LlamaIndex's node metadata is kept
    assert synth.last_usage is not None and synth.last_usage.expanded_chunks == 3
    assert [s.to_dict() for s in synth.last_sources] == response.metadata["e2llm_sources"]


def test_synthesizer_uses_the_llm_setting_unless_given_its_own(
    tiny_pipeline: E2LLMPipeline, prose_index: Any
) -> None:
    llm = E2LLM(pipeline=tiny_pipeline, max_new_tokens=NEW_TOKENS, expand_top_k=1)
    inherited = E2LLMSynthesizer(llm)
    own = E2LLMSynthesizer(llm, expand_top_k=2)
    default = E2LLMSynthesizer(E2LLM(pipeline=tiny_pipeline, max_new_tokens=NEW_TOKENS))
    assert (inherited.expand_top_k, own.expand_top_k) == (1, 2)
    assert default.expand_top_k == DEFAULT_EXPAND_TOP_K
    retrieved = prose_index.as_retriever(similarity_top_k=3).retrieve(QUESTION)
    corpus = _node_corpus(tiny_pipeline, retrieved)
    for synth, k in ((inherited, 1), (own, 2), (default, None)):
        response = synth.synthesize(QUESTION, retrieved)
        _assert_same_sources(response.metadata["e2llm_sources"], _ask(tiny_pipeline, corpus, k))
    assert len(response.metadata["e2llm_sources"]) == DEFAULT_EXPAND_TOP_K


def test_synthesizer_soft_only_has_no_sources_and_fewer_positions(
    tiny_pipeline: E2LLMPipeline, prose_index: Any
) -> None:
    llm = E2LLM(pipeline=tiny_pipeline, max_new_tokens=NEW_TOKENS)
    retrieved = prose_index.as_retriever(similarity_top_k=3).retrieve(QUESTION)
    soft = E2LLMSynthesizer(llm, expand_top_k=0)
    expanded = E2LLMSynthesizer(llm, expand_top_k=2)
    soft_response = soft.synthesize(QUESTION, retrieved)
    expanded_response = expanded.synthesize(QUESTION, retrieved)
    assert soft_response.metadata["e2llm_sources"] == []
    assert soft_response.metadata["e2llm_expanded_node_ids"] == []
    assert len(expanded_response.metadata["e2llm_sources"]) == 2
    assert soft.last_usage is not None and expanded.last_usage is not None
    assert soft.last_usage.expanded_chunks == 0 and expanded.last_usage.expanded_chunks == 2
    assert soft.last_usage.n_chunks == expanded.last_usage.n_chunks
    model = tiny_pipeline.model
    excerpts = [s["text"] for s in expanded_response.metadata["e2llm_sources"]]
    n_soft = soft.last_usage.soft_tokens
    assert soft.last_usage.input_positions == len(model.prompt(QUESTION)) + n_soft
    assert (
        expanded.last_usage.input_positions
        == len(model.prompt(QUESTION, excerpts=excerpts)) + n_soft
    )


def test_streaming_responses_carry_sources_from_the_start(
    tiny_pipeline: E2LLMPipeline, prose_index: Any
) -> None:
    llm = E2LLM(pipeline=tiny_pipeline, max_new_tokens=NEW_TOKENS)
    plain = _engine(prose_index, E2LLMSynthesizer(llm, expand_top_k=2), llm).query(QUESTION)
    synth = E2LLMSynthesizer(llm, expand_top_k=2, streaming=True)
    streamed = _engine(prose_index, synth, llm).query(QUESTION)
    assert isinstance(streamed, StreamingResponse)
    # Known before the first token is read.
    assert streamed.metadata["e2llm_sources"] == plain.metadata["e2llm_sources"]
    assert streamed.metadata["e2llm_expanded_node_ids"] == plain.metadata["e2llm_expanded_node_ids"]
    assert "".join(streamed.response_gen) == plain.response
    assert synth.last_usage is not None and synth.last_usage.expanded_chunks == 2
    assert [n.node.node_id for n in streamed.source_nodes] == [
        n.node.node_id for n in plain.source_nodes
    ]


async def test_async_query_and_async_streaming_carry_sources(
    tiny_pipeline: E2LLMPipeline, prose_index: Any
) -> None:
    llm = E2LLM(pipeline=tiny_pipeline, max_new_tokens=NEW_TOKENS)
    sync = _engine(prose_index, E2LLMSynthesizer(llm, expand_top_k=2), llm).query(QUESTION)
    answer = await _engine(prose_index, E2LLMSynthesizer(llm, expand_top_k=2), llm).aquery(QUESTION)
    assert answer.metadata["e2llm_sources"] == sync.metadata["e2llm_sources"]
    streaming = E2LLMSynthesizer(llm, expand_top_k=2, streaming=True)
    streamed = await _engine(prose_index, streaming, llm).aquery(QUESTION)
    assert isinstance(streamed, AsyncStreamingResponse)
    assert streamed.metadata["e2llm_sources"] == sync.metadata["e2llm_sources"]
    assert streamed.metadata["e2llm_expanded_node_ids"] == sync.metadata["e2llm_expanded_node_ids"]
    assert "".join([t async for t in streamed.async_response_gen()]) == sync.response


def test_get_response_without_nodes_cites_positions(tiny_pipeline: E2LLMPipeline) -> None:
    synth = E2LLMSynthesizer(
        E2LLM(pipeline=tiny_pipeline, max_new_tokens=NEW_TOKENS), expand_top_k=2
    )
    texts = [PASSAGES["tides"], PASSAGES["printing"]]
    synth.get_response(QUESTION, texts)
    corpus = tiny_pipeline.encode(texts)  # doc ids "0", "1": the texts' positions
    _assert_same_sources([s.to_dict() for s in synth.last_sources], _ask(tiny_pipeline, corpus, 2))


def test_empty_response_has_empty_provenance(tiny_pipeline: E2LLMPipeline) -> None:
    synth = E2LLMSynthesizer(E2LLM(pipeline=tiny_pipeline), on_empty="respond")
    response = synth.synthesize(QUESTION, [])
    assert response.metadata == {"e2llm_sources": [], "e2llm_expanded_node_ids": []}
