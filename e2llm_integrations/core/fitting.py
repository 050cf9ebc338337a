"""Fitting a call into the decoder's window: which chunks and excerpts an answer reads.

Document sets larger than the decoder's window are answered too: the positions they
need (chunks x soft tokens per chunk, next to the prompt) are known from the chunking,
before anything is encoded. When they do not fit, the chunks are encoded in bounded
batches and only the chunks most similar to the question that fit are kept (a running
top set, the same cosine keys as selective expansion); the call warns and reports
``usage.dropped_chunks``. ``on_overflow="error"`` refuses such input instead, up front.
Excerpts (selective expansion) that would not fit are dropped, worst first, with a
warning.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from .chunking import Chunk, Document, check_prompt_text
from .corpus import (
    EncodedCorpus,
    OnOverflow,
    TopChunks,
    check_on_overflow,
    dropped_message,
    overflow_capacity,
    top_chunks,
)
from .expansion import DEFAULT_EXPAND_TOP_K, Source, check_top_k, chunk_scores, document_order
from .expansion import expand as expand_sources
from .generation import GenerationConfig

if TYPE_CHECKING:
    from .pipeline import E2LLMPipeline

logger = logging.getLogger(__name__)

CHUNK_FILL = 0.75
"""Chunks are cut back to sentence ends, so they average about this share of chunk_tokens."""
QUESTION_RESERVE = 128
"""Decoder positions kept free for the question when the context window is computed."""
Prepared = tuple[EncodedCorpus, list[Source], dict[str, Any]]
"""What :func:`prepare` returns: the corpus, the expanded chunks, the prompt keywords."""


def chunks_of(pipe: E2LLMPipeline, documents: Iterable[Document]) -> list[Chunk]:
    """The documents' chunks; refuses a document set with no text at all."""
    chunks = pipe.chunk(documents)
    if not chunks:
        raise ValueError(
            "No text to encode: every document was empty or whitespace only. Pass documents "
            "with text."
        )
    return chunks


def prepare(
    pipe: E2LLMPipeline,
    context: EncodedCorpus | Iterable[Document],
    question: str,
    generation: GenerationConfig | None,
    expand_top_k: int | None,
    on_overflow: OnOverflow,
    prompt: dict[str, Any],
    batch: int,
) -> Prepared:
    """Encode (if needed) and pick the chunks and excerpts that fit the window.

    See :meth:`E2LLMPipeline.prepare`, which this implements; ``batch`` bounds the
    chunks encoded at once when the documents overflow the window.
    """
    check_prompt_text(question, prompt)
    mode = check_on_overflow(on_overflow)
    cfg = generation or GenerationConfig()
    corpus, selected = fitting_corpus(pipe, context, question, cfg, mode, prompt, batch)
    if "excerpts" in prompt:
        shown, kwargs = [], prompt
    else:
        top_k = DEFAULT_EXPAND_TOP_K if expand_top_k is None else check_top_k(expand_top_k)
        best = pipe.expand(corpus, question, top_k)
        if selected and best:
            corpus, best = room_for_excerpts(pipe, corpus, question, cfg, best, prompt)
        shown = document_order(fit_excerpts(pipe, corpus, question, cfg, best, prompt))
        kwargs = {**prompt, "excerpts": [s.text for s in shown]}
    if selected:
        message = dropped_message(corpus, pipe.max_positions)
        warnings.warn(message, UserWarning, stacklevel=4)
        logger.warning(message)
    return corpus, shown, kwargs


def check_fingerprint(corpus: EncodedCorpus, fingerprint: dict[str, Any]) -> EncodedCorpus:
    """``corpus`` if it was encoded with the settings ``fingerprint`` names."""
    if not corpus.fingerprint:
        raise ValueError(
            "This EncodedCorpus has no fingerprint (the encoder/chunk settings it was made "
            "with), so it cannot be checked against this model; re-encode the documents "
            "with this pipeline (encode() or encode_chunks())."
        )
    if corpus.fingerprint != fingerprint:
        raise ValueError(
            "This EncodedCorpus was made with other encoder/chunk settings "
            f"({corpus.fingerprint}) than this model uses ({fingerprint}); "
            "re-encode the documents with this pipeline."
        )
    return corpus


def soft_room(
    pipe: E2LLMPipeline, question: str, cfg: GenerationConfig, prompt: dict[str, Any]
) -> int:
    """Decoder positions left for soft tokens next to the prompt and the answer."""
    return pipe.max_positions - pipe.prompt_positions(question, **prompt) - cfg.max_new_tokens


def fitting_corpus(
    pipe: E2LLMPipeline,
    context: EncodedCorpus | Iterable[Document],
    question: str,
    cfg: GenerationConfig,
    mode: OnOverflow,
    prompt: dict[str, Any],
    batch: int,
) -> tuple[EncodedCorpus, bool]:
    """The corpus to answer from, and whether chunks had to be left out to fit."""
    room = soft_room(pipe, question, cfg, prompt)
    model = pipe.model
    if isinstance(context, EncodedCorpus):
        corpus = check_fingerprint(context, pipe.fingerprint)
        need = model.n_soft_tokens(corpus.mask)
        if need == 0 or need <= room:
            return corpus, False
        capacity = overflow_capacity(model, len(corpus), room, mode)
        scores = chunk_scores(corpus, pipe.query_key(question))
        return top_chunks(corpus, scores, capacity), True
    chunks = chunks_of(pipe, context)
    if len(chunks) * model.config.encoder.tokens_per_chunk <= room:
        return pipe.encode_chunks(chunks), False
    capacity = overflow_capacity(model, len(chunks), room, mode)
    return encode_closest(pipe, chunks, question, capacity, batch), True


def encode_closest(
    pipe: E2LLMPipeline, chunks: Sequence[Chunk], question: str, capacity: int, batch: int
) -> EncodedCorpus:
    """Encode ``batch`` chunks at a time, keeping the ``capacity`` closest to the question."""
    from tqdm.auto import tqdm

    key = pipe.query_key(question)
    top = TopChunks(capacity)
    starts = range(0, len(chunks), batch)
    for i in tqdm(starts, desc="encoding chunks", disable=len(starts) < 2):
        part = pipe.encode_chunks(chunks[i : i + batch], progress=False)
        top.add(part, chunk_scores(part, key))
    return top.result()


def room_for_excerpts(
    pipe: E2LLMPipeline,
    corpus: EncodedCorpus,
    question: str,
    cfg: GenerationConfig,
    best: list[Source],
    prompt: dict[str, Any],
) -> tuple[EncodedCorpus, list[Source]]:
    """Make room for the best excerpts by dropping the least relevant soft chunks.

    Excerpts take at most half the room of the soft chunks; those that do not fit
    then are left to :func:`fit_excerpts` to drop (with its warning).
    """
    per = pipe.config.encoder.tokens_per_chunk
    floor, capacity = (len(corpus) + 1) // 2, len(corpus)
    for n in range(len(best), 0, -1):
        shown = [s.text for s in document_order(best[:n])]
        length = pipe.prompt_positions(question, excerpts=shown, **prompt)
        room = (pipe.max_positions - length - cfg.max_new_tokens) // per
        if room >= floor:
            capacity = min(room, capacity)
            break
    if capacity >= len(corpus):
        return corpus, best
    key = pipe.query_key(question)
    trimmed = top_chunks(corpus, chunk_scores(corpus, key), capacity)
    return trimmed, expand_sources(trimmed, key, len(best))


def fit_excerpts(
    pipe: E2LLMPipeline,
    corpus: EncodedCorpus,
    question: str,
    cfg: GenerationConfig,
    best: list[Source],
    prompt: dict[str, Any],
) -> list[Source]:
    """Drop the lowest-scoring excerpts until the prompt fits the decoder's window."""
    window = pipe.max_positions
    budget = window - pipe.model.n_soft_tokens(corpus.mask) - cfg.max_new_tokens
    kept = list(best)
    while kept:
        shown = [s.text for s in document_order(kept)]
        if pipe.prompt_positions(question, excerpts=shown, **prompt) <= budget:
            break
        kept.pop()
    if len(kept) < len(best):
        message = (
            f"Showing {len(kept)} of {len(best)} excerpts: more would not fit the decoder's "
            f"window of {window} positions next to {len(corpus)} soft chunks. Lower "
            "expand_top_k or max_new_tokens, or prefilter the chunks."
        )
        warnings.warn(message, UserWarning, stacklevel=5)
        logger.warning(message)
    return kept


def context_window(pipeline: E2LLMPipeline, num_output: int) -> int:
    """Raw-text tokens of context one call can take.

    ``(decoder window - prompt - question reserve - num_output)`` soft positions, each
    standing for ``chunk_tokens / tokens_per_chunk`` raw tokens, times :data:`CHUNK_FILL`.
    """
    room = pipeline.max_positions - pipeline.prompt_positions("?") - QUESTION_RESERVE - num_output
    cfg = pipeline.config
    per_soft = cfg.chunking.chunk_tokens / cfg.encoder.tokens_per_chunk
    return max(0, int(room * per_soft * CHUNK_FILL))


def check_question(pipe: E2LLMPipeline, question: str, max_new_tokens: int) -> None:
    """Refuse a question whose prompt alone (no context) would overflow the decoder's window."""
    need = pipe.prompt_positions(question) + max_new_tokens
    if need > pipe.max_positions:
        raise ValueError(
            f"The question part of the prompt needs {need} decoder positions (with "
            f"max_new_tokens={max_new_tokens}) but the window is {pipe.max_positions}. "
            "E2LLM compresses only the context: separate it from the question with a blank "
            "line (the last paragraph is the question), or shorten the question."
        )
