"""``E2LLMModel``: chunk encoder + adapter + decoder LLM (optionally with LoRA).

This module is the soft-token side: building, prompts, the adapter, the training forward
and answering over chunks. What needs only the decoder (its window, plain-text and
remote decoding) is :class:`~.decoder.DecoderMixin`, mixed into the model.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .adapter import build_adapter
from .config import E2LLMConfig
from .decoder import DecoderInputs, DecoderMixin
from .encoder import ChunkEncoder, add_lora
from .generation import GenerationChunk, GenerationConfig, GenerationResult, Usage, stream_tokens
from .models import resolve
from .precision import Autocast, bf16_enabled, inference_mode_of, set_inference_autocast
from .prefix_cache import PrefixCache, prefix_key
from .prompt import PromptParts, build_prompt

__all__ = ["IGNORE_INDEX", "DecoderInputs", "E2LLMModel", "GenerationResult", "TrainExample"]

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100


@dataclass
class TrainExample:
    """One training sequence: chunk features, prompt around them, target tokens.

    Attributes:
        features: (n_chunks, L, d_enc) encoder features (or ``None`` with ``chunk_texts``).
        mask: (n_chunks, L) feature mask.
        prompt: Token ids before/after the soft tokens.
        target_ids: Tokens the loss is computed on (answer or reconstructed text).
    """

    features: torch.Tensor
    mask: torch.Tensor
    prompt: PromptParts
    target_ids: list[int]


def _torch_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


class E2LLMModel(DecoderMixin, nn.Module):
    """Encoder-elongated LLM: the decoder reads one or a few soft tokens per chunk.

    Example:
        >>> model = E2LLMModel.from_config(E2LLMConfig())  # doctest: +SKIP
        >>> feats, mask = model.encoder.encode(["Paris is the capital of France."])  # doctest: +SKIP
        >>> model.generate(feats, mask, "What is the capital of France?").text  # doctest: +SKIP
    """

    def __init__(
        self,
        config: E2LLMConfig,
        encoder: ChunkEncoder,
        adapter: nn.Module,
        decoder: nn.Module,
        tokenizer: Any,
    ) -> None:
        super().__init__()
        self.config = config
        self.encoder = encoder
        self.adapter = adapter
        self.decoder = decoder
        self.tokenizer = tokenizer
        self.backend = None

    # ------------------------------------------------------------------ building
    @classmethod
    def from_config(
        cls, config: E2LLMConfig, device: str | torch.device | None = None
    ) -> E2LLMModel:
        """Load the base models named in ``config`` and build a fresh adapter (+ LoRA)."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        encoder = ChunkEncoder.from_config(
            config.encoder, token_states=config.adapter.kind == "pma"
        )
        dcfg = config.decoder
        path = resolve(dcfg.name_or_path)
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=dcfg.trust_remote_code)
        decoder = AutoModelForCausalLM.from_pretrained(
            path, dtype=_torch_dtype(dcfg.dtype, dev), trust_remote_code=dcfg.trust_remote_code
        )
        return cls.from_modules(config, encoder, decoder, tokenizer).to(dev)

    @classmethod
    def from_modules(
        cls, config: E2LLMConfig, encoder: ChunkEncoder, decoder: Any, tokenizer: Any
    ) -> E2LLMModel:
        """Assemble a model from already-loaded base modules (used by tests and loaders)."""
        for p in decoder.parameters():
            p.requires_grad_(False)
        if config.decoder.lora is not None:
            decoder = add_lora(decoder, config.decoder.lora)
        decoder.eval()
        config.adapter.input_dim = encoder.hidden_size
        config.adapter.output_dim = int(decoder.get_input_embeddings().weight.shape[1])
        adapter = build_adapter(
            config.adapter, config.encoder.tokens_per_chunk, _embed_norm(decoder)
        )
        return cls(config, encoder, adapter, decoder, tokenizer)

    @classmethod
    def from_pretrained(
        cls, path: str | Path, device: str | torch.device | None = None
    ) -> E2LLMModel:
        """Load a checkpoint written by :meth:`save_pretrained` over its base models."""
        from .checkpoint import load_checkpoint

        return load_checkpoint(path, device=device)

    def save_pretrained(self, path: str | Path) -> Path:
        """Write adapter + LoRA weights and the config (never the base weights)."""
        from .checkpoint import save_checkpoint

        return save_checkpoint(self, path)

    @property
    def device(self) -> torch.device:
        return next(self.adapter.parameters()).device

    def set_autocast(self, mode: Autocast) -> None:
        """Choose the inference precision of the encoder and the decoder.

        ``off`` is fp32 everywhere; ``bf16`` runs both in bf16 autocast; ``auto`` runs
        the encoder in bf16 where the hardware does it fast (AVX512-BF16/AMX CPUs, bf16
        GPUs), and the decoder in bf16 on GPUs only: on a CPU, autocast re-casts the
        frozen decoder weights at every forward, which costs more than it saves at
        E2LLM's few hundred positions and at every decode step (``benchmarks/bench_8k.py``;
        see README, "Speed"). Weights stay as loaded, so training is unchanged.
        """
        set_inference_autocast(self.encoder.model, mode)
        cpu_auto = mode == "auto" and self.device.type == "cpu"
        set_inference_autocast(self.decoder, "off" if cpu_auto else mode)
        self._autocast = mode

    def for_inference(self, autocast: Autocast = "auto") -> None:
        """Set up a loaded model to answer: :meth:`set_autocast`, then :meth:`merge_lora`.

        What :meth:`E2LLMPipeline.from_pretrained` does; a model that will train again
        calls ``merge_lora(False)`` first.
        """
        self.set_autocast(autocast)
        self.merge_lora()

    @property
    def autocast(self) -> Autocast:
        """The mode given to :meth:`set_autocast` (``off`` until it is called)."""
        return getattr(self, "_autocast", "off")  # type: ignore[no-any-return]

    def precision(self) -> dict[str, str]:
        """What the encoder and the decoder actually run in: ``bf16`` or ``fp32`` each."""
        return {
            name: "bf16" if bf16_enabled(self.device, inference_mode_of(module)) else "fp32"
            for name, module in (("encoder", self.encoder.model), ("decoder", self.decoder))
        }

    def feature_fingerprint(self) -> dict[str, Any]:
        """Settings (and encoder LoRA weights) that determine chunk features; encoded
        corpora carry it. ``encoder_lora`` is ``False`` for a frozen encoder, else the
        digest of its LoRA weights."""
        cfg = self.config
        return {
            "encoder": cfg.encoder.name_or_path,
            "pooling": cfg.encoder.pooling,
            "tokens_per_chunk": cfg.encoder.tokens_per_chunk,
            "token_states": self.encoder.token_states,
            "chunk_tokens": cfg.chunking.chunk_tokens,
            "overlap_tokens": cfg.chunking.overlap_tokens,
            "encoder_lora": self.encoder.lora_digest() or False,
        }

    # ------------------------------------------------------------------ prompts
    def prompt(
        self,
        question: str,
        system: str | None = None,
        history: Sequence[dict[str, str]] = (),
        instruction: str | None = None,
        excerpts: Sequence[str] = (),
    ) -> PromptParts:
        return build_prompt(
            self.tokenizer,
            question,
            instruction or self.config.instruction,
            system,
            history,
            excerpts,
        )

    def n_soft_tokens(self, mask: torch.Tensor) -> int:
        """Soft tokens the adapter makes for chunks with feature mask ``mask`` (n, L)."""
        if self.encoder.token_states:  # PMA: k queries per chunk
            return int(mask.shape[0]) * self.config.encoder.tokens_per_chunk
        return int(mask.bool().sum())

    def soft_tokens(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Adapter output for chunk features, flattened in chunk order.

        Args:
            features: (n_chunks, L, d_enc).
            mask: (n_chunks, L).

        Returns:
            (n_soft, d_dec) soft tokens (padded feature slots dropped).
        """
        if features.shape[0] == 0:
            return torch.zeros(0, self.config.adapter.output_dim or 0, device=self.device)
        feats = features.to(self.device, dtype=next(self.adapter.parameters()).dtype)
        soft, out_mask = self.adapter(feats, mask.to(self.device))  # (n, k, d_dec)
        return soft[out_mask.bool()]

    def embed_sequence(
        self, prompt: PromptParts, soft: torch.Tensor, target_ids: Sequence[int] = ()
    ) -> torch.Tensor:
        """``[prefix] soft [suffix] [target]`` as (len, d_dec) input embeddings."""
        dtype = self.decoder.get_input_embeddings().weight.dtype
        parts = [self._embed(prompt.prefix_ids), soft.to(dtype), self._embed(prompt.suffix_ids)]
        if target_ids:
            parts.append(self._embed(list(target_ids)))
        return torch.cat(parts)

    # ------------------------------------------------------------------ training
    def forward(self, examples: Sequence[TrainExample]) -> torch.Tensor:
        """Mean cross-entropy over the target tokens of a batch of examples."""
        seqs, labels = [], []
        for ex in examples:
            soft = self.soft_tokens(ex.features, ex.mask)
            emb = self.embed_sequence(ex.prompt, soft, ex.target_ids)
            n_ctx = emb.shape[0] - len(ex.target_ids)
            seqs.append(emb)
            labels.append([IGNORE_INDEX] * n_ctx + list(ex.target_ids))
        length = max(s.shape[0] for s in seqs)
        d = seqs[0].shape[1]
        batch = torch.zeros(len(seqs), length, d, dtype=seqs[0].dtype, device=self.device)
        attn = torch.zeros(len(seqs), length, dtype=torch.long, device=self.device)
        lab = torch.full((len(seqs), length), IGNORE_INDEX, dtype=torch.long, device=self.device)
        for i, (s, lb) in enumerate(zip(seqs, labels, strict=True)):
            batch[i, : s.shape[0]] = s
            attn[i, : s.shape[0]] = 1
            lab[i, : s.shape[0]] = torch.tensor(lb, device=self.device)
        out = self.decoder(inputs_embeds=batch, attention_mask=attn, labels=lab)
        return out.loss

    # ------------------------------------------------------------------ inference
    def stream(
        self,
        features: torch.Tensor,
        mask: torch.Tensor,
        question: str,
        generation: GenerationConfig | None = None,
        *,
        system: str | None = None,
        history: Sequence[dict[str, str]] = (),
        excerpts: Sequence[str] = (),
        context_tokens: int = 0,
        prefix_cache: PrefixCache | None = None,
    ) -> Iterator[GenerationChunk]:
        """Stream an answer over encoded chunks; the last chunk carries usage.

        Args:
            features: (n_chunks, L, d_enc) encoder features.
            mask: (n_chunks, L).
            question: The question.
            generation: Decoding options.
            system: Optional system message.
            history: Earlier chat turns.
            excerpts: Raw-text chunks shown after the soft tokens (hybrid mode).
            context_tokens: Raw decoder tokens the chunks stand for (for usage).
            prefix_cache: Keeps the decoder's KV cache over ``[prefix] <soft tokens>``, so
                a later question over the same chunks prefills only the suffix.
        """
        cfg = generation or GenerationConfig()
        inputs = self.decoder_inputs(
            features,
            mask,
            question,
            cfg,
            system=system,
            history=history,
            excerpts=excerpts,
            context_tokens=context_tokens,
        )
        if self.backend is not None:  # the decoder runs elsewhere, with its own prefix caching
            yield from self.decode_remote(inputs, cfg)
            return
        embeds, past = inputs.embeds, None
        if prefix_cache is not None and prefix_cache.max_bytes > 0:
            past, embeds = self.cached_prefix(inputs, prefix_cache)
        yield from stream_tokens(self.decoder, self.tokenizer, embeds, cfg, inputs.usage, past)

    def cached_prefix(
        self, inputs: DecoderInputs, prefix_cache: PrefixCache
    ) -> tuple[Any, torch.Tensor]:
        """The KV cache over ``[prefix] <soft tokens>`` of ``inputs`` (prefilled into
        ``prefix_cache`` on a miss), and the suffix embeddings still to prefill."""
        split = len(inputs.prompt.prefix_ids) + inputs.soft.shape[0]  # suffix: the question
        key = prefix_key(inputs.prompt.prefix_ids, inputs.soft)
        past, _ = prefix_cache.get(self.decoder, inputs.embeds[:, :split], key)
        return past, inputs.embeds[:, split:]

    def decoder_inputs(
        self,
        features: torch.Tensor,
        mask: torch.Tensor,
        question: str,
        generation: GenerationConfig | None = None,
        *,
        system: str | None = None,
        history: Sequence[dict[str, str]] = (),
        excerpts: Sequence[str] = (),
        context_tokens: int = 0,
    ) -> DecoderInputs:
        """The decoder input of :meth:`stream`: ``[prefix] <soft tokens> [suffix]`` embedded.

        Runs the adapter, the tokenizer and the embedding table (so callers sharing the
        model hold its lock); a remote decoder then needs no lock (:meth:`decode_remote`).
        """
        cfg = generation or GenerationConfig()
        prompt = self.prompt(question, system, history, excerpts=excerpts)
        with torch.inference_mode():
            soft = self.soft_tokens(features, mask)
            self.check_window(prompt, soft.shape[0], cfg.max_new_tokens)
            embeds = self.embed_sequence(prompt, soft).unsqueeze(0)  # (1, P, d_dec)
        usage = Usage(
            input_positions=embeds.shape[1],
            context_tokens=context_tokens,
            soft_tokens=soft.shape[0],
            n_chunks=features.shape[0],
        )
        return DecoderInputs(prompt, soft, embeds, usage)

    def generate(self, *args: Any, **kwargs: Any) -> GenerationResult:
        """Like :meth:`stream`, collected into one :class:`GenerationResult`."""
        pieces, last = [], GenerationChunk("")
        for last in self.stream(*args, **kwargs):
            pieces.append(last.text)
        assert last.usage is not None and last.finish_reason is not None
        return GenerationResult("".join(pieces), last.finish_reason, last.usage)

    def trainable_parameters(self) -> dict[str, list[nn.Parameter]]:
        """Parameters that train, grouped as ``adapter`` and ``lora``."""
        lora = [p for n, p in self.named_parameters() if "lora_" in n and p.requires_grad]
        return {"adapter": list(self.adapter.parameters()), "lora": lora}


def _embed_norm(decoder: Any) -> float:
    """Mean L2 norm of the decoder's input embeddings, as the embedding layer outputs them."""
    table = decoder.get_input_embeddings()
    ids = torch.arange(0, table.weight.shape[0], max(1, table.weight.shape[0] // 4096))
    with torch.no_grad():
        return float(table(ids.to(table.weight.device)).float().norm(dim=-1).mean())
