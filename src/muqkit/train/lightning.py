"""One Lightning adapter for every training task.

A task is a plain :class:`torch.nn.Module` with ``training_step(batch) -> dict`` (the ``"loss"``
entry is optimised, every scalar entry is logged) and optionally ``validation_step(batch) -> dict``,
``parameter_groups()`` (its optimiser groups, e.g. per-layer learning rates). Lightning brings devices,
precision, logging, progress bars, checkpoints and resume; the task never imports it.

A task states its modes by overriding ``train(mode)`` (e.g. frozen parts stay in eval mode: no dropout, no
BatchNorm statistics updates). Lightning itself never calls ``train(True)``: it trains the modules in the
modes they were built in (a model from ``from_pretrained`` comes in eval mode), and after validation it sets
back each module's captured ``.training`` flag. So :class:`LightningTask` calls the task's ``train(True)``
before every training epoch and after every validation.
"""

from __future__ import annotations

import csv
import inspect
import logging
import math
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import nn

DECAYS = ("constant", "cosine", "linear")
OPTIMIZERS = ("adam", "adamw", "fairseq_adam")
_NOISE = ("Tip:", "litlogger", "TPU available", "HPU available", "GPU available: False")


class _DropNoise(logging.Filter):
    """Drops Lightning's advertising tips and the no-accelerator lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(noise in message for noise in _NOISE)


def quiet_lightning() -> None:
    """One line per Lightning message, no tips.

    Lightning gives its loggers a handler of their own and lets records propagate, so every message
    printed twice under an application's logging configuration (muqkit's CLI). Its handlers are
    removed (the records reach the application's handlers once), its tips and "TPU available: False"
    lines are dropped, and two warnings about things muqkit does on purpose (no validation loader,
    a deprecation inside Lightning) are silenced.
    """
    if logging.getLogger().handlers:  # the application logs: Lightning's records go to its handlers, once
        for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning", "lightning_fabric"):
            target = logging.getLogger(name)
            for handler in list(target.handlers):
                target.removeHandler(handler)
            target.propagate = True
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        target = logging.getLogger(name)
        if not any(isinstance(f, _DropNoise) for f in target.filters):
            target.addFilter(_DropNoise())
    warnings.filterwarnings("ignore", message=r".*defined a `validation_step` but have no `val_dataloader`.*")
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated.*")
    warnings.filterwarnings("ignore", message=r".*is smaller than the logging interval.*")
    # frozen target tokenizers stay in eval mode on purpose
    warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode at the start of training.*")


quiet_lightning()


@dataclass(frozen=True)
class OptimizerConfig:
    """Optimiser and learning-rate schedule.

    Attributes:
        name: ``"adam"``, ``"adamw"`` (torch's) or ``"fairseq_adam"`` (fairseq's Adam, the official MuQ
            recipe's: decoupled weight decay, epsilon before the bias correction; see
            :class:`muqkit.train.optim.FairseqAdam`).
        lr: peak learning rate.
        betas: Adam betas.
        weight_decay: decoupled (adamw) or L2 (adam) weight decay.
        warmup_steps: linear warm-up steps.
        decay: ``"constant"`` after warm-up, ``"cosine"`` to zero at ``total_steps``, or ``"linear"`` to
            zero at ``total_steps`` (fairseq's ``polynomial_decay`` with power 1 and end learning rate 0,
            the official MuQ recipe's schedule).
        total_steps: schedule length for the decay.
        eps: Adam's epsilon (the official recipe: 1e-6).
        decay_1d: apply weight decay to one-dimensional parameters (norm weights, biases) too, as
            fairseq's Adam does; ``False`` leaves them undecayed (the common transformer practice).
    """

    name: str = "adam"
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    warmup_steps: int = 0
    decay: str = "constant"
    total_steps: int = 0
    eps: float = 1e-8
    decay_1d: bool = True

    def __post_init__(self) -> None:
        if self.name not in OPTIMIZERS:
            raise ValueError(f"OptimizerConfig.name must be one of {', '.join(OPTIMIZERS)}, got '{self.name}'")
        if not self.lr > 0:
            raise ValueError(f"OptimizerConfig.lr must be positive, got {self.lr}")
        if self.decay not in DECAYS:
            raise ValueError(f"OptimizerConfig.decay must be one of {', '.join(DECAYS)}, got '{self.decay}'")
        if self.decay != "constant" and self.total_steps <= self.warmup_steps:
            raise ValueError(f"OptimizerConfig: {self.decay} decay needs total_steps > warmup_steps")
        if not self.eps > 0:
            raise ValueError(f"OptimizerConfig.eps must be positive, got {self.eps}")

    def factor(self, step: int) -> float:
        """Learning-rate multiplier at ``step``."""
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.decay == "constant":
            return 1.0
        progress = min(1.0, (step - self.warmup_steps) / (self.total_steps - self.warmup_steps))
        if self.decay == "linear":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    def parameter_groups(self, module: nn.Module) -> list[dict[str, Any]]:
        """The trainable parameters of ``module`` as optimiser groups: one, or with ``decay_1d=False``
        the matrices (decayed) and the one-dimensional parameters (not decayed)."""
        params = [p for p in module.parameters() if p.requires_grad]
        if self.decay_1d:
            return [{"params": params}]
        return [{"params": [p for p in params if p.dim() > 1]},
                {"params": [p for p in params if p.dim() <= 1], "weight_decay": 0.0}]  # fmt: skip

    def build(self, module: nn.Module) -> tuple[Any, torch.optim.lr_scheduler.LambdaLR]:
        """The optimiser over ``module``'s trainable parameters and its per-step schedule.

        A module with a ``parameter_groups()`` method of its own (e.g. per-layer learning rates) gives its
        groups; a group's ``lr`` or ``weight_decay`` overrides this config's, and the schedule scales each
        group's learning rate."""
        from muqkit.train.optim import FairseqAdam

        cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "fairseq_adam": FairseqAdam}[self.name]
        own = getattr(module, "parameter_groups", None)
        groups = own() if callable(own) else self.parameter_groups(module)
        optimizer = cls(groups, lr=self.lr, betas=self.betas, eps=self.eps, weight_decay=self.weight_decay)
        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, self.factor)


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss; the message names the step and the batch's inputs."""


class LightningTask(L.LightningModule):
    """Wrap a plain task module for :class:`lightning.Trainer`.

    Args:
        task: module with ``training_step(batch) -> dict`` (and optionally ``validation_step``).
        optimizer: optimiser settings.
        metadata: JSON-able dict stored in every checkpoint under ``"muqkit"`` (e.g. the model config).
        describe_batch: names a batch's inputs (e.g. its audio files) for the error raised when its loss is
            not finite.

    Every checkpoint also holds the global random state (:func:`random_state`), restored on resume, so a
    resumed run draws the same dropout as an uninterrupted one, whatever the task.

    Raises:
        NonFiniteLossError: from ``training_step``, when the loss is NaN or infinite (training stops
            before the optimiser step, so no weight becomes non-finite).
    """

    def __init__(
        self,
        task: nn.Module,
        *,
        optimizer: OptimizerConfig | None = None,
        metadata: dict[str, Any] | None = None,
        describe_batch: Callable[[Any], str] | None = None,
    ) -> None:
        super().__init__()
        quiet_lightning()  # the application may have configured logging after this module was imported
        self.describe_batch = describe_batch
        self.task: Any = task  # a plain module with training_step (and optionally validation_step)
        self.optimizer_config = optimizer or OptimizerConfig()
        self.metadata = dict(metadata or {})

    @staticmethod
    def _batch_size(batch: Any) -> int | None:
        if isinstance(batch, dict):
            for value in batch.values():
                if isinstance(value, torch.Tensor) and value.dim() > 0:
                    return int(value.shape[0])
        return None

    def _log(self, prefix: str, out: dict[str, torch.Tensor], batch: Any, *, on_step: bool) -> None:
        scalars = {
            f"{prefix}/{k}": v.detach().float()
            for k, v in out.items()
            if isinstance(v, torch.Tensor) and v.numel() == 1
        }
        self.log_dict(scalars, on_step=on_step, on_epoch=not on_step, batch_size=self._batch_size(batch))
        if "loss" in out:
            self.log(
                f"{prefix}_loss",
                out["loss"].detach().float(),
                prog_bar=True,
                on_step=on_step,
                on_epoch=not on_step,
                batch_size=self._batch_size(batch),
                logger=False,
            )

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        out = self.task.training_step(batch)
        loss = out["loss"]
        if not bool(torch.isfinite(loss.detach()).all()):
            where = ""
            if self.describe_batch is not None:
                try:
                    where = f"; the batch's inputs: {self.describe_batch(batch)}"
                except Exception as exc:  # naming the files must not hide the real error
                    where = f" (could not name the batch's inputs: {exc})"
            raise NonFiniteLossError(
                f"non-finite training loss ({float(loss.detach().float().reshape(-1)[0])}) at step "
                f"{self.global_step}{where}. Check these inputs for NaN/inf or silent audio, or lower the "
                "learning rate"
            )
        self._log("train", out, batch, on_step=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        if not hasattr(self.task, "validation_step"):
            return
        out = self.task.validation_step(batch)
        self._log("val", out, batch, on_step=False)

    def _train_mode(self) -> None:
        """The task's own ``train(True)``, through any DDP/FSDP wrapper (whose mode is set too)."""
        model = self.trainer.model
        (model if model is not None else self).train()

    def on_train_epoch_start(self) -> None:
        self._train_mode()  # Lightning trains the modules in the modes they were built in: it calls no train()

    def on_validation_model_train(self) -> None:
        # Lightning's default (which an overridden hook replaces) sets each module's captured .training flag
        # back, bypassing the task's train(); the harness validates only inside fit, so training resumes here
        self._train_mode()

    def configure_optimizers(self) -> Any:
        optimizer, scheduler = self.optimizer_config.build(self.task)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["muqkit"] = self.metadata
        checkpoint["muqkit_rng"] = random_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("muqkit_rng")
        if state is not None:
            set_random_state(state)


def random_state() -> dict[str, Any]:
    """The global torch random state (CPU, and every CUDA device in use): what dropout draws from."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_random_state(state: dict[str, Any]) -> None:
    """Restore a state saved by :func:`random_state` (every task's checkpoint holds one: exact resume)."""
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def fit_checkpoint_kwargs(checkpoint: str | os.PathLike[str] | None) -> dict[str, Any]:
    """Keyword arguments for ``trainer.fit`` that resume from ``checkpoint`` safely.

    The checkpoint is first read with :func:`muqkit.hub.weights.safe_torch_load` (tensors and plain
    containers only; a crafted pickle is refused with a :class:`~muqkit.hub.weights.CheckpointError`
    naming the file), and Lightning is told to load it with ``weights_only=True`` too.
    """
    if checkpoint is None:
        return {"ckpt_path": None}
    from muqkit.hub.weights import safe_torch_load

    safe_torch_load(checkpoint)
    kwargs: dict[str, Any] = {"ckpt_path": str(checkpoint)}
    if "weights_only" in inspect.signature(L.Trainer.fit).parameters:
        kwargs["weights_only"] = True
    return kwargs


def history_csv_logger(save_dir: str | os.PathLike[str], *, name: str = "logs", resume_step: int | None) -> Any:
    """A Lightning ``CSVLogger`` (version 0) that keeps ``metrics.csv`` across resumes.

    Lightning's CSV logger deletes ``metrics.csv`` when it starts in a folder that has one. When
    ``resume_step`` is given, the rows logged before that step are kept (later rows, written after the
    checkpoint by the interrupted run, are dropped since the resumed run logs those steps again) and new
    rows are appended; a new column rewrites the header over the whole history.
    """
    from lightning.pytorch.loggers import CSVLogger
    from lightning.pytorch.loggers.csv_logs import ExperimentWriter
    from lightning.pytorch.loggers.logger import rank_zero_experiment

    class _KeepingWriter(ExperimentWriter):
        def _check_log_dir_exists(self) -> None:
            if resume_step is None:
                super()._check_log_dir_exists()
                return
            path = Path(self.metrics_file_path)
            if not path.is_file():
                return
            with open(path, newline="") as handle:
                reader = csv.DictReader(handle)
                keys = list(reader.fieldnames or [])
                rows = [r for r in reader if _step(r) is None or _step(r) < resume_step]  # type: ignore[operator]
            with open(path, "w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=keys)
                writer.writeheader()
                writer.writerows(rows)
            self.metrics_keys = sorted(keys)

    class _HistoryCSVLogger(CSVLogger):
        @property
        @rank_zero_experiment
        def experiment(self) -> Any:
            if self._experiment is None:
                os.makedirs(self.root_dir, exist_ok=True)
                self._experiment = _KeepingWriter(log_dir=self.log_dir)
            return self._experiment

    return _HistoryCSVLogger(Path(save_dir), name=name, version=0)


def _step(row: dict[str, str]) -> int | None:
    try:
        return int(float(row.get("step") or ""))
    except ValueError:
        return None
