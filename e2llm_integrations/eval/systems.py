"""The four systems every evaluation compares, run over the same text.

* ``e2llm``: soft tokens for every chunk (the product).
* ``full``: the plain base decoder (LoRA off, no soft tokens) with the whole text in its
  prompt; over its window the text is cut in the middle, as LongBench does.
* ``rag``: the top-k chunks by MiniLM cosine similarity (FAISS) as text into the plain
  base decoder.
* ``hybrid``: soft tokens for every chunk plus the top-k chunks as raw-text excerpts.

Example:
    >>> ctx = EvalContext.from_text(pipe, "A long report ...")  # doctest: +SKIP
    >>> run_system("full", pipe, ctx, "Who wrote it?", SystemConfig()).text  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ..core.corpus import EncodedCorpus
from ..core.generation import GenerationConfig
from ..core.pipeline import E2LLMPipeline
from ..retrieval.faiss_index import ChunkPrefilter

logger = logging.getLogger(__name__)

SystemName = Literal["e2llm", "full", "rag", "hybrid"]
SYSTEMS: tuple[str, ...] = ("e2llm", "full", "rag", "hybrid")

TEXT_INSTRUCTION = (
    "You are given a long context. Answer the question using the context. "
    "Reply with a short answer only."
)
"""Instruction for the text baselines (the E2LLM prompt's instruction, minus "compressed")."""

TRUNCATION_SAFETY = 8
"""Tokens kept free when cutting: re-tokenizing the joined halves can add a few."""


@dataclass(frozen=True)
class SystemConfig:
    """Options shared by the systems.

    Attributes:
        top_k: Chunks retrieved for ``rag`` and shown as excerpts by ``hybrid``.
        max_new_tokens: Upper bound on answer tokens.
        instruction: Instruction of the text baselines' prompt.
    """

    top_k: int = 8
    max_new_tokens: int = 32
    instruction: str = TEXT_INSTRUCTION

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}.")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}.")


@dataclass
class EvalContext:
    """One context as plain text and as an encoded corpus of the same text.

    Attributes:
        text: The document(s) exactly as the ``full`` baseline reads them.
        corpus: The same text chunked and encoded (``e2llm``, ``rag``, ``hybrid``).
    """

    text: str
    corpus: EncodedCorpus

    @classmethod
    def from_text(cls, pipe: E2LLMPipeline, text: str) -> EvalContext:
        return cls(text, pipe.encode([text]))

    @property
    def context_tokens(self) -> int:
        return self.corpus.total_context_tokens


@dataclass
class Answer:
    """One system's answer and what it cost."""

    system: str
    text: str
    input_positions: int
    truncated: bool
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "answer": self.text[:300],
            "input_positions": self.input_positions,
            "truncated": self.truncated,
            "seconds": round(self.seconds, 3),
        }


def text_messages(instruction: str, context: str, question: str) -> list[dict[str, str]]:
    """The text baselines' chat: one user turn with the context and the question."""
    content = f"{instruction}\n\nContext:\n{context}\n\nQuestion: {question}"
    return [{"role": "user", "content": content}]


def truncate_middle(tokenizer: Any, text: str, max_tokens: int) -> tuple[str, bool]:
    """Keep the first and last ``max_tokens // 2`` tokens of ``text`` (LongBench's rule).

    Returns:
        The (possibly) shortened text and whether anything was cut.
    """
    if max_tokens < 2:
        raise ValueError(f"max_tokens must be >= 2, got {max_tokens}.")
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) <= max_tokens:
        return text, False
    head = max_tokens // 2
    tail = max_tokens - head
    left = tokenizer.decode(ids[:head], skip_special_tokens=True)
    right = tokenizer.decode(ids[-tail:], skip_special_tokens=True)
    return left + right, True


def text_budget(pipe: E2LLMPipeline, question: str, cfg: SystemConfig) -> int:
    """Context tokens that fit the base decoder's window next to the prompt and answer."""
    from ..core.prompt import render_chat

    tok = pipe.model.tokenizer
    empty = render_chat(tok, text_messages(cfg.instruction, "", question))
    overhead = len(tok(empty, add_special_tokens=False)["input_ids"]) + 1
    return pipe.model.max_positions - overhead - cfg.max_new_tokens - TRUNCATION_SAFETY


def generate_text(
    pipe: E2LLMPipeline, context: str, question: str, cfg: SystemConfig
) -> tuple[str, int, bool]:
    """The plain base decoder on text: (answer, input positions, truncated)."""
    context, cut = truncate_middle(pipe.model.tokenizer, context, text_budget(pipe, question, cfg))
    messages = text_messages(cfg.instruction, context, question)
    gen = GenerationConfig(max_new_tokens=cfg.max_new_tokens)
    pieces, positions = [], 0
    with pipe.lock:
        for piece in pipe.model.stream_text(messages, gen, base_only=True):
            pieces.append(piece.text)
            if piece.usage is not None:
                positions = piece.usage.input_positions
    return "".join(pieces), positions, cut


def top_chunks(pipe: E2LLMPipeline, corpus: EncodedCorpus, question: str, top_k: int) -> list[str]:
    """Texts of the ``top_k`` chunks most similar to the question, in document order."""
    kept, _ = ChunkPrefilter(top_k=top_k).filter(pipe, corpus, question)
    return [c.text for c in kept.chunks]


def run_system(
    name: str, pipe: E2LLMPipeline, ctx: EvalContext, question: str, cfg: SystemConfig
) -> Answer:
    """Answer ``question`` over ``ctx`` with system ``name`` (one of :data:`SYSTEMS`)."""
    start = time.perf_counter()
    gen = GenerationConfig(max_new_tokens=cfg.max_new_tokens)
    truncated = False
    if name == "e2llm" or name == "hybrid":
        excerpts: Sequence[str] = ()
        if name == "hybrid":
            excerpts = top_chunks(pipe, ctx.corpus, question, cfg.top_k)
        result = pipe.ask(ctx.corpus, question, gen, excerpts=excerpts)
        text, positions = result.text, result.usage.input_positions
    elif name == "full":
        text, positions, truncated = generate_text(pipe, ctx.text, question, cfg)
    elif name == "rag":
        joined = "\n\n".join(top_chunks(pipe, ctx.corpus, question, cfg.top_k))
        text, positions, truncated = generate_text(pipe, joined, question, cfg)
    else:
        raise ValueError(f"Unknown system {name!r}; choose from {', '.join(SYSTEMS)}.")
    return Answer(name, text, positions, truncated, time.perf_counter() - start)
