"""The corpus builder on a handful of scores and notes (skips without fluidsynth, soundfonts, music21)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil

import pytest
import soundfile as sf

from muqkit.data.corpus import SIZES, CorpusMismatchError, build_corpus
from muqkit.data.corpus import scores as scores_module
from muqkit.data.corpus.fluidsynth import SystemRequirementError, find_soundfonts, require_fluidsynth
from muqkit.data.manifest import check_no_leakage, read_manifest

TINY = dataclasses.replace(SIZES["ci"], name="ci", scores_per_collection=3, clip_seconds=3.0, pitches_per_instrument=1)


@pytest.fixture(scope="module")
def soundfonts():
    try:
        require_fluidsynth()
        return [str(p) for p in find_soundfonts()[:2]]
    except SystemRequirementError as exc:
        pytest.skip(f"needs system packages: {exc}")


def _digest(folder):
    h = hashlib.sha256()
    for path in sorted(folder.glob("*.jsonl")) + sorted((folder / "audio").rglob("*.wav")):
        h.update(path.relative_to(folder).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def test_notes_build_is_deterministic_and_cached(tmp_path, soundfonts):
    a = build_corpus(tmp_path / "a", size=TINY, seed=1, soundfonts=soundfonts, sources=("notes",))
    records = read_manifest(tmp_path / "a" / "notes.jsonl")
    assert a.counts == {"notes": len(records)} and len(records) >= 20
    check_no_leakage(records)
    assert {r.split for r in records} == {"train", "valid", "test"}
    r = records[0]
    assert sf.info(r.resolve(tmp_path / "a")).frames == r.num_samples
    assert {"program", "family", "pitch", "velocity"} <= set(r.labels)
    again = build_corpus(tmp_path / "a", size=TINY, seed=1, soundfonts=soundfonts, sources=("notes",))
    assert again.seconds_taken == 0.0  # already complete
    build_corpus(tmp_path / "b", size=TINY, seed=1, soundfonts=soundfonts, sources=("notes",))
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")


def test_refuses_to_mix_builds(tmp_path, soundfonts):
    build_corpus(tmp_path / "a", size=TINY, seed=1, soundfonts=soundfonts, sources=("notes",))
    with pytest.raises(CorpusMismatchError, match="seed: 1 there, 2 asked"):
        build_corpus(tmp_path / "a", size=TINY, seed=2, soundfonts=soundfonts, sources=("notes",))
    with pytest.raises(CorpusMismatchError, match="size"):
        build_corpus(tmp_path / "a", size="small", seed=1, soundfonts=soundfonts, sources=("notes",))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "file.txt").write_text("x")
    with pytest.raises(CorpusMismatchError, match="not empty"):
        build_corpus(tmp_path / "other", size=TINY, seed=1, soundfonts=soundfonts, sources=("notes",))


def test_scores_build_on_a_handful(tmp_path, soundfonts, monkeypatch):
    pytest.importorskip("music21", reason="the score source needs music21")
    monkeypatch.setattr(
        scores_module, "COLLECTIONS", {k: scores_module.COLLECTIONS[k] for k in ("bach_chorales", "ryans_mammoth")}
    )
    build_corpus(tmp_path / "c", size=TINY, seed=0, soundfonts=soundfonts, sources=("scores",))
    records = read_manifest(tmp_path / "c" / "scores.jsonl")
    assert len(records) == 6
    check_no_leakage(records)
    assert {r.labels["collection"] for r in records} == {"bach_chorales", "ryans_mammoth"}
    for r in records:
        assert r.duration <= 3.0 and r.labels["metre"] and r.labels["tags"]
        assert ("key" in r.labels) != ("key_issue" in r.labels)
        if "key" in r.labels:
            assert r.labels["key"].split()[1] == r.labels["mode"]
    # format 3: every score clip has its frame labels, chords on chorales and melody on tunes
    from muqkit.data.labels import labels_path, read_labels

    sidecars = {r.id: read_labels(labels_path(tmp_path / "c", r.id)) for r in records}
    for r in records:
        labels = sidecars[r.id]
        assert labels.beats and all(0 <= t < r.duration for t, _ in labels.beats)
        assert labels.onsets and all(0 <= t < r.duration for t in labels.onsets)
        assert bool(labels.chords) == (r.labels["num_parts"] > 1) != bool(labels.melody)
    # a format-2 build of the same settings is refused, then upgraded without rendering
    stamp = json.loads((tmp_path / "c" / "corpus.json").read_text())
    (tmp_path / "c" / "corpus.json").write_text(json.dumps({**stamp, "format": 2}))
    shutil.rmtree(tmp_path / "c" / "labels")
    before = _digest(tmp_path / "c")
    with pytest.raises(CorpusMismatchError, match="format 2.*--upgrade"):
        build_corpus(tmp_path / "c", size=TINY, seed=0, soundfonts=soundfonts, sources=("scores",))
    build_corpus(tmp_path / "c", size=TINY, seed=0, soundfonts=soundfonts, sources=("scores",), upgrade=True)
    assert json.loads((tmp_path / "c" / "corpus.json").read_text())["format"] == 3
    assert _digest(tmp_path / "c") == before  # same audio and manifests
    assert {r.id: read_labels(labels_path(tmp_path / "c", r.id)) for r in records} == sidecars


def test_unknown_size_is_a_value_error(tmp_path):
    import pytest

    from muqkit.data.corpus import build_corpus

    with pytest.raises(ValueError, match="unknown size 'huge'"):
        build_corpus(tmp_path / "c", size="huge", seed=0)
