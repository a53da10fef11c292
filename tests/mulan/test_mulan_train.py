"""The training task learns: on synthetic (audio, caption) pairs the contrastive loss falls and retrieval
beats chance; the Lightning run writes a loadable model."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch

from muqkit.mulan.loss import ContrastiveLoss
from muqkit.train.mulan import MuLanTask

PITCHES = {"low": 110.0, "middle": 440.0, "high": 1760.0, "buzzing": 55.0}


def _pairs(n: int, seed: int) -> tuple[torch.Tensor, list[str]]:
    """Sines whose register the caption names."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(24000) / 24000
    names = list(PITCHES)
    wavs, captions = [], []
    for i in range(n):
        name = names[i % len(names)]
        wavs.append(torch.sin(2 * math.pi * PITCHES[name] * t) + 0.05 * torch.randn(24000, generator=g))
        captions.append(f"a {name} tone")
    return torch.stack(wavs), captions


def test_training_steps_reduce_the_loss(tiny_mulan):
    from muqkit.mulan import MuQMuLan

    torch.manual_seed(0)
    model = MuQMuLan.from_config(tiny_mulan.config)
    task = MuLanTask(model, loss=ContrastiveLoss(), freeze=("audio_backbone",))
    assert not any(p.requires_grad for p in model.audio.backbone.parameters())
    task.train()
    assert not model.audio.backbone.training and model.audio.proj.training
    wavs, captions = _pairs(8, 0)
    tokens = model.text.tokenize(captions)
    batch = {
        "wavs": wavs,
        "lengths": torch.full((8,), 24000),
        "input_ids": tokens.input_ids,
        "attention_mask": tokens.attention_mask,
    }
    optim = torch.optim.Adam([p for p in task.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(25):
        out = task.training_step(batch)
        optim.zero_grad()
        out["loss"].backward()
        optim.step()
        losses.append(float(out["loss"]))
    assert losses[-1] < 0.5 * losses[0], losses
    assert float(task.validation_step(batch)["text_to_audio_accuracy"]) >= 0.5


def test_freeze_options_are_checked(tiny_mulan):
    with pytest.raises(ValueError, match="unknown parts"):
        MuLanTask(tiny_mulan, freeze=("audio_bakbone",))


def _caption_manifest(tmp_path):
    from muqkit.data.manifest import AudioRecord, write_manifest

    wavs, captions = _pairs(12, 1)
    records = []
    for i, (wav, caption) in enumerate(zip(wavs, captions, strict=True)):
        path = tmp_path / "audio" / f"{i}.wav"
        path.parent.mkdir(exist_ok=True)
        sf.write(path, wav.numpy().astype(np.float32), 24000)
        records.append(
            AudioRecord(
                id=str(i),
                path=f"audio/{i}.wav",
                duration=1.0,
                sample_rate=24000,
                num_samples=24000,
                split="train" if i < 8 else "valid",
                group=str(i),
                source="test",
                labels={"caption": caption},
            )
        )
    write_manifest(tmp_path / "manifest.jsonl", records)
    return tmp_path / "manifest.jsonl"


def test_lightning_run_saves_a_model(tmp_path):
    from muqkit.mulan import MuQMuLan
    from muqkit.train.mulan import MuLanTrainConfig, train_mulan

    _caption_manifest(tmp_path)
    out = train_mulan(
        MuLanTrainConfig(
            manifests=(str(tmp_path / "manifest.jsonl"),),
            out=str(tmp_path / "run"),
            preset="test",
            max_steps=3,
            batch_size=4,
            val_every=2,
            warmup_steps=1,
            accelerator="cpu",
        )
    )
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
    model = MuQMuLan.from_pretrained(out)
    assert json.loads((out / "config.json").read_text())["model_type"] == "muqkit-mulan"
    assert model(texts=["a low tone"]).shape == (1, 16)
    # validation ran at step 2 only, so the best-on-validation export is step 2's weights, not the last step's
    best_ckpt = torch.load(tmp_path / "run" / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    assert best_ckpt["global_step"] == 2
    best = MuQMuLan.from_pretrained(tmp_path / "run" / "model-best")
    name = "text_to_latents.weight"
    assert torch.equal(best.state_dict()[name], best_ckpt["state_dict"][f"task.model.{name}"])
    assert not torch.equal(best.state_dict()[name], model.state_dict()[name])


def test_resumed_run_equals_an_uninterrupted_one(tmp_path):
    """Draws are seeded by the step counter and the random state is checkpointed: 2 + 2 steps == 4 steps."""
    from muqkit.mulan import MuQMuLan
    from muqkit.train.mulan import MuLanTrainConfig, train_mulan

    torch.set_num_threads(1)
    manifest = str(_caption_manifest(tmp_path))

    def config(out, max_steps):  # constant learning rate after a 4-step warm-up: the schedule ignores max_steps
        return MuLanTrainConfig(manifests=(manifest,), out=str(tmp_path / out), preset="test", max_steps=max_steps,
                                batch_size=4, val_every=100, warmup_steps=4, accelerator="cpu")  # fmt: skip

    straight = MuQMuLan.from_pretrained(train_mulan(config("a", 4))).state_dict()
    train_mulan(config("b", 2))
    resumed = MuQMuLan.from_pretrained(train_mulan(config("b", 4))).state_dict()
    assert straight.keys() == resumed.keys()
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key


def test_training_draws_cover_each_epoch_once():
    from muqkit.data.manifest import AudioRecord
    from muqkit.train.mulan import CaptionedAudioDataset

    records = [AudioRecord(str(i), f"{i}.wav", 1.0, 24000, 24000, "train", str(i), "t") for i in range(10)]
    data = CaptionedAudioDataset(records, ".", clip_samples=100, seed=3, epoch_items=8)
    epochs = [[data.locate(e * 8 + j)[0] for j in range(8)] for e in range(3)]
    assert all(len(set(items)) == 8 for items in epochs)  # no item twice within an epoch
    assert epochs[0] != epochs[1]  # each epoch has its own order
    again = CaptionedAudioDataset(records, ".", clip_samples=100, seed=3, epoch_items=8)
    assert [again.locate(i)[0] for i in range(24)] == [i for e in epochs for i in e]  # a function of the index
    first, second = data.locate(5)[1], again.locate(5)[1]
    assert first is not None and second is not None and first.random() == second.random()


def test_train_config_holds_the_typed_architecture(tmp_path):
    """``model`` is a MuQMuLanConfig built once from the preset (or ``model_config``) and the overrides; a
    config rebuilt from its asdict is the same; ``init`` leaves the checkpoint's architecture."""
    from dataclasses import asdict

    from muqkit.mulan.config import MuQMuLanConfig, mulan_preset
    from muqkit.train.mulan import MuLanTrainConfig, build_model

    base = dict(manifests=("m.jsonl",), out=str(tmp_path / "run"))
    config = MuLanTrainConfig(**base, preset="test", audio_layer=1, lag_pooling=3, muq="some/muq")
    assert isinstance(config.model, MuQMuLanConfig)
    assert (config.model.audio.layer, config.model.audio.lag_pooling) == (1, 3)
    assert (config.model.audio.backbone, config.model.audio.backbone_config) == ("some/muq", None)
    assert MuLanTrainConfig(**asdict(config)) == config

    (tmp_path / "arch.json").write_text(json.dumps(mulan_preset("test", dim_latent=8).to_dict()))
    from_file = MuLanTrainConfig(**base, model_config=str(tmp_path / "arch.json"))
    assert from_file.model == mulan_preset("test", dim_latent=8)
    assert MuLanTrainConfig(**asdict(from_file)) == from_file
    assert build_model(from_file).config.dim_latent == 8  # the model is built from the stored architecture
    with pytest.raises(ValueError, match="MuLanTrainConfig.model_config: cannot read"):
        MuLanTrainConfig(**base, model_config=str(tmp_path / "missing.json"))
    with pytest.raises(ValueError, match="unknown"):
        MuLanTrainConfig(**base, model={"dim_latentx": 8})

    assert MuLanTrainConfig(**base, init="some/checkpoint").model is None
    with pytest.raises(ValueError, match="model or init"):
        MuLanTrainConfig(**base, init="some/checkpoint", model=from_file.model)


def test_a_frozen_backbone_stays_in_eval_mode_through_the_harness(tmp_path, monkeypatch):
    """``MuLanTask.train()`` holds under Lightning: the frozen audio backbone runs in eval mode (no dropout,
    BatchNorm statistics as they were: the saved backbone equals the initial one) and the trainable text
    backbone, which ``transformers`` builds in eval mode, trains, before and after a validation."""
    from muqkit.mulan import MuQMuLan
    from muqkit.train.mulan import MuLanTrainConfig, build_model, train_mulan

    _caption_manifest(tmp_path)
    config = MuLanTrainConfig(manifests=(str(tmp_path / "manifest.jsonl"),), out=str(tmp_path / "run"), preset="test",
                              max_steps=4, batch_size=4, val_every=2, warmup_steps=1, accelerator="cpu",
                              freeze=("audio_backbone",))  # fmt: skip
    initial = build_model(config).audio.backbone.state_dict()
    modes = []
    step = MuLanTask.training_step

    def recording(self, batch):
        modes.append((self.model.audio.backbone.training, self.model.text.backbone.training, self.model.training))
        return step(self, batch)

    monkeypatch.setattr(MuLanTask, "training_step", recording)
    trained = MuQMuLan.from_pretrained(train_mulan(config)).audio.backbone.state_dict()
    assert modes == [(False, True, True)] * 4  # validation after step 2
    assert trained.keys() == initial.keys()
    for key in initial:
        assert torch.equal(trained[key], initial[key]), key  # running_mean / running_var / num_batches_tracked too
