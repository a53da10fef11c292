"""Log-mel frontend with the official MuQ numerics, written with ``torch.stft``.

The official model computes ``torchaudio.transforms.MelSpectrogram(sample_rate=24000, n_fft=2048,
hop_length=240, n_mels=128)`` (Hann window, centre reflect padding, power 2, HTK mel scale, no filter
normalisation), then ``AmplitudeToDB()`` (10 log10, amin 1e-10, no top_db) and drops the last frame.
This module reproduces those numbers without torchaudio and adds what the official code lacks:
batches of items of different lengths, where every item is padded by reflection of *its own* signal,
so an item's mel in a batch equals its mel alone.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import nn

from muqkit.audio.tensors import lengths_to_mask
from muqkit.configs import build, check_int, nest

SAMPLE_RATE = 24000  # what MuQ, MuQ-MuLan and the Mel-RVQ read (official)
FRAME_RATE = 25  # MuQ's frames per second (official: 4x subsampled 100 Hz mel frames)

# The mel fields as older config files hold them, flat (name -> MelConfig field).
MEL_FIELDS: dict[str, str] = {"sample_rate": "sample_rate", "n_fft": "n_fft", "hop_length": "hop_length",
                              "n_mels": "n_mels"}


@dataclass(frozen=True)
class MelConfig:
    """The log-mel every model of muqkit starts from (MuQ, Mel-RVQ, random projection, k-means).

    Attributes:
        sample_rate: input sample rate in Hz (official: 24000).
        n_fft: FFT size and Hann window length (official: 2048; the ``melspec_2048`` feature).
        hop_length: hop in samples (official: 240, 100 mel frames per second at 24 kHz); official
            ``hop_length``.
        n_mels: HTK mel bands (official: 128); official ``n_mels``.
    """

    sample_rate: int = 24000
    n_fft: int = 2048
    hop_length: int = 240
    n_mels: int = 128

    def __post_init__(self) -> None:
        check_int(self, "sample_rate", "n_fft", "hop_length", "n_mels")
        if self.n_fft < self.hop_length:
            raise ValueError(f"MelConfig.n_fft must be >= hop_length ({self.hop_length}), got {self.n_fft}")

    @property
    def frame_rate(self) -> float:
        """Mel frames per second."""
        return self.sample_rate / self.hop_length


class WithMel:
    """Flat read access to the ``mel`` field of a config (``config.sample_rate`` is ``config.mel.sample_rate``)."""

    mel: MelConfig

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Any:
        """Build from a dict whose mel fields are nested (``"mel": {...}``) or flat (``sample_rate``,
        ``n_fft``, ``hop_length``, ``n_mels``, as older files hold them); flat ones win."""
        data = dict(data)
        mel = nest(data, "mel", MelConfig, MEL_FIELDS, cls.__name__)
        return build(cls, {**data, "mel": mel}, cls.__name__)

    def check_mel(self) -> None:
        """Raise unless ``mel`` is a :class:`MelConfig` (for ``__post_init__``)."""
        if not isinstance(self.mel, MelConfig):
            raise ValueError(f"{type(self).__name__}.mel must be a MelConfig, got {type(self.mel).__name__}")

    @property
    def sample_rate(self) -> int:
        return self.mel.sample_rate

    @property
    def n_fft(self) -> int:
        return self.mel.n_fft

    @property
    def hop_length(self) -> int:
        return self.mel.hop_length

    @property
    def n_mels(self) -> int:
        return self.mel.n_mels


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype the frontend computes in for input ``x``: float64 for float64 input (a reference
    replay, end to end), float32 for everything else (bfloat16 and float16 included)."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def hz_to_mel_htk(freq: float) -> float:
    """HTK mel scale: ``2595 log10(1 + f / 700)``."""
    return 2595.0 * math.log10(1.0 + freq / 700.0)


def linspace32(start: float, end: float, steps: int) -> torch.Tensor:
    """``torch.linspace(start, end, steps)`` in float32 as ATen's vectorised kernel computes it, on any CPU.

    The vectorised kernel (AVX2, AVX-512) computes each point as one fused multiply-add,
    ``start + step * i`` for the first half and ``end - step * (steps - 1 - i)`` for the second, with
    ``step`` rounded to float32; ATen's scalar kernel (``ATEN_CPU_CAPABILITY=default``) rounds the
    product first and so differs in the last bit of a few points, which moves a mel filterbank (and
    a float64 replay of the official step) by a few parts in a million. Here the product is exact in
    float64 and the sum is rounded once, so every CPU gets the vectorised kernel's values.
    """
    first = torch.tensor(start, dtype=torch.float32)
    last = torch.tensor(end, dtype=torch.float32)
    if steps == 1:
        return first.reshape(1)
    step = ((last - first) / (steps - 1)).double()
    index = torch.arange(steps, dtype=torch.float64)
    lower = first.double() + step * index
    upper = last.double() - step * (steps - 1 - index)
    return torch.where(index < steps // 2, lower, upper).float()


def mel_filterbank(
    *,
    n_freqs: int,
    sample_rate: int,
    n_mels: int,
    f_min: float = 0.0,
    f_max: float | None = None,
) -> torch.Tensor:
    """Triangular HTK mel filterbank without normalisation, as torchaudio's defaults build it (in
    float32, with its linspace as vectorised CPUs compute it: :func:`linspace32`).

    Returns:
        Tensor of shape (n_freqs, n_mels), float32.
    """
    f_max = float(sample_rate // 2) if f_max is None else f_max
    all_freqs = linspace32(0, sample_rate // 2, n_freqs)
    m_pts = linspace32(hz_to_mel_htk(f_min), hz_to_mel_htk(f_max), n_mels + 2)
    f_pts = 700.0 * (10.0 ** (m_pts / 2595.0) - 1.0)
    f_diff = f_pts[1:] - f_pts[:-1]  # (n_mels + 1)
    slopes = f_pts.unsqueeze(0) - all_freqs.unsqueeze(1)  # (n_freqs, n_mels + 2)
    down = (-1.0 * slopes[:, :-2]) / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    return torch.max(torch.zeros(1), torch.min(down, up))


def reflect_indices(length: torch.Tensor, pad: int, total: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Gather indices that reflect-pad each item of a batch by ``pad`` samples on both sides.

    Position ``p`` of the padded signal (``p`` in ``[0, total)``) reads sample ``p - pad`` of the item,
    mirrored at both ends without repeating the edge sample (numpy's and torch's ``reflect``); the
    mirror repeats periodically, so pads longer than the item are allowed. Positions past the end of
    the item's padded signal are flagged invalid.

    Args:
        length: (batch,) number of valid samples of each item (>= 2).
        pad: reflection on each side, in samples.
        total: length of the padded buffer.

    Returns:
        ``(index, valid)``, both (batch, total): sample indices into the unpadded item and a boolean
        mask of the positions that belong to the item's padded signal.
    """
    pos = torch.arange(total, device=length.device).unsqueeze(0) - pad  # (1, total)
    n = length.unsqueeze(1)  # (batch, 1)
    period = 2 * (n - 1)
    folded = torch.remainder(pos, period)
    index = torch.where(folded < n, folded, period - folded)
    valid = pos < n + pad
    return index, valid


@dataclass(frozen=True)
class MelOutput:
    """Log-mel features of a batch.

    Attributes:
        mel: (batch, n_mels, frames) log-mel in dB (normalised if the frontend has statistics).
        lengths: (batch,) number of valid frames of each item.
    """

    mel: torch.Tensor
    lengths: torch.Tensor


class MelFrontend(nn.Module):
    """Batched log-mel with the official numerics and optional corpus normalisation.

    Args:
        sample_rate: input sample rate in Hz.
        n_fft: FFT size and Hann window length.
        hop_length: hop in samples (100 Hz at 24 kHz with 240).
        n_mels: number of HTK mel bands.
        mean: corpus mean of the dB mel (the checkpoint's ``stat``); ``None`` leaves dB values.
        std: corpus standard deviation of the dB mel.
    """

    window: torch.Tensor  # buffer (n_fft,)
    filterbank: torch.Tensor  # buffer

    def __init__(
        self,
        sample_rate: int = 24000,
        n_fft: int = 2048,
        hop_length: int = 240,
        n_mels: int = 128,
        *,
        mean: float | None = None,
        std: float | None = None,
    ) -> None:
        super().__init__()
        if (mean is None) != (std is None):
            raise ValueError("MelFrontend needs both mean and std, or neither")
        if std is not None and not std > 0:
            raise ValueError(f"MelFrontend std must be positive, got {std}")
        self.sample_rate = sample_rate
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.n_mels = n_mels
        self.mean = mean
        self.std = std
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        fb = mel_filterbank(n_freqs=n_fft // 2 + 1, sample_rate=sample_rate, n_mels=n_mels)
        self.register_buffer("filterbank", fb, persistent=False)
        self._sparse_filterbank: torch.Tensor | None = None

    def __getstate__(self) -> dict[str, Any]:
        """The module's state without the sparse filterbank cache, which cannot be copied or pickled
        (``copy.deepcopy`` of a model would fail on it); it is rebuilt on the next call."""
        state = dict(super().__getstate__())
        state["_sparse_filterbank"] = None
        return state

    @classmethod
    def from_config(cls, config: MelConfig, *, mean: float | None = None, std: float | None = None) -> MelFrontend:
        """The frontend of a :class:`MelConfig`."""
        return cls(config.sample_rate, config.n_fft, config.hop_length, config.n_mels, mean=mean, std=std)

    @property
    def min_samples(self) -> int:
        """Fewest samples that give one mel frame."""
        return self.hop_length

    def num_frames(self, num_samples: torch.Tensor) -> torch.Tensor:
        """Mel frames for inputs of ``num_samples`` samples (the last centred frame is dropped)."""
        return torch.div(num_samples, self.hop_length, rounding_mode="floor")

    def _apply_filterbank(self, power: torch.Tensor) -> torch.Tensor:
        """(batch, frames, n_freqs) power -> (batch, n_mels, frames) mel power.

        Each bin feeds at most two triangles, so on the CPU the filterbank is applied as a sparse
        matrix (2 000 of its 131 000 entries are nonzero).
        """
        batch, frames, n_freqs = power.shape
        if power.device.type != "cpu" or power.requires_grad:
            return torch.matmul(power, self.filterbank.to(power.dtype)).transpose(1, 2)
        if self._sparse_filterbank is None or self._sparse_filterbank.dtype != power.dtype:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # sparse CSR support is marked beta
                self._sparse_filterbank = self.filterbank.t().to(power.dtype).contiguous().to_sparse_csr()
        mel = torch.sparse.mm(self._sparse_filterbank, power.reshape(batch * frames, n_freqs).t())
        return mel.view(self.n_mels, batch, frames).transpose(0, 1)

    def power_mel(self, wavs: torch.Tensor, lengths: torch.Tensor | None = None) -> MelOutput:
        """Mel power spectrogram (before dB) of a batch.

        The window and the filterbank are built in float32, as torchaudio builds them; float64 input
        is computed in float64 throughout (the window and filterbank widened), any other in float32.

        Args:
            wavs: (batch, samples) float waveforms.
            lengths: (batch,) valid samples per item; ``None`` means every item fills the batch.

        Returns:
            MelOutput with ``mel`` (batch, n_mels, frames) in power units (float32, or float64 for
            float64 input); frames past an item's length are zero.
        """
        if wavs.dim() != 2:
            raise ValueError(f"wavs must be (batch, samples), got shape {tuple(wavs.shape)}")
        wavs = wavs.to(compute_dtype(wavs))
        batch, samples = wavs.shape
        if lengths is None:
            lengths = torch.full((batch,), samples, dtype=torch.long, device=wavs.device)
        lengths = lengths.to(device=wavs.device, dtype=torch.long)
        if int(lengths.min()) < self.min_samples:
            raise ValueError(
                f"audio too short: {int(lengths.min())} samples give no mel frame "
                f"(at least {self.min_samples} needed)"
            )
        pad = self.n_fft // 2
        frames = int(self.num_frames(lengths.max()))
        total = (frames - 1) * self.hop_length + self.n_fft
        if bool((lengths == samples).all()) and samples > pad:
            # Fast path: every item fills the batch, so one reflect pad serves all.
            padded = torch.nn.functional.pad(wavs.unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
        else:
            index, valid = reflect_indices(lengths, pad, total)
            padded = torch.gather(wavs, 1, index.clamp(max=samples - 1)) * valid
        # The frames torch.stft(center=False) would cut, windowed and transformed: the same numbers,
        # about a third faster on the CPU.
        frames_td = padded[:, :total].unfold(-1, self.n_fft, self.hop_length)  # (batch, frames, n_fft)
        spec = torch.fft.rfft(frames_td * self.window.to(wavs.dtype), dim=-1)  # (batch, frames, n_freqs)
        # |X|^2 as re^2 + im^2 on contiguous memory.
        power = spec.real.square()
        power = power.add_(spec.imag.square()) if not power.requires_grad else power + spec.imag.square()
        mel = self._apply_filterbank(power)  # (batch, n_mels, frames)
        n_frames = self.num_frames(lengths)
        if bool((n_frames == frames).all()):
            return MelOutput(mel=mel, lengths=n_frames)
        frame_mask = lengths_to_mask(n_frames, frames)
        return MelOutput(mel=mel * frame_mask.unsqueeze(1), lengths=n_frames)

    def forward(self, wavs: torch.Tensor, lengths: torch.Tensor | None = None) -> MelOutput:
        """Log-mel (dB, normalised when the frontend has statistics) of a batch.

        Args:
            wavs: (batch, samples) float waveforms at ``sample_rate``.
            lengths: (batch,) valid samples per item, or ``None``.

        Returns:
            MelOutput with ``mel`` (batch, n_mels, frames); padded frames are zero.
        """
        out = self.power_mel(wavs, lengths)
        mel = out.mel
        if mel.requires_grad:
            mel_db = 10.0 * torch.log10(torch.clamp(mel, min=1e-10))
            if self.mean is not None:
                mel_db = (mel_db - self.mean) / cast(float, self.std)  # set together with mean
        else:  # same numbers, computed in place
            mel_db = mel.clamp_(min=1e-10).log10_().mul_(10.0)
            if self.mean is not None:
                mel_db = mel_db.sub_(self.mean).div_(cast(float, self.std))  # set together with mean
        if bool((out.lengths == mel_db.shape[-1]).all()):
            return MelOutput(mel=mel_db, lengths=out.lengths)
        frame_mask = torch.arange(mel_db.shape[-1], device=mel_db.device) < out.lengths.unsqueeze(1)
        return MelOutput(mel=mel_db * frame_mask.unsqueeze(1), lengths=out.lengths)
