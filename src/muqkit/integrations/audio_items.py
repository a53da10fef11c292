"""Audio items as benchmark harnesses hand them over, to mono float32 waveforms at the model's rate.

A Hugging Face ``datasets`` audio column comes in one of three forms: decoded (``{"array", "sampling_rate"}``),
encoded (``{"bytes", "path"}`` with ``Audio(decode=False)``) or, with ``datasets`` 4 and later and torchcodec
installed, a decoder object. muqkit never needs torchcodec nor torchaudio: an encoded item is decoded with
soundfile (as :mod:`muqkit.audio.io` decodes files) and every item is resampled with
:func:`muqkit.audio.io.resample` (soxr, the resampler of ``muqkit embed``) and downmixed by averaging channels.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from muqkit.audio.io import AudioError, load_audio, resample

__all__ = ["waveform_from_item"]


def waveform_from_item(item: Any, sample_rate: int, *, name: str = "audio item") -> torch.Tensor:
    """A (samples,) float32 mono waveform at ``sample_rate`` from one audio item.

    Args:
        item: ``{"array": (samples,) or (channels, samples), "sampling_rate": int}``;
            ``{"bytes": b"...", "path": ...}`` (an encoded file, as ``datasets.Audio(decode=False)`` gives);
            ``{"bytes": None, "path": "file.wav"}``; or an object with ``get_all_samples()`` (torchcodec).
        sample_rate: the rate to return, in Hz.
        name: how messages name the item.

    Raises:
        AudioError: the item cannot be decoded, is empty or holds NaN or infinite samples.
    """
    if isinstance(item, Mapping) and item.get("array") is not None:
        array = np.asarray(item["array"], dtype=np.float32)
        source_rate = int(item["sampling_rate"])
        if array.ndim == 2:  # (channels, samples), as datasets and mteb's collator lay it out
            array = array.mean(axis=0, dtype=np.float32)
        elif array.ndim != 1:
            raise AudioError(name, f"audio array must be (samples,) or (channels, samples), got {array.shape}")
    elif isinstance(item, Mapping) and item.get("bytes") is not None:
        array, source_rate = _decode_bytes(bytes(item["bytes"]), name=str(item.get("path") or name))
    elif isinstance(item, Mapping) and item.get("path"):
        return load_audio(str(item["path"]), sample_rate=sample_rate, min_duration=0.0)
    elif hasattr(item, "get_all_samples"):  # a torchcodec AudioDecoder (datasets >= 4 with torchcodec)
        samples = item.get_all_samples()
        array = samples.data.float().mean(dim=0).numpy()
        source_rate = int(samples.sample_rate)
    else:
        raise AudioError(name, f"not an audio item (a {type(item).__name__})")
    if array.size == 0:
        raise AudioError(name, "audio is empty (no samples)")
    if not np.isfinite(array).all():
        raise AudioError(name, "audio contains NaN or infinite samples")
    return torch.from_numpy(resample(array, source_rate, sample_rate))


def _decode_bytes(data: bytes, *, name: str) -> tuple[np.ndarray, int]:
    """Mono float32 samples and the rate of an encoded file held in memory."""
    import soundfile as sf

    try:
        frames, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)  # (frames, channels)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioError(name, f"unreadable or corrupt audio (libsndfile: {exc})") from exc
    mono = frames.mean(axis=1, dtype=np.float32) if frames.shape[1] > 1 else frames[:, 0]
    return np.ascontiguousarray(mono), int(rate)
