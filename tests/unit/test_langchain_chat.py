"""E2LLMChat behaviour over the tiny random-weight pipeline (no golden strings)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any
from unittest import mock

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.documents import Document
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage

from e2llm_integrations.core import E2LLMPipeline, registry
from e2llm_integrations.core.expansion import DEFAULT_EXPAND_TOP_K
from e2llm_integrations.langchain import CORPUS_KEY, CORPUS_STORE, E2LLMChat

TEXT = (
    "The Jade Bridge was opened in 1931 by the river authority. It spans 240 metres. "
    "Its architect, Mara Voss, also designed the northern lighthouse.\n\n"
    "Ferries stopped running once the bridge opened, and the old quay became a market."
)


@pytest.fixture
def chat(tiny_pipeline: E2LLMPipeline) -> E2LLMChat:
    return E2LLMChat(pipeline=tiny_pipeline, model="e2llm-tiny", max_tokens=6)


def ask_message(*docs: str, question: str = "When was the bridge opened?") -> HumanMessage:
    blocks: list[Any] = [
        {"type": "text-plain", "mime_type": "text/plain", "text": d, "title": f"Doc {i}"}
        for i, d in enumerate(docs)
    ]
    return HumanMessage(content=[*blocks, {"type": "text", "text": question}])


class Tokens(BaseCallbackHandler):
    def __init__(self) -> None:
        self.tokens: list[str] = []

    def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
        self.tokens.append(token)


def test_document_blocks_are_chunked_and_encoded(
    chat: E2LLMChat, tiny_pipeline: E2LLMPipeline
) -> None:
    result = chat.invoke([ask_message(TEXT, TEXT[:80])])
    expected = tiny_pipeline.chunk([f"Doc 0\n\n{TEXT}", f"Doc 1\n\n{TEXT[:80]}"])
    meta = result.response_metadata
    assert meta["n_chunks"] == len(expected) > 2
    assert meta["soft_tokens"] == len(expected)  # one soft token per chunk (mlp, k=1)
    assert meta["context_tokens"] > meta["n_chunks"]
    assert meta["compression_ratio"] == pytest.approx(
        meta["context_tokens"] / meta["n_chunks"], abs=1e-3
    )
    assert meta["model_name"] == "e2llm-tiny" and meta["finish_reason"] in ("stop", "length")


def test_usage_counts_prompt_plus_soft_tokens(
    chat: E2LLMChat, tiny_pipeline: E2LLMPipeline
) -> None:
    # Soft tokens only: the default also shows excerpts (counted in test_langchain_expand).
    chat = chat.model_copy(update={"expand_top_k": 0})
    bare = chat.invoke("When was the bridge opened?")
    with_docs = chat.invoke([ask_message(TEXT)])
    n_chunks = with_docs.response_metadata["n_chunks"]
    assert bare.response_metadata["n_chunks"] == 0
    assert with_docs.usage_metadata is not None and bare.usage_metadata is not None
    title_tokens = len(tiny_pipeline.model.prompt("When was the bridge opened?"))
    assert bare.usage_metadata["input_tokens"] == title_tokens
    assert with_docs.usage_metadata["input_tokens"] == title_tokens + n_chunks
    usage = with_docs.usage_metadata
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert 0 < usage["output_tokens"] <= 6


def test_documents_kwarg_and_system_history_reach_pipeline(
    chat: E2LLMChat, tiny_pipeline: E2LLMPipeline
) -> None:
    messages = [
        SystemMessage("Answer in one word."),
        HumanMessage("hi"),
        AIMessage("hello"),
        HumanMessage("Who?"),
    ]
    with mock.patch.object(tiny_pipeline, "stream_prepared", wraps=tiny_pipeline.stream_prepared) as ask:
        result = chat.invoke(messages, documents=[TEXT, Document("A second document.")])
    corpus, _sources, question, _gen, prompt = ask.call_args.args
    assert question == "Who?"
    assert prompt == {
        "system": "Answer in one word.",
        "history": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
        # the expanded chunks, picked before streaming (see test_langchain_expand)
        "excerpts": [s["text"] for s in result.response_metadata["sources"]],
    }
    assert len(prompt["excerpts"]) == min(len(corpus), DEFAULT_EXPAND_TOP_K)
    assert {c.doc_id for c in corpus.chunks} == {"0", "1"}
    assert result.response_metadata["n_chunks"] == len(corpus)


def test_stuffed_prompt_is_split_into_context_and_question(tiny_pipeline: E2LLMPipeline) -> None:
    chat = E2LLMChat(pipeline=tiny_pipeline, max_tokens=2, auto_context_chars=200)
    prompt = f"Use the context to answer.\n\n{TEXT}\n\nQuestion: Who designed it?\nAnswer:"
    with mock.patch.object(tiny_pipeline, "stream_prepared", wraps=tiny_pipeline.stream_prepared) as ask:
        result = chat.invoke(prompt)
    assert ask.call_args.args[2] == "Question: Who designed it?\nAnswer:"
    assert result.response_metadata["n_chunks"] == len(
        tiny_pipeline.chunk([f"Use the context to answer.\n\n{TEXT}"])
    )
    off = E2LLMChat(pipeline=tiny_pipeline, max_tokens=2, auto_context_chars=None)
    assert off.invoke(prompt).response_metadata["n_chunks"] == 0


def test_stream_matches_invoke_and_reports_usage_once(chat: E2LLMChat) -> None:
    message = ask_message(TEXT)
    full = chat.invoke([message])
    handler = Tokens()
    chunks = list(chat.stream([message], config={"callbacks": [handler]}))
    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    assert "".join(c.text for c in chunks) == full.text
    assert handler.tokens == [c.text for c in chunks]  # LangChain reports every chunk
    assert full.usage_metadata is not None
    first_usage = chunks[0].usage_metadata
    assert (
        first_usage is not None
        and first_usage["input_tokens"] == full.usage_metadata["input_tokens"]
    )
    assert all(not c.usage_metadata or not c.usage_metadata["input_tokens"] for c in chunks[1:])
    last = chunks[-1]
    assert last.chunk_position == "last" and last.content == ""
    assert last.response_metadata["finish_reason"] == full.response_metadata["finish_reason"]
    merged = chunks[0]
    for c in chunks[1:]:
        merged = merged + c
    assert merged.usage_metadata == full.usage_metadata


def test_stop_sequence_cuts_output(tiny_pipeline: E2LLMPipeline) -> None:
    chat = E2LLMChat(pipeline=tiny_pipeline, max_tokens=12)
    text = chat.invoke([ask_message(TEXT)]).text
    assert len(text) >= 4, "the tiny model should produce some text"
    stop = text[len(text) // 2 : len(text) // 2 + 2]
    cut = chat.invoke([ask_message(TEXT)], stop=[stop])
    assert cut.text == text[: text.find(stop)]
    assert cut.response_metadata["finish_reason"] == "stop"
    bound = E2LLMChat(pipeline=tiny_pipeline, max_tokens=12, stop=[stop])
    assert bound.invoke([ask_message(TEXT)]).text == cut.text


def test_max_tokens_and_temperature(tiny_pipeline: E2LLMPipeline) -> None:
    chat = E2LLMChat(pipeline=tiny_pipeline, max_tokens=3)
    result = chat.invoke([ask_message(TEXT)])
    assert result.usage_metadata is not None and result.usage_metadata["output_tokens"] <= 3
    assert result.response_metadata["finish_reason"] == "length"
    more = chat.invoke([ask_message(TEXT)], max_tokens=5)
    assert more.usage_metadata is not None and more.usage_metadata["output_tokens"] == 5
    sampler = E2LLMChat(pipeline=tiny_pipeline, max_tokens=8, temperature=1.5, seed=7)
    assert sampler.invoke("Tell me.").text == sampler.invoke("Tell me.").text


def test_bad_call_options(chat: E2LLMChat) -> None:
    with pytest.raises(TypeError, match="unsupported call option"):
        chat.invoke("q", tools=[{"name": "x"}])
    with pytest.raises(ValueError, match="cannot switch models"):
        chat.invoke("q", model="other-model")
    with pytest.raises(ValueError, match="user \\(human\\) message"):
        chat.invoke([SystemMessage("only a system prompt")])


def test_compressed_documents_are_not_re_encoded(
    chat: E2LLMChat, tiny_pipeline: E2LLMPipeline
) -> None:
    corpus = tiny_pipeline.encode([TEXT])
    doc = Document(TEXT, metadata={CORPUS_KEY: CORPUS_STORE.put(corpus)})
    with mock.patch.object(
        tiny_pipeline, "encode_chunks", wraps=tiny_pipeline.encode_chunks
    ) as enc:
        via_kwarg = chat.invoke("When?", documents=[doc])
        block = {
            "type": "text-plain",
            "mime_type": "text/plain",
            "text": "",
            "extras": {CORPUS_KEY: doc.metadata[CORPUS_KEY]},
        }
        via_block = chat.invoke([HumanMessage(content=[block, {"type": "text", "text": "When?"}])])
    assert enc.call_count == 0
    assert (
        via_kwarg.response_metadata["n_chunks"]
        == via_block.response_metadata["n_chunks"]
        == len(corpus)
    )


def test_expired_handle_falls_back_to_text_or_fails(
    chat: E2LLMChat, caplog: pytest.LogCaptureFixture
) -> None:
    doc = Document(TEXT, metadata={CORPUS_KEY: "no-such-handle"})
    result = chat.invoke("When?", documents=[doc])
    assert result.response_metadata["n_chunks"] > 0
    assert "re-encoding" in caplog.text
    with pytest.raises(ValueError, match="are gone"):
        chat.invoke("When?", documents=[Document("", metadata={CORPUS_KEY: "no-such-handle"})])


def test_batch_is_thread_safe_and_deterministic(chat: E2LLMChat) -> None:
    prompts = [[ask_message(TEXT, question=q)] for q in ("When?", "Who?", "How long?", "Why?")]
    sequential = [chat.invoke(p).text for p in prompts]
    parallel = chat.batch(prompts, config={"max_concurrency": 4})
    assert [m.text for m in parallel] == sequential


async def test_async_does_not_block_the_event_loop(chat: E2LLMChat) -> None:
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0.001)

    task = asyncio.create_task(ticker())
    slow = chat.model_copy(update={"max_tokens": 24})
    result = await slow.ainvoke([ask_message(TEXT * 4)])
    done.set()
    await task
    assert isinstance(result, AIMessage) and ticks > 5
    sync_text = slow.invoke([ask_message(TEXT * 4)]).text
    assert result.text == sync_text


async def test_astream_matches_stream_and_releases_lock(
    chat: E2LLMChat, tiny_pipeline: E2LLMPipeline
) -> None:
    message = [ask_message(TEXT)]
    sync_chunks = [c.text for c in chat.stream(message)]
    handler = Tokens()
    chunks = [c async for c in chat.astream(message, config={"callbacks": [handler]})]
    assert [c.text for c in chunks] == sync_chunks
    assert chunks[-1].chunk_position == "last"
    assert handler.tokens == sync_chunks
    async for _ in chat.astream(message):
        break  # abandon the stream mid-way
    await asyncio.sleep(0.2)

    def lock_is_free() -> bool:
        if tiny_pipeline.lock.acquire(timeout=10):
            tiny_pipeline.lock.release()
            return True
        return False

    assert await asyncio.to_thread(lock_is_free), "an abandoned async stream kept the lock"


async def test_astream_raises_input_errors(chat: E2LLMChat) -> None:
    with pytest.raises(ValueError, match="user \\(human\\) message"):
        async for _ in chat.astream([SystemMessage("no question")]):
            pass


def test_construction_is_cheap_and_weights_are_shared(
    tiny_pipeline: E2LLMPipeline, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    loads: list[Any] = []

    def fake_from_pretrained(
        checkpoint: Any = None, device: Any = None, config: Any = None, **kwargs: Any
    ) -> E2LLMPipeline:
        loads.append((checkpoint, device))
        time.sleep(0.05)  # widen the race window for concurrent first use
        return tiny_pipeline

    monkeypatch.setattr(E2LLMPipeline, "from_pretrained", staticmethod(fake_from_pretrained))
    registry.clear_pipelines()
    chats = [E2LLMChat.from_pretrained(tmp_path, max_tokens=2) for _ in range(3)]
    assert loads == []
    threads = [threading.Thread(target=c.get_pipeline) for c in chats]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(loads) == 1 and chats[0].get_pipeline() is tiny_pipeline
    E2LLMChat(checkpoint=str(tmp_path / "other")).get_pipeline()
    assert len(loads) == 2, "another checkpoint is another pipeline"
    assert chats[0].resolved_model_name == f"e2llm:{tmp_path.name}"
    registry.clear_pipelines()


def test_ls_params(chat: E2LLMChat) -> None:
    params = chat._get_ls_params(stop=["x"], temperature=0.5)
    assert params["ls_provider"] == "e2llm" and params["ls_model_name"] == "e2llm-tiny"
    assert params["ls_stop"] == ["x"] and params["ls_temperature"] == 0.5
    assert chat._identifying_params["max_tokens"] == 6
    assert E2LLMChat()._llm_type == "e2llm-chat"
