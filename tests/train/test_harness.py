"""The one training harness: validated run settings, one run-folder layout, random state in every checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from muqkit.train.harness import RunConfig, read_run_settings, resume_point

pytest.importorskip("lightning")


def test_run_config_names_the_bad_field(tmp_path):
    with pytest.raises(ValueError, match=r"RunConfig.max_steps must be"):
        RunConfig(out=str(tmp_path), max_steps=0)
    with pytest.raises(ValueError, match=r"RunConfig.strategy must be one of"):
        RunConfig(out=str(tmp_path), strategy="horovod")
    with pytest.raises(ValueError, match="resume and overwrite"):
        RunConfig(out=str(tmp_path), resume=True, overwrite=True)
    with pytest.raises(FileNotFoundError, match="--resume: no checkpoint at"):
        resume_point(tmp_path)
    assert RunConfig(out=str(tmp_path)).last_checkpoint == tmp_path / "checkpoints" / "last.ckpt"


def test_a_task_run_has_the_shared_layout_and_random_state(tone_manifest, tmp_path):
    from muqkit.hub.weights import safe_torch_load
    from muqkit.train.lightning import set_random_state
    from muqkit.train.tokenizer import TokenizerTrainingConfig, train_tokenizer

    config = TokenizerTrainingConfig(crop_seconds=0.5, batch_size=2, max_steps=2, sample_size=256, log_every=1,
                                     model=dict(num_codebooks=2, codebook_size=8))  # fmt: skip
    train_tokenizer(tone_manifest, tmp_path / "run", config, progress=False)
    run = tmp_path / "run"
    assert read_run_settings(run)["max_steps"] == 2
    assert "train/loss" in (run / "logs" / "version_0" / "metrics.csv").read_text()
    checkpoint = safe_torch_load(run / "checkpoints" / "last.ckpt")
    assert checkpoint["global_step"] == 2
    state = checkpoint["muqkit_rng"]["torch"]
    before = torch.get_rng_state()
    set_random_state(checkpoint["muqkit_rng"])
    first = torch.rand(3)
    set_random_state({"torch": state})
    assert torch.equal(first, torch.rand(3))  # the saved state replays the same draws
    torch.set_rng_state(before)
    from muqkit.runfolder import RunFolderError

    with pytest.raises(RunFolderError, match="already holds a run"):  # a second run into the same folder is refused
        train_tokenizer(tone_manifest, run, config, progress=False)


def test_pretraining_architecture_is_typed_and_checked_at_once(tiny_tokenizer):
    from muqkit.ssl.muq import MuQConfig
    from muqkit.train.pretrain import PretrainTrainingConfig

    config = PretrainTrainingConfig(tokenizer=str(tiny_tokenizer), model={"dropout": 0.2})
    assert isinstance(config.architecture, MuQConfig) and config.architecture.conformer.dropout == 0.2
    with pytest.raises(ValueError, match=r"ConformerConfig.dropout must be in \[0, 1\), got 2.0"):
        PretrainTrainingConfig(tokenizer=str(tiny_tokenizer), model={"dropout": 2.0})
    with pytest.raises(ValueError, match="unknown config keys \\['depth_x'\\]"):
        PretrainTrainingConfig(tokenizer=str(tiny_tokenizer), model={"depth_x": 1})


def test_pretraining_config_stores_the_typed_architecture_and_round_trips(tiny_tokenizer):
    """``model`` is a MuQConfig once the config is made; asdict -> from_dict gives the same config, and an
    old run_config.json (``model`` as overrides of the preset) resumes with the same architecture."""
    from dataclasses import asdict, replace

    from muqkit.hub.presets import muq_preset
    from muqkit.train.pretrain import PretrainTrainingConfig

    config = PretrainTrainingConfig(tokenizer=str(tiny_tokenizer), preset="small", model={"dropout": 0.2})
    assert config.model == muq_preset("small", dropout=0.2) and config.model is config.architecture
    assert config.mel_stats == "auto"
    saved = asdict(config)
    assert saved["model"]["conformer"]["dropout"] == 0.2  # stored in full, nested
    assert PretrainTrainingConfig.from_dict(saved) == config
    assert PretrainTrainingConfig(tokenizer=str(tiny_tokenizer), model=config.model, preset="small") == config
    assert PretrainTrainingConfig(tokenizer=str(tiny_tokenizer)).model == muq_preset("tiny")

    # a run's settings after the statistics are resolved, in the old (overrides) and the new (full) form
    old = {**saved, "preset": "tiny", "model": {"dropout": 0.1, "mel_mean": -20.0, "mel_std": 20.0}}
    resumed = PretrainTrainingConfig.from_dict(old)
    assert resumed.mel_stats == "config" and resumed.model == muq_preset("tiny", dropout=0.1, mel_mean=-20.0,
                                                                         mel_std=20.0)  # fmt: skip
    stated = replace(resumed, model=resumed.architecture.replace(mel_mean=-3.0, mel_std=4.0))
    assert PretrainTrainingConfig.from_dict(asdict(stated)).model.mel_mean == -3.0  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="must be a MuQConfig or a dict"):
        PretrainTrainingConfig(tokenizer=str(tiny_tokenizer), model=[1, 2])  # type: ignore[arg-type]


class _ScriptedTask(nn.Module):
    """Training pulls ``w`` to 1 (``frozen`` has a learning rate of 0); validation reports a scripted loss per
    epoch; its ``train()`` keeps ``frozen`` in eval mode, and each training step records the mode it sees."""

    def __init__(self, val_losses: list[float]) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.frozen = nn.Linear(1, 1)
        self.val_losses = val_losses
        self.validations = 0
        self.frozen_modes: list[bool] = []

    def parameter_groups(self) -> list[dict]:
        return [{"params": [self.w], "lr": 0.1}, {"params": list(self.frozen.parameters()), "lr": 0.0}]

    def train(self, mode: bool = True) -> _ScriptedTask:
        super().train(mode)
        self.frozen.eval()
        return self

    def training_step(self, batch: dict) -> dict:
        self.frozen_modes.append(self.frozen.training)
        return {"loss": ((self.w - batch["x"]) ** 2).mean() + 1e-3 * self.frozen(batch["x"]).sum()}

    def validation_step(self, batch: dict) -> dict:
        loss = torch.tensor(self.val_losses[min(self.validations, len(self.val_losses) - 1)])
        self.validations += 1
        return {"loss": loss}


def _loaders() -> tuple[DataLoader, DataLoader]:
    items = [{"x": torch.ones(1)} for _ in range(4)]
    return DataLoader(items, batch_size=2), DataLoader(items[:2], batch_size=2)


def test_an_epoch_measured_run_stops_early_and_keeps_its_best_epoch(tmp_path):
    """Validation after every epoch, early stopping on the monitored value, best.ckpt and last.ckpt only, no
    logs when they are off; the task's optimiser groups and its train() mode rules are used."""
    from muqkit.hub.weights import safe_torch_load
    from muqkit.train.harness import fit, start_run
    from muqkit.train.lightning import OptimizerConfig

    run = RunConfig(out=str(tmp_path / "run"), max_epochs=10, accelerator="cpu", progress=False, logs=False)
    task = _ScriptedTask([3.0, 1.0, 2.0, 2.0, 0.5])
    frozen_before = task.frozen.weight.detach().clone()
    fitted = fit(task, *_loaders(), run, start_run(run, owned=("checkpoints",)),
                 optimizer=OptimizerConfig(name="adamw", weight_decay=0.0), keep_best=True, patience=2)  # fmt: skip
    # validations 3, 1 (best, epoch 1), 2, 2: two without a lower loss stop the run after 4 epochs of 2 steps
    assert (fitted.epochs, fitted.steps, task.validations) == (4, 8, 4)
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert not (tmp_path / "run" / "logs").exists()
    best = safe_torch_load(fitted.best_checkpoint)
    assert Path(fitted.best_checkpoint).name == "best.ckpt" and (best["epoch"], best["global_step"]) == (1, 4)
    assert torch.equal(task.frozen.weight, frozen_before) and 0.5 < float(task.w) < 1.0  # lr 0 and lr 0.1
    assert task.frozen_modes == [False] * 8

    # a run that ended at its bound, resumed with a higher one, continues from its last epoch
    first = RunConfig(out=str(tmp_path / "two"), max_epochs=2, accelerator="cpu", progress=False, logs=False)
    fit(_ScriptedTask([2.0, 1.0]), *_loaders(), first, start_run(first, owned=("checkpoints",)), keep_best=True,
        patience=2)  # fmt: skip
    more = RunConfig(out=str(tmp_path / "two"), max_epochs=3, accelerator="cpu", progress=False, logs=False,
                     resume=True)  # fmt: skip
    again = _ScriptedTask([0.5])
    resumed = fit(again, *_loaders(), more, start_run(more, owned=("checkpoints",)), keep_best=True, patience=2)
    assert (resumed.epochs, resumed.steps, again.frozen_modes) == (3, 6, [False] * 2)
    assert safe_torch_load(resumed.best_checkpoint)["epoch"] == 2


def test_resume_may_find_no_checkpoint_when_it_is_optional(tmp_path):
    from muqkit.train.harness import start_run

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "run_config.json").write_text("{}")
    run = RunConfig(out=str(tmp_path / "run"), resume=True)
    with pytest.raises(FileNotFoundError, match="--resume: no checkpoint at"):
        start_run(run, owned=("run_config.json",))
    start = start_run(run, owned=("run_config.json",), checkpoint_optional=True)
    assert (start.checkpoint, start.start_step) == (None, 0) and (tmp_path / "run" / "run_config.json").is_file()
    with pytest.raises(ValueError, match=r"RunConfig.max_epochs must be"):
        RunConfig(out=str(tmp_path), max_epochs=0)


class _FrozenPartTask(nn.Module):
    """A trainable ``head`` over a ``frozen`` part (dropout and BatchNorm) that the task's ``train()`` keeps in
    eval mode, as MuQ-MuLan's frozen towers and fine-tuning's frozen backbone are; records what each step sees."""

    def __init__(self) -> None:
        super().__init__()
        self.frozen = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Dropout(0.5)).requires_grad_(False)
        self.head = nn.Sequential(nn.Linear(4, 1), nn.Dropout(0.5))
        self.seen: list[tuple[bool, bool, bool]] = []  # (frozen training, frozen deterministic, head training)

    def train(self, mode: bool = True) -> _FrozenPartTask:
        super().train(mode)
        self.frozen.eval()
        return self

    def training_step(self, batch: dict) -> dict:
        features = self.frozen(batch["x"])
        deterministic = torch.equal(features, self.frozen(batch["x"]))  # dropout off
        self.seen.append((self.frozen.training, deterministic, self.head.training))
        return {"loss": self.head(features).pow(2).mean()}

    def validation_step(self, batch: dict) -> dict:
        return {"loss": self.head(self.frozen(batch["x"])).pow(2).mean()}


@pytest.mark.parametrize("start", ["train", "eval"])
@pytest.mark.parametrize("by_epoch", [False, True])
def test_the_tasks_own_train_mode_rules_hold_in_every_training_step(tmp_path, start, by_epoch):
    """Lightning never calls the task's ``train()`` (it takes the modes a module was built with, and restores
    the flags it captured after validation): the harness applies ``task.train(True)`` whenever training
    starts or resumes after validation. A frozen part stays in eval mode (dropout off, BatchNorm statistics
    untouched) and the trainable parts train, whatever mode the task was built in (a model loaded with
    ``from_pretrained`` comes in eval mode)."""
    from muqkit.train.harness import fit, start_run

    torch.manual_seed(0)
    items = [{"x": torch.randn(4)} for _ in range(8)]
    task = _FrozenPartTask()  # built in training mode, the frozen part too: nothing called the task's train()
    if start == "eval":
        task.eval()
    bn = task.frozen[1]
    stats = (bn.running_mean.clone(), bn.running_var.clone())
    run = RunConfig(out=str(tmp_path / "run"), max_steps=6, max_epochs=3 if by_epoch else None, accelerator="cpu",
                    progress=False, logs=False, checkpoint_every=2)  # fmt: skip
    fit(task, DataLoader(items, batch_size=4), DataLoader(items[:4], batch_size=4), run,
        start_run(run, owned=("checkpoints",)), val_every=1)  # fmt: skip
    assert task.seen == [(False, True, True)] * 6  # validation after every step (or epoch) in between
    assert int(bn.num_batches_tracked) == 0
    assert torch.equal(bn.running_mean, stats[0]) and torch.equal(bn.running_var, stats[1])
