"""``E2LLMSynthesizer`` in real query engines over a real vector index (tiny E2LLM)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.base.response.schema import (
    AsyncStreamingResponse,
    Response,
    StreamingResponse,
)
from llama_index.core.query_engine import RetrieverQueryEngine

from e2llm_integrations.core import Chunk, E2LLMPipeline, EncodedCorpus
from e2llm_integrations.llama_index import (
    E2LLM,
    E2LLMNodePostprocessor,
    E2LLMSynthesizer,
    PlainDecoderLLM,
    node_cache,
)

from . import llama_index_support as support
from .llama_index_support import PASSAGES

embed_model = support.embed_model  # shared fixture
prose_index = support.prose_index  # shared fixture

QUESTION = "How do honeybees tell each other where flowers are?"


class EncodeSpy:
    """Records the chunks given to ``pipeline.encode_chunks``."""

    def __init__(self, pipeline: E2LLMPipeline) -> None:
        self.real = pipeline.encode_chunks
        self.batches: list[list[Chunk]] = []

    def __call__(self, chunks: Sequence[Chunk], progress: bool | None = None) -> EncodedCorpus:
        self.batches.append(list(chunks))
        return self.real(chunks, progress)


@pytest.fixture
def encode_spy(tiny_pipeline: E2LLMPipeline, monkeypatch: pytest.MonkeyPatch) -> EncodeSpy:
    node_cache(tiny_pipeline).clear()
    spy = EncodeSpy(tiny_pipeline)
    monkeypatch.setattr(tiny_pipeline, "encode_chunks", spy)
    return spy


@pytest.fixture
def llm(tiny_pipeline: E2LLMPipeline) -> E2LLM:
    return E2LLM(pipeline=tiny_pipeline, max_new_tokens=6)


def _engine(index: Any, llm: E2LLM, **kwargs: Any) -> Any:
    synth = E2LLMSynthesizer(llm, streaming=kwargs.pop("streaming", False))
    return index.as_query_engine(llm=llm, response_synthesizer=synth, **kwargs)


def _words(text: str) -> list[str]:
    return text.split()


def test_each_node_becomes_its_own_chunks(
    prose_index: Any,
    llm: E2LLM,
    encode_spy: EncodeSpy,
) -> None:
    response = _engine(prose_index, llm, similarity_top_k=3).query(QUESTION)
    assert isinstance(response, Response) and isinstance(response.response, str)
    node_texts = [n.node.get_content(metadata_mode="llm") for n in response.source_nodes]
    (chunks,) = encode_spy.batches
    by_node: dict[int, list[Chunk]] = {}
    for chunk in chunks:
        by_node.setdefault(int(chunk.doc_id), []).append(chunk)
    assert sorted(by_node) == list(range(len(node_texts)))
    for i, text in enumerate(node_texts):
        own = by_node[i]
        assert all(text[c.start : c.end] == c.text for c in own)  # never spans two nodes
        assert _words(" ".join(c.text for c in own)) == _words(text)  # the whole node, in order
    assert max(len(v) for v in by_node.values()) > 1  # long nodes really were split


def test_usage_counts_every_chunk_of_every_node(prose_index: Any, llm: E2LLM) -> None:
    synth = E2LLMSynthesizer(llm)
    engine = prose_index.as_query_engine(llm=llm, response_synthesizer=synth, similarity_top_k=2)
    response = engine.query(QUESTION)
    texts = [n.node.get_content(metadata_mode="llm") for n in response.source_nodes]
    expected = sum(len(c) for c in node_cache(llm.pipeline).encode(texts))
    assert synth.last_usage is not None
    assert synth.last_usage.n_chunks == synth.last_usage.soft_tokens == expected
    assert synth.last_usage.compression_ratio > 1


def test_retriever_query_engine_and_streaming_agree(prose_index: Any, llm: E2LLM) -> None:
    retriever = prose_index.as_retriever(similarity_top_k=2)
    plain = RetrieverQueryEngine(retriever, response_synthesizer=E2LLMSynthesizer(llm))
    streaming_synth = E2LLMSynthesizer(llm, streaming=True)
    streaming = RetrieverQueryEngine(retriever, response_synthesizer=streaming_synth)
    answer = plain.query(QUESTION)
    streamed = streaming.query(QUESTION)
    assert isinstance(streamed, StreamingResponse)
    pieces = list(streamed.response_gen)
    assert all(isinstance(p, str) for p in pieces)
    assert "".join(pieces) == answer.response  # greedy decoding: the same answer
    usage = streaming_synth.last_usage  # recorded once the stream finished
    assert usage is not None and usage.n_chunks > 1
    assert [n.node.node_id for n in streamed.source_nodes] == [
        n.node.node_id for n in answer.source_nodes
    ]


async def test_async_query_and_async_streaming(prose_index: Any, llm: E2LLM) -> None:
    sync = _engine(prose_index, llm, similarity_top_k=2).query(QUESTION).response
    answer = await _engine(prose_index, llm, similarity_top_k=2).aquery(QUESTION)
    assert answer.response == sync
    streamed = await _engine(prose_index, llm, similarity_top_k=2, streaming=True).aquery(QUESTION)
    assert isinstance(streamed, AsyncStreamingResponse)
    assert "".join([t async for t in streamed.async_response_gen()]) == sync


def test_postprocessed_nodes_are_not_encoded_again(
    prose_index: Any,
    llm: E2LLM,
    encode_spy: EncodeSpy,
) -> None:
    post = E2LLMNodePostprocessor(pipeline=llm.pipeline)
    engine = _engine(prose_index, llm, similarity_top_k=3, node_postprocessors=[post])
    engine.query(QUESTION)
    assert len(encode_spy.batches) == 1  # by the postprocessor only
    engine.query(QUESTION)
    assert len(encode_spy.batches) == 1  # cached across queries as well
    assert node_cache(llm.pipeline).hits >= 6


def test_empty_index_is_a_clear_error(embed_model: Any, llm: E2LLM) -> None:
    index = VectorStoreIndex.from_documents([], embed_model=embed_model)
    with pytest.raises(ValueError, match="No nodes to answer from"):
        _engine(index, llm).query(QUESTION)
    synth = E2LLMSynthesizer(llm, on_empty="respond")
    response = index.as_query_engine(llm=llm, response_synthesizer=synth).query(QUESTION)
    assert response.response == "Empty Response"


def test_bad_node_texts_are_clear_errors(llm: E2LLM) -> None:
    synth = E2LLMSynthesizer(llm)
    with pytest.raises(ValueError, match="No nodes"):
        synth.get_response(QUESTION, [])
    with pytest.raises(ValueError, match="Node 1 has no text"):
        synth.get_response(QUESTION, [PASSAGES["tides"], "   \n"])
    with pytest.raises(TypeError, match="Node 0 text is a int"):
        synth.get_response(QUESTION, [3])  # type: ignore[list-item]


def test_question_and_nodes_over_the_window(tiny_pipeline: E2LLMPipeline) -> None:
    synth = E2LLMSynthesizer(E2LLM(pipeline=tiny_pipeline, max_new_tokens=4))
    with pytest.raises(ValueError, match="decoder's window"):
        synth.get_response("why " * 600, [PASSAGES["tides"]])
    # 420 new tokens leave ~30 of the 512 positions for chunks; 60 nodes make 60 chunks.
    many = [f"Fact number {i}: the sky over harbour {i} was blue." for i in range(60)]
    # Too many chunks for the window: answered from the most relevant ones that fit (issue 13).
    streaming = E2LLMSynthesizer(E2LLM(pipeline=tiny_pipeline, max_new_tokens=420), streaming=True)
    with pytest.warns(UserWarning, match="most relevant to the question"):
        text = "".join(streaming.get_response(QUESTION, many))  # type: ignore[arg-type]
    assert isinstance(text, str) and streaming.last_usage is not None
    kept = streaming.last_usage.n_chunks
    assert 0 < kept < 60 and streaming.last_usage.dropped_chunks == 60 - kept
    capped = E2LLMSynthesizer(E2LLM(pipeline=tiny_pipeline, max_new_tokens=4, top_k=16))
    assert isinstance(capped.get_response(QUESTION, many), str)
    assert capped.last_usage is not None and capped.last_usage.n_chunks == 16


def test_only_e2llm_is_accepted(tiny_pipeline: E2LLMPipeline) -> None:
    with pytest.raises(TypeError, match="must be an E2LLM"):
        E2LLMSynthesizer(PlainDecoderLLM(pipeline=tiny_pipeline))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="on_empty"):
        E2LLMSynthesizer(E2LLM(pipeline=tiny_pipeline), on_empty="ignore")  # type: ignore[arg-type]
    synth = E2LLMSynthesizer(pipeline=tiny_pipeline)
    assert synth.pipeline is tiny_pipeline
    assert synth.get_prompts() == {}


def test_documents_with_metadata_keep_it_in_the_node_text(
    embed_model: Any,
    llm: E2LLM,
    encode_spy: EncodeSpy,
) -> None:
    doc = Document(text=PASSAGES["printing"], metadata={"title": "Printing press"})
    index = VectorStoreIndex.from_documents([doc], embed_model=embed_model)
    _engine(index, llm).query("Who built the printing press?")
    text = " ".join(c.text for c in encode_spy.batches[0])
    assert "Printing press" in text and "Gutenberg" in text
