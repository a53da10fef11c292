"""The audio tower and the cutting of long audio into clips.

    wavs (B, samples) 24 kHz, lengths (B,)
      -> MuQ backbone, hidden state ``layer``      (B, T, backbone_dim), 25 Hz, lengths in frames
      -> proj                                      (B, T, dim)
      -> Transformer, padding masked as keys       (B, T, dim)
      -> mean over valid frames                    (B, dim)
         (+ LagPooling: autocorrelations over lags, an optional muqkit extension)

Long audio goes through :func:`cut_clips` first (the official wrap-around rule), and the clips of every
item of a batch run together through the tower.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from muqkit.audio.autocorr import autocorrelation
from muqkit.audio.tensors import lengths_to_mask
from muqkit.mulan.config import TransformerConfig
from muqkit.mulan.transformer import Transformer, masked_mean
from muqkit.ssl.muq import MuQ


@dataclass(frozen=True)
class AudioTowerOutput:
    """Output of :class:`AudioTower`.

    Attributes:
        embeds: (B, dim) mean of the transformer states over valid frames (plus the lag pooling, if any).
        hidden_states: (B, T, dim) transformer output (padding frames are not meaningful).
        lengths: (B,) valid frames.
    """

    embeds: torch.Tensor
    hidden_states: torch.Tensor
    lengths: torch.Tensor


class LagPooling(nn.Module):
    """Second-order temporal pooling: autocorrelations of learned projections of the frames.

    The frames (B, T, dim) are projected to ``channels`` signals; each signal's autocorrelation at lags
    1..``max_lag`` frames, divided by its energy (lag 0), is mapped back to ``dim``. Periodicities in the
    states (note rate, a beat grouped in twos or threes) become features that a mean over frames cannot
    hold. The output layer starts at zero, so a tower with it starts as the plain mean.

    Padded frames are zeroed before the sums, so an item's output does not depend on its batch.

    Args:
        dim: width of the frames and of the output.
        max_lag: longest lag in frames.
        channels: projected signals.
    """

    def __init__(self, dim: int, *, max_lag: int, channels: int = 16) -> None:
        super().__init__()
        if max_lag < 1 or channels < 1:
            raise ValueError(f"LagPooling needs max_lag >= 1 and channels >= 1, got {max_lag}, {channels}")
        self.max_lag = max_lag
        self.proj = nn.Linear(dim, channels)
        self.out = nn.Linear(channels * max_lag, dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def autocorrelation(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, dim) frames, (B, T) valid mask -> (B, channels, max_lag) normalised autocorrelations."""
        return autocorrelation(self.proj(x), self.max_lag, mask)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, dim), (B, T) -> (B, dim)."""
        return self.out(self.autocorrelation(x, mask).flatten(1).to(self.out.weight.dtype))


class AudioTower(nn.Module):
    """MuQ backbone + one hidden state + projection + transformer + masked mean (+ lag pooling).

    Args:
        backbone: the MuQ encoder.
        layer: hidden state that feeds the tower (``-1``: the last, after the final LayerNorm).
        transformer: the transformer on top; its ``dim`` is the tower's width.
        lag_pooling: longest lag of :class:`LagPooling` in frames; ``0`` (the official tower): none.
        lag_channels: its projected signals.
    """

    def __init__(
        self,
        backbone: MuQ,
        *,
        layer: int = -1,
        transformer: TransformerConfig,
        lag_pooling: int = 0,
        lag_channels: int = 16,
    ) -> None:
        super().__init__()
        depth = backbone.config.encoder_depth
        if not -(depth + 1) <= layer <= depth:
            raise ValueError(
                f"layer {layer} is out of range for a MuQ with {depth} layers ({-(depth + 1)}..{depth})"
            )
        self.backbone = backbone
        self.layer = layer % (depth + 1)
        self.backbone_dim = backbone.config.encoder_dim
        self.dim = transformer.dim
        self.proj = nn.Linear(self.backbone_dim, self.dim)
        self.transformer = Transformer(transformer)
        self.lag_pool = LagPooling(self.dim, max_lag=lag_pooling, channels=lag_channels) if lag_pooling else None

    @property
    def sample_rate(self) -> int:
        return self.backbone.config.sample_rate

    def backbone_trainable(self) -> bool:
        return any(p.requires_grad for p in self.backbone.parameters())

    def backbone_states(
        self, wavs: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The chosen MuQ hidden state (B, T, backbone_dim) and its valid frames (B,)."""
        depth = self.backbone.config.encoder_depth
        # Layers past the chosen one are not run (the last state then lacks the final LayerNorm, which
        # only the last layer's state has anyway).
        num_layers = self.layer if 0 < self.layer < depth else None
        frozen = not (torch.is_grad_enabled() and self.backbone_trainable())
        with torch.no_grad() if frozen else contextlib.nullcontext():
            out = self.backbone(wavs, output_hidden_states=True, lengths=lengths, num_layers=num_layers)
        assert out.hidden_states is not None
        states = out.hidden_states[self.layer] if num_layers is None else out.hidden_states[-1]
        return states, out.lengths

    def forward(self, wavs: torch.Tensor, lengths: torch.Tensor | None = None) -> AudioTowerOutput:
        """Embed (B, samples) waveforms with (B,) valid samples (``None``: all valid)."""
        states, frames = self.backbone_states(wavs, lengths)  # (B, T, backbone_dim), (B,)
        mask = None if lengths is None else lengths_to_mask(frames, states.shape[1])
        x = self.proj(states.to(self.proj.weight.dtype))  # (B, T, dim)
        x = self.transformer(x, mask)  # (B, T, dim)
        embeds = masked_mean(x, mask)
        if self.lag_pool is not None:
            embeds = embeds + self.lag_pool(x, mask)
        return AudioTowerOutput(embeds=embeds, hidden_states=x, lengths=frames)


@dataclass(frozen=True)
class Clips:
    """Clips cut from a batch of waveforms, grouped by length so that each group runs unpadded.

    Attributes:
        groups: tuples ``(clips (C, length), owners (C,))``: the clips of one length and the batch item
            each clip comes from.
        counts: (B,) clips per item.
    """

    groups: tuple[tuple[torch.Tensor, torch.Tensor], ...]
    counts: torch.Tensor


def clip_spans(length: int, clip_samples: int) -> list[list[tuple[int, int]]]:
    """The official rule as sample spans: full clips from the start; a remainder is completed with audio
    from the start of the item (as much as there is). Each clip is a list of ``(start, stop)`` spans.

    Example:
        >>> clip_spans(10, 4)
        [[(0, 4)], [(4, 8)], [(8, 10), (0, 2)]]
        >>> clip_spans(3, 8)
        [[(0, 3), (0, 3)]]
    """
    if length <= 0:
        raise ValueError("cannot cut clips from empty audio")
    full, rest = divmod(length, clip_samples)
    spans = [[(i * clip_samples, (i + 1) * clip_samples)] for i in range(full)]
    if rest:
        spans.append([(full * clip_samples, length), (0, min(clip_samples - rest, length))])
    return spans


def cut_clips(wavs: torch.Tensor, lengths: torch.Tensor | None, clip_samples: int) -> Clips:
    """Cut each item of a (B, samples) batch into clips of ``clip_samples`` (official wrap-around rule).

    Items shorter than half a clip give one clip shorter than ``clip_samples`` (the item followed by itself),
    exactly as the official model does; such clips form their own groups.
    """
    batch, total = wavs.shape
    item_lengths = [total] * batch if lengths is None else [int(n) for n in lengths.tolist()]
    by_length: dict[int, tuple[list[torch.Tensor], list[int]]] = {}
    counts = []
    for i, n in enumerate(item_lengths):
        spans = clip_spans(n, clip_samples)
        counts.append(len(spans))
        full = n // clip_samples
        if full:
            pieces, owners = by_length.setdefault(clip_samples, ([], []))
            pieces.append(wavs[i, : full * clip_samples].view(full, clip_samples))
            owners.extend([i] * full)
        if len(spans) > full:
            clip = torch.cat([wavs[i, a:b] for a, b in spans[-1]])
            pieces, owners = by_length.setdefault(clip.shape[0], ([], []))
            pieces.append(clip.unsqueeze(0))
            owners.append(i)
    groups = tuple(
        (torch.cat(pieces), torch.tensor(owners, device=wavs.device))
        for _, (pieces, owners) in sorted(by_length.items(), reverse=True)
    )
    return Clips(groups=groups, counts=torch.tensor(counts, device=wavs.device))
