"""E2LLMDocumentCompressor over the tiny pipeline: handles, prefilter, order, reuse, async."""

from __future__ import annotations

from unittest import mock

import pytest
from langchain_core.documents import Document
from pydantic import ValidationError

from e2llm_integrations.core import E2LLMPipeline, EncodedCorpus
from e2llm_integrations.langchain import (
    CORPUS_KEY,
    CORPUS_STORE,
    E2LLMChat,
    E2LLMDocumentCompressor,
)
from e2llm_integrations.retrieval import ChunkPrefilter

PARAGRAPHS = [
    "The Jade Bridge opened in 1931. It spans 240 metres across the Olm river. "
    "Its architect, Mara Voss, also designed the northern lighthouse and two schools. "
    "Voss trained in Delft and returned to the town in 1925 to lead the works office. "
    "The bridge was repainted green in 1978, which gave it its present name.",
    "Ferries stopped running once the bridge opened. The old quay became a market "
    "that sells fish, bread and cheese every morning except Sunday. "
    "The market hall burned down in 1952 and was rebuilt in brick two years later. "
    "Today about sixty traders rent stalls there from the harbour board.",
    "In winter the river freezes near the delta. Skaters gather under the bridge, "
    "and the town council hires guards to test the ice each week. "
    "A race over eleven kilometres is held whenever the ice is thick enough, "
    "which happened only four times in the last thirty years.",
]


@pytest.fixture
def docs() -> list[Document]:
    return [
        Document(p, metadata={"source": f"p{i}"}, id=f"id{i}") for i, p in enumerate(PARAGRAPHS)
    ]


def stored(doc: Document) -> EncodedCorpus:
    corpus = CORPUS_STORE.get(doc.metadata[CORPUS_KEY])
    assert corpus is not None
    return corpus


def test_encodes_every_document_and_keeps_metadata(
    tiny_pipeline: E2LLMPipeline, docs: list[Document]
) -> None:
    out = E2LLMDocumentCompressor(pipeline=tiny_pipeline).compress_documents(docs, "bridge")
    assert [d.id for d in out] == ["id0", "id1", "id2"]
    for doc, original in zip(out, docs, strict=True):
        corpus = stored(doc)
        assert doc.page_content == original.page_content
        assert doc.metadata["source"] == original.metadata["source"]
        assert (
            len(corpus)
            == doc.metadata["e2llm_n_chunks"]
            == len(tiny_pipeline.chunk([original.page_content]))
        )
        assert doc.metadata["e2llm_context_tokens"] == corpus.total_context_tokens
        assert "relevance_score" not in doc.metadata
    assert CORPUS_KEY not in docs[0].metadata, "input documents must not be mutated"


def test_prefilter_keeps_top_chunks_in_document_order(
    tiny_pipeline: E2LLMPipeline, docs: list[Document]
) -> None:
    query = "Who designed the bridge?"
    everything = tiny_pipeline.encode([d.page_content for d in docs])
    assert len(everything) > 4
    expected = ChunkPrefilter(top_k=3).filter(tiny_pipeline, everything, query)[1]
    out = E2LLMDocumentCompressor(pipeline=tiny_pipeline, top_k=3).compress_documents(docs, query)
    kept_spans = [(d.id, tuple(s)) for d in out for s in d.metadata["e2llm_chunk_spans"]]
    want = [
        (
            f"id{everything.chunks[c.index].doc_id}",
            (everything.chunks[c.index].start, everything.chunks[c.index].end),
        )
        for c in expected
    ]
    assert kept_spans == want  # same chunks, document order
    assert sum(d.metadata["e2llm_n_chunks"] for d in out) == 3
    partial = 0
    for doc in out:
        scores = doc.metadata["e2llm_chunk_scores"]
        assert doc.metadata["relevance_score"] == pytest.approx(max(scores))
        corpus = stored(doc)
        if len(corpus) < len(tiny_pipeline.chunk([PARAGRAPHS[int(doc.id[-1])]])):
            partial += 1
            assert doc.page_content == "\n\n".join(c.text for c in corpus.chunks)
        else:
            assert doc.page_content == PARAGRAPHS[int(doc.id[-1])]
    assert partial > 0


def test_score_threshold(tiny_pipeline: E2LLMPipeline, docs: list[Document]) -> None:
    query = "frozen river"
    everything = tiny_pipeline.encode([d.page_content for d in docs])
    scores = sorted(s.score for s in ChunkPrefilter().filter(tiny_pipeline, everything, query)[1])
    threshold = scores[len(scores) // 2]
    out = E2LLMDocumentCompressor(
        pipeline=tiny_pipeline, score_threshold=threshold
    ).compress_documents(docs, query)
    kept = [s for d in out for s in d.metadata["e2llm_chunk_scores"]]
    assert len(kept) == sum(s >= threshold for s in scores)
    assert min(kept) >= threshold - 1e-6
    none = E2LLMDocumentCompressor(
        pipeline=tiny_pipeline, score_threshold=min(1.0, scores[-1] + 1e-3)
    )
    assert none.compress_documents(docs, query) == []


def test_reuses_encoded_documents_and_feeds_chat_without_re_encoding(
    tiny_pipeline: E2LLMPipeline, docs: list[Document]
) -> None:
    compressor = E2LLMDocumentCompressor(pipeline=tiny_pipeline)
    first = compressor.compress_documents(docs, "bridge")
    chat = E2LLMChat(pipeline=tiny_pipeline, max_tokens=2)
    with mock.patch.object(
        tiny_pipeline, "encode_chunks", wraps=tiny_pipeline.encode_chunks
    ) as enc:
        again = E2LLMDocumentCompressor(pipeline=tiny_pipeline, top_k=2).compress_documents(
            first, "bridge"
        )
        answer = chat.invoke("Who designed the bridge?", documents=first)
    assert enc.call_count == 0
    assert sum(d.metadata["e2llm_n_chunks"] for d in again) == 2
    assert answer.response_metadata["n_chunks"] == sum(d.metadata["e2llm_n_chunks"] for d in first)


def test_empty_inputs(
    tiny_pipeline: E2LLMPipeline, docs: list[Document], caplog: pytest.LogCaptureFixture
) -> None:
    compressor = E2LLMDocumentCompressor(pipeline=tiny_pipeline, top_k=2)
    assert compressor.compress_documents([], "q") == []
    out = compressor.compress_documents([Document("   "), docs[0]], "bridge")
    assert [d.id for d in out] == ["id0"] and "Dropped 1 empty" in caplog.text
    with pytest.raises(ValueError, match="non-empty query"):
        compressor.compress_documents(docs, "  ")


@pytest.mark.parametrize(
    "kwargs", [{"top_k": 0}, {"score_threshold": 1.5}, {"score_threshold": -2}]
)
def test_invalid_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValidationError):
        E2LLMDocumentCompressor(**kwargs)


async def test_async_matches_sync(tiny_pipeline: E2LLMPipeline, docs: list[Document]) -> None:
    compressor = E2LLMDocumentCompressor(pipeline=tiny_pipeline, top_k=3)
    sync = compressor.compress_documents(docs, "bridge")
    async_ = await compressor.acompress_documents(docs, "bridge")

    def strip(ds: list[Document]) -> list[tuple[str, dict[str, object]]]:
        return [
            (d.page_content, {k: v for k, v in d.metadata.items() if k != CORPUS_KEY}) for d in ds
        ]

    assert strip(list(async_)) == strip(list(sync))
