"""Training: the loss goes down; Lightning training, resume, latent RVQ; the CLI; diagnostics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from muqkit.tokenizer import LatentRVQ, LatentRVQConfig, RVQTrainingTask, load_tokenizer
from muqkit.tokenizer.diagnostics import code_agreement, rvq_diagnostics


def clustered(n: int, dim: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(12, dim, generator=g) * 3
    return centres[torch.randint(12, (n,), generator=g)] + 0.3 * torch.randn(n, dim, generator=g)


def test_loss_goes_down_in_a_short_training():
    torch.manual_seed(0)
    model = LatentRVQ(LatentRVQConfig(input_dim=32, num_codebooks=2, codebook_size=16, codebook_dim=4))
    task = RVQTrainingTask(model)
    optimizer = torch.optim.Adam(task.parameters(), lr=3e-3)
    data = clustered(16 * 20).reshape(16, 20, 32)
    lengths = torch.randint(10, 21, (16,))
    losses = []
    for _ in range(80):
        out = task.training_step({"inputs": data, "lengths": lengths})
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        losses.append(float(out["loss"]))
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:10]), (losses[:3], losses[-3:])


def test_diagnostics_and_agreement_numbers():
    torch.manual_seed(0)
    model = LatentRVQ(LatentRVQConfig(input_dim=32, num_codebooks=3, codebook_size=16, codebook_dim=4))
    data = clustered(3000)
    model.rvq.init_from_data(data, generator=torch.Generator().manual_seed(0))
    report = rvq_diagnostics(model, [(data.reshape(30, 100, 32), None)])
    errors = [s.error_db for s in report.stages]
    assert report.frames == 3000 and all(b < a for a, b in zip(errors, errors[1:], strict=False))
    assert all(s.gain_db > 0 for s in report.stages) and report.stages[0].usage > 0.5
    assert all(1 <= s.perplexity <= 16 for s in report.stages)
    codes = torch.randint(0, 50, (2, 2000))
    relabelled = (codes * 7 + 3) % 50  # a permutation of the labels
    same = code_agreement(codes, relabelled)
    assert same.ami == pytest.approx((1.0, 1.0)) and same.frames == 2000
    independent = code_agreement(codes, torch.randint(0, 50, (2, 2000)))
    assert max(independent.ami) < 0.05


def _write_audio(folder: Path) -> Path:
    import soundfile as sf

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(2):
        t = np.arange(24000 * 3) / 24000
        x = 0.3 * np.sin(2 * np.pi * (200 + 300 * i) * t * (1 + 0.2 * t)) + 0.05 * rng.standard_normal(t.size)
        sf.write(folder / f"a{i}.wav", x.astype(np.float32), 24000 if i == 0 else 16000)
    (folder / "train.txt").write_text('a0.wav\n{"path": "a1.wav"}\n')
    return folder / "train.txt"


def test_cli_trains_resumes_reports_and_encodes(tmp_path: Path):
    from muqkit.cli.main import main

    manifest = _write_audio(tmp_path / "audio")
    run = tmp_path / "run"
    args = [
        "tokenizer",
        "train",
        str(manifest),
        str(run),
        "--steps",
        "3",
        "--batch-size",
        "2",
        "--crop-seconds",
        "1",
        "--num-codebooks",
        "2",
        "--codebook-size",
        "16",
        "--no-progress",
        "--checkpoint-every",
        "3",
    ]
    assert main(args) == 0
    assert (run / "checkpoints" / "last.ckpt").is_file()
    tokenizer = load_tokenizer(run / "tokenizer")
    assert tokenizer.num_codebooks == 2 and float(tokenizer.features.std) > 1
    assert main([*args[:5], "5", *args[6:], "--resume"]) == 0
    meta = json.loads((run / "run_config.json").read_text())
    assert meta["max_steps"] == 5
    assert (
        main(
            [
                "tokenizer",
                "train",
                str(manifest),
                str(tmp_path / "cached"),
                "--steps",
                "2",
                "--batch-size",
                "2",
                "--num-codebooks",
                "2",
                "--codebook-size",
                "16",
                "--cache-frames",
                "--no-progress",
            ]
        )
        == 0
    )
    report = tmp_path / "report"
    assert (
        main(
            [
                "tokenizer",
                "report",
                str(run / "tokenizer"),
                str(manifest),
                "--out",
                str(report),
                "--compare",
                str(tmp_path / "cached" / "tokenizer"),
            ]
        )
        == 0
    )
    data = json.loads((report / "report.json").read_text())
    assert len(data["diagnostics"]["stages"]) == 2 and len(data["agreement"]) == 2
    assert (report / "stages.png").stat().st_size > 0 and (report / "agreement.png").is_file()
    codes = tmp_path / "codes.safetensors"
    assert main(["tokenizer", "encode", str(run / "tokenizer"), str(manifest), "--out", str(codes)]) == 0
    from safetensors.torch import load_file

    assert {v.shape for v in load_file(str(codes)).values()} == {(2, 75), (2, 112)}  # 3 s at 24 kHz, 4.5 s at 16 kHz


def test_latent_rvq_trains_on_feature_files(tmp_path: Path):
    from muqkit.train.tokenizer import TokenizerTrainingConfig, train_tokenizer

    for i in range(2):
        np.save(tmp_path / f"f{i}.npy", clustered(400, seed=i).numpy())
    config = TokenizerTrainingConfig(
        kind="latent_rvq",
        crop_frames=50,
        batch_size=4,
        max_steps=4,
        lr=1e-3,
        model=dict(input_dim=32, num_codebooks=2, codebook_size=8, codebook_dim=4),
    )
    result = train_tokenizer(tmp_path, tmp_path / "run", config, progress=False)
    model = load_tokenizer(result.tokenizer_dir)
    assert isinstance(model, LatentRVQ) and result.steps == 4
    feats = torch.from_numpy(np.load(tmp_path / "f0.npy")).unsqueeze(0)
    torch.testing.assert_close(
        model.mean,
        torch.from_numpy(np.concatenate([np.load(tmp_path / f"f{i}.npy") for i in range(2)])).mean(0),
        atol=1e-4,
        rtol=1e-4,
    )
    assert model.tokenize_features(feats).codes.shape == (1, 2, 400)


def test_tokenizer_training_reads_corpus_manifests_from_the_corpus_root(tmp_path: Path):
    """A corpus manifest (AudioRecord JSONL at the root, paths relative to it) works directly."""
    import soundfile as sf

    from muqkit.data.files import list_files, read_audio
    from muqkit.data.manifest import AudioRecord, write_manifest

    (tmp_path / "audio").mkdir()
    records = []
    for i, split in enumerate(("train", "pool", "valid")):
        sf.write(tmp_path / "audio" / f"x{i}.wav", np.zeros(24000, dtype=np.float32) + 0.1 * i, 24000)
        records.append(
            AudioRecord(
                id=f"x{i}", path=f"audio/x{i}.wav", duration=1.0, sample_rate=24000, num_samples=24000,
                split=split, group=f"g{i}", source="test",
            )
        )
    write_manifest(tmp_path / "scores.jsonl", records)
    files = list_files(tmp_path / "scores.jsonl")
    assert files == [tmp_path / "audio" / "x0.wav", tmp_path / "audio" / "x1.wav"]
    assert list_files(tmp_path / "scores.jsonl", splits=("valid", "test")) == [tmp_path / "audio" / "x2.wav"]
    assert read_audio(files[1], 24000).shape == (24000,)
    assert read_audio(files[1], 24000, start=0.5, duration=0.25).shape == (6000,)
    (tmp_path / "plain.txt").write_text('audio/x0.wav\n{"path": "audio/x2.wav"}\n')
    assert list_files(tmp_path / "plain.txt") == [tmp_path / "audio" / "x0.wav", tmp_path / "audio" / "x2.wav"]
