"""``E2LLM`` / ``PlainDecoderLLM`` as LlamaIndex LLMs, on the tiny random models."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.prompts.chat_prompts import CHAT_TEXT_QA_PROMPT
from llama_index.core.prompts.default_prompts import (
    DEFAULT_REFINE_PROMPT,
    DEFAULT_TEXT_QA_PROMPT,
    DEFAULT_TREE_SUMMARIZE_PROMPT,
)

from e2llm_integrations.core import E2LLMPipeline, GenerationChunk
from e2llm_integrations.llama_index import E2LLM, PlainDecoderLLM, context_window, split_prompt

from . import llama_index_support as support
from .llama_index_support import PASSAGES

embed_model = support.embed_model  # shared fixture
prose_index = support.prose_index  # shared fixture

CONTEXT = PASSAGES["lighthouse"] + "\n\n" + PASSAGES["tides"]
QUESTION = "When was the lighthouse built?"


class StreamSpy:
    """Records what ``pipeline.stream`` was asked, then runs the real method."""

    def __init__(self, pipeline: E2LLMPipeline) -> None:
        self.real = pipeline.stream
        self.calls: list[dict[str, Any]] = []

    def __call__(
        self, corpus: Any, question: str, generation: Any = None, **prompt: Any
    ) -> Iterator[GenerationChunk]:
        self.calls.append({"corpus": corpus, "question": question, **prompt})
        return self.real(corpus, question, generation, **prompt)


@pytest.fixture
def spy(tiny_pipeline: E2LLMPipeline, monkeypatch: pytest.MonkeyPatch) -> StreamSpy:
    spy = StreamSpy(tiny_pipeline)
    monkeypatch.setattr(tiny_pipeline, "stream", spy)
    return spy


@pytest.fixture
def llm(tiny_pipeline: E2LLMPipeline) -> E2LLM:
    return E2LLM(pipeline=tiny_pipeline, max_new_tokens=6)


def _context_texts(corpus: Any) -> str:
    return " ".join(c.text for c in corpus.chunks)


# ---------------------------------------------------------------------- prompt splitting
@pytest.mark.parametrize("template", [DEFAULT_TEXT_QA_PROMPT, DEFAULT_TREE_SUMMARIZE_PROMPT])
def test_split_prompt_reads_llama_index_qa_templates(template: Any) -> None:
    prompt = template.format(context_str=CONTEXT, query_str=QUESTION)
    split = split_prompt(prompt)
    assert split.context == CONTEXT
    assert split.question == QUESTION


def test_split_prompt_reads_chat_qa_template() -> None:
    messages = CHAT_TEXT_QA_PROMPT.format_messages(context_str=CONTEXT, query_str=QUESTION)
    split = split_prompt(messages[-1].content)
    assert (split.context, split.question) == (CONTEXT, QUESTION)


def test_split_prompt_reads_refine_template() -> None:
    prompt = DEFAULT_REFINE_PROMPT.format(
        query_str=QUESTION, existing_answer="In the third century BC.", context_msg=CONTEXT
    )
    split = split_prompt(prompt)
    assert split.context == CONTEXT
    assert split.question.startswith(QUESTION)
    assert "In the third century BC." in split.question


def test_split_prompt_last_paragraph_is_the_question() -> None:
    split = split_prompt(f"{CONTEXT}\n\n{QUESTION}")
    assert (split.context, split.question) == (CONTEXT, QUESTION)
    assert split_prompt(QUESTION) == split_prompt(f"  {QUESTION}\n")
    assert split_prompt(QUESTION).context == ""


# ---------------------------------------------------------------------- construction, metadata
def test_construction_loads_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the pipeline must load lazily")

    monkeypatch.setattr("e2llm_integrations._fields.get_pipeline", refuse)
    llm = E2LLM(checkpoint="somewhere", max_new_tokens=4)
    assert llm.class_name() == "E2LLM"
    assert llm._pipeline is None
    with pytest.raises(AssertionError, match="lazily"):
        _ = llm.pipeline


def test_invalid_fields_are_rejected() -> None:
    with pytest.raises(ValueError):
        E2LLM(max_new_tokens=0)
    with pytest.raises(ValueError):
        E2LLM(top_p=1.5)


def test_metadata_context_window_counts_compressed_text(
    llm: E2LLM, tiny_pipeline: E2LLMPipeline
) -> None:
    meta = llm.metadata
    assert meta.num_output == 6
    assert meta.is_chat_model
    assert meta.context_window == context_window(tiny_pipeline, 6)
    # Each soft position stands for a whole chunk, so the text window exceeds the decoder's.
    assert meta.context_window > tiny_pipeline.model.max_positions
    assert context_window(tiny_pipeline, 200) < meta.context_window


# ---------------------------------------------------------------------- generation
def test_complete_compresses_context_and_reads_question(llm: E2LLM, spy: StreamSpy) -> None:
    response = llm.complete(f"{CONTEXT}\n\n{QUESTION}")
    (call,) = spy.calls
    assert call["question"] == QUESTION
    assert "Pharos" in _context_texts(call["corpus"]) and QUESTION not in _context_texts(
        call["corpus"]
    )
    usage = response.additional_kwargs["usage"]
    assert usage["n_chunks"] == len(call["corpus"]) > 1
    assert usage["soft_tokens"] == usage["n_chunks"]
    assert 0 < usage["output_tokens"] <= 6
    assert response.additional_kwargs["finish_reason"] in ("stop", "length")


def test_complete_without_context_asks_the_question_alone(llm: E2LLM, spy: StreamSpy) -> None:
    response = llm.complete(QUESTION)
    assert len(spy.calls[0]["corpus"]) == 0
    assert response.additional_kwargs["usage"]["n_chunks"] == 0


def test_stream_complete_deltas_add_up(llm: E2LLM) -> None:
    prompt = f"{CONTEXT}\n\n{QUESTION}"
    parts = list(llm.stream_complete(prompt))
    assert "".join(p.delta or "" for p in parts) == parts[-1].text
    assert parts[-1].text == llm.complete(prompt).text  # greedy: same answer
    assert parts[-1].additional_kwargs["usage"]["n_chunks"] > 1
    assert all("usage" not in p.additional_kwargs for p in parts[:-1])


def test_chat_passes_system_and_history(llm: E2LLM, spy: StreamSpy) -> None:
    messages = [
        ChatMessage(role=MessageRole.SYSTEM, content="Be brief."),
        ChatMessage(role=MessageRole.USER, content="Hello."),
        ChatMessage(role=MessageRole.ASSISTANT, content="Hi."),
        ChatMessage(role=MessageRole.USER, content=f"{CONTEXT}\n\n{QUESTION}"),
    ]
    response = llm.chat(messages)
    call = spy.calls[0]
    assert call["system"] == "Be brief."
    assert call["history"] == [
        {"role": "user", "content": "Hello."},
        {"role": "assistant", "content": "Hi."},
    ]
    assert response.message.role == MessageRole.ASSISTANT
    streamed = list(llm.stream_chat(messages))
    assert streamed[-1].message.content == response.message.content


def test_chat_rejects_bad_messages(llm: E2LLM) -> None:
    with pytest.raises(ValueError, match="at least one user message"):
        llm.chat([])
    with pytest.raises(ValueError, match="needs a user \\(human\\) message"):
        llm.chat([ChatMessage(role=MessageRole.ASSISTANT, content="Hi.")])
    user, assistant = (ChatMessage(role=r, content="Hi.") for r in ("user", "assistant"))
    with pytest.raises(ValueError, match="must end with a user \\(human\\) message"):
        llm.chat([user, assistant])
    with pytest.raises(TypeError, match="tool calling"):
        llm.chat([ChatMessage(role=MessageRole.TOOL, content="42"), user])
    with pytest.raises(TypeError, match="prompt must be a str"):
        llm.complete(["not", "a", "string"])  # type: ignore[arg-type]


def test_prefilter_keeps_top_k_chunks(tiny_pipeline: E2LLMPipeline, spy: StreamSpy) -> None:
    llm = E2LLM(pipeline=tiny_pipeline, max_new_tokens=2, top_k=2)
    llm.complete(f"{CONTEXT}\n\n{QUESTION}")
    assert len(spy.calls[0]["corpus"]) == 2


def test_question_over_the_window_is_a_clear_error(llm: E2LLM) -> None:
    with pytest.raises(ValueError, match="blank\\s+line"):
        llm.complete("why " * 600)
    with pytest.raises(ValueError, match="blank\\s+line"):
        list(llm.stream_complete("why " * 600))


def test_context_over_the_window_is_answered_from_what_fits(tiny_pipeline: E2LLMPipeline) -> None:
    # 420 new tokens leave ~18 of the 512 positions for chunks; this context makes ~75.
    # Since issue 13 the chunks most relevant to the question that fit are kept, with a warning.
    llm = E2LLM(pipeline=tiny_pipeline, max_new_tokens=420)
    huge = "The sky is blue over the sea. " * 300
    n_chunks = len(tiny_pipeline.chunk([huge]))
    for call in (llm.complete, lambda p: list(llm.stream_complete(p))):
        with pytest.warns(UserWarning, match="most relevant to the question"):
            call(f"{huge}\n\n{QUESTION}")
        usage = llm.last_usage
        assert usage is not None and 0 < usage.n_chunks < n_chunks
        assert usage.n_chunks + usage.dropped_chunks == n_chunks


# ---------------------------------------------------------------------- async
async def test_async_calls_do_not_block_the_event_loop(
    llm: E2LLM, tiny_pipeline: E2LLMPipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = tiny_pipeline.stream

    def slow(*args: Any, **kwargs: Any) -> Iterator[GenerationChunk]:
        for chunk in real(*args, **kwargs):
            time.sleep(0.05)
            yield chunk

    monkeypatch.setattr(tiny_pipeline, "stream", slow)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    task = asyncio.create_task(ticker())
    result = await llm.acomplete(f"{CONTEXT}\n\n{QUESTION}")
    after_complete = ticks
    stream = await llm.astream_complete(f"{CONTEXT}\n\n{QUESTION}")
    parts = [p async for p in stream]
    task.cancel()
    assert after_complete >= 5
    assert ticks - after_complete >= 5
    assert parts[-1].text == result.text


async def test_async_chat_matches_sync(llm: E2LLM) -> None:
    messages = [ChatMessage(role=MessageRole.USER, content=f"{CONTEXT}\n\n{QUESTION}")]
    sync = llm.chat(messages).message.content
    assert (await llm.achat(messages)).message.content == sync
    parts = [p async for p in await llm.astream_chat(messages)]
    assert parts[-1].message.content == sync


async def test_async_stream_errors_raise_at_call_time(llm: E2LLM) -> None:
    with pytest.raises(ValueError, match="blank\\s+line"):
        await llm.astream_complete("why " * 600)


# ---------------------------------------------------------------------- query engine (compact)
@pytest.mark.parametrize("chat", [True, False])
def test_default_compact_query_engine_splits_context_and_query(
    tiny_pipeline: E2LLMPipeline,
    prose_index: Any,
    spy: StreamSpy,
    chat: bool,
) -> None:
    llm = E2LLM(pipeline=tiny_pipeline, max_new_tokens=4, is_chat_model=chat)
    engine = prose_index.as_query_engine(llm=llm, similarity_top_k=2)
    response = engine.query("What causes the tides?")
    assert isinstance(response.response, str)
    (call,) = spy.calls
    assert call["question"] == "What causes the tides?"
    context = _context_texts(call["corpus"])
    for node in response.source_nodes:
        assert node.node.get_content()[:40] in context
    assert "Query:" not in context and "---" not in context


# ---------------------------------------------------------------------- plain decoder baseline
def test_plain_decoder_reads_raw_text(tiny_pipeline: E2LLMPipeline) -> None:
    llm = PlainDecoderLLM(pipeline=tiny_pipeline, max_new_tokens=4)
    assert llm.metadata.context_window == tiny_pipeline.model.max_positions
    response = llm.complete(f"{CONTEXT}\n\n{QUESTION}")
    usage = response.additional_kwargs["usage"]
    assert usage["soft_tokens"] == 0 and usage["input_positions"] > 100
    assert llm.last_usage is not None and llm.last_usage.to_dict() == usage
    assert (
        "".join(p.delta or "" for p in llm.stream_complete(QUESTION)) == llm.complete(QUESTION).text
    )
    with pytest.raises(ValueError, match="decoder window"):
        llm.complete("word " * 600)


def test_core_never_imports_llama_index() -> None:
    code = "import sys, e2llm_integrations.core; print('llama_index' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
