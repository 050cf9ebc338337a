"""PlainDecoderChat: the decoder on raw text (the RAG baseline), over the tiny pipeline."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from e2llm_integrations.core import E2LLMPipeline, GenerationConfig
from e2llm_integrations.core.prompt import render_chat
from e2llm_integrations.langchain import CORPUS_KEY, PlainDecoderChat
from e2llm_integrations.langchain.baseline import chat_turns

DOC = "The Jade Bridge opened in 1931. Its architect was Mara Voss."


def block(text: str, **extra: object) -> dict[str, object]:
    return {"type": "text-plain", "mime_type": "text/plain", "text": text, **extra}


def test_documents_are_pasted_before_the_question() -> None:
    messages = [
        SystemMessage("Be brief."),
        HumanMessage("hi"),
        AIMessage("hello"),
        HumanMessage(content=[block(DOC, title="Bridge"), {"type": "text", "text": "Who?"}]),
    ]
    assert chat_turns(messages) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": f"Bridge\n{DOC}\n\nWho?"},
    ]


def test_matches_the_core_text_stream(tiny_pipeline: E2LLMPipeline) -> None:
    chat = PlainDecoderChat(pipeline=tiny_pipeline, max_tokens=6)
    message = HumanMessage(content=[block(DOC), {"type": "text", "text": "Who?"}])
    result = chat.invoke([message])
    turns = chat_turns([message])
    gen = GenerationConfig(max_new_tokens=6)
    expected = "".join(p.text for p in tiny_pipeline.model.stream_text(turns, gen, base_only=True))
    assert result.text == expected
    n_prompt = len(
        tiny_pipeline.model.tokenizer(
            render_chat(tiny_pipeline.model.tokenizer, turns), add_special_tokens=False
        )["input_ids"]
    )
    assert result.usage_metadata is not None and result.usage_metadata["input_tokens"] == n_prompt
    assert result.response_metadata["n_chunks"] == 0
    first = next(iter(chat.stream([message])))
    assert first.usage_metadata is not None and first.usage_metadata["input_tokens"] == n_prompt


def test_prompt_over_the_window_is_refused(tiny_pipeline: E2LLMPipeline) -> None:
    chat = PlainDecoderChat(pipeline=tiny_pipeline, max_tokens=4)
    with pytest.raises(ValueError, match="window"):
        chat.invoke(DOC * 200)


def test_handle_only_documents_are_refused(tiny_pipeline: E2LLMPipeline) -> None:
    chat = PlainDecoderChat(pipeline=tiny_pipeline, max_tokens=4)
    message = HumanMessage(
        content=[block("", extras={CORPUS_KEY: "h"}), {"type": "text", "text": "q"}]
    )
    with pytest.raises(ValueError, match="document text"):
        chat.invoke([message])
    assert chat.resolved_model_name == "plain-decoder:default"
