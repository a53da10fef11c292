"""Training a residual-VQ tokenizer: Mel-RVQ on audio, or a latent RVQ on feature files.

Steps: a streaming pass over the data computes the normalisation statistics (and keeps a random
sample of frames for the optional k-means initialisation of the codebooks); then Lightning trains
on random crops (5 s of audio, or ``crop_frames`` feature frames) with Adam; the result is saved as
a tokenizer folder (``config.json`` + ``model.safetensors``) loadable with ``from_pretrained``.

The data comes from :mod:`muqkit.data` (a folder, a plain list of paths or a manifest); crop ``i`` is
drawn from a generator seeded by ``(seed, i)`` and the sampler restarts at the checkpoint's step, so a
resumed run sees exactly the crops of an uninterrupted one.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import torch
from torch.utils.data import DataLoader, Dataset

from muqkit.configs import build
from muqkit.data.files import AUDIO_EXTENSIONS, FEATURE_EXTENSIONS, is_record_manifest, iterate_chunks, list_files
from muqkit.data.loader import (
    FrameCropDataset,
    RandomCropDataset,
    ResumableSampler,
    collate_crops,
    collate_frames,
    load_records,
)
from muqkit.tokenizer.base import RunningMoments
from muqkit.tokenizer.latent import LatentRVQ, LatentRVQConfig
from muqkit.tokenizer.mel_rvq import MelRVQ, MelRVQConfig
from muqkit.tokenizer.training import RVQTrainingTask
from muqkit.train.harness import RunConfig

log = logging.getLogger(__name__)

# What a tokenizer training run writes in its folder (``overwrite`` deletes these, nothing else).
RUN_ENTRIES = ("run_config.json", "checkpoints", "logs", "tokenizer")


# ----------------------------------------------------------------------------- statistics
@dataclass(frozen=True)
class StatisticsResult:
    """Streaming statistics of a corpus: normalisation and a random sample of raw frames."""

    mean: torch.Tensor
    std: torch.Tensor
    count: int
    sample: torch.Tensor  # (points, dim) raw (un-normalised) frames, uniformly drawn
    frames: tuple[torch.Tensor, ...] = ()  # every chunk's raw frames (frames, dim), when kept


@torch.no_grad()
def compute_statistics(
    model: MelRVQ | LatentRVQ,
    chunks: Iterator[torch.Tensor],
    *,
    sample_size: int = 65536,
    seed: int = 0,
    keep_frames: bool = False,
) -> StatisticsResult:
    """One streaming pass: the mean / std the model normalises with, and a reservoir of raw frames.

    ``model`` has ``raw_frames(inputs (1, length, *)) -> Features`` and ``statistics_dim`` (None for
    one pooled scalar, otherwise per dimension). With ``keep_frames`` every chunk's raw frames are
    returned too (the frame cache that training crops from).
    """
    kept: list[torch.Tensor] = []
    generator = torch.Generator().manual_seed(seed)
    moments: RunningMoments | None = None
    keys = torch.empty(0)
    sample: torch.Tensor | None = None
    for chunk in chunks:
        raw = model.raw_frames(chunk.unsqueeze(0))
        frames = raw.values[0, : int(raw.lengths[0])]  # (T, D)
        if moments is None:
            moments = RunningMoments(None if model.statistics_dim is None else frames.shape[-1])
        moments.update(frames)
        if keep_frames:
            kept.append(frames.clone())
        new_keys = torch.rand(frames.shape[0], generator=generator)
        keys = torch.cat([keys, new_keys])
        sample = frames if sample is None else torch.cat([sample, frames])
        if keys.numel() > sample_size:
            keep = keys.topk(sample_size).indices
            keys, sample = keys[keep], sample[keep]
    if moments is None or sample is None:
        raise ValueError("no data for the statistics pass")
    return StatisticsResult(
        mean=moments.mean.float(), std=moments.std.float(), count=moments.count, sample=sample, frames=tuple(kept)
    )


# ----------------------------------------------------------------------------- training
@dataclass(frozen=True)
class TokenizerTrainingConfig:
    """Settings of :func:`train_tokenizer`: training knobs and the typed architecture ``model``.

    Attributes:
        kind: ``"mel_rvq"`` (audio manifest) or ``"latent_rvq"`` (feature-file manifest).
        crop_seconds: audio crop length (mel_rvq).
        crop_frames: feature crop length (latent_rvq).
        batch_size: crops per step.
        max_steps: optimiser steps.
        lr: Adam learning rate (official 1e-4).
        kmeans_init: initialise projections (PCA) and codebooks (k-means) from the statistics sample.
        sample_size: frames kept for the k-means initialisation.
        stats_max_seconds: stop the statistics pass after this much audio (None: all).
        preload: decode all audio into memory once.
        cache_frames: keep the stacked mel of the statistics pass in memory and train on crops of it
            (``crop_seconds`` long): no audio decoding nor mel per step, 185 MB per hour of audio.
        num_workers: data-loader workers.
        seed: global seed.
        accelerator, devices, precision: Lightning trainer settings.
        log_every: steps between logged values.
        checkpoint_every: steps between checkpoints (``checkpoints/last.ckpt`` always kept).
        val_every: steps between validations (when a validation manifest is given).
        model: the architecture: a :class:`~muqkit.tokenizer.mel_rvq.MelRVQConfig` (``mel_rvq``) or a
            :class:`~muqkit.tokenizer.latent.LatentRVQConfig` (``latent_rvq``); a dict of its fields is
            converted (unknown fields are an error naming them); ``None``: the defaults.
    """

    kind: str = "mel_rvq"
    crop_seconds: float = 5.0
    crop_frames: int = 125
    batch_size: int = 32
    max_steps: int = 2000
    lr: float = 1e-4
    kmeans_init: bool = True
    sample_size: int = 65536
    stats_max_seconds: float | None = None
    preload: bool = False
    cache_frames: bool = False
    num_workers: int = 0
    seed: int = 0
    accelerator: str = "auto"
    devices: int | str = 1
    precision: str = "32-true"
    log_every: int = 10
    checkpoint_every: int = 500
    val_every: int = 500
    model: MelRVQConfig | LatentRVQConfig | Mapping[str, Any] | None = None  # typed after __post_init__

    def __post_init__(self) -> None:
        if self.kind not in ("mel_rvq", "latent_rvq"):
            raise ValueError(f"TokenizerTrainingConfig.kind must be 'mel_rvq' or 'latent_rvq', got '{self.kind}'")
        object.__setattr__(self, "model", self._architecture(self.model))
        for name in ("batch_size", "max_steps", "crop_frames", "log_every", "checkpoint_every", "val_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"TokenizerTrainingConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not self.crop_seconds > 0 or not self.lr > 0:
            raise ValueError("TokenizerTrainingConfig: crop_seconds and lr must be positive")

    def _architecture(self, model: Any) -> MelRVQConfig | LatentRVQConfig:
        arch: Any = MelRVQConfig if self.kind == "mel_rvq" else LatentRVQConfig
        if model is None:
            return arch()
        if isinstance(model, Mapping):
            where = "TokenizerTrainingConfig.model"
            return arch.from_dict(model) if hasattr(arch, "from_dict") else build(arch, model, where)
        if not isinstance(model, arch):
            raise ValueError(
                f"TokenizerTrainingConfig.model must be a {arch.__name__} for kind {self.kind!r}, "
                f"got {type(model).__name__}"
            )
        return model

    def run_config(
        self, out: str | os.PathLike[str], *, resume: bool = False, overwrite: bool = False, progress: bool = True
    ) -> RunConfig:
        """The shared run settings (:class:`muqkit.train.harness.RunConfig`) of a run of this config in ``out``."""
        return RunConfig(
            out=str(out), seed=self.seed, max_steps=self.max_steps, accelerator=self.accelerator,
            devices=self.devices, precision=self.precision, resume=resume, overwrite=overwrite,
            log_every=self.log_every, checkpoint_every=self.checkpoint_every, progress=progress,
        )  # fmt: skip


@dataclass(frozen=True)
class TrainingResult:
    """What :func:`train_tokenizer` produced."""

    tokenizer_dir: Path
    checkpoint_dir: Path
    steps: int
    seconds: float
    statistics_seconds: float
    final_metrics: dict[str, float]


def build_model(config: TokenizerTrainingConfig) -> MelRVQ | LatentRVQ:
    """Untrained tokenizer of ``config.kind`` with the architecture ``config.model``."""
    if isinstance(config.model, MelRVQConfig):
        return MelRVQ(config.model)
    assert isinstance(config.model, LatentRVQConfig)
    return LatentRVQ(config.model)


def train_tokenizer(
    train: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    config: TokenizerTrainingConfig,
    *,
    validation: str | os.PathLike[str] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> TrainingResult:
    """Train a Mel-RVQ or latent RVQ and save it to ``output_dir/tokenizer``.

    Args:
        train: audio (mel_rvq) or feature files (latent_rvq): a folder, a plain list of paths or a manifest.
        output_dir: run folder: ``run_config.json``, ``checkpoints/``, ``logs/``, ``tokenizer/``.
        config: training settings.
        validation: optional held-out manifest, validated every ``val_every`` steps.
        resume: continue from ``output_dir/checkpoints/last.ckpt`` with the run's saved config (loaded
            with ``weights_only=True``).
        overwrite: replace a run already in ``output_dir`` (otherwise such a folder is refused).

    Returns:
        TrainingResult.
    """
    from muqkit.train.harness import read_run_settings, resume_point, start_run, write_run_settings

    out = Path(output_dir)
    if resume:
        last = resume_point(out)
        config = TokenizerTrainingConfig(**{**read_run_settings(out), "max_steps": config.max_steps})
        log.info("resuming from %s", last)
    run = config.run_config(out, resume=resume, overwrite=overwrite, progress=progress)
    start_point = start_run(run, owned=RUN_ENTRIES, option="OUTPUT")
    write_run_settings(out, asdict(config), sort_keys=True)

    model = build_model(config)
    audio = config.kind == "mel_rvq"
    extensions = AUDIO_EXTENSIONS if audio else FEATURE_EXTENSIONS
    records = load_records([train]) if audio else None
    files = [path for _, path in records] if records is not None else list_files(train, extensions=extensions)
    sample_rate = int(getattr(model.config, "sample_rate", 0))

    cache = config.cache_frames and audio
    stats_seconds = 0.0
    stats = None
    if not resume or cache:
        start = time.perf_counter()
        chunks = iterate_chunks(
            files,
            kind="audio" if audio else "features",
            sample_rate=sample_rate,
            max_seconds=config.stats_max_seconds,
        )
        stats = compute_statistics(model, chunks, sample_size=config.sample_size, seed=config.seed, keep_frames=cache)
        stats_seconds = time.perf_counter() - start
    if not resume and stats is not None:
        model.set_statistics(stats.mean, stats.std)
        log.info("statistics over %d values: mean %s std %s", stats.count, _short(stats.mean), _short(stats.std))
        if config.kmeans_init:
            start = time.perf_counter()
            generator = torch.Generator().manual_seed(config.seed)
            model.rvq.init_from_data(model.normalise(stats.sample), generator=generator)
            stats_seconds += time.perf_counter() - start

    # audio: the model is a MelRVQ (kind mel_rvq)
    frames_per_crop = int(config.crop_seconds * cast(MelRVQ, model).frame_rate) if audio else config.crop_frames
    start_step = start_point.start_step

    def loader(source: Any, *, seed: int, num_batches: int, start_batch: int = 0) -> DataLoader:
        """Seeded crops of ``source`` (records, feature files or cached frames), drawn by step."""
        if isinstance(source, list) and source and isinstance(source[0], tuple):
            dataset: Dataset = RandomCropDataset(
                source, crop_seconds=config.crop_seconds, sample_rate=sample_rate, seed=seed, frame_samples=1,
                preload=config.preload,
            )  # fmt: skip
            collate: Any = collate_crops
        else:
            dataset, collate = FrameCropDataset(source, crop_frames=frames_per_crop, seed=seed), collate_frames
        sampler = ResumableSampler(batch_size=config.batch_size, num_batches=num_batches, start_batch=start_batch)
        return DataLoader(
            dataset, batch_size=config.batch_size, sampler=sampler, collate_fn=collate,
            num_workers=config.num_workers, persistent_workers=config.num_workers > 0,
            generator=torch.Generator().manual_seed(seed),  # keeps the global random state untouched
        )  # fmt: skip

    if cache:
        assert stats is not None
        train_source: Any = list(stats.frames)
    else:
        train_source = records if records is not None else files
    train_loader = loader(train_source, seed=config.seed, num_batches=config.max_steps, start_batch=start_step)
    val_loader = None
    if validation is not None:
        if audio:
            manifest = not Path(validation).is_dir() and is_record_manifest(validation)
            held: Any = load_records([validation], splits=("valid", "test") if manifest else None)
        else:
            held = list_files(validation, extensions=extensions, splits=("valid", "test"))
        val_loader = loader(held, seed=config.seed + 1, num_batches=4)

    from muqkit.train.harness import fit
    from muqkit.train.lightning import OptimizerConfig

    result = fit(
        RVQTrainingTask(model), train_loader, val_loader, run, start_point,
        optimizer=OptimizerConfig(lr=config.lr), metadata={"model": model.config_dict()},
        val_every=min(config.val_every, config.max_steps), val_batches=4,
    )  # fmt: skip
    model.eval()
    tokenizer_dir = out / "tokenizer"
    model.save_pretrained(tokenizer_dir)
    return TrainingResult(
        tokenizer_dir=tokenizer_dir,
        checkpoint_dir=out / "checkpoints",
        steps=result.steps,
        seconds=result.seconds,
        statistics_seconds=stats_seconds,
        final_metrics=result.metrics,
    )


def _short(x: torch.Tensor) -> str:
    return f"{float(x):.3f}" if x.numel() == 1 else f"[{x.numel()} values, mean {float(x.mean()):.3f}]"


def fit_baseline(
    train: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    *,
    kind: str,
    model: dict[str, Any] | None = None,
    seed: int = 0,
    sample_size: int = 200000,
    max_seconds: float | None = None,
    kmeans_iters: int = 30,
) -> Path:
    """Fit a baseline tokenizer (no gradient training) and save it to ``output_dir``.

    ``random_projection``: only the mel statistics come from the data (the projection is seeded).
    ``kmeans``: per-dimension statistics and k-means centroids from a random sample of frames.

    Returns:
        The saved tokenizer folder.
    """
    from muqkit.tokenizer.kmeans_tokenizer import KMeansConfig, KMeansTokenizer
    from muqkit.tokenizer.random_projection import RandomProjectionConfig, RandomProjectionTokenizer

    if kind == "random_projection":
        tokenizer: Any = RandomProjectionTokenizer(RandomProjectionConfig(**(model or {})))
    elif kind == "kmeans":
        tokenizer = KMeansTokenizer(KMeansConfig(**(model or {})))
    else:
        raise ValueError(f"fit_baseline: kind must be 'random_projection' or 'kmeans', got '{kind}'")
    files = list_files(train)
    chunks = iterate_chunks(files, kind="audio", sample_rate=tokenizer.sample_rate, max_seconds=max_seconds)
    stats = compute_statistics(tokenizer, chunks, sample_size=sample_size, seed=seed)
    if kind == "random_projection":
        tokenizer.set_statistics(stats.mean, stats.std)
    else:
        inertia = tokenizer.fit(stats.sample, iters=kmeans_iters, seed=seed)
        log.info("k-means on %d frames: inertia %.4f", stats.sample.shape[0], inertia)
    out = Path(output_dir)
    tokenizer.save_pretrained(out)
    return out


def fit_baseline_run(
    train: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    *,
    kind: str,
    model: dict[str, Any] | None = None,
    seed: int = 0,
    max_seconds: float | None = None,
    overwrite: bool = False,
) -> Path:
    """:func:`fit_baseline` into ``output_dir/tokenizer``, with the run-folder rule (a folder holding a
    tokenizer is refused unless ``overwrite``). Returns the tokenizer folder."""
    from muqkit.runfolder import prepare_run_folder

    fields = {k: v for k, v in (model or {}).items() if k != "stale_tolerance"}  # no gradient training
    prepare_run_folder(output_dir, overwrite=overwrite, owned=("tokenizer",), option="OUTPUT")
    return fit_baseline(
        train, Path(output_dir) / "tokenizer", kind=kind, model=fields, seed=seed, max_seconds=max_seconds
    )


def corpus_mel_statistics(
    paths: Sequence[Path], *, sample_rate: int, max_seconds: float = 1800.0, seed: int = 0, **mel: Any
) -> tuple[float, float, float]:
    """The dB-mel statistics of a corpus: one pass over the audio of ``paths`` (in a seeded order, up to
    ``max_seconds``), as the tokenizers' statistics pass reads its chunks.

    Returns:
        ``(mean, std, seconds)`` of the dB mel (every value of every band pooled, as the official
        ``stat``) and the seconds of audio read.
    """
    from muqkit.audio.mel import MelFrontend

    order = torch.randperm(len(paths), generator=torch.Generator().manual_seed(seed)).tolist()
    frontend = MelFrontend(sample_rate, **mel)  # no mean / std: dB values
    moments = RunningMoments(None)
    seconds = 0.0
    with torch.no_grad():
        for chunk in iterate_chunks([paths[i] for i in order], kind="audio", sample_rate=sample_rate,
                                    max_seconds=max_seconds):
            moments.update(frontend(chunk.unsqueeze(0)).mel)
            seconds += chunk.shape[0] / sample_rate
    if moments.count == 0:
        raise ValueError("the statistics pass read no audio")
    return float(moments.mean), float(moments.std), seconds


__all__ = [
    "corpus_mel_statistics",
    "StatisticsResult",
    "TokenizerTrainingConfig",
    "TrainingResult",
    "compute_statistics",
    "fit_baseline",
    "fit_baseline_run",
    "train_tokenizer",
]
