"""Training a residual-VQ tokenizer: Mel-RVQ on audio, or a latent RVQ on feature files.

Steps: a streaming pass over the data computes the normalisation statistics (and keeps a random
sample of frames for the optional k-means initialisation of the codebooks); then Lightning trains
on random crops (5 s of audio, or ``crop_frames`` feature frames) with Adam; the result is saved as
a tokenizer folder (``config.json`` + ``model.safetensors``) loadable with ``from_pretrained``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from muqkit.tokenizer.base import RunningMoments
from muqkit.tokenizer.latent import LatentRVQ, LatentRVQConfig
from muqkit.tokenizer.mel_rvq import MelRVQ, MelRVQConfig
from muqkit.tokenizer.training import RVQTrainingTask

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".opus", ".aiff", ".aif")
FEATURE_EXTENSIONS = (".npy", ".safetensors", ".pt")
# What a tokenizer training run writes in its folder (``overwrite`` deletes these, nothing else).
RUN_ENTRIES = ("run_config.json", "checkpoints", "logs", "tokenizer")
_PATH_KEYS = ("path", "audio_filepath", "audio_path", "audio", "file", "features", "feature_path")


# ----------------------------------------------------------------------------- manifests
def read_manifest(
    source: str | os.PathLike[str],
    *,
    extensions: Sequence[str] = AUDIO_EXTENSIONS,
    splits: Sequence[str] | None = ("train", "pool"),
) -> list[Path]:
    """Files listed by a manifest, or found under a folder.

    A corpus manifest (JSONL of :class:`~muqkit.data.manifest.AudioRecord`, as the offline corpus
    builder writes at the corpus root) is read with :func:`muqkit.data.loader.load_records`: paths
    are resolved from the corpus root and only records of ``splits`` are kept (``None``: all).
    Any other manifest is a text file with one entry per line: a path, or a JSON object with one of
    the keys ``path``, ``audio_filepath``, ``audio_path``, ``audio``, ``file``, ``features``;
    relative paths are taken from the manifest's folder; blank lines and ``#`` comments are skipped.
    """
    source = Path(source)
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.suffix.lower() in extensions)
        if not files:
            raise ValueError(f"{source}: no files with extensions {list(extensions)}")
        return files
    if _is_record_manifest(source):
        from muqkit.data.loader import load_records

        return [path for _, path in load_records([source], splits=splits)]
    files = []
    with open(source, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("{"):
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{source}:{number}: not a JSON object ({exc.msg})") from None
                key = next((k for k in _PATH_KEYS if k in entry), None)
                if key is None:
                    raise ValueError(f"{source}:{number}: no path key among {_PATH_KEYS}")
                line = str(entry[key])
            path = Path(line)
            files.append(path if path.is_absolute() else source.parent / path)
    if not files:
        raise ValueError(f"{source}: empty manifest")
    return files


def _is_record_manifest(source: Path) -> bool:
    """Whether the first entry of a manifest is a full :class:`~muqkit.data.manifest.AudioRecord`."""
    from muqkit.data.manifest import AudioRecord

    with open(source, encoding="utf-8") as fh:
        first = next((line.strip() for line in fh if line.strip() and not line.startswith("#")), "")
    if not first.startswith("{"):
        return False
    try:
        AudioRecord.from_dict(json.loads(first))
    except (json.JSONDecodeError, TypeError, ValueError):
        return False
    return True


def read_audio(path: Path, sample_rate: int, *, start: float = 0.0, duration: float | None = None) -> np.ndarray:
    """Mono float32 audio at ``sample_rate``: the whole file (:func:`muqkit.audio.io.load_audio`), or
    ``duration`` seconds from ``start`` (:func:`muqkit.audio.io.read_crop`)."""
    if start == 0.0 and duration is None:
        from muqkit.audio.io import load_audio

        return load_audio(path, sample_rate=sample_rate, min_duration=0.0).numpy()
    from muqkit.audio.io import read_crop

    first = int(round(start * sample_rate))
    count = 1 << 40 if duration is None else int(math.ceil(duration * sample_rate))
    return read_crop(path, sample_rate, first, count).numpy()


def audio_duration(path: Path) -> float:
    from muqkit.audio.io import audio_info

    return audio_info(path).duration


def read_features(path: Path) -> np.ndarray:
    """A (frames, dim) feature array from ``.npy`` (memory-mapped), ``.safetensors`` or ``.pt``."""
    suffix = path.suffix.lower()
    if suffix == ".npy":
        array = np.load(path, mmap_mode="r")
    elif suffix == ".safetensors":
        from safetensors.numpy import load_file

        tensors = load_file(str(path))
        array = tensors["features"] if "features" in tensors else next(iter(tensors.values()))
    elif suffix == ".pt":
        from muqkit.hub.weights import safe_torch_load

        array = safe_torch_load(path).numpy()
    else:
        raise ValueError(f"{path}: unsupported feature file (use {FEATURE_EXTENSIONS})")
    if array.ndim != 2:
        raise ValueError(f"{path}: features must be (frames, dim), got shape {array.shape}")
    return array


# ----------------------------------------------------------------------------- datasets
class AudioCropDataset(Dataset):
    """Random crops of audio files, drawn with torch's RNG (seeded by Lightning).

    Files are chosen in proportion to their duration. Files shorter than a crop give the whole
    file, padded in the batch.

    Args:
        files: audio files.
        crop_seconds: crop length.
        sample_rate: output rate.
        crops_per_epoch: dataset length.
        preload: decode every file into memory once (fast crops; 345 MB per hour at 24 kHz).
    """

    def __init__(
        self,
        files: Sequence[Path],
        *,
        crop_seconds: float,
        sample_rate: int,
        crops_per_epoch: int,
        preload: bool = False,
    ) -> None:
        self.files = list(files)
        self.crop_seconds = crop_seconds
        self.sample_rate = sample_rate
        self.crops_per_epoch = crops_per_epoch
        self.durations = torch.tensor([audio_duration(f) for f in self.files], dtype=torch.float64)
        self.cache = [torch.from_numpy(read_audio(f, sample_rate)) for f in self.files] if preload else None

    def __len__(self) -> int:
        return self.crops_per_epoch

    def __getitem__(self, index: int) -> torch.Tensor:
        file = int(torch.multinomial(self.durations, 1))
        span = max(0.0, float(self.durations[file]) - self.crop_seconds)
        start = float(torch.rand(())) * span
        if self.cache is not None:
            first = int(start * self.sample_rate)
            return self.cache[file][first : first + int(self.crop_seconds * self.sample_rate)]
        audio = read_audio(self.files[file], self.sample_rate, start=start, duration=self.crop_seconds)
        return torch.from_numpy(audio[: int(self.crop_seconds * self.sample_rate)])


class FeatureCropDataset(Dataset):
    """Random crops of ``crop_frames`` frames of (frames, dim) feature files or in-memory arrays."""

    def __init__(self, files: Sequence[Path | torch.Tensor], *, crop_frames: int, crops_per_epoch: int) -> None:
        self.arrays = [f.numpy() if isinstance(f, torch.Tensor) else read_features(f) for f in files]
        self.crop_frames = crop_frames
        self.crops_per_epoch = crops_per_epoch
        self.weights = torch.tensor([a.shape[0] for a in self.arrays], dtype=torch.float64)

    def __len__(self) -> int:
        return self.crops_per_epoch

    def __getitem__(self, index: int) -> torch.Tensor:
        item = int(torch.multinomial(self.weights, 1))
        array = self.arrays[item]
        start = int(torch.randint(max(1, array.shape[0] - self.crop_frames + 1), ()))
        return torch.from_numpy(np.array(array[start : start + self.crop_frames], dtype=np.float32))


def collate_padded(items: Sequence[torch.Tensor], *, key: str = "inputs") -> dict[str, torch.Tensor]:
    """Pad (length, *) tensors along their first dimension: ``{key, "lengths"}``."""
    lengths = torch.tensor([x.shape[0] for x in items], dtype=torch.long)
    inputs = items[0].new_zeros((len(items), int(lengths.max()), *items[0].shape[1:]))
    for i, x in enumerate(items):
        inputs[i, : x.shape[0]] = x
    return {key: inputs, "lengths": lengths}


# ----------------------------------------------------------------------------- statistics
def iterate_chunks(
    files: Sequence[Path],
    *,
    kind: str,
    sample_rate: int,
    chunk_seconds: float = 60.0,
    chunk_frames: int = 4096,
    max_seconds: float | None = None,
) -> Iterator[torch.Tensor]:
    """Stream the data as (length, *) chunks: audio of ``chunk_seconds`` or ``chunk_frames`` feature rows."""
    seen = 0.0
    for path in files:
        if kind == "audio":
            audio = torch.from_numpy(read_audio(path, sample_rate))
            step = int(chunk_seconds * sample_rate)
            for start in range(0, audio.shape[0], step):
                chunk = audio[start : start + step]
                if chunk.shape[0] >= 2048:
                    yield chunk
            seen += audio.shape[0] / sample_rate
        else:
            array = read_features(path)
            for start in range(0, array.shape[0], chunk_frames):
                yield torch.from_numpy(np.array(array[start : start + chunk_frames], dtype=np.float32))
            seen += array.shape[0]
        if max_seconds is not None and kind == "audio" and seen >= max_seconds:
            return


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
    """Settings of :func:`train_tokenizer` (training knobs; the architecture is the model's config).

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
    model: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in ("mel_rvq", "latent_rvq"):
            raise ValueError(f"TokenizerTrainingConfig.kind must be 'mel_rvq' or 'latent_rvq', got '{self.kind}'")
        for name in ("batch_size", "max_steps", "crop_frames", "log_every", "checkpoint_every", "val_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"TokenizerTrainingConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not self.crop_seconds > 0 or not self.lr > 0:
            raise ValueError("TokenizerTrainingConfig: crop_seconds and lr must be positive")


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
    """Untrained tokenizer of ``config.kind`` with architecture fields ``config.model``."""
    if config.kind == "mel_rvq":
        return MelRVQ(MelRVQConfig(**config.model))
    return LatentRVQ(LatentRVQConfig(**config.model))


def _loader(dataset: Dataset, config: TokenizerTrainingConfig, *, key: str = "inputs") -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=config.batch_size,
        collate_fn=partial(collate_padded, key=key),
        num_workers=config.num_workers,
        persistent_workers=config.num_workers > 0,
    )


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
        train: manifest or folder of audio files (mel_rvq) or feature files (latent_rvq).
        output_dir: run folder: ``run_config.json``, ``checkpoints/``, ``logs/``, ``tokenizer/``.
        config: training settings.
        validation: optional held-out manifest, validated every ``val_every`` steps.
        resume: continue from ``output_dir/checkpoints/last.ckpt`` with the run's saved config (loaded
            with ``weights_only=True``).
        overwrite: replace a run already in ``output_dir`` (otherwise such a folder is refused).

    Returns:
        TrainingResult.
    """
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    from muqkit.runfolder import prepare_run_folder
    from muqkit.train.lightning import LightningTask, OptimizerConfig, fit_checkpoint_kwargs

    out = Path(output_dir)
    run_config = out / "run_config.json"
    last = out / "checkpoints" / "last.ckpt"
    if resume:
        if not last.is_file():
            raise FileNotFoundError(f"--resume: no checkpoint at {last}")
        saved = json.loads(run_config.read_text())
        config = TokenizerTrainingConfig(**{**saved, "max_steps": config.max_steps})
        log.info("resuming from %s", last)
    prepare_run_folder(out, resume=resume, overwrite=overwrite, owned=RUN_ENTRIES, option="OUTPUT")
    run_config.write_text(json.dumps(asdict(config), indent=2, sort_keys=True) + "\n")
    L.seed_everything(config.seed, workers=True, verbose=False)

    model = build_model(config)
    audio = config.kind == "mel_rvq"
    extensions = AUDIO_EXTENSIONS if audio else FEATURE_EXTENSIONS
    files = read_manifest(train, extensions=extensions)
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

    def dataset(paths: Sequence[Path], count: int) -> Dataset:
        if audio:
            return AudioCropDataset(
                paths,
                crop_seconds=config.crop_seconds,
                sample_rate=sample_rate,
                crops_per_epoch=count,
                preload=config.preload,
            )
        return FeatureCropDataset(paths, crop_frames=config.crop_frames, crops_per_epoch=count)

    if cache:
        assert stats is not None
        train_set: Dataset = FeatureCropDataset(
            list(stats.frames), crop_frames=frames_per_crop, crops_per_epoch=config.batch_size * config.max_steps
        )
        train_loader = _loader(train_set, config, key="frames")
    else:
        train_loader = _loader(dataset(files, config.batch_size * config.max_steps), config)
    val_loader = None
    if validation is not None:
        held_out = read_manifest(validation, extensions=extensions, splits=("valid", "test"))
        val_loader = _loader(dataset(held_out, 4 * config.batch_size), config)

    task = RVQTrainingTask(model)
    module = LightningTask(task, optimizer=OptimizerConfig(lr=config.lr), metadata={"model": model.config_dict()})
    checkpoints = ModelCheckpoint(
        dirpath=out / "checkpoints", save_last=True, every_n_train_steps=config.checkpoint_every, save_top_k=1
    )
    trainer = L.Trainer(
        max_steps=config.max_steps,
        accelerator=config.accelerator,
        devices=config.devices,
        precision=config.precision,  # type: ignore[arg-type]  # a Lightning precision name, validated by Lightning
        logger=CSVLogger(out, name="logs"),
        callbacks=[checkpoints],
        log_every_n_steps=config.log_every,
        val_check_interval=min(config.val_every, config.max_steps) if val_loader is not None else None,
        check_val_every_n_epoch=None if val_loader is not None else 1,
        limit_val_batches=4 if val_loader is not None else 0,
        enable_progress_bar=progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    start = time.perf_counter()
    trainer.fit(module, train_loader, val_loader, **fit_checkpoint_kwargs(last if resume else None))
    seconds = time.perf_counter() - start
    model.eval()
    tokenizer_dir = out / "tokenizer"
    model.save_pretrained(tokenizer_dir)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    return TrainingResult(
        tokenizer_dir=tokenizer_dir,
        checkpoint_dir=out / "checkpoints",
        steps=trainer.global_step,
        seconds=seconds,
        statistics_seconds=stats_seconds,
        final_metrics=metrics,
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
    files = read_manifest(train)
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


__all__ = [
    "AudioCropDataset",
    "FeatureCropDataset",
    "StatisticsResult",
    "TokenizerTrainingConfig",
    "TrainingResult",
    "collate_padded",
    "compute_statistics",
    "fit_baseline",
    "read_manifest",
    "train_tokenizer",
]
