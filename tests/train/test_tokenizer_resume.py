"""Tokenizer training draws seeded crops by step: a resumed run ends with the weights of an uninterrupted one,
whatever the source (folder, plain list of paths, manifest)."""

from __future__ import annotations

import pytest
import torch

from muqkit.tokenizer.base import load_tokenizer

pytest.importorskip("lightning")


def _config(max_steps: int):
    from muqkit.train.tokenizer import TokenizerTrainingConfig

    return TokenizerTrainingConfig(
        crop_seconds=0.5, batch_size=2, max_steps=max_steps, lr=1e-2, sample_size=512, checkpoint_every=1,
        log_every=1, model=dict(num_codebooks=2, codebook_size=16),
    )  # fmt: skip


def test_resumed_tokenizer_run_equals_an_uninterrupted_one(tone_manifest, tmp_path):
    from muqkit.train.tokenizer import train_tokenizer

    torch.set_num_threads(1)
    straight = train_tokenizer(tone_manifest, tmp_path / "a", _config(4), progress=False)
    train_tokenizer(tone_manifest, tmp_path / "b", _config(1), progress=False)  # 1 + 3 steps
    resumed = train_tokenizer(tone_manifest, tmp_path / "b", _config(4), resume=True, progress=False)
    assert straight.steps == resumed.steps == 4
    a = load_tokenizer(straight.tokenizer_dir).state_dict()
    b = load_tokenizer(resumed.tokenizer_dir).state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # and training moved the codebooks away from their k-means start
    start = load_tokenizer(train_tokenizer(tone_manifest, tmp_path / "c", _config(1), progress=False).tokenizer_dir)
    moved = [k for k in a if "codebook" in k and not torch.equal(a[k], start.state_dict()[k])]
    assert moved


def test_a_folder_and_a_plain_list_train_like_the_manifest(tone_manifest, tmp_path):
    from muqkit.data.loader import load_records
    from muqkit.train.tokenizer import train_tokenizer

    train_files = [path for record, path in load_records([tone_manifest]) if record.split == "train"]
    listed = tmp_path / "train.txt"
    listed.write_text("".join(f"{p}\n" for p in train_files))
    from_list = train_tokenizer(listed, tmp_path / "list", _config(2), progress=False)
    from_manifest = train_tokenizer(tone_manifest, tmp_path / "manifest", _config(2), progress=False)
    a = load_tokenizer(from_list.tokenizer_dir).state_dict()
    b = load_tokenizer(from_manifest.tokenizer_dir).state_dict()
    for key in a:  # same files, same durations, same seeded crops: same weights
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    from_folder = train_tokenizer(tone_manifest.parent / "audio", tmp_path / "folder", _config(2), progress=False)
    assert from_folder.steps == 2  # the folder also holds the valid clip: other crops, same machinery


def test_the_architecture_is_a_typed_config():
    from muqkit.tokenizer.latent import LatentRVQConfig
    from muqkit.tokenizer.mel_rvq import MelRVQConfig
    from muqkit.train.tokenizer import TokenizerTrainingConfig, build_model

    config = TokenizerTrainingConfig(model={"num_codebooks": 3, "codebook_size": 16, "n_mels": 64})
    assert isinstance(config.model, MelRVQConfig)
    assert (config.model.num_codebooks, config.model.mel.n_mels) == (3, 64)
    assert TokenizerTrainingConfig(model=config.model).model == config.model
    latent = TokenizerTrainingConfig(kind="latent_rvq", model={"input_dim": 32})
    assert latent.model == LatentRVQConfig(input_dim=32)
    assert build_model(latent).config == latent.model
    with pytest.raises(ValueError, match="TokenizerTrainingConfig.model: unknown config keys \\['layers'\\]"):
        TokenizerTrainingConfig(kind="latent_rvq", model={"layers": 2})
    with pytest.raises(ValueError, match="must be a LatentRVQConfig for kind 'latent_rvq'"):
        TokenizerTrainingConfig(kind="latent_rvq", model=config.model)
    # the settings a run saves (JSON) rebuild the same config
    import dataclasses
    import json

    saved = json.loads(json.dumps(dataclasses.asdict(config)))
    assert TokenizerTrainingConfig(**saved) == config
