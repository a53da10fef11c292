"""One training harness for every task: the run folder, seeding, resume, loggers, checkpoints and the Trainer.

A training function (:func:`muqkit.train.tokenizer.train_tokenizer`, :func:`muqkit.train.pretrain.train_pretrain`,
:func:`muqkit.train.mulan.train_mulan`, :func:`muqkit.finetune.train.finetune`) builds its model, data and plain
task module, then calls :func:`start_run` and :func:`fit` with a :class:`RunConfig`. So every run folder has the
same layout::

    out/run_config.json        the task's settings (a resumed run reuses them)
    out/checkpoints/last.ckpt  model, optimiser, scheduler, step and random state (every task)
    out/logs/version_0/        metrics.csv, kept across resumes (and TensorBoard when installed; no logs
                               with ``RunConfig.logs`` off, as fine-tuning runs)

and every task resumes the same way: ``resume`` continues from ``last.ckpt`` (read with ``weights_only``),
the data restarts at the checkpoint's step (:class:`muqkit.data.loader.ResumableSampler`) and the random
state is restored (:class:`muqkit.train.lightning.LightningTask`).

A run is measured in optimiser steps (``max_steps``; validation every ``val_every`` steps) or, with
``max_epochs``, in passes over the training data (validation after every epoch, as fine-tuning does). Either
may stop early on a monitored validation value (``patience``) and keep its best checkpoint (``keep_best``:
``checkpoints/best.ckpt`` in an epoch-measured run).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from muqkit.configs import check_choice, check_int

RUN_CONFIG = "run_config.json"
STRATEGIES = ("auto", "ddp", "fsdp", "ddp_spawn", "ddp_find_unused_parameters_true")


@dataclass(frozen=True)
class RunConfig:
    """Where and how a run trains: the settings every task shares.

    Attributes:
        out: the run folder.
        seed: global seed (model initialisation, crops, masking, dropout).
        max_steps: optimiser steps of the whole run (a resumed run may raise it); not a bound of an
            epoch-measured run.
        max_epochs: measure the run in epochs: at most this many passes over the training data, with
            validation and a checkpoint after each (``None``: a step-measured run).
        accelerator, devices, num_nodes, strategy: Lightning placement (``strategy``: auto, ddp, fsdp, ...).
        precision: Lightning precision (``32-true``, ``bf16-mixed``, ``16-mixed``).
        resume: continue from ``out/checkpoints/last.ckpt``.
        overwrite: replace a run already in ``out`` (without ``resume`` or ``overwrite`` such a folder is
            refused).
        log_every: steps between logged values.
        checkpoint_every: steps between checkpoints (``last.ckpt`` is always kept) of a step-measured run.
        progress: show a progress bar.
        logs: write ``out/logs`` (``metrics.csv``, and TensorBoard when installed).
    """

    out: str
    seed: int = 0
    max_steps: int = 1000
    accelerator: str = "auto"
    devices: int | str = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    resume: bool = False
    overwrite: bool = False
    log_every: int = 10
    checkpoint_every: int = 500
    progress: bool = True
    max_epochs: int | None = None
    logs: bool = True

    def __post_init__(self) -> None:
        check_int(self, "max_steps", "num_nodes", "log_every", "checkpoint_every")
        check_int(self, "seed", minimum=0)
        if self.max_epochs is not None:
            check_int(self, "max_epochs")
        check_choice(self, "strategy", STRATEGIES)
        if self.resume and self.overwrite:
            raise ValueError("RunConfig: resume and overwrite exclude each other")

    @property
    def last_checkpoint(self) -> Path:
        """``out/checkpoints/last.ckpt``."""
        return Path(self.out) / "checkpoints" / "last.ckpt"


@dataclass(frozen=True)
class RunStart:
    """A prepared run folder.

    Attributes:
        out: the run folder.
        checkpoint: the checkpoint a resumed run starts from (``None``: a new run).
        start_step: the optimiser step the run starts at (0 for a new run).
    """

    out: Path
    checkpoint: Path | None
    start_step: int


@dataclass(frozen=True)
class FitResult:
    """What :func:`fit` ran.

    Attributes:
        module: the Lightning module (its ``task`` holds the trained model).
        steps: optimiser steps done in all (counting those before a resume).
        seconds: wall-clock seconds of this call.
        metrics: the last logged scalars.
        is_global_zero: whether this process is rank 0 (the one that saves).
        best_checkpoint: the checkpoint with the lowest monitored value ('' unless ``keep_best``).
        epochs: epochs completed (counting those before a resume).
    """

    module: Any
    steps: int
    seconds: float
    metrics: dict[str, float]
    is_global_zero: bool
    best_checkpoint: str = ""
    epochs: int = 0


def resume_point(out: str | os.PathLike[str]) -> Path:
    """The checkpoint a run in ``out`` resumes from.

    Raises:
        FileNotFoundError: there is none (names it).
    """
    last = Path(out) / "checkpoints" / "last.ckpt"
    if not last.is_file():
        raise FileNotFoundError(f"--resume: no checkpoint at {last}")
    return last


def read_run_settings(out: str | os.PathLike[str]) -> dict[str, Any]:
    """The settings a run saved in ``out/run_config.json``."""
    path = Path(out) / RUN_CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"--resume: {path} is missing; the run cannot be resumed with its settings")
    return json.loads(path.read_text())


def write_run_settings(out: str | os.PathLike[str], settings: dict[str, Any], *, sort_keys: bool = False) -> Path:
    """Save a run's settings to ``out/run_config.json`` (atomically), on global rank 0 only: every rank
    computes the same settings, and a file another rank wrote first would make rank 0 take the folder
    for an earlier run and refuse it (leaving the other ranks waiting for it)."""
    from muqkit.atomic import atomic_path
    from muqkit.runfolder import global_rank_zero

    path = Path(out) / RUN_CONFIG
    if not global_rank_zero():
        return path
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(settings, indent=2, sort_keys=sort_keys) + "\n")
    return path


def start_run(
    run: RunConfig, *, owned: Iterable[str], option: str = "--out", checkpoint_optional: bool = False
) -> RunStart:
    """Check and prepare the run folder, find the resume step, and seed everything.

    Args:
        run: the run settings.
        owned: the entries the run writes in its folder (see :func:`muqkit.runfolder.prepare_run_folder`).
        option: how the user named the folder, for messages.
        checkpoint_optional: with ``resume``, a folder without ``last.ckpt`` (a run stopped before its first
            checkpoint) starts again from step 0 and keeps what it holds, instead of being refused.

    Raises:
        FileNotFoundError: ``resume`` without a checkpoint (unless ``checkpoint_optional``).
        muqkit.runfolder.RunFolderError: the folder holds a run and neither ``resume`` nor ``overwrite``.
        muqkit.hub.weights.CheckpointError: the checkpoint is refused or corrupt.
    """
    import lightning as L

    from muqkit.hub.weights import safe_torch_load
    from muqkit.runfolder import prepare_run_folder

    checkpoint = None
    if run.resume and not (checkpoint_optional and not run.last_checkpoint.is_file()):
        checkpoint = resume_point(run.out)
    out = prepare_run_folder(run.out, resume=run.resume, overwrite=run.overwrite, owned=owned, option=option)
    start_step = int(safe_torch_load(checkpoint)["global_step"]) if checkpoint is not None else 0
    L.seed_everything(run.seed, workers=True, verbose=False)
    return RunStart(out=Path(out), checkpoint=checkpoint, start_step=start_step)


def _loggers(out: Path, resume_step: int | None) -> list[Any]:
    from muqkit.train.lightning import history_csv_logger

    loggers: list[Any] = [history_csv_logger(out, name="logs", resume_step=resume_step)]
    try:
        import tensorboard  # noqa: F401
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(out, name="logs", version=0, sub_dir="tensorboard"))
    except ImportError:
        pass
    return loggers


def fit(
    task: nn.Module,
    train_loader: Any,
    val_loader: Any,
    run: RunConfig,
    start: RunStart,
    *,
    optimizer: Any = None,
    metadata: dict[str, Any] | None = None,
    describe_batch: Callable[[Any], str] | None = None,
    callbacks: Sequence[Any] = (),
    accumulate: int = 1,
    grad_clip: float | None = None,
    val_every: int | None = None,
    val_batches: int | float | None = None,
    stop_after: int | None = None,
    keep_best: bool = False,
    patience: int | None = None,
    monitor: str = "val_loss",
    strategy: Any = None,
    distributed_sampler: bool = False,
) -> FitResult:
    """Train ``task`` (a plain module, see :mod:`muqkit.train.lightning`) with Lightning.

    Args:
        task: the plain task module.
        train_loader: training batches (a :class:`~muqkit.data.loader.ResumableSampler` makes resume exact).
        val_loader: validation batches, or ``None``.
        run: the run settings.
        start: what :func:`start_run` returned.
        optimizer: a :class:`~muqkit.train.lightning.OptimizerConfig` (default: Adam, lr 1e-4).
        metadata: JSON-able dict stored in every checkpoint (e.g. the model config).
        describe_batch: names a batch's inputs for the error raised on a non-finite loss.
        callbacks: more Lightning callbacks.
        accumulate: micro-batches per optimiser step.
        grad_clip: gradient-norm clipping (``None`` or 0: off).
        val_every: optimiser steps between validations of a step-measured run (default:
            ``run.checkpoint_every``); an epoch-measured run validates after every epoch.
        val_batches: validation batches (a fraction of the loader when a float; default: all).
        stop_after: stop at this step (the schedule still spans ``run.max_steps``).
        keep_best: also keep the checkpoint with the lowest ``monitor`` value (``FitResult.best_checkpoint``;
            ``checkpoints/best.ckpt`` in an epoch-measured run).
        patience: stop after this many validations without a lower ``monitor`` value (``None``: never).
        monitor: the logged validation value that ``keep_best`` and ``patience`` watch (lower is better).
        strategy: a Lightning strategy object overriding ``run.strategy`` (e.g. FSDP with a wrap policy).
        distributed_sampler: let Lightning shard a plain (shuffling) loader across ranks; ``False`` when the
            loader's sampler shards by rank itself.
    """
    import lightning as L
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

    from muqkit.train.lightning import LightningTask, fit_checkpoint_kwargs

    module = LightningTask(task, optimizer=optimizer, metadata=metadata, describe_batch=describe_batch)
    validating = val_loader is not None
    by_epoch = run.max_epochs is not None
    folder = start.out / "checkpoints"
    watch_best = keep_best and validating
    if by_epoch:  # one checkpoint after every epoch's validation: last.ckpt, and best.ckpt when kept
        watched: dict[str, Any] = {"filename": "best", "monitor": monitor, "mode": "min"} if watch_best else {}
        checkpoints = ModelCheckpoint(dirpath=folder, save_last=True, save_top_k=1, **watched)
        kept = [checkpoints]
        best = checkpoints if watch_best else None
    else:
        checkpoints = ModelCheckpoint(dirpath=folder, save_last=True, every_n_train_steps=run.checkpoint_every,
                                      save_top_k=1, monitor=None)  # fmt: skip
        best = ModelCheckpoint(dirpath=folder, filename="best", monitor=monitor, mode="min", save_top_k=1,
                               save_on_train_epoch_end=False) if watch_best else None  # fmt: skip
        kept = [checkpoints, *([best] if best is not None else [])]
    stopping = [EarlyStopping(monitor, patience=patience, mode="min")] if patience and validating else []
    step_validation = (val_every or run.checkpoint_every) * accumulate if validating and not by_epoch else None
    trainer = L.Trainer(
        max_steps=-1 if by_epoch else min(run.max_steps, stop_after or run.max_steps),
        max_epochs=run.max_epochs if by_epoch else -1,
        accelerator=run.accelerator,
        devices=run.devices,
        num_nodes=run.num_nodes,
        strategy=strategy if strategy is not None else run.strategy,
        precision=run.precision,  # type: ignore[arg-type]  # a Lightning precision name, validated by Lightning
        accumulate_grad_batches=accumulate,
        gradient_clip_val=grad_clip or None,
        logger=_loggers(start.out, start.start_step if start.checkpoint is not None else None) if run.logs else False,
        callbacks=[*stopping, *kept, *callbacks],
        log_every_n_steps=run.log_every,
        val_check_interval=step_validation,
        check_val_every_n_epoch=1 if by_epoch else None,
        limit_val_batches=(1.0 if val_batches is None else val_batches) if validating else 0,
        num_sanity_val_steps=0,
        enable_progress_bar=run.progress,
        enable_model_summary=False,
        use_distributed_sampler=distributed_sampler,
    )
    began = time.perf_counter()
    trainer.fit(module, train_loader, val_loader, **fit_checkpoint_kwargs(start.checkpoint))
    seconds = time.perf_counter() - began
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    return FitResult(
        module=module,
        steps=trainer.global_step,
        seconds=seconds,
        metrics=metrics,
        is_global_zero=trainer.is_global_zero,
        best_checkpoint=best.best_model_path if best is not None else "",
        epochs=trainer.current_epoch,
    )


__all__ = [
    "FitResult",
    "RunConfig",
    "RunStart",
    "fit",
    "read_run_settings",
    "resume_point",
    "start_run",
    "write_run_settings",
]
