"""Normalised autocorrelation of (masked) time series, the rhythm statistic shared by the audio tower's
lag pooling (:class:`muqkit.mulan.audio.LagPooling`) and the ``rhythm`` probe baseline."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def autocorrelation(x: torch.Tensor, max_lag: int, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Autocorrelation of each channel at lags 1..``max_lag``, divided by its energy (lag 0).

    Args:
        x: (B, T, C) signals (any float dtype; computed in float32).
        max_lag: longest lag in frames.
        mask: (B, T) True for valid frames; invalid frames are left out of the mean and the sums, so an
            item's result does not depend on the padding of its batch. ``None``: all valid.

    Returns:
        (B, C, max_lag) float32; lags at or past a signal's length are 0.

    Example:
        >>> t = torch.arange(40.0)
        >>> corr = autocorrelation((t % 4 == 0).float()[None, :, None], 6)
        >>> int(corr[0, 0].argmax()) + 1
        4
    """
    if max_lag < 1:
        raise ValueError(f"max_lag must be >= 1, got {max_lag}")
    z = x.float()
    if mask is None:
        z = z - z.mean(dim=1, keepdim=True)
    else:
        weights = mask.unsqueeze(-1).to(z.dtype)
        z = (z - (z * weights).sum(1, keepdim=True) / weights.sum(1, keepdim=True).clamp_min(1.0)) * weights
    n = z.shape[1]
    size = 1 << (n + max_lag).bit_length()  # zero-padded: linear, not circular, correlation
    spectrum = torch.fft.rfft(z.transpose(1, 2), n=size)  # (B, C, size // 2 + 1)
    corr = torch.fft.irfft(spectrum.real.square() + spectrum.imag.square(), n=size)  # (B, C, size)
    lags = corr[..., 1 : max_lag + 1] / corr[..., :1].clamp_min(1e-6)
    if lags.shape[-1] < max_lag:  # signals shorter than the longest lag
        lags = F.pad(lags, (0, max_lag - lags.shape[-1]))
    return lags
