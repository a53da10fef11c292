"""Iterative refinement: the next MuQ learns to predict a latent RVQ of the previous one's features.

Four steps, each runnable alone and each resumable (outputs are written atomically and skipped when
present)::

    1. extract_latents    previous model, layer L     -> out/latents/*.npy + latents.txt (feature manifest)
    2. train_latent_rvq   latents                     -> out/rvq/tokenizer      (8 x 1024 x 16 by default)
    3. extract_labels     previous model + latent RVQ -> out/labels/labels-00000.safetensors ... + labels.json
    4. train_pretrain     labels                      -> out/pretrain/model     (the next iteration)

The recipe uses layer 9 of 12; :func:`default_layer` scales that to other depths (3/4 of the way up).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from muqkit.atomic import atomic_path
from muqkit.audio.io import read_crop
from muqkit.audio.mel import FRAME_RATE, SAMPLE_RATE
from muqkit.data.label_shards import (
    LABELS_INDEX,
    label_dtype,
    shard_name,
    write_label_index,
    write_label_shard,
)
from muqkit.data.loader import load_records
from muqkit.ssl.muq import MuQ
from muqkit.ssl.pretrain import LatentTargets

log = logging.getLogger(__name__)

def default_layer(depth: int) -> int:
    """The refinement layer for an encoder of ``depth`` layers (9 for 12, 6 for 8, 2 for 2)."""
    return max(1, round(depth * 3 / 4))


def _windows(audio: torch.Tensor, window_samples: int) -> list[torch.Tensor]:
    pieces = [audio[i : i + window_samples] for i in range(0, len(audio), window_samples)]
    if len(pieces) > 1 and len(pieces[-1]) < 960:
        pieces = pieces[:-1]
    return pieces


@torch.no_grad()
def _encode_file(fn: Any, audio: torch.Tensor, window_samples: int) -> torch.Tensor:
    """Run ``fn(wavs (1, S), lengths) -> (1, ..., frames)`` window by window and join along frames."""
    outs = [fn(piece.unsqueeze(0), torch.tensor([len(piece)]))[0] for piece in _windows(audio, window_samples)]
    return torch.cat(outs, dim=-1)


def _window_samples(window_seconds: float, frame_samples: int = SAMPLE_RATE // FRAME_RATE) -> int:
    return max(1, round(window_seconds * SAMPLE_RATE / frame_samples)) * frame_samples


# --------------------------------------------------------------------------------------------------
# 1. latents
# --------------------------------------------------------------------------------------------------
def extract_latents(
    model: str | os.PathLike[str] | MuQ,
    manifests: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    layer: int | None = None,
    splits: Sequence[str] | None = ("train", "pool"),
    max_seconds: float | None = None,
    window_seconds: float = 30.0,
) -> Path:
    """Write each record's layer-``layer`` hidden states as ``out_dir/<id>.npy`` (frames, dim) float32.

    Args:
        model: the previous iteration (folder or loaded model).
        manifests: JSONL manifests.
        out_dir: output folder; existing files are kept (resume).
        layer: hidden-state index (default :func:`default_layer`).
        splits: manifest splits to use.
        max_seconds: stop after this much audio (the latent RVQ needs a sample, not the corpus).
        window_seconds: longer files are encoded in windows of this length.

    Returns:
        ``out_dir/latents.txt``, a feature manifest for :func:`train_latent_rvq`.
    """
    muq = model if isinstance(model, MuQ) else MuQ.from_pretrained(model)
    muq.eval()
    layer = default_layer(muq.config.encoder_depth) if layer is None else layer
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    window = _window_samples(window_seconds)

    def fn(wavs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        h = muq(wavs, lengths=lengths, num_layers=layer, output_hidden_states=False).last_hidden_state
        return h.float().transpose(1, 2)  # (1, dim, frames)

    names, seen = [], 0.0
    for record, path in sorted(load_records(manifests, splits=splits), key=lambda p: p[0].id):
        if max_seconds is not None and seen >= max_seconds:
            break
        target = out / f"{_safe(record.id)}.npy"
        if not target.is_file():
            audio = read_crop(path, muq.config.sample_rate, 0, 1 << 40)
            if len(audio) < muq.min_samples:
                continue
            latents = _encode_file(fn, audio, window).T.contiguous().numpy()  # (frames, dim)
            with atomic_path(target, suffix=".npy") as tmp:
                np.save(tmp, latents)
        names.append(target.name)
        seen += record.duration
    manifest = out / "latents.txt"
    manifest.write_text("".join(f"{n}\n" for n in names))
    (out / "latents.json").write_text(json.dumps({"layer": layer, "dim": muq.config.encoder_dim}, indent=2) + "\n")
    return manifest


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


# --------------------------------------------------------------------------------------------------
# 2. latent RVQ
# --------------------------------------------------------------------------------------------------
def train_latent_rvq(
    latents: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    num_codebooks: int = 8,
    codebook_size: int = 1024,
    codebook_dim: int = 16,
    steps: int = 2000,
    batch_size: int = 32,
    crop_frames: int = 125,
    lr: float = 1e-4,
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """Train a latent RVQ (same losses as Mel-RVQ) on a feature manifest; returns the tokenizer folder."""
    from muqkit.data.files import list_files, read_features
    from muqkit.train.tokenizer import TokenizerTrainingConfig, train_tokenizer

    files = list_files(latents, extensions=(".npy",))
    dim = int(read_features(files[0]).shape[1])
    config = TokenizerTrainingConfig(
        kind="latent_rvq", crop_frames=crop_frames, batch_size=batch_size, max_steps=steps, lr=lr, seed=seed,
        checkpoint_every=max(steps, 1), log_every=max(1, min(10, steps)),
        model={"input_dim": dim, "num_codebooks": num_codebooks, "codebook_size": codebook_size,
               "codebook_dim": codebook_dim},
    )  # fmt: skip
    result = train_tokenizer(latents, out_dir, config, overwrite=True, progress=progress)  # redone whole
    return result.tokenizer_dir


# --------------------------------------------------------------------------------------------------
# 3. labels
# --------------------------------------------------------------------------------------------------
@torch.no_grad()
def extract_labels(
    targets: Any,
    manifests: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    splits: Sequence[str] | None = None,
    shard_items: int = 256,
    window_seconds: float = 30.0,
    sample_rate: int = 24000,
) -> Path:
    """Pre-extract target codes of every record to sharded safetensors files (resumable).

    Shard ``k`` holds the records ``k * shard_items ..`` in id order, as ``{id: (num_codebooks, frames)}``
    int16 (int32 for codebooks over 32767 codes); finished shards are skipped on a rerun.

    Args:
        targets: any tokenizer with ``encode(wavs, lengths)`` (e.g. :class:`LatentTargets`).
        manifests: JSONL manifests.
        out_dir: label folder.
        splits: manifest splits (``None``: every record, so validation crops have labels too).
        shard_items: records per shard.
        window_seconds: longer files are tokenized in windows of this length.
        sample_rate: audio rate the targets expect.

    Returns:
        ``out_dir``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    records = sorted(load_records(manifests, splits=splits), key=lambda p: p[0].id)
    num_codebooks, codebook_size = int(targets.num_codebooks), int(targets.codebook_size)
    dtype = label_dtype(codebook_size)
    window = _window_samples(window_seconds)
    shards = []
    for k in range(0, len(records), shard_items):
        name = shard_name(k // shard_items)
        shards.append(name)
        if (out / name).is_file():
            continue
        tensors = {}
        for record, path in records[k : k + shard_items]:
            audio = read_crop(path, sample_rate, 0, 1 << 40)
            if len(audio) < 960:
                continue
            codes = _encode_file(targets.encode, audio, window)  # (N, frames)
            tensors[record.id] = codes.to(dtype).contiguous()
        write_label_shard(out / name, tensors)
        log.info("labels: %s (%d records)", name, len(tensors))
    meta = {
        "num_codebooks": num_codebooks, "codebook_size": codebook_size,
        "frame_rate": float(getattr(targets, "frame_rate", 25.0)), "shards": shards, "records": len(records),
    }  # fmt: skip
    write_label_index(out, meta)
    return out


# --------------------------------------------------------------------------------------------------
# All steps
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RefineConfig:
    """One refinement iteration.

    Attributes:
        layer: hidden state of the previous model to tokenize (``None``: :func:`default_layer`).
        latent_seconds: audio whose latents train the RVQ (``None``: all).
        num_codebooks, codebook_size, codebook_dim: latent RVQ (recipe: 8 x 1024 x 16).
        rvq_steps, rvq_batch_size, rvq_lr: latent RVQ training.
        shard_items: records per label shard.
        pretrain: settings of the next model's pretraining (``labels`` is set by :func:`refine`).
    """

    layer: int | None = None
    latent_seconds: float | None = None
    num_codebooks: int = 8
    codebook_size: int = 1024
    codebook_dim: int = 16
    rvq_steps: int = 2000
    rvq_batch_size: int = 32
    rvq_lr: float = 1e-4
    shard_items: int = 256
    pretrain: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RefineResult:
    """Folders :func:`refine` wrote."""

    latents: Path
    tokenizer: Path
    labels: Path
    model_dir: Path


REFINE_STEPS = ("latents", "rvq", "labels", "train")


def refine_step(
    step: str,
    model: str | os.PathLike[str] | MuQ,
    manifests: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    config: RefineConfig,
    *,
    progress: bool = True,
) -> Path:
    """Run one step of :func:`refine` alone (redone even when its output exists); returns what it wrote.

    Args:
        step: ``"latents"``, ``"rvq"``, ``"labels"`` or ``"train"`` (each reads the previous steps' outputs
            under ``out_dir``).
    """
    if step not in REFINE_STEPS:
        raise ValueError(f"refine step must be one of {', '.join(REFINE_STEPS)}, got {step!r}")
    out = Path(out_dir)
    previous = model if isinstance(model, MuQ) else MuQ.from_pretrained(model)
    layer = default_layer(previous.config.encoder_depth) if config.layer is None else config.layer
    if step == "latents":
        return extract_latents(previous, manifests, out / "latents", layer=layer, max_seconds=config.latent_seconds)
    if step == "rvq":
        return _latent_rvq(out, config, progress)
    if step == "labels":
        return _labels(previous, layer, manifests, out, config)
    return _next_model(previous, manifests, out, config, progress)


def _latent_rvq(out: Path, config: RefineConfig, progress: bool) -> Path:
    return train_latent_rvq(
        out / "latents" / "latents.txt", out / "rvq", num_codebooks=config.num_codebooks,
        codebook_size=config.codebook_size, codebook_dim=config.codebook_dim, steps=config.rvq_steps,
        batch_size=config.rvq_batch_size, lr=config.rvq_lr, seed=int(config.pretrain.get("seed", 0)),
        progress=progress,
    )  # fmt: skip


def _labels(previous: MuQ, layer: int, manifests: Sequence[str | os.PathLike[str]], out: Path,
            config: RefineConfig) -> Path:  # fmt: skip
    from muqkit.tokenizer.base import load_tokenizer

    targets = LatentTargets(previous, layer, load_tokenizer(out / "rvq" / "tokenizer"))
    return extract_labels(targets, manifests, out / "labels", shard_items=config.shard_items)


def _next_model(
    previous: MuQ, manifests: Sequence[str | os.PathLike[str]], out: Path, config: RefineConfig, progress: bool
) -> Path:
    from muqkit.train.pretrain import PretrainTrainingConfig, train_pretrain

    settings = {**config.pretrain, "labels": str(out / "labels"), "tokenizer": None}
    settings.setdefault("progress", progress)
    if settings.get("mel_stats", "auto") == "auto" and "mel_mean" not in settings.get("model", {}):
        # The previous iteration normalised with this corpus's statistics: the next one keeps them.
        c = previous.config
        settings["model"] = {**settings.get("model", {}), "mel_mean": c.mel_mean, "mel_std": c.mel_std}
    pretrain = PretrainTrainingConfig.from_dict(settings)
    return train_pretrain(manifests, out / "pretrain", pretrain, overwrite=True).model_dir  # redone whole


def refine(
    model: str | os.PathLike[str],
    manifests: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    config: RefineConfig,
    *,
    progress: bool = True,
) -> RefineResult:
    """Run the four steps; steps whose output exists are skipped (so an interrupted run resumes)."""
    out = Path(out_dir)
    previous = MuQ.from_pretrained(model)
    layer = default_layer(previous.config.encoder_depth) if config.layer is None else config.layer
    latents = extract_latents(previous, manifests, out / "latents", layer=layer, max_seconds=config.latent_seconds)
    tokenizer_dir = out / "rvq" / "tokenizer"
    if not (tokenizer_dir / "config.json").is_file():
        tokenizer_dir = _latent_rvq(out, config, progress)
    labels_dir = out / "labels"
    if not (labels_dir / LABELS_INDEX).is_file():
        _labels(previous, layer, manifests, out, config)
    model_dir = out / "pretrain" / "model"
    if not (out / "pretrain" / "pretrain.json").is_file():  # written last: a finished step is kept
        model_dir = _next_model(previous, manifests, out, config, progress)
    return RefineResult(latents=latents.parent, tokenizer=tokenizer_dir, labels=labels_dir, model_dir=model_dir)


__all__ = [
    "RefineConfig",
    "RefineResult",
    "default_layer",
    "extract_labels",
    "extract_latents",
    "refine",
    "refine_step",
    "train_latent_rvq",
]
