"""Training MuQ-MuLan on (audio, caption) pairs.

* Data: corpus manifests (:mod:`muqkit.data.manifest`); each item gives a random clip of ``clip_seconds`` and a
  caption, taken from a ``caption`` label or drawn from varied templates over its metadata
  (:func:`muqkit.mulan.captions.caption_from_metadata`), a new one each time the item is seen.
* Task: :class:`MuLanTask`, a plain module whose ``training_step(batch)`` returns the decoupled
  contrastive loss (latents gathered across ranks under DDP) and its accuracies; Lightning runs it through
  :class:`muqkit.train.lightning.LightningTask` (mixed precision, checkpoints, resume, several devices).
* Model: built from a preset or config, the audio backbone initialised from a pretrained MuQ checkpoint,
  each tower's backbone (or whole tower) optionally frozen.
"""

from __future__ import annotations

import json
import logging
import os
import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from muqkit.data.loader import ResumableSampler, absolute_records
from muqkit.data.manifest import AudioRecord
from muqkit.mulan.captions import caption_from_metadata
from muqkit.mulan.config import MuQMuLanConfig, mulan_preset
from muqkit.mulan.loss import ContrastiveLoss
from muqkit.mulan.model import MuQMuLan
from muqkit.mulan.text import TextBatch

if TYPE_CHECKING:
    from muqkit.train.harness import RunConfig

log = logging.getLogger(__name__)

FREEZE_CHOICES = ("audio_backbone", "text_backbone", "audio", "text")
# What a training run writes in its folder (``overwrite`` deletes these, nothing else).
RUN_ENTRIES = ("run_config.json", "checkpoints", "logs", "model", "model-best", "lightning_logs")


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CaptionedClip:
    """One training example: a clip, its valid samples and a caption."""

    wav: torch.Tensor
    length: int
    caption: str


class CaptionedAudioDataset(Dataset[CaptionedClip]):
    """Clips of manifest items with captions.

    For training (``random_crop``), item ``i`` is the ``i``-th draw of a run: draws go through the items
    epoch by epoch, each epoch in an order seeded by ``(seed, epoch)``, and the clip's start and caption
    template come from a generator seeded by ``(seed, i)``. The data of a run is then a function of the
    draw counter alone, which a :class:`~muqkit.data.loader.ResumableSampler` restarts at the
    checkpoint's step (exact resume, any number of workers and ranks).

    Args:
        records: the items (one manifest's split).
        root: folder the records' relative paths start from.
        clip_samples: samples per clip; shorter items are zero-padded (``length`` says how much is real).
        sample_rate: decoding rate.
        random_crop: draw the clip's start and the caption template at random (training); otherwise item
            ``i`` is record ``i``, its clip starts at 0 and its caption is the first template (validation).
        seed: seed of the random draws.
        epoch_items: draws per epoch (training; default all records). Set to a multiple of the global
            batch so that no batch straddles two epochs (and holds an item twice).
    """

    def __init__(
        self,
        records: Sequence[AudioRecord],
        root: str | os.PathLike[str],
        *,
        clip_samples: int,
        sample_rate: int = 24000,
        random_crop: bool = True,
        seed: int = 0,
        epoch_items: int | None = None,
    ) -> None:
        if not records:
            raise ValueError("CaptionedAudioDataset needs at least one record")
        self.records = list(records)
        self.root = Path(root)
        self.clip_samples = clip_samples
        self.sample_rate = sample_rate
        self.random_crop = random_crop
        self.seed = seed
        self.epoch_items = len(self.records) if epoch_items is None else epoch_items
        if not 1 <= self.epoch_items <= len(self.records):
            raise ValueError(f"epoch_items must be in [1, {len(self.records)}], got {self.epoch_items}")

    def __len__(self) -> int:
        return len(self.records) if not self.random_crop else 1 << 62  # training: indexed by the draw counter

    def locate(self, index: int) -> tuple[int, random.Random | None]:
        """(record, generator of the clip start and caption) of draw ``index``."""
        if not self.random_crop:
            return index, None
        epoch, position = divmod(index, self.epoch_items)
        order = np.random.default_rng((self.seed, epoch)).permutation(len(self.records))
        return int(order[position]), random.Random(f"{self.seed}:{index}")

    def __getitem__(self, index: int) -> CaptionedClip:
        from muqkit.audio.io import load_audio

        item, rng = self.locate(index)
        record = self.records[item]
        wav = load_audio(record.resolve(self.root), sample_rate=self.sample_rate)
        if wav.shape[0] > self.clip_samples:
            start = rng.randrange(wav.shape[0] - self.clip_samples + 1) if rng is not None else 0
            wav = wav[start : start + self.clip_samples]
        length = int(wav.shape[0])
        if length < self.clip_samples:
            wav = torch.nn.functional.pad(wav, (0, self.clip_samples - length))
        return CaptionedClip(wav=wav, length=length, caption=caption_from_metadata(record.labels, rng))


class CaptionCollator:
    """Stack clips and tokenise captions with the model's tokenizer (picklable for worker processes)."""

    def __init__(self, tokenizer: Any, max_length: int) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length

    def __call__(self, items: Sequence[CaptionedClip]) -> dict[str, torch.Tensor]:
        encoded = self.tokenizer(
            [it.caption for it in items],
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        return {
            "wavs": torch.stack([it.wav for it in items]),
            "lengths": torch.tensor([it.length for it in items]),
            "input_ids": encoded["input_ids"],
            "attention_mask": encoded["attention_mask"],
        }


# --------------------------------------------------------------------------------------------------
# Task
# --------------------------------------------------------------------------------------------------
class MuLanTask(nn.Module):
    """Contrastive training of a :class:`MuQMuLan` (a plain module: no Lightning here).

    Args:
        model: the model to train.
        loss: the contrastive loss (decoupled and gathered across ranks by default).
        freeze: parts kept fixed: ``audio_backbone``, ``text_backbone``, ``audio`` (whole tower and its
            latent projection), ``text``. Frozen backbones also stay in eval mode (no dropout, no
            BatchNorm statistics updates).
    """

    def __init__(
        self, model: MuQMuLan, *, loss: ContrastiveLoss | None = None, freeze: Sequence[str] = ()
    ) -> None:
        super().__init__()
        unknown = sorted(set(freeze) - set(FREEZE_CHOICES))
        if unknown:
            raise ValueError(f"unknown parts to freeze {unknown}; choose from {FREEZE_CHOICES}")
        self.model = model
        self.loss = loss or ContrastiveLoss()
        self.freeze = tuple(freeze)
        frozen: list[nn.Module] = []
        if "audio" in freeze:
            frozen += [model.audio, model.audio_to_latents]
        elif "audio_backbone" in freeze:
            frozen.append(model.audio.backbone)
        if "text" in freeze:
            frozen += [model.text, model.text_to_latents]
        elif "text_backbone" in freeze:
            frozen.append(model.text.backbone)
        self._frozen = frozen
        for module in frozen:
            module.requires_grad_(False)
        if "audio" in freeze and "text" in freeze:
            raise ValueError("freezing both towers leaves only the temperature to train")

    def train(self, mode: bool = True) -> MuLanTask:
        super().train(mode)
        for module in self._frozen:
            module.eval()
        return self

    def _step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        audio = self.model.encode_audio(batch["wavs"], batch["lengths"])
        text = self.model.encode_text(TextBatch(batch["input_ids"], batch["attention_mask"]))
        out = self.loss(audio.latents, text.latents, self.model.log_scale)
        return {
            "loss": out.loss,
            "audio_to_text_accuracy": out.audio_to_text_accuracy,
            "text_to_audio_accuracy": out.text_to_audio_accuracy,
            "temperature": out.scale,
        }

    def training_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Loss and accuracies of one batch (``wavs``, ``lengths``, ``input_ids``, ``attention_mask``)."""
        return self._step(batch)

    @torch.no_grad()
    def validation_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self._step(batch)


# --------------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MuLanTrainConfig:
    """A training run.

    Attributes:
        manifests: corpus manifests (JSONL) with the (audio, metadata/caption) items.
        out: output folder (Lightning checkpoints under ``checkpoints/``, the final model under ``model/``,
            the one with the lowest validation loss under ``model-best/``).
        preset: model preset (:func:`muqkit.mulan.config.mulan_preset`) when neither ``model`` nor
            ``model_config`` is given.
        model_config: path of a JSON :class:`MuQMuLanConfig` (overrides ``preset``), read when the config
            is made.
        model: the architecture, a :class:`~muqkit.mulan.config.MuQMuLanConfig` (a dict of its fields is
            converted; overrides ``model_config`` and ``preset``); ``None``: built from those when the
            config is made, with ``muq``, ``audio_layer``, ``lag_pooling`` and ``text_backbone`` applied.
            Stays ``None`` with ``init`` (the checkpoint's architecture is used).
        muq: pretrained MuQ checkpoint (folder or Hub id) for the audio backbone; ``None`` keeps the preset's.
        audio_layer: the backbone hidden state that feeds the audio tower (``None``: the model's, ``-1``:
            the last; ``0``: the conv front end; ``k``: Conformer layer ``k``).
        lag_pooling: longest lag (backbone frames) of the audio tower's lag pooling, a muqkit extension
            that keeps rhythm (``None``: the model's; ``0``: none, the official tower).
        text_backbone: text encoder name (Hugging Face id/folder, or ``all-MiniLM-L6-v2``).
        init: start from a MuQ-MuLan checkpoint (official or muqkit format) instead of a preset.
        freeze: parts kept fixed (see :class:`MuLanTask`).
        train_split, valid_split: manifest splits used.
        clip_seconds: training clip length (default: the model's).
        batch_size: pairs per device and step.
        max_steps: optimiser steps.
        lr: peak learning rate (Adam), with ``warmup_steps`` linear warm-up and cosine decay.
        decoupled: decoupled contrastive loss (the official setting).
        precision: Lightning precision (``32``, ``bf16-mixed``, ``16-mixed``).
        accelerator, devices: Lightning devices (several devices use DDP with gathered negatives).
        num_workers: data-loading processes.
        val_every: validation and checkpoint interval in steps.
        seed: global seed.
        resume: resume from ``out/checkpoints/last.ckpt`` when it exists (loaded with ``weights_only=True``).
        overwrite: replace a run already in ``out`` that is not resumed (otherwise such a folder is refused).
    """

    manifests: tuple[str, ...]
    out: str
    preset: str = "tiny"
    model_config: str | None = None
    muq: str | None = None
    audio_layer: int | None = None
    lag_pooling: int | None = None
    text_backbone: str | None = None
    init: str | None = None
    freeze: tuple[str, ...] = ("text_backbone",)
    train_split: str = "train"
    valid_split: str = "valid"
    clip_seconds: float | None = None
    batch_size: int = 16
    max_steps: int = 1000
    lr: float = 3e-4
    warmup_steps: int = 50
    decoupled: bool = True
    precision: str = "32"
    accelerator: str = "auto"
    devices: int = 1
    num_workers: int = 0
    val_every: int = 200
    seed: int = 0
    resume: bool = True
    overwrite: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    model: MuQMuLanConfig | Mapping[str, Any] | None = None  # a MuQMuLanConfig after __post_init__ (None: init)

    def __post_init__(self) -> None:
        if not self.manifests:
            raise ValueError("MuLanTrainConfig.manifests: give at least one manifest")
        if self.batch_size < 2:
            raise ValueError("MuLanTrainConfig.batch_size must be >= 2 (contrastive negatives)")
        if self.max_steps < 1 or self.val_every < 1:
            raise ValueError("MuLanTrainConfig.max_steps and val_every must be >= 1")
        if self.init is not None:
            if self.model is not None:
                raise ValueError("MuLanTrainConfig: give model or init (a checkpoint has its architecture), not both")
            return
        object.__setattr__(self, "model", self._architecture())

    def _architecture(self) -> MuQMuLanConfig:
        """``model`` (or ``model_config``, or ``preset``) with the backbone and tower overrides applied (each
        one idempotent, so that a config rebuilt from its own ``asdict`` is the same)."""
        if isinstance(self.model, MuQMuLanConfig):
            mconf = self.model
        elif isinstance(self.model, Mapping):
            mconf = MuQMuLanConfig.from_dict(dict(self.model))
        elif self.model is not None:
            raise ValueError(
                "MuLanTrainConfig.model must be a MuQMuLanConfig or a dict of its fields, "
                f"got {type(self.model).__name__}"
            )
        elif self.model_config is not None:
            try:
                with open(self.model_config, encoding="utf-8") as fh:
                    mconf = MuQMuLanConfig.from_dict(json.load(fh))
            except (OSError, json.JSONDecodeError) as exc:
                raise ValueError(f"MuLanTrainConfig.model_config: cannot read {self.model_config}: {exc}") from None
        else:
            mconf = mulan_preset(self.preset, text_backbone=self.text_backbone)
        if self.muq is not None and (mconf.audio.backbone, mconf.audio.backbone_config) != (self.muq, None):
            mconf = replace(mconf, audio=replace(mconf.audio, backbone=self.muq, backbone_config=None))
        if self.audio_layer is not None:
            mconf = replace(mconf, audio=replace(mconf.audio, layer=self.audio_layer))
        if self.lag_pooling is not None:
            mconf = replace(mconf, audio=replace(mconf.audio, lag_pooling=self.lag_pooling))
        if self.text_backbone is not None and mconf.text.backbone != self.text_backbone:
            mconf = replace(mconf, text=replace(mconf.text, backbone=self.text_backbone, backbone_config=None))
        return mconf

    @property
    def architecture(self) -> MuQMuLanConfig | None:
        """The typed architecture ``model`` (``None`` when the run starts from ``init``)."""
        assert self.model is None or isinstance(self.model, MuQMuLanConfig)
        return self.model

    def run_config(self) -> RunConfig:
        """The shared run settings (:class:`muqkit.train.harness.RunConfig`): the run resumes when ``resume``
        and ``out`` holds a checkpoint (and ``overwrite`` is off)."""
        from muqkit.train.harness import RunConfig

        last = Path(self.out) / "checkpoints" / "last.ckpt"
        resuming = self.resume and not self.overwrite and last.is_file()
        return RunConfig(
            out=self.out, seed=self.seed, max_steps=self.max_steps, accelerator=self.accelerator, devices=self.devices,
            strategy="ddp" if self.devices > 1 else "auto", precision=self.precision, resume=resuming,
            overwrite=self.overwrite, log_every=min(10, self.max_steps), checkpoint_every=self.val_every,
        )  # fmt: skip


def build_model(config: MuLanTrainConfig) -> MuQMuLan:
    """The model a run starts from: ``config.init``'s checkpoint, or a new model of ``config.architecture``."""
    mconf = config.architecture
    if mconf is None:
        assert config.init is not None
        model = MuQMuLan.from_pretrained(config.init)
        model.train()
        return model
    load = config.muq is not None or mconf.text.backbone_config is None
    torch.manual_seed(config.seed)
    return MuQMuLan.from_config(mconf, load_backbone_weights=load)


def train_mulan(config: MuLanTrainConfig) -> Path:
    """Train and save the model to ``out/model``; returns that folder."""
    from muqkit.train.harness import fit, start_run, write_run_settings
    from muqkit.train.lightning import OptimizerConfig

    run = config.run_config()
    start = start_run(run, owned=RUN_ENTRIES)
    out = start.out
    write_run_settings(out, {"config": asdict(config)})
    model = build_model(config)
    clip_samples = int(round(model.sample_rate * (config.clip_seconds or model.clip_secs)))
    train_records = absolute_records(config.manifests, split=config.train_split)
    root = Path(".")
    if len(train_records) < config.batch_size:
        raise ValueError(f"{len(train_records)} training items, fewer than one batch of {config.batch_size}")
    valid_records = absolute_records(config.manifests, split=config.valid_split)
    collate = CaptionCollator(model.text.tokenizer, model.text.max_length)
    global_batch = config.batch_size * config.devices
    if len(train_records) < global_batch:
        raise ValueError(f"{len(train_records)} training items, fewer than one global batch of {global_batch}")
    train_set = CaptionedAudioDataset(
        train_records, root, clip_samples=clip_samples, sample_rate=model.sample_rate, seed=config.seed,
        epoch_items=len(train_records) // global_batch * global_batch,
    )  # fmt: skip
    sampler = ResumableSampler(batch_size=config.batch_size, num_batches=config.max_steps, start_batch=start.start_step)
    train_loader = DataLoader(
        train_set, batch_size=config.batch_size, sampler=sampler, collate_fn=collate,
        num_workers=config.num_workers, persistent_workers=config.num_workers > 0,
        generator=torch.Generator().manual_seed(config.seed),  # the loader draws its seeds here, not globally
    )  # fmt: skip
    val_loader = None
    if len(valid_records) >= 2:
        val_loader = DataLoader(
            CaptionedAudioDataset(
                valid_records,
                root,
                clip_samples=clip_samples,
                sample_rate=model.sample_rate,
                random_crop=False,
            ),
            batch_size=min(config.batch_size, len(valid_records)),
            shuffle=False,
            collate_fn=collate,
            num_workers=config.num_workers,
            generator=torch.Generator().manual_seed(config.seed + 1),
        )
    task = MuLanTask(model, loss=ContrastiveLoss(decoupled=config.decoupled), freeze=config.freeze)
    optimizer = OptimizerConfig(
        name="adamw",
        lr=config.lr,
        weight_decay=0.01,
        warmup_steps=config.warmup_steps,
        decay="cosine" if config.max_steps > config.warmup_steps else "constant",
        total_steps=config.max_steps,
    )
    fitted = fit(
        task, train_loader, val_loader, run, start, optimizer=optimizer,
        metadata={"mulan_config": model.config.to_dict(), "train_config": asdict(config)},
        val_every=min(config.val_every, config.max_steps), keep_best=True,
    )  # fmt: skip
    final = out / "model"
    if fitted.is_global_zero:
        model.eval()
        model.save_pretrained(final)
        log.info("saved the model to %s", final)
        best = fitted.best_checkpoint
        if best:
            export_checkpoint(fitted.module, model, best, out / "model-best")
            log.info("saved the best model on validation (%s) to %s", Path(best).name, out / "model-best")
    return final


def export_checkpoint(
    module: torch.nn.Module, model: MuQMuLan, checkpoint: str | os.PathLike[str], folder: Path
) -> Path:
    """Save the ``model`` weights held in a Lightning ``checkpoint`` of ``module`` to ``folder`` (the
    training run's model is left as it is)."""
    prefix = next(name for name, sub in module.named_modules() if sub is model) + "."
    from muqkit.hub.weights import safe_torch_load

    state = safe_torch_load(checkpoint)["state_dict"]
    current = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict({k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)})
    try:
        return model.save_pretrained(folder)
    finally:
        model.load_state_dict(current)
