"""Conformer encoder with rotary positions, numerically matching MuQ's (wav2vec2-conformer) encoder.

Each layer: half-step feed-forward, self-attention, convolution module, half-step feed-forward, final
LayerNorm (macaron). As in the wav2vec2-conformer code MuQ uses, the rotary rotation is applied to the
layer-normed hidden states *before* the query and key projections, per head-sized slice. Attention runs
through ``scaled_dot_product_attention`` with a key padding mask, and the depthwise convolution sees
zeros past each item's length, so padding never leaks into valid frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from muqkit.audio.tensors import lengths_to_mask
from muqkit.configs import check_int, check_number, check_probability
from muqkit.encoder.conv import masked_batch_norm


@dataclass(frozen=True)
class ConformerConfig:
    """Architecture of the Conformer stack.

    Each field names the field of MuQ's config (``MuQConfig.encoder_dim``, ...) and of the official
    checkpoint (``encoder_dim`` or ``w2v2_config.*``) that it corresponds to.

    Attributes:
        dim: model width (``MuQConfig.encoder_dim``; official ``encoder_dim``).
        depth: number of layers (``MuQConfig.encoder_depth``; official ``encoder_depth``).
        num_heads: attention heads, ``dim`` must be divisible by it (official
            ``w2v2_config.num_attention_heads``).
        ffn_dim: hidden width of each feed-forward module (official ``w2v2_config.intermediate_size``).
        conv_kernel_size: depthwise convolution kernel, odd (official
            ``w2v2_config.conv_depthwise_kernel_size``).
        rotary_base: base of the rotary frequencies (official ``w2v2_config.rotary_embedding_base``).
        layer_norm_eps: epsilon of the final LayerNorm, the per-layer ones use 1e-5 (official
            ``w2v2_config.layer_norm_eps``).
        dropout: dropout in feed-forwards, attention output and convolution module, training only
            (official ``w2v2_config.hidden_dropout``).
        attention_dropout: dropout on attention probabilities, training only (official
            ``w2v2_config.attention_dropout``).
    """

    dim: int = 1024
    depth: int = 12
    num_heads: int = 16
    ffn_dim: int = 4096
    conv_kernel_size: int = 31
    rotary_base: int = 10000
    layer_norm_eps: float = 1e-5
    dropout: float = 0.1
    attention_dropout: float = 0.1

    def __post_init__(self) -> None:
        check_int(self, "dim", "num_heads", "ffn_dim", "conv_kernel_size", "rotary_base")
        check_int(self, "depth", minimum=0)
        check_number(self, "layer_norm_eps", low=0.0, low_open=True)
        check_probability(self, "dropout", "attention_dropout")
        if self.dim % self.num_heads:
            raise ValueError(f"ConformerConfig.dim ({self.dim}) must be divisible by num_heads ({self.num_heads})")
        if (self.dim // self.num_heads) % 2:
            raise ValueError(
                f"ConformerConfig: head size dim / num_heads = {self.dim // self.num_heads} must be even for "
                "rotary positions"
            )
        if self.conv_kernel_size % 2 == 0:
            raise ValueError(f"ConformerConfig.conv_kernel_size must be odd, got {self.conv_kernel_size}")


class RotaryEmbedding(nn.Module):
    """Cos/sin tables of rotary positions for head size ``head_dim``."""

    inv_freq: torch.Tensor  # buffer (head_dim // 2,)

    def __init__(self, head_dim: int, base: int = 10000) -> None:
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, length: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ``(cos, sin)``, each (length, 1, head_dim), in ``dtype``."""
        steps = torch.arange(length, device=self.inv_freq.device).type_as(self.inv_freq)
        freqs = torch.outer(steps, self.inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1).unsqueeze(1)
        return emb.cos().to(dtype), emb.sin().to(dtype)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Rotate each head-sized slice of x (batch, time, dim) by its position."""
    batch, time, dim = x.shape
    x = x.view(batch, time, num_heads, dim // num_heads)
    first, second = x.chunk(2, dim=-1)
    rotated = torch.cat((-second, first), dim=-1)
    return (x * cos + rotated * sin).reshape(batch, time, dim)


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.intermediate_dense = nn.Linear(dim, hidden)
        self.output_dense = nn.Linear(hidden, dim)
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.dropout(F.silu(self.intermediate_dense(x)), self.dropout, self.training)
        return F.dropout(self.output_dense(h), self.dropout, self.training)


class SelfAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.linear_q = nn.Linear(dim, dim)
        self.linear_k = nn.Linear(dim, dim)
        self.linear_v = nn.Linear(dim, dim)
        self.linear_out = nn.Linear(dim, dim)
        self.dropout = dropout

    def forward(
        self, x: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor], key_mask: torch.Tensor | None
    ) -> torch.Tensor:
        """Args: x (batch, time, dim); key_mask (batch, 1, 1, time) bool, True for valid keys."""
        batch, time, dim = x.shape
        heads = self.num_heads
        qk_in = apply_rotary(x, *rotary, heads)
        q = self.linear_q(qk_in).view(batch, time, heads, -1).transpose(1, 2)  # (batch, heads, time, hd)
        k = self.linear_k(qk_in).view(batch, time, heads, -1).transpose(1, 2)
        v = self.linear_v(x).view(batch, time, heads, -1).transpose(1, 2)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=key_mask, dropout_p=self.dropout if self.training else 0.0
        )
        return self.linear_out(out.transpose(1, 2).reshape(batch, time, dim))


class ConvModule(nn.Module):
    """LayerNorm, pointwise conv + GLU, depthwise conv, BatchNorm, swish, pointwise conv."""

    def __init__(self, dim: int, kernel_size: int, dropout: float) -> None:
        super().__init__()
        self.layer_norm = nn.LayerNorm(dim)
        self.pointwise_conv1 = nn.Conv1d(dim, 2 * dim, 1, bias=False)
        self.depthwise_conv = nn.Conv1d(dim, dim, kernel_size, padding=(kernel_size - 1) // 2, groups=dim,
                                        bias=False)
        self.batch_norm = nn.BatchNorm1d(dim)
        self.pointwise_conv2 = nn.Conv1d(dim, dim, 1, bias=False)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
        """Args: x (batch, time, dim); valid (batch, time, 1) float mask or None."""
        h = self.layer_norm(x)
        h = F.glu(_pointwise(self.pointwise_conv1, h), dim=-1)  # (batch, time, dim)
        if valid is not None:
            h = h * valid
        # The depthwise conv as a (batch, dim, 1, time) channels-last conv2d: the (batch, time, dim) tensor
        # already has that memory layout, and oneDNN runs it ~10x faster than a grouped conv1d.
        conv = self.depthwise_conv
        h = F.conv2d(h.transpose(1, 2).unsqueeze(2), conv.weight.unsqueeze(2), None,
                     padding=(0, (conv.kernel_size[0] - 1) // 2), groups=conv.groups).squeeze(2)  # (batch, dim, time)
        mask = None if valid is None else valid.transpose(1, 2)  # (batch, 1, time): statistics of valid frames
        h = F.silu(masked_batch_norm(self.batch_norm, h, mask)).transpose(1, 2)
        h = _pointwise(self.pointwise_conv2, h)
        return F.dropout(h, self.dropout, self.training)


def _pointwise(conv: nn.Module, h: torch.Tensor) -> torch.Tensor:
    """A pointwise (kernel 1, no bias) conv on (batch, time, dim) as a matmul; a wrapped module (a LoRA
    adapter) is called as a conv."""
    if type(conv) is nn.Conv1d:
        return F.linear(h, conv.weight.squeeze(-1))
    return conv(h.transpose(1, 2)).transpose(1, 2)


class ConformerLayer(nn.Module):
    def __init__(self, config: ConformerConfig) -> None:
        super().__init__()
        dim = config.dim
        self.ffn1_layer_norm = nn.LayerNorm(dim)
        self.ffn1 = FeedForward(dim, config.ffn_dim, config.dropout)
        self.self_attn_layer_norm = nn.LayerNorm(dim)
        self.self_attn = SelfAttention(dim, config.num_heads, config.attention_dropout)
        self.conv_module = ConvModule(dim, config.conv_kernel_size, config.dropout)
        self.ffn2_layer_norm = nn.LayerNorm(dim)
        self.ffn2 = FeedForward(dim, config.ffn_dim, config.dropout)
        self.final_layer_norm = nn.LayerNorm(dim)
        self.dropout = config.attention_dropout

    def forward(
        self,
        x: torch.Tensor,
        rotary: tuple[torch.Tensor, torch.Tensor],
        key_mask: torch.Tensor | None,
        valid: torch.Tensor | None,
    ) -> torch.Tensor:
        """x (batch, time, dim) -> (batch, time, dim)."""
        x = x + 0.5 * self.ffn1(self.ffn1_layer_norm(x))
        attn = self.self_attn(self.self_attn_layer_norm(x), rotary, key_mask)
        x = x + F.dropout(attn, self.dropout, self.training)
        x = x + self.conv_module(x, valid)
        x = x + 0.5 * self.ffn2(self.ffn2_layer_norm(x))
        return self.final_layer_norm(x)


class Conformer(nn.Module):
    """A stack of Conformer layers and a final LayerNorm.

    ``forward`` returns every hidden state: the input, the output of each layer but the last, and the
    LayerNorm of the last layer's output (depth + 1 tensors), the convention of MuQ's official outputs.
    """

    def __init__(self, config: ConformerConfig) -> None:
        super().__init__()
        self.config = config
        self.rotary = RotaryEmbedding(config.dim // config.num_heads, config.rotary_base)
        self.layers = nn.ModuleList([ConformerLayer(config) for _ in range(config.depth)])
        self.layer_norm = nn.LayerNorm(config.dim, eps=config.layer_norm_eps)
        self.dropout = config.dropout

    def forward(
        self, x: torch.Tensor, lengths: torch.Tensor | None = None, *, num_layers: int | None = None
    ) -> list[torch.Tensor]:
        """Args:
            x: (batch, time, dim), zero past ``lengths``.
            lengths: (batch,) valid frames, or None when every item fills the batch.
            num_layers: run only the first layers (returns num_layers + 1 states; the last one is not
                normed unless every layer ran).

        Returns:
            list of (batch, time, dim) hidden states.
        """
        batch, time, _ = x.shape
        key_mask = valid = None
        if lengths is not None and bool((lengths < time).any()):
            mask = lengths_to_mask(lengths, time)  # (batch, time)
            key_mask = mask.view(batch, 1, 1, time)
            valid = mask.unsqueeze(-1).to(x.dtype)
        rotary = self.rotary(time, x.dtype)
        x = F.dropout(x, self.dropout, self.training)
        depth = len(self.layers) if num_layers is None else num_layers
        if not 0 <= depth <= len(self.layers):
            raise ValueError(f"num_layers must lie in [0, {len(self.layers)}] (the Conformer's depth), "
                             f"got {num_layers}")
        states = [x]
        for layer in self.layers[:depth]:
            x = layer(x, rotary, key_mask, valid)
            states.append(x)
        if depth == len(self.layers):
            states[-1] = self.layer_norm(x)
        if valid is not None:
            states = [s * valid for s in states]
        return states
