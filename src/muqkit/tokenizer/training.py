"""The RVQ training objective as a plain module (no Lightning): Mel-RVQ and latent RVQ alike.

Loss (official): ``0.25 * commitment + codebook + L1(x, quantized)``, with x the normalised frames
(stacked mel or standardised latents) and every term averaged over valid frames only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch
from torch import nn

from muqkit.audio.tensors import lengths_to_mask
from muqkit.tokenizer.base import Features
from muqkit.tokenizer.quantizer import QuantizerOutput

if TYPE_CHECKING:
    from muqkit.tokenizer.latent import LatentRVQ
    from muqkit.tokenizer.mel_rvq import MelRVQ


def masked_l1(x: torch.Tensor, y: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Mean |x - y| over valid frames and features of (batch, frames, dim) tensors."""
    if bool((lengths == x.shape[1]).all()):
        return (x - y).abs().mean()
    mask = lengths_to_mask(lengths, x.shape[1]).unsqueeze(-1)
    count = (lengths.sum() * x.shape[-1]).clamp_min(1)
    return ((x - y).abs() * mask).sum() / count


class RVQTrainingTask(nn.Module):
    """Training step of a residual-VQ tokenizer on batches ``{"inputs" | "frames", "lengths"}``.

    Args:
        model: a :class:`~muqkit.tokenizer.MelRVQ` (inputs: audio (batch, samples)) or a
            :class:`~muqkit.tokenizer.latent.LatentRVQ` (inputs: features (batch, frames, dim)).
        commitment_weight, codebook_weight, reconstruction_weight: loss weights.
        weight_norm: train the projections weight-normed, as the official Mel-RVQ does (the
            model's projections are parametrized as ``g * v / ||v||``; see
            :meth:`~muqkit.tokenizer.quantizer.ResidualVectorQuantizer.set_weight_norm`).
    """

    def __init__(
        self,
        model: MelRVQ | LatentRVQ,
        *,
        commitment_weight: float = 0.25,
        codebook_weight: float = 1.0,
        reconstruction_weight: float = 1.0,
        weight_norm: bool = True,
    ) -> None:
        super().__init__()
        model.rvq.set_weight_norm(weight_norm)
        self.model = model
        self.commitment_weight = commitment_weight
        self.codebook_weight = codebook_weight
        self.reconstruction_weight = reconstruction_weight

    def features(self, batch: Mapping[str, torch.Tensor]) -> Features:
        """Normalised frames of a batch: from ``inputs`` (audio or features), ``audio`` crops, or raw ``frames``
        (cached by the statistics pass, or feature crops)."""
        if "frames" in batch:  # raw frames cached by the statistics pass: normalise only
            frames, lengths = batch["frames"], batch["lengths"]
            values = self.model.normalise(frames)
            if not bool((lengths == frames.shape[1]).all()):
                values = values * lengths_to_mask(lengths, frames.shape[1]).unsqueeze(-1)
            return Features(values=values, lengths=lengths)
        inputs = batch["inputs"] if "inputs" in batch else batch["audio"]
        return self.model.featurize(inputs, batch.get("lengths"))

    def _step(self, batch: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], QuantizerOutput]:
        return self.objective(self.features(batch))

    def objective(self, feats: Features) -> tuple[dict[str, torch.Tensor], QuantizerOutput]:
        """Losses and metrics (``loss`` is optimised) of normalised frames, and the quantizer's output."""
        out = self.model.rvq(feats.values, feats.lengths)
        recon = masked_l1(feats.values, out.quantized, feats.lengths)
        loss = (
            self.commitment_weight * out.commitment_loss
            + self.codebook_weight * out.codebook_loss
            + self.reconstruction_weight * recon
        )
        size = self.model.rvq.config.codebook_size
        with torch.no_grad():  # codes used in the batch, per stage (padding, negative, goes to bin 0)
            shifted = out.codes.clamp_min(-1) + 1  # (B, N, T)
            counts = torch.stack([torch.bincount(c.flatten(), minlength=size + 1)[1:] for c in shifted.unbind(1)])
        used = (counts > 0).float().mean(dim=1).tolist()
        metrics = {
            "loss": loss,
            "commitment_loss": out.commitment_loss.detach(),
            "codebook_loss": out.codebook_loss.detach(),
            "reconstruction_l1": recon.detach(),
            "batch_code_usage": torch.tensor(sum(used) / len(used)),
            "replaced_codes": out.replaced_codes.sum().float(),
        }
        return metrics, out

    def training_step(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Losses (``loss`` is optimised) and metrics of one batch."""
        return self._step(batch)[0]

    @torch.no_grad()
    def validation_step(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        metrics, _ = self._step(batch)
        metrics.pop("replaced_codes")
        return metrics
