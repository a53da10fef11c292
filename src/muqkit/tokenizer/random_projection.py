"""Random-projection quantizer (BEST-RQ / MusicFM): the untrained baseline tokenizer.

A frozen Xavier-normal projection of the normalised stacked mel into ``codebook_dim``, then the
nearest entry of a frozen standard-normal codebook by cosine similarity. Each codebook ``i`` draws
its projection and codebook from a private generator seeded ``seed + i`` (no global RNG side
effect), in the order the official module draws them, so ``seed=142`` reproduces the official
``RandomProjectionQuantizer(512, 16, codebook_size, seed=142)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from muqkit.audio.mel import MelConfig, WithMel
from muqkit.audio.tensors import lengths_to_mask
from muqkit.configs import check_int
from muqkit.tokenizer.base import (
    IGNORE_CODE,
    AudioTokenizer,
    Features,
    StackedMel,
    TokenizerOutput,
    full_lengths,
    register_tokenizer,
)


@dataclass(frozen=True)
class RandomProjectionConfig(WithMel):
    """Random-projection tokenizer settings.

    Attributes:
        mel, stack: mel features and mel frames per token (as :class:`MelRVQConfig`).
        num_codebooks: independent projections (seeds ``seed .. seed + num_codebooks - 1``).
        codebook_size: codes per codebook.
        codebook_dim: size of the projected space.
        seed: seed of the first codebook.
    """

    mel: MelConfig = field(default_factory=MelConfig)
    stack: int = 4
    num_codebooks: int = 1
    codebook_size: int = 4096
    codebook_dim: int = 16
    seed: int = 142

    def __post_init__(self) -> None:
        self.check_mel()
        check_int(self, "stack", "num_codebooks", "codebook_size", "codebook_dim")
        check_int(self, "seed", minimum=0)


class RandomProjectionQuantizer(nn.Module):
    """Frozen random projection + frozen random codebook with cosine lookup.

    Args:
        input_dim: size of the input vectors.
        codebook_dim: size of the projected space.
        codebook_size: number of codes.
        seed: seed of the private generator.
    """

    projection: torch.Tensor  # buffer (D, d)
    codebook: torch.Tensor  # buffer (K, d)

    def __init__(self, input_dim: int, codebook_dim: int, codebook_size: int, *, seed: int) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        projection = nn.init.xavier_normal_(torch.empty(input_dim, codebook_dim), generator=generator)
        codebook = nn.init.normal_(torch.empty(codebook_size, codebook_dim), generator=generator)
        self.register_buffer("projection", projection)  # (D, d)
        self.register_buffer("codebook", codebook)  # (K, d)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Codes (...,) of x (..., input_dim)."""
        return ((x @ self.projection) @ F.normalize(self.codebook, dim=-1).T).argmax(dim=-1)


@register_tokenizer
class RandomProjectionTokenizer(AudioTokenizer):
    """Stacked normalised mel + ``num_codebooks`` random-projection quantizers.

    Args:
        config: settings.
        mean, std: scalar statistics of the dB mel (set them from data with :meth:`set_statistics`).
    """

    model_type = "random_projection"
    config_class = RandomProjectionConfig
    statistics_dim = None

    def __init__(self, config: RandomProjectionConfig | None = None, *, mean: float = 0.0, std: float = 1.0):
        super().__init__()
        self.config = c = config or RandomProjectionConfig()
        self.features = StackedMel.from_config(c, mean=mean, std=std)
        self.quantizers = nn.ModuleList(
            RandomProjectionQuantizer(c.n_mels * c.stack, c.codebook_dim, c.codebook_size, seed=c.seed + i)
            for i in range(c.num_codebooks)
        )

    def num_frames(self, num_samples: torch.Tensor) -> torch.Tensor:
        return self.features.num_frames(torch.as_tensor(num_samples))

    def raw_frames(self, wavs: torch.Tensor, lengths: torch.Tensor | None = None) -> Features:
        """Stacked dB mel before normalisation (for the statistics pass)."""
        return self.features(wavs, None if lengths is None else full_lengths(wavs, lengths), normalise=False)

    def set_statistics(self, mean: torch.Tensor | float, std: torch.Tensor | float) -> None:
        self.features.set_statistics(float(mean), float(std))

    @torch.no_grad()
    def tokenize(self, wavs: torch.Tensor, lengths: torch.Tensor | None = None) -> TokenizerOutput:
        feats = self.features(wavs, None if lengths is None else full_lengths(wavs, lengths))
        codes = torch.stack([q(feats.values) for q in self.quantizers], dim=1)  # (B, N, T)
        mask = lengths_to_mask(feats.lengths, codes.shape[-1]).unsqueeze(1)
        return TokenizerOutput(codes=codes.masked_fill(~mask, IGNORE_CODE), lengths=feats.lengths)
