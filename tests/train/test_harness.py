"""The one training harness: validated run settings, one run-folder layout, random state in every checkpoint."""

from __future__ import annotations

import pytest
import torch

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
