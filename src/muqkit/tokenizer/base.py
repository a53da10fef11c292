"""The interface every tokenizer shares, and the pieces the mel-based ones are built from.

A tokenizer maps audio (batch, samples) at ``sample_rate`` to codes (batch, num_codebooks, frames)
at ``frame_rate``, with the valid frames of each item in ``lengths``. Codes at padded frames hold
:data:`IGNORE_CODE`, the ``ignore_index`` of :func:`torch.nn.functional.cross_entropy`, so that a
masked-prediction loss skips them and any lookup of them fails loudly.
"""

from __future__ import annotations

import abc
import dataclasses
import os
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from muqkit.audio.mel import MelFrontend
from muqkit.audio.tensors import lengths_to_mask
from muqkit.configs import build

IGNORE_CODE = -100


def full_lengths(x: torch.Tensor, lengths: torch.Tensor | None, dim: int = 1) -> torch.Tensor:
    """``lengths`` as a long tensor on ``x``'s device, or every item full along ``dim``."""
    if lengths is None:
        return torch.full((x.shape[0],), x.shape[dim], dtype=torch.long, device=x.device)
    lengths = torch.as_tensor(lengths, dtype=torch.long, device=x.device)
    if lengths.shape != (x.shape[0],):
        raise ValueError(f"lengths must be ({x.shape[0]},), got shape {tuple(lengths.shape)}")
    if bool((lengths > x.shape[dim]).any()) or bool((lengths < 0).any()):
        raise ValueError(f"lengths must lie in [0, {x.shape[dim]}], got {lengths.tolist()}")
    return lengths


@dataclass(frozen=True)
class TokenizerOutput:
    """Codes of a batch.

    Attributes:
        codes: (batch, num_codebooks, frames) long; :data:`IGNORE_CODE` at padded frames.
        lengths: (batch,) valid frames of each item.
    """

    codes: torch.Tensor
    lengths: torch.Tensor


@dataclass(frozen=True)
class Features:
    """Frame features of a batch.

    Attributes:
        values: (batch, frames, dim); zero at padded frames.
        lengths: (batch,) valid frames of each item.
    """

    values: torch.Tensor
    lengths: torch.Tensor


class TokenizerModule(nn.Module):
    """A savable tokenizer part: a frozen config dataclass plus a state dict.

    Subclasses set ``model_type`` (the registry name written in ``config.json``) and ``config_class``
    (a frozen dataclass whose fields rebuild the model), keep their config in ``self.config`` and are
    constructed as ``cls(config)``.
    """

    model_type: ClassVar[str]
    config_class: ClassVar[type]
    config: Any

    @property
    def num_codebooks(self) -> int:
        return int(self.config.num_codebooks)

    @property
    def codebook_size(self) -> int:
        return int(self.config.codebook_size)

    def config_dict(self) -> dict[str, Any]:
        """``config.json`` content: ``model_type`` and the config's fields."""
        return {"model_type": self.model_type, **dataclasses.asdict(self.config)}

    def save_pretrained(self, folder: str | os.PathLike[str]) -> None:
        """Write ``config.json`` and ``model.safetensors`` (codebooks and statistics together; see
        :func:`muqkit.hub.loaders.save_tokenizer`)."""
        from muqkit.hub.loaders import save_tokenizer

        save_tokenizer(self, folder)

    @classmethod
    def from_config_dict(cls, config: dict[str, Any]) -> TokenizerModule:
        """Build an untrained model from ``config.json`` content."""
        data = {k: v for k, v in config.items() if k != "model_type"}
        from_dict = getattr(cls.config_class, "from_dict", None)  # configs with nested parts read old flat files
        return cls(from_dict(data) if from_dict is not None else build(cls.config_class, data, cls.__name__))

    @classmethod
    def from_pretrained(cls, folder_or_id: str | os.PathLike[str], **hub_kwargs: Any) -> TokenizerModule:
        """Load a saved folder or Hub id holding this class (``TokenizerModule``: any tokenizer), or the
        Mel-RVQ of an official MuQ checkpoint, in eval mode (see :func:`muqkit.hub.loaders.load_tokenizer`).

        Raises:
            muqkit.hub.weights.CheckpointError: the folder is not such a tokenizer or its weights do not fit.
        """
        from muqkit.hub.loaders import load_tokenizer

        return load_tokenizer(folder_or_id, expected=cls, **hub_kwargs)


class AudioTokenizer(TokenizerModule, abc.ABC):
    """Audio in, discrete codes out: what a masked-prediction pretraining target needs.

    Subclasses implement :meth:`tokenize` and :meth:`num_frames`; their config has ``sample_rate``,
    ``hop_length`` and ``stack`` (mel frames per code frame).
    """

    @property
    def sample_rate(self) -> int:
        return int(self.config.sample_rate)

    @property
    def frame_rate(self) -> float:
        """Codes per second."""
        return self.config.sample_rate / (self.config.hop_length * self.config.stack)

    @abc.abstractmethod
    def tokenize(self, wavs: torch.Tensor, lengths: torch.Tensor | None = None) -> TokenizerOutput:
        """Codes (batch, num_codebooks, frames) and frame lengths of (batch, samples) audio."""

    @abc.abstractmethod
    def num_frames(self, num_samples: torch.Tensor) -> torch.Tensor:
        """Code frames for inputs of ``num_samples`` samples."""

    @torch.no_grad()
    def encode(self, wavs: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """LongTensor (batch, num_codebooks, frames) of codes; :data:`IGNORE_CODE` past each length."""
        return self.tokenize(wavs, lengths).codes


class RunningMoments:
    """Streaming mean and standard deviation (Chan et al.'s parallel update, in float64).

    Args:
        dim: feature size; ``None`` pools every value into one scalar mean and std.
    """

    def __init__(self, dim: int | None = None) -> None:
        self.dim = dim
        shape = () if dim is None else (dim,)
        self.count = 0
        self.mean = torch.zeros(shape, dtype=torch.float64)
        self.m2 = torch.zeros(shape, dtype=torch.float64)

    def update(self, values: torch.Tensor) -> None:
        """Add (points, dim) values (any shape when pooled)."""
        x = values.detach().to("cpu", torch.float64)
        x = x.reshape(-1) if self.dim is None else x.reshape(-1, self.dim)
        n = x.shape[0]
        if n == 0:
            return
        mean = x.mean(0)
        m2 = (x - mean).square().sum(0)
        total = self.count + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + delta.square() * (self.count * n / total)
        self.count = total

    @property
    def std(self) -> torch.Tensor:
        if self.count < 2:
            raise ValueError("RunningMoments needs at least two values for a standard deviation")
        return (self.m2 / (self.count - 1)).sqrt()


class StackedMel(nn.Module):
    """Log-mel (official numerics), normalised by corpus statistics, ``stack`` frames side by side.

    The stacked vector of frame ``t`` holds mel frames ``stack*t .. stack*t + stack-1``, with index
    ``s * n_mels + f`` for frame offset ``s`` and band ``f`` (the official ``b f (t s) -> b t (s f)``).
    Each item gives ``mel_frames // stack`` frames: the last ``mel_frames % stack`` mel frames
    (under 40 ms at 25 Hz) are dropped, where the official rearrange would fail.

    Args:
        sample_rate, n_fft, hop_length, n_mels: mel frontend settings.
        stack: mel frames per output frame.
        mean, std: scalar statistics of the dB mel; saved in the state dict as ``mean`` / ``std``.
    """

    mean: torch.Tensor  # buffer, scalar
    std: torch.Tensor  # buffer, scalar

    def __init__(
        self,
        *,
        sample_rate: int = 24000,
        n_fft: int = 2048,
        hop_length: int = 240,
        n_mels: int = 128,
        stack: int = 4,
        mean: float = 0.0,
        std: float = 1.0,
    ) -> None:
        super().__init__()
        self.stack = stack
        self.n_mels = n_mels
        self.frontend = MelFrontend(sample_rate, n_fft, hop_length, n_mels)
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))

    @classmethod
    def from_config(cls, config: Any, *, mean: float = 0.0, std: float = 1.0) -> StackedMel:
        """Build from any tokenizer config with ``mel`` (a :class:`~muqkit.audio.mel.MelConfig`) and ``stack``
        fields."""
        mel = config.mel
        return cls(
            sample_rate=mel.sample_rate, n_fft=mel.n_fft, hop_length=mel.hop_length,
            n_mels=mel.n_mels, stack=config.stack, mean=mean, std=std,
        )

    @property
    def dim(self) -> int:
        return self.n_mels * self.stack

    def num_frames(self, num_samples: torch.Tensor) -> torch.Tensor:
        return torch.div(self.frontend.num_frames(num_samples), self.stack, rounding_mode="floor")

    def log_mel(self, wavs: torch.Tensor, lengths: torch.Tensor | None = None) -> Features:
        """Un-normalised dB mel as (batch, mel_frames, n_mels) with mel-frame lengths."""
        out = self.frontend(wavs, lengths)
        return Features(values=out.mel.transpose(1, 2), lengths=out.lengths)

    def stack_frames(self, mel_db: Features, *, normalise: bool = True) -> Features:
        """Stack dB mel (batch, mel_frames, n_mels) into (batch, frames, stack*n_mels), normalised or not."""
        values = (mel_db.values - self.mean) / self.std if normalise else mel_db.values  # (B, Tm, F)
        batch, mel_frames, bands = values.shape
        frames = mel_frames // self.stack
        values = values[:, : frames * self.stack].reshape(batch, frames, self.stack * bands)
        lengths = torch.div(mel_db.lengths, self.stack, rounding_mode="floor")
        if bool((lengths == frames).all()):  # no padding: nothing to zero
            return Features(values=values, lengths=lengths)
        mask = lengths_to_mask(lengths, frames)
        return Features(values=values * mask.unsqueeze(-1), lengths=lengths)

    def forward(
        self, wavs: torch.Tensor, lengths: torch.Tensor | None = None, *, normalise: bool = True
    ) -> Features:
        """(batch, samples) audio to (normalised) stacked mel (batch, frames, stack*n_mels)."""
        return self.stack_frames(self.log_mel(wavs, lengths), normalise=normalise)

    def set_statistics(self, mean: float, std: float) -> None:
        if not std > 0:
            raise ValueError(f"std must be positive, got {std}")
        self.mean.fill_(float(mean))
        self.std.fill_(float(std))


_REGISTRY: dict[str, type[TokenizerModule]] = {}


@torch.no_grad()
def encode_files(tokenizer: Any, paths: list[Any]) -> dict[str, torch.Tensor]:
    """Codes of whole audio files: ``{str(path): (num_codebooks, frames)}``, each file decoded to mono at the
    tokenizer's rate (an :class:`AudioTokenizer`: ``encode`` and ``sample_rate``).

    Raises:
        muqkit.audio.io.AudioError: a file is missing or unreadable (names it).
    """
    from muqkit.audio.io import load_audio

    codes = {}
    for path in paths:
        audio = load_audio(path, sample_rate=tokenizer.sample_rate, min_duration=0.0).unsqueeze(0)
        codes[str(path)] = tokenizer.encode(audio)[0].contiguous()
    return codes


def register_tokenizer(cls: type[TokenizerModule]) -> type[TokenizerModule]:
    """Class decorator: make ``cls`` loadable by its ``model_type``."""
    _REGISTRY[cls.model_type] = cls
    return cls


def tokenizer_class(model_type: str) -> type[TokenizerModule]:
    """The registered tokenizer class of a ``model_type``."""
    import muqkit.tokenizer  # noqa: F401  (registers the built-in tokenizers)

    try:
        return _REGISTRY[model_type]
    except KeyError:
        raise ValueError(f"unknown tokenizer model_type '{model_type}'; known: {sorted(_REGISTRY)}") from None


def load_tokenizer(
    folder_or_id: str | os.PathLike[str], *, expected: type[TokenizerModule] | None = None, **hub_kwargs: Any
) -> TokenizerModule:
    """Load any muqkit tokenizer folder, or the Mel-RVQ held in an official MuQ checkpoint, in eval mode:
    ``(expected or TokenizerModule).from_pretrained(folder_or_id, **hub_kwargs)``.

    Args:
        folder_or_id: a local folder or a Hugging Face Hub id.
        expected: fail unless the folder holds this class (or a subclass).
        hub_kwargs: ``revision`` / ``cache_dir`` for :func:`muqkit.hub.weights.resolve_folder`.
    """
    return (expected or TokenizerModule).from_pretrained(folder_or_id, **hub_kwargs)
