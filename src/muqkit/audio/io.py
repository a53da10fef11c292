"""Audio input: decode (soundfile), downmix to mono and resample (soxr) to the model's rate.

Every problem with an input file raises :class:`AudioError`, whose message names the file and the
problem, so a caller processing many files can report it and go on.

Two ways to read:

* :func:`load_audio` returns the whole signal as one tensor;
* :func:`stream_audio` yields it in blocks of a fixed number of output samples, reading the file in
  blocks too, so memory stays bounded however long the file is.

Both go through the same streaming decoder and resampler (``soxr.ResampleStream`` gives the same
samples as a one-shot resample whatever the block size), so they return identical samples.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

# The shortest input MuQ embeds: one output frame at 25 Hz (40 ms).
MIN_DURATION_SECONDS = 0.04
_READ_SECONDS = 10.0  # decoder block when streaming, in seconds of the file's own rate


class AudioError(ValueError):
    """An audio file cannot be used: unreadable, corrupt, empty, non-finite or too short.

    Attributes:
        path: the file.
        problem: what is wrong with it.
    """

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


@dataclass(frozen=True)
class AudioInfo:
    """What a file's header says, read without decoding the samples.

    Attributes:
        path: the file.
        duration: seconds (``frames / sample_rate``).
        sample_rate: the file's sample rate in Hz.
        channels: number of channels.
        frames: samples per channel (exact for PCM formats, the decoder's estimate for mp3).
        format: container, as libsndfile names it (``WAV``, ``FLAC``, ``OGG``, ``MP3``, ...).
        subtype: encoding inside the container (``PCM_16``, ``VORBIS``, ``OPUS``, ...).
    """

    path: str
    duration: float
    sample_rate: int
    channels: int
    frames: int
    format: str
    subtype: str


def audio_info(path: str | os.PathLike[str]) -> AudioInfo:
    """Read a file's duration, sample rate and channels from its header (cheap: nothing is decoded).

    Raises:
        AudioError: the file is missing or libsndfile cannot open it.
    """

    info = _open(path, header_only=True)
    frames = int(info.frames)
    rate = int(info.samplerate)
    return AudioInfo(
        path=str(path),
        duration=frames / rate if rate > 0 else 0.0,
        sample_rate=rate,
        channels=int(info.channels),
        frames=frames,
        format=str(info.format),
        subtype=str(info.subtype),
    )


def stream_audio(
    path: str | os.PathLike[str],
    *,
    block_samples: int,
    sample_rate: int = 24000,
    min_duration: float = MIN_DURATION_SECONDS,
) -> Iterator[torch.Tensor]:
    """Decode a file block by block as mono float32 at ``sample_rate``.

    Every block has exactly ``block_samples`` samples except the last, which has between 1 and
    ``block_samples``. The file is read ``_READ_SECONDS`` at a time, so memory is bounded by the block
    sizes, not by the file's length. Channels are averaged; the resampler is soxr at high quality.

    Args:
        path: an audio file libsndfile can decode (wav, flac, ogg/vorbis, opus, mp3, aiff, ...).
        block_samples: samples per yielded block, at ``sample_rate``.
        sample_rate: output rate in Hz.
        min_duration: shorter signals raise :class:`AudioError` (after the last block is decoded,
            since an mp3 header does not give the exact length).

    Yields:
        (samples,) float32 tensors.

    Raises:
        AudioError: the file is missing, cannot be decoded, is empty, has NaN or infinite samples, or
            is shorter than ``min_duration``. Raised while iterating, possibly after some blocks.
    """
    import soundfile as sf

    if block_samples <= 0:
        raise ValueError(f"block_samples must be positive, got {block_samples}")
    with _open(path) as handle:
        source_rate = int(handle.samplerate)
        if source_rate <= 0:
            raise AudioError(path, f"invalid sample rate {source_rate}")
        resampler = _Resampler(source_rate, sample_rate)
        read_frames = max(1, int(_READ_SECONDS * source_rate))
        pending: list[np.ndarray] = []  # resampled samples not yet yielded
        num_pending = 0
        total = 0
        finished = False
        while not finished:
            try:
                data = handle.read(read_frames, dtype="float32", always_2d=True)  # (frames, channels)
            except (sf.LibsndfileError, RuntimeError) as exc:
                raise AudioError(path, f"corrupt audio, decoding failed ({_reason(exc)})") from exc
            finished = data.shape[0] < read_frames
            if data.shape[0] and not np.isfinite(data).all():
                raise AudioError(path, "audio contains NaN or infinite samples")
            mono = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
            out = resampler(np.ascontiguousarray(mono), last=finished)
            if out.size:
                pending.append(out)
                num_pending += out.size
            while num_pending >= block_samples and (num_pending > block_samples or not finished):
                block, pending, num_pending = _take(pending, block_samples)
                total += block.size
                yield torch.from_numpy(block)
        if total + num_pending == 0:
            raise AudioError(path, "audio is empty (no samples)")
        if total + num_pending < math.ceil(min_duration * sample_rate - 1e-9):
            seconds = (total + num_pending) / sample_rate
            raise AudioError(
                path,
                f"audio is too short: {seconds * 1000:.1f} ms, at least {min_duration * 1000:.0f} ms needed",
            )
        if num_pending:
            yield torch.from_numpy(np.concatenate(pending))


def load_audio(
    path: str | os.PathLike[str],
    *,
    sample_rate: int = 24000,
    min_duration: float = MIN_DURATION_SECONDS,
) -> torch.Tensor:
    """Decode a whole file as mono float32 at ``sample_rate``.

    Args:
        path: an audio file libsndfile can decode (wav, flac, ogg/vorbis, opus, mp3, aiff, ...).
        sample_rate: output rate in Hz (soxr, high quality, when the file's rate differs).
        min_duration: shorter signals raise :class:`AudioError`; the default is one MuQ frame (40 ms).

    Returns:
        (samples,) float32 tensor.

    Raises:
        AudioError: the file is missing, cannot be decoded, is empty, has NaN or infinite samples, or
            is shorter than ``min_duration``.
    """
    blocks = list(stream_audio(path, block_samples=1 << 62, sample_rate=sample_rate, min_duration=min_duration))
    return blocks[0] if len(blocks) == 1 else torch.cat(blocks)


RESAMPLE_QUALITY = "HQ"  # soxr quality of every resampling in muqkit (files and in-memory arrays)


def resample(audio: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """Resample float32 audio, (samples,) or (samples, channels), with the resampler the decoder uses
    (soxr, ``RESAMPLE_QUALITY``); identity when the rates agree."""
    audio = np.ascontiguousarray(audio, dtype=np.float32)
    if source_rate == target_rate:
        return audio
    import soxr

    return np.asarray(soxr.resample(audio, source_rate, target_rate, quality=RESAMPLE_QUALITY), dtype=np.float32)


class _Resampler:
    """Streaming soxr resampler (identity when the rates agree)."""

    def __init__(self, source_rate: int, target_rate: int) -> None:
        self.stream = None
        if source_rate != target_rate:
            import soxr

            self.stream = soxr.ResampleStream(
                source_rate, target_rate, 1, dtype="float32", quality=RESAMPLE_QUALITY
            )

    def __call__(self, mono: np.ndarray, *, last: bool) -> np.ndarray:
        if self.stream is None:
            return mono
        return np.asarray(self.stream.resample_chunk(mono, last=last), dtype=np.float32)


def read_crop(path: str | os.PathLike[str], sample_rate: int, start: int, num_samples: int) -> torch.Tensor:
    """``num_samples`` mono samples from sample ``start`` (counted at ``sample_rate``), fewer at the end:
    a crop read without decoding the rest of the file (resampled with soxr when the file's rate differs).

    Raises:
        AudioError: the file is missing, cannot be decoded, or the crop has NaN or infinite samples.
    """

    with _open(path) as fh:
        native = fh.samplerate
        if native == sample_rate:
            fh.seek(min(start, fh.frames))
            audio = fh.read(num_samples, dtype="float32", always_2d=True).mean(axis=1)
        else:
            import soxr

            first = int(start * native / sample_rate)
            fh.seek(min(first, fh.frames))
            raw = fh.read(int(np.ceil(num_samples * native / sample_rate)) + 1, dtype="float32", always_2d=True)
            audio = soxr.resample(raw.mean(axis=1), native, sample_rate).astype(np.float32)[:num_samples]
    if not np.isfinite(audio).all():
        raise AudioError(path, "audio contains NaN or infinite samples")
    return torch.from_numpy(np.ascontiguousarray(audio))


def _take(pending: list[np.ndarray], n: int) -> tuple[np.ndarray, list[np.ndarray], int]:
    """Split the first ``n`` samples off a list of arrays."""
    joined = pending[0] if len(pending) == 1 else np.concatenate(pending)
    head, tail = joined[:n].copy(), joined[n:]
    return head, ([tail] if tail.size else []), int(tail.size)


def _open(path: str | os.PathLike[str], *, header_only: bool = False) -> Any:
    """An open ``soundfile.SoundFile`` (or with ``header_only`` its ``soundfile.info``), libsndfile's errors
    as :class:`AudioError`."""
    import soundfile as sf

    _check_exists(path)
    try:
        return sf.info(str(path)) if header_only else sf.SoundFile(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioError(path, f"unreadable or corrupt audio ({_reason(exc)})") from exc


def _check_exists(path: str | os.PathLike[str]) -> None:
    p = Path(path)
    if not p.exists():
        raise AudioError(path, "file not found")
    if not p.is_file():
        raise AudioError(path, "not a regular file")
    if p.stat().st_size == 0:
        raise AudioError(path, "file is empty (0 bytes)")


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    # libsndfile repeats the path in its message; keep only its explanation.
    if text.startswith("Error opening") and ": " in text:
        text = text.split(": ", 1)[1]
    text = text or type(exc).__name__
    return f"libsndfile: {text}"
