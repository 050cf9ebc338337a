"""One prompt-splitting rule (``core.prompt.split_prompt``) for both integrations.

The prompts below are the cases where the LangChain and LlamaIndex wrappers used to cut
the same text differently (an answer cue after a blank line, a LlamaIndex template sent
through a LangChain "stuff" chain, one long paragraph). Each is checked against the
rule, and then through both wrappers: the pipeline must receive the same context and
the same question from ``E2LLMChat`` and from the LlamaIndex ``E2LLM``.
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from llama_index.core.prompts.default_prompts import DEFAULT_REFINE_PROMPT, DEFAULT_TEXT_QA_PROMPT

from e2llm_integrations.core import E2LLMPipeline
from e2llm_integrations.core.prompt import LONG_PROMPT_CHARS, SplitPrompt, split_prompt
from e2llm_integrations.langchain import E2LLMChat, split_stuffed_prompt
from e2llm_integrations.langchain._messages import parse_messages
from e2llm_integrations.llama_index import E2LLM

from .llama_index_support import PASSAGES

CONTEXT = "\n\n".join(PASSAGES.values()) * 2  # several paragraphs, > LONG_PROMPT_CHARS
LINES = "\n".join(f"Harbour {i} has a blue door and {i} boats." for i in range(60))
SENTENCES = " ".join(f"Harbour {i} has a blue door and {i} boats." for i in range(60))
QUESTION = "Which harbour has the most boats?"

CASES = {
    # LlamaIndex took the cue alone as the question; LangChain kept it with the question.
    "answer cue after a blank line": (
        f"{CONTEXT}\n\nQ: {QUESTION}\n\nHelpful Answer:",
        SplitPrompt(CONTEXT, f"Q: {QUESTION}\n\nHelpful Answer:"),
    ),
    # LangChain put the template's header and dashes into the context and asked "Query: ...".
    "LlamaIndex QA template in a stuff chain": (
        DEFAULT_TEXT_QA_PROMPT.format(context_str=CONTEXT, query_str=QUESTION),
        SplitPrompt(CONTEXT, QUESTION),
    ),
    "LlamaIndex refine template": (
        DEFAULT_REFINE_PROMPT.format(
            query_str=QUESTION, existing_answer="Harbour 59.", context_msg=CONTEXT
        ),
        SplitPrompt(
            CONTEXT,
            f"{QUESTION}\n(An earlier answer was: Harbour 59. Improve it only if the context helps.)",
        ),
    ),
    # LlamaIndex asked the whole paragraph as the question (and overflowed the window).
    "one long paragraph of lines": (
        f"{LINES}\n{QUESTION}",
        SplitPrompt(LINES, QUESTION),
    ),
    "one long paragraph of sentences": (
        f"{SENTENCES} {QUESTION}",
        SplitPrompt(SENTENCES, QUESTION),
    ),
}


@pytest.mark.parametrize(("prompt", "expected"), CASES.values(), ids=CASES.keys())
def test_the_rule(prompt: str, expected: SplitPrompt) -> None:
    assert len(prompt) > LONG_PROMPT_CHARS
    assert split_prompt(prompt) == expected


@pytest.mark.parametrize(("prompt", "expected"), CASES.values(), ids=CASES.keys())
def test_langchain_messages_follow_the_rule(prompt: str, expected: SplitPrompt) -> None:
    request = parse_messages([HumanMessage(prompt)], auto_context_chars=LONG_PROMPT_CHARS)
    assert [s.text for s in request.sources] == [expected.context]
    assert request.question == expected.question
    assert split_stuffed_prompt(prompt) == (expected.context, expected.question)


def test_short_prompts() -> None:
    # A short one-paragraph prompt is all question; cutting lines or sentences needs length.
    assert split_prompt("Hello there. What is 2 + 2?") == SplitPrompt(
        "", "Hello there. What is 2 + 2?"
    )
    assert split_prompt("Ctx.\nWho?") == SplitPrompt("", "Ctx.\nWho?")
    assert split_prompt("Ctx.\nWho?", long_chars=0) == SplitPrompt("Ctx.", "Who?")
    assert split_prompt("Ctx.\n\nWho?") == SplitPrompt("Ctx.", "Who?")
    # A LangChain chat turn shorter than auto_context_chars is never split.
    request = parse_messages([HumanMessage("Ctx.\n\nWho?")], auto_context_chars=100)
    assert request.sources == [] and request.question == "Ctx.\n\nWho?"
    # Markdown rules are not a template fence: nothing before them is dropped.
    doc = "Title\n---\nBody one.\n---\nBody two.\n\nWho?"
    assert split_prompt(doc) == SplitPrompt("Title\n---\nBody one.\n---\nBody two.", "Who?")
    with pytest.raises(TypeError, match="prompt must be a str"):
        split_prompt(3)  # type: ignore[arg-type]


class PrepareSpy:
    """Records the chunk texts and the question each call hands to ``pipeline.prepare``."""

    def __init__(self, pipeline: E2LLMPipeline) -> None:
        self.real = pipeline.prepare
        self.calls: list[tuple[str, str]] = []
        self.prompts: list[dict[str, Any]] = []

    def __call__(self, context: Any, question: str, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((" ".join(c.text for c in context.chunks), question))
        self.prompts.append({k: kwargs.get(k) for k in ("system", "history")})
        return self.real(context, question, *args, **kwargs)


@pytest.mark.parametrize(
    "case", ["answer cue after a blank line", "LlamaIndex QA template in a stuff chain"]
)
def test_both_wrappers_hand_the_pipeline_the_same_split(
    tiny_pipeline: E2LLMPipeline, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    prompt, expected = CASES[case]
    spy = PrepareSpy(tiny_pipeline)
    monkeypatch.setattr(tiny_pipeline, "prepare", spy)
    E2LLMChat(pipeline=tiny_pipeline, max_tokens=2, expand_top_k=0).invoke(prompt)
    E2LLM(pipeline=tiny_pipeline, max_new_tokens=2, expand_top_k=0).complete(prompt)
    (chat_context, chat_question), (llm_context, llm_question) = spy.calls
    assert chat_question == llm_question == expected.question
    assert chat_context == llm_context
    assert chat_context.split() == expected.context.split()  # all of it, nothing else


def test_both_wrappers_read_a_conversation_the_same(
    tiny_pipeline: E2LLMPipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    from langchain_core.messages import AIMessage, SystemMessage
    from llama_index.core.base.llms.types import ChatMessage

    spy = PrepareSpy(tiny_pipeline)
    monkeypatch.setattr(tiny_pipeline, "prepare", spy)
    turns = [
        ("system", "Be brief."),
        ("user", "Hello."),
        ("user", "I have a question."),
        ("assistant", "Ask it."),
        ("user", CONTEXT),  # long: E2LLMChat's auto_context_chars lets it be split too
        ("user", "What causes spring tides?"),
    ]
    kinds = {"system": SystemMessage, "user": HumanMessage, "assistant": AIMessage}
    chat = E2LLMChat(pipeline=tiny_pipeline, max_tokens=2, expand_top_k=0)
    chat.invoke([kinds[role](text) for role, text in turns])
    llm = E2LLM(pipeline=tiny_pipeline, max_new_tokens=2, expand_top_k=0)
    llm.chat([ChatMessage(role=role, content=text) for role, text in turns])
    (chat_context, chat_question), (llm_context, llm_question) = spy.calls
    assert chat_question == llm_question == "What causes spring tides?"
    assert chat_context == llm_context and chat_context.split() == CONTEXT.split()
    assert (
        spy.prompts[0]
        == spy.prompts[1]
        == {
            "system": "Be brief.",
            "history": [
                {"role": "user", "content": "Hello.\n\nI have a question."},
                {"role": "assistant", "content": "Ask it."},
            ],
        }
    )
