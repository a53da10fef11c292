"""MuQ pretraining: masked prediction of discrete targets, kept apart from the inference model.

Reads top to bottom::

    wavs (B, samples), lengths (B,)
      -> targets.encode(clean wavs)          codes (B, num_codebooks, Tc)   Mel-RVQ, random projection,
                                                                            k-means, latent RVQ, or given
      -> draw_span_mask                      400 ms spans, p = 0.6, inside each item's valid samples
      -> noise the masked samples            N(0, 0.1)
      -> MuQ.frontend -> MuQ.embed_mel       last hidden state (B, T, dim)
      -> CodebookHeads on masked frames      logits (M, num_codebooks, codebook_size)
      -> cross-entropy per codebook          mean over masked frames, then over codebooks
      (+ optional MSE of the clean normalised stacked mel on masked frames)

Targets always come from the unmasked audio. Padded frames are never targets: they are never
masked, and their codes hold :data:`muqkit.tokenizer.IGNORE_CODE`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn

from muqkit.ssl.heads import CodebookHeads, MelReconstructionHead
from muqkit.ssl.masking import MaskingConfig, apply_noise, draw_span_mask
from muqkit.ssl.muq import MuQ
from muqkit.tokenizer.base import IGNORE_CODE


@runtime_checkable
class TargetTokenizer(Protocol):
    """What the objective needs from a target source (every :class:`muqkit.tokenizer.AudioTokenizer`)."""

    num_codebooks: int
    codebook_size: int

    def encode(self, wavs: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor: ...


@dataclass(frozen=True)
class PretrainConfig:
    """The masked-token objective (the architecture is the wrapped :class:`MuQ`'s config).

    Attributes:
        num_codebooks: target codebooks (one head each).
        codebook_size: codes per codebook.
        masking: span masking.
        recon_weight: weight of the mel-reconstruction MSE (0: no reconstruction head).
        codebook_weights: one non-negative weight per codebook: the loss is the weighted mean of the
            codebooks' cross-entropies (``None``: the plain mean, as the official code computes it).
    """

    num_codebooks: int = 8
    codebook_size: int = 1024
    masking: MaskingConfig = MaskingConfig()
    recon_weight: float = 0.0
    codebook_weights: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.num_codebooks < 1 or self.codebook_size < 2:
            raise ValueError(
                f"PretrainConfig needs num_codebooks >= 1 and codebook_size >= 2, got "
                f"{self.num_codebooks} and {self.codebook_size}"
            )
        if self.recon_weight < 0:
            raise ValueError(f"PretrainConfig.recon_weight must be >= 0, got {self.recon_weight}")
        if isinstance(self.masking, dict):  # from JSON / YAML
            object.__setattr__(self, "masking", MaskingConfig(**self.masking))
        if self.codebook_weights is not None:
            weights = tuple(float(w) for w in self.codebook_weights)
            if len(weights) != self.num_codebooks or min(weights) < 0 or sum(weights) <= 0:
                raise ValueError(
                    f"PretrainConfig.codebook_weights needs {self.num_codebooks} non-negative weights (one per "
                    f"codebook) with a positive sum, got {list(weights)}"
                )
            object.__setattr__(self, "codebook_weights", weights)


@dataclass(frozen=True)
class PretrainOutput:
    """Result of one :class:`MuQPretrainer` forward pass.

    Attributes:
        loss: scalar to optimise (cross-entropy, weighted by ``codebook_weights`` when set, +
            ``recon_weight`` * reconstruction).
        ce_loss: mean cross-entropy over codebooks (unweighted).
        codebook_losses: (num_codebooks,) cross-entropy of each codebook on masked frames.
        codebook_accuracies: (num_codebooks,) top-1 accuracy of each codebook on masked frames.
        codebook_majority: (num_codebooks,) share of the masked frames whose target is the batch's
            commonest code of that codebook: the accuracy of always predicting it, to read an accuracy
            against.
        num_masked: number of masked target frames in the batch (scalar long).
        mask: (batch, frames) bool, the masked target frames.
        lengths: (batch,) valid target frames.
        recon_loss: reconstruction MSE on masked frames, or ``None`` without a reconstruction head.
        hidden_states: the encoder's hidden states of the masked input, when requested.
    """

    loss: torch.Tensor
    ce_loss: torch.Tensor
    codebook_losses: torch.Tensor
    codebook_accuracies: torch.Tensor
    codebook_majority: torch.Tensor
    num_masked: torch.Tensor
    mask: torch.Tensor
    lengths: torch.Tensor
    recon_loss: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None

    def metrics(self) -> dict[str, torch.Tensor]:
        """Scalars for logging: loss, ce, acc (mean), per-codebook ce_i / acc_i / majority_i, recon."""
        out = {
            "loss": self.loss,
            "ce": self.ce_loss.detach(),
            "acc": self.codebook_accuracies.mean(),
            "masked_frames": self.num_masked.float(),
        }
        per_codebook = zip(self.codebook_losses, self.codebook_accuracies, self.codebook_majority, strict=True)
        for i, (ce, acc, majority) in enumerate(per_codebook):
            out[f"ce_{i}"] = ce.detach()
            out[f"acc_{i}"] = acc
            out[f"majority_{i}"] = majority
        if self.recon_loss is not None:
            out["recon"] = self.recon_loss.detach()
        return out


def code_histograms(targets: torch.Tensor, codebook_size: int) -> torch.Tensor:
    """(N, codebook_size) counts of each code in each column of ``targets`` (M, N); ignored codes (below
    0) are not counted."""
    columns = targets.shape[1]
    valid = targets >= 0
    offsets = torch.arange(columns, device=targets.device) * codebook_size  # one histogram per column
    flat = (targets.clamp_min(0) + offsets)[valid]
    return torch.bincount(flat, minlength=columns * codebook_size).view(columns, codebook_size)


def majority_share(targets: torch.Tensor, codebook_size: int) -> torch.Tensor:
    """(N,) share of the rows of ``targets`` (M, N) whose code is the commonest of its column (ignored
    codes, below 0, count in the denominator as they do in the accuracy); zeros when M is 0."""
    if targets.shape[0] == 0:
        return torch.zeros(targets.shape[1], device=targets.device)
    return code_histograms(targets, codebook_size).max(-1).values.float() / targets.shape[0]


class LatentTargets(nn.Module):
    """Targets of an iteration: a trained MuQ's hidden state at ``layer``, quantized by a latent RVQ.

    Args:
        model: the previous iteration's encoder (frozen, eval mode).
        layer: hidden-state index (0: conv output, ``i``: output of Conformer layer ``i``).
        rvq: a :class:`muqkit.tokenizer.LatentRVQ` trained on that layer's features.
    """

    def __init__(self, model: MuQ, layer: int, rvq: nn.Module) -> None:
        super().__init__()
        if not 0 <= layer <= model.config.encoder_depth:
            raise ValueError(f"layer must lie in [0, {model.config.encoder_depth}], got {layer}")
        latent: Any = rvq  # a LatentRVQ
        if latent.config.input_dim != model.config.encoder_dim:
            raise ValueError(
                f"latent RVQ input_dim {latent.config.input_dim} != encoder_dim {model.config.encoder_dim}"
            )
        self.model = model.eval().requires_grad_(False)
        self.layer = layer
        self.rvq: Any = rvq.eval().requires_grad_(False)  # a LatentRVQ (duck-typed: num_codebooks, encode)

    @property
    def num_codebooks(self) -> int:
        return int(self.rvq.config.num_codebooks)

    @property
    def codebook_size(self) -> int:
        return int(self.rvq.config.codebook_size)

    @property
    def frame_rate(self) -> float:
        return self.model.config.frame_rate

    def train(self, mode: bool = True) -> LatentTargets:  # always frozen
        return super().train(False)

    @torch.no_grad()
    def latents(self, wavs: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(batch, frames, dim) hidden state at ``layer`` and (batch,) frame lengths."""
        out = self.model(wavs, lengths=lengths, num_layers=self.layer, output_hidden_states=False)
        return out.last_hidden_state.float(), out.lengths

    @torch.no_grad()
    def encode(self, wavs: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Codes (batch, num_codebooks, frames); :data:`IGNORE_CODE` past each item's frames."""
        feats, frames = self.latents(wavs, lengths)
        return self.rvq.tokenize_features(feats, frames).codes  # type: ignore[operator]


class MuQPretrainer(nn.Module):
    """Masked-token pretraining around a :class:`MuQ` encoder.

    Args:
        model: the encoder being trained (``self.model``; save it with its head as an official checkpoint
            with :func:`muqkit.hub.loaders.save_pretrainer`).
        config: objective settings; ``num_codebooks`` / ``codebook_size`` must match the targets.
        targets: a frozen target tokenizer (any :class:`TargetTokenizer`), or ``None`` when every
            batch brings its codes (labels pre-extracted to disk).

    Example:
        >>> from muqkit.tokenizer import MelRVQ, MelRVQConfig
        >>> tok = MelRVQ(MelRVQConfig(num_codebooks=2, codebook_size=32))
        >>> pre = MuQPretrainer(MuQ.from_preset("tiny"), PretrainConfig(num_codebooks=2, codebook_size=32), tok)
        >>> out = pre(torch.randn(2, 48000))
        >>> out.codebook_losses.shape
        torch.Size([2])
    """

    def __init__(self, model: MuQ, config: PretrainConfig, targets: Any = None) -> None:
        super().__init__()
        self.model = model
        self.config = config
        if targets is not None:
            n, k = int(targets.num_codebooks), int(targets.codebook_size)
            if (n, k) != (config.num_codebooks, config.codebook_size):
                raise ValueError(
                    f"targets have {n} codebooks of {k} codes; PretrainConfig says "
                    f"{config.num_codebooks} x {config.codebook_size}"
                )
            rate = getattr(targets, "frame_rate", None)
            if rate is not None and abs(float(rate) - model.config.frame_rate) > 1e-6:
                raise ValueError(f"targets run at {rate} Hz, the model at {model.config.frame_rate} Hz")
            targets.eval().requires_grad_(False)
        self.targets: Any = targets  # a TargetTokenizer module, or None
        self.heads = CodebookHeads(model.config.encoder_dim, config.num_codebooks, config.codebook_size)
        c = model.config
        self.recon = (
            MelReconstructionHead(c.encoder_dim, c.n_mels * c.stack_factor) if config.recon_weight > 0 else None
        )

    def train(self, mode: bool = True) -> MuQPretrainer:
        super().train(mode)
        if self.targets is not None:
            self.targets.eval()  # frozen targets never train (BatchNorm, dropout)
        return self

    @property
    def frame_samples(self) -> int:
        """Samples per target frame (960 at 24 kHz / 25 Hz)."""
        return self.model.min_samples

    @torch.no_grad()
    def encode_targets(self, wavs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Codes (batch, num_codebooks, frames) of the clean audio, in float32 (float64 when both the
        audio and the target tokenizer are float64)."""
        if self.targets is None:
            raise ValueError("this pretrainer has no target tokenizer: pass codes= with each batch")
        weight = next(self.targets.parameters(), None)
        wide = wavs.dtype == torch.float64 and weight is not None and weight.dtype == torch.float64
        with torch.autocast(wavs.device.type, enabled=False):
            return self.targets.encode(wavs if wide else wavs.float(), lengths).long()

    def forward(
        self,
        wavs: torch.Tensor,
        lengths: torch.Tensor | None = None,
        *,
        codes: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        spans: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
        output_hidden_states: bool = False,
    ) -> PretrainOutput:
        """One masked-prediction step.

        Args:
            wavs: (batch, samples) clean audio at the model's sample rate.
            lengths: (batch,) valid samples; ``None``: every item fills the batch.
            codes: (batch, num_codebooks, frames) targets of the clean audio (pre-extracted labels);
                ``None`` computes them with ``targets``. Negative codes are ignored.
            generator: random source of the mask and the noise (``None``: torch's global one).
            spans: (batch, spans) bool masked 400 ms spans to use instead of drawing them.
            noise: (batch, samples) the values written into the masked samples instead of drawn
                N(0, ``noise_std``) noise (unmasked samples are ignored). With ``spans``, a step
                is fully determined: the way to replay a step of another implementation.
            output_hidden_states: also return every hidden state.

        Returns:
            PretrainOutput.
        """
        batch, num_samples = wavs.shape
        if lengths is None:
            lengths = torch.full((batch,), num_samples, dtype=torch.long, device=wavs.device)
        lengths = lengths.to(wavs.device).long()
        if codes is None:
            codes = self.encode_targets(wavs, lengths)  # (B, N, Tc), from the unmasked audio
        codes = codes.to(wavs.device).long()
        if codes.shape[:2] != (batch, self.config.num_codebooks):
            raise ValueError(f"codes must be ({batch}, {self.config.num_codebooks}, frames), got {tuple(codes.shape)}")
        code_frames = codes.shape[2]
        frame_lengths = (codes[:, 0] >= 0).sum(-1)  # (B,)

        mc = self.model.config
        mask = draw_span_mask(
            lengths, num_samples=num_samples, num_frames=code_frames, frame_lengths=frame_lengths,
            config=self.config.masking, frame_samples=self.frame_samples, sample_rate=mc.sample_rate,
            generator=generator, spans=spans,
        )  # fmt: skip
        sample_mask = mask.samples(num_samples, lengths)  # (B, samples)
        if noise is None:
            noisy = apply_noise(wavs, sample_mask, noise_std=self.config.masking.noise_std, generator=generator)
        elif noise.shape != wavs.shape:
            raise ValueError(f"noise must have the shape of wavs {tuple(wavs.shape)}, got {tuple(noise.shape)}")
        else:
            noisy = torch.where(sample_mask, noise.to(wavs.device, wavs.dtype), wavs)

        with torch.autocast(wavs.device.type, enabled=False):
            mel = self.model.frontend(noisy, lengths)  # (B, n_mels, Tm), normalised; fp32 (fp64 for fp64)
        states, out_lengths = self.model.embed_mel(mel.mel, mel.lengths)
        x = states[-1]  # (B, T, dim)
        frames = min(x.shape[1], code_frames)
        valid = torch.arange(frames, device=x.device).unsqueeze(0) < out_lengths.unsqueeze(1)
        select = mask.frames[:, :frames] & (codes[:, 0, :frames] >= 0) & valid  # (B, T)
        hidden = x[:, :frames][select]  # (M, dim): heads run on masked frames only
        targets = codes[:, :, :frames].transpose(1, 2)[select]  # (M, N)
        logits = self.heads(hidden)  # (M, N, K)
        if logits.dtype in (torch.float16, torch.bfloat16):
            logits = logits.float()  # the cross-entropy in float32 (float64 stays float64)
        count = targets.shape[0]
        ce = F.cross_entropy(
            logits.reshape(-1, self.config.codebook_size), targets.reshape(-1), reduction="none",
            ignore_index=IGNORE_CODE,
        ).view(count, self.config.num_codebooks)  # fmt: skip
        denom = max(count, 1)
        codebook_losses = ce.sum(0) / denom  # (N,)
        with torch.no_grad():
            accuracies = (logits.argmax(-1) == targets).float().sum(0) / denom
            majority = majority_share(targets, self.config.codebook_size)
        ce_loss = codebook_losses.mean()
        loss = ce_loss
        if self.config.codebook_weights is not None:
            weights = codebook_losses.new_tensor(self.config.codebook_weights)
            loss = (weights * codebook_losses).sum() / weights.sum()

        recon_loss = None
        if self.recon is not None:
            with torch.no_grad(), torch.autocast(wavs.device.type, enabled=False):
                clean = self.model.frontend(wavs, lengths).mel  # (B, n_mels, Tm)
                s = mc.stack_factor
                t = min(frames, clean.shape[2] // s)
                clean = clean[:, :, : t * s].transpose(1, 2).reshape(batch, t, s * mc.n_mels)  # (B, t, s*F)
            sel = select[:, :t]
            pred = self.recon(x[:, :t][sel]).float()
            recon_loss = (pred - clean[sel]).square().mean(-1).sum() / max(int(sel.sum()), 1)
            loss = loss + self.config.recon_weight * recon_loss

        return PretrainOutput(
            loss=loss,
            ce_loss=ce_loss,
            codebook_losses=codebook_losses,
            codebook_accuracies=accuracies,
            codebook_majority=majority,
            num_masked=torch.as_tensor(count, device=x.device),
            mask=mask.frames,
            lengths=frame_lengths,
            recon_loss=recon_loss,
            hidden_states=tuple(states) if output_hidden_states else None,
        )


__all__ = [
    "LatentTargets", "MuQPretrainer", "PretrainConfig", "PretrainOutput", "TargetTokenizer", "code_histograms",
    "majority_share",
]
