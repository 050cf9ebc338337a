"""Token-by-token decoding from ``inputs_embeds`` with a KV cache, stop strings and usage."""

from __future__ import annotations

import inspect
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from .options import GenerationConfig
from .precision import inference_autocast

__all__ = [
    "GenerationChunk",
    "GenerationConfig",  # defined with the other options in .options
    "GenerationResult",
    "Usage",
    "cache_argument",
    "cache_of",
    "decode_ids",
    "eos_ids",
    "last_logits_only",
    "sampled_ids",
    "stream_tokens",
]

if TYPE_CHECKING:
    from .expansion import Source


@dataclass
class Usage:
    """What one call cost and what it represented.

    Attributes:
        input_positions: Decoder input positions (prompt tokens + soft tokens).
        context_tokens: Decoder tokens the raw chunk texts would have taken.
        soft_tokens: Soft tokens given to the decoder.
        n_chunks: Chunks represented.
        output_tokens: Generated tokens.
        expanded_chunks: Chunks also shown as raw text (selective expansion).
        dropped_chunks: Chunks left out because the document set did not fit the
            decoder's window (the most relevant ones were kept; 0 when all fit).
    """

    input_positions: int = 0
    context_tokens: int = 0
    soft_tokens: int = 0
    n_chunks: int = 0
    output_tokens: int = 0
    expanded_chunks: int = 0
    dropped_chunks: int = 0

    @property
    def compression_ratio(self) -> float:
        """Raw context tokens per soft token (1.0 when there is no context)."""
        return self.context_tokens / self.soft_tokens if self.soft_tokens else 1.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "input_positions": self.input_positions,
            "context_tokens": self.context_tokens,
            "soft_tokens": self.soft_tokens,
            "n_chunks": self.n_chunks,
            "output_tokens": self.output_tokens,
            "expanded_chunks": self.expanded_chunks,
            "dropped_chunks": self.dropped_chunks,
            "compression_ratio": round(self.compression_ratio, 3),
        }

    def summary(self, sources: Sequence[Source] | None = None) -> dict[str, Any]:
        """What the context cost, for a framework's response metadata (plain data).

        Compression ratio, context and soft tokens and chunks; with ``sources`` (the
        expanded chunks) also ``expanded_chunks`` and ``sources`` as ``Source.to_dict()``.

        Example:
            >>> Usage(context_tokens=30, soft_tokens=10, n_chunks=10).summary()["compression_ratio"]
            3.0
        """
        summary: dict[str, Any] = {
            "compression_ratio": round(self.compression_ratio, 3),
            "context_tokens": self.context_tokens,
            "soft_tokens": self.soft_tokens,
            "n_chunks": self.n_chunks,
        }
        if sources is not None:
            summary["expanded_chunks"] = self.expanded_chunks
            summary["sources"] = [s.to_dict() for s in sources]
        return summary


@dataclass
class GenerationChunk:
    """A piece of streamed output; the last one has ``finish_reason`` and ``usage``."""

    text: str
    finish_reason: str | None = None
    usage: Usage | None = None
    sources: tuple[Source, ...] = ()
    """On the last chunk: the chunks shown as raw text (selective expansion), for citations."""

    def metadata(self) -> dict[str, Any]:
        """``finish_reason``, ``usage`` and ``sources`` as plain data (JSON-ready dicts)."""
        usage = self.usage.to_dict() if self.usage is not None else {}
        sources = [s.to_dict() for s in self.sources]
        return {"finish_reason": self.finish_reason, "usage": usage, "sources": sources}


@dataclass
class GenerationResult:
    """A whole answer: text, why it ended, what it cost, and the chunks it read as text."""

    text: str
    finish_reason: str
    usage: Usage
    sources: list[Source] = field(default_factory=list)


def _held_back(text: str, stops: Sequence[str]) -> int:
    """Characters at the end of ``text`` that could still begin a stop string."""
    hold = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:n]):
                hold = max(hold, n)
                break
    if text.endswith("\ufffd"):  # an incomplete multi-byte character
        hold = max(hold, 1)
    return hold


def _next_token(logits: torch.Tensor, cfg: GenerationConfig, gen: torch.Generator | None) -> int:
    """Pick the next token from (vocab,) logits."""
    if cfg.temperature == 0:
        return int(logits.argmax())
    probs = torch.softmax(logits.float() / cfg.temperature, dim=-1)
    if cfg.top_p < 1.0:
        sorted_p, idx = probs.sort(descending=True)
        keep = sorted_p.cumsum(-1) - sorted_p < cfg.top_p
        probs = torch.zeros_like(probs).scatter(0, idx[keep], sorted_p[keep])
    return int(torch.multinomial(probs, 1, generator=gen))


@torch.inference_mode()
def stream_tokens(
    decoder: Any,
    tokenizer: Any,
    inputs_embeds: torch.Tensor,
    cfg: GenerationConfig,
    usage: Usage,
    past: Any = None,
) -> Iterator[GenerationChunk]:
    """Decode from (1, P, d) embeddings, yielding text deltas, then a final chunk.

    Stop strings are cut before they are emitted; text that might begin a stop string
    is held back until it can be decided. With ``past`` (a KV cache over earlier
    positions, see :mod:`.prefix_cache`), ``inputs_embeds`` continue after it.
    """
    ids = sampled_ids(decoder, inputs_embeds, cfg, past)
    yield from decode_ids(ids, tokenizer, cfg, usage, eos_ids(decoder, tokenizer))


@torch.inference_mode()
def sampled_ids(
    decoder: Any, inputs_embeds: torch.Tensor, cfg: GenerationConfig, past: Any = None
) -> Iterator[int]:
    """Token ids the in-process ``decoder`` generates from (1, P, d) embeddings, one by one.

    Each id is computed when it is asked for, so a reader that stops early (a stop
    string, a closed stream) costs no further decoder step.
    """
    gen = None
    if cfg.seed is not None:
        gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
    cache_kw = cache_argument(decoder)
    prefill = last_logits_only(decoder)
    if past is not None:
        prefill[cache_kw] = past
    with inference_autocast(decoder):
        out = decoder(inputs_embeds=inputs_embeds, use_cache=True, **prefill)
    for step in range(cfg.max_new_tokens):
        token = _next_token(out.logits[0, -1].float().cpu(), cfg, gen)
        yield token
        if step + 1 < cfg.max_new_tokens:
            next_ids = torch.tensor([[token]], device=inputs_embeds.device)
            with inference_autocast(decoder):
                out = decoder(input_ids=next_ids, use_cache=True, **{cache_kw: cache_of(out)})


def decode_ids(
    ids: Iterable[int],
    tokenizer: Any,
    cfg: GenerationConfig,
    usage: Usage,
    eos: Collection[int],
) -> Iterator[GenerationChunk]:
    """Text deltas of generated token ids, then a final chunk with usage and finish reason.

    The one text path of every decoder backend: ``ids`` come from the in-process
    decoder (:func:`sampled_ids`) or a serving engine. Generation ends at an ``eos`` id
    (not counted), at a stop string (cut before it; the text that might begin one is
    held back until it is decided), after ``cfg.max_new_tokens`` ids (``"length"``), or
    when ``ids`` ends by itself earlier (an engine that stopped; ``"stop"``). ``ids``
    is closed when decoding ends, so a remote request ends with it.
    """
    source = iter(ids)
    kept: list[int] = []
    emitted, finish, cut = 0, "length", -1
    try:
        for token in source:
            if token in eos:
                finish = "stop"
                break
            kept.append(token)
            text = tokenizer.decode(kept, skip_special_tokens=True)
            cut = min((i for i in (text.find(s) for s in cfg.stop) if i >= 0), default=-1)
            if cut >= 0:
                if cut > emitted:
                    yield GenerationChunk(text[emitted:cut])
                emitted, finish = cut, "stop"
                break
            safe = len(text) - _held_back(text, cfg.stop)
            if safe > emitted:
                yield GenerationChunk(text[emitted:safe])
                emitted = safe
            if len(kept) >= cfg.max_new_tokens:
                break
        else:
            if len(kept) < cfg.max_new_tokens:
                finish = "stop"
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()
    if cut < 0:  # no stop string: what was held back can no longer begin one
        text = tokenizer.decode(kept, skip_special_tokens=True)
        if len(text) > emitted:
            yield GenerationChunk(text[emitted:])
    usage.output_tokens = len(kept)
    yield GenerationChunk("", finish_reason=finish, usage=usage)


def eos_ids(decoder: Any, tokenizer: Any) -> list[int]:
    """End-of-sequence ids: the decoder's generation config, its config and the tokenizer."""
    ids: list[int] = []
    for source in (getattr(decoder, "generation_config", None), getattr(decoder, "config", None)):
        value = getattr(source, "eos_token_id", None) if source is not None else None
        if isinstance(value, int):
            ids.append(value)
        elif isinstance(value, list):
            ids.extend(value)
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return ids


def _forward_params(decoder: Any) -> Any:
    base = decoder.get_base_model() if hasattr(decoder, "get_base_model") else decoder
    return inspect.signature(type(base).forward).parameters


def last_logits_only(decoder: Any) -> dict[str, int]:
    """Prefill kwargs that keep only the last position's logits (saves vocab x length floats)."""
    return {"logits_to_keep": 1} if "logits_to_keep" in _forward_params(decoder) else {}


def cache_argument(decoder: Any) -> str:
    """Name of the KV-cache argument: ``cache`` (transformers >= 5.2x) or ``past_key_values``."""
    return "cache" if "cache" in _forward_params(decoder) else "past_key_values"


def cache_of(output: Any) -> Any:
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values
