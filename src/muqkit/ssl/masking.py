"""Span masking of waveforms for masked-token prediction (MuQ / BEST-RQ style).

The waveform is cut into a grid of spans of ``span_seconds`` (400 ms: 9600 samples at 24 kHz, 10
target frames at 25 Hz); each span that lies whole inside an item's valid samples is masked with
probability ``prob`` and its samples are replaced by N(0, ``noise_std``) noise. A trailing part-span
is never masked, as in the official code (which draws ``samples // span_samples`` spans). Spans are aligned to
target frames, so a masked span masks whole frames, and the frame mask says which target frames
were hidden. Masking is length-aware: padding is never noised and never a target.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class MaskingConfig:
    """Span masking settings (defaults: the paper's 400 ms spans, p = 0.6, N(0, 0.1) noise).

    Attributes:
        span_seconds: length of one masked span.
        prob: probability that a span is masked.
        noise_std: standard deviation of the noise written into masked samples.
    """

    span_seconds: float = 0.4
    prob: float = 0.6
    noise_std: float = 0.1

    def __post_init__(self) -> None:
        if not self.span_seconds > 0:
            raise ValueError(f"MaskingConfig.span_seconds must be positive, got {self.span_seconds}")
        if not 0.0 <= self.prob <= 1.0:
            raise ValueError(f"MaskingConfig.prob must lie in [0, 1], got {self.prob}")
        if self.noise_std < 0:
            raise ValueError(f"MaskingConfig.noise_std must be >= 0, got {self.noise_std}")

    def span_frames(self, frame_samples: int, sample_rate: int) -> int:
        """Target frames per span; raises unless a span is a whole number of frames."""
        span_samples = self.span_seconds * sample_rate
        frames = span_samples / frame_samples
        if abs(frames - round(frames)) > 1e-6 or round(frames) < 1:
            raise ValueError(
                f"a {self.span_seconds} s span ({span_samples:g} samples) is not a whole number of "
                f"{frame_samples}-sample target frames"
            )
        return round(frames)


@dataclass(frozen=True)
class SpanMask:
    """Which spans, samples and target frames a masking hid.

    Attributes:
        spans: (batch, num_spans) bool, True for masked spans.
        frames: (batch, num_frames) bool, True for target frames inside a masked span and inside the
            item's valid frames.
        span_samples: samples per span.
        span_frames: target frames per span.
    """

    spans: torch.Tensor
    frames: torch.Tensor
    span_samples: int
    span_frames: int

    def samples(self, num_samples: int, lengths: torch.Tensor) -> torch.Tensor:
        """(batch, num_samples) bool: masked samples (never past ``lengths``)."""
        mask = self.spans.repeat_interleave(self.span_samples, dim=1)[:, :num_samples]
        if mask.shape[1] < num_samples:
            mask = torch.nn.functional.pad(mask, (0, num_samples - mask.shape[1]))
        valid = torch.arange(num_samples, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)
        return mask & valid


def draw_span_mask(
    lengths: torch.Tensor,
    *,
    num_samples: int,
    num_frames: int,
    frame_lengths: torch.Tensor,
    config: MaskingConfig,
    frame_samples: int,
    sample_rate: int,
    generator: torch.Generator | None = None,
    spans: torch.Tensor | None = None,
) -> SpanMask:
    """Draw a span mask for a padded batch.

    Args:
        lengths: (batch,) valid samples.
        num_samples: padded batch length in samples.
        num_frames: target frames of the padded batch.
        frame_lengths: (batch,) valid target frames.
        config: masking settings.
        frame_samples: samples per target frame (960 at 24 kHz / 25 Hz).
        sample_rate: Hz.
        generator: random source; ``None`` uses torch's global generator.
        spans: (batch, >= num_spans) bool, use these spans instead of drawing them (still cut to
            each item's valid samples).

    Returns:
        SpanMask on ``lengths``' device.
    """
    span_frames = config.span_frames(frame_samples, sample_rate)
    span_samples = span_frames * frame_samples
    num_spans = -(-num_samples // span_samples)
    if spans is None:
        device = generator.device if generator is not None else lengths.device
        draws = torch.rand(lengths.shape[0], num_spans, generator=generator, device=device)  # (B, S)
        spans = draws.to(lengths.device) < config.prob
    else:
        spans = spans[:, :num_spans].to(lengths.device, torch.bool)
    starts = torch.arange(num_spans, device=lengths.device) * span_samples
    spans = spans & (starts.unsqueeze(0) + span_samples <= lengths.unsqueeze(1))  # (B, S): whole spans only
    frames = spans.repeat_interleave(span_frames, dim=1)[:, :num_frames]
    if frames.shape[1] < num_frames:
        frames = torch.nn.functional.pad(frames, (0, num_frames - frames.shape[1]))
    valid = torch.arange(num_frames, device=lengths.device).unsqueeze(0) < frame_lengths.unsqueeze(1)
    return SpanMask(spans=spans, frames=frames & valid, span_samples=span_samples, span_frames=span_frames)


def apply_noise(
    wavs: torch.Tensor,
    sample_mask: torch.Tensor,
    *,
    noise_std: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Replace masked samples of (batch, samples) ``wavs`` with N(0, noise_std) noise (a new tensor)."""
    device = generator.device if generator is not None else wavs.device
    noise = torch.randn(wavs.shape, generator=generator, device=device).to(wavs.device, wavs.dtype)
    return torch.where(sample_mask, noise * noise_std, wavs)


__all__ = ["MaskingConfig", "SpanMask", "apply_noise", "draw_span_mask"]
