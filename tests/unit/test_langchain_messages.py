"""Message parsing for E2LLMChat: roles, documents, stuffed prompts, malformed input (no model)."""

from __future__ import annotations

import base64

import pytest
from langchain_core.documents import Document
from langchain_core.messages import (
    AIMessage,
    ChatMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)

from e2llm_integrations.langchain import (
    CORPUS_KEY,
    document_id,
    documents_to_blocks,
    split_stuffed_prompt,
)
from e2llm_integrations.langchain._messages import parse_messages, sources_from_documents


def doc_block(text: str, **extra: object) -> dict[str, object]:
    return {"type": "text-plain", "mime_type": "text/plain", "text": text, **extra}


def test_roles_history_and_question() -> None:
    messages = [
        SystemMessage("Be brief."),
        SystemMessage("Cite sources."),
        HumanMessage("hi"),
        HumanMessage("there"),
        AIMessage("hello"),
        ChatMessage(role="assistant", content="again"),
        HumanMessage("first part"),
        HumanMessage("second part?"),
    ]
    req = parse_messages(messages)
    assert req.system == "Be brief.\n\nCite sources."
    assert req.history == [
        {"role": "user", "content": "hi\n\nthere"},
        {"role": "assistant", "content": "hello\n\nagain"},
    ]
    assert req.question == "first part\n\nsecond part?"
    assert req.sources == []


def test_document_blocks_from_every_human_message_in_order() -> None:
    encoded = base64.b64encode(b"base64 doc").decode()
    messages = [
        HumanMessage(content=[doc_block("doc one", title="One"), {"type": "text", "text": "q1"}]),
        AIMessage("a1"),
        HumanMessage(
            content=[
                {"type": "text-plain", "mime_type": "text/plain", "base64": encoded},
                doc_block("", extras={CORPUS_KEY: "abc"}),
                {"type": "text", "text": "q2"},
            ]
        ),
    ]
    req = parse_messages(messages)
    assert [(s.text, s.title, s.handle) for s in req.sources] == [
        ("doc one", "One", None),
        ("base64 doc", None, None),
        ("", None, "abc"),
    ]
    assert req.question == "q2"
    assert req.history == [
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "a1"},
    ]


@pytest.mark.parametrize(
    ("prompt", "context", "question"),
    [
        ("Ctx one.\n\nCtx two.\n\nWhat is it?", "Ctx one.\n\nCtx two.", "What is it?"),
        (
            "Use this.\n\nBody.\n\nQuestion: Who?\nAnswer:",
            "Use this.\n\nBody.",
            "Question: Who?\nAnswer:",
        ),
        ("Body text.\n\nQ: Who?\n\nHelpful Answer:", "Body text.", "Q: Who?\n\nHelpful Answer:"),
        ("line one\nline two\nWhich line?", "line one\nline two", "Which line?"),
        ("One sentence. Another one. Which one?", "One sentence. Another one.", "Which one?"),
    ],
)
def test_split_stuffed_prompt(prompt: str, context: str, question: str) -> None:
    assert split_stuffed_prompt(prompt) == (context, question)


def test_split_stuffed_prompt_refuses_one_piece() -> None:
    assert split_stuffed_prompt("just a single long question without breaks") is None


def test_long_prompt_becomes_context_plus_question() -> None:
    body = "The tower is 300 metres tall. " * 100
    req = parse_messages(
        [HumanMessage(f"{body}\n\nHow tall is the tower?")], auto_context_chars=500
    )
    assert req.question == "How tall is the tower?"
    assert len(req.sources) == 1 and req.sources[0].text == body.strip()
    short = parse_messages([HumanMessage(f"{body}\n\nHow tall?")], auto_context_chars=None)
    assert short.sources == [] and short.question.endswith("How tall?")


def test_no_human_message() -> None:
    with pytest.raises(ValueError, match="user \\(human\\) message"):
        parse_messages([SystemMessage("sys")])
    with pytest.raises(ValueError, match="user \\(human\\) message"):
        parse_messages([])


def test_conversation_must_end_with_human() -> None:
    with pytest.raises(ValueError, match="end with a user \\(human\\) message"):
        parse_messages([HumanMessage("q"), AIMessage("a")])


def test_tool_messages_are_refused() -> None:
    with pytest.raises(TypeError, match="tool calling"):
        parse_messages([HumanMessage("q"), ToolMessage("r", tool_call_id="1"), HumanMessage("q")])


@pytest.mark.parametrize(
    "block",
    [
        {"type": "image", "url": "https://example.invalid/cat.png"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        {"type": "mystery", "payload": 1},
        {"type": "file", "source_type": "text", "text": "legacy block LangChain cannot convert"},
    ],
)
def test_unsupported_blocks(block: dict[str, object]) -> None:
    msg = HumanMessage(content=[block, {"type": "text", "text": "what is it?"}])
    with pytest.raises(TypeError, match="content block"):
        parse_messages([msg])


def test_empty_and_unreadable_document_blocks() -> None:
    with pytest.raises(ValueError, match="empty"):
        parse_messages([HumanMessage(content=[doc_block("  "), {"type": "text", "text": "q"}])])
    url_block = {"type": "text-plain", "mime_type": "text/plain", "url": "https://x.invalid/a.txt"}
    with pytest.raises(ValueError, match="not fetched"):
        parse_messages([HumanMessage(content=[url_block, {"type": "text", "text": "q"}])])
    bad = {
        "type": "text-plain",
        "mime_type": "text/plain",
        "base64": base64.b64encode(b"\xff\xfe").decode(),
    }
    with pytest.raises(ValueError, match="UTF-8"):
        parse_messages([HumanMessage(content=[bad, {"type": "text", "text": "q"}])])


def test_documents_without_question() -> None:
    with pytest.raises(ValueError, match="no question"):
        parse_messages([HumanMessage(content=[doc_block("some document")])])


def test_documents_kwarg_sources() -> None:
    doc = Document("text", metadata={"title": "T", CORPUS_KEY: "k"})
    sources = sources_from_documents(["plain", doc])
    assert [(s.text, s.title, s.handle) for s in sources] == [
        ("plain", None, None),
        ("text", "T", "k"),
    ]
    with pytest.raises(ValueError, match=r"documents\[1\] is empty"):
        sources_from_documents(["ok", " "])
    with pytest.raises(TypeError, match=r"documents\[0\] is a int"):
        sources_from_documents([3])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="wrap the single one"):
        sources_from_documents("one string")


def test_documents_to_blocks_round_trip() -> None:
    docs = [Document("alpha", metadata={"title": "A", CORPUS_KEY: "h1"}), Document("beta")]
    msg = HumanMessage(content=[*documents_to_blocks(docs), {"type": "text", "text": "q"}])
    req = parse_messages([msg])
    assert [(s.text, s.title, s.handle) for s in req.sources] == [
        ("alpha", "A", "h1"),
        ("beta", None, None),
    ]


def test_documents_are_named_by_id_then_source() -> None:
    docs = [
        Document("alpha", id="a-1", metadata={"source": "a.txt"}),
        Document("beta", metadata={"source": "notes/b.txt"}),
        Document("gamma"),
    ]
    assert [document_id(d) for d in docs] == ["a-1", "notes/b.txt", None]
    assert [s.doc_id for s in sources_from_documents(docs)] == ["a-1", "notes/b.txt", None]
    blocks = documents_to_blocks(docs)
    assert [b.get("id") for b in blocks] == ["a-1", "notes/b.txt", None]
    msg = HumanMessage(content=[*blocks, {"type": "text", "text": "q"}])
    assert [s.doc_id for s in parse_messages([msg]).sources] == ["a-1", "notes/b.txt", None]
