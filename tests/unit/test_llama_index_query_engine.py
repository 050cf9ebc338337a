"""``create_e2llm_query_engine`` and the synthesizer-only path, with no OpenAI installed.

LlamaIndex's global ``Settings.llm`` defaults to OpenAI; these tests make reading it
fail outright, so an engine that still needed it could not pass.
"""

from __future__ import annotations

from typing import Any

import pytest
from llama_index.core import Settings
from llama_index.core.base.response.schema import (
    AsyncStreamingResponse,
    Response,
    StreamingResponse,
)
from llama_index.core.llms import MockLLM

from e2llm_integrations.core import E2LLMPipeline
from e2llm_integrations.llama_index import (
    E2LLM,
    SOURCES_KEY,
    E2LLMNodePostprocessor,
    E2LLMSynthesizer,
    create_e2llm_query_engine,
)
from e2llm_integrations.llama_index import synthesizers as synth_module

from . import llama_index_support as support

embed_model = support.embed_model  # shared fixture
prose_index = support.prose_index  # shared fixture

QUESTION = "How do honeybees tell each other where flowers are?"


@pytest.fixture
def no_default_llm(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ``Settings.llm`` set, no OpenAI integration, and reading the default fails."""
    monkeypatch.setattr(Settings, "_llm", None)
    monkeypatch.setattr(synth_module, "_openai_installed", lambda: False)
    real = type(Settings).llm

    def read(settings: Any) -> Any:
        if settings._llm is None:
            raise AssertionError("Settings.llm was resolved: LlamaIndex would load OpenAI")
        return real.fget(settings)  # type: ignore[misc]

    monkeypatch.setattr(type(Settings), "llm", property(read, real.fset))


@pytest.fixture
def llm(tiny_pipeline: E2LLMPipeline) -> E2LLM:
    return E2LLM(pipeline=tiny_pipeline, max_new_tokens=6)


def _direct_answer(index: Any, llm: E2LLM, k: int) -> str:
    nodes = index.as_retriever(similarity_top_k=k).retrieve(QUESTION)
    return str(E2LLMSynthesizer(llm).synthesize(QUESTION, nodes).response)


def test_one_call_builds_an_engine_over_an_index(
    no_default_llm: None, prose_index: Any, llm: E2LLM
) -> None:
    engine = create_e2llm_query_engine(prose_index, llm, similarity_top_k=3)
    response = engine.query(QUESTION)
    assert isinstance(response, Response) and len(response.source_nodes) == 3
    assert response.metadata is not None and SOURCES_KEY in response.metadata
    assert response.response == _direct_answer(prose_index, llm, 3)


def test_retriever_and_postprocessor(no_default_llm: None, prose_index: Any, llm: E2LLM) -> None:
    retriever = prose_index.as_retriever(similarity_top_k=4)
    post = E2LLMNodePostprocessor(pipeline=llm.pipeline, top_k=2)
    response = create_e2llm_query_engine(retriever, llm, [post]).query(QUESTION)
    retrieved = retriever.retrieve(QUESTION)
    assert 1 <= len(response.source_nodes) <= 2 < len(retrieved)  # the prefilter ran
    kept = {n.node.node_id for n in response.source_nodes}
    assert kept <= {n.node.node_id for n in retrieved}


async def test_streaming_and_async_answer_the_same(
    no_default_llm: None, prose_index: Any, llm: E2LLM
) -> None:
    sync = create_e2llm_query_engine(prose_index, llm, similarity_top_k=2).query(QUESTION)
    streaming = create_e2llm_query_engine(prose_index, llm, similarity_top_k=2, streaming=True)
    streamed = streaming.query(QUESTION)
    assert isinstance(streamed, StreamingResponse)
    assert "".join(streamed.response_gen) == sync.response
    answer = await create_e2llm_query_engine(prose_index, llm, similarity_top_k=2).aquery(QUESTION)
    assert answer.response == sync.response
    astreamed = await streaming.aquery(QUESTION)
    assert isinstance(astreamed, AsyncStreamingResponse)
    assert "".join([t async for t in astreamed.async_response_gen()]) == sync.response


def test_bad_arguments_name_the_fix(prose_index: Any, llm: E2LLM) -> None:
    with pytest.raises(TypeError, match="index or retriever"):
        create_e2llm_query_engine(["not", "an", "index"], llm)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="as_retriever\\(similarity_top_k=8\\)"):
        create_e2llm_query_engine(prose_index.as_retriever(), llm, similarity_top_k=2)


def test_synthesizer_only_path_works_without_openai(
    no_default_llm: None, prose_index: Any, llm: E2LLM
) -> None:
    synth = E2LLMSynthesizer(llm)
    assert Settings._llm is llm  # it stands in for the unset default
    engine = prose_index.as_query_engine(response_synthesizer=synth, similarity_top_k=3)
    response = engine.query(QUESTION)
    assert response.response == _direct_answer(prose_index, llm, 3)
    assert response.metadata is not None and SOURCES_KEY in response.metadata


def test_a_configured_or_loadable_default_is_never_replaced(
    monkeypatch: pytest.MonkeyPatch, tiny_pipeline: E2LLMPipeline, llm: E2LLM
) -> None:
    mine = MockLLM()
    monkeypatch.setattr(Settings, "_llm", mine)
    E2LLMSynthesizer(llm)
    assert Settings._llm is mine
    monkeypatch.setattr(Settings, "_llm", None)
    monkeypatch.setattr(synth_module, "_openai_installed", lambda: True)
    E2LLMSynthesizer(llm)
    assert Settings._llm is None  # LlamaIndex's own default (OpenAI) can load
