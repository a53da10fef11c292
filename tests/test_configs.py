"""Configs with one source of truth: one MelConfig shared by every mel-based model, the Conformer nested in
MuQConfig, MuLan's audio backbone config typed, every field validated with an error that names it, and
older flat config files still loading."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest
import torch

from muqkit.audio.mel import MelConfig
from muqkit.encoder.conformer import ConformerConfig
from muqkit.mulan.config import AudioTowerConfig, MuQMuLanConfig, TextTowerConfig, TransformerConfig
from muqkit.ssl.muq import MuQ, MuQConfig, muq_preset
from muqkit.tokenizer import KMeansConfig, MelRVQ, MelRVQConfig, RandomProjectionConfig, load_tokenizer


def test_dropout_out_of_range_is_an_error_that_names_the_field():
    with pytest.raises(ValueError, match=r"ConformerConfig\.dropout must be in \[0, 1\), got 2\.0"):
        ConformerConfig(dropout=2.0)
    with pytest.raises(ValueError, match="dropout"):
        MuQ.from_preset("tiny", dropout=2.0)
    with pytest.raises(ValueError, match=r"given as MuQConfig\.dropout"):
        MuQConfig.from_dict({"dropout": 2.0})


def test_audio_tower_layer_out_of_range_is_an_error_that_names_the_field():
    with pytest.raises(ValueError, match=r"AudioTowerConfig\.layer must be in \[-13, 12\].*got 99"):
        AudioTowerConfig(layer=99)  # the default backbone is MuQ-large: 12 layers
    with pytest.raises(ValueError, match=r"AudioTowerConfig\.layer"):
        AudioTowerConfig(backbone="preset:tiny", layer=3)
    with pytest.raises(ValueError, match=r"AudioTowerConfig\.layer"):
        AudioTowerConfig(backbone="preset:tiny", backbone_config=muq_preset("tiny"), layer=-4)
    assert AudioTowerConfig(backbone="preset:tiny", layer=2).layer == 2
    assert AudioTowerConfig(backbone="preset:tiny", layer=-3).layer == -3
    # A backbone whose depth is unknown until it is read: checked when the tower is built.
    assert AudioTowerConfig(backbone="/some/folder", layer=99).backbone_depth is None


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: MelConfig(sample_rate=0), "MelConfig.sample_rate"),
        (lambda: MelConfig(n_fft=2.5), "MelConfig.n_fft"),
        (lambda: MelConfig(n_fft=128, hop_length=240), "MelConfig.n_fft"),
        (lambda: MelConfig(n_mels=-1), "MelConfig.n_mels"),
        (lambda: ConformerConfig(dim=0), "ConformerConfig.dim"),
        (lambda: ConformerConfig(depth=-1), "ConformerConfig.depth"),
        (lambda: ConformerConfig(num_heads=0), "ConformerConfig.num_heads"),
        (lambda: ConformerConfig(dim=96, num_heads=5), "ConformerConfig.dim"),
        (lambda: ConformerConfig(ffn_dim=0), "ConformerConfig.ffn_dim"),
        (lambda: ConformerConfig(conv_kernel_size=4), "ConformerConfig.conv_kernel_size"),
        (lambda: ConformerConfig(rotary_base=0), "ConformerConfig.rotary_base"),
        (lambda: ConformerConfig(layer_norm_eps=0.0), "ConformerConfig.layer_norm_eps"),
        (lambda: ConformerConfig(attention_dropout=1.0), "ConformerConfig.attention_dropout"),
        (lambda: MuQConfig(mel_std=0.0), "MuQConfig.mel_std"),
        (lambda: MuQConfig(mel_mean=float("nan")), "MuQConfig.mel_mean"),
        (lambda: MuQConfig(conv_dim=0), "MuQConfig.conv_dim"),
        (lambda: MuQConfig(label_rate=7), "MuQConfig.label_rate"),
        (lambda: MuQConfig(mel={"n_mels": 64}), "MuQConfig.mel"),
        (lambda: MuQConfig.from_dict({"encoder_dim": 0}), "MuQConfig.encoder_dim"),
        (lambda: MuQConfig.from_dict({"encoder_dimm": 64}), "encoder_dimm"),
        (lambda: MelRVQConfig(stack=0), "MelRVQConfig.stack"),
        (lambda: MelRVQConfig(codebook_dim=0), "codebook_dim"),
        (lambda: RandomProjectionConfig(seed=-1), "RandomProjectionConfig.seed"),
        (lambda: RandomProjectionConfig(codebook_size=0), "RandomProjectionConfig.codebook_size"),
        (lambda: KMeansConfig(feature="chroma"), "KMeansConfig.feature"),
        (lambda: KMeansConfig(n_mfcc=200), "KMeansConfig.n_mfcc"),
        (lambda: KMeansConfig(deltas="yes"), "KMeansConfig.deltas"),
        (lambda: TransformerConfig(heads=0), "TransformerConfig.heads"),
        (lambda: TransformerConfig(ff_mult=0), "TransformerConfig.ff_mult"),
        (lambda: TransformerConfig(ff_dropout=1.5), "TransformerConfig.ff_dropout"),
        (lambda: AudioTowerConfig(lag_pooling=-1), "AudioTowerConfig.lag_pooling"),
        (lambda: AudioTowerConfig(lag_channels=0), "AudioTowerConfig.lag_channels"),
        (lambda: AudioTowerConfig(backbone=""), "AudioTowerConfig.backbone"),
        (lambda: TextTowerConfig(max_length=2), "TextTowerConfig.max_length"),
        (lambda: MuQMuLanConfig(dim_latent=0), "MuQMuLanConfig.dim_latent"),
        (lambda: MuQMuLanConfig(clip_secs=0.0), "MuQMuLanConfig.clip_secs"),
        (lambda: MuQMuLanConfig(init_temperature=-1.0), "MuQMuLanConfig.init_temperature"),
        (lambda: MuQMuLanConfig(audio=AudioTowerConfig(backbone_config=muq_preset("tiny")), sample_rate=16000),
         "MuQMuLanConfig.sample_rate"),
    ],
)
def test_every_field_is_validated_by_name(build, field):
    with pytest.raises(ValueError) as info:
        build()
    assert field in str(info.value)


def test_one_mel_config_shared_by_every_mel_model():
    configs = [MuQConfig(), MelRVQConfig(), RandomProjectionConfig(), KMeansConfig()]
    assert all(c.mel == MelConfig() for c in configs)
    mel = MelConfig(n_fft=1024, n_mels=64)
    for cls in (MelRVQConfig, RandomProjectionConfig, KMeansConfig):
        config = cls(mel=mel)
        assert (config.sample_rate, config.n_fft, config.hop_length, config.n_mels) == (24000, 1024, 240, 64)
    muq = MuQConfig(mel=mel, conformer=ConformerConfig(dim=64, depth=1, num_heads=4, ffn_dim=64))
    assert muq.n_mels == 64 and muq.encoder_dim == 64 and muq.encoder_depth == 1 and muq.num_heads == 4


def test_muq_config_nests_the_conformer_and_reads_old_flat_dicts():
    config = muq_preset("tiny")
    assert isinstance(config.conformer, ConformerConfig) and config.conformer.dim == config.encoder_dim == 64
    assert MuQConfig.from_dict(config.to_dict()) == config
    assert MuQConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    flat = {  # the layout of MuQConfig before the nesting (saved in MuQ-MuLan configs)
        "sample_rate": 24000, "n_fft": 2048, "hop_length": 240, "n_mels": 128, "mel_mean": config.mel_mean,
        "mel_std": config.mel_std, "conv_dim": 16, "encoder_dim": 64, "encoder_depth": 2, "num_heads": 4,
        "ffn_dim": 128, "conv_kernel_size": 31, "rotary_base": 10000, "layer_norm_eps": 1e-5, "dropout": 0.1,
        "attention_dropout": 0.1, "label_rate": 25,
    }
    assert MuQConfig.from_dict(flat) == config
    assert config.replace(encoder_depth=1).conformer.depth == 1
    assert config.replace(conformer=ConformerConfig(dim=32, depth=1, num_heads=2, ffn_dim=8)).encoder_dim == 32


def test_mulan_backbone_config_is_typed_and_old_flat_files_load():
    config = MuQMuLanConfig(audio=AudioTowerConfig(backbone="preset:tiny", backbone_config=muq_preset("tiny")))
    assert isinstance(config.audio.backbone_config, MuQConfig)
    assert MuQMuLanConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    old = config.to_dict()
    c = config.audio.backbone_config
    old["audio"]["backbone_config"] = {**{k: v for k, v in asdict(c).items() if k not in ("mel", "conformer")},
                                       **asdict(c.mel), "encoder_dim": 64, "encoder_depth": 2, "num_heads": 4,
                                       "ffn_dim": 128}
    assert MuQMuLanConfig.from_dict(old) == config


def test_old_flat_tokenizer_folders_load(tmp_path):
    torch.manual_seed(0)
    tokenizer = MelRVQ(MelRVQConfig(mel=MelConfig(n_mels=64), num_codebooks=2, codebook_size=16), mean=3.0, std=9.0)
    tokenizer.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["mel"] == {"sample_rate": 24000, "n_fft": 2048, "hop_length": 240, "n_mels": 64}
    flat = {k: v for k, v in saved.items() if k != "mel"} | saved["mel"]  # the layout before MelConfig
    (tmp_path / "config.json").write_text(json.dumps(flat))
    loaded = load_tokenizer(tmp_path)
    assert loaded.config == tokenizer.config
    wav = torch.randn(1, 24000)
    assert torch.equal(loaded.encode(wav), tokenizer.eval().encode(wav))
    for cls in (RandomProjectionConfig, KMeansConfig):
        assert cls.from_dict({"n_mels": 64, "stack": 2}) == cls(mel=MelConfig(n_mels=64), stack=2)
    with pytest.raises(ValueError, match="unknown config keys"):
        KMeansConfig.from_dict({"n_melz": 64})


# Each preset: the settings it changes from tiny-official besides the architecture, and their values.
PRESETS = {
    "w128.yaml": {},
    "w128-lr2e-4.yaml": {"lr": 2e-4},
    "w128-lr1e-4.yaml": {"lr": 1e-4},
    "w128-lr2e-4-cbw.yaml": {"lr": 2e-4, "codebook_weights": (1.0, 0.5, 0.25, 0.125)},
    "w128-lr2e-4-mask0.4.yaml": {"lr": 2e-4, "mask_prob": 0.4},
    "w128-lr2e-4-warm0.25.yaml": {"lr": 2e-4, "warmup_fraction": 0.25},
    "w128-lr2e-4-fixedbn.yaml": {"lr": 2e-4, "fixed_batchnorm": "frontend"},
    "w128-lr2e-4-fixedbn-all.yaml": {"lr": 2e-4, "fixed_batchnorm": "all"},
    "lr2e-4.yaml": {"lr": 2e-4},
    "mask0.4.yaml": {"mask_prob": 0.4},
}


@pytest.mark.parametrize("name", PRESETS)
def test_recipe_study_presets_build_the_documented_architecture(name):
    """bench/recipe_presets/ holds the presets docs/results.md's recipe study runs; each must still make a
    valid pretraining config, differing from tiny-official in what its description says."""
    from pathlib import Path

    from muqkit.configs.presets import load_preset
    from muqkit.train.pretrain import PretrainTrainingConfig

    path = Path(__file__).resolve().parents[1] / "bench" / "recipe_presets" / name
    base = load_preset("tiny-official")
    settings = load_preset(path)
    changed = {k for k in settings.keys() | base.keys() if settings.get(k) != base.get(k)}
    config = PretrainTrainingConfig.from_dict({**settings, "tokenizer": "unused"})
    wide = name.startswith("w128")  # the width arm: width 128, depth 4
    assert changed == set(PRESETS[name]) | ({"model"} if wide else set())
    assert {k: getattr(config, k) for k in PRESETS[name]} == PRESETS[name]
    if wide:
        w128 = PretrainTrainingConfig.from_dict({**load_preset(path.with_name("w128.yaml")), "tokenizer": "unused"})
        assert config.architecture == w128.architecture
        conformer = config.architecture.conformer
        assert (config.architecture.conv_dim, conformer.dim, conformer.depth, conformer.ffn_dim) == (32, 128, 4, 256)
        assert sum(p.numel() for p in MuQ(config.architecture).parameters()) > 5 * sum(
            p.numel() for p in MuQ(muq_preset("tiny")).parameters()
        )
