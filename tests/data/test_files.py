"""The one data layer: a folder, a plain list of paths and a manifest name the same files and records;
seeded crops depend on their index only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from muqkit.data.files import AUDIO_EXTENSIONS, find_audio, list_files, read_path_list, scan_folder
from muqkit.data.loader import FrameCropDataset, RandomCropDataset, absolute_records, load_records
from muqkit.data.manifest import AudioRecord, write_manifest

SR = 24000


def _corpus(root: Path) -> Path:
    (root / "audio" / "sub").mkdir(parents=True)
    (root / "audio" / ".hidden").mkdir()
    records = []
    for i, (name, seconds, split) in enumerate([("a.wav", 1.0, "train"), ("sub/b.flac", 0.5, "train"),
                                                ("c.wav", 0.25, "valid")]):  # fmt: skip
        sf.write(root / "audio" / name, np.full(int(seconds * SR), 0.1 * (i + 1), np.float32), SR)
        records.append(AudioRecord(name, f"audio/{name}", seconds, SR, int(seconds * SR), split, name, "t"))
    sf.write(root / "audio" / ".hidden" / "x.wav", np.zeros(100, np.float32), SR)
    (root / "audio" / "notes.md").write_text("not audio")
    write_manifest(root / "m.jsonl", records)
    return root / "m.jsonl"


def test_one_extension_list_and_one_folder_scan(tmp_path):
    _corpus(tmp_path)
    assert {".wav", ".flac", ".ogg", ".mp3", ".opus", ".aiff"} <= AUDIO_EXTENSIONS
    audio = tmp_path / "audio"
    assert scan_folder(audio) == [audio / "a.wav", audio / "c.wav", audio / "sub" / "b.flac"]
    assert find_audio([audio / "notes.md", audio / "sub"]) == [audio / "notes.md", audio / "sub" / "b.flac"]
    with pytest.raises(FileNotFoundError, match="missing"):
        find_audio([tmp_path / "missing"])
    with pytest.raises(ValueError, match="no audio files"):
        find_audio([_empty(tmp_path)])


def _empty(tmp_path: Path) -> Path:
    (tmp_path / "empty").mkdir(exist_ok=True)
    return tmp_path / "empty"


def test_folder_list_and_manifest_name_the_same_files(tmp_path):
    manifest = _corpus(tmp_path)
    audio = tmp_path / "audio"
    (tmp_path / "list.txt").write_text('# train files\naudio/a.wav\n\n{"path": "audio/sub/b.flac"}\n')
    assert list_files(manifest) == [audio / "a.wav", audio / "sub" / "b.flac"]  # train and pool splits
    assert list_files(manifest, splits=None) == [audio / "a.wav", audio / "sub" / "b.flac", audio / "c.wav"]
    assert list_files(tmp_path / "list.txt") == list_files(manifest)
    assert list_files(audio) == scan_folder(audio)
    # among audio files, a list or a manifest stands for the files it names (every split)
    assert find_audio([tmp_path / "list.txt", audio / "c.wav"]) == [audio / "a.wav", audio / "sub" / "b.flac",
                                                                   audio / "c.wav"]  # fmt: skip
    assert find_audio([manifest]) == list_files(manifest, splits=None)
    from muqkit.embed.api import find_inputs

    inputs = find_inputs([manifest])
    assert [(i.path, str(i.relative)) for i in inputs] == [(audio / "a.wav", "a.wav"), (audio / "sub" / "b.flac",
                                                           "b.flac"), (audio / "c.wav", "c.wav")]  # fmt: skip
    (tmp_path / "bad.txt").write_text("a.wav\n{\"name\": 1}\n")
    with pytest.raises(ValueError, match=r"bad.txt:2: not an AudioRecord, and no path key"):
        read_path_list(tmp_path / "bad.txt")


def test_load_records_reads_folders_and_lists_from_headers(tmp_path):
    manifest = _corpus(tmp_path)
    from_manifest = {p.resolve(): r for r, p in load_records([manifest], splits=None)}
    from_folder = load_records([tmp_path / "audio"])
    assert len(from_folder) == 3 and {r.split for r, _ in from_folder} == {"pool"}
    for record, path in from_folder:
        expected = from_manifest[path.resolve()]
        assert record.num_samples == expected.num_samples and record.duration == pytest.approx(expected.duration)
        assert record.group == record.id and record.sample_rate == SR
    assert [r.id for r, _ in from_folder] == ["a.wav", "c.wav", "sub/b.flac"]
    (tmp_path / "list.txt").write_text("audio/c.wav\n")
    [(record, path)] = load_records([tmp_path / "list.txt"], min_seconds=0.2)
    assert path == tmp_path / "audio" / "c.wav" and record.num_samples == SR // 4
    assert load_records([tmp_path / "list.txt"], min_seconds=0.3, allow_empty=True) == []
    with pytest.raises(ValueError, match="no records"):
        load_records([tmp_path / "list.txt"], min_seconds=0.3)
    valid = absolute_records([manifest], split="valid")
    assert [Path(r.path) for r in valid] == [(tmp_path / "audio" / "c.wav").absolute()]


def test_crops_depend_on_their_index_only(tmp_path):
    manifest = _corpus(tmp_path)
    records = load_records([manifest])
    dataset = RandomCropDataset(records, crop_seconds=0.25, sample_rate=SR, seed=3, frame_samples=960)
    forward = [dataset[i]["audio"] for i in range(6)]
    backward = [dataset[i]["audio"] for i in reversed(range(6))][::-1]
    for a, b in zip(forward, backward, strict=True):
        assert torch.equal(a, b)
    # file a holds 0.1, file b 0.2: each crop is the constant of the file its index picked
    for i, crop in enumerate(forward):
        file, start = dataset.locate(i)
        assert start % 960 == 0 and torch.allclose(crop, torch.full_like(crop, 0.1 * (file + 1)), atol=1e-4)

    arrays = [torch.arange(40.0).reshape(20, 2), torch.arange(100.0, 120.0).reshape(10, 2)]
    frames = FrameCropDataset(arrays, crop_frames=4, seed=1)
    again = FrameCropDataset(arrays, crop_frames=4, seed=1)
    other = FrameCropDataset(arrays, crop_frames=4, seed=2)
    crops = [frames[i]["frames"] for i in range(20)]
    assert all(torch.equal(c, again[i]["frames"]) for i, c in enumerate(crops))
    assert not all(torch.equal(c, other[i]["frames"]) for i, c in enumerate(crops))
    for i, crop in enumerate(crops):
        item, start = frames.locate(i)
        assert torch.equal(crop, arrays[item][start : start + 4])
    # arrays are picked in proportion to their length (20 vs 10 rows)
    picks = np.array([frames.locate(i)[0] for i in range(3000)])
    assert abs(float((picks == 0).mean()) - 2 / 3) < 0.03


def test_without_groups_of_leaves_out_the_groups_of_other_manifests(tmp_path):
    from muqkit.data.manifest import without_groups_of

    def rec(i: int, group: str, split: str) -> AudioRecord:
        return AudioRecord(str(i), f"{i}.wav", 1.0, SR, SR, split, group, "t")

    records = [rec(0, "a", "test"), rec(1, "b", "test"), rec(2, "c", "test")]
    write_manifest(tmp_path / "pretrained.jsonl", [rec(10, "a", "train"), rec(11, "c", "valid")])
    assert [r.id for r in without_groups_of(records, [tmp_path / "pretrained.jsonl"])] == ["1"]
    kept = without_groups_of(records, [tmp_path / "pretrained.jsonl"], splits=("train",))
    assert [r.id for r in kept] == ["1", "2"]
