"""PlainDecoderChat: the decoder on raw text (the RAG baseline), over the tiny pipeline."""

from __future__ import annotations

import contextlib

import pytest
import torch
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from e2llm_integrations.core import E2LLMModel, E2LLMPipeline
from e2llm_integrations.langchain import CORPUS_KEY, PlainDecoderChat
from e2llm_integrations.langchain.baseline import chat_turns

from ..conftest import tiny_config

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


@pytest.fixture
def lora_pipeline(tiny_model_dirs: dict[str, str]) -> E2LLMPipeline:
    """A pipeline of its own whose decoder LoRA is non-zero, so LoRA on and off differ."""
    torch.manual_seed(0)
    model = E2LLMModel.from_config(tiny_config(tiny_model_dirs), device="cpu")
    with torch.no_grad():
        for name, p in model.decoder.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    return E2LLMPipeline(model)


def _hf_greedy(pipeline: E2LLMPipeline, ids: list[int], lora: bool) -> str:
    """Greedy decoding by transformers' own ``generate``, independent of the E2LLM code."""
    decoder, tokenizer = pipeline.model.decoder, pipeline.model.tokenizer
    off = contextlib.nullcontext() if lora else decoder.disable_adapter()
    with off, torch.no_grad():
        out = decoder.generate(
            input_ids=torch.tensor([ids]),
            attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            max_new_tokens=6,
            do_sample=False,
            pad_token_id=tokenizer.eos_token_id,
        )
    return str(tokenizer.decode(out[0, len(ids) :], skip_special_tokens=True))


def test_is_the_base_decoder_with_lora_off(lora_pipeline: E2LLMPipeline) -> None:
    chat = PlainDecoderChat(pipeline=lora_pipeline, max_tokens=6)
    message = HumanMessage(content=[block(DOC), {"type": "text", "text": "Who?"}])
    result = chat.invoke([message])
    tokenizer = lora_pipeline.model.tokenizer
    turns = chat_turns([message])
    ids = list(tokenizer.apply_chat_template(turns, add_generation_prompt=True)["input_ids"])
    base, with_lora = _hf_greedy(lora_pipeline, ids, False), _hf_greedy(lora_pipeline, ids, True)
    assert base != with_lora, "the LoRA must matter for this test to tell them apart"
    assert result.text == base
    assert result.usage_metadata is not None and result.usage_metadata["input_tokens"] == len(ids)
    assert result.response_metadata["n_chunks"] == 0
    first = next(iter(chat.stream([message])))
    assert first.usage_metadata is not None and first.usage_metadata["input_tokens"] == len(ids)


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
