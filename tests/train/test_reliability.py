"""Pretraining reliability: safe resume, run-folder rule, metric history, NaN audio and NaN loss."""

from __future__ import annotations

import csv
import json
import os
import pickle
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from muqkit.audio.io import AudioError
from muqkit.data.manifest import AudioRecord, read_manifest, write_manifest
from muqkit.hub.weights import CheckpointError
from muqkit.runfolder import RunFolderError
from muqkit.train.pretrain import PretrainTrainingConfig, train_pretrain

pytest.importorskip("lightning")


def _config(tokenizer: Path, **overrides) -> PretrainTrainingConfig:
    settings = dict(
        preset="tiny", tokenizer=str(tokenizer), crop_seconds=1.0, batch_size=2, max_steps=4, lr=2e-3,
        warmup_steps=1, checkpoint_every=2, log_every=1, progress=False, accelerator="cpu", seed=3,
    )  # fmt: skip
    settings.update(overrides)
    return PretrainTrainingConfig(**settings)


class _RunsCode:
    """Unpickling this calls os.system: a checkpoint that would run code when loaded unsafely."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_resume_refuses_a_checkpoint_that_would_run_code(tone_manifest, tiny_tokenizer, tmp_path, capsys):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "run_config.json").write_text(
        json.dumps({"config": asdict(_config(tiny_tokenizer)), "manifests": [str(tone_manifest)]})
    )
    marker = tmp_path / "pwned"
    with open(run / "checkpoints" / "last.ckpt", "wb") as fh:
        pickle.dump({"global_step": 2, "payload": _RunsCode(marker)}, fh, protocol=2)
    with pytest.raises(CheckpointError, match="refused to load"):
        train_pretrain([tone_manifest], run, _config(tiny_tokenizer), resume=True)
    assert not marker.exists()

    from muqkit.cli.main import main

    code = main(["pretrain", str(tone_manifest), "--out", str(run), "--tokenizer", str(tiny_tokenizer), "--resume"])
    err = capsys.readouterr().err
    assert code == 2 and "last.ckpt: refused to load" in err and "Traceback" not in err
    assert not marker.exists()


def test_run_folder_rule_and_history_across_resume(tone_manifest, tiny_tokenizer, tmp_path):
    torch.set_num_threads(1)
    run = tmp_path / "run"
    train_pretrain([tone_manifest], run, _config(tiny_tokenizer), stop_after=2)
    metrics = run / "logs" / "version_0" / "metrics.csv"
    first = metrics.read_text()
    # an existing run is neither silently replaced nor continued
    model_bytes = (run / "checkpoints" / "last.ckpt").read_bytes()
    with pytest.raises(RunFolderError, match="--resume to continue it or --overwrite"):
        train_pretrain([tone_manifest], run, _config(tiny_tokenizer))
    assert (run / "checkpoints" / "last.ckpt").read_bytes() == model_bytes

    train_pretrain([tone_manifest], run, _config(tiny_tokenizer), resume=True)
    with open(metrics, newline="") as fh:
        steps = sorted(int(float(r["step"])) for r in csv.DictReader(fh) if r.get("train/loss"))
    assert steps == [0, 1, 2, 3]  # the history before the resume is still there
    assert first.splitlines()[1] in metrics.read_text()


def _nan_manifest(tone_manifest: Path, tmp_path: Path) -> tuple[Path, Path]:
    records = read_manifest(tone_manifest)
    root = tone_manifest.parent
    bad = tmp_path / "nan.wav"
    audio = np.zeros(24000, dtype=np.float32)
    audio[100:200] = np.nan
    sf.write(bad, audio, 24000, subtype="FLOAT")
    records = [AudioRecord(r.id, str(root / r.path), r.duration, r.sample_rate, r.num_samples, r.split, r.group,
                           r.source, dict(r.labels)) for r in records]  # fmt: skip
    records.append(AudioRecord("nan", str(bad), 1.0, 24000, 24000, "train", "gnan", "tones", {}))
    manifest = tmp_path / "with-nan.jsonl"
    write_manifest(manifest, records)
    return manifest, bad


def test_nan_audio_stops_pretraining_naming_the_file(tone_manifest, tiny_tokenizer, tmp_path):
    manifest, bad = _nan_manifest(tone_manifest, tmp_path)
    with pytest.raises(AudioError, match="nan.wav: audio contains NaN"):
        train_pretrain([manifest], tmp_path / "run", _config(tiny_tokenizer, max_steps=6, batch_size=4, preload=True))
    with pytest.raises(AudioError, match="nan.wav: audio contains NaN"):
        train_pretrain([manifest], tmp_path / "run2", _config(tiny_tokenizer, max_steps=6, batch_size=4))
    assert not (tmp_path / "run2" / "model").exists()


def test_non_finite_loss_stops_training_naming_step_and_files(tone_manifest, tiny_tokenizer, tmp_path, monkeypatch):
    from muqkit.train import pretrain as P
    from muqkit.train.lightning import NonFiniteLossError

    real = P.PretrainTask._step

    def poisoned(self, batch):
        metrics = real(self, batch)
        return {**metrics, "loss": metrics["loss"] * float("nan")}

    monkeypatch.setattr(P.PretrainTask, "_step", poisoned)
    with pytest.raises(NonFiniteLossError, match=r"at step 0; the batch's inputs: .*tone\d\.wav"):
        train_pretrain([tone_manifest], tmp_path / "run", _config(tiny_tokenizer))
    assert not (tmp_path / "run" / "model").exists()
