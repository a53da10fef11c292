"""Lightning pretraining: manifests, exact resume, presets, and two gloo DDP processes in sync."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from muqkit.data.loader import RandomCropDataset, ResumableSampler, collate_crops, load_records
from muqkit.ssl.muq import MuQ
from muqkit.train.pretrain import PretrainTrainingConfig, load_preset, preset_names, train_pretrain

pytest.importorskip("lightning")


def _config(tokenizer: Path, **overrides) -> PretrainTrainingConfig:
    settings = dict(
        preset="tiny", tokenizer=str(tokenizer), crop_seconds=1.0, batch_size=2, max_steps=4, lr=2e-3,
        warmup_steps=1, checkpoint_every=2, log_every=1, progress=False, accelerator="cpu", seed=3,
        model={"dropout": 0.1},
    )
    settings.update(overrides)
    return PretrainTrainingConfig(**settings)


def test_crops_are_stateless_and_frame_aligned(tone_manifest):
    records = load_records([tone_manifest])
    assert {r.split for r, _ in records} == {"train"}
    ds = RandomCropDataset(records, crop_seconds=1.0, seed=5)
    a, b = ds[17], ds[17]
    assert torch.equal(a["audio"], b["audio"]) and ds.locate(17)[1] % 960 == 0
    assert len({ds.locate(i) for i in range(50)}) > 10  # crops vary with the index
    batch = collate_crops([ds[i] for i in range(3)])
    assert batch["audio"].shape == (3, 24000) and batch["lengths"].tolist() == [24000] * 3
    labels = {r.id: torch.arange(200).repeat(2, 1) for r, _ in records}
    item = RandomCropDataset(records, crop_seconds=1.0, seed=5, labels=labels)[17]
    assert item["codes"].shape == (2, 25) and int(item["codes"][0, 0]) == ds.locate(17)[1] // 960


def test_sampler_resumes_at_a_batch_and_splits_ranks(monkeypatch):
    full = list(ResumableSampler(batch_size=2, num_batches=4))
    assert full == list(range(8))
    assert list(ResumableSampler(batch_size=2, num_batches=4, start_batch=2)) == full[4:]
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert list(ResumableSampler(batch_size=2, num_batches=2)) == [2, 3, 6, 7]


def test_train_then_resume_is_exact(tone_manifest, tiny_tokenizer, tmp_path):
    torch.set_num_threads(1)
    straight = train_pretrain([tone_manifest], tmp_path / "a", _config(tiny_tokenizer, max_steps=4))
    assert straight.steps == 4 and (straight.model_dir / "config.json").is_file()
    assert "train/ce_0" in (tmp_path / "a" / "logs" / "version_0" / "metrics.csv").read_text()

    train_pretrain([tone_manifest], tmp_path / "b", _config(tiny_tokenizer, max_steps=4), stop_after=2)
    resumed = train_pretrain([tone_manifest], tmp_path / "b", _config(tiny_tokenizer, max_steps=4), resume=True)
    assert resumed.steps == 4
    a = MuQ.from_pretrained(straight.model_dir).state_dict()
    b = MuQ.from_pretrained(resumed.model_dir).state_dict()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # the model loads in muqkit's from_pretrained and embeds
    assert MuQ.from_pretrained(resumed.model_dir)(torch.randn(1, 24000)).last_hidden_state.shape == (1, 25, 64)


def test_presets_load_and_validate(tiny_tokenizer):
    assert {"tiny", "small", "base", "large"} <= set(preset_names())
    large = load_preset("large")
    assert large["crop_seconds"] == 30.0
    assert large["batch_size"] * large["accumulate"] * large["devices"] * large["num_nodes"] == 192
    for name in preset_names():
        PretrainTrainingConfig.from_dict({**load_preset(name), "tokenizer": str(tiny_tokenizer)})
    with pytest.raises(ValueError, match="unknown pretraining settings"):
        PretrainTrainingConfig.from_dict({"tokenizer": "x", "crop": 3})
    with pytest.raises(ValueError, match="exactly one"):
        PretrainTrainingConfig()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_gloo_processes_stay_in_sync(tone_manifest, tiny_tokenizer, tmp_path):
    script = tmp_path / "ddp_worker.py"
    script.write_text(Path(__file__).with_name("_ddp_worker.py").read_text())
    port = _free_port()
    procs = []
    for rank in range(2):
        clean = {k: v for k, v in os.environ.items() if not k.startswith("PL_")}  # no Lightning state of this process
        env = {**clean, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": "2",
               "RANK": str(rank), "LOCAL_RANK": str(rank), "NODE_RANK": "0", "OMP_NUM_THREADS": "1"}
        cmd = [sys.executable, str(script), str(tone_manifest), str(tiny_tokenizer), str(tmp_path / "run"),
               str(tmp_path / f"rank{rank}.json")]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    # a rank that fails leaves the other waiting for it: stop the others then, and show the failing log
    deadline = time.monotonic() + 240
    while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
        if any(p.poll() not in (None, 0) for p in procs):
            break
        time.sleep(0.2)
    for p in procs:
        if p.poll() is None:
            p.kill()
    logs = [p.communicate()[0] for p in procs]
    for p, log in zip(procs, logs, strict=True):
        assert p.returncode == 0, log[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0]["world"] == ranks[1]["world"] == 2
    assert ranks[0]["params"] == ranks[1]["params"]  # identical weights after 3 steps
    assert ranks[0]["params_before"] != ranks[0]["params"]  # and they moved
    assert set(map(tuple, ranks[0]["indices"])).isdisjoint(map(tuple, ranks[1]["indices"]))  # different data
    assert ranks[0]["steps"] == 3


def test_cli_pretrain(tone_manifest, tiny_tokenizer, tmp_path, capsys):
    from muqkit.cli.main import main

    code = main(["pretrain", str(tone_manifest), "--out", str(tmp_path / "run"), "--tokenizer", str(tiny_tokenizer),
                 "--steps", "1", "--batch-size", "2", "--crop-seconds", "1", "--no-progress",
                 "--set", "accelerator=cpu", "--set", "preload=false"])  # fmt: skip
    assert code == 0 and "1 steps" in capsys.readouterr().out
    assert MuQ.from_pretrained(tmp_path / "run" / "model").config.encoder_dim == 64


def test_model_normalises_with_the_training_corpus_statistics(tone_manifest, tiny_tokenizer, tmp_path):
    """The new model's mel_mean / mel_std are the tokenizer's, or a pass over the training audio; never
    the preset's MSD figures unless asked; recorded with their source and kept on resume."""
    import numpy as np
    import soundfile as sf

    from muqkit.audio.mel import MelFrontend
    from muqkit.hub.presets import OFFICIAL_MEL_MEAN
    from muqkit.train.pretrain import resolve_mel_statistics

    run = train_pretrain([tone_manifest], tmp_path / "tok", _config(tiny_tokenizer, max_steps=2), stop_after=1)
    config = MuQ.from_pretrained(run.model_dir).config
    assert (config.mel_mean, config.mel_std) == (-20.0, 20.0)  # the tokenizer's (conftest)
    saved = json.loads((tmp_path / "tok" / "run_config.json").read_text())
    assert saved["mel_statistics"]["source"] == f"tokenizer {tiny_tokenizer}"
    resumed = train_pretrain([tone_manifest], tmp_path / "tok", _config(tiny_tokenizer, max_steps=2), resume=True)
    assert MuQ.from_pretrained(resumed.model_dir).config.mel_mean == -20.0
    assert json.loads((tmp_path / "tok" / "pretrain.json").read_text())["mel_statistics"]["mean"] == -20.0

    # A statistics pass: the pooled dB mel of every training file, computed here independently.
    train_files = [path for record, path in load_records([tone_manifest]) if record.split == "train"]
    frontend = MelFrontend()
    values = np.concatenate([
        frontend(torch.from_numpy(sf.read(p, dtype="float32")[0]).unsqueeze(0)).mel.flatten().numpy()
        for p in train_files
    ])  # fmt: skip
    stats = resolve_mel_statistics(_config(tiny_tokenizer, mel_stats="corpus"), None, train_files)
    assert stats.source.startswith("corpus (")
    assert abs(stats.mean - values.mean()) < 1e-3 and abs(stats.std - values.std()) < 1e-3
    assert abs(stats.mean - OFFICIAL_MEL_MEAN) > 5  # the tones are nothing like MSD

    preset = resolve_mel_statistics(_config(tiny_tokenizer, mel_stats="preset"), None, train_files)
    assert preset.mean == OFFICIAL_MEL_MEAN
    explicit = _config(tiny_tokenizer, model={"mel_mean": 1.0, "mel_std": 2.0})
    assert resolve_mel_statistics(explicit, None, None).source == "config"
    with pytest.raises(ValueError, match="hold no dB-mel statistics"):
        resolve_mel_statistics(_config(tiny_tokenizer, mel_stats="tokenizer"), None, train_files)
    with pytest.raises(ValueError, match="mel_stats must be one of"):
        _config(tiny_tokenizer, mel_stats="msd")
    with pytest.raises(ValueError, match="together"):
        _config(tiny_tokenizer, model={"mel_mean": 1.0})


def test_warmup_longer_than_the_run_is_an_error(tiny_tokenizer):
    with pytest.raises(ValueError, match=r"warmup_steps \(30\) must lie in \[0, max_steps\)"):
        _config(tiny_tokenizer, max_steps=10, warmup_steps=30)
    assert _config(tiny_tokenizer, max_steps=10, warmup_steps=1, decay="cosine").warmup_steps == 1


def test_logged_accuracy_and_majority_equal_an_independent_computation(tone_manifest, tiny_tokenizer, tmp_path):
    """train/acc_i and train/majority_i in metrics.csv are, for the very batch of that step, the share of
    masked frames whose argmax of the head's logits is the target, and the commonest target's share:
    recomputed here from the weights before the step, the same mask draw and dropout, by hand."""
    import copy
    import csv

    import torch.nn.functional as F

    from muqkit.train import pretrain as P

    seen: list[tuple] = []
    original = P.PretrainTask.training_step

    def spy(self, batch):
        seen.append((copy.deepcopy(self.pretrainer.state_dict()), {k: v.clone() for k, v in batch.items()},
                     torch.get_rng_state()))  # fmt: skip
        return original(self, batch)

    P.PretrainTask.training_step = spy
    try:
        config = _config(tiny_tokenizer, max_steps=3, batch_size=3)
        train_pretrain([tone_manifest], tmp_path / "run", config)
    finally:
        P.PretrainTask.training_step = original
    with open(tmp_path / "run" / "logs" / "version_0" / "metrics.csv", newline="") as handle:
        rows = {int(r["step"]): r for r in csv.DictReader(handle) if r.get("train/acc_0")}
    # the run's own settings: they hold the mel statistics the model normalises with
    saved = P.PretrainTrainingConfig.from_dict(json.loads((tmp_path / "run" / "run_config.json").read_text())["config"])
    task = P.PretrainTask(P.build_pretrainer(saved, P.build_targets(saved)), seed=saved.seed)
    for step, (state, batch, rng) in enumerate(seen):
        task.pretrainer.load_state_dict(state)
        task.train()
        torch.set_rng_state(rng)  # the step's dropout
        with torch.no_grad():
            out = task.pretrainer(batch["audio"], batch["lengths"], generator=task._generator(batch),
                                  output_hidden_states=True)  # fmt: skip
            codes = task.pretrainer.encode_targets(batch["audio"], batch["lengths"])
            hidden = out.hidden_states[-1]
            frames = min(hidden.shape[1], codes.shape[2])
            select = out.mask[:, :frames] & (codes[:, 0, :frames] >= 0)
            head = task.pretrainer.heads.proj
            logits = F.linear(hidden[:, :frames][select], head.weight, head.bias)  # (M, N * K)
            k = task.pretrainer.config.codebook_size
            predicted = logits.view(logits.shape[0], -1, k).argmax(-1)  # (M, N)
            targets = codes[:, :, :frames].transpose(1, 2)[select]  # (M, N)
        for i in range(targets.shape[1]):
            accuracy = (predicted[:, i] == targets[:, i]).double().mean().item()
            majority = max(targets[:, i].tolist().count(c) for c in set(targets[:, i].tolist())) / len(targets)
            assert float(rows[step]["train/acc_" + str(i)]) == pytest.approx(accuracy, abs=1e-6), (step, i)
            assert float(rows[step]["train/majority_" + str(i)]) == pytest.approx(majority, abs=1e-6), (step, i)
    assert len(seen) == 3 and set(rows) >= {0, 1, 2}


def test_crop_sampling_and_short_items(tone_manifest, tmp_path):
    """``file`` sampling draws every file alike, ``duration`` in proportion to its length; ``pad_short``
    turns a short file into a full-length crop ending in silence."""
    import soundfile as sf

    from muqkit.data.manifest import AudioRecord

    long, short = tmp_path / "long.wav", tmp_path / "short.wav"
    sf.write(long, np.full(24000 * 9, 0.1, dtype=np.float32), 24000)
    sf.write(short, np.full(24000, 0.2, dtype=np.float32), 24000)
    def record(name: str, seconds: int, path: Path) -> tuple[AudioRecord, Path]:
        return AudioRecord(id=name, path=str(path), duration=float(seconds), sample_rate=24000,
                           num_samples=24000 * seconds, split="train", group=name, source="test"), path  # fmt: skip

    records = [record("long", 9, long), record("short", 1, short)]
    by_duration = RandomCropDataset(records, crop_seconds=2.0, sampling="duration")
    by_file = RandomCropDataset(records, crop_seconds=2.0, sampling="file")
    share = [np.mean([ds.locate(i)[0] == 1 for i in range(2000)]) for ds in (by_duration, by_file)]
    assert abs(share[0] - 0.1) < 0.03 and abs(share[1] - 0.5) < 0.04
    first_short = next(i for i in range(100) if by_file.locate(i)[0] == 1)
    assert len(by_file[first_short]["audio"]) == 24000  # kept short: the batch masks its padding
    padded = RandomCropDataset(records, crop_seconds=2.0, sampling="file", pad_short=True)[first_short]["audio"]
    assert len(padded) == 48000 and not padded[24000:].any()
    assert float(padded[:24000].mean()) == pytest.approx(0.2, abs=1e-3)
    labels = {"long": torch.zeros(2, 225, dtype=torch.long), "short": torch.ones(2, 25, dtype=torch.long)}
    labelled = RandomCropDataset(records, crop_seconds=2.0, sampling="file", pad_short=True, labels=labels)
    first_long = next(i for i in range(100) if by_file.locate(i)[0] == 0)
    batch = collate_crops([labelled[first_short], labelled[first_long]])
    assert batch["lengths"].tolist() == [48000, 48000] and batch["codes"].shape == (2, 2, 50)
    assert (batch["codes"][0, :, :25] == 1).all() and (batch["codes"][0, :, 25:] == -100).all()  # silence: no labels
    with pytest.raises(ValueError, match="sampling must be one of"):
        RandomCropDataset(records, crop_seconds=2.0, sampling="uniform")


@pytest.mark.parametrize("fixed", ["none", "frontend", "all"])
def test_fixed_batchnorm_keeps_the_starting_statistics_and_trains_the_rest(fixed, tone_manifest, tiny_tokenizer,
                                                                          tmp_path):  # fmt: skip
    torch.set_num_threads(1)
    result = train_pretrain([tone_manifest], tmp_path / fixed, _config(tiny_tokenizer, fixed_batchnorm=fixed))
    state = MuQ.from_pretrained(result.model_dir).state_dict()
    norms = {key.rsplit(".", 1)[0] for key in state if key.endswith("running_mean")}
    frontend = {n for n in norms if n.startswith("conv.")}
    assert frontend and norms - frontend  # BatchNorm in the front end and in the Conformer
    for name in sorted(norms):
        kept = fixed == "all" or (fixed == "frontend" and name in frontend)
        at_start = torch.equal(state[f"{name}.running_mean"], torch.zeros_like(state[f"{name}.running_mean"])) and \
            torch.equal(state[f"{name}.running_var"], torch.ones_like(state[f"{name}.running_var"]))  # fmt: skip
        assert at_start == kept, name
        assert not torch.equal(state[f"{name}.weight"], torch.ones_like(state[f"{name}.weight"])), name  # trains


def test_fixed_batchnorm_rejects_an_unknown_scope(tiny_tokenizer):
    with pytest.raises(ValueError, match="fixed_batchnorm must be one of none, frontend, all"):
        _config(tiny_tokenizer, fixed_batchnorm="conformer")
