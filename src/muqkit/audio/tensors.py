"""Checking waveforms handed to the Python API (:class:`muqkit.MuQ`, :mod:`muqkit.hear`).

:func:`as_waveforms` accepts a torch tensor or a numpy array, (samples,) or (batch, samples), and
returns a float tensor; integer PCM is scaled to [-1, 1) the way soundfile reads it (int16 / 32768,
int32 / 2**31, int8 / 128). Anything ambiguous or broken is a ``TypeError`` / ``ValueError`` that says
what to pass instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

# Full scale of the integer PCM types: x / scale is in [-1, 1).
PCM_SCALE: dict[torch.dtype, float] = {torch.int8: 2.0**7, torch.int16: 2.0**15, torch.int32: 2.0**31}


def as_waveforms(wavs: Any, *, name: str = "wavs") -> torch.Tensor:
    """A (batch, samples) float tensor from a tensor or numpy array of waveforms.

    Args:
        wavs: (samples,) or (batch, samples), float (in [-1, 1]) or integer PCM (int8, int16, int32).
        name: the argument's name, for messages.

    Raises:
        TypeError: a list, or a type that is not a tensor or array, or an ambiguous dtype (uint8,
            int64, bool, complex).
        ValueError: wrong shape, an empty batch, or NaN / infinite samples.
    """
    if isinstance(wavs, (list, tuple)):
        raise TypeError(
            f"{name} must be a tensor or numpy array of shape (batch, samples), got a {type(wavs).__name__}; "
            "stack clips of equal length with torch.stack, or pad them and pass lengths=..."
        )
    if isinstance(wavs, np.ndarray):
        if wavs.dtype == np.float64:
            wavs = wavs.astype(np.float32)
        wavs = torch.from_numpy(np.ascontiguousarray(wavs))
    if not isinstance(wavs, torch.Tensor):
        raise TypeError(f"{name} must be a torch tensor or numpy array, got {type(wavs).__name__}")
    if wavs.dtype in PCM_SCALE:
        wavs = wavs.float() / PCM_SCALE[wavs.dtype]
    elif not wavs.is_floating_point():
        raise TypeError(
            f"{name} has dtype {wavs.dtype}, which is ambiguous as audio; pass float samples in [-1, 1] "
            "(e.g. wavs.float() / 32768 for 16-bit PCM) or an int8/int16/int32 PCM tensor"
        )
    if wavs.dim() == 1:
        wavs = wavs.unsqueeze(0)
    if wavs.dim() != 2:
        raise ValueError(f"{name} must be (batch, samples), got shape {tuple(wavs.shape)}")
    if wavs.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (shape {tuple(wavs.shape)}); pass at least one waveform")
    finite = torch.isfinite(wavs).all(dim=1)
    if not bool(finite.all()):
        bad = (~finite).nonzero().flatten().tolist()
        raise ValueError(f"{name} contains NaN or infinite samples (batch items {bad[:10]})")
    return wavs


def lengths_to_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(batch,) lengths -> (batch, max_len) boolean mask, True at valid positions (the first ``lengths``)."""
    return torch.arange(max_len, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)


def lengths_from_mask(attention_mask: Any, shape: torch.Size, *, device: torch.device) -> torch.Tensor:
    """Per-item valid samples of a (batch, samples) attention mask whose valid samples come first.

    Raises:
        ValueError: the mask's shape differs from the waveforms', or an item's valid samples are not a
            prefix (a gap, or padding before the signal).
    """
    mask = torch.as_tensor(attention_mask, device=device)
    if mask.shape != shape:
        raise ValueError(f"attention_mask shape {tuple(mask.shape)} differs from wavs {tuple(shape)}")
    valid = mask.ne(0)
    lengths = valid.sum(-1)
    prefix = lengths_to_mask(lengths, shape[-1])
    if not bool(torch.equal(valid, prefix)):
        bad = (valid != prefix).any(-1).nonzero().flatten().tolist()
        raise ValueError(
            f"attention_mask must mark each item's valid samples as a prefix (ones, then zeros); items {bad[:10]} "
            "have gaps or leading padding. Put each item's samples first, or pass lengths=..."
        )
    return lengths
