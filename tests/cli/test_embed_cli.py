"""``muqkit embed``: arguments, outputs, the summary and the exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from muqkit.cli.main import main
from muqkit.embed import read_embedding

SR = 24000


def _noise(seconds: float, sample_rate: int = SR, channels: int = 1, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal((round(seconds * sample_rate), channels))).astype(np.float32)


@pytest.fixture
def music(tmp_path: Path) -> Path:
    root = tmp_path / "music"
    (root / "live").mkdir(parents=True)
    sf.write(root / "a.wav", _noise(1.2), SR)
    sf.write(root / "live" / "stereo.flac", _noise(0.8, 44100, channels=2, seed=1), 44100)
    sf.write(root / "live" / "silent.wav", np.zeros(SR // 2, dtype=np.float32), SR)
    sf.write(root / "short.wav", _noise(0.1, seed=2), SR)
    return root


def test_embed_a_folder(music: Path, tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    args = ["embed", str(music), "--out", str(out), "--model", str(checkpoint), "--no-progress"]
    code = main([*args, "--layers", "0,-1", "--chunk-seconds", "0.4", "--batch-size", "3"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "4 files: 4 embedded, 0 skipped (up to date), 0 failed" in printed
    emb = read_embedding(out / "live" / "stereo.flac.safetensors")
    assert sorted(emb.layers) == [0, 2] and emb.layers[2].shape == (20, 64)
    records = [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]
    assert {r["status"] for r in records} == {"ok"} and len(records) == 4
    assert records[0]["model_id"] == str(checkpoint) and records[0]["chunk_seconds"] == 0.4

    assert main(args + ["--layers", "0,-1", "--chunk-seconds", "0.4"]) == 0  # rerun: all up to date
    assert "0 embedded, 4 skipped" in capsys.readouterr().out


def test_a_bad_file_fails_the_run_but_not_the_others(
    music: Path, tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (music / "broken.flac").write_bytes(b"fLaC" + bytes(500))
    out = tmp_path / "out"
    code = main(["embed", str(music), "--out", str(out), "--model", str(checkpoint), "--no-progress"])
    assert code == 1
    printed = capsys.readouterr().out
    assert "4 embedded" in printed and "1 failed" in printed and "FAILED" in printed and "broken.flac" in printed
    assert len(list(out.rglob("*.safetensors"))) == 4


def test_pooled_npy_output(music: Path, tmp_path: Path, checkpoint: Path) -> None:
    out = tmp_path / "out"
    code = main(
        ["embed", str(music / "a.wav"), "--out", str(out), "--model", str(checkpoint), "--no-progress"]
        + ["--pooling", "mean", "--format", "npy", "--layers", "1"]
    )
    assert code == 0
    emb = read_embedding(out / "a.wav.embedding")
    assert list(emb.layers) == [1] and emb.layers[1].shape == (64,)
    # mean pooling is the mean of the frames the unpooled output holds
    frames_out = tmp_path / "frames"
    assert main(["embed", str(music / "a.wav"), "--out", str(frames_out), "--model", str(checkpoint), "--no-progress",
                 "--format", "npy", "--layers", "1"]) == 0  # fmt: skip
    frames = read_embedding(frames_out / "a.wav.embedding").layers[1]
    assert frames.dim() == 2 and frames.shape[-1] == 64
    torch.testing.assert_close(emb.layers[1].float(), frames.float().mean(0), atol=1e-5, rtol=1e-5)


def test_bad_options_exit_with_2(
    music: Path, tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["embed", str(music), "--out", str(tmp_path / "out"), "--model", str(checkpoint), "--no-progress"]
    assert main([*base, "--layers", "9"]) == 2
    assert "out of range" in capsys.readouterr().err
    assert main(["embed", str(music), "--out", str(tmp_path / "o"), "--model", str(tmp_path / "nothing")]) == 2
    with pytest.raises(SystemExit) as exit_info:
        main([*base, "--layers", "first"])
    assert exit_info.value.code == 2


def test_ten_minute_file_with_the_tiny_preset(tmp_path: Path, checkpoint: Path) -> None:
    second = _noise(1.0)[:, 0]
    sf.write(tmp_path / "long.flac", np.tile(second, 600), SR)
    out = tmp_path / "out"
    code = main(
        [
            "embed",
            str(tmp_path / "long.flac"),
            "--out",
            str(out),
            "--model",
            str(checkpoint),
            "--layers",
            "-1",
        ]
    )
    assert code == 0
    emb = read_embedding(out / "long.flac.safetensors")
    assert emb.layers[2].shape == (15000, 64)
