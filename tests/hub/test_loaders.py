"""The loaders and the official translators: two-way key tables, ``(config, state, extras)`` round trips,
and the official extras kept by the hub, not by the model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from muqkit import MuQ
from muqkit.hub import loaders
from muqkit.hub.official import mulan as official_mulan
from muqkit.hub.official import muq as official_muq

PARITY = Path(__file__).resolve().parents[2] / ".." / "shared" / "parity"


def test_muq_key_table_is_two_way():
    model = MuQ.from_preset("tiny")
    for key in model.state_dict():
        official = official_muq.key_to_official(key)
        if official is not None:
            assert official_muq.key_from_official(official) == key
    assert official_muq.key_to_official("conv.blocks.0.conv.weight") == "conv.conv.0.conv.weight"
    assert official_muq.key_from_official("conv.linear.weight") == "conv.proj.weight"
    assert official_muq.key_from_official("linear.weight") is None  # the head: an extra


def test_mulan_key_table_is_two_way():
    pairs = {
        "mulan.audio.transformer.layers.3.0.norm.learned_gamma": "audio.transformer.layers.3.attn.norm.weight",
        "mulan.text.transformer.layers.0.0.to_out.0.weight": "text.transformer.layers.0.attn.to_out.weight",
        "mulan.text.transformer.layers.1.0.to_q.weight": "text.transformer.layers.1.attn.to_q.weight",
        "mulan.audio.transformer.layers.0.1.1.bias": "audio.transformer.layers.0.ff.proj_in.bias",
        "mulan.audio.transformer.layers.0.1.4.weight": "audio.transformer.layers.0.ff.proj_out.weight",
        "mulan.text.model.encoder.layer.0.attention.self.query.weight":
            "text.backbone.encoder.layer.0.attention.self.query.weight",
        "mulan.audio_to_latents.weight": "audio_to_latents.weight",
        "mulan.text.proj.bias": "text.proj.bias",
    }
    for official, ours in pairs.items():
        assert official_mulan.key_from_official(official) == ours
        assert official_mulan.key_to_official(ours) == official
    assert official_mulan.key_from_official("mulan.audio.something.else") is None


def test_from_and_to_official_round_trip_without_a_model():
    model = MuQ.from_preset("tiny", seed=3)
    config, state = official_muq.to_official(model.config, model.state_dict())
    assert config["use_rvq_target"] is False  # no Mel-RVQ travels with a fresh model
    again, ours, extras = official_muq.from_official(config, state)
    assert again == model.config
    expected = {k: v for k, v in model.state_dict().items() if official_muq.key_to_official(k) is not None}
    assert set(ours) == set(expected) and all(torch.equal(ours[k], expected[k]) for k in expected)
    assert {"linear.weight", "linear.bias", "cls_token"} <= set(extras.tensors)
    assert extras.config["codebook_size"] == official_muq.OFFICIAL_TARGET_DEFAULTS["codebook_size"]


def test_unknown_official_keys_are_reported_by_the_check():
    model = MuQ.from_preset("tiny")
    config, state = official_muq.to_official(model.config, model.state_dict())
    state["model.surprise.weight"] = torch.zeros(1)
    _, ours, extras = official_muq.from_official(config, state)
    assert "model.surprise.weight" in ours and "surprise.weight" not in extras.tensors


@pytest.mark.skipif(not (PARITY / "muq_small" / "model").is_dir(), reason="parity fixture not found")
def test_saving_a_loaded_official_checkpoint_writes_the_same_keys_and_values(tmp_path):
    source = PARITY / "muq_small" / "model"
    model = MuQ.from_pretrained(source)
    assert not hasattr(model, "official")  # the model carries no format
    model.save_pretrained(tmp_path)
    original = load_file(str(source / "model.safetensors"))
    saved = load_file(str(tmp_path / "model.safetensors"))
    assert set(saved) == set(original)
    for key, value in original.items():
        assert torch.equal(saved[key].to(value.dtype), value), key


def test_extras_live_in_the_hub_and_follow_the_model(tmp_path):
    model = MuQ.from_preset("tiny")
    assert loaders.official_extras(model).tensors == {}
    head = torch.randn(8192, 64)
    extras = official_muq.OfficialExtras(config={"mask_prob": 0.5}, tensors={"linear.weight": head})
    loaders.save_muq(model, tmp_path / "a", extras=extras)
    loaded = MuQ.from_pretrained(tmp_path / "a")
    assert torch.equal(loaders.official_extras(loaded).tensors["linear.weight"], head)
    assert loaders.official_extras(loaded).config["mask_prob"] == 0.5
    loaded.save_pretrained(tmp_path / "b")  # written back without being asked
    assert torch.equal(load_file(str(tmp_path / "b" / "model.safetensors"))["model.linear.weight"], head)


def test_one_loader_recognises_a_folder_and_loads_what_it_holds(tmp_path, monkeypatch):
    from muqkit.hub.weights import CheckpointError

    muq = MuQ.from_preset("tiny", seed=0).eval()
    folder = muq.save_pretrained(tmp_path / "muq")
    source = loaders.identify_model(folder)
    assert source.kind == "muq" and source.name == str(folder) and source.config
    reads: list[Path] = []
    real = loaders.read_config
    monkeypatch.setattr(loaders, "read_config", lambda f: reads.append(f) or real(f))
    loaded = loaders.load_model(source)  # config.json is not read again
    assert reads == [] and isinstance(loaded, MuQ) and not loaded.training
    torch.testing.assert_close(loaded.state_dict(), muq.state_dict())
    assert loaders.identify_model(tmp_path / "graph.onnx").kind == "onnx"
    with pytest.raises(CheckpointError, match="is a MuQ checkpoint; this needs a MuQ-MuLan"):
        loaders.load_model(source, kinds=("mulan",))
