"""Residual vector quantization with factorised, cosine-lookup codebooks (the Mel-RVQ core).

Per stage: a linear projection of the residual into a small space (``codebook_dim``), the nearest
code by cosine similarity, straight-through gradients, commitment and codebook losses, and a
linear projection back; the next stage quantizes what is left in the input space. Codes that no
frame picked for ``stale_tolerance`` consecutive training steps are replaced by (L2-normalised)
projected inputs of the current batch, as the official implementation does.

Everything works on (batch, frames, dim) with ``lengths``: only valid frames are gathered, so
padding never reaches codebooks, usage counters or losses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm as _weight_norm

from muqkit.audio.tensors import lengths_to_mask
from muqkit.tokenizer.base import IGNORE_CODE, full_lengths
from muqkit.tokenizer.kmeans import kmeans, nearest


@dataclass(frozen=True)
class RVQConfig:
    """Architecture of a residual vector quantizer.

    Attributes:
        input_dim: size of the vectors to quantize (512 for 4 stacked 128-band mel frames).
        num_codebooks: number of residual stages.
        codebook_size: codes per stage.
        codebook_dim: size of the projected space where codes are looked up.
        stale_tolerance: training steps a code may stay unused before it is replaced with an input
            of the batch; 0 disables replacement.
    """

    input_dim: int = 512
    num_codebooks: int = 8
    codebook_size: int = 1024
    codebook_dim: int = 16
    stale_tolerance: int = 100

    def __post_init__(self) -> None:
        for name in ("input_dim", "num_codebooks", "codebook_size", "codebook_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"RVQConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.stale_tolerance < 0:
            raise ValueError(
                f"RVQConfig.stale_tolerance must be >= 0 (0 disables), got {self.stale_tolerance}"
            )


@dataclass(frozen=True)
class QuantizerOutput:
    """Result of a residual quantizer's forward pass.

    Attributes:
        quantized: (batch, frames, input_dim) sum of the stages' outputs, with straight-through
            gradients to the projections; zero at padded frames.
        codes: (batch, num_codebooks, frames) long; :data:`IGNORE_CODE` at padded frames.
        latents: (batch, frames, num_codebooks * codebook_dim) projected inputs of every stage.
        lengths: (batch,) valid frames.
        commitment_loss: scalar, summed over stages, mean over valid frames and dimensions.
        codebook_loss: scalar, same reduction.
        replaced_codes: (num_codebooks,) codes replaced in this step (zeros in eval mode).
    """

    quantized: torch.Tensor
    codes: torch.Tensor
    latents: torch.Tensor
    lengths: torch.Tensor
    commitment_loss: torch.Tensor
    codebook_loss: torch.Tensor
    replaced_codes: torch.Tensor


@dataclass(frozen=True)
class StageOutput:
    """One stage on flattened valid frames: projections (points, *) and per-stage losses."""

    output: torch.Tensor  # (points, input_dim): out_proj of the (straight-through) code
    codes: torch.Tensor  # (points,)
    latents: torch.Tensor  # (points, codebook_dim)
    commitment_loss: torch.Tensor
    codebook_loss: torch.Tensor
    replaced: int


@dataclass(frozen=True)
class InferenceTables:
    """One stage's eval-mode tables: latents = residual @ in_weight + in_bias, codes by
    argmax(latents @ codebook), and the stage's output as the row ``decoded[code]``."""

    in_weight: torch.Tensor  # (input_dim, codebook_dim)
    in_bias: torch.Tensor  # (codebook_dim,)
    codebook: torch.Tensor  # (codebook_dim, codebook_size), L2-normalised codes as columns
    decoded: torch.Tensor  # (codebook_size, input_dim) = out_proj(codebook)


class VectorQuantizer(nn.Module):
    """One factorised VQ stage with cosine lookup.

    Args:
        input_dim: size of the vectors to quantize.
        codebook_size: number of codes.
        codebook_dim: size of the lookup space.
        stale_tolerance: steps before an unused code is replaced (0: never).
    """

    stale_steps: torch.Tensor  # buffer (codebook_size,), long

    def __init__(self, input_dim: int, codebook_size: int, codebook_dim: int, *, stale_tolerance: int = 100):
        super().__init__()
        self.stale_tolerance = stale_tolerance
        self.in_proj = nn.Linear(input_dim, codebook_dim)
        self.out_proj = nn.Linear(codebook_dim, input_dim)
        self.codebook = nn.Parameter(torch.randn(codebook_size, codebook_dim))
        # Consecutive training steps without use, per code.
        self.register_buffer("stale_steps", torch.zeros(codebook_size, dtype=torch.long))

    @property
    def codebook_size(self) -> int:
        return self.codebook.shape[0]

    def lookup(self, latents: torch.Tensor) -> torch.Tensor:
        """Index (points,) of the code with the largest cosine to each latent (points, codebook_dim).

        Normalising the latent does not change which code wins, so only the codebook is normalised.
        """
        codebook = F.normalize(self.codebook, dim=-1).T.contiguous()  # (d, K): 2x faster mm than a .T view
        return (latents @ codebook).argmax(dim=-1)

    def forward(self, residual: torch.Tensor) -> StageOutput:
        """Quantize flattened valid frames ``residual`` (points, input_dim)."""
        latents = self.in_proj(residual)  # (P, d)
        codes = self.lookup(latents.detach())  # (P,)
        selected = F.embedding(codes, self.codebook)  # (P, d), raw (not normalised) codes
        commitment = F.mse_loss(latents, selected.detach())
        codebook = F.mse_loss(selected, latents.detach())
        straight = latents + (selected - latents).detach()
        replaced = self._replace_stale(codes, latents) if self.training else 0
        return StageOutput(
            output=self.out_proj(straight),
            codes=codes,
            latents=latents,
            commitment_loss=commitment,
            codebook_loss=codebook,
            replaced=replaced,
        )

    @torch.no_grad()
    def _replace_stale(self, codes: torch.Tensor, latents: torch.Tensor) -> int:
        """Count unused steps and re-seed codes unused for ``stale_tolerance`` steps."""
        if self.stale_tolerance == 0 or latents.shape[0] == 0:
            return 0
        unused = torch.bincount(codes, minlength=self.codebook_size) == 0
        self.stale_steps.copy_(torch.where(unused, self.stale_steps + 1, torch.zeros_like(self.stale_steps)))
        dead = (self.stale_steps >= self.stale_tolerance).nonzero().squeeze(1)
        count = int(dead.numel())
        if count:
            points = latents.shape[0]
            if points >= count:
                pick = torch.randperm(points, device=latents.device)[:count]
            else:
                pick = torch.randint(points, (count,), device=latents.device)
            self.codebook.data[dead] = F.normalize(latents.detach()[pick].to(self.codebook.dtype), dim=-1)
            self.stale_steps[dead] = 0
        return count

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Output (..., input_dim) of codes (...)."""
        return self.out_proj(F.embedding(codes, self.codebook))

    @property
    def weight_norm(self) -> bool:
        """Whether the projections are weight-normed (trained as ``g * v / ||v||``)."""
        return parametrize.is_parametrized(self.in_proj, "weight")

    def set_weight_norm(self, enabled: bool) -> None:
        """Parametrize both projections as ``g * v / ||v||`` (norm per output row, the official
        ``WNConv1d``), or fuse them back into plain weights. Either way the function is unchanged:
        a plain weight ``w`` becomes ``g = ||w||``, ``v = w``. Training with weight norm follows the
        official optimisation (gradients and Adam steps on ``g`` and ``v``)."""
        for proj in (self.in_proj, self.out_proj):
            if enabled and not parametrize.is_parametrized(proj, "weight"):
                _weight_norm(proj, name="weight", dim=0)
            elif not enabled and parametrize.is_parametrized(proj, "weight"):
                parametrize.remove_parametrizations(proj, "weight", leave_parametrized=True)


class ResidualVectorQuantizer(nn.Module):
    """Stages of :class:`VectorQuantizer`, each quantizing the residual left by the previous ones.

    Args:
        config: architecture.
    """

    def __init__(self, config: RVQConfig) -> None:
        super().__init__()
        self.config = config
        self.stages = nn.ModuleList(
            VectorQuantizer(
                config.input_dim,
                config.codebook_size,
                config.codebook_dim,
                stale_tolerance=config.stale_tolerance,
            )
            for _ in range(config.num_codebooks)
        )
        self._tables: tuple[tuple, list[InferenceTables]] | None = None  # eval-mode cache

    @property
    def _vq_stages(self) -> Sequence[VectorQuantizer]:
        """``stages`` typed by its elements (``nn.ModuleList`` is typed as holding plain modules)."""
        return cast("Sequence[VectorQuantizer]", self.stages)

    def _flatten(
        self, x: torch.Tensor, lengths: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Valid frames (points, dim) of x (batch, frames, dim), and the mask (None when all valid)."""
        if x.dim() != 3 or x.shape[-1] != self.config.input_dim:
            raise ValueError(f"expected (batch, frames, {self.config.input_dim}), got shape {tuple(x.shape)}")
        if lengths is None or bool((lengths == x.shape[1]).all()):
            return x.reshape(-1, x.shape[-1]), None
        mask = lengths_to_mask(lengths, x.shape[1])
        return x[mask], mask

    @staticmethod
    def _unflatten(flat: torch.Tensor, mask: torch.Tensor | None, shape: tuple[int, int], fill: float | int):
        """Inverse of :meth:`_flatten` for (points, *) values; ``fill`` at padded frames."""
        if mask is None:
            return flat.reshape(*shape, *flat.shape[1:])
        out = flat.new_full((*shape, *flat.shape[1:]), fill)
        out[mask] = flat
        return out

    def forward(
        self, x: torch.Tensor, lengths: torch.Tensor | None = None, *, num_stages: int | None = None
    ) -> QuantizerOutput:
        """Quantize x (batch, frames, input_dim), training the codebooks' bookkeeping in train mode.

        Args:
            x: (batch, frames, input_dim).
            lengths: (batch,) valid frames, or None.
            num_stages: use only the first stages (default: all).

        Returns:
            QuantizerOutput.
        """
        lengths = full_lengths(x, lengths)
        flat, mask = self._flatten(x, lengths)  # (P, D)
        batch, frames = x.shape[:2]
        stages = self._vq_stages[: num_stages or len(self.stages)]
        residual = flat
        quantized = torch.zeros_like(flat)
        codes, latents, commit, book, replaced = [], [], [], [], []
        for stage in stages:
            out = stage(residual)
            quantized = quantized + out.output
            residual = residual - out.output
            codes.append(out.codes)
            latents.append(out.latents)
            commit.append(out.commitment_loss)
            book.append(out.codebook_loss)
            replaced.append(out.replaced)
        codes_flat = torch.stack(codes, dim=-1)  # (P, N)
        return QuantizerOutput(
            quantized=self._unflatten(quantized, mask, (batch, frames), 0.0),
            codes=self._unflatten(codes_flat, mask, (batch, frames), IGNORE_CODE).transpose(1, 2),
            latents=self._unflatten(torch.cat(latents, dim=-1), mask, (batch, frames), 0.0),
            lengths=lengths,
            commitment_loss=torch.stack(commit).sum(),
            codebook_loss=torch.stack(book).sum(),
            replaced_codes=torch.tensor(replaced, dtype=torch.long),
        )

    @torch.no_grad()
    def encode(
        self, x: torch.Tensor, lengths: torch.Tensor | None = None, *, num_stages: int | None = None
    ) -> torch.Tensor:
        """Codes (batch, num_stages, frames) of x (batch, frames, input_dim); no losses, no state change.

        Padded frames get :data:`IGNORE_CODE`. In eval mode the lookup tables of :meth:`inference_tables`
        are used (same codes, no per-call normalisation nor output projection).
        """
        flat, mask = self._flatten(x, lengths if lengths is None else full_lengths(x, lengths))
        stages = num_stages or len(self.stages)
        if self.training:
            residual = flat
            codes = []
            for stage in self._vq_stages[:stages]:
                idx = stage.lookup(stage.in_proj(residual))  # (P,)
                residual = residual - stage.decode(idx)
                codes.append(idx)
            flat_codes = torch.stack(codes, dim=-1)  # (P, N)
        else:
            flat_codes = self._encode_flat(flat, self.inference_tables()[:stages])
        batch, frames = x.shape[:2]
        return self._unflatten(flat_codes, mask, (batch, frames), IGNORE_CODE).transpose(1, 2)

    # ------------------------------------------------------------------ fast inference path
    def inference_tables(self) -> list[InferenceTables]:
        """Per-stage lookup tables for eval-mode :meth:`encode`, built once and cached.

        The cache is rebuilt when any parameter changed (in place or replaced, e.g. by an optimiser
        step, ``load_state_dict`` or ``.to()``) and dropped by :meth:`train`.
        """
        key = tuple((p.data_ptr(), p._version, p.dtype) for p in self.parameters())
        if self._tables is None or self._tables[0] != key:
            with torch.no_grad():
                tables = [
                    InferenceTables(
                        in_weight=stage.in_proj.weight.detach().T.contiguous(),
                        in_bias=stage.in_proj.bias.detach().clone(),
                        codebook=F.normalize(stage.codebook.detach(), dim=-1).T.contiguous(),
                        decoded=stage.out_proj(stage.codebook.detach()).contiguous(),
                    )
                    for stage in self._vq_stages
                ]
            self._tables = (key, tables)
        return self._tables[1]

    def train(self, mode: bool = True) -> ResidualVectorQuantizer:
        self._tables = None
        return super().train(mode)

    @property
    def weight_norm(self) -> bool:
        """Whether the stages' projections are weight-normed (see :meth:`set_weight_norm`)."""
        return all(stage.weight_norm for stage in self._vq_stages)

    def set_weight_norm(self, enabled: bool) -> None:
        """Weight-norm (or fuse back) every stage's projections; the function is unchanged.

        The official Mel-RVQ trains weight-normed 1x1 convolutions; :class:`RVQTrainingTask` turns
        this on so that muqkit's training follows the same gradients. State dicts then hold
        ``*.parametrizations.weight.original0`` (g) / ``original1`` (v);
        ``save_pretrained`` writes the fused weights.
        """
        for stage in self._vq_stages:
            stage.set_weight_norm(enabled)
        self._tables = None

    @staticmethod
    def _encode_flat(flat: torch.Tensor, tables: list[InferenceTables], chunk: int = 2048) -> torch.Tensor:
        """Codes (points, stages) of valid frames (points, input_dim), in chunks that stay in cache."""
        points = flat.shape[0]
        codes = torch.empty(points, len(tables), dtype=torch.long, device=flat.device)
        if points == 0 or not tables:
            return codes
        size = tables[0].codebook.shape[1]
        scores = flat.new_empty(min(chunk, points), size)  # (chunk, K), reused by every stage
        for start in range(0, points, chunk):
            residual = flat[start : start + chunk].clone()  # (c, D), updated in place
            n = residual.shape[0]
            for i, t in enumerate(tables):
                latents = torch.addmm(t.in_bias, residual, t.in_weight)  # (c, d)
                # argmax of the cosine: the latent's norm does not change the winner.
                idx = torch.mm(latents, t.codebook, out=scores[:n]).argmax(dim=-1)  # (c,)
                codes[start : start + n, i] = idx
                if i + 1 < len(tables):
                    residual.sub_(t.decoded.index_select(0, idx))  # out_proj(codebook[idx]), gathered
        return codes

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Vectors (batch, frames, input_dim) of codes (batch, n, frames), n <= num_codebooks.

        Frames whose codes are negative (padding) decode to zero. Fewer stages than the quantizer
        has give the partial reconstruction of the first ``n`` stages.
        """
        if codes.dim() != 3 or codes.shape[1] > len(self.stages):
            raise ValueError(
                f"codes must be (batch, <= {len(self.stages)}, frames), got {tuple(codes.shape)}"
            )
        valid = (codes >= 0).all(dim=1)  # (B, T)
        safe = codes.clamp_min(0)
        out = sum(self._vq_stages[i].decode(safe[:, i]) for i in range(codes.shape[1]))
        return out * valid.unsqueeze(-1)

    @torch.no_grad()
    def init_from_data(
        self,
        x: torch.Tensor,
        *,
        iters: int = 10,
        points_per_code: int = 16,
        pca: bool = True,
        generator: torch.Generator | None = None,
    ) -> None:
        """Data-driven initialisation of every stage, stage by stage (the official code has none).

        With ``pca``, a stage's ``in_proj`` becomes the projection on the ``codebook_dim`` principal
        components of its residual (centred) and ``out_proj`` the way back, so that random
        projections do not add noise at the start of training. The codebook then becomes the
        centroids of a spherical k-means (cosine assignment, mean centroids) of the projected
        inputs, and the residual handed to the next stage is computed with those codes.

        Args:
            x: (points, input_dim) valid frames (a few times ``codebook_size`` at least).
            iters: Lloyd iterations.
            points_per_code: k-means runs on at most ``points_per_code * codebook_size`` of the
                points (PCA uses them all).
            pca: also initialise the projections by PCA (else keep them, and fit the codebooks only).
            generator: random source of k-means.
        """
        stages = self._vq_stages
        normed = self.weight_norm
        self.set_weight_norm(False)  # the projections are written below
        residual = x.to(stages[0].codebook.device, stages[0].codebook.dtype)
        for stage in stages:
            if pca:
                mean = residual.mean(0)  # (D,)
                centred = (residual - mean).double()
                cov = centred.T @ centred / max(1, residual.shape[0] - 1)  # (D, D)
                _, vectors = torch.linalg.eigh(cov)  # ascending eigenvalues
                basis = vectors[:, -stage.codebook.shape[1] :].flip(-1).to(residual.dtype)  # (D, d)
                stage.in_proj.weight.copy_(basis.T)
                stage.in_proj.bias.copy_(-(basis.T @ mean))
                stage.out_proj.weight.copy_(basis)
                stage.out_proj.bias.copy_(mean)
            latents = stage.in_proj(residual)
            subset = latents[: points_per_code * stage.codebook_size]
            result = kmeans(subset, stage.codebook_size, iters=iters, cosine=True, generator=generator)
            stage.codebook.copy_(result.centroids)
            stage.stale_steps.zero_()
            idx, _ = nearest(latents, stage.codebook, cosine=True)
            residual = residual - stage.decode(idx)
        self.set_weight_norm(normed)
