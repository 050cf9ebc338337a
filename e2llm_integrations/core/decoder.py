"""The decoder half of :class:`~.model.E2LLMModel`: window, embedding table, plain text.

:class:`DecoderMixin` holds what needs only the decoder LLM and its tokenizer: the
decoder's window and its checks, the input-embedding table, plain chat generation
without soft tokens (the baselines) and decoding on a remote backend (e.g. vLLM). The
model mixes it in (as ``transformers`` models mix in ``GenerationMixin``), so these are
``E2LLMModel`` methods; the soft-token side (adapter, prompts, training) is in
:mod:`.model`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from .generation import (
    GenerationChunk,
    GenerationConfig,
    Usage,
    decode_ids,
    eos_ids,
    stream_tokens,
)
from .prompt import PromptParts, render_chat

if TYPE_CHECKING:
    from .backend import DecoderBackend


@dataclass
class DecoderInputs:
    """One call's decoder input (:meth:`E2LLMModel.decoder_inputs`).

    Attributes:
        prompt: Token ids before/after the soft tokens.
        soft: (n_soft, d_dec) soft tokens.
        embeds: (1, P, d_dec) input embeddings, ``[prefix] soft [suffix]``.
        usage: What the call costs (``output_tokens`` filled in when it ends).
    """

    prompt: PromptParts
    soft: torch.Tensor
    embeds: torch.Tensor
    usage: Usage


class DecoderMixin:
    """Decoder-only methods of :class:`~.model.E2LLMModel` (see the module docstring).

    Example:
        >>> ids = model.chat_ids([{"role": "user", "content": "Hi"}])  # doctest: +SKIP
        >>> "".join(c.text for c in model.stream_ids(ids))  # the base LLM  # doctest: +SKIP
    """

    decoder: Any
    tokenizer: Any
    backend: DecoderBackend | None
    """Where the decoder runs: ``None`` in this process (transformers), else e.g. vLLM."""

    @property
    def max_positions(self) -> int:
        """The decoder's window: input positions plus new tokens one call may take."""
        cfg = self.decoder.config
        return int(getattr(cfg, "max_position_embeddings", None) or 2048)

    def _embed(self, ids: list[int]) -> torch.Tensor:
        table = self.decoder.get_input_embeddings()
        return table(torch.tensor(ids, dtype=torch.long, device=table.weight.device))  # (len, d)

    def check_window(self, prompt: PromptParts, n_soft: int, max_new_tokens: int) -> None:
        """Refuse a call whose prompt, soft tokens and new tokens overflow the window."""
        need = len(prompt) + n_soft + max_new_tokens
        if need > self.max_positions:
            raise ValueError(
                f"The prompt needs {need} decoder positions ({len(prompt)} prompt tokens + "
                f"{n_soft} soft tokens + {max_new_tokens} new tokens) but the decoder's window is "
                f"{self.max_positions}. Shorten the question, lower max_new_tokens, or keep fewer "
                "chunks (e.g. a FAISS prefilter with top_k)."
            )

    def check_text_window(self, n_ids: int, max_new_tokens: int) -> None:
        """Refuse a plain-text prompt of ``n_ids`` tokens that would overflow the window."""
        if n_ids + max_new_tokens > self.max_positions:
            raise ValueError(
                f"The prompt has {n_ids} tokens + {max_new_tokens} new tokens, over the "
                f"decoder window of {self.max_positions} positions; shorten or truncate the "
                "text (retrieve fewer documents or nodes), or let E2LLM compress it."
            )

    def decode_remote(
        self, inputs: DecoderInputs, generation: GenerationConfig | None = None
    ) -> Iterator[GenerationChunk]:
        """Decode ``inputs`` on :attr:`backend` (e.g. vLLM), as text chunks then usage.

        Touches no module of this model (only the tokenizer's thread-safe ``decode``), so
        concurrent calls need no lock and the engine batches them.
        """
        if self.backend is None:
            raise ValueError("This model has no remote decoder backend; use stream().")
        cfg = generation or GenerationConfig()
        embeds = inputs.embeds[0].detach().to("cpu").clone()  # (P, d_dec), its own storage
        ids = self.backend.token_ids(embeds, cfg)
        eos = eos_ids(self.decoder, self.tokenizer)
        yield from decode_ids(ids, self.tokenizer, cfg, inputs.usage, eos)

    # ------------------------------------------------------------------ plain text
    def chat_ids(self, messages: Sequence[dict[str, str]]) -> list[int]:
        """Token ids of plain chat messages as the decoder reads them (no soft tokens).

        Rendered with the chat template; a tokenizer without one gets its BOS token first.
        """
        text = render_chat(self.tokenizer, messages)
        ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        if (
            not getattr(self.tokenizer, "chat_template", None)
            and self.tokenizer.bos_token_id is not None
        ):
            ids = [self.tokenizer.bos_token_id, *ids]
        return ids

    # ------------------------------------------------------------------ LoRA merge
    @property
    def lora_merged(self) -> bool:
        """Whether the decoder LoRA is folded into the base weights (:meth:`merge_lora`)."""
        return bool(getattr(self, "_lora_merged", False))

    def merge_lora(self, merged: bool = True) -> bool:
        """Fold the decoder LoRA into the base weights for inference, or take it back out.

        Merged, each adapted projection is one matmul instead of a base matmul plus two
        low-rank ones and an add (210 layers in SmolLM2), which is what a short prefill
        over a cached prefix and every decode step pay for. The LoRA matrices stay, so
        :meth:`save_pretrained` writes the same files and :meth:`base_only` still runs
        the base LLM (it takes the LoRA out for its duration). Only fp32 weights are
        merged: a bf16/fp16 weight would round small LoRA updates away, so those keep
        the LoRA beside the weights (as do models without one). Never train merged.

        Returns:
            Whether the LoRA is merged now.
        """
        can = (
            hasattr(self.decoder, "merge_adapter")
            and self.decoder.get_input_embeddings().weight.dtype == torch.float32
        )
        if merged and can and not self.lora_merged:
            self.decoder.merge_adapter()
            self._lora_merged = True
        elif not merged and self.lora_merged:
            self.decoder.unmerge_adapter()
            self._lora_merged = False
        return self.lora_merged

    @contextlib.contextmanager
    def base_only(self, on: bool = True) -> Iterator[None]:
        """Within it (when ``on``), the decoder's LoRA is switched off: the base LLM runs."""
        off = getattr(self.decoder, "disable_adapter", None)
        if not on or off is None:
            yield
            return
        was_merged = self.lora_merged
        self.merge_lora(False)
        try:
            with off():
                yield
        finally:
            if was_merged:
                self.merge_lora(True)

    def stream_text(
        self,
        messages: Sequence[dict[str, str]],
        generation: GenerationConfig | None = None,
        base_only: bool = True,
    ) -> Iterator[GenerationChunk]:
        """Plain chat generation from text messages, without soft tokens.

        With ``base_only`` the decoder's LoRA is switched off, so this is the unmodified
        base LLM: the full-context and RAG baselines run through here.
        """
        cfg = generation or GenerationConfig()
        ids = self.chat_ids(messages)
        self.check_text_window(len(ids), cfg.max_new_tokens)
        yield from self.stream_ids(ids, cfg, base_only)

    def stream_ids(
        self, ids: Sequence[int], generation: GenerationConfig | None = None, base_only: bool = True
    ) -> Iterator[GenerationChunk]:
        """Generation from decoder token ids (e.g. :meth:`chat_ids`), without soft tokens."""
        cfg = generation or GenerationConfig()
        usage = Usage(input_positions=len(ids), context_tokens=len(ids))
        with torch.inference_mode(), self.base_only(base_only):
            embeds = self._embed(list(ids)).unsqueeze(0)  # (1, P, d_dec)
            yield from stream_tokens(self.decoder, self.tokenizer, embeds, cfg, usage)
