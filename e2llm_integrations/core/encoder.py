"""The chunk encoder: any Hugging Face encoder, pooled into ``k`` vectors per chunk."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .config import EncoderConfig, LoraSettings
from .models import resolve
from .precision import inference_autocast

logger = logging.getLogger(__name__)

PROGRESS_MIN_CHUNKS = 256
"""Show a progress bar when encoding at least this many chunks."""


def window_pool(states: torch.Tensor, mask: torch.Tensor, k: int) -> torch.Tensor:
    """Mean-pool each sequence's valid tokens over ``k`` contiguous windows.

    Args:
        states: Token states, (n, T, d).
        mask: Attention mask, (n, T); valid tokens first.
        k: Windows per sequence.

    Returns:
        Pooled vectors, (n, k, d). With k=1 this is ordinary mean pooling.
    """
    mask_f = mask.to(states.dtype)  # (n, T)
    lengths = mask_f.sum(dim=1, keepdim=True).clamp(min=1)  # (n, 1)
    pos = torch.arange(states.shape[1], device=states.device).unsqueeze(0)  # (1, T)
    window = torch.div(pos * k, lengths, rounding_mode="floor").clamp(max=k - 1).long()
    onehot = nn.functional.one_hot(window, k).to(states.dtype) * mask_f.unsqueeze(-1)  # (n, T, k)
    weights = onehot / onehot.sum(dim=1, keepdim=True).clamp(min=1)
    return torch.einsum("ntk,ntd->nkd", weights, states)


def add_lora(model: nn.Module, lora: LoraSettings) -> nn.Module:
    """Wrap ``model`` with peft LoRA adapters described by ``lora``."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
    )
    return get_peft_model(model, config)


class ChunkEncoder(nn.Module):
    """Turns chunk texts into features for the adapter.

    For the ``mlp`` adapter the features are ``k`` pooled vectors per chunk; for ``pma``
    they are the chunk's token states. Both come with a mask of shape (n, L).

    Example:
        >>> enc = ChunkEncoder.from_config(EncoderConfig())  # doctest: +SKIP
        >>> feats, mask = enc.encode(["one chunk", "another"])  # doctest: +SKIP
        >>> feats.shape  # doctest: +SKIP
        torch.Size([2, 1, 384])
    """

    def __init__(
        self, model: nn.Module, tokenizer: Any, config: EncoderConfig, token_states: bool = False
    ) -> None:
        super().__init__()
        self.model: Any = model
        self.tokenizer = tokenizer
        self.config = config
        self.token_states = token_states

    @classmethod
    def from_config(cls, config: EncoderConfig, token_states: bool = False) -> ChunkEncoder:
        from transformers import AutoModel, AutoTokenizer

        path = resolve(config.name_or_path)
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModel.from_pretrained(path)
        model.eval()
        if config.lora is not None:
            model = add_lora(model, config.lora)
        return cls(model, tokenizer, config, token_states=token_states)

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def trainable(self) -> bool:
        return self.config.lora is not None

    def lora_digest(self) -> str | None:
        """sha256 (16 hex digits) of the LoRA weights; ``None`` for a frozen encoder.

        Two checkpoints with the same base encoder but different encoder LoRAs make
        different features, so corpora encoded by one must not be read by the other.
        """
        if self.config.lora is None:
            return None
        digest = hashlib.sha256()
        for name, param in sorted(self.model.named_parameters()):
            if "lora_" in name:
                digest.update(name.encode())
                digest.update(param.detach().float().cpu().numpy().tobytes())
        return digest.hexdigest()[:16]

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode tokenized chunks.

        Args:
            input_ids: (n, T) encoder token ids.
            attention_mask: (n, T).

        Returns:
            ``(features, mask)``: (n, L, d_enc) and (n, L), L = k or T.
        """
        states = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.token_states:
            return states, attention_mask
        k = self.config.tokens_per_chunk
        if self.config.pooling == "cls" and k == 1:
            pooled = states[:, :1]
        else:
            pooled = window_pool(states, attention_mask, k)
        return pooled, torch.ones(pooled.shape[:2], dtype=torch.long, device=pooled.device)

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        batch = self.tokenizer(
            list(texts),
            padding=True,
            truncation=True,
            max_length=self.config.max_length,
            return_tensors="pt",
        )
        return {
            k: v.to(self.device) for k, v in batch.items() if k in ("input_ids", "attention_mask")
        }

    @torch.no_grad()
    def encode(
        self, texts: Sequence[str], progress: bool | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode many chunk texts in batches without gradients.

        Returns:
            ``(features, mask)`` on the CPU: (n, L, d_enc) float32 and (n, L).
        """
        if not texts:
            width = self.hidden_size
            return torch.zeros(0, 1, width), torch.zeros(0, 1, dtype=torch.long)
        from tqdm.auto import tqdm

        bs = self.config.batch_size
        show = progress if progress is not None else len(texts) >= PROGRESS_MIN_CHUNKS
        # Batch texts of similar length together: far less padding on mixed inputs.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        feats: list[torch.Tensor] = []
        masks: list[torch.Tensor] = []
        for i in tqdm(range(0, len(texts), bs), desc="encoding chunks", disable=not show):
            with inference_autocast(self.model):
                f, m = self(**self.tokenize([texts[j] for j in order[i : i + bs]]))
            feats.append(f.float().cpu())
            masks.append(m.cpu())
        feat, mask = _pad_cat(feats, masks)
        inverse = torch.empty(len(order), dtype=torch.long)
        inverse[torch.tensor(order)] = torch.arange(len(order))
        return feat[inverse], mask[inverse]


def sentence_embeddings(features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """L2-normalised masked mean of chunk features, the key a chunk is retrieved by.

    Args:
        features: (n, L, d_enc) encoder features.
        mask: (n, L).

    Returns:
        (n, d_enc) float32 unit vectors; cosine similarity is their dot product.
    """
    m = mask.to(features.dtype).unsqueeze(-1)
    pooled = (features * m).sum(1) / m.sum(1).clamp(min=1)
    return nn.functional.normalize(pooled.float(), dim=-1)


def _pad_cat(
    feats: list[torch.Tensor], masks: list[torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate (n_i, L_i, d) batches, right-padding L to the longest."""
    length = max(f.shape[1] for f in feats)
    out_f = [nn.functional.pad(f, (0, 0, 0, length - f.shape[1])) for f in feats]
    out_m = [nn.functional.pad(m, (0, length - m.shape[1])) for m in masks]
    return torch.cat(out_f), torch.cat(out_m)
