"""``E2LLMPipeline``: documents + question -> answer. The one runtime integrations use.

LangChain, LlamaIndex, the evaluation and the CLI call only this object. Whatever touches
the model takes the pipeline's lock inside, and no stream holds it while its reader waits
(:mod:`.runtime`). How a call is fitted into the decoder's window is in :mod:`.fitting`.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from .backend import collect, remote_stream
from .checkpoint import CONFIG_NAME, load_checkpoint
from .chunking import (  # noqa: F401  (Document, read_documents: public here too)
    Chunk,
    Chunker,
    Document,
    check_text,
    read_documents,
)
from .config import E2LLMConfig, allow_remote_code, with_remote_code
from .corpus import EncodedCorpus, OnOverflow
from .encoder import sentence_embeddings
from .expansion import DEFAULT_EXPAND_TOP_K, Source, check_top_k, expand
from .fitting import Prepared, chunks_of
from .fitting import prepare as prepare_call
from .generation import GenerationChunk, GenerationConfig, Usage
from .model import E2LLMModel, GenerationResult
from .precision import Autocast, check_autocast
from .prefix_cache import DEFAULT_PREFIX_CACHE_BYTES, PrefixCache
from .runtime import LockedTokenizer, TokenStream
from .timing import DecodeProfiler

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

    Thread-safe: calls that touch the model are serialised by a lock the pipeline keeps
    to itself; streams release it between their reader's reads.

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
        """Serialises model and tokenizer use; taken inside the pipeline's methods only."""
        self.tokenizer = LockedTokenizer(model.tokenizer, self.lock)
        """The decoder's tokenizer, each call under the lock: counts and decodes text."""
        self.encoder_tokenizer = LockedTokenizer(model.encoder.tokenizer, self.lock)
        """The chunk encoder's tokenizer, each call under the lock."""
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
        autocast: Autocast = "auto",
    ) -> E2LLMPipeline:
        """Load a checkpoint (default: the shipped one), or an untrained model from ``config``.

        Args:
            checkpoint: Checkpoint folder (``None``: the shipped one).
            device: Torch device (``None``: CUDA if available, else CPU).
            config: Build an untrained model from this config instead.
            trust_remote_code: Allow the decoder folder's own Python code (``auto_map``).
                Only the caller decides: ``None`` reads ``$E2LLM_TRUST_REMOTE_CODE``
                (default no). A checkpoint or config asking for it is refused otherwise.
            autocast: Inference precision of the encoder and decoder: ``auto`` (bf16
                autocast where the CPU has AVX512-BF16/AMX or the GPU bf16, else fp32),
                ``bf16``, or ``off`` (fp32).
        """
        check_autocast(autocast)
        if config is not None and checkpoint is not None:
            raise ValueError("Pass either checkpoint= or config=, not both.")
        allowed = allow_remote_code(trust_remote_code)
        if config is None:
            path = Path(checkpoint) if checkpoint is not None else default_checkpoint()
            if path is not None:
                model = load_checkpoint(path, device=device, trust_remote_code=allowed)
                model.for_inference(autocast)
                return cls(model, trained=True)
            config = E2LLMConfig()
        loading = with_remote_code(config, allowed, "This config")
        model = E2LLMModel.from_config(loading, device=device)
        model.config.decoder.trust_remote_code = config.decoder.trust_remote_code  # a request
        model.for_inference(autocast)
        return cls(model, trained=False)

    # ------------------------------------------------------------------ facts
    @property
    def fingerprint(self) -> dict[str, Any]:
        return self.model.feature_fingerprint()

    @property
    def config(self) -> E2LLMConfig:
        """The model's configuration (base models, chunking, soft tokens per chunk)."""
        return self.model.config

    @property
    def autocast(self) -> Autocast:
        """Inference precision mode (``from_pretrained(autocast=...)``)."""
        return self.model.autocast

    @property
    def precision(self) -> dict[str, str]:
        """``{"encoder": ..., "decoder": ...}``: ``bf16`` or ``fp32``, as they run here."""
        return self.model.precision()

    @property
    def max_positions(self) -> int:
        """The decoder's window: input positions plus new tokens one call may take."""
        return self.model.max_positions

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def profiler(self) -> DecodeProfiler:
        """Timed decoding and weight sizes, for benchmarks."""
        return DecodeProfiler(self)

    # ------------------------------------------------------------------ encoding
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

    def encode(self, documents: Iterable[Document], progress: bool | None = None) -> EncodedCorpus:
        """Chunk and encode documents once; reuse the result for many questions."""
        return self.encode_chunks(chunks_of(self, documents), progress)

    def encode_texts(self, texts: Sequence[str]) -> list[EncodedCorpus]:
        """Each text's own chunks (``doc_id``: its position), all encoded in one pass.

        No chunk spans two texts (e.g. framework documents or nodes); an empty text gets
        a corpus with no chunks.
        """
        chunks = self.chunk(list(texts))
        if not chunks:
            return [self.empty_corpus() for _ in texts]
        encoded = self.encode_chunks(chunks)
        rows: dict[str, list[int]] = {}
        for row, chunk in enumerate(chunks):
            rows.setdefault(chunk.doc_id, []).append(row)
        return [encoded.select(rows.get(str(i), [])) for i in range(len(texts))]

    def empty_corpus(self) -> EncodedCorpus:
        """A corpus with no chunks (a question asked without documents)."""
        with self.lock:
            feats, mask = self.model.encoder.encode([])
        return EncodedCorpus([], feats, mask, [], self.fingerprint)

    # ------------------------------------------------------------------ questions
    def query_features(self, question: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The question through the chunk encoder: (1, L, d_enc) features and (1, L) mask."""
        with self.lock:
            return self.model.encoder.encode([question])

    def query_key(self, question: str) -> torch.Tensor:
        """The question as the encoder embeds it for retrieval: a (d_enc,) unit vector."""
        return sentence_embeddings(*self.query_features(question))[0]

    def expand(
        self, corpus: EncodedCorpus, question: str, top_k: int = DEFAULT_EXPAND_TOP_K
    ) -> list[Source]:
        """The ``top_k`` chunks of ``corpus`` most similar to ``question``, best first."""
        if check_top_k(top_k) == 0 or len(corpus) == 0:
            return []
        return expand(corpus, self.query_key(question), top_k)

    def prompt_positions(self, question: str, **prompt: Any) -> int:
        """Decoder positions of the prompt around the soft tokens (``system``, ``excerpts``...)."""
        with self.lock:
            return len(self.model.prompt(question, **prompt))

    def input_positions(self, corpus: EncodedCorpus, question: str, **prompt: Any) -> int:
        """Decoder input positions of a call: prompt tokens plus the corpus' soft tokens."""
        return self.prompt_positions(question, **prompt) + self.model.n_soft_tokens(corpus.mask)

    # ------------------------------------------------------------------ answering
    def prepare(
        self,
        context: EncodedCorpus | Iterable[Document],
        question: str,
        generation: GenerationConfig | None = None,
        expand_top_k: int | None = None,
        on_overflow: OnOverflow = "select",
        **prompt: Any,
    ) -> Prepared:
        """Encode (if needed) and pick the chunks and excerpts that fit the window.

        Returns:
            The corpus (only its most relevant chunks when the whole would not fit; see
            ``on_overflow`` and ``corpus.dropped_chunks``), the expanded chunks (document
            order) and the prompt keywords for :meth:`stream_prepared` (``excerpts``
            included). Explicit ``excerpts=`` in ``prompt`` are used as given, and no
            chunk is expanded.
        """
        args = (context, question, generation, expand_top_k, on_overflow, prompt)
        return prepare_call(self, *args, batch=ENCODE_BATCH_CHUNKS)

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

        The stream may be read on any thread and left half-read: it holds no lock while
        its reader waits. Nothing runs before the first ``next()``; to know the usage and
        sources before it, call :meth:`prepare` and :meth:`stream_prepared`.

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
    ) -> TokenStream:
        """Stream over what :meth:`prepare` returned; the last chunk carries the sources.

        The stream's ``usage`` is known before the first token, e.g. to report input
        tokens up front.
        """
        usage = Usage(
            input_positions=self.input_positions(corpus, question, **kwargs),
            context_tokens=corpus.total_context_tokens,
            soft_tokens=self.model.n_soft_tokens(corpus.mask),
            n_chunks=len(corpus),
            expanded_chunks=len(sources),
            dropped_chunks=corpus.dropped_chunks,
        )
        if self.model.backend is not None:  # the decoder runs elsewhere: lock its input only
            return remote_stream(self, corpus, sources, question, generation, kwargs, usage)

        def produce() -> Iterator[GenerationChunk]:
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

        return TokenStream(produce, self.lock, usage, sources)

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
        if self.model.backend is not None:  # no lock while a remote decoder answers
            return collect(self.stream_prepared(corpus, sources, question, generation, kwargs))
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

    # ------------------------------------------------------------------ plain decoder
    def chat_ids(self, messages: Sequence[dict[str, str]]) -> list[int]:
        """Token ids of plain chat messages as the decoder reads them in :meth:`stream_text`."""
        with self.lock:
            return self.model.chat_ids(messages)

    def stream_text(
        self, messages: Sequence[dict[str, str]], generation: GenerationConfig | None = None
    ) -> TokenStream:
        """The base decoder (LoRA off, no encoder or adapter) answering text messages.

        The full-context and RAG baselines run through here. A prompt over the window
        raises a ``ValueError`` now; ``usage.input_positions`` is known before the first token.
        """
        cfg = generation or GenerationConfig()
        ids = self.chat_ids(messages)
        self.model.check_text_window(len(ids), cfg.max_new_tokens)
        usage = Usage(input_positions=len(ids), context_tokens=len(ids))
        return TokenStream(
            lambda: self.model.stream_ids(ids, cfg, base_only=True), self.lock, usage
        )
