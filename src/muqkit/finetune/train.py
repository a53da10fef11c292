"""Fine-tune MuQ on a probing task: the backbone frozen, with LoRA adapters, or entirely.

``finetune(model, task, out, config)`` trains a :class:`~muqkit.finetune.model.TaskModel` on the task's training
split through the training harness (:mod:`muqkit.train.harness`: run folder, resume, random state; an
epoch-measured run), keeps the epoch with the lowest validation loss (early stopping after ``patience``
epochs), scores the test split with the probes' metrics and writes::

    out/model/        the backbone, adapters merged: a plain MuQ checkpoint (``MuQ.from_pretrained``)
    out/adapter/      the LoRA adapter alone (mode ``lora``)
    out/head.json, out/head.safetensors   the task head
    out/finetune.json settings, trainable parameters, wall time, validation and test metrics
    out/checkpoints/  Lightning checkpoints (``last.ckpt`` resumes an interrupted run)
    out/run_config.json  the settings that shape the weights (a resumed run must give the same ones)

Learning rates: the head has its own (``head_lr``); backbone layer ``i`` of ``L`` gets ``lr * layer_decay ** (L - i)``
(the convolutional front end counts as layer 0), so lower layers move less.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from muqkit.audio.mel import SAMPLE_RATE
from muqkit.audio.tensors import lengths_to_mask
from muqkit.data.manifest import AudioRecord
from muqkit.encoder.conv import batch_norms
from muqkit.finetune.lora import LoRAConfig, trainable_parameters
from muqkit.finetune.model import HeadSpec, TaskHead, TaskModel, save_head

logger = logging.getLogger(__name__)

RUN_SETTINGS = "run_config.json"
FINETUNE_OUTPUTS = ("model", "adapter", "head.json", "head.safetensors", "finetune.json", "checkpoints", RUN_SETTINGS)
MODES: tuple[str, ...] = ("freeze", "lora", "full")
IGNORE = -1
#: The settings that shape a run's weights, in the order they are compared on resume, with their options.
RESUME_SETTINGS: dict[str, str] = {
    "task": "--task", "mode": "--mode", "head": "--head", "backbone": "--model", "lora_rank": "--lora-rank",
    "lora_alpha": "--lora-alpha", "lora_targets": "--lora-targets",
}  # fmt: skip


@dataclass(frozen=True)
class FineTuneConfig:
    """Settings of a fine-tuning run.

    Attributes:
        mode: ``freeze`` (head only), ``lora`` (adapters and head) or ``full`` (everything).
        head: ``linear`` or ``mlp``.
        lr: backbone learning rate of the top layer.
        head_lr: learning rate of the head and the layer weights.
        layer_decay: layer-wise learning-rate decay (1: none).
        batch_size: clips per step.
        max_epochs: upper bound on epochs.
        patience: epochs without a lower validation loss before stopping.
        precision: ``"32"`` or ``"bf16"`` (bf16 autocast).
        max_seconds: clips are cut to this length (from their start).
        lora: adapters of the ``lora`` mode.
        seed: seed of initialisation and shuffling.
    """

    mode: str = "lora"
    head: str = "linear"
    lr: float = 1e-4
    head_lr: float = 1e-3
    layer_decay: float = 0.9
    batch_size: int = 8
    max_epochs: int = 10
    patience: int = 3
    precision: str = "32"
    max_seconds: float = 10.0
    lora: LoRAConfig = field(default_factory=LoRAConfig)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"FineTuneConfig.mode must be one of {MODES}, got {self.mode!r}")
        if self.head not in ("linear", "mlp"):
            raise ValueError(f"FineTuneConfig.head must be 'linear' or 'mlp', got {self.head!r}")
        for name in ("lr", "head_lr", "max_seconds"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):  # NaN passes `value <= 0`
                raise ValueError(f"FineTuneConfig.{name} must be a finite number > 0, got {value}")
        if not (math.isfinite(self.layer_decay) and 0 < self.layer_decay <= 1):
            raise ValueError(f"FineTuneConfig.layer_decay must be in (0, 1], got {self.layer_decay}")
        if self.batch_size < 1 or self.max_epochs < 1 or self.patience < 1:
            raise ValueError("FineTuneConfig: batch_size, max_epochs and patience >= 1 required")
        if self.precision not in ("32", "bf16"):
            raise ValueError(f"FineTuneConfig.precision must be '32' or 'bf16', got {self.precision!r}")


@dataclass(frozen=True)
class FineTuneResult:
    """What a run produced.

    Attributes:
        out: the output folder.
        val: validation metrics of the kept weights.
        test: test metrics.
        trainable: trainable parameters (backbone and head).
        seconds: wall time of training.
        epochs: epochs run.
    """

    out: Path
    val: dict[str, float]
    test: dict[str, float]
    trainable: int
    seconds: float
    epochs: int


# --------------------------------------------------------------------------------------------------
# data


@dataclass(frozen=True)
class _Task:
    """A clip task (:class:`~muqkit.eval.tasks.TaskData`) or a frame task, seen the same way."""

    name: str
    kind: str
    num_outputs: int
    classes: tuple[str, ...]
    root: Path
    records: dict[str, tuple[AudioRecord, ...]]
    clip_targets: dict[str, np.ndarray] | None
    frame_task: Any = None


def _as_task(task: Any) -> _Task:
    from muqkit.eval.frame_tasks import FrameTaskData
    from muqkit.eval.tasks import TaskData

    if isinstance(task, FrameTaskData):
        classes: tuple[str, ...] = ()
        if task.spec.name == "chord":
            from muqkit.data.labels import MAJMIN_CLASSES

            classes = MAJMIN_CLASSES
        return _Task(
            task.name, task.spec.kind, task.spec.num_outputs, classes, task.root, dict(task.records), None, task
        )
    if isinstance(task, TaskData):
        return _Task(
            task.name, task.kind, task.num_outputs, tuple(task.classes or ()), task.root, dict(task.records),
            dict(task.targets),
        )  # fmt: skip
    raise TypeError(f"need a TaskData or a FrameTaskData, got {type(task).__name__}")


class _Clips(Dataset):
    def __init__(self, task: _Task, split: str, max_samples: int, y_mean: np.ndarray | None, y_std: np.ndarray | None):
        self.task, self.split, self.max_samples = task, split, max_samples
        self.records = task.records[split]
        self.y_mean, self.y_std = y_mean, y_std

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict[str, Any]:
        from muqkit.audio.io import load_audio

        record = self.records[i]
        wav = load_audio(record.resolve(self.task.root), sample_rate=SAMPLE_RATE)[: self.max_samples]
        item: dict[str, Any] = {"wav": wav, "id": record.id}
        if self.task.clip_targets is not None:
            y = self.task.clip_targets[self.split][i]
            if self.y_mean is not None and self.y_std is not None:
                y = (y - self.y_mean) / self.y_std
            item["y"] = torch.as_tensor(np.asarray(y))
        return item


def _collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    lengths = torch.tensor([len(i["wav"]) for i in items])
    wavs = torch.zeros(len(items), int(lengths.max()))
    for k, item in enumerate(items):
        wavs[k, : len(item["wav"])] = item["wav"]
    batch: dict[str, Any] = {"wavs": wavs, "lengths": lengths, "ids": [i["id"] for i in items]}
    if "y" in items[0]:
        batch["y"] = torch.stack([i["y"] for i in items])
    return batch


def _frame_targets(
    task: _Task, ids: list[str], frames: torch.Tensor, total: int, *, widen: bool = False
) -> torch.Tensor:
    """(batch, total frames, outputs) float for events (``widen``: 0.5 next to each event, as the frame probes
    train), (batch, total frames) long (IGNORE padded) for classes."""
    from muqkit.eval.frame_probes import widen_events

    rows = []
    for item_id, n in zip(ids, frames.tolist(), strict=True):
        y = task.frame_task.targets(item_id, int(n))
        if widen:
            y = widen_events(y, np.array([0, len(y)]))
        pad = total - len(y)
        if task.kind == "events":
            rows.append(np.pad(y, ((0, pad), (0, 0))))
        else:
            rows.append(np.pad(y, (0, pad), constant_values=IGNORE))
    return torch.from_numpy(np.stack(rows))


class _FineTuneTask(nn.Module):
    """The plain training task the harness trains: loss of a batch, the layer-wise optimiser groups, and the
    backbone's training mode (a frozen backbone stays in eval mode; with LoRA its BatchNorm statistics stay
    as they were, so that the adapter alone reproduces the fine-tuned model)."""

    def __init__(self, model: TaskModel, task: _Task, config: FineTuneConfig | None = None) -> None:
        super().__init__()
        self.model = model
        self.task = task
        self.config = config or FineTuneConfig()

    def train(self, mode: bool = True) -> _FineTuneTask:
        """``mode``, except that a frozen backbone stays in eval mode, and a LoRA one's BatchNorm layers (the
        harness calls this before every training epoch and after every validation)."""
        super().train(mode)
        if self.config.mode == "freeze":
            self.model.backbone.eval()
        elif self.config.mode == "lora":
            for norm in batch_norms(self.model.backbone):
                norm.eval()
        return self

    def parameter_groups(self) -> list[dict[str, Any]]:
        """The head at ``head_lr``, backbone layers at layer-wise decayed rates (:func:`layerwise_groups`)."""
        return layerwise_groups(self.model, self.config)

    def loss(self, batch: dict[str, Any]) -> torch.Tensor:
        out, frames = self.model(batch["wavs"], batch["lengths"])
        out = out.float()
        kind = self.task.kind
        if kind == "events":
            y = _frame_targets(self.task, batch["ids"], frames, out.shape[1], widen=True).to(out.device)
            mask = lengths_to_mask(frames.to(out.device), out.shape[1]).float()[..., None]
            loss = nn.functional.binary_cross_entropy_with_logits(out, y, reduction="none")
            return (loss * mask).sum() / (mask.sum() * out.shape[-1]).clamp(min=1)
        if kind == "classes":
            y = _frame_targets(self.task, batch["ids"], frames, out.shape[1]).to(out.device)
            # a sum over the labelled frames: a batch without any (a clip of open fifths) gives 0, not NaN
            total = nn.functional.cross_entropy(
                out.reshape(-1, out.shape[-1]), y.reshape(-1), ignore_index=IGNORE, reduction="sum"
            )
            return total / (y != IGNORE).sum().clamp(min=1)
        if kind in ("key", "multiclass"):
            return nn.functional.cross_entropy(out, batch["y"].long())
        if kind == "multilabel":
            return nn.functional.binary_cross_entropy_with_logits(out, batch["y"].float())
        return nn.functional.mse_loss(out, batch["y"].float())

    def training_step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return {"loss": self.loss(batch)}

    def validation_step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return {"loss": self.loss(batch)}


def layerwise_groups(model: TaskModel, config: FineTuneConfig) -> list[dict[str, Any]]:
    """Optimiser parameter groups: the head at ``head_lr``, backbone layer ``i`` at ``lr * decay ** (L - i)``."""
    depth = 1 + max(
        (int(m.group(1)) for n, _ in model.backbone.named_parameters() if (m := re.search(r"layers\.(\d+)\.", n))),
        default=-1,
    )
    groups: dict[int, list[nn.Parameter]] = {}
    for name, p in model.backbone.named_parameters():
        if not p.requires_grad:
            continue
        m = re.search(r"layers\.(\d+)\.", name)
        level = int(m.group(1)) + 1 if m else (depth if "conformer" in name else 0)
        groups.setdefault(level, []).append(p)
    out = [{"params": list(model.head.parameters()), "lr": config.head_lr, "name": "head"}]
    for level, params in sorted(groups.items()):
        out.append({"params": params, "lr": config.lr * config.layer_decay ** (depth - level), "name": f"layer{level}"})
    return out


# --------------------------------------------------------------------------------------------------
# evaluation


@torch.no_grad()
def _predict(model: TaskModel, loader: DataLoader) -> tuple[list[str], list[np.ndarray]]:
    model.eval()
    ids, outs = [], []
    for batch in loader:
        out, frames = model(batch["wavs"], batch["lengths"])
        for k, item_id in enumerate(batch["ids"]):
            o = out[k].float()
            ids.append(item_id)
            outs.append((o[: int(frames[k])] if o.dim() == 2 else o).numpy())
    return ids, outs


def _score(task: _Task, split: str, outputs: list[np.ndarray], threshold: float | None) -> dict[str, float]:
    if task.frame_task is None:
        from muqkit.eval.probes import evaluate

        assert task.clip_targets is not None
        return evaluate(task.kind, task.clip_targets[split], np.stack(outputs))
    from muqkit.eval.frame_probes import FrameSplit, score_outputs
    from muqkit.eval.frame_tasks import FRAME_RATE

    ft = task.frame_task
    records = task.records[split]
    ys = [ft.targets(r.id, len(o)) for r, o in zip(records, outputs, strict=True)]
    offsets = np.concatenate([[0], np.cumsum([len(o) for o in outputs])]).astype(np.int64)
    # clips may have been cut (max_seconds): score against the labels of the part the model saw
    labels = tuple(ft.labels[r.id].crop(len(o) / FRAME_RATE) for r, o in zip(records, outputs, strict=True))
    data = FrameSplit(np.zeros((0, 1, 1), np.float32), np.concatenate(ys), offsets, labels)
    flat = np.concatenate(outputs)
    if task.kind == "events":
        flat = 1 / (1 + np.exp(-flat))
    return score_outputs(ft.spec, flat, data, threshold=threshold or 0.5)


# --------------------------------------------------------------------------------------------------
# resuming


def run_settings(task: str, config: FineTuneConfig, *, backbone: str | None = None) -> dict[str, Any]:
    """The settings that shape a run's weights (see :data:`RESUME_SETTINGS`): what a resumed run must share.

    Args:
        task: the task's name.
        config: the run's settings (the LoRA ones count in mode ``lora`` only).
        backbone: the backbone's shape, e.g. ``"12 Conformer layers of width 1024"`` (``None``: not compared).
    """
    settings: dict[str, Any] = {"task": task, "mode": config.mode, "head": config.head}
    if backbone is not None:
        settings["backbone"] = backbone
    if config.mode == "lora":
        settings.update(lora_rank=config.lora.rank, lora_alpha=config.lora.alpha,
                        lora_targets=",".join(config.lora.targets))  # fmt: skip
    return settings


def check_resume(out: str | os.PathLike[str], settings: dict[str, Any]) -> None:
    """Check that the run saved in ``out`` was made with ``settings`` (:func:`run_settings`); nothing to check
    when ``out`` holds no saved settings (a new run, or one saved before they were recorded).

    Raises:
        ValueError: a setting differs; the message names its option and both values.
    """
    path = Path(out) / RUN_SETTINGS
    if not path.is_file():
        return
    try:
        saved = json.loads(path.read_text())["settings"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"--resume: {path}: unreadable run settings ({exc}); start again with --overwrite") from None
    for key, option in RESUME_SETTINGS.items():
        if key in settings and key in saved and settings[key] != saved[key]:
            what = (f"a {option} of {saved[key]}, not one of {settings[key]}" if key == "backbone"
                    else f"{option} {saved[key]}, not {option} {settings[key]}")  # fmt: skip
            raise ValueError(
                f"--resume: the run in {out} was made with {what}; resume with the run's settings, or pass "
                "--overwrite to start again"
            )


def _check_checkpoint(last: Path, task: nn.Module) -> None:
    """For a run without saved settings: its checkpoint must hold the weights these settings make (the harness
    saves the task's weights under ``task.``)."""
    from muqkit.hub.weights import safe_torch_load

    saved = safe_torch_load(last).get("state_dict", {})
    ours = {f"task.{k}": v for k, v in task.state_dict().items()}
    missing = [k for k in ours if k not in saved]
    unexpected = [k for k in saved if k not in ours]
    reshaped = [k for k in ours if k in saved and tuple(saved[k].shape) != tuple(ours[k].shape)]
    if missing or unexpected or reshaped:
        example = (missing or unexpected or reshaped)[0]
        raise ValueError(
            f"--resume: {last} was made with other settings (--task, --mode, --head, --model, --lora-rank or "
            f"--lora-targets): {len(missing)} weights missing, {len(unexpected)} unexpected, {len(reshaped)} of "
            f"another shape (e.g. {example}); resume with the run's settings, or pass --overwrite to start again"
        )


# --------------------------------------------------------------------------------------------------
# entry point


def finetune(
    model: nn.Module,
    task: Any,
    out: str | os.PathLike[str],
    config: FineTuneConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    num_workers: int = 0,
) -> FineTuneResult:
    """Fine-tune a MuQ ``model`` on a clip task (:class:`~muqkit.eval.tasks.TaskData`) or a frame task
    (:class:`~muqkit.eval.frame_tasks.FrameTaskData`) and write ``out`` (see the module docstring).

    Args:
        model: a MuQ (modified in place in ``full`` mode).
        task: the task's data.
        out: output folder.
        config: settings.
        resume: continue from ``out/checkpoints/last.ckpt`` when it exists.
        overwrite: replace a run already in ``out`` (its outputs are deleted first).
        num_workers: data-loading processes.

    Raises:
        muqkit.runfolder.RunFolderError: ``out`` holds a run (finished or interrupted) and neither ``resume``
            nor ``overwrite`` was given.
    """
    from muqkit.finetune.lora import add_lora, merge_lora, resolve_targets, save_adapter
    from muqkit.runfolder import RunFolderError
    from muqkit.train.harness import RunConfig, fit, start_run, write_run_settings
    from muqkit.train.lightning import OptimizerConfig

    t = _as_task(task)
    y_mean = y_std = None
    if t.kind == "regression" and t.clip_targets is not None:
        y_mean = t.clip_targets["train"].mean(0)
        y_std = t.clip_targets["train"].std(0) + 1e-8
    depth = getattr(getattr(model, "config", None), "encoder_depth", None)
    dim = getattr(getattr(model, "config", None), "encoder_dim", None)
    if depth is None or dim is None:
        raise ValueError("fine-tuning needs a MuQ (its config names encoder_depth and encoder_dim)")
    spec = HeadSpec(
        t.name, t.kind, t.num_outputs, depth + 1, dim, head=config.head, classes=t.classes,
        target_mean=tuple(float(v) for v in np.atleast_1d(y_mean)) if y_mean is not None else (),
        target_std=tuple(float(v) for v in np.atleast_1d(y_std)) if y_std is not None else (),
    )  # fmt: skip
    settings = run_settings(t.name, config, backbone=f"{depth} Conformer layers of width {dim}")
    if resume:
        check_resume(out, settings)
    if config.mode == "lora":
        resolve_targets(model, config.lora)  # an unknown target fails here, before the folder is touched
    if resume and overwrite:
        raise RunFolderError("give --resume or --overwrite, not both")
    run = RunConfig(
        out=str(out), seed=config.seed, max_epochs=config.max_epochs, devices=1,
        accelerator="cpu" if not torch.cuda.is_available() else "auto",
        precision="bf16-mixed" if config.precision == "bf16" else "32-true",
        resume=resume, overwrite=overwrite, progress=False, logs=False,
    )  # fmt: skip
    had_settings = (Path(out) / RUN_SETTINGS).is_file()
    # Only now, with the settings checked, may a run in `out` be replaced; the seed is set here, before the
    # adapters and the head are initialised.
    start = start_run(run, owned=FINETUNE_OUTPUTS, checkpoint_optional=True)
    out = start.out
    backbone: nn.Module = model
    if config.mode == "lora":
        backbone = add_lora(model, config.lora)
    elif config.mode == "freeze":
        for p in model.parameters():
            p.requires_grad_(False)
    net = TaskModel(backbone, TaskHead(spec))
    trainable = trainable_parameters(net)
    max_samples = int(config.max_seconds * SAMPLE_RATE)
    loaders = {
        s: DataLoader(
            _Clips(t, s, max_samples, y_mean, y_std),
            batch_size=config.batch_size,
            shuffle=s == "train",
            collate_fn=_collate,
            num_workers=num_workers,
            generator=torch.Generator().manual_seed(config.seed),
        )  # fmt: skip
        for s in ("train", "valid", "test")
    }
    fine_tuning = _FineTuneTask(net, t, config)
    if start.checkpoint is not None and not had_settings:
        _check_checkpoint(start.checkpoint, fine_tuning)
    if not (resume and had_settings):
        write_run_settings(out, {"settings": settings, "config": asdict(config)})
    fitted = fit(
        fine_tuning, loaders["train"], loaders["valid"], run, start,
        optimizer=OptimizerConfig(name="adamw", lr=config.lr, weight_decay=0.0),
        keep_best=True, patience=config.patience,
    )  # fmt: skip
    seconds = fitted.seconds
    module = fitted.module
    if fitted.best_checkpoint:
        from muqkit.hub.weights import safe_torch_load

        module.load_state_dict(safe_torch_load(fitted.best_checkpoint)["state_dict"])
    net = module.task.model
    net.cpu()
    threshold = None
    _, valid_out = _predict(net, loaders["valid"])
    _, test_out = _predict(net, loaders["test"])
    if t.kind == "events":
        from muqkit.eval.frame_probes import THRESHOLDS

        scores = [_score(t, "valid", valid_out, th)[t.frame_task.spec.metric] for th in THRESHOLDS]
        threshold = THRESHOLDS[int(np.argmax(scores))]
    if y_mean is not None and y_std is not None:
        valid_out = [o * y_std + y_mean for o in valid_out]
        test_out = [o * y_std + y_mean for o in test_out]
    val, test = _score(t, "valid", valid_out, threshold), _score(t, "test", test_out, threshold)
    head = net.head
    if threshold is not None:
        from dataclasses import replace

        head.spec = replace(head.spec, threshold=threshold)
    if config.mode == "lora":
        save_adapter(net.backbone, out / "adapter")
        backbone = merge_lora(net.backbone)
    else:
        backbone = net.backbone
    for p in backbone.parameters():
        p.requires_grad_(True)
    backbone.save_pretrained(out / "model")  # type: ignore[operator]
    save_head(head, out)
    result = FineTuneResult(out, val, test, trainable, seconds, fitted.epochs)
    report = {
        "task": t.name,
        "config": asdict(config),
        "trainable_parameters": trainable,
        "seconds": round(seconds, 1),
        "epochs": fitted.epochs,
        "val": val,
        "test": test,
    }
    from muqkit.atomic import atomic_path

    with atomic_path(out / "finetune.json", suffix=".json") as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    return result


__all__ = [
    "FineTuneConfig", "FineTuneResult", "MODES", "RESUME_SETTINGS", "check_resume", "finetune", "layerwise_groups",
    "run_settings",
]  # fmt: skip
