"""``E2LLMPipeline``: documents + question -> answer. The object integrations wrap.

Document sets larger than the decoder's window are answered too: the positions they
need (chunks x soft tokens per chunk, next to the prompt) are known from the chunking,
before anything is encoded. When they do not fit, the chunks are encoded in bounded
batches and only the chunks most similar to the question that fit are kept (a running
top set, the same cosine keys as selective expansion); the call warns and reports
``usage.dropped_chunks``. ``on_overflow="error"`` refuses such input instead, up front.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from .checkpoint import CONFIG_NAME, load_checkpoint
from .chunking import (  # noqa: F401  (Document, read_documents: public here too)
    Chunk,
    Chunker,
    Document,
    check_prompt_text,
    check_text,
    read_documents,
)
from .config import E2LLMConfig, allow_remote_code, with_remote_code
from .corpus import (
    EncodedCorpus,
    OnOverflow,
    TopChunks,
    check_on_overflow,
    dropped_message,
    overflow_capacity,
    top_chunks,
)
from .encoder import sentence_embeddings
from .expansion import (
    DEFAULT_EXPAND_TOP_K,
    Source,
    check_top_k,
    chunk_scores,
    document_order,
    expand,
)
from .generation import GenerationChunk, GenerationConfig
from .model import E2LLMModel, GenerationResult
from .prefix_cache import DEFAULT_PREFIX_CACHE_BYTES, PrefixCache

logger = logging.getLogger(__name__)

DEFAULT_CHECKPOINT = Path(__file__).resolve().parent.parent / "checkpoints" / "default"
"""The trained checkpoint shipped inside the package (bundled SmolLM2 + MiniLM)."""

ENCODE_BATCH_CHUNKS = 512
"""Chunks gathered before each encoder pass, bounding memory on huge inputs."""

UNTRAINED_WARNING = (
    "E2LLM is running with an UNTRAINED adapter: answers are noise. Pass a trained checkpoint "
    "(checkpoint='path/to/checkpoint', or `e2llm ask --checkpoint PATH`), or train one with "
    "`e2llm train --config configs/default.yaml`."
)


def default_checkpoint() -> Path | None:
    """The shipped checkpoint folder, if this installation has one."""
    return DEFAULT_CHECKPOINT if (DEFAULT_CHECKPOINT / CONFIG_NAME).is_file() else None


class E2LLMPipeline:
    """Chunk, encode and answer over long document sets with one E2LLM model.

    Thread-safe: calls that touch the model are serialised by a lock.

    Example:
        >>> pipe = E2LLMPipeline.from_pretrained()  # doctest: +SKIP
        >>> corpus = pipe.encode([Path("report.txt")])  # doctest: +SKIP
        >>> pipe.ask(corpus, "Who wrote the report?").text  # doctest: +SKIP
    """

    def __init__(
        self,
        model: E2LLMModel,
        trained: bool = True,
        prefix_cache_bytes: int = DEFAULT_PREFIX_CACHE_BYTES,
    ) -> None:
        self.model = model
        self.trained = trained
        self.prefix_cache = PrefixCache(prefix_cache_bytes)
        """Decoder KV over ``[prompt prefix] <soft tokens>``: repeat questions prefill less."""
        self.chunker = Chunker(model.encoder.tokenizer, model.config.chunking)
        self.lock = threading.RLock()
        if not trained:
            warnings.warn(UNTRAINED_WARNING, UserWarning, stacklevel=2)
            logger.warning(UNTRAINED_WARNING)

    @classmethod
    def from_pretrained(
        cls,
        checkpoint: str | Path | None = None,
        device: str | torch.device | None = None,
        config: E2LLMConfig | None = None,
        trust_remote_code: bool | None = None,
    ) -> E2LLMPipeline:
        """Load a checkpoint (default: the shipped one), or an untrained model from ``config``.

        Args:
            checkpoint: Checkpoint folder (``None``: the shipped one).
            device: Torch device (``None``: CUDA if available, else CPU).
            config: Build an untrained model from this config instead.
            trust_remote_code: Allow the decoder folder's own Python code (``auto_map``).
                Only the caller decides: ``None`` reads ``$E2LLM_TRUST_REMOTE_CODE``
                (default no). A checkpoint or config asking for it is refused otherwise.
        """
        if config is not None and checkpoint is not None:
            raise ValueError("Pass either checkpoint= or config=, not both.")
        allowed = allow_remote_code(trust_remote_code)
        if config is None:
            path = Path(checkpoint) if checkpoint is not None else default_checkpoint()
            if path is not None:
                model = load_checkpoint(path, device=device, trust_remote_code=allowed)
                return cls(model, trained=True)
            config = E2LLMConfig()
        loading = with_remote_code(config, allowed, "This config")
        model = E2LLMModel.from_config(loading, device=device)
        model.config.decoder.trust_remote_code = config.decoder.trust_remote_code  # a request
        return cls(model, trained=False)

    @property
    def fingerprint(self) -> dict[str, Any]:
        return self.model.feature_fingerprint()

    def chunk(self, documents: Iterable[Document]) -> list[Chunk]:
        texts, ids = read_documents(documents)
        with self.lock:  # HF fast tokenizers keep mutable padding state: not thread-safe
            return list(self.chunker.chunk(texts, ids))

    def encode_chunks(self, chunks: Sequence[Chunk], progress: bool | None = None) -> EncodedCorpus:
        """Encode already-made chunks (e.g. nodes or documents from a framework)."""
        if not chunks:
            raise ValueError("No text to encode: every document was empty or whitespace only.")
        parts = []
        show = progress if progress is not None else len(chunks) > ENCODE_BATCH_CHUNKS
        for i in range(0, len(chunks), ENCODE_BATCH_CHUNKS):
            batch = list(chunks[i : i + ENCODE_BATCH_CHUNKS])
            texts = [c.text for c in batch]
            for j, chunk in enumerate(batch):
                check_text(chunk.text, f"Chunk {i + j} (document {chunk.doc_id!r})")
            with self.lock:  # the model and both tokenizers are shared between threads
                feats, mask = self.model.encoder.encode(texts, progress=show)
                token_ids = self.model.tokenizer(texts, add_special_tokens=False)["input_ids"]
            counts = [len(ids) for ids in token_ids]
            parts.append(EncodedCorpus(batch, feats, mask, counts, self.fingerprint))
        return EncodedCorpus.concat(parts)

    def _chunks(self, documents: Iterable[Document]) -> list[Chunk]:
        chunks = self.chunk(documents)
        if not chunks:
            raise ValueError(
                "No text to encode: every document was empty or whitespace only. Pass documents "
                "with text."
            )
        return chunks

    def encode(self, documents: Iterable[Document], progress: bool | None = None) -> EncodedCorpus:
        """Chunk and encode documents once; reuse the result for many questions."""
        return self.encode_chunks(self._chunks(documents), progress)

    def _checked(self, corpus: EncodedCorpus) -> EncodedCorpus:
        """``corpus`` if it was encoded with this model's settings."""
        if not corpus.fingerprint:
            raise ValueError(
                "This EncodedCorpus has no fingerprint (the encoder/chunk settings it was made "
                "with), so it cannot be checked against this model; re-encode the documents "
                "with this pipeline (encode() or encode_chunks())."
            )
        if corpus.fingerprint != self.fingerprint:
            raise ValueError(
                "This EncodedCorpus was made with other encoder/chunk settings "
                f"({corpus.fingerprint}) than this model uses ({self.fingerprint}); "
                "re-encode the documents with this pipeline."
            )
        return corpus

    def _soft_room(self, question: str, cfg: GenerationConfig, prompt: dict[str, Any]) -> int:
        """Decoder positions left for soft tokens next to the prompt and the answer."""
        with self.lock:
            length = len(self.model.prompt(question, **prompt))
        return self.model.max_positions - length - cfg.max_new_tokens

    def _fitting_corpus(
        self,
        context: EncodedCorpus | Iterable[Document],
        question: str,
        cfg: GenerationConfig,
        mode: OnOverflow,
        prompt: dict[str, Any],
    ) -> tuple[EncodedCorpus, bool]:
        """The corpus to answer from, and whether chunks had to be left out to fit."""
        room = self._soft_room(question, cfg, prompt)
        if isinstance(context, EncodedCorpus):
            corpus = self._checked(context)
            need = self.model.n_soft_tokens(corpus.mask)
            if need == 0 or need <= room:
                return corpus, False
            capacity = overflow_capacity(self.model, len(corpus), room, mode)
            return top_chunks(
                corpus, chunk_scores(corpus, self.query_key(question)), capacity
            ), True
        chunks = self._chunks(context)
        if len(chunks) * self.model.config.encoder.tokens_per_chunk <= room:
            return self.encode_chunks(chunks), False
        capacity = overflow_capacity(self.model, len(chunks), room, mode)
        return self._encode_top(chunks, question, capacity), True

    def _encode_top(self, chunks: Sequence[Chunk], question: str, capacity: int) -> EncodedCorpus:
        """Encode in bounded batches, keeping the ``capacity`` chunks closest to the question."""
        from tqdm.auto import tqdm

        key = self.query_key(question)
        top = TopChunks(capacity)
        starts = range(0, len(chunks), ENCODE_BATCH_CHUNKS)
        for i in tqdm(starts, desc="encoding chunks", disable=len(starts) < 2):
            part = self.encode_chunks(chunks[i : i + ENCODE_BATCH_CHUNKS], progress=False)
            top.add(part, chunk_scores(part, key))
        return top.result()

    def _room_for_excerpts(
        self,
        corpus: EncodedCorpus,
        question: str,
        cfg: GenerationConfig,
        best: list[Source],
        prompt: dict[str, Any],
    ) -> tuple[EncodedCorpus, list[Source]]:
        """Make room for the best excerpts by dropping the least relevant soft chunks.

        Excerpts take at most half the room of the soft chunks; those that do not fit
        then are left to :meth:`_fit` to drop (with its warning).
        """
        per, floor = self.model.config.encoder.tokens_per_chunk, (len(corpus) + 1) // 2
        capacity = len(corpus)
        for n in range(len(best), 0, -1):
            shown = [s.text for s in document_order(best[:n])]
            with self.lock:
                length = len(self.model.prompt(question, excerpts=shown, **prompt))
            room = (self.model.max_positions - length - cfg.max_new_tokens) // per
            if room >= floor:
                capacity = min(room, capacity)
                break
        if capacity >= len(corpus):
            return corpus, best
        key = self.query_key(question)
        trimmed = top_chunks(corpus, chunk_scores(corpus, key), capacity)
        return trimmed, expand(trimmed, key, len(best))

    def query_key(self, question: str) -> torch.Tensor:
        """The question as the encoder embeds it for retrieval: a (d_enc,) unit vector."""
        with self.lock:
            feats, mask = self.model.encoder.encode([question])
        return sentence_embeddings(feats, mask)[0]

    def expand(
        self, corpus: EncodedCorpus, question: str, top_k: int = DEFAULT_EXPAND_TOP_K
    ) -> list[Source]:
        """The ``top_k`` chunks of ``corpus`` most similar to ``question``, best first."""
        if check_top_k(top_k) == 0 or len(corpus) == 0:
            return []
        return expand(corpus, self.query_key(question), top_k)

    def prepare(
        self,
        context: EncodedCorpus | Iterable[Document],
        question: str,
        generation: GenerationConfig | None = None,
        expand_top_k: int | None = None,
        on_overflow: OnOverflow = "select",
        **prompt: Any,
    ) -> tuple[EncodedCorpus, list[Source], dict[str, Any]]:
        """Encode (if needed) and pick the chunks and excerpts that fit the window.

        Returns:
            The corpus (only its most relevant chunks when the whole would not fit; see
            ``on_overflow`` and ``corpus.dropped_chunks``), the expanded chunks (document
            order) and the prompt keywords for :meth:`E2LLMModel.stream` (``excerpts``
            included). Explicit ``excerpts=`` in ``prompt`` are used as given, and no
            chunk is expanded.
        """
        check_prompt_text(question, prompt)
        mode = check_on_overflow(on_overflow)
        cfg = generation or GenerationConfig()
        corpus, selected = self._fitting_corpus(context, question, cfg, mode, prompt)
        if "excerpts" in prompt:
            shown, kwargs = [], prompt
        else:
            top_k = DEFAULT_EXPAND_TOP_K if expand_top_k is None else check_top_k(expand_top_k)
            best = self.expand(corpus, question, top_k)
            if selected and best:
                corpus, best = self._room_for_excerpts(corpus, question, cfg, best, prompt)
            shown = document_order(self._fit(corpus, question, generation, best, prompt))
            kwargs = {**prompt, "excerpts": [s.text for s in shown]}
        if selected:
            message = dropped_message(corpus, self.model.max_positions)
            warnings.warn(message, UserWarning, stacklevel=3)
            logger.warning(message)
        return corpus, shown, kwargs

    def _fit(
        self,
        corpus: EncodedCorpus,
        question: str,
        generation: GenerationConfig | None,
        best: list[Source],
        prompt: dict[str, Any],
    ) -> list[Source]:
        """Drop the lowest-scoring excerpts until the prompt fits the decoder's window."""
        cfg = generation or GenerationConfig()
        budget = self.model.max_positions - self.model.n_soft_tokens(corpus.mask)
        budget -= cfg.max_new_tokens
        kept = list(best)
        while kept:
            shown = [s.text for s in document_order(kept)]
            with self.lock:
                length = len(self.model.prompt(question, excerpts=shown, **prompt))
            if length <= budget:
                break
            kept.pop()
        if len(kept) < len(best):
            message = (
                f"Showing {len(kept)} of {len(best)} excerpts: more would not fit the decoder's "
                f"window of {self.model.max_positions} positions next to {len(corpus)} soft "
                "chunks. Lower expand_top_k or max_new_tokens, or prefilter the chunks."
            )
            warnings.warn(message, UserWarning, stacklevel=4)
            logger.warning(message)
        return kept

    def stream(
        self,
        context: EncodedCorpus | Iterable[Document],
        question: str,
        generation: GenerationConfig | None = None,
        expand_top_k: int | None = None,
        on_overflow: OnOverflow = "select",
        **prompt: Any,
    ) -> Iterator[GenerationChunk]:
        """Stream the answer's text; the final chunk carries usage, finish reason and sources.

        Args:
            context: Documents (str text or paths) or an :class:`EncodedCorpus`.
            question: The question.
            generation: Decoding options.
            expand_top_k: Chunks also shown as raw text (``None``: the default, 0: none).
            on_overflow: When the documents need more positions than the decoder's
                window: ``"select"`` keeps the chunks most relevant to the question that
                fit (with a warning; ``usage.dropped_chunks``), ``"error"`` refuses
                before encoding.
            **prompt: ``system``, ``history``; or ``excerpts`` to choose the raw text.
        """
        corpus, sources, kwargs = self.prepare(
            context, question, generation, expand_top_k, on_overflow, **prompt
        )
        yield from self.stream_prepared(corpus, sources, question, generation, kwargs)

    def stream_prepared(
        self,
        corpus: EncodedCorpus,
        sources: list[Source],
        question: str,
        generation: GenerationConfig | None,
        kwargs: dict[str, Any],
    ) -> Iterator[GenerationChunk]:
        """Stream over what :meth:`prepare` returned; the last chunk carries the sources.

        For callers that need the expanded chunks (or the prompt) before the first token,
        e.g. to report input tokens or citations up front.
        """
        with self.lock:
            for piece in self.model.stream(
                corpus.features,
                corpus.mask,
                question,
                generation,
                context_tokens=corpus.total_context_tokens,
                prefix_cache=self.prefix_cache,
                **kwargs,
            ):
                if piece.usage is not None:
                    piece.usage.expanded_chunks = len(sources)
                    piece.usage.dropped_chunks = corpus.dropped_chunks
                    piece.sources = tuple(sources)
                yield piece

    def ask(
        self,
        context: EncodedCorpus | Iterable[Document],
        question: str,
        generation: GenerationConfig | None = None,
        expand_top_k: int | None = None,
        on_overflow: OnOverflow = "select",
        **prompt: Any,
    ) -> GenerationResult:
        """Answer ``question`` over ``context`` (documents or an encoded corpus).

        Every chunk reaches the decoder as soft tokens, and the ``expand_top_k`` chunks
        most similar to the question (default :data:`DEFAULT_EXPAND_TOP_K`; 0 for soft
        tokens only) also as raw text; ``result.sources`` cites them. Keyword arguments
        ``system`` and ``history`` pass through to the prompt.

        Document sets too large for the decoder's window are answered from their chunks
        most relevant to the question (``on_overflow="select"``, a ``UserWarning`` and
        ``usage.dropped_chunks``), or refused before encoding (``on_overflow="error"``).
        """
        corpus, sources, kwargs = self.prepare(
            context, question, generation, expand_top_k, on_overflow, **prompt
        )
        with self.lock:
            result = self.model.generate(
                corpus.features,
                corpus.mask,
                question,
                generation,
                context_tokens=corpus.total_context_tokens,
                prefix_cache=self.prefix_cache,
                **kwargs,
            )
        result.usage.expanded_chunks = len(sources)
        result.usage.dropped_chunks = corpus.dropped_chunks
        result.sources = sources
        return result
