"""``E2LLMDocumentCompressor``: encode retrieved documents once, optionally keep the best chunks.

The chunks go into :data:`CORPUS_STORE` under a key in ``Document.metadata[CORPUS_KEY]``;
``E2LLMChat`` reads them (or re-encodes the text, with a warning, when they are gone).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from langchain_core.callbacks import Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document

from .._fields import PrefilterFields
from ..core.chat import DocumentSource, source_corpora
from ..core.corpus import EncodedCorpus
from ..core.corpus_cache import DEFAULT_CACHE_BYTES, CorpusStore
from ..core.pipeline import E2LLMPipeline
from ..retrieval.faiss_index import ChunkPrefilter, ScoredChunk
from ._base import PipelineSource

logger = logging.getLogger(__name__)

CORPUS_KEY = "e2llm_corpus_id"
"""Metadata / block ``extras`` key holding a handle into :data:`CORPUS_STORE`."""
DEFAULT_STORE_BYTES = DEFAULT_CACHE_BYTES
"""Default bound on the feature bytes kept by :data:`CORPUS_STORE`."""
N_CHUNKS_KEY = "e2llm_n_chunks"
CONTEXT_TOKENS_KEY = "e2llm_context_tokens"
SCORE_KEY = "relevance_score"
CHUNK_SCORES_KEY = "e2llm_chunk_scores"
CHUNK_SPANS_KEY = "e2llm_chunk_spans"


CORPUS_STORE = CorpusStore()
"""The process-wide store (``core.corpus_cache.CorpusStore``) the compressor writes to and
the chat model reads from."""


class E2LLMDocumentCompressor(PipelineSource, PrefilterFields, BaseDocumentCompressor):
    """Chunk and encode documents with the E2LLM encoder, so ``E2LLMChat`` reads them as is.

    Each document gains ``e2llm_corpus_id``, ``e2llm_n_chunks`` and ``e2llm_context_tokens``;
    with ``top_k`` / ``score_threshold`` also ``relevance_score`` (best chunk's cosine),
    ``e2llm_chunk_scores`` and ``e2llm_chunk_spans``, and only kept chunks stay (in order;
    a document with none is dropped).

    Example:
        >>> compressor = E2LLMDocumentCompressor(top_k=16)  # doctest: +SKIP
        >>> retriever = ContextualCompressionRetriever(
        ...     base_compressor=compressor, base_retriever=store.as_retriever(k=20)
        ... )  # doctest: +SKIP
        >>> docs = retriever.invoke("Who founded the company?")  # doctest: +SKIP
        >>> E2LLMChat().invoke("Who founded the company?", documents=docs)  # doctest: +SKIP
    """

    @property
    def prefilter(self) -> ChunkPrefilter | None:
        """The FAISS chunk prefilter (``chunk_prefilter``), or ``None`` when every chunk is kept."""
        return self.chunk_prefilter

    def compress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        """Encode ``documents`` (and keep the chunks most similar to ``query``)."""
        kept = [d for d in documents if d.page_content.strip() or d.metadata.get(CORPUS_KEY)]
        if len(kept) < len(documents):
            logger.warning("Dropped %d empty document(s).", len(documents) - len(kept))
        if not kept:
            return []
        pipeline = self.get_pipeline()
        corpora = encode_documents(pipeline, kept)
        prefilter = self.prefilter
        scores: list[list[ScoredChunk] | None] = [None] * len(corpora)
        if prefilter is not None:
            scores = list(prefilter.per_document(pipeline, corpora, query))
        out = []
        for doc, corpus, doc_scores in zip(kept, corpora, scores, strict=True):
            if not len(corpus) or (doc_scores is not None and not doc_scores):
                continue
            out.append(_compressed(doc, corpus, doc_scores))
        return out

    async def acompress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        """Like :meth:`compress_documents`, in a worker thread (the event loop stays free)."""
        return await asyncio.to_thread(self.compress_documents, documents, query, callbacks)


def encode_documents(pipeline: E2LLMPipeline, documents: Sequence[Document]) -> list[EncodedCorpus]:
    """Each document's chunks: reused from the store under its handle, else encoded (together)."""
    sources = [DocumentSource(d.page_content, handle=d.metadata.get(CORPUS_KEY)) for d in documents]
    return source_corpora(pipeline, sources, CORPUS_STORE)


def _compressed(doc: Document, corpus: EncodedCorpus, scores: list[ScoredChunk] | None) -> Document:
    """A copy of ``doc`` carrying a handle to (the kept part of) its encoded chunks."""
    metadata = dict(doc.metadata)
    text = doc.page_content
    if scores is not None:
        everything = len(scores) == len(corpus)
        corpus = corpus.select([s.index for s in scores])
        metadata[SCORE_KEY] = max(s.score for s in scores)
        metadata[CHUNK_SCORES_KEY] = [round(s.score, 6) for s in scores]
        metadata[CHUNK_SPANS_KEY] = [[c.start, c.end] for c in corpus.chunks]
        if not everything:
            text = "\n\n".join(c.text for c in corpus.chunks)
    metadata[CORPUS_KEY] = CORPUS_STORE.put(corpus)
    metadata[N_CHUNKS_KEY] = len(corpus)
    metadata[CONTEXT_TOKENS_KEY] = corpus.total_context_tokens
    return Document(page_content=text, metadata=metadata, id=doc.id)
