"""Adapters from encoder features to soft tokens in the decoder's embedding space.

Both adapters end by rescaling every soft token to the mean L2 norm of the decoder's
own input embeddings (a buffer, saved with the weights), so soft tokens enter the
decoder on the scale it was trained on, whatever the model family.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import AdapterConfig


class _ScaledOutput(nn.Module):
    """Projects vectors to a fixed L2 norm: the decoder's mean embedding norm."""

    embed_norm: torch.Tensor

    def __init__(self, embed_norm: float) -> None:
        super().__init__()
        self.register_buffer("embed_norm", torch.tensor(float(embed_norm)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(x, dim=-1) * self.embed_norm


class MLPAdapter(nn.Module):
    """Two-layer GELU MLP applied to each pooled vector (E2LLM v1).

    Shapes: (n, k, d_enc) -> (n, k, d_dec).
    """

    def __init__(self, d_in: int, d_out: int, hidden_mult: int, embed_norm: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(d_in, d_out * hidden_mult),
            nn.GELU(),
            nn.Linear(d_out * hidden_mult, d_out),
        )
        self.out = _ScaledOutput(embed_norm)

    def forward(
        self, features: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.out(self.net(features)), mask


class PMAAdapter(nn.Module):
    """Pooling by multi-head attention (E2LLM v2): k learned queries over token states.

    Shapes: (n, T, d_enc) with mask (n, T) -> (n, k, d_dec).
    """

    def __init__(
        self, d_in: int, d_out: int, k: int, num_heads: int, hidden_mult: int, embed_norm: float
    ) -> None:
        super().__init__()
        if d_out % num_heads:
            raise ValueError(
                f"PMA needs the decoder width {d_out} divisible by num_heads={num_heads}; "
                "choose another adapter.num_heads."
            )
        self.queries = nn.Parameter(torch.randn(k, d_out) * 0.02)
        self.kv_proj = nn.Linear(d_in, d_out)
        self.attn = nn.MultiheadAttention(d_out, num_heads, batch_first=True)
        self.norm1 = nn.LayerNorm(d_out)
        self.norm2 = nn.LayerNorm(d_out)
        self.ffn = nn.Sequential(
            nn.Linear(d_out, d_out * hidden_mult), nn.GELU(), nn.Linear(d_out * hidden_mult, d_out)
        )
        self.out = _ScaledOutput(embed_norm)

    def forward(
        self, features: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        n = features.shape[0]
        kv = self.kv_proj(features)  # (n, T, d_dec)
        q = self.queries.unsqueeze(0).expand(n, -1, -1)  # (n, k, d_dec)
        h, _ = self.attn(q, kv, kv, key_padding_mask=~mask.bool(), need_weights=False)
        h = self.norm1(h + q)
        h = self.norm2(h + self.ffn(h))
        out_mask = torch.ones(h.shape[:2], dtype=torch.long, device=h.device)
        return self.out(h), out_mask


def build_adapter(config: AdapterConfig, tokens_per_chunk: int, embed_norm: float) -> nn.Module:
    """Build the adapter named by ``config`` (dims must already be filled in)."""
    if config.input_dim is None or config.output_dim is None:
        raise ValueError("AdapterConfig.input_dim/output_dim must be set before building.")
    if config.kind == "pma":
        return PMAAdapter(
            config.input_dim,
            config.output_dim,
            tokens_per_chunk,
            config.num_heads,
            config.hidden_mult,
            embed_norm,
        )
    return MLPAdapter(config.input_dim, config.output_dim, config.hidden_mult, embed_norm)
