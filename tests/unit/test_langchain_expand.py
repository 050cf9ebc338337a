"""Selective expansion through E2LLMChat: the same sources as ``pipe.ask``, cited per document.

Every expectation is computed with the core pipeline on the same chunks
(``pipe.ask(corpus, question, expand_top_k=k)``), so a wrapper that drops, reorders,
re-scores or mislabels an expanded chunk fails here.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any
from unittest import mock

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.outputs import LLMResult
from langchain_core.vectorstores import InMemoryVectorStore

from e2llm_integrations.core import E2LLMPipeline, EncodedCorpus, GenerationConfig
from e2llm_integrations.core.expansion import DEFAULT_EXPAND_TOP_K, Source
from e2llm_integrations.langchain import (
    CORPUS_KEY,
    CORPUS_STORE,
    E2LLMChat,
    E2LLMDocumentCompressor,
    PlainDecoderChat,
    create_e2llm_rag_chain,
    document_id,
)

TEXTS = [
    "The Jade Bridge was opened in 1931 by the river authority. It spans 240 metres. "
    "Its architect, Mara Voss, also designed the northern lighthouse. The bridge was "
    "repainted green in 1978, which gave it its present name.",
    "Ferries stopped running once the bridge opened, and the old quay became a market. "
    "The market hall burned down in 1952 and was rebuilt in brick two years later. "
    "Today about sixty traders rent stalls there from the harbour board.",
    "In winter the river freezes near the delta. Skaters gather under the bridge, and the "
    "town council hires guards to test the ice each week. A race over eleven kilometres "
    "is held whenever the ice is thick enough.",
]
QUESTION = "Who was the architect of the Jade Bridge?"
MAX_TOKENS = 4


@pytest.fixture
def chat(tiny_pipeline: E2LLMPipeline) -> E2LLMChat:
    return E2LLMChat(pipeline=tiny_pipeline, model="e2llm-tiny", max_tokens=MAX_TOKENS)


def _docs() -> list[Document]:
    """An id, a ``source`` only, and neither: the three ways a document is named."""
    return [
        Document(TEXTS[0], id="bridge-doc"),
        Document(TEXTS[1], metadata={"source": "notes/market.txt"}),
        Document(TEXTS[2]),
    ]


NAMES = {"0": "bridge-doc", "1": "notes/market.txt", "2": "2"}


def _expected(
    pipe: E2LLMPipeline, corpus: EncodedCorpus, k: int | None, names: dict[str, str]
) -> list[dict[str, Any]]:
    """What the core reports for ``corpus``, with doc ids renamed as the chat names them."""
    result = pipe.ask(corpus, QUESTION, GenerationConfig(max_new_tokens=MAX_TOKENS), expand_top_k=k)
    return [_renamed(s, names) for s in result.sources]


def _renamed(source: Source, names: dict[str, str]) -> dict[str, Any]:
    return {**source.to_dict(), "doc_id": names[source.doc_id]}


def _assert_same_sources(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    assert [{k: v for k, v in s.items() if k != "score"} for s in got] == [
        {k: v for k, v in s.items() if k != "score"} for s in want
    ]
    assert [s["score"] for s in got] == pytest.approx([s["score"] for s in want], abs=2e-4)


@pytest.mark.parametrize("k", [1, 3])
def test_invoke_cites_what_the_pipeline_expands(tiny_pipeline: E2LLMPipeline, k: int) -> None:
    chat = E2LLMChat(pipeline=tiny_pipeline, max_tokens=MAX_TOKENS, expand_top_k=k)
    result = chat.invoke(QUESTION, documents=_docs())
    meta = result.response_metadata
    want = _expected(tiny_pipeline, tiny_pipeline.encode(TEXTS), k, NAMES)
    assert len(want) == k
    _assert_same_sources(meta["sources"], want)
    assert meta["expanded_chunks"] == k
    chunk_indices = [s["chunk_index"] for s in meta["sources"]]
    assert chunk_indices == sorted(chunk_indices)  # document order, as the decoder reads them
    for s in meta["sources"]:  # each span is the chunk's text in its own document
        text = TEXTS[[*NAMES.values()].index(s["doc_id"])]
        assert text[s["start"] : s["end"]] == s["text"]


def test_default_is_the_core_default(chat: E2LLMChat, tiny_pipeline: E2LLMPipeline) -> None:
    assert chat.expand_top_k == DEFAULT_EXPAND_TOP_K
    corpus = tiny_pipeline.encode(TEXTS)
    assert len(corpus) > DEFAULT_EXPAND_TOP_K, "the default must pick, not show everything"
    meta = chat.invoke(QUESTION, documents=_docs()).response_metadata
    assert meta["expanded_chunks"] == DEFAULT_EXPAND_TOP_K
    _assert_same_sources(meta["sources"], _expected(tiny_pipeline, corpus, None, NAMES))


def test_soft_only_has_no_sources_and_fewer_positions(
    chat: E2LLMChat, tiny_pipeline: E2LLMPipeline
) -> None:
    soft = chat.invoke(QUESTION, documents=_docs(), expand_top_k=0)
    expanded = chat.invoke(QUESTION, documents=_docs(), expand_top_k=2)
    assert (
        soft.response_metadata["sources"] == [] and soft.response_metadata["expanded_chunks"] == 0
    )
    n_chunks = soft.response_metadata["n_chunks"]
    assert expanded.response_metadata["n_chunks"] == n_chunks
    model = tiny_pipeline.model
    excerpts = [s["text"] for s in expanded.response_metadata["sources"]]
    assert soft.usage_metadata is not None and expanded.usage_metadata is not None
    assert soft.usage_metadata["input_tokens"] == len(model.prompt(QUESTION)) + n_chunks
    assert (
        expanded.usage_metadata["input_tokens"]
        == len(model.prompt(QUESTION, excerpts=excerpts)) + n_chunks
    )
    assert soft.usage_metadata["input_tokens"] < expanded.usage_metadata["input_tokens"]


def test_excerpts_reach_the_decoder(chat: E2LLMChat, tiny_pipeline: E2LLMPipeline) -> None:
    with mock.patch.object(tiny_pipeline, "stream_prepared", wraps=tiny_pipeline.stream_prepared) as stream:
        result = chat.invoke(QUESTION, documents=_docs(), expand_top_k=2)
    excerpts = stream.call_args.args[4]["excerpts"]
    assert excerpts == [s["text"] for s in result.response_metadata["sources"]]
    assert len(excerpts) == 2


def test_stream_puts_sources_on_the_last_chunk(chat: E2LLMChat) -> None:
    full = chat.invoke(QUESTION, documents=_docs(), expand_top_k=2)
    chunks = list(chat.stream(QUESTION, documents=_docs(), expand_top_k=2))
    assert all("sources" not in c.response_metadata for c in chunks[:-1])
    last = chunks[-1]
    assert last.chunk_position == "last"
    assert last.response_metadata["sources"] == full.response_metadata["sources"]
    assert last.response_metadata["expanded_chunks"] == 2
    assert "".join(c.text for c in chunks) == full.text
    first = chunks[0].usage_metadata
    assert full.usage_metadata is not None and first is not None
    assert first["input_tokens"] == full.usage_metadata["input_tokens"]  # excerpts counted


async def test_async_and_batch_cite_the_same_sources(chat: E2LLMChat) -> None:
    bound = chat.model_copy(update={"expand_top_k": 2})
    sync = bound.invoke(QUESTION, documents=_docs()).response_metadata["sources"]
    assert len(sync) == 2
    async_result = await bound.ainvoke(QUESTION, documents=_docs())
    assert async_result.response_metadata["sources"] == sync
    chunks = [c async for c in bound.astream(QUESTION, documents=_docs())]
    assert chunks[-1].response_metadata["sources"] == sync
    batch = bound.batch([[HumanMessage(QUESTION)]] * 2, documents=_docs())
    assert [m.response_metadata["sources"] for m in batch] == [sync, sync]


def test_block_ids_and_titles_name_the_chunks(
    chat: E2LLMChat, tiny_pipeline: E2LLMPipeline
) -> None:
    blocks: list[Any] = [
        {"type": "text-plain", "mime_type": "text/plain", "text": TEXTS[0], "id": "report-q3"},
        {"type": "text-plain", "mime_type": "text/plain", "text": TEXTS[1], "title": "Market"},
    ]
    message = HumanMessage(content=[*blocks, {"type": "text", "text": QUESTION}])
    result = chat.invoke([message], expand_top_k=8)  # more than there are chunks: all of them
    encoded = [TEXTS[0], f"Market\n\n{TEXTS[1]}"]  # a title is the first line
    corpus = tiny_pipeline.encode(encoded)
    want = _expected(tiny_pipeline, corpus, 8, {"0": "report-q3", "1": "1"})
    assert len(want) == len(corpus)
    _assert_same_sources(result.response_metadata["sources"], want)
    for s in result.response_metadata["sources"]:
        text = encoded[0] if s["doc_id"] == "report-q3" else encoded[1]
        assert text[s["start"] : s["end"]] == s["text"]


def test_compressed_documents_are_expanded_without_re_encoding(
    chat: E2LLMChat, tiny_pipeline: E2LLMPipeline
) -> None:
    compressor = E2LLMDocumentCompressor(pipeline=tiny_pipeline, top_k=5)
    compressed = compressor.compress_documents(_docs(), QUESTION)
    stored = [CORPUS_STORE.get(d.metadata[CORPUS_KEY]) for d in compressed]
    assert sum(len(c) for c in stored if c is not None) == 5
    with mock.patch.object(
        tiny_pipeline, "encode_chunks", wraps=tiny_pipeline.encode_chunks
    ) as enc:
        result = chat.invoke(QUESTION, documents=compressed, expand_top_k=2)
    assert enc.call_count == 0, "the compressor's chunks are used as they are"
    names = [document_id(d) or str(i) for i, d in enumerate(compressed)]
    corpus = EncodedCorpus.concat(
        [_named(c, name) for c, name in zip(stored, names, strict=True) if c is not None]
    )
    want = _expected(tiny_pipeline, corpus, 2, {n: n for n in names})
    assert len(want) == 2
    _assert_same_sources(result.response_metadata["sources"], want)
    kept = {
        (name, tuple(span))
        for name, d in zip(names, compressed, strict=True)
        for span in d.metadata["e2llm_chunk_spans"]
    }
    assert {(s["doc_id"], (s["start"], s["end"])) for s in want} <= kept  # among the kept chunks


def _named(corpus: EncodedCorpus, name: str) -> EncodedCorpus:
    chunks = [replace(c, doc_id=name) for c in corpus.chunks]
    return EncodedCorpus(
        chunks, corpus.features, corpus.mask, corpus.context_tokens, corpus.fingerprint
    )


class LastChatResult(BaseCallbackHandler):
    def __init__(self) -> None:
        self.messages: list[AIMessage] = []

    def on_llm_end(self, response: LLMResult, **kwargs: Any) -> None:
        self.messages.append(response.generations[0][0].message)  # type: ignore[attr-defined]


def test_rag_chain_expands_and_cites_retrieved_documents(tiny_pipeline: E2LLMPipeline) -> None:
    store = InMemoryVectorStore(DeterministicFakeEmbedding(size=32))
    store.add_documents(
        [Document(t, id=f"doc-{i}", metadata={"source": f"s{i}"}) for i, t in enumerate(TEXTS)]
    )
    chat = E2LLMChat(pipeline=tiny_pipeline, max_tokens=MAX_TOKENS, expand_top_k=2)
    compressor = E2LLMDocumentCompressor(pipeline=tiny_pipeline, top_k=4)
    chain = create_e2llm_rag_chain(
        store.as_retriever(search_kwargs={"k": 3}), chat, compressor, return_documents=True
    )
    seen = LastChatResult()
    out = chain.invoke(QUESTION, config={"callbacks": [seen]})
    (message,) = seen.messages
    sources = message.response_metadata["sources"]
    assert message.text == out["answer"] and message.response_metadata["expanded_chunks"] == 2
    stored = [CORPUS_STORE.get(d.metadata[CORPUS_KEY]) for d in out["documents"]]
    ids = [d.id for d in out["documents"]]
    assert all(isinstance(i, str) for i in ids) and all(c is not None for c in stored)
    corpus = EncodedCorpus.concat(
        [_named(c, i) for c, i in zip(stored, ids, strict=True)]  # type: ignore[arg-type]
    )
    _assert_same_sources(sources, _expected(tiny_pipeline, corpus, 2, {i: i for i in ids}))
    assert {s["doc_id"] for s in sources} <= set(ids)  # the Document ids, not positions


@pytest.mark.parametrize(
    ("value", "error"), [(-1, ValueError), (2.5, TypeError), (True, TypeError)]
)
def test_bad_expand_top_k_is_refused(
    chat: E2LLMChat, tiny_pipeline: E2LLMPipeline, value: Any, error: type[Exception]
) -> None:
    with pytest.raises(error, match="expand_top_k"):
        E2LLMChat(pipeline=tiny_pipeline, expand_top_k=value)
    with pytest.raises(error, match="expand_top_k"):
        chat.invoke(QUESTION, documents=_docs(), expand_top_k=value)
    with pytest.raises(error, match="expand_top_k"):
        list(chat.stream(QUESTION, documents=_docs(), expand_top_k=value))


def test_plain_decoder_chat_is_unaffected(tiny_pipeline: E2LLMPipeline) -> None:
    plain = PlainDecoderChat(pipeline=tiny_pipeline, max_tokens=2)
    meta = plain.invoke(QUESTION, config={}).response_metadata
    assert "sources" not in meta and "expanded_chunks" not in meta
    with pytest.raises(TypeError, match="unsupported call option"):
        plain.invoke(QUESTION, expand_top_k=2)
