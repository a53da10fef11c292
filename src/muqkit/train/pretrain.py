"""Pretraining MuQ with Lightning: one CPU to many GPU nodes, from a preset and a few overrides.

``train_pretrain(manifests, out, config)`` builds the encoder (``config.model``, a typed
:class:`~muqkit.ssl.muq.MuQConfig` made from ``preset`` and overrides),
the targets (a tokenizer folder, a latent RVQ over a previous model, or labels pre-extracted to
disk), the random-crop data and a :class:`lightning.Trainer`, and writes::

    out/run_config.json        the settings (``--resume`` reuses them)
    out/checkpoints/last.ckpt  model, optimiser, scheduler, data position and random state
    out/logs/                  CSV (and TensorBoard when installed) logs
    out/model/                 the trained encoder in the official format (``MuQ.from_pretrained``)

Resuming is exact: crops are indexed by a global sample counter (restarted at ``global_step``),
masking draws from a generator seeded by the batch's first crop index, and the global random state
(dropout) is saved in the checkpoint and restored.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from muqkit.configs.presets import load_preset, preset_names, preset_settings  # re-exported: their old home
from muqkit.data.loader import CROP_SAMPLING
from muqkit.encoder.conv import batch_norms
from muqkit.hub.presets import muq_preset
from muqkit.ssl.masking import MaskingConfig
from muqkit.ssl.muq import MuQ, MuQConfig
from muqkit.ssl.pretrain import LatentTargets, MuQPretrainer, PretrainConfig
from muqkit.train.harness import RunConfig
from muqkit.train.tokenizer import corpus_mel_statistics

log = logging.getLogger(__name__)

# What a pretraining run writes in its folder (``overwrite`` deletes these, nothing else).
RUN_ENTRIES = ("run_config.json", "checkpoints", "logs", "model", "pretrain.json", "snapshots")


MEL_STATS_SOURCES = ("auto", "tokenizer", "corpus", "preset", "config")
FIXED_BATCHNORM = ("none", "frontend", "all")


@dataclass(frozen=True)
class PretrainTrainingConfig:
    """Settings of :func:`train_pretrain`: training knobs and the typed architecture ``model``.

    Attributes:
        preset: MuQ architecture preset (``tiny``, ``small``, ``base``, ``large``) the architecture
            starts from.
        model: the architecture, a :class:`~muqkit.ssl.muq.MuQConfig`. A dict (YAML presets, ``--set
            model=...``, ``run_config.json``) holds field overrides of ``preset``'s, nested or flat
            (e.g. ``{"dropout": 0.1}``), or a complete MuQConfig (as :func:`~dataclasses.asdict` gives),
            converted when the config is made (a bad or unknown field is an error naming it);
            ``None``: the preset's.
        tokenizer: target tokenizer folder (Mel-RVQ, random projection, k-means, or a latent RVQ
            together with ``latent_model``).
        latent_model: previous-iteration MuQ folder whose ``latent_layer`` the latent RVQ tokenizes.
        latent_layer: hidden-state index for ``latent_model``.
        labels: folder of labels pre-extracted by :func:`muqkit.train.refine.extract_labels`
            (instead of ``tokenizer``; read with :func:`muqkit.data.label_shards.read_labels`).
        mask_seconds, mask_prob, noise_std: span masking.
        recon_weight: mel-reconstruction weight (0: off).
        codebook_weights: one weight per target codebook for the cross-entropy (``None``: all alike).
        crop_seconds: random crop length (large: 30 s).
        batch_size: crops per device per micro-batch.
        accumulate: micro-batches per optimiser step (global batch = batch_size * accumulate * devices * nodes).
        max_steps: optimiser steps.
        optimizer: ``adamw`` (torch's) or ``fairseq_adam`` (the official recipe's; see
            :class:`muqkit.train.optim.FairseqAdam`).
        lr, weight_decay, betas, warmup_steps, decay: the optimiser with linear warm-up, then ``cosine``,
            ``linear`` (the official recipe's polynomial decay, power 1) or ``constant``.
        warmup_fraction: when set, ``warmup_steps`` is this fraction of ``max_steps`` (the official
            recipe: 0.08).
        eps: Adam's epsilon.
        decay_1d: weight decay on one-dimensional parameters (norm weights, biases) too (fairseq's Adam,
            the official recipe, decays every parameter); ``False`` leaves them undecayed.
        crop_sampling: ``duration`` (a file's chance is proportional to its duration) or ``file``
            (every file alike); see :class:`~muqkit.data.loader.RandomCropDataset`.
        pad_short: files shorter than a crop become full-length crops ending in silence (trained on as
            audio) instead of short crops whose padding is masked.
        grad_clip: gradient-norm clipping (0: off).
        precision: Lightning precision (``32-true``, ``bf16-mixed``, ``16-mixed``).
        accelerator, devices, num_nodes, strategy: Lightning placement (``strategy``: auto, ddp, fsdp).
        num_workers: data-loader worker processes.
        preload: decode every training file into memory once (small corpora).
        splits: manifest splits used for pretraining.
        seed: global seed (model init, crops, masking).
        log_every, checkpoint_every: steps between logged values and between checkpoints.
        val_batches: held-out batches (manifest split ``valid``) at every checkpoint; 0: none.
        progress: show progress bars.
        mel_stats: where the model's input normalisation (``mel_mean`` / ``mel_std``, the dB mel's
            corpus mean and std, the official ``stat``) comes from: ``auto`` (the target
            tokenizer's when it normalises the same dB mel, the previous model's for a latent RVQ,
            else a statistics pass over the training audio), ``tokenizer``, ``corpus`` (the pass),
            ``preset`` (the preset's: the official MSD figures, another corpus's), or ``config``
            (``model``'s own ``mel_mean`` / ``mel_std``). Explicit ``model: {mel_mean, mel_std}``
            overrides win over all of these (``mel_stats`` becomes ``config``).
        stats_max_seconds: audio read by the statistics pass (files in a seeded order).
        snapshot_every: also save the encoder (official format) to ``out/snapshots/step-NNNNNNN``
            before the first step and every this many steps, for learning curves
            (``muqkit curve``); 0: no snapshots.
        fixed_batchnorm: BatchNorm layers kept in eval mode while training, normalising with the
            statistics they start with instead of each batch's (their scale and shift still train):
            ``none`` (the official recipe), ``frontend`` (the conv front end's) or ``all`` (the
            Conformer convolution modules' too). Masked spans are noise, so batch statistics describe
            noisy input; fixed ones never see it.
    """

    preset: str = "tiny"
    model: MuQConfig | Mapping[str, Any] | None = None  # a MuQConfig after __post_init__
    tokenizer: str | None = None
    latent_model: str | None = None
    latent_layer: int | None = None
    labels: str | None = None
    mask_seconds: float = 0.4
    mask_prob: float = 0.6
    noise_std: float = 0.1
    recon_weight: float = 0.0
    codebook_weights: tuple[float, ...] | None = None
    crop_seconds: float = 5.0
    batch_size: int = 8
    accumulate: int = 1
    max_steps: int = 1000
    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.98)
    warmup_steps: int = 100
    warmup_fraction: float | None = None
    decay: str = "cosine"
    eps: float = 1e-8
    decay_1d: bool = True
    crop_sampling: str = "duration"
    pad_short: bool = False
    grad_clip: float = 1.0
    precision: str = "32-true"
    accelerator: str = "auto"
    devices: int | str = 1
    num_nodes: int = 1
    strategy: str = "auto"
    num_workers: int = 0
    preload: bool = False
    splits: tuple[str, ...] = ("train", "pool")
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 500
    val_batches: int = 0
    progress: bool = True
    mel_stats: str = "auto"
    stats_max_seconds: float = 1800.0
    snapshot_every: int = 0
    fixed_batchnorm: str = "none"

    def __post_init__(self) -> None:
        if self.fixed_batchnorm not in FIXED_BATCHNORM:
            raise ValueError(
                f"PretrainTrainingConfig.fixed_batchnorm must be one of {', '.join(FIXED_BATCHNORM)}, "
                f"got {self.fixed_batchnorm!r}"
            )
        if self.mel_stats not in MEL_STATS_SOURCES:
            raise ValueError(
                f"PretrainTrainingConfig.mel_stats must be one of {', '.join(MEL_STATS_SOURCES)}, "
                f"got {self.mel_stats!r}"
            )
        given = set(self.model) if isinstance(self.model, Mapping) else set()
        if given & {"mel_mean", "mel_std"} and not {f.name for f in fields(MuQConfig)} <= given:  # overrides
            if len(given & {"mel_mean", "mel_std"}) == 1:
                raise ValueError("PretrainTrainingConfig.model: give mel_mean and mel_std together")
            object.__setattr__(self, "mel_stats", "config")  # explicit statistics win
        if self.snapshot_every < 0:
            raise ValueError(f"PretrainTrainingConfig.snapshot_every must be >= 0 (0: none), got {self.snapshot_every}")
        if not self.stats_max_seconds > 0:
            raise ValueError(f"PretrainTrainingConfig.stats_max_seconds must be positive, got {self.stats_max_seconds}")
        for name in ("batch_size", "accumulate", "max_steps", "log_every", "checkpoint_every", "num_nodes"):
            if getattr(self, name) < 1:
                raise ValueError(f"PretrainTrainingConfig.{name} must be >= 1, got {getattr(self, name)}")
        if (self.tokenizer is None) == (self.labels is None):
            raise ValueError("PretrainTrainingConfig: give exactly one of tokenizer (a folder) or labels (a folder)")
        if (self.latent_model is None) != (self.latent_layer is None):
            raise ValueError("PretrainTrainingConfig: latent_model and latent_layer go together")
        if self.strategy not in ("auto", "ddp", "fsdp", "ddp_spawn", "ddp_find_unused_parameters_true"):
            raise ValueError(f"PretrainTrainingConfig.strategy must be auto, ddp or fsdp, got {self.strategy!r}")
        if self.warmup_fraction is not None:
            if not 0 <= self.warmup_fraction < 1:
                raise ValueError(
                    f"PretrainTrainingConfig.warmup_fraction must lie in [0, 1), got {self.warmup_fraction}"
                )
            object.__setattr__(self, "warmup_steps", int(round(self.warmup_fraction * self.max_steps)))
        if self.optimizer not in ("adamw", "fairseq_adam"):
            raise ValueError(f"PretrainTrainingConfig.optimizer must be adamw or fairseq_adam, got {self.optimizer!r}")
        if self.warmup_steps < 0 or (self.decay != "constant" and self.warmup_steps >= self.max_steps):
            raise ValueError(
                f"PretrainTrainingConfig.warmup_steps ({self.warmup_steps}) must lie in [0, max_steps) "
                f"(max_steps {self.max_steps}) with the {self.decay} decay; e.g. warmup_steps={self.max_steps // 10}"
            )
        if self.crop_sampling not in CROP_SAMPLING:
            raise ValueError(
                f"PretrainTrainingConfig.crop_sampling must be one of {', '.join(CROP_SAMPLING)}, "
                f"got {self.crop_sampling!r}"
            )
        object.__setattr__(self, "betas", tuple(self.betas))
        object.__setattr__(self, "splits", tuple(self.splits))
        if self.codebook_weights is not None:
            object.__setattr__(self, "codebook_weights", tuple(float(w) for w in self.codebook_weights))
        object.__setattr__(self, "model", self._architecture(self.model))

    def _architecture(self, model: Any) -> MuQConfig:
        if isinstance(model, MuQConfig):
            return model
        if model is not None and not isinstance(model, Mapping):
            raise ValueError(
                f"PretrainTrainingConfig.model must be a MuQConfig or a dict of its fields, got {type(model).__name__}"
            )
        try:
            return muq_preset(self.preset, **(model or {}))
        except (TypeError, KeyError) as exc:
            raise ValueError(f"PretrainTrainingConfig.model / preset: {exc}") from None

    @property
    def architecture(self) -> MuQConfig:
        """The typed architecture ``model`` (a :class:`~muqkit.ssl.muq.MuQConfig`, built and validated when
        the config is made)."""
        assert isinstance(self.model, MuQConfig)
        return self.model

    def run_config(self, out: str | os.PathLike[str], *, resume: bool = False, overwrite: bool = False) -> RunConfig:
        """The shared run settings (:class:`muqkit.train.harness.RunConfig`) of a run of this config in ``out``."""
        return RunConfig(
            out=str(out), seed=self.seed, max_steps=self.max_steps, accelerator=self.accelerator,
            devices=self.devices, num_nodes=self.num_nodes, strategy=self.strategy, precision=self.precision,
            resume=resume, overwrite=overwrite, log_every=self.log_every, checkpoint_every=self.checkpoint_every,
            progress=self.progress,
        )  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PretrainTrainingConfig:
        """Build from a dict (YAML preset, ``run_config.json``, old ones with ``model`` overrides too);
        unknown keys are an error that lists the allowed ones."""
        allowed = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ValueError(f"unknown pretraining settings {unknown}; allowed: {sorted(allowed)}")
        return cls(**data)


# --------------------------------------------------------------------------------------------------
# Targets and the task
# --------------------------------------------------------------------------------------------------
def build_targets(config: PretrainTrainingConfig) -> nn.Module | None:
    """The frozen target tokenizer of ``config`` (``None`` with pre-extracted labels)."""
    if config.tokenizer is None:
        return None
    from muqkit.tokenizer.base import load_tokenizer
    from muqkit.tokenizer.latent import LatentRVQ

    tokenizer = load_tokenizer(config.tokenizer)
    if isinstance(tokenizer, LatentRVQ):
        if config.latent_model is None or config.latent_layer is None:
            raise ValueError(f"{config.tokenizer} is a latent RVQ: give latent_model and latent_layer")
        return LatentTargets(MuQ.from_pretrained(config.latent_model), config.latent_layer, tokenizer)
    if not hasattr(tokenizer, "encode"):
        raise ValueError(f"{config.tokenizer}: a {type(tokenizer).__name__} cannot tokenize audio")
    return tokenizer


# --------------------------------------------------------------------------------------------------
# Input normalisation: the training corpus's mel statistics
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MelStatistics:
    """Mean and std of the dB mel a model normalises its input with, and where they come from."""

    mean: float
    std: float
    source: str  # "config", "tokenizer PATH", "previous model PATH", "corpus (N s of audio)", "preset NAME"


def tokenizer_mel_statistics(targets: Any) -> tuple[float, float] | None:
    """The scalar dB-mel statistics a target source normalises with, when it has them.

    A Mel-RVQ (and any tokenizer with one scalar ``features.mean`` / ``std`` over the dB mel)
    gives its own; latent targets give their MuQ's ``mel_mean`` / ``mel_std`` (the previous
    iteration, trained on the same corpus); other targets give ``None``.
    """
    if isinstance(targets, LatentTargets):
        c = targets.model.config
        return float(c.mel_mean), float(c.mel_std)
    features = getattr(targets, "features", None)
    mean, std = getattr(features, "mean", None), getattr(features, "std", None)
    if getattr(targets, "statistics_dim", 0) is None and mean is not None and std is not None:
        mean_t, std_t = torch.as_tensor(mean), torch.as_tensor(std)
        if mean_t.numel() == 1 and std_t.numel() == 1:
            return float(mean_t), float(std_t)
    return None


def resolve_mel_statistics(
    config: PretrainTrainingConfig, targets: Any, paths: Sequence[Path] | None
) -> MelStatistics:
    """The statistics a new model of ``config`` normalises with (see ``PretrainTrainingConfig.mel_stats``).

    Raises:
        ValueError: ``tokenizer`` asked of targets that have none, or ``corpus`` without audio files.
    """
    if config.mel_stats == "config":
        arch = config.architecture
        return MelStatistics(float(arch.mel_mean), float(arch.mel_std), "config")
    if config.mel_stats == "preset":
        c = muq_preset(config.preset)
        log.warning("mel statistics: the %s preset's (mean %.2f dB, std %.2f dB), not the training corpus's",
                    config.preset, c.mel_mean, c.mel_std)
        return MelStatistics(c.mel_mean, c.mel_std, f"preset {config.preset}")
    if config.mel_stats in ("auto", "tokenizer"):
        found = tokenizer_mel_statistics(targets)
        if found is not None:
            where = config.latent_model if isinstance(targets, LatentTargets) else config.tokenizer
            kind = "previous model" if isinstance(targets, LatentTargets) else "tokenizer"
            return MelStatistics(found[0], found[1], f"{kind} {where}")
        if config.mel_stats == "tokenizer":
            raise ValueError(
                f"mel_stats 'tokenizer': the targets ({config.tokenizer or config.labels}) hold no dB-mel "
                "statistics; use mel_stats 'corpus' or give model mel_mean / mel_std"
            )
    if not paths:
        raise ValueError(
            "mel_stats: a statistics pass needs audio files (a manifest); give model mel_mean / mel_std instead"
        )
    c = config.architecture
    mean, std, seconds = corpus_mel_statistics(
        paths, sample_rate=c.sample_rate, max_seconds=config.stats_max_seconds, seed=config.seed,
        n_fft=c.n_fft, hop_length=c.hop_length, n_mels=c.n_mels,
    )  # fmt: skip
    return MelStatistics(mean, std, f"corpus ({seconds:.0f} s of audio)")


def build_pretrainer(
    config: PretrainTrainingConfig, targets: Any, *, label_shape: tuple[int, int] | None = None
) -> MuQPretrainer:
    """A fresh MuQ of ``config.preset`` wrapped for pretraining on ``targets`` (or labels of ``label_shape``)."""
    if targets is not None:
        num_codebooks, codebook_size = int(targets.num_codebooks), int(targets.codebook_size)
    elif label_shape is not None:
        num_codebooks, codebook_size = label_shape
    else:
        raise ValueError("need targets or the (num_codebooks, codebook_size) of the labels")
    torch.manual_seed(config.seed)
    model = MuQ(config.architecture)
    model.name_or_path = f"preset:{config.preset}"
    objective = PretrainConfig(
        num_codebooks=num_codebooks,
        codebook_size=codebook_size,
        masking=MaskingConfig(config.mask_seconds, config.mask_prob, config.noise_std),
        recon_weight=config.recon_weight,
        codebook_weights=config.codebook_weights,
    )
    return MuQPretrainer(model, objective, targets)


def training_records(config: PretrainTrainingConfig, manifests: Sequence[str | os.PathLike[str]]) -> list[Any]:
    """The ``(record, audio path)`` pairs :func:`train_pretrain` draws crops from: the config's splits,
    files of at least one target frame."""
    from muqkit.data.loader import load_records

    preset = config.architecture
    return load_records(manifests, splits=config.splits,
                        min_seconds=preset.hop_length * preset.stack_factor / preset.sample_rate)  # fmt: skip


def crop_dataset(
    config: PretrainTrainingConfig, records: Sequence[Any], *, labels: Mapping[str, torch.Tensor] | None = None
) -> Any:
    """The :class:`~muqkit.data.loader.RandomCropDataset` of a run: crop ``i`` of ``records`` depends on
    ``(config.seed, i)`` and the config's crop length, sampling and short-file handling only."""
    from muqkit.data.loader import RandomCropDataset

    preset = config.architecture
    return RandomCropDataset(
        records, crop_seconds=config.crop_seconds, sample_rate=preset.sample_rate, seed=config.seed,
        frame_samples=preset.hop_length * preset.stack_factor, labels=labels, preload=config.preload,
        sampling=config.crop_sampling, pad_short=config.pad_short,
    )  # fmt: skip


@torch.no_grad()
def target_statistics(pretrainer: MuQPretrainer, batches: Sequence[dict[str, torch.Tensor]]) -> dict[str, Any]:
    """What the targets look like on some training batches: per codebook, the perplexity of the code
    histogram (``exp`` of its entropy; the codebook size when every code is equally used) and the share
    of the commonest code (an accuracy that predicting it alone reaches).

    Args:
        pretrainer: gives the targets (its tokenizer) for batches without ``codes``.
        batches: collated crops (``audio``, ``lengths`` and optionally ``codes``).

    Returns:
        ``{"batches", "frames", "perplexity": [N], "majority_share": [N]}``.
    """
    from muqkit.ssl.pretrain import code_histograms

    size = pretrainer.config.codebook_size
    counts = torch.zeros(pretrainer.config.num_codebooks, size, dtype=torch.float64)
    for batch in batches:
        codes = batch.get("codes")
        if codes is None:
            codes = pretrainer.encode_targets(batch["audio"], batch["lengths"])
        counts += code_histograms(codes.transpose(1, 2)[codes[:, 0] >= 0], size).double()  # valid frames
    frames = int(counts[0].sum())
    share = counts / counts.sum(-1, keepdim=True).clamp_min(1)
    entropy = -(share * share.clamp_min(1e-30).log()).sum(-1)
    return {"batches": len(batches), "frames": frames, "perplexity": [round(float(v), 2) for v in entropy.exp()],
            "majority_share": [round(float(v), 4) for v in share.max(-1).values]}


class PretrainTask(nn.Module):
    """The plain training task the Lightning adapter drives: batch dict in, scalars out.

    The mask and noise of a batch are drawn from a generator seeded by ``(seed, first crop index)``,
    so they depend on the data position only (exact resume, different masks on every rank).
    ``fixed_batchnorm`` keeps those BatchNorm layers in eval mode (see :class:`PretrainTrainingConfig`).
    """

    def __init__(self, pretrainer: MuQPretrainer, *, seed: int = 0, fixed_batchnorm: str = "none") -> None:
        super().__init__()
        if fixed_batchnorm not in FIXED_BATCHNORM:
            raise ValueError(f"fixed_batchnorm must be one of {', '.join(FIXED_BATCHNORM)}, got {fixed_batchnorm!r}")
        self.pretrainer = pretrainer
        self.seed = seed
        self.fixed_batchnorm = fixed_batchnorm

    def train(self, mode: bool = True) -> PretrainTask:
        """``mode``, except that the fixed BatchNorm layers stay in eval mode (the harness calls this before
        every training epoch and after every validation)."""
        super().train(mode)
        if self.fixed_batchnorm != "none":
            model = self.pretrainer.model
            for norm in batch_norms(model.conv if self.fixed_batchnorm == "frontend" else model):
                norm.eval()
        return self

    def _generator(self, batch: dict[str, torch.Tensor]) -> torch.Generator:
        device = batch["audio"].device
        generator = torch.Generator(device=device)
        generator.manual_seed((self.seed * 1_000_003 + int(batch["index"][0]) * 7919 + 17) % (2**63))
        return generator

    def _step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = self.pretrainer(
            batch["audio"], batch["lengths"], codes=batch.get("codes"), generator=self._generator(batch)
        )
        metrics = out.metrics()
        metrics["audio_seconds"] = batch["lengths"].sum().float() / self.pretrainer.model.config.sample_rate
        return metrics

    def training_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self._step(batch)

    @torch.no_grad()
    def validation_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self._step(batch)


def _optimizer(config: PretrainTrainingConfig) -> Any:
    """The configured optimiser with linear warm-up and the configured decay over ``max_steps``."""
    from muqkit.train.lightning import OptimizerConfig

    return OptimizerConfig(
        name=config.optimizer, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay,
        warmup_steps=config.warmup_steps, decay=config.decay, total_steps=config.max_steps, eps=config.eps,
        decay_1d=config.decay_1d,
    )  # fmt: skip


def snapshot_dir(run_dir: str | os.PathLike[str], step: int) -> Path:
    """Where :func:`train_pretrain` saves the encoder at ``step`` (``snapshot_every``)."""
    return Path(run_dir) / "snapshots" / f"step-{step:07d}"


def _snapshot_callback(pretrainer: MuQPretrainer, run_dir: Path, every: int) -> Any:
    """A Lightning callback saving the encoder before the first step and every ``every`` steps."""
    from lightning.pytorch.callbacks import Callback

    class Snapshots(Callback):
        def _save(self, trainer: Any, step: int) -> None:
            folder = snapshot_dir(run_dir, step)
            if trainer.is_global_zero and not (folder / "config.json").is_file():
                from muqkit.hub.loaders import save_pretrainer

                save_pretrainer(pretrainer, folder)  # the encoder, its head as the official model.linear

        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            if trainer.global_step == 0:
                self._save(trainer, 0)  # the random-weight start of this very run

        def on_train_batch_end(self, trainer: Any, pl_module: Any, *args: Any) -> None:
            if trainer.global_step % every == 0 and trainer.global_step > 0:
                self._save(trainer, trainer.global_step)

        def on_train_end(self, trainer: Any, pl_module: Any) -> None:
            self._save(trainer, trainer.global_step)

    return Snapshots()


# --------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PretrainResult:
    """What :func:`train_pretrain` produced.

    Attributes:
        model_dir: the trained encoder (official format).
        checkpoint: the last Lightning checkpoint.
        steps: optimiser steps done.
        seconds: training wall-clock time.
        audio_seconds: audio seen by this process.
        final_metrics: last logged scalars.
    """

    model_dir: Path
    checkpoint: Path
    steps: int
    seconds: float
    audio_seconds: float
    final_metrics: dict[str, float]


def train_pretrain(
    manifests: Sequence[str | os.PathLike[str]],
    output_dir: str | os.PathLike[str],
    config: PretrainTrainingConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    stop_after: int | None = None,
) -> PretrainResult:
    """Pretrain MuQ on random crops of the manifests' audio.

    Args:
        manifests: JSONL manifests (:class:`muqkit.data.manifest.AudioRecord` lines), or one folder of
            tar shards written by :func:`muqkit.data.shards.write_shards` (streamed sequentially).
        output_dir: run folder (see the module docstring).
        config: settings.
        resume: continue from ``output_dir/checkpoints/last.ckpt`` with the run's saved settings
            (``max_steps`` may be raised). The checkpoint is loaded with ``weights_only=True``: one that
            holds other Python objects is refused.
        overwrite: replace a run already in ``output_dir`` (without ``resume`` or ``overwrite``, a folder
            holding a run is refused).
        stop_after: stop at this optimiser step (the schedule still spans ``max_steps``), e.g. to
            split a run into time-boxed jobs.

    Returns:
        PretrainResult.

    Raises:
        muqkit.runfolder.RunFolderError: ``output_dir`` holds a run and neither ``resume`` nor ``overwrite``.
        muqkit.hub.weights.CheckpointError: the checkpoint to resume from is refused or corrupt.
        muqkit.audio.io.AudioError: a training file cannot be read or has NaN or infinite samples.
        muqkit.train.lightning.NonFiniteLossError: a loss was NaN or infinite (names the step and the files).
    """
    from muqkit.data.loader import RandomCropDataset, ResumableSampler, collate_crops, crop_loader, load_records
    from muqkit.train.harness import fit, read_run_settings, resume_point, start_run, write_run_settings

    out = Path(output_dir)
    if resume:
        last = resume_point(out)
        saved = read_run_settings(out)
        config = PretrainTrainingConfig.from_dict({**saved["config"], "max_steps": config.max_steps})
        manifests = saved["manifests"]
    run = config.run_config(out, resume=resume, overwrite=overwrite)
    start_point = start_run(run, owned=RUN_ENTRIES)
    start_step = start_point.start_step
    if resume:
        log.info("resuming from %s at step %d", last, start_step)
    manifests = [str(Path(m).resolve()) for m in manifests]

    targets = build_targets(config)
    shard_dirs = [m for m in manifests if (Path(m) / "shards.json").is_file()]
    records = None
    if not shard_dirs:
        records = training_records(config, manifests)
    stats = resolve_mel_statistics(config, targets, None if records is None else [path for _, path in records])
    log.info("mel statistics: mean %.3f dB, std %.3f dB (%s)", stats.mean, stats.std, stats.source)
    # Stored with the run's settings: a resumed run normalises exactly as it started.
    config = replace(
        config, model=config.architecture.replace(mel_mean=stats.mean, mel_std=stats.std), mel_stats="config"
    )
    write_run_settings(out, {"config": asdict(config), "manifests": manifests, "mel_statistics": asdict(stats)})
    labels = None
    label_shape = None
    if config.labels is not None:
        from muqkit.data.label_shards import read_labels

        labels, meta = read_labels(config.labels)
        label_shape = (int(meta["num_codebooks"]), int(meta["codebook_size"]))
    pretrainer = build_pretrainer(config, targets, label_shape=label_shape)
    sample_rate = pretrainer.model.config.sample_rate

    if shard_dirs:
        from muqkit.data.shards import ShardCropStream

        if len(shard_dirs) != 1 or len(manifests) != 1 or labels is not None:
            raise ValueError("stream one shard folder at a time, with tokenizer targets (not pre-extracted labels)")
        stream = ShardCropStream(
            shard_dirs[0], crop_seconds=config.crop_seconds, batch_size=config.batch_size,
            sample_rate=sample_rate, seed=config.seed, frame_samples=pretrainer.frame_samples,
            start_batch=start_step * config.accumulate,
        )  # fmt: skip
        crop_samples = stream.crop_samples
        train_loader = crop_loader(stream, batch_size=config.batch_size, num_workers=config.num_workers,
                                   seed=config.seed)  # fmt: skip
    else:
        assert records is not None
        dataset = crop_dataset(config, records, labels=labels)
        crop_samples = dataset.crop_samples
        sampler = ResumableSampler(
            batch_size=config.batch_size,
            num_batches=config.max_steps * config.accumulate,
            start_batch=start_step * config.accumulate,
        )
        train_loader = crop_loader(dataset, batch_size=config.batch_size, sampler=sampler,
                                   num_workers=config.num_workers, seed=config.seed)  # fmt: skip
    targets_seen = None
    if not shard_dirs:  # the run's first batches (crop i depends on (seed, i) only)
        first = [collate_crops([dataset[b * config.batch_size + j] for j in range(config.batch_size)])
                 for b in range(min(8, config.max_steps))]  # fmt: skip
        targets_seen = target_statistics(pretrainer, first)
        log.info("targets on %d frames of the first %d batches: perplexity per codebook %s, commonest code's "
                 "share %s", targets_seen["frames"], len(first), targets_seen["perplexity"],
                 targets_seen["majority_share"])  # fmt: skip
    val_loader = None
    if config.val_batches > 0 and not shard_dirs:
        val_records = load_records(manifests, splits=("valid",), min_seconds=0.05)
        val_set = RandomCropDataset(
            val_records, crop_seconds=config.crop_seconds, sample_rate=sample_rate, seed=config.seed + 1,
            frame_samples=pretrainer.frame_samples, labels=labels, preload=config.preload,
        )  # fmt: skip
        val_loader = crop_loader(
            val_set, batch_size=config.batch_size, num_workers=0, seed=config.seed + 1,
            sampler=ResumableSampler(batch_size=config.batch_size, num_batches=config.val_batches),
        )

    metadata = {
        "model": asdict(pretrainer.model.config),
        "objective": {"num_codebooks": pretrainer.config.num_codebooks,
                      "codebook_size": pretrainer.config.codebook_size},
        "training": asdict(config),
    }  # fmt: skip
    def describe_batch(batch: dict[str, torch.Tensor]) -> str:
        indices = [int(i) for i in batch["index"]]
        if shard_dirs:
            return f"crops {indices} of the shards in {shard_dirs[0]}"
        files = dict.fromkeys(str(dataset.records[dataset.locate(i)[0]][1]) for i in indices)
        return ", ".join(files)

    strategy: Any = None
    if config.strategy == "fsdp":
        from lightning.pytorch.strategies import FSDPStrategy

        from muqkit.encoder.conformer import ConformerLayer

        strategy = FSDPStrategy(auto_wrap_policy={ConformerLayer}, state_dict_type="full")
    task = PretrainTask(pretrainer, seed=config.seed, fixed_batchnorm=config.fixed_batchnorm)
    fitted = fit(
        task, train_loader, val_loader, run, start_point,
        optimizer=_optimizer(config), metadata=metadata, describe_batch=describe_batch,
        callbacks=[_snapshot_callback(pretrainer, out, config.snapshot_every)] if config.snapshot_every else [],
        accumulate=config.accumulate, grad_clip=config.grad_clip, val_batches=config.val_batches,
        stop_after=stop_after, strategy=strategy,
    )  # fmt: skip
    seconds = fitted.seconds
    model_dir = out / "model"
    if fitted.is_global_zero:
        from muqkit.hub.loaders import save_pretrainer

        pretrainer.model.eval().float()
        save_pretrainer(pretrainer, model_dir)
        (out / "pretrain.json").write_text(json.dumps(
            {"tokenizer": config.tokenizer, "labels": config.labels, "latent_model": config.latent_model,
             "latent_layer": config.latent_layer, "steps": fitted.steps, "seconds": round(seconds, 2),
             "mel_statistics": asdict(stats), "targets": targets_seen},
            indent=2) + "\n")  # fmt: skip
    steps_run = fitted.steps - start_step
    crop_seconds = crop_samples / sample_rate
    return PretrainResult(
        model_dir=model_dir,
        checkpoint=run.last_checkpoint,
        steps=fitted.steps,
        seconds=seconds,
        audio_seconds=steps_run * config.accumulate * config.batch_size * crop_seconds,
        final_metrics=fitted.metrics,
    )


__all__ = [
    "PretrainResult",
    "PretrainTask",
    "PretrainTrainingConfig",
    "build_pretrainer",
    "build_targets",
    "crop_dataset",
    "load_preset",
    "preset_names",
    "preset_settings",
    "snapshot_dir",
    "target_statistics",
    "train_pretrain",
    "training_records",
]
