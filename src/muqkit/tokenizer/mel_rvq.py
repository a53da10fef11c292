"""Mel-RVQ: log-mel, corpus normalisation, 4-frame stacking and a residual VQ (MuQ's tokenizer).

>>> import torch
>>> from muqkit.tokenizer import MelRVQ
>>> tokenizer = MelRVQ().eval()                     # untrained; MelRVQ.from_pretrained(...) to load
>>> tokenizer.encode(torch.randn(2, 24000)).shape   # 1 s at 24 kHz -> 25 frames, 8 codebooks
torch.Size([2, 8, 25])
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from muqkit.audio.mel import MelConfig, WithMel
from muqkit.configs import check_int
from muqkit.tokenizer.base import (
    AudioTokenizer,
    Features,
    StackedMel,
    TokenizerOutput,
    full_lengths,
    register_tokenizer,
)
from muqkit.tokenizer.quantizer import QuantizerOutput, ResidualVectorQuantizer, RVQConfig


@dataclass(frozen=True)
class MelRVQConfig(WithMel):
    """Architecture of a Mel-RVQ (defaults: the paper's 8 x 1024 x 16 on 4 x 128 mel frames at 25 Hz).

    Attributes:
        mel: the log-mel (official: 24000 Hz, n_fft 2048, hop 240, 128 bands); its fields also read flat
            (``config.n_mels``) and load flat from older ``config.json`` files.
        stack: mel frames per token (4: 100 Hz mel -> 25 Hz tokens; official ``100 // label_rate``).
        num_codebooks, codebook_size, codebook_dim, stale_tolerance: see :class:`RVQConfig`.
    """

    mel: MelConfig = field(default_factory=MelConfig)
    stack: int = 4
    num_codebooks: int = 8
    codebook_size: int = 1024
    codebook_dim: int = 16
    stale_tolerance: int = 100

    def __post_init__(self) -> None:
        self.check_mel()
        check_int(self, "stack")
        self.rvq_config()  # validates the quantizer fields

    def rvq_config(self) -> RVQConfig:
        return RVQConfig(
            input_dim=self.n_mels * self.stack,
            num_codebooks=self.num_codebooks,
            codebook_size=self.codebook_size,
            codebook_dim=self.codebook_dim,
            stale_tolerance=self.stale_tolerance,
        )


@register_tokenizer
class MelRVQ(AudioTokenizer):
    """Mel-RVQ tokenizer.

    Args:
        config: architecture (default :class:`MelRVQConfig`).
        mean, std: scalar statistics of the dB mel (saved in the state dict as ``features.mean`` /
            ``features.std`` beside the codebooks).
    """

    model_type = "mel_rvq"
    config_class = MelRVQConfig

    def __init__(self, config: MelRVQConfig | None = None, *, mean: float = 0.0, std: float = 1.0) -> None:
        super().__init__()
        self.config = config or MelRVQConfig()
        c = self.config
        self.features = StackedMel.from_config(c, mean=mean, std=std)
        self.rvq = ResidualVectorQuantizer(c.rvq_config())

    def num_frames(self, num_samples: torch.Tensor) -> torch.Tensor:
        """Tokens for ``num_samples`` samples: ``(num_samples // hop_length) // stack``."""
        return self.features.num_frames(torch.as_tensor(num_samples))

    # ------------------------------------------------ the interface the RVQ training task uses
    statistics_dim = None  # one scalar mean / std for every mel value

    def raw_frames(self, wavs: torch.Tensor, lengths: torch.Tensor | None = None) -> Features:
        """Stacked dB mel before normalisation (batch, frames, stack * n_mels)."""
        return self.features(wavs, None if lengths is None else full_lengths(wavs, lengths), normalise=False)

    def normalise(self, values: torch.Tensor) -> torch.Tensor:
        """Normalise raw frames (..., stack * n_mels) with the stored statistics."""
        return (values - self.features.mean) / self.features.std

    def set_statistics(self, mean: torch.Tensor | float, std: torch.Tensor | float) -> None:
        """Store the corpus mean and std of the dB mel."""
        self.features.set_statistics(float(mean), float(std))

    def featurize(self, wavs: torch.Tensor, lengths: torch.Tensor | None = None) -> Features:
        """Normalised stacked mel (batch, frames, stack * n_mels) of (batch, samples) audio."""
        return self.features(wavs, None if lengths is None else full_lengths(wavs, lengths))

    def forward(self, wavs: torch.Tensor, lengths: torch.Tensor | None = None) -> QuantizerOutput:
        """Quantize audio (batch, samples); ``quantized`` approximates :meth:`featurize`'s values."""
        feats = self.featurize(wavs, lengths)
        return self.rvq(feats.values, feats.lengths)

    @torch.no_grad()
    def tokenize(self, wavs: torch.Tensor, lengths: torch.Tensor | None = None) -> TokenizerOutput:
        """Codes (batch, num_codebooks, frames) at ``frame_rate`` and their lengths."""
        feats = self.featurize(wavs, lengths)
        codes = self.rvq.encode(feats.values, None if lengths is None else feats.lengths)
        return TokenizerOutput(codes=codes, lengths=feats.lengths)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Normalised stacked mel (batch, frames, stack * n_mels) from codes (batch, n, frames)."""
        return self.rvq.decode(codes)

    def unstack(self, stacked: torch.Tensor, *, denormalise: bool = True) -> torch.Tensor:
        """Stacked frames (batch, frames, stack * n_mels) to mel (batch, n_mels, frames * stack), dB."""
        batch, frames, _ = stacked.shape
        mel = stacked.reshape(batch, frames * self.config.stack, self.config.n_mels).transpose(1, 2)
        return mel * self.features.std + self.features.mean if denormalise else mel
