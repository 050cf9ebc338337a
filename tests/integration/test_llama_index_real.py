"""LlamaIndex query engines end to end on the real bundled models (SmolLM2 + MiniLM).

Uses the shipped checkpoint when the installation has one, else the untrained adapter:
assertions are about behaviour (compression, streaming, node boundaries), never about
the words of the answer.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.base.response.schema import AsyncStreamingResponse, StreamingResponse

from e2llm_integrations.core.registry import get_pipeline
from e2llm_integrations.llama_index import (
    E2LLM,
    SOURCES_KEY,
    E2LLMNodePostprocessor,
    E2LLMSynthesizer,
    PlainDecoderLLM,
    SentenceTransformerEmbedding,
    create_e2llm_query_engine,
    node_cache,
)

pytestmark = pytest.mark.integration

SQUAD = Path(__file__).resolve().parents[2] / "data" / "squad.jsonl"
FALLBACK = [
    "The Normans were the people who in the 10th and 11th centuries gave their name to "
    "Normandy, a region in France. They were descended from Norse raiders and pirates from "
    "Denmark, Iceland and Norway who, under their leader Rollo, agreed to swear fealty to "
    "King Charles III of West Francia.",
    "The Norman dynasty had a major political, cultural and military impact on medieval "
    "Europe and even the Near East. The Normans were famed for their martial spirit and "
    "eventually for their Christian piety.",
    "In 1066 Duke William II of Normandy conquered England, killing King Harold II at the "
    "Battle of Hastings. The invading Normans and their descendants replaced the "
    "Anglo-Saxons as the ruling class of England.",
]


def _paragraphs() -> tuple[list[str], str]:
    """Paragraphs of one real article and one of its questions."""
    if SQUAD.is_file():
        with SQUAD.open(encoding="utf-8") as f:
            article = json.loads(f.readline())
        return article["paragraphs"][:12], article["questions"][0]["question"]
    return FALLBACK, "Who was the leader of the Norse raiders?"


@pytest.fixture(scope="module")
def setup() -> dict[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipeline = get_pipeline(device="cpu")
    paragraphs, question = _paragraphs()
    index = VectorStoreIndex.from_documents(
        [Document(text=p) for p in paragraphs], embed_model=SentenceTransformerEmbedding()
    )
    llm = E2LLM(device="cpu", max_new_tokens=8)
    return {"pipeline": pipeline, "index": index, "question": question, "llm": llm}


def test_llm_shares_the_registry_pipeline(setup: dict[str, Any]) -> None:
    assert setup["llm"].pipeline is setup["pipeline"]
    meta = setup["llm"].metadata
    assert meta.context_window > 100_000  # 8k decoder positions, ~48 tokens per soft token


def test_synthesizer_query_engines_sync_async_streaming(setup: dict[str, Any]) -> None:
    llm, index, question = setup["llm"], setup["index"], setup["question"]
    synth = E2LLMSynthesizer(llm)
    answer = index.as_query_engine(llm=llm, response_synthesizer=synth, similarity_top_k=4).query(
        question
    )
    assert isinstance(answer.response, str) and len(answer.source_nodes) == 4
    usage = synth.last_usage
    assert usage is not None and usage.n_chunks >= 4 and usage.compression_ratio > 10
    streaming = E2LLMSynthesizer(llm, streaming=True)
    engine = index.as_query_engine(llm=llm, response_synthesizer=streaming, similarity_top_k=4)
    streamed = engine.query(question)
    assert isinstance(streamed, StreamingResponse)
    assert "".join(streamed.response_gen) == answer.response  # greedy: identical


async def test_async_streaming_query(setup: dict[str, Any]) -> None:
    llm, index, question = setup["llm"], setup["index"], setup["question"]
    post = E2LLMNodePostprocessor(device="cpu", top_k=3)
    synth = E2LLMSynthesizer(llm, streaming=True)
    engine = index.as_query_engine(
        llm=llm, response_synthesizer=synth, node_postprocessors=[post], similarity_top_k=6
    )
    misses = node_cache(setup["pipeline"]).misses
    streamed = await engine.aquery(question)
    assert isinstance(streamed, AsyncStreamingResponse)
    text = "".join([t async for t in streamed.async_response_gen()])
    assert isinstance(text, str)
    assert 1 <= len(streamed.source_nodes) <= 3
    assert all(-1.0 <= n.score <= 1.0 for n in streamed.source_nodes)
    assert node_cache(setup["pipeline"]).misses - misses <= 6  # encoded once, by the postprocessor


def test_compact_mode_with_e2llm_and_the_plain_baseline(setup: dict[str, Any]) -> None:
    index, question = setup["index"], setup["question"]
    compact = index.as_query_engine(llm=setup["llm"], similarity_top_k=4).query(question)
    assert isinstance(compact.response, str)
    plain = PlainDecoderLLM(pipeline=setup["pipeline"], max_new_tokens=8)
    baseline = index.as_query_engine(llm=plain, similarity_top_k=4).query(question)
    assert isinstance(baseline.response, str) and len(baseline.source_nodes) == 4


def test_one_call_query_engine_needs_no_openai(
    setup: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new user's two ways in, with no OpenAI integration and no global LLM set."""
    import importlib.util

    from llama_index.core import Settings

    try:
        openai = importlib.util.find_spec("llama_index.llms.openai")
    except ModuleNotFoundError:
        openai = None
    if openai is not None:
        pytest.skip("llama-index-llms-openai is installed here; this checks a clean install")
    monkeypatch.setattr(Settings, "_llm", None)
    llm, index, question = setup["llm"], setup["index"], setup["question"]
    engine = create_e2llm_query_engine(index, llm, similarity_top_k=4)
    answer = engine.query(question)
    assert isinstance(answer.response, str) and len(answer.source_nodes) == 4
    assert answer.metadata is not None and SOURCES_KEY in answer.metadata
    synth = E2LLMSynthesizer(llm)  # the synthesizer-only path: works as well
    direct = index.as_query_engine(response_synthesizer=synth, similarity_top_k=4).query(question)
    assert direct.response == answer.response  # greedy decoding, the same nodes
    assert synth.last_usage is not None and synth.last_usage.compression_ratio > 10
