"""MARBLE adapters on tiny fabricated folders in MARBLE's layout."""

from __future__ import annotations

import json

import numpy as np
import pytest

from muqkit.eval.dummies import make_marble_root
from muqkit.eval.marble import MARBLE_ADAPTERS, load_marble_task


@pytest.mark.parametrize("task", sorted(MARBLE_ADAPTERS))
def test_adapter_reads_fabricated_folder(tmp_path, task):
    data = load_marble_task(task, make_marble_root(tmp_path, task))
    assert data.kind == MARBLE_ADAPTERS[task].kind
    kept = 2 if task == "hooktheory-key" else 3  # its modal key is dropped
    assert [len(data.records[s]) for s in ("train", "valid", "test")] == [kept] * 3
    assert all(r.resolve(tmp_path).is_file() for r in data.records["test"])
    y = data.targets["train"]
    if task == "gtzan":
        assert data.classes[y[1]] == "rock" and len(data.classes) == 10
    elif task == "gs-key":
        assert [data.classes[i] for i in y] == ["Db major", "A minor", "C major"]
    elif task == "mtt":
        assert data.classes == ("guitar", "piano", "rock")
        np.testing.assert_array_equal(y[0], [1, 0, 1])
    elif task == "emo":
        np.testing.assert_allclose(y[1], [0.5, 0.3])
    elif task == "hooktheory-key":
        assert [data.classes[i] for i in y] == ["D major", "E minor"]
    elif task == "hooktheory-structure":
        assert [data.classes[i] for i in y] == ["chorus", "verse", "verse"] and len(data.classes) == 7
    elif task == "nsynth-pitch":
        assert data.classes == ("60", "62")
    else:
        assert len(data.classes) == 2


def test_missing_split_is_explained(tmp_path):
    make_marble_root(tmp_path, "gtzan", split_names=("train", "test"))
    with pytest.raises(FileNotFoundError, match="no valid metadata"):
        load_marble_task("gtzan", tmp_path)


def test_multi_hot_mtt_labels(tmp_path):
    make_marble_root(tmp_path, "mtt")
    folder = tmp_path / "data" / "MTT"
    for split in ("train", "val", "test"):
        path = folder / f"MTT.{split}.jsonl"
        entries = [json.loads(line) for line in path.read_text().splitlines()]
        for i, e in enumerate(entries):
            e["label"] = [1 if k == i else 0 for k in range(4)]
        path.write_text("\n".join(json.dumps(e) for e in entries) + "\n")
    data = load_marble_task("mtt", tmp_path)
    assert data.classes == ("tag0", "tag1", "tag2", "tag3")
    np.testing.assert_array_equal(data.targets["test"][2], [0, 0, 1, 0])


def test_hooktheory_tasks_share_one_folder(tmp_path):
    make_marble_root(tmp_path, "hooktheory-key")
    (tmp_path / "data" / "HookTheoryKey").rename(tmp_path / "data" / "HookTheory")
    for jsonl in (tmp_path / "data" / "HookTheory").glob("*.jsonl"):
        jsonl.write_text(jsonl.read_text().replace("data/HookTheoryKey/", "data/HookTheory/"))
    assert len(load_marble_task("hooktheory-key", tmp_path).records["test"]) == 2


@pytest.mark.parametrize("task", ["chords1217", "gtzan-beat"])
def test_frame_adapter_reads_fabricated_folder(tmp_path, task):
    from muqkit.eval.dummies import make_marble_frame_root
    from muqkit.eval.marble_frames import load_marble_frame_task

    data = load_marble_frame_task(task, make_marble_frame_root(tmp_path, task))
    assert data.name == task and [len(data.records[s]) for s in ("train", "valid", "test")] == [2, 2, 2]
    record = data.records["test"][1]
    assert record.resolve(tmp_path).is_file()
    targets = data.targets(record.id, 100)  # 4 s at 25 Hz
    if task == "gtzan-beat":
        labels = data.labels[record.id]
        assert labels.beats[0] == (0.3, 1) and labels.beats[1] == (0.8, 2) and labels.downbeats == (0.3, 2.3)
        assert np.flatnonzero(targets[:, 0]).tolist() == [7, 20, 32, 45, 57, 70, 82]
        assert np.flatnonzero(targets[:, 1]).tolist() == [7, 57]
    else:
        from muqkit.data.labels import MAJMIN_CLASSES

        assert [MAJMIN_CLASSES[c] for c in targets[[0, 49, 50, 99]]] == ["Db:maj", "Db:maj", "F#:maj", "F#:maj"]


def test_frame_adapter_runs_the_frame_suite(tmp_path):
    from muqkit.eval.dummies import make_marble_frame_root
    from muqkit.eval.frames import FrameProbeConfig, run_frame_suite
    from muqkit.eval.marble_frames import load_marble_frame_task

    task = load_marble_frame_task("chords1217", make_marble_frame_root(tmp_path, "chords1217"))
    rows = run_frame_suite(["chroma"], [task], heads=("linear",), seeds=(0,), config=FrameProbeConfig(max_epochs=2),
                           cache_dir=None)  # fmt: skip
    assert [(r.task, r.metric) for r in rows] == [("chords1217", "majmin")] and 0 <= rows[0].mean <= 1
