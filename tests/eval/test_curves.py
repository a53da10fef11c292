"""Learning curves: pretraining snapshots (step 0 is the run's random-weight start) probed along training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from muqkit.data.manifest import AudioRecord, write_manifest

pytest.importorskip("lightning")
SR = 24000


def _notes_corpus(root: Path, *, pitches=(48, 55, 60, 67), per_split=(4, 2, 2)) -> Path:
    """A fabricated corpus holding notes.jsonl: decaying harmonic tones labelled with their MIDI pitch."""
    rng = np.random.default_rng(0)
    (root / "audio").mkdir(parents=True)
    records = []
    for pitch in pitches:
        for split, count in zip(("train", "valid", "test"), per_split, strict=True):
            for i in range(count):
                n = int(SR * 1.5)
                t = np.arange(n) / SR
                f0 = 440 * 2 ** ((pitch - 69) / 12) * (1 + 0.002 * rng.standard_normal())
                audio = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in (1, 2, 3)) * np.exp(-2 * t) * 0.2
                audio = audio + 0.003 * rng.standard_normal(n)
                path = f"audio/p{pitch}-{split}{i}.wav"
                sf.write(root / path, audio.astype(np.float32), SR, subtype="PCM_16")
                records.append(AudioRecord(f"p{pitch}-{split}{i}", path, n / SR, SR, n, split, f"g{pitch}{split}{i}",
                                           "notes", {"pitch": pitch, "family": "tone"}))
    write_manifest(root / "notes.jsonl", records)
    return root


@pytest.fixture()
def tiny_tokenizer(tmp_path) -> Path:
    from muqkit.tokenizer import MelRVQ, MelRVQConfig

    torch.manual_seed(0)
    MelRVQ(MelRVQConfig(num_codebooks=2, codebook_size=32), mean=-20.0, std=20.0).save_pretrained(tmp_path / "tok")
    return tmp_path / "tok"


def test_snapshots_and_learning_curve(tmp_path, tiny_tokenizer):
    from muqkit.eval.curves import find_snapshots, learning_curve
    from muqkit.eval.probes import ProbeConfig
    from muqkit.eval.suite import SuiteConfig
    from muqkit.ssl.muq import MuQ
    from muqkit.train.pretrain import PretrainTrainingConfig, train_pretrain

    corpus = _notes_corpus(tmp_path / "corpus")
    config = PretrainTrainingConfig(
        preset="tiny", tokenizer=str(tiny_tokenizer), crop_seconds=1.0, batch_size=2, max_steps=3, lr=2e-3,
        warmup_steps=1, checkpoint_every=10, log_every=1, progress=False, accelerator="cpu", seed=3,
        snapshot_every=2, splits=("train",),
    )  # fmt: skip
    run = train_pretrain([corpus / "notes.jsonl"], tmp_path / "run", config)
    snapshots = find_snapshots(tmp_path / "run")
    assert list(snapshots) == [0, 2, 3]  # the start, every 2 steps, the end
    # step 0 is exactly the random-weight model this run started from (same seed, corpus statistics)
    start = MuQ.from_pretrained(snapshots[0]).state_dict()
    fresh = MuQ.from_preset("tiny", seed=3, mel_mean=-20.0, mel_std=20.0).state_dict()
    assert all(torch.equal(start[k], fresh[k]) for k in fresh)
    final = MuQ.from_pretrained(run.model_dir).state_dict()
    last = MuQ.from_pretrained(snapshots[3]).state_dict()
    assert all(torch.equal(final[k], last[k]) for k in final)
    assert not torch.equal(start["conv.proj.weight"], last["conv.proj.weight"])

    probe = SuiteConfig(heads=("linear",), seeds=(0,), layer_modes=("sweep",),
                        probe=ProbeConfig(max_epochs=20, patience=5, lr=1e-2))  # fmt: skip
    curve = learning_curve(tmp_path / "run", corpus, tmp_path / "curve", tasks=["pitch"], config=probe)
    assert curve.steps == (0, 2, 3)
    data = json.loads((tmp_path / "curve" / "curve.json").read_text())
    assert set(data["baselines"]) == {"mel", "random"}
    assert data["baselines"]["random"]["pitch"]["mean"] == data["scores"]["pitch"][0]["mean"]
    assert data["baselines"]["mel"]["pitch"]["mean"] > 0.5  # four pure pitches: the mel tells them apart
    assert len(data["mean"]) == 3 and all(0.0 <= v <= 1.0 for v in data["mean"])
    assert (tmp_path / "curve" / "curve.png").stat().st_size > 10_000
    assert "the random-weight start" in curve.summary() and "mel baseline" in curve.summary()


def test_curve_without_snapshots_is_a_clear_error(tmp_path, capsys):
    from muqkit.cli.main import main
    from muqkit.eval.curves import learning_curve

    (tmp_path / "run").mkdir()
    with pytest.raises(FileNotFoundError, match="no snapshots"):
        learning_curve(tmp_path / "run", tmp_path, tmp_path / "c", tasks=["pitch"])
    assert main(["curve", str(tmp_path / "run"), "--corpus", str(tmp_path), "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no snapshots" in err[0] and "Traceback" not in err[0]
