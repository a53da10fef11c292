"""The small transformer of each MuLan tower (pre-norm, query-key normalised attention, GEGLU).

Numerically the official ``muq_mulan`` transformer, with one difference: padded positions are masked
as keys, so a sequence's output does not depend on how much padding its batch adds (and the
feed-forward blocks skip padded positions, whose outputs are not meaningful).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from muqkit.mulan.config import TransformerConfig

# Attention logits are cosine similarities (queries and keys are L2-normalised, then rescaled by learned
# per-channel gains) multiplied by this constant, as in the official model.
ATTENTION_SCALE = 8.0


class Attention(nn.Module):
    """Pre-norm multi-head self-attention over L2-normalised queries and keys."""

    def __init__(self, dim: int, *, heads: int, dim_head: int, dropout: float = 0.0) -> None:
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.dropout = dropout
        self.norm = nn.LayerNorm(dim, bias=False)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, 2 * inner, bias=False)
        self.q_scale = nn.Parameter(torch.ones(dim_head))
        self.k_scale = nn.Parameter(torch.ones(dim_head))
        self.to_out = nn.Linear(inner, dim, bias=False)
        self.out_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, N, dim); mask: (B, N) True for valid positions. Returns (B, N, dim)."""
        b, n, _ = x.shape
        qkv = self._qkv(x).view(b, n, 3, self.heads, -1)
        out = self._attend(qkv, mask).reshape(b, n, -1)
        return self.out_dropout(self.to_out(out))

    def forward_packed(self, x: torch.Tensor, index: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The same on the valid positions only: x (n, dim) are the positions ``index`` of the flattened
        (B, N) grid given by ``mask`` (B, N). Returns (n, dim)."""
        b, n = mask.shape
        qkv = self._qkv(x)  # (n, 3 * inner)
        grid = qkv.new_zeros(b * n, qkv.shape[-1]).index_copy_(0, index, qkv)
        out = self._attend(grid.view(b, n, 3, self.heads, -1), mask).reshape(b * n, -1)
        return self.out_dropout(self.to_out(out.index_select(0, index)))

    def _qkv(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        return torch.cat([self.to_q(x), self.to_kv(x)], dim=-1)  # (..., 3 * inner): q, k, v

    def _attend(self, qkv: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """qkv (B, N, 3, H, dh) -> attention output (B, N, H, dh)."""
        q, k, v = (t.transpose(1, 2) for t in qkv.unbind(2))  # (B, H, N, dh)
        q = F.normalize(q, dim=-1) * self.q_scale
        k = F.normalize(k, dim=-1) * self.k_scale
        attn_mask = None if mask is None else mask[:, None, None, :]  # (B, 1, 1, N) keys
        out = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=attn_mask,
            dropout_p=self.dropout if self.training else 0.0,
            scale=ATTENTION_SCALE,
        )  # (B, H, N, dh)
        return out.transpose(1, 2)


class FeedForward(nn.Module):
    """Pre-norm GEGLU feed-forward block."""

    def __init__(self, dim: int, *, mult: float = 4, dropout: float = 0.0) -> None:
        super().__init__()
        hidden = int(dim * mult * 2 / 3)
        self.norm = nn.LayerNorm(dim, bias=False)
        self.proj_in = nn.Linear(dim, 2 * hidden, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.proj_out = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, gate = self.proj_in(self.norm(x)).chunk(2, dim=-1)
        return self.proj_out(self.dropout(F.gelu(gate) * x))


class TransformerLayer(nn.Module):
    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.attn = Attention(
            config.dim, heads=config.heads, dim_head=config.dim_head, dropout=config.attn_dropout
        )
        self.ff = FeedForward(config.dim, mult=config.ff_mult, dropout=config.ff_dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(x, mask)
        return x + self.ff(x)

    def forward_packed(self, x: torch.Tensor, index: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The layer on valid positions only (see :meth:`Attention.forward_packed`)."""
        x = x + self.attn.forward_packed(x, index, mask)
        return x + self.ff(x)


class Transformer(nn.Module):
    """A stack of :class:`TransformerLayer` (no final norm); depth 0 is the identity.

    Args:
        config: the architecture.
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        self.layers = nn.ModuleList(TransformerLayer(config) for _ in range(config.depth))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, N, dim); mask: (B, N) True for valid positions (``None``: all). Returns (B, N, dim).

        With padding, every per-position step (norms, projections, feed-forward) runs on the valid
        positions only, packed; padded positions of the output keep their input values.
        """
        if mask is None or not self.layers or bool(mask.all()):
            for layer in self.layers:
                x = layer(x, mask)
            return x
        flat = x.reshape(-1, x.shape[-1])
        index = mask.reshape(-1).nonzero().squeeze(1)
        h = flat.index_select(0, index)  # (n, dim)
        for layer in cast("Sequence[TransformerLayer]", self.layers):
            h = layer.forward_packed(h, index, mask)
        return flat.index_copy(0, index, h).view_as(x)


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over the time axis of (B, N, D) restricted to ``mask`` (B, N); returns (B, D)."""
    if mask is None:
        return x.mean(dim=1)
    weights = mask.to(x.dtype).unsqueeze(-1)  # (B, N, 1)
    return (x * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)


