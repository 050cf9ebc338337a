"""``E2LLMPipeline``: documents + question -> answer. The object integrations wrap."""

from __future__ import annotations

import logging
import os
import threading
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from .checkpoint import CONFIG_NAME, load_checkpoint
from .chunking import Chunk, Chunker
from .config import E2LLMConfig
from .corpus import EncodedCorpus
from .encoder import sentence_embeddings
from .expansion import DEFAULT_EXPAND_TOP_K, Source, check_top_k, document_order, expand
from .generation import GenerationChunk, GenerationConfig
from .model import E2LLMModel, GenerationResult

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

Document = str | os.PathLike[str]


def default_checkpoint() -> Path | None:
    """The shipped checkpoint folder, if this installation has one."""
    return DEFAULT_CHECKPOINT if (DEFAULT_CHECKPOINT / CONFIG_NAME).is_file() else None


def read_documents(documents: Iterable[Document]) -> tuple[list[str], list[str]]:
    """Texts and ids for ``documents``: strings are text, ``os.PathLike`` are files."""
    if isinstance(documents, str | os.PathLike):
        raise TypeError(
            "documents must be a list of texts or paths, not a single one; wrap it in []."
        )
    texts, ids = [], []
    for i, doc in enumerate(documents):
        if isinstance(doc, os.PathLike):
            path = Path(doc)
            if not path.is_file():
                raise ValueError(f"Document path {path} does not exist or is not a file.")
            try:
                texts.append(path.read_text(encoding="utf-8"))
            except UnicodeDecodeError as err:
                raise ValueError(
                    f"{path} is not UTF-8 text ({err}); convert it to text first."
                ) from err
            ids.append(str(path))
        elif isinstance(doc, str):
            texts.append(doc)
            ids.append(str(i))
        else:
            raise TypeError(
                f"Document {i} is a {type(doc).__name__}; pass str text or a pathlib.Path."
            )
    return texts, ids


class E2LLMPipeline:
    """Chunk, encode and answer over long document sets with one E2LLM model.

    Thread-safe: calls that touch the model are serialised by a lock.

    Example:
        >>> pipe = E2LLMPipeline.from_pretrained()  # doctest: +SKIP
        >>> corpus = pipe.encode([Path("report.txt")])  # doctest: +SKIP
        >>> pipe.ask(corpus, "Who wrote the report?").text  # doctest: +SKIP
    """

    def __init__(self, model: E2LLMModel, trained: bool = True) -> None:
        self.model = model
        self.trained = trained
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
    ) -> E2LLMPipeline:
        """Load a checkpoint (default: the shipped one), or an untrained model from ``config``."""
        if config is not None and checkpoint is not None:
            raise ValueError("Pass either checkpoint= or config=, not both.")
        if config is None:
            path = Path(checkpoint) if checkpoint is not None else default_checkpoint()
            if path is not None:
                return cls(load_checkpoint(path, device=device), trained=True)
            config = E2LLMConfig()
        return cls(E2LLMModel.from_config(config, device=device), trained=False)

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
            with self.lock:  # the model and both tokenizers are shared between threads
                feats, mask = self.model.encoder.encode(texts, progress=show)
                token_ids = self.model.tokenizer(texts, add_special_tokens=False)["input_ids"]
            counts = [len(ids) for ids in token_ids]
            parts.append(EncodedCorpus(batch, feats, mask, counts, self.fingerprint))
        return EncodedCorpus.concat(parts)

    def encode(self, documents: Iterable[Document], progress: bool | None = None) -> EncodedCorpus:
        """Chunk and encode documents once; reuse the result for many questions."""
        texts, ids = read_documents(documents)
        chunks: list[Chunk] = []
        parts: list[EncodedCorpus] = []
        with self.lock:  # chunking uses the shared encoder tokenizer
            for chunk in self.chunker.chunk(texts, ids):
                chunks.append(chunk)
                if len(chunks) == ENCODE_BATCH_CHUNKS * 4:
                    parts.append(self.encode_chunks(chunks, progress))
                    chunks = []
            if chunks:
                parts.append(self.encode_chunks(chunks, progress))
        if not parts:
            raise ValueError(
                "No text to encode: every document was empty or whitespace only. Pass documents "
                "with text."
            )
        return EncodedCorpus.concat(parts)

    def _corpus(self, context: EncodedCorpus | Iterable[Document]) -> EncodedCorpus:
        if isinstance(context, EncodedCorpus):
            if context.fingerprint and context.fingerprint != self.fingerprint:
                raise ValueError(
                    "This EncodedCorpus was made with other encoder/chunk settings "
                    f"({context.fingerprint}) than this model uses ({self.fingerprint}); "
                    "re-encode the documents with this pipeline."
                )
            return context
        return self.encode(context)

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
        **prompt: Any,
    ) -> tuple[EncodedCorpus, list[Source], dict[str, Any]]:
        """Encode (if needed) and pick the excerpts that fit the window, in document order.

        Returns:
            The corpus, the expanded chunks (document order) and the prompt keywords for
            :meth:`E2LLMModel.stream` (``excerpts`` included). Explicit ``excerpts=`` in
            ``prompt`` are used as given, and no chunk is expanded.
        """
        _check_question(question)
        corpus = self._corpus(context)
        if "excerpts" in prompt:
            return corpus, [], prompt
        top_k = DEFAULT_EXPAND_TOP_K if expand_top_k is None else check_top_k(expand_top_k)
        best = self.expand(corpus, question, top_k)
        shown = document_order(self._fit(corpus, question, generation, best, prompt))
        return corpus, shown, {**prompt, "excerpts": [s.text for s in shown]}

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
        **prompt: Any,
    ) -> Iterator[GenerationChunk]:
        """Stream the answer's text; the final chunk carries usage, finish reason and sources.

        Args:
            context: Documents (str text or paths) or an :class:`EncodedCorpus`.
            question: The question.
            generation: Decoding options.
            expand_top_k: Chunks also shown as raw text (``None``: the default, 0: none).
            **prompt: ``system``, ``history``; or ``excerpts`` to choose the raw text.
        """
        corpus, sources, kwargs = self.prepare(
            context, question, generation, expand_top_k, **prompt
        )
        with self.lock:
            for piece in self.model.stream(
                corpus.features,
                corpus.mask,
                question,
                generation,
                context_tokens=corpus.total_context_tokens,
                **kwargs,
            ):
                if piece.usage is not None:
                    piece.usage.expanded_chunks = len(sources)
                    piece.sources = tuple(sources)
                yield piece

    def ask(
        self,
        context: EncodedCorpus | Iterable[Document],
        question: str,
        generation: GenerationConfig | None = None,
        expand_top_k: int | None = None,
        **prompt: Any,
    ) -> GenerationResult:
        """Answer ``question`` over ``context`` (documents or an encoded corpus).

        Every chunk reaches the decoder as soft tokens, and the ``expand_top_k`` chunks
        most similar to the question (default :data:`DEFAULT_EXPAND_TOP_K`; 0 for soft
        tokens only) also as raw text; ``result.sources`` cites them. Keyword arguments
        ``system`` and ``history`` pass through to the prompt.
        """
        corpus, sources, kwargs = self.prepare(
            context, question, generation, expand_top_k, **prompt
        )
        with self.lock:
            result = self.model.generate(
                corpus.features,
                corpus.mask,
                question,
                generation,
                context_tokens=corpus.total_context_tokens,
                **kwargs,
            )
        result.usage.expanded_chunks = len(sources)
        result.sources = sources
        return result


def _check_question(question: Any) -> None:
    if not isinstance(question, str):
        raise TypeError(f"question must be a str, got {type(question).__name__}.")
    if not question.strip():
        raise ValueError("The question is empty; ask something about the documents.")
