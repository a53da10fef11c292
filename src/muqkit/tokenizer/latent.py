"""Latent RVQ: the residual VQ trained on arbitrary feature vectors (iterative refinement targets).

MuQ's second iteration tokenizes the hidden states of a first-iteration model. :class:`LatentRVQ`
standardises each feature dimension with corpus statistics and quantizes with the same
:class:`ResidualVectorQuantizer` as Mel-RVQ; it trains with the same task
(:class:`muqkit.tokenizer.training.RVQTrainingTask`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from muqkit.audio.tensors import lengths_to_mask
from muqkit.tokenizer.base import (
    Features,
    TokenizerModule,
    TokenizerOutput,
    full_lengths,
    register_tokenizer,
)
from muqkit.tokenizer.quantizer import QuantizerOutput, ResidualVectorQuantizer, RVQConfig


@dataclass(frozen=True)
class LatentRVQConfig:
    """Latent RVQ architecture.

    Attributes:
        input_dim: feature size (e.g. 1024 for MuQ-large hidden states).
        num_codebooks, codebook_size, codebook_dim, stale_tolerance: see :class:`RVQConfig`.
        frame_rate: frames per second of the features (informational, kept with the codebooks).
    """

    input_dim: int = 1024
    num_codebooks: int = 8
    codebook_size: int = 1024
    codebook_dim: int = 16
    stale_tolerance: int = 100
    frame_rate: float = 25.0

    def __post_init__(self) -> None:
        self.rvq_config()
        if not self.frame_rate > 0:
            raise ValueError(f"LatentRVQConfig.frame_rate must be positive, got {self.frame_rate}")

    def rvq_config(self) -> RVQConfig:
        return RVQConfig(
            input_dim=self.input_dim,
            num_codebooks=self.num_codebooks,
            codebook_size=self.codebook_size,
            codebook_dim=self.codebook_dim,
            stale_tolerance=self.stale_tolerance,
        )


@register_tokenizer
class LatentRVQ(TokenizerModule):
    """Per-dimension standardisation + residual VQ over (batch, frames, input_dim) features.

    Args:
        config: architecture.
    """

    model_type = "latent_rvq"
    config_class = LatentRVQConfig
    statistics_dim = -1  # one mean / std per feature dimension

    mean: torch.Tensor  # buffer (input_dim,)
    std: torch.Tensor  # buffer (input_dim,)

    def __init__(self, config: LatentRVQConfig | None = None) -> None:
        super().__init__()
        self.config = config or LatentRVQConfig()
        self.register_buffer("mean", torch.zeros(self.config.input_dim))
        self.register_buffer("std", torch.ones(self.config.input_dim))
        self.rvq = ResidualVectorQuantizer(self.config.rvq_config())

    def raw_frames(self, features: torch.Tensor, lengths: torch.Tensor | None = None) -> Features:
        """The features themselves, with padded frames zeroed."""
        lengths = full_lengths(features, lengths)
        mask = lengths_to_mask(lengths, features.shape[1]).unsqueeze(-1)
        return Features(values=features * mask, lengths=lengths)

    def normalise(self, values: torch.Tensor) -> torch.Tensor:
        return (values - self.mean) / self.std

    def set_statistics(self, mean: torch.Tensor | float, std: torch.Tensor | float) -> None:
        self.mean.copy_(torch.as_tensor(mean, dtype=self.mean.dtype))
        self.std.copy_(torch.as_tensor(std, dtype=self.std.dtype).clamp_min(1e-5))

    def featurize(self, features: torch.Tensor, lengths: torch.Tensor | None = None) -> Features:
        """Standardised features (batch, frames, input_dim), zero at padded frames."""
        raw = self.raw_frames(features, lengths)
        mask = lengths_to_mask(raw.lengths, features.shape[1]).unsqueeze(-1)
        return Features(values=self.normalise(raw.values) * mask, lengths=raw.lengths)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor | None = None) -> QuantizerOutput:
        feats = self.featurize(features, lengths)
        return self.rvq(feats.values, feats.lengths)

    @torch.no_grad()
    def tokenize_features(
        self, features: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> TokenizerOutput:
        """Codes (batch, num_codebooks, frames) of features (batch, frames, input_dim)."""
        feats = self.featurize(features, lengths)
        codes = self.rvq.encode(feats.values, None if lengths is None else feats.lengths)
        return TokenizerOutput(codes=codes, lengths=feats.lengths)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Features (batch, frames, input_dim) in the original scale from codes (batch, n, frames)."""
        valid = (codes >= 0).all(dim=1).unsqueeze(-1)
        return (self.rvq.decode(codes) * self.std + self.mean) * valid
