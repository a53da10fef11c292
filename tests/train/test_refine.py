"""Iterative refinement: latents, latent RVQ, sharded resumable labels, next model; and the CLI."""

from __future__ import annotations

import pytest
import torch

from muqkit.data.label_shards import read_labels
from muqkit.hub.loaders import official_extras
from muqkit.ssl.muq import MuQ
from muqkit.ssl.pretrain import LatentTargets
from muqkit.tokenizer import LatentRVQ, LatentRVQConfig
from muqkit.train.refine import RefineConfig, default_layer, extract_labels, refine

pytest.importorskip("lightning")


def test_default_layer_scales_the_recipe():
    assert default_layer(12) == 9 and default_layer(8) == 6 and default_layer(2) == 2


def test_labels_are_sharded_resumable_and_match_the_targets(tone_manifest, tmp_path):
    torch.manual_seed(0)
    model = MuQ.from_preset("tiny").eval()
    rvq = LatentRVQ(LatentRVQConfig(input_dim=64, num_codebooks=2, codebook_size=16, codebook_dim=4)).eval()
    targets = LatentTargets(model, 1, rvq)
    out = extract_labels(targets, [tone_manifest], tmp_path / "labels", shard_items=4)
    labels, meta = read_labels(out)
    assert meta["shards"] == ["labels-00000.safetensors", "labels-00001.safetensors"] and len(labels) == 6
    from muqkit.data.loader import load_records, read_crop

    record, path = load_records([tone_manifest], splits=None)[0]
    audio = read_crop(path, 24000, 0, 1 << 40)
    direct = targets.encode(audio.unsqueeze(0))[0]
    assert torch.equal(labels[record.id], direct)
    # a rerun keeps finished shards untouched
    shard = out / "labels-00000.safetensors"
    stamp = shard.stat().st_mtime_ns
    extract_labels(targets, [tone_manifest], out, shard_items=4)
    assert shard.stat().st_mtime_ns == stamp


def test_refine_end_to_end_and_cli_steps(tone_manifest, tmp_path):
    torch.set_num_threads(1)
    MuQ.from_preset("tiny", seed=1).save_pretrained(tmp_path / "iter1")
    pretrain = dict(preset="tiny", crop_seconds=1.0, batch_size=2, max_steps=2, warmup_steps=1, progress=False,
                    accelerator="cpu", checkpoint_every=10, log_every=1)
    config = RefineConfig(num_codebooks=2, codebook_size=16, codebook_dim=4, rvq_steps=2, rvq_batch_size=4,
                          shard_items=4, pretrain=pretrain)
    result = refine(tmp_path / "iter1", [tone_manifest], tmp_path / "iter2", config, progress=False)
    nxt = MuQ.from_pretrained(result.model_dir)
    extras = official_extras(nxt)
    assert extras.config["codebook_size"] == 32 and extras.config["rvq_n_codebooks"] == 2
    assert (result.latents / "latents.txt").read_text().count(".npy") == 5  # train split only
    labels, meta = read_labels(result.labels)
    assert meta["num_codebooks"] == 2 and all(v.max() < 16 for v in labels.values())
    # a rerun keeps every finished step, the next model's training included
    stamp = (result.model_dir / "model.safetensors").stat().st_mtime_ns
    again = refine(tmp_path / "iter1", [tone_manifest], tmp_path / "iter2", config, progress=False)
    assert again.model_dir == result.model_dir
    assert (result.model_dir / "model.safetensors").stat().st_mtime_ns == stamp

    from muqkit.cli.main import main

    out = tmp_path / "cli"
    common = [str(tmp_path / "iter1"), str(tone_manifest), "--out", str(out), "--num-codebooks", "2",
              "--codebook-size", "16", "--codebook-dim", "4", "--rvq-steps", "1", "--no-progress"]
    assert main(["refine", *common, "--step", "latents", "--layer", "1"]) == 0
    assert main(["refine", *common, "--step", "rvq"]) == 0
    assert main(["refine", *common, "--step", "labels", "--layer", "1"]) == 0
    assert (out / "labels" / "labels.json").is_file()
