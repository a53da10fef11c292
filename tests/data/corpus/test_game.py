"""Game-music pool: segmenting fabricated unpacked packages; clear errors without Debian tools."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from muqkit.data.corpus import SIZES, game, segment_tracks
from muqkit.data.corpus.fluidsynth import SystemRequirementError
from muqkit.data.manifest import check_no_leakage


def _package(root, name, tracks):
    folder = root / name / "usr" / "share" / "games" / name
    folder.mkdir(parents=True)
    for i, seconds in enumerate(tracks):
        with sf.SoundFile(folder / f"track{i}.wav", "w", 16000, 1, "PCM_16") as f:
            f.title = f"Track {i}"
            f.genre = "Soundtrack"
            f.write(0.1 * np.sin(np.arange(int(16000 * seconds)) * 0.05))
    (root / name / ".description").write_text(f"music for {name}")
    return root / name


def test_segment_tracks(tmp_path):
    unpacked = {
        "pkg-a": _package(tmp_path / "src", "pkg-a", [25.0, 3.0]),
        "pkg-b": _package(tmp_path / "src", "pkg-b", [9.0]),
    }
    out = tmp_path / "corpus"
    size = SIZES["ci"]  # 8 s segments, 1 per track
    records = segment_tracks(unpacked, out, size=size, seed=0)
    assert len(records) == 2  # the 3 s track is too short
    for r in records:
        info = sf.info(r.resolve(out))
        assert info.samplerate == 24000 and info.frames == r.num_samples == 8 * 24000
        assert r.labels["genre"] == "Soundtrack" and r.labels["album"].startswith("music for")
        assert r.split in ("train", "valid")
    check_no_leakage(records)
    again = segment_tracks(unpacked, out, size=size, seed=0)  # cached
    assert again == records


def test_missing_apt_get_is_explained(tmp_path, monkeypatch):
    monkeypatch.setattr(game.shutil, "which", lambda name: None)
    with pytest.raises(SystemRequirementError, match="no-game-music"):
        game.fetch_packages(("asc-music",), tmp_path)
