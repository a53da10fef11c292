"""k-means on MFCC or mel features: HuBERT's first-iteration targets, as a baseline tokenizer.

Features are computed at the mel rate (100 Hz), ``stack`` frames are concatenated to reach the
token rate (25 Hz), each dimension is standardised with corpus statistics, and every frame is
assigned to its nearest centroid (Euclidean). MFCCs are the orthonormal DCT-II of the dB mel
(torchaudio's ``MFCC`` without ``top_db``), with first and second deltas (window 5) computed inside
each item, so padding never leaks into them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from muqkit.audio.mel import MelConfig, WithMel
from muqkit.audio.tensors import lengths_to_mask
from muqkit.configs import check_choice, check_int
from muqkit.tokenizer.base import (
    IGNORE_CODE,
    AudioTokenizer,
    Features,
    StackedMel,
    TokenizerOutput,
    full_lengths,
    register_tokenizer,
)
from muqkit.tokenizer.kmeans import kmeans, nearest

FEATURE_KINDS = ("mfcc", "mel")


@dataclass(frozen=True)
class KMeansConfig(WithMel):
    """k-means tokenizer settings.

    Attributes:
        mel, stack: mel frontend and mel frames per token (as :class:`MelRVQConfig`).
        feature: ``"mfcc"`` (n_mfcc coefficients, with deltas) or ``"mel"`` (dB mel bands).
        n_mfcc: cepstral coefficients kept.
        deltas: append first and second deltas to the MFCCs.
        codebook_size: number of clusters.
    """

    mel: MelConfig = field(default_factory=MelConfig)
    stack: int = 4
    feature: str = "mfcc"
    n_mfcc: int = 13
    deltas: bool = True
    codebook_size: int = 500

    def __post_init__(self) -> None:
        self.check_mel()
        check_choice(self, "feature", FEATURE_KINDS)
        check_int(self, "stack", "codebook_size")
        if not isinstance(self.n_mfcc, int) or not 1 <= self.n_mfcc <= self.n_mels:
            raise ValueError(f"KMeansConfig.n_mfcc must lie in [1, n_mels={self.n_mels}], got {self.n_mfcc!r}")
        if not isinstance(self.deltas, bool):
            raise ValueError(f"KMeansConfig.deltas must be true or false, got {self.deltas!r}")

    @property
    def num_codebooks(self) -> int:
        return 1

    @property
    def frame_dim(self) -> int:
        """Features per mel frame."""
        if self.feature == "mel":
            return self.n_mels
        return self.n_mfcc * (3 if self.deltas else 1)

    @property
    def dim(self) -> int:
        """Features per token frame."""
        return self.frame_dim * self.stack


def dct_matrix(n_mfcc: int, n_mels: int) -> torch.Tensor:
    """Orthonormal DCT-II basis (n_mels, n_mfcc), as torchaudio's ``create_dct(norm='ortho')``."""
    n = torch.arange(n_mels, dtype=torch.float64)
    k = torch.arange(n_mfcc, dtype=torch.float64).unsqueeze(1)
    dct = torch.cos(math.pi / n_mels * (n + 0.5) * k)  # (n_mfcc, n_mels)
    dct[0] *= 1.0 / math.sqrt(2.0)
    dct *= math.sqrt(2.0 / n_mels)
    return dct.T.float()


def item_deltas(x: torch.Tensor, lengths: torch.Tensor, *, width: int = 2) -> torch.Tensor:
    """Regression deltas of x (batch, frames, dim) along time, edges replicated inside each item."""
    frames = x.shape[1]
    t = torch.arange(frames, device=x.device).unsqueeze(0)  # (1, T)
    last = (lengths - 1).clamp_min(0).unsqueeze(1)  # (B, 1)
    out = torch.zeros_like(x)
    for n in range(1, width + 1):
        ahead = torch.minimum(t + n, last).clamp_min(0)
        behind = torch.minimum((t - n).clamp_min(0), last)
        gather = lambda idx: torch.gather(x, 1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1]))  # noqa: E731
        out = out + n * (gather(ahead) - gather(behind))
    return out / (2 * sum(n * n for n in range(1, width + 1)))


@register_tokenizer
class KMeansTokenizer(AudioTokenizer):
    """k-means clusters of standardised stacked MFCC or mel frames. Fit with :meth:`fit`.

    Args:
        config: settings.
    """

    model_type = "kmeans"
    config_class = KMeansConfig
    statistics_dim = -1  # per-dimension statistics, computed by :meth:`fit`

    dct: torch.Tensor  # buffer (n_mfcc, n_mels)
    mean: torch.Tensor  # buffer (dim,)
    std: torch.Tensor  # buffer (dim,)
    centroids: torch.Tensor  # buffer (codebook_size, dim)

    def __init__(self, config: KMeansConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or KMeansConfig()
        self.features = StackedMel.from_config(c)
        self.register_buffer("dct", dct_matrix(c.n_mfcc, c.n_mels), persistent=False)
        self.register_buffer("mean", torch.zeros(c.dim))
        self.register_buffer("std", torch.ones(c.dim))
        self.register_buffer("centroids", torch.zeros(c.codebook_size, c.dim))

    def num_frames(self, num_samples: torch.Tensor) -> torch.Tensor:
        return self.features.num_frames(torch.as_tensor(num_samples))

    def raw_frames(self, wavs: torch.Tensor, lengths: torch.Tensor | None = None) -> Features:
        """Stacked features before standardisation (batch, frames, dim)."""
        mel = self.features.log_mel(wavs, None if lengths is None else full_lengths(wavs, lengths))
        values = mel.values  # (B, Tm, n_mels) dB
        if self.config.feature == "mfcc":
            values = values @ self.dct  # (B, Tm, n_mfcc)
            if self.config.deltas:
                d1 = item_deltas(values, mel.lengths)
                values = torch.cat([values, d1, item_deltas(d1, mel.lengths)], dim=-1)
            values = values * lengths_to_mask(mel.lengths, values.shape[1]).unsqueeze(-1)
        return self.features.stack_frames(Features(values=values, lengths=mel.lengths), normalise=False)

    @torch.no_grad()
    def fit(self, frames: torch.Tensor, *, iters: int = 30, seed: int = 0) -> float:
        """Standardise and cluster raw frames (points, dim); returns the k-means inertia."""
        self.mean.copy_(frames.mean(0))
        self.std.copy_(frames.std(0).clamp_min(1e-5))
        generator = torch.Generator().manual_seed(seed)
        result = kmeans(
            (frames - self.mean) / self.std, self.config.codebook_size, iters=iters, generator=generator
        )
        self.centroids.copy_(result.centroids)
        return result.inertia

    @torch.no_grad()
    def tokenize(self, wavs: torch.Tensor, lengths: torch.Tensor | None = None) -> TokenizerOutput:
        feats = self.raw_frames(wavs, lengths)
        batch, frames, dim = feats.values.shape
        idx, _ = nearest(((feats.values - self.mean) / self.std).reshape(-1, dim), self.centroids)
        codes = idx.reshape(batch, 1, frames)
        mask = lengths_to_mask(feats.lengths, frames).unsqueeze(1)
        return TokenizerOutput(codes=codes.masked_fill(~mask, IGNORE_CODE), lengths=feats.lengths)
