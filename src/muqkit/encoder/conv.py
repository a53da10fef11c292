"""Residual 2-D convolution front end: (mel bands x frames) -> 4x fewer frames.

Two residual blocks, each halving frequency and time (stride 2, kernel 3, padding 1), then a linear
projection of (channels x bands / 4) to the encoder width. Unlike the official module, every conv
sees zeros beyond each item's valid frames, exactly as the item alone would, so padding in a batch
never changes an item's output.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, cast

import torch
import torch.nn.functional as F
from torch import nn

from muqkit.audio.tensors import lengths_to_mask


def conv_out_length(lengths: torch.Tensor, stride: int) -> torch.Tensor:
    """Output length of a kernel-3, padding-1 conv with ``stride`` on inputs of ``lengths``."""
    return torch.div(lengths + stride - 1, stride, rounding_mode="floor")


def _time_mask(lengths: torch.Tensor, size: int) -> torch.Tensor:
    """(batch, 1, 1, size) float mask of valid time steps."""
    return lengths_to_mask(lengths, size).view(-1, 1, 1, size)


def _masked(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``x`` (batch, channels, bands, frames) with frames past ``lengths`` zeroed (no copy when all are valid)."""
    if bool((lengths >= x.shape[-1]).all()):
        return x
    return x * _time_mask(lengths, x.shape[-1])


def batch_norms(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The BatchNorm layers (1d, 2d, 3d) of ``module`` and its children, in module order."""
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def masked_batch_norm(bn: nn.modules.batchnorm._BatchNorm, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``bn(x)``, but in training with the batch statistics of the valid positions only.

    PyTorch's BatchNorm would average over every position of the batch, padding included: the
    statistics it normalises with and the running statistics it keeps for inference would then
    depend on how much padding the batch holds (a 2 s note in a batch of 3 s crops is a third
    padding). Here the mean and (biased) variance are taken over the positions where ``mask`` is 1,
    and the running statistics updated with them (the variance unbiased), as BatchNorm does.

    Args:
        bn: a BatchNorm1d or BatchNorm2d (its affine parameters, momentum, eps and running statistics).
        x: (batch, channels, ...) input.
        mask: float, 1 on valid positions, shaped like ``x`` with 1 channel (or broadcastable to it);
            ``None``: every position is valid (then this is ``bn(x)``).
    """
    if mask is None or not bn.training or bn.running_mean is None or bn.running_var is None:
        return bn(x)
    dims = [0, *range(2, x.dim())]
    count = mask.expand(x.shape[0], 1, *x.shape[2:]).sum()
    mean = (x * mask).sum(dims) / count
    shape = (1, -1) + (1,) * (x.dim() - 2)
    var = ((x - mean.view(shape)) * mask).square().sum(dims) / count
    with torch.no_grad():
        if bn.num_batches_tracked is not None:
            bn.num_batches_tracked.add_(1)
        momentum = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked or 1)
        bn.running_mean.mul_(1 - momentum).add_(mean, alpha=momentum)
        bn.running_var.mul_(1 - momentum).add_(var * count / (count - 1).clamp_min(1), alpha=momentum)
    scale = torch.rsqrt(var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    return x * scale.view(shape) + shift.view(shape)


def _fold_batch_norm(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of ``bn(conv(x))`` as one conv (eval mode)."""
    # The blocks' BatchNorms track running statistics, so both are tensors (typed optional by torch).
    running_mean = cast(torch.Tensor, bn.running_mean)
    running_var = cast(torch.Tensor, bn.running_var)
    scale = bn.weight / torch.sqrt(running_var + bn.eps)
    weight = conv.weight * scale.view(-1, 1, 1, 1)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(running_mean)
    return weight, (bias - running_mean) * scale + bn.bias


class _Fused(NamedTuple):
    """Eval-mode weights of a :class:`ResidualBlock2d` (the shortcut's are ``None`` without a shortcut conv)."""

    w1: torch.Tensor
    b1: torch.Tensor
    w2: torch.Tensor
    b2: torch.Tensor
    w3: torch.Tensor | None
    b3: torch.Tensor | None


class ResidualBlock2d(nn.Module):
    """``relu(bn2(conv2(relu(bn1(conv1(x))))) + bn3(conv3(x)))``, strided in frequency and time.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        stride: (frequency, time) stride of ``conv1`` and of the shortcut ``conv3``.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: tuple[int, int] = (2, 2)) -> None:
        super().__init__()
        self.stride = stride
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, stride=stride)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.has_shortcut = in_channels != out_channels or stride[0] > 1
        if self.has_shortcut:
            self.conv3 = nn.Conv2d(in_channels, out_channels, 3, padding=1, stride=stride)
            self.bn3 = nn.BatchNorm2d(out_channels)
        self._fused: _Fused | None = None
        self._fused_key: tuple = ()

    def train(self, mode: bool = True) -> ResidualBlock2d:
        self._fused = None
        return super().train(mode)

    def _fused_weights(self) -> _Fused:
        """Eval-mode weights with BatchNorm folded in, channels-last (oneDNN runs those convolutions
        ~1.4x faster on CPU, in float32 and bfloat16)."""
        # Keyed by every parameter's and buffer's storage and version: an optimiser step,
        # ``load_state_dict`` (in place) or ``.to()`` all change it, so the fold is never stale.
        key = tuple((t.data_ptr(), t._version, t.dtype) for t in (*self.parameters(), *self.buffers()))
        if self._fused is None or self._fused_key != key:
            with torch.no_grad():
                def fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
                    w, b = _fold_batch_norm(conv, bn)
                    return w.contiguous(memory_format=torch.channels_last), b.contiguous()

                w3, b3 = fold(self.conv3, self.bn3) if self.has_shortcut else (None, None)
                self._fused = _Fused(*fold(self.conv1, self.bn1), *fold(self.conv2, self.bn2), w3, b3)
                self._fused_key = key
        return self._fused

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Args: x (batch, channels, bands, frames), zero past ``lengths``; lengths (batch,).

        Returns:
            ``(y, out_lengths)`` with y (batch, out_channels, bands / 2, frames / stride), zero past
            ``out_lengths``.
        """
        out_lengths = conv_out_length(lengths, self.stride[1])
        if self.training or torch.is_grad_enabled():
            h = self.conv1(x)
            valid = _time_mask(out_lengths, h.shape[-1]).to(h.dtype)
            mask = None if bool((out_lengths >= h.shape[-1]).all()) else valid  # statistics of valid frames
            h = F.relu(masked_batch_norm(self.bn1, h, mask)) * valid
            h = masked_batch_norm(self.bn2, self.conv2(h), mask)
            shortcut = masked_batch_norm(self.bn3, self.conv3(x), mask) if self.has_shortcut else x
        else:
            w1, b1, w2, b2, w3, b3 = self._fused_weights()
            h = F.relu_(F.conv2d(x, w1, b1, stride=self.stride, padding=1))
            h = F.conv2d(_masked(h, out_lengths), w2, b2, padding=1)
            shortcut = x if w3 is None else F.conv2d(x, w3, b3, stride=self.stride, padding=1)
            return _masked(F.relu_(h.add_(shortcut)), out_lengths), out_lengths
        y = F.relu(h + shortcut)
        return _masked(y, out_lengths), out_lengths


class ConvSubsampling(nn.Module):
    """Two residual blocks (4x fewer frames and bands) and a projection to the encoder width.

    Args:
        n_mels: mel bands of the input.
        channels: channels of both blocks (the official ``conv_dim``).
        out_dim: encoder width.
        time_strides: time stride of each block ((2, 2) for 25 Hz from 100 Hz mel frames).
        chunk_frames: output frames per chunk when running without gradients.
    """

    # Mel frames each side of a chunk: output frame j depends on mel frames 4j - 9 .. 4j + 9.
    _HALO = 16

    def __init__(
        self,
        n_mels: int,
        channels: int,
        out_dim: int,
        time_strides: tuple[int, int] = (2, 2),
        *,
        chunk_frames: int = 256,
    ) -> None:
        super().__init__()
        self.chunk_frames = chunk_frames
        self.blocks = nn.ModuleList([
            ResidualBlock2d(1, channels, (2, time_strides[0])),
            ResidualBlock2d(channels, channels, (2, time_strides[1])),
        ])
        bands = n_mels
        for _ in self.blocks:
            bands = (bands + 1) // 2
        self.proj = nn.Linear(channels * bands, out_dim)

    @property
    def _residual_blocks(self) -> Sequence[ResidualBlock2d]:
        """``blocks`` typed by its elements (``nn.ModuleList`` is typed as holding plain modules)."""
        return cast("Sequence[ResidualBlock2d]", self.blocks)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Frames out for ``lengths`` mel frames in."""
        for block in self._residual_blocks:
            lengths = conv_out_length(lengths, block.stride[1])
        return lengths

    @property
    def time_stride(self) -> int:
        """Mel frames per output frame."""
        stride = 1
        for block in self._residual_blocks:
            stride *= block.stride[1]
        return stride

    def forward(self, mel: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Args: mel (batch, n_mels, frames), zero past ``lengths``; lengths (batch,) frames.

        Returns:
            ``(x, out_lengths)``: x (batch, frames / 4, out_dim), zero past ``out_lengths``.

        Without gradients, long inputs go item by item in chunks of ``chunk_frames`` output frames with
        a halo wider than the receptive field, which bounds memory and gives the same numbers.
        """
        if torch.is_grad_enabled() or mel.shape[-1] <= self.chunk_frames * self.time_stride:
            return self._forward_full(mel, lengths)
        return self._forward_chunked(mel, lengths)

    def _forward_full(self, mel: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = mel.unsqueeze(1)  # (batch, 1, n_mels, frames)
        if not torch.is_grad_enabled():
            x = x.contiguous(memory_format=torch.channels_last)  # the fused eval convs are channels-last
        for block in self.blocks:
            x, lengths = block(x, lengths)
        batch, channels, bands, frames = x.shape
        x = x.permute(0, 3, 1, 2).reshape(batch, frames, channels * bands)  # (batch, frames, c * f)
        x = self.proj(x)
        valid = lengths_to_mask(lengths, frames)
        return x * valid.unsqueeze(-1), lengths

    def _forward_chunked(self, mel: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        stride, halo = self.time_stride, self._HALO
        out_lengths = self.output_lengths(lengths)
        out = mel.new_zeros(mel.shape[0], int(self.output_lengths(torch.tensor(mel.shape[-1]))),
                            self.proj.out_features)
        for b in range(mel.shape[0]):
            n_mel, n_out = int(lengths[b]), int(out_lengths[b])
            for j0 in range(0, n_out, self.chunk_frames):
                j1 = min(j0 + self.chunk_frames, n_out)
                m0 = max(0, stride * j0 - halo)
                m1 = min(n_mel, stride * j1 + halo)
                piece, _ = self._forward_full(mel[b:b + 1, :, m0:m1], lengths.new_tensor([m1 - m0]))
                first = j0 - m0 // stride
                out[b, j0:j1] = piece[0, first:first + j1 - j0]
        return out, out_lengths
