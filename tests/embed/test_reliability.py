"""``embed_paths`` reliability: the model is identified by its content, non-finite outputs are refused,
and temporaries of a killed run are cleaned."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch

from muqkit import MuQ
from muqkit.atomic import TEMP_MARKER
from muqkit.embed import INDEX_NAME, embed_paths, model_fingerprint, read_embedding, read_index


def test_the_model_is_identified_by_its_weights_not_its_path(tmp_path: Path, write_audio) -> None:  # noqa: ANN001
    audio = write_audio(tmp_path / "music" / "a.wav", 1.0)
    folder = tmp_path / "model"
    MuQ.from_preset("tiny", seed=0).save_pretrained(folder)
    out = tmp_path / "emb"
    kwargs = dict(progress=False, chunk_seconds=1.0)
    first = embed_paths([audio], out, model=folder, **kwargs)
    assert first.num_embedded == 1
    old = read_embedding(out / "a.wav.safetensors").layers[2]

    MuQ.from_preset("tiny", seed=1).save_pretrained(folder)  # re-saved weights, same folder
    again = embed_paths([audio], out, model=folder, **kwargs)
    assert (again.num_embedded, again.num_skipped) == (1, 0)
    new = read_embedding(out / "a.wav.safetensors")
    assert not torch.allclose(new.layers[2], old)
    fresh = MuQ.from_pretrained(folder)
    assert new.metadata["model_sha256"] == model_fingerprint(fresh)
    assert read_index(out / INDEX_NAME)["a.wav.safetensors"].model_sha256 == model_fingerprint(fresh)

    moved = tmp_path / "elsewhere"
    shutil.copytree(folder, moved)  # the same model under another path
    assert embed_paths([audio], out, model=moved, **kwargs).num_skipped == 1


def test_non_finite_outputs_are_reported_not_written(tmp_path: Path, write_audio) -> None:  # noqa: ANN001
    audio = write_audio(tmp_path / "a.wav", 1.0)
    broken = MuQ.from_preset("tiny", seed=0).eval()
    with torch.no_grad():
        broken.conv.proj.weight.fill_(float("nan"))
    summary = embed_paths([audio], tmp_path / "emb", model=broken, progress=False)
    assert not summary.ok and summary.num_failed == 1
    assert "NaN or infinite outputs" in summary.failures[0].error
    assert not (tmp_path / "emb" / "a.wav.safetensors").exists()
    assert read_index(tmp_path / "emb" / INDEX_NAME)["a.wav.safetensors"].status == "failed"


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_rerun_removes_the_temporaries_of_a_killed_run(tmp_path: Path, write_audio, tiny_muq: MuQ) -> None:  # noqa: ANN001
    write_audio(tmp_path / "music" / "sub" / "a.wav", 1.0)
    out = tmp_path / "emb"
    (out / "sub").mkdir(parents=True)
    dead = _dead_pid()
    left = out / "sub" / f".a.wav.safetensors{TEMP_MARKER}{dead}-x1y2.tmp"  # a file killed mid-write
    left.write_bytes(b"half")
    left_dir = out / f".b.wav.embedding{TEMP_MARKER}{dead}-z3.tmp"  # an npy output folder killed mid-write
    left_dir.mkdir()
    (left_dir / "layer_0.npy").write_bytes(b"half")
    live = out / f".c.safetensors{TEMP_MARKER}{os.getpid()}-w.tmp"  # a live writer's: kept
    live.write_bytes(b"busy")
    foreign = out / ".user-notes.tmp"  # not muqkit's: kept
    foreign.write_bytes(b"mine")
    embed_paths([tmp_path / "music"], out, model=tiny_muq, progress=False)
    assert not left.exists() and not left_dir.exists()
    assert live.exists() and foreign.exists()
    assert (out / "sub" / "a.wav.safetensors").is_file()
