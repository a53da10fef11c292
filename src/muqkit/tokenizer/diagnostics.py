"""Tokenizer diagnostics: code usage, perplexity, per-stage reconstruction, agreement across seeds.

* :func:`rvq_diagnostics` runs a residual-VQ tokenizer (Mel-RVQ or latent RVQ) over data and
  reports, per stage, the fraction of codes used, the code perplexity, and the reconstruction error
  of the first ``k`` stages (as MSE of the normalised frames, as a gain in dB over no quantization,
  and for Mel-RVQ as an RMS error in mel dB).
* :func:`code_agreement` compares two tokenizations of the same frames (adjusted mutual information
  and normalised mutual information per stage): the stability of a tokenizer across training seeds.
* :func:`plot_report` draws the report as PNG files.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch


@dataclass(frozen=True)
class StageDiagnostics:
    """One residual stage.

    Attributes:
        stage: 1-based stage index.
        usage: fraction of the codebook used at least once.
        perplexity: exp of the entropy of the code histogram (codebook_size when uniform).
        mse: mean squared error of the normalised frames after the first ``stage`` stages.
        error_db: ``10 log10(mse / mse_0)``, with ``mse_0`` the error of no quantization (all zeros).
        gain_db: how much this stage lowered the error, in dB.
        rmse_mel_db: root mean squared error in mel dB (Mel-RVQ only, else None).
    """

    stage: int
    usage: float
    perplexity: float
    mse: float
    error_db: float
    gain_db: float
    rmse_mel_db: float | None


@dataclass(frozen=True)
class RVQDiagnostics:
    """Per-stage diagnostics of a residual-VQ tokenizer on some data."""

    frames: int
    codebook_size: int
    mse_without_quantization: float
    stages: tuple[StageDiagnostics, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Agreement:
    """Agreement between two tokenizations of the same frames, per compared stage."""

    frames: int
    ami: tuple[float, ...]
    nmi: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@torch.no_grad()
def rvq_diagnostics(
    model: Any, batches: Iterable[tuple[torch.Tensor, torch.Tensor | None]]
) -> RVQDiagnostics:
    """Usage, perplexity and cumulative reconstruction error of every stage.

    Args:
        model: a :class:`~muqkit.tokenizer.MelRVQ` or :class:`~muqkit.tokenizer.latent.LatentRVQ` (its
            ``featurize`` and ``rvq``); put in eval mode here.
        batches: ``(inputs, lengths)`` pairs (audio or features as the model expects).
    """
    model.eval()
    rvq = model.rvq
    stages, size = len(rvq.stages), rvq.config.codebook_size
    counts = torch.zeros(stages, size, dtype=torch.float64)
    sq_err = torch.zeros(stages + 1, dtype=torch.float64)  # k = 0..stages
    values = 0
    frames = 0
    for inputs, lengths in batches:
        feats = model.featurize(inputs, lengths)
        flat, _ = rvq._flatten(feats.values, feats.lengths)  # (P, D)
        codes = rvq.encode(flat.unsqueeze(0)).squeeze(0)  # (N, P)
        recon = torch.zeros_like(flat)
        sq_err[0] += flat.double().square().sum()
        for k in range(stages):
            counts[k] += torch.bincount(codes[k], minlength=size).double()
            recon = recon + rvq.stages[k].decode(codes[k])
            sq_err[k + 1] += (flat - recon).double().square().sum()
        values += flat.numel()
        frames += flat.shape[0]
    if frames == 0:
        raise ValueError("rvq_diagnostics: no frames")
    mse = (sq_err / values).tolist()
    std = float(model.features.std) if hasattr(model, "features") else None
    result = []
    for k in range(stages):
        p = counts[k] / counts[k].sum()
        entropy = float(-(p[p > 0] * p[p > 0].log()).sum())
        error_db = 10 * math.log10(mse[k + 1] / mse[0])
        previous_db = 10 * math.log10(mse[k] / mse[0])
        result.append(
            StageDiagnostics(
                stage=k + 1,
                usage=float((counts[k] > 0).double().mean()),
                perplexity=math.exp(entropy),
                mse=mse[k + 1],
                error_db=error_db,
                gain_db=previous_db - error_db,
                rmse_mel_db=None if std is None else math.sqrt(mse[k + 1]) * std,
            )
        )
    return RVQDiagnostics(
        frames=frames, codebook_size=size, mse_without_quantization=mse[0], stages=tuple(result)
    )


def code_agreement(
    codes_a: torch.Tensor, codes_b: torch.Tensor, *, max_frames: int = 50000, seed: int = 0
) -> Agreement:
    """Adjusted and normalised mutual information between two tokenizations, stage by stage.

    Args:
        codes_a, codes_b: (stages, frames) codes of the same frames (compared up to the smaller
            number of stages); negative codes (padding) are dropped.
        max_frames: compare a random subset of at most this many frames (AMI costs grow with it).
    """
    from sklearn.metrics import adjusted_mutual_info_score, normalized_mutual_info_score

    if codes_a.shape[-1] != codes_b.shape[-1]:
        raise ValueError(f"code_agreement: frame counts differ ({codes_a.shape[-1]} vs {codes_b.shape[-1]})")
    valid = (codes_a >= 0).all(0) & (codes_b >= 0).all(0)
    a, b = codes_a[:, valid], codes_b[:, valid]
    if a.shape[-1] > max_frames:
        keep = torch.randperm(a.shape[-1], generator=torch.Generator().manual_seed(seed))[:max_frames]
        a, b = a[:, keep], b[:, keep]
    stages = min(a.shape[0], b.shape[0])
    ami = tuple(float(adjusted_mutual_info_score(a[i].numpy(), b[i].numpy())) for i in range(stages))
    nmi = tuple(float(normalized_mutual_info_score(a[i].numpy(), b[i].numpy())) for i in range(stages))
    return Agreement(frames=int(a.shape[-1]), ami=ami, nmi=nmi)


@torch.no_grad()
def tokenize_all(tokenizer: Any, batches: Iterable[tuple[torch.Tensor, torch.Tensor | None]]) -> torch.Tensor:
    """Codes (num_codebooks, frames) of every valid frame of the batches, concatenated."""
    out = []
    for inputs, lengths in batches:
        tok = tokenizer.tokenize(inputs, lengths)
        for codes, length in zip(tok.codes, tok.lengths, strict=True):
            out.append(codes[:, : int(length)])
    return torch.cat(out, dim=-1)


def plot_report(report: Mapping[str, Any], folder: str | Path) -> list[Path]:
    """Write ``stages.png`` (usage, perplexity, error per stage) and ``agreement.png`` when present."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    stages: Sequence[Mapping[str, Any]] = report["diagnostics"]["stages"]
    ks = [s["stage"] for s in stages]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].bar(ks, [100 * s["usage"] for s in stages], color="tab:blue")
    axes[0].axhline(90, color="gray", ls="--", lw=1)
    axes[0].set(title="codes used (%)", xlabel="stage", ylim=(0, 105))
    size = report["diagnostics"]["codebook_size"]
    axes[1].bar(ks, [s["perplexity"] for s in stages], color="tab:green")
    axes[1].axhline(size, color="gray", ls="--", lw=1)
    axes[1].set(title=f"perplexity (of {size})", xlabel="stage")
    axes[2].plot([0, *ks], [0.0, *[s["error_db"] for s in stages]], "o-", label="residual VQ")
    single = report.get("single_vq")
    if single:
        axes[2].axhline(
            single["error_db"], color="tab:red", ls="--", label=f"single VQ, {single['codebook_size']} codes"
        )
        axes[2].legend()
    axes[2].set(title="reconstruction error (dB re. no quantization)", xlabel="stages used")
    fig.tight_layout()
    path = folder / "stages.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    written.append(path)
    agreement = report.get("agreement")
    if agreement:
        fig, ax = plt.subplots(figsize=(6.5, 3.6))
        width = 0.8 / len(agreement)
        for j, (name, values) in enumerate(agreement.items()):
            xs = [i + 1 + (j - (len(agreement) - 1) / 2) * width for i in range(len(values["ami"]))]
            ax.bar(xs, values["ami"], width=width, label=name)
        ax.set(
            title="agreement of two tokenizers on the same audio (AMI)",
            xlabel="stage / codebook",
            ylabel="adjusted mutual information",
            ylim=(0, 1),
        )
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = folder / "agreement.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written


def make_report(
    tokenizer: Any,
    chunks: Iterable[torch.Tensor],
    *,
    files: int,
    others: Mapping[str, Any] | None = None,
    single_vq: Any | None = None,
    random_projection_seeds: Sequence[int] = (),
) -> dict[str, Any]:
    """Diagnostics of a residual-VQ tokenizer on held-out data.

    Args:
        tokenizer: a trained MelRVQ / LatentRVQ.
        chunks: the held-out data as 1-D audio chunks at the tokenizer's sample rate (or (frames, dim)
            feature chunks for a latent RVQ), as :func:`muqkit.data.files.iterate_chunks` reads them.
        files: how many files the chunks come from (for the report).
        others: named tokenizers to compare with ``tokenizer`` (e.g. the same recipe, another seed).
        single_vq: a one-stage tokenizer with ``num_codebooks * codebook_size`` codes, for comparison.
        random_projection_seeds: two seeds: compare two random-projection tokenizers (codebook size
            and normalisation of ``tokenizer``) as the reference for ``others``.

    Returns:
        A JSON-able dict (see :func:`plot_report`).
    """
    from muqkit.tokenizer.random_projection import RandomProjectionConfig, RandomProjectionTokenizer

    audio = hasattr(tokenizer, "features")
    sample_rate = int(getattr(tokenizer.config, "sample_rate", 0))
    chunks = [c.unsqueeze(0) for c in chunks]
    batches = [(c, None) for c in chunks]
    report: dict[str, Any] = {
        "model": tokenizer.config_dict(),
        "data": {
            "files": files,
            "chunks": len(chunks),
            "seconds": sum(c.shape[1] for c in chunks) / sample_rate if audio else None,
        },
        "diagnostics": rvq_diagnostics(tokenizer, batches).to_dict(),
    }
    if single_vq is not None:
        single = rvq_diagnostics(single_vq, batches)
        report["single_vq"] = {
            "codebook_size": single.codebook_size,
            "mse": single.stages[-1].mse,
            "error_db": single.stages[-1].error_db,
            "usage": single.stages[-1].usage,
        }
    agreement: dict[str, Any] = {}
    if others:
        codes = tokenize_all(tokenizer.eval(), batches)
        for name, other in others.items():
            agreement[name] = code_agreement(codes, tokenize_all(other.eval(), batches)).to_dict()
    if random_projection_seeds:
        if len(random_projection_seeds) != 2 or not audio:
            raise ValueError("random_projection_seeds: give two seeds, for an audio tokenizer")
        c = tokenizer.config
        rps = []
        for seed in random_projection_seeds:
            rp = RandomProjectionTokenizer(
                RandomProjectionConfig(
                    mel=c.mel,
                    stack=c.stack,
                    num_codebooks=1,
                    codebook_size=c.codebook_size,
                    codebook_dim=c.codebook_dim,
                    seed=seed,
                ),
                mean=float(tokenizer.features.mean),
                std=float(tokenizer.features.std),
            )
            rps.append(tokenize_all(rp, batches))
        name = f"random projection, seeds {random_projection_seeds[0]} vs {random_projection_seeds[1]}"
        agreement[name] = code_agreement(rps[0], rps[1]).to_dict()
    if agreement:
        report["agreement"] = agreement
    return report
