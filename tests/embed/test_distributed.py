"""``muqkit embed --devices 2``: two CPU processes (gloo) give the single process's outputs and index, share
the files by duration, keep bad-file and skip behaviour, and resume after a rank is killed with SIGKILL."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from muqkit import MuQ
from muqkit.embed import INDEX_NAME, embed_paths, read_embedding
from muqkit.embed.api import InputFile
from muqkit.embed.distributed import embed_distributed, shard_by_duration

OPTIONS = dict(chunk_seconds=2.0, batch_size=2, layers=[0, 1], progress=False)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    model = MuQ.from_preset(
        "tiny", seed=0, n_fft=512, n_mels=32, conv_dim=4, encoder_dim=16, encoder_depth=1, num_heads=2, ffn_dim=32
    )
    return model.save_pretrained(tmp_path_factory.mktemp("muq") / "model")


@pytest.fixture
def music(tmp_path: Path, write_audio) -> Path:  # noqa: ANN001
    folder = tmp_path / "music"
    for i, seconds in enumerate([3.3, 0.5, 1.2, 4.1, 0.8, 2.0, 0.3]):
        write_audio(folder / ("sub" if i % 2 else "") / f"{i}.wav", seconds, seed=i)
    (folder / "broken.wav").write_bytes(b"RIFF not audio" * 20)
    return folder


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / INDEX_NAME).read_text().splitlines()]


def assert_same_outputs(a: Path, b: Path) -> None:
    ra, rb = records(a), records(b)
    assert [r["output"] for r in ra] == [r["output"] for r in rb]
    for x, y in zip(ra, rb, strict=True):
        assert {k: v for k, v in x.items() if k != "error"} == {k: v for k, v in y.items() if k != "error"}
        if x["status"] == "ok":
            ea, eb = read_embedding(a / x["output"]), read_embedding(b / y["output"])
            assert ea.metadata == eb.metadata and torch.equal(ea.timestamps, eb.timestamps)
            for layer in ea.layers:
                assert torch.allclose(ea.layers[layer], eb.layers[layer], atol=1e-5, rtol=0)
    assert not list(b.glob(".index.rank-*"))  # merged


def test_two_processes_give_the_single_process_outputs(model_dir: Path, music: Path, tmp_path: Path) -> None:
    single = embed_paths([music], tmp_path / "one", model=model_dir, **OPTIONS)
    double = embed_distributed([music], tmp_path / "two", devices=2, model=model_dir, **OPTIONS)
    assert (double.num_files, double.num_embedded, double.num_failed) == (8, 7, 1)
    assert double.audio_seconds == pytest.approx(single.audio_seconds)
    assert "broken.wav" in double.failures[0].error
    assert_same_outputs(tmp_path / "one", tmp_path / "two")
    again = embed_distributed([music], tmp_path / "two", devices=2, model=model_dir, **OPTIONS)
    assert (again.num_embedded, again.num_skipped, again.num_failed) == (0, 7, 1)  # the bad file is tried again


def test_a_killed_rank_loses_nothing_and_the_rerun_resumes(model_dir: Path, music: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    embed_paths([music], tmp_path / "one", model=model_dir, **OPTIONS)
    out = tmp_path / "two"
    monkeypatch.setenv("MUQKIT_FAULT_KILL_RANK", "1:1")  # rank 1 dies (SIGKILL) after its first output
    with pytest.raises(RuntimeError, match=r"rank 1 of 2 died \(signal 9\)"):
        embed_distributed([music], out, devices=2, model=model_dir, **OPTIONS)
    assert list(out.glob(".index.rank-*"))  # not merged: the run did not finish
    monkeypatch.delenv("MUQKIT_FAULT_KILL_RANK")
    resumed = embed_distributed([music], out, devices=2, model=model_dir, **OPTIONS)
    assert resumed.num_skipped >= 1 and resumed.num_embedded + resumed.num_skipped == 7
    assert_same_outputs(tmp_path / "one", out)
    assert not [p for p in out.rglob("*") if ".muqkit-tmp-" in p.name]


def test_sharding_is_balanced_by_duration_and_deterministic() -> None:
    inputs = [InputFile(Path(f"{i}.wav"), Path(f"{i}.wav")) for i in range(6)]  # type: ignore[arg-type]
    durations = [10.0, 1.0, 9.0, 2.0, 5.0, 5.0]
    shards = shard_by_duration(inputs, durations, 2)
    assert shards == [[0, 1, 5], [2, 3, 4]]  # 16 s each
    assert shard_by_duration(inputs, durations, 2) == shards
    assert sorted(i for s in shard_by_duration(inputs, durations, 4) for i in s) == list(range(6))


def test_the_launchers_environment_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    from muqkit.embed.distributed import launched_rank

    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"):
        monkeypatch.delenv(name, raising=False)
    assert launched_rank() is None
    monkeypatch.setenv("SLURM_NTASKS", "8")
    monkeypatch.setenv("SLURM_PROCID", "5")
    monkeypatch.setenv("SLURM_LOCALID", "1")
    assert (launched_rank().rank, launched_rank().world_size, launched_rank().local_rank) == (5, 8, 1)
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert launched_rank().launcher == "torchrun" and launched_rank().rank == 3
    assert os.environ["SLURM_NTASKS"] == "8"


def test_records_a_killed_run_left_never_override_newer_ones(model_dir: Path, tmp_path: Path, write_audio) -> None:  # noqa: ANN001
    from muqkit.embed import read_index

    audio = write_audio(tmp_path / "music" / "a.wav", 1.0, seed=0)
    out = tmp_path / "out"
    embed_paths([audio], out, model=model_dir, **OPTIONS)
    (out / ".index.rank-1.jsonl").write_text((out / INDEX_NAME).read_text())  # left by a killed 2-process run
    old = read_index(out / INDEX_NAME)["a.wav.safetensors"].input_sha256
    write_audio(audio, 1.5, seed=1)  # the input changed since
    summary = embed_paths([audio], out, model=model_dir, **OPTIONS)
    assert summary.num_embedded == 1
    record = read_index(out / INDEX_NAME)["a.wav.safetensors"]
    assert record.input_sha256 != old and record.duration == pytest.approx(1.5)
    assert not list(out.glob(".index.rank-*"))


def test_one_file_under_two_spellings_is_refused_before_any_rank_starts(
    model_dir: Path, music: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The one-process error (exit 2), not a rank dying first in 3 runs of 5 (exit 1)."""
    import muqkit.embed.distributed as distributed
    from muqkit.cli.main import main

    monkeypatch.setattr(distributed, "_spawn", lambda *a, **kw: pytest.fail("ranks were started"))
    twice = [str(music / "0.wav"), str(music / ".." / music.name / "0.wav")]
    for devices in ("1", "2"):
        assert main(["embed", *twice, "--out", str(tmp_path / "emb"), "--model", str(model_dir), "--devices", devices,
                     "--no-progress"]) == 2  # fmt: skip
        err = capsys.readouterr().err
        assert "would write the same output" in err and len(err.strip().splitlines()) == 1, err
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="exists and is not a folder"):
        embed_distributed([music], tmp_path / "file", devices=2, model=model_dir, **OPTIONS)
