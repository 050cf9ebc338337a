"""The compressor inside LangChain retrievers and the LCEL RAG helper (tiny pipeline).

Embeddings here are LangChain's deterministic fake embeddings so the unit tier stays
model-free; the same flows over MiniLM and the real E2LLM model are integration tests.
"""

from __future__ import annotations

from unittest import mock

import pytest
from langchain_classic.chains.combine_documents import create_stuff_documents_chain
from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_classic.retrievers.document_compressors import DocumentCompressorPipeline
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.vectorstores import InMemoryVectorStore
from langchain_text_splitters import RecursiveCharacterTextSplitter

from e2llm_integrations.core import E2LLMPipeline
from e2llm_integrations.langchain import (
    CORPUS_KEY,
    E2LLMChat,
    E2LLMDocumentCompressor,
    create_e2llm_rag_chain,
)
from e2llm_integrations.langchain.chains import build_messages

TOPICS = ["bridge", "market", "river", "school", "lighthouse", "harbour"]
TEXTS = [
    f"Note {i} about the {t}. The {t} was built in {1900 + 7 * i} by the town council, "
    f"and it was renovated in {1950 + 3 * i} after a long public debate about its cost."
    for i, t in enumerate(TOPICS)
]


@pytest.fixture
def retriever() -> object:
    store = InMemoryVectorStore(DeterministicFakeEmbedding(size=32))
    store.add_documents(
        [Document(t, metadata={"topic": k}) for t, k in zip(TEXTS, TOPICS, strict=True)]
    )
    return store.as_retriever(search_kwargs={"k": 4})


@pytest.fixture
def chat(tiny_pipeline: E2LLMPipeline) -> E2LLMChat:
    return E2LLMChat(pipeline=tiny_pipeline, max_tokens=4)


def test_contextual_compression_retriever(tiny_pipeline: E2LLMPipeline, retriever: object) -> None:
    base = retriever.invoke("bridge")  # type: ignore[attr-defined]
    compressed = ContextualCompressionRetriever(
        base_compressor=E2LLMDocumentCompressor(pipeline=tiny_pipeline, top_k=3),
        base_retriever=retriever,  # type: ignore[arg-type]
    ).invoke("bridge")
    assert 1 <= len(compressed) <= 3
    order = [d.metadata["topic"] for d in base]
    kept = [d.metadata["topic"] for d in compressed]
    assert kept == [t for t in order if t in kept], "retriever order must be kept"
    assert all(CORPUS_KEY in d.metadata and "relevance_score" in d.metadata for d in compressed)


def test_document_compressor_pipeline(tiny_pipeline: E2LLMPipeline, retriever: object) -> None:
    splitter = RecursiveCharacterTextSplitter(chunk_size=80, chunk_overlap=0)
    pipeline = DocumentCompressorPipeline(
        transformers=[splitter, E2LLMDocumentCompressor(pipeline=tiny_pipeline, top_k=3)]
    )
    docs = retriever.invoke("market")  # type: ignore[attr-defined]
    pieces = splitter.split_documents(docs)
    out = pipeline.compress_documents(docs, "market")
    assert len(pieces) > len(docs) and 1 <= len(out) <= 3
    positions = [
        next(i for i, p in enumerate(pieces) if p.page_content.startswith(d.page_content[:20]))
        for d in out
    ]
    assert positions == sorted(positions), "split order must be kept"
    assert all(d.metadata[CORPUS_KEY] and d.metadata["e2llm_n_chunks"] >= 1 for d in out)


def test_rag_chain_answers_from_retrieved_documents(
    tiny_pipeline: E2LLMPipeline, retriever: object, chat: E2LLMChat
) -> None:
    chain = create_e2llm_rag_chain(retriever, chat)  # type: ignore[arg-type]
    with mock.patch.object(tiny_pipeline, "stream_prepared", wraps=tiny_pipeline.stream_prepared) as ask:
        answer = chain.invoke("When was the bridge built?")
    corpus, _sources, question = ask.call_args.args[:3]
    assert isinstance(answer, str)
    assert question == "When was the bridge built?"
    assert len({c.doc_id for c in corpus.chunks}) == 4  # one per retrieved document
    assert chain.invoke({"question": "When was the bridge built?"}) == answer
    assert "".join(chain.stream("When was the bridge built?")) == answer


def test_rag_chain_with_compressor_returns_documents(
    tiny_pipeline: E2LLMPipeline, retriever: object, chat: E2LLMChat
) -> None:
    compressor = E2LLMDocumentCompressor(pipeline=tiny_pipeline, top_k=2)
    chain = create_e2llm_rag_chain(
        retriever, chat, compressor, system="Be brief.", return_documents=True
    )  # type: ignore[arg-type]
    with mock.patch.object(
        tiny_pipeline, "encode_chunks", wraps=tiny_pipeline.encode_chunks
    ) as enc:
        out = chain.invoke("When was the market built?")
    assert enc.call_count == 1, "documents are encoded once, by the compressor"
    assert set(out) == {"question", "documents", "answer"} and isinstance(out["answer"], str)
    assert sum(d.metadata["e2llm_n_chunks"] for d in out["documents"]) == 2


async def test_rag_chain_async(
    tiny_pipeline: E2LLMPipeline, retriever: object, chat: E2LLMChat
) -> None:
    compressor = E2LLMDocumentCompressor(pipeline=tiny_pipeline, top_k=2)
    chain = create_e2llm_rag_chain(retriever, chat, compressor)  # type: ignore[arg-type]
    assert await chain.ainvoke("When was the river built?") == chain.invoke(
        "When was the river built?"
    )


def test_rag_chain_rejects_bad_input(retriever: object, chat: E2LLMChat) -> None:
    chain = create_e2llm_rag_chain(retriever, chat)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="question string"):
        chain.invoke({"query": "wrong key"})


def test_build_messages_puts_documents_before_question() -> None:
    messages = build_messages(
        {"question": "Q?", "documents": [Document("d1", metadata={CORPUS_KEY: "h"})]}, system="S"
    )
    assert messages[0].content == "S"
    blocks = messages[1].content
    assert [b["type"] for b in blocks] == ["text-plain", "text"]  # type: ignore[index]
    assert blocks[0]["extras"] == {CORPUS_KEY: "h"}  # type: ignore[index]


def test_classic_stuff_chain_is_chunked(tiny_pipeline: E2LLMPipeline) -> None:
    chat = E2LLMChat(pipeline=tiny_pipeline, max_tokens=2, auto_context_chars=300)
    prompt = ChatPromptTemplate.from_messages(
        [("human", "Answer from the context.\n\n{context}\n\nQuestion: {question}\nAnswer:")]
    )
    chain = create_stuff_documents_chain(chat, prompt)
    docs = [Document(t) for t in TEXTS]
    with mock.patch.object(tiny_pipeline, "stream_prepared", wraps=tiny_pipeline.stream_prepared) as ask:
        chain.invoke({"context": docs, "question": "When was the school built?"})
    corpus, _sources, question = ask.call_args.args[:3]
    assert question == "Question: When was the school built?\nAnswer:"
    assert len(corpus) == len(
        tiny_pipeline.chunk(["Answer from the context.\n\n" + "\n\n".join(TEXTS)])
    )
