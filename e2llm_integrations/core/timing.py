"""Timed prefill and greedy decoding, for benchmarks (``E2LLMPipeline.profiler``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from .generation import cache_argument, cache_of, last_logits_only, sampled_ids
from .options import GenerationConfig
from .precision import inference_autocast
from .prefix_cache import cache_nbytes

if TYPE_CHECKING:
    from .corpus import EncodedCorpus
    from .pipeline import E2LLMPipeline


@dataclass(frozen=True)
class DecodeTiming:
    """Seconds one timed generation took.

    Attributes:
        setup_s: Building the decoder input (encoding, adapter, prompt).
        prefill_s: The prefill, up to the first token.
        decode_s: The remaining ``new_tokens - 1`` tokens.
        input_positions: Decoder input positions of the prefill.
    """

    setup_s: float
    prefill_s: float
    decode_s: float
    input_positions: int

    @property
    def ttft_s(self) -> float:
        """Seconds to the first token: setup plus prefill."""
        return self.setup_s + self.prefill_s

    @property
    def wall_s(self) -> float:
        return self.setup_s + self.prefill_s + self.decode_s


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_decode(
    decoder: Any, embeds: torch.Tensor, new_tokens: int, past: Any = None
) -> tuple[float, float]:
    """Prefill ``embeds`` (1, P, d_dec) and decode ``new_tokens`` greedy tokens.

    With ``past`` (a KV cache over earlier positions) only ``embeds`` are prefilled.

    The prefill computes logits for the last position only, as ``transformers``'
    ``generate`` does, so no system pays for a (positions x vocabulary) logits matrix.
    End-of-sequence tokens do not stop it: every run decodes exactly ``new_tokens``.

    Returns:
        Seconds to the first token, seconds for the remaining ``new_tokens - 1``.
    """
    cache_kw, dev = cache_argument(decoder), embeds.device
    start = time.perf_counter()
    with inference_autocast(decoder):
        prefill = last_logits_only(decoder)
    if past is not None:
        prefill[cache_kw] = past
    with inference_autocast(decoder):
        out = decoder(inputs_embeds=embeds, use_cache=True, **prefill)
    token = out.logits[:, -1].argmax(-1, keepdim=True)  # (1, 1)
    _sync(dev)
    first = time.perf_counter()
    for _ in range(new_tokens - 1):
        with inference_autocast(decoder):
            out = decoder(input_ids=token, use_cache=True, **{cache_kw: cache_of(out)})
        token = out.logits[:, -1].argmax(-1, keepdim=True)
    _sync(dev)
    return first - start, time.perf_counter() - first


@dataclass(frozen=True)
class CachedInputs:
    """A warm decoder input: the KV cache over its first positions, and the rest.

    Attributes:
        past: The decoder's KV cache over ``cached_positions`` positions (a private copy).
        suffix: (1, S, d_dec) embeddings still to prefill.
        cached_positions: Positions the cache covers.
        cache_bytes: Bytes of that cache (what the prefix cache keeps per corpus).
    """

    past: Any
    suffix: torch.Tensor
    cached_positions: int
    cache_bytes: int


class DecodeProfiler:
    """Timed decoding over one pipeline's model, for benchmarks (``pipeline.profiler``).

    Every method takes the pipeline's lock, so a measurement never overlaps another call.

    Example:
        >>> prof = pipeline.profiler  # doctest: +SKIP
        >>> corpus = pipeline.encode([text])  # doctest: +SKIP
        >>> prof.timed_decode(lambda: prof.soft_inputs(corpus, "Who?", 16), 16).ttft_s  # doctest: +SKIP
    """

    def __init__(self, pipeline: E2LLMPipeline) -> None:
        self._model = pipeline.model
        self._lock = pipeline.lock
        self._cache = pipeline.prefix_cache

    def weight_bytes(self) -> dict[str, int]:
        """Bytes of the ``encoder``, ``adapter`` and ``decoder`` (LoRA included) weights."""
        parts = {"encoder": self._model.encoder, "adapter": self._model.adapter}
        parts["decoder"] = self._model.decoder
        return {
            name: sum(p.numel() * p.element_size() for p in module.parameters())
            for name, module in parts.items()
        }

    def soft_inputs(
        self, corpus: EncodedCorpus, question: str, max_new_tokens: int, **prompt: Any
    ) -> torch.Tensor:
        """The E2LLM decoder input over ``corpus`` (``E2LLMModel.decoder_inputs``): (1, P, d_dec)."""
        gen = GenerationConfig(max_new_tokens=max_new_tokens)
        with self._lock:
            inputs = self._model.decoder_inputs(
                corpus.features, corpus.mask, question, gen, **prompt
            )
        return inputs.embeds

    def cached_inputs(
        self, corpus: EncodedCorpus, question: str, max_new_tokens: int, **prompt: Any
    ) -> CachedInputs:
        """The decoder input over ``corpus`` as a warm repeat question sees it.

        The KV cache over ``[prefix] <soft tokens>`` comes from the pipeline's prefix
        cache (prefilled there on first use, as ``ask`` does), and only the suffix (the
        question) is left to prefill. The cache's bytes are reported with it.
        """
        model, gen = self._model, GenerationConfig(max_new_tokens=max_new_tokens)
        with self._lock, torch.inference_mode():
            inputs = model.decoder_inputs(corpus.features, corpus.mask, question, gen, **prompt)
            past, suffix = model.cached_prefix(inputs, self._cache)
        cached = inputs.embeds.shape[1] - suffix.shape[1]
        return CachedInputs(past, suffix, cached, cache_nbytes(past))

    def text_inputs(self, ids: Sequence[int]) -> torch.Tensor:
        """Decoder token ids (e.g. ``pipeline.chat_ids``) as (1, P, d_dec) input embeddings."""
        with self._lock, torch.inference_mode():
            table = self._model.decoder.get_input_embeddings()
            return table(torch.tensor([list(ids)], device=self._model.device))  # type: ignore[no-any-return]

    def timed_decode(
        self,
        build: Callable[[], torch.Tensor | CachedInputs],
        new_tokens: int,
        base_only: bool = False,
    ) -> DecodeTiming:
        """Time ``build()`` (the decoder input) and ``new_tokens`` greedy decoding steps.

        All of it runs under the lock and in inference mode, with the decoder's LoRA off
        when ``base_only`` (the text baselines). See :func:`timed_decode`.
        """
        with self._lock, torch.inference_mode(), self._model.base_only(base_only):
            start = time.perf_counter()
            built = build()
            setup = time.perf_counter() - start
            if isinstance(built, CachedInputs):
                past, embeds, cached = built.past, built.suffix, built.cached_positions
            else:
                past, embeds, cached = None, built, 0
            prefill, decode = timed_decode(self._model.decoder, embeds, new_tokens, past)
        return DecodeTiming(setup, prefill, decode, cached + int(embeds.shape[1]))

    def token_times(self, embeds: torch.Tensor, new_tokens: int) -> list[float]:
        """``time.perf_counter()`` as each of ``new_tokens`` greedy tokens is decoded.

        From (1, P, d_dec) ``embeds`` (e.g. :meth:`soft_inputs`), under the lock; end of
        sequence does not stop it, so a run decodes exactly ``new_tokens`` tokens.
        """
        gen = GenerationConfig(max_new_tokens=new_tokens)
        with self._lock, torch.inference_mode():
            return [time.perf_counter() for _ in sampled_ids(self._model.decoder, embeds, gen)]
