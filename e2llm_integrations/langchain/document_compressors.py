"""``E2LLMDocumentCompressor``: encode retrieved documents once, optionally keep the best chunks."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from langchain_core.callbacks import Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document

from .._fields import PrefilterFields
from ..core.corpus import EncodedCorpus
from ..core.pipeline import E2LLMPipeline
from ..retrieval.faiss_index import ChunkPrefilter, ScoredChunk
from ._base import PipelineSource
from ._runtime import CORPUS_KEY, CORPUS_STORE, stored_corpus

logger = logging.getLogger(__name__)

N_CHUNKS_KEY = "e2llm_n_chunks"
CONTEXT_TOKENS_KEY = "e2llm_context_tokens"
SCORE_KEY = "relevance_score"
CHUNK_SCORES_KEY = "e2llm_chunk_scores"
CHUNK_SPANS_KEY = "e2llm_chunk_spans"


class E2LLMDocumentCompressor(PipelineSource, PrefilterFields, BaseDocumentCompressor):
    """Chunk and encode documents with the E2LLM encoder, so ``E2LLMChat`` reads them as is.

    Each returned document keeps its metadata and gains:

    * ``e2llm_corpus_id``: a handle to its encoded chunks in a process-local store
      (``E2LLMChat`` uses them instead of encoding the text again);
    * ``e2llm_n_chunks`` and ``e2llm_context_tokens``: what the chunks stand for;
    * with a prefilter (``top_k`` and/or ``score_threshold``): ``relevance_score`` (best
      chunk's cosine similarity to the query), ``e2llm_chunk_scores`` and
      ``e2llm_chunk_spans`` (character spans of the kept chunks). Documents keep their
      original order; a document none of whose chunks is kept is dropped, and one with
      only some chunks kept has those chunks' text as ``page_content``.

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
        """The FAISS chunk prefilter, or ``None`` when every chunk is kept."""
        return ChunkPrefilter.from_options(self.prefilter_options)

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
        scores = self._select(pipeline, corpora, query)
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

    def _select(
        self, pipeline: E2LLMPipeline, corpora: list[EncodedCorpus], query: str
    ) -> list[list[ScoredChunk] | None]:
        """Per document, its kept chunks (local indices) with scores; ``None``: keep all."""
        prefilter = self.prefilter
        if prefilter is None:
            return [None] * len(corpora)
        return list(prefilter.per_document(pipeline, corpora, query))


def encode_documents(pipeline: E2LLMPipeline, documents: Sequence[Document]) -> list[EncodedCorpus]:
    """Each document's encoded chunks: reused from the store when it has a usable handle,
    else encoded (all such documents together, in one pass)."""
    corpora = [stored_corpus(pipeline, doc.metadata.get(CORPUS_KEY)) for doc in documents]
    missing = [i for i, c in enumerate(corpora) if c is None]
    texts = [documents[i].page_content for i in missing]
    encoded = pipeline.encode_texts(texts) if missing else []
    for i, corpus in zip(missing, encoded, strict=True):
        corpora[i] = corpus
    return [c for c in corpora if c is not None]


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
