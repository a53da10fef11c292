"""hear-eval-kit's embedding runner on muqkit.hear, then the prediction stage on its outputs, on a HEAR-format
scene task and an event task built from the offline corpus; scores checked against a direct probe."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

pytest.importorskip("heareval")
pytest.importorskip("sed_eval")

from muqkit import hear  # noqa: E402
from muqkit.audio.io import load_audio, resample  # noqa: E402
from muqkit.data.manifest import read_manifest  # noqa: E402
from muqkit.integrations import hear_eval  # noqa: E402

HEAR_SR = 48000


def _write_task(folder: Path, metadata: dict, splits: dict[str, dict[str, tuple[np.ndarray, object]]]) -> None:
    """A task as hear-preprocess lays it out: metadata, vocabulary, split labels and 48 kHz wavs."""
    folder.mkdir(parents=True)
    labels: set[str] = set()
    for split, files in splits.items():
        (folder / str(HEAR_SR) / split).mkdir(parents=True)
        targets = {}
        for name, (audio, target) in files.items():
            sf.write(folder / str(HEAR_SR) / split / name, audio, HEAR_SR, subtype="FLOAT")
            targets[name] = target
            labels |= {e["label"] for e in target} if metadata["embedding_type"] == "event" else set(target)
        (folder / f"{split}.json").write_text(json.dumps(targets))
    vocab = sorted(labels)
    (folder / "labelvocabulary.csv").write_text("idx,label\n" + "".join(f"{i},{v}\n" for i, v in enumerate(vocab)))
    (folder / "task_metadata.json").write_text(json.dumps({**metadata, "splits": list(splits)}))


@pytest.fixture(scope="module")
def tasks(notes_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    records = sorted(read_manifest(notes_corpus / "notes.jsonl"), key=lambda r: (r.group, r.labels["pitch"]))
    root = tmp_path_factory.mktemp("hear-tasks")
    notes = {r.id: resample(load_audio(notes_corpus / r.path).numpy(), 24000, HEAR_SR) for r in records}
    # scene: the instrument family of a note; per instrument, the 2 lowest pitches train, the next validates
    by_group: dict[str, list] = {}
    for r in records:
        by_group.setdefault(r.group, []).append(r)
    scene: dict[str, dict] = {"train": {}, "valid": {}, "test": {}}
    for group in by_group.values():
        for rank, r in enumerate(group):
            split = "train" if rank < 2 else "valid" if rank == 2 else "test"
            scene[split][f"{r.id}.wav"] = (notes[r.id], [r.labels["family"]])
    _write_task(root / "notes_family", {
        "task_name": "notes_family", "version": "muqkit", "embedding_type": "scene", "prediction_type": "multiclass",
        "split_mode": "trainvaltest", "sample_duration": 1.5, "evaluation": ["top1_acc"],
    }, scene)  # fmt: skip
    # event: one note in 3 s of silence, labelled low or high register, from its onset to its end
    rng = np.random.default_rng(0)
    event: dict[str, dict] = {"train": {}, "valid": {}, "test": {}}
    for i, r in enumerate(records[:24]):
        start = float(rng.uniform(0.2, 1.3))
        audio = np.zeros(3 * HEAR_SR, dtype=np.float32)
        note = notes[r.id][: 3 * HEAR_SR - round(start * HEAR_SR)]
        audio[round(start * HEAR_SR) : round(start * HEAR_SR) + note.size] = note
        label = "high" if r.labels["pitch"] >= 60 else "low"
        split = ("train", "train", "valid", "test")[i % 4]
        event[split][f"e{i:02d}.wav"] = (audio, [{"label": label, "start": start * 1000, "end": (start + 1.5) * 1000}])
    _write_task(root / "notes_events", {
        "task_name": "notes_events", "version": "muqkit", "embedding_type": "event", "prediction_type": "multilabel",
        "split_mode": "trainvaltest", "sample_duration": 3.0,
        "evaluation": ["event_onset_200ms_fms", "segment_1s_er"],
    }, event)  # fmt: skip
    return root


@pytest.fixture(scope="module")
def embeddings(tasks: Path, checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("hear-embeddings")
    return hear_eval.run_embeddings(tasks, out, model=checkpoint)


def test_the_embedding_runner_stores_what_muqkit_hear_gives(tasks: Path, embeddings: Path, checkpoint: Path) -> None:
    assert embeddings.name == "muqkit.hear"
    folder = embeddings / "notes_family"
    assert (folder / ".done.embeddings").is_file() and (embeddings / "notes_events" / ".done.embeddings").is_file()
    model = hear.load_model(str(checkpoint))
    name = sorted(json.loads((tasks / "notes_family" / "test.json").read_text()))[0]
    audio, _ = sf.read(tasks / "notes_family" / "48000" / "test" / name, dtype="float32")
    stored = np.load(folder / "test" / f"{name}.embedding.npy")
    direct = hear.get_scene_embeddings(torch.from_numpy(audio)[None], model)[0].numpy()
    np.testing.assert_allclose(stored, direct, atol=1e-5, rtol=0)
    dims = json.loads((folder / "train.embedding-dimensions.json").read_text())
    assert dims == [26, 64]
    assert "tensorflow" not in __import__("sys").modules  # the stand-in did not stay behind


def _direct_scene(tasks: Path, checkpoint: Path, split: str) -> tuple[np.ndarray, list[str]]:
    model = hear.load_model(str(checkpoint))
    targets = json.loads((tasks / "notes_family" / f"{split}.json").read_text())
    names = sorted(targets)
    audio = np.stack([sf.read(tasks / "notes_family" / "48000" / split / n, dtype="float32")[0] for n in names])
    return hear.get_scene_embeddings(torch.from_numpy(audio), model).numpy(), [targets[n][0] for n in names]


def test_the_scene_score_equals_a_direct_probe(tasks: Path, embeddings: Path, checkpoint: Path) -> None:
    from sklearn.metrics import accuracy_score

    result = hear_eval.score_task(embeddings / "notes_family")
    vocab = sorted({lab for split in ("train", "valid", "test")
                    for lab in _direct_scene(tasks, checkpoint, split)[1]})  # fmt: skip
    x_train, y_train = _direct_scene(tasks, checkpoint, "train")
    x_test, y_test = _direct_scene(tasks, checkpoint, "test")
    one_hot = np.eye(len(vocab))[[vocab.index(y) for y in y_train]]
    probe = hear_eval.fit_probe(x_train, one_hot, multilabel=False)
    direct = accuracy_score([vocab.index(y) for y in y_test], probe.predict(x_test))
    assert result.scores["test"]["top1_acc"] == pytest.approx(direct, abs=1e-9)
    assert result.primary == result.scores["test"]["top1_acc"]
    written = json.loads((embeddings / "notes_family" / "test.predicted-scores.json").read_text())
    assert written["primary"] == result.primary and written["primary_score"] == "top1_acc"


def test_the_event_task_scores_with_heareval_metrics(embeddings: Path) -> None:
    result = hear_eval.score_task(embeddings / "notes_events")
    test = result.scores["test"]
    assert {"event_onset_200ms_fms", "event_onset_200ms_fms_precision", "segment_1s_er"} <= set(test)
    assert 0.0 <= test["event_onset_200ms_fms"] <= 1.0 and test["segment_1s_er"] >= 0.0
    assert set(result.postprocessing["test"]) == {"median_filter_ms", "min_duration"}
    # the probe's frame predictions, turned into events, are scored against the task's reference events
    again = hear_eval.score_task(embeddings / "notes_events")
    assert again.scores == result.scores


def test_the_prediction_runner_of_heareval_breaks_on_lightning_2(
    embeddings: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the module docstring says: heareval's runner is written for Lightning 1.x."""
    import shutil

    monkeypatch.chdir(tmp_path)  # its CSV logger writes under ./logs

    from heareval.predictions.task_predictions import task_predictions

    folder = tmp_path / "notes_family"
    shutil.copytree(embeddings / "notes_family", folder)
    with pytest.raises(TypeError, match="gpus"):
        task_predictions(embedding_path=folder, embedding_size=64, grid_points=1, gpus=None, in_memory=True,
                         deterministic=True, grid="faster", logger=__import__("logging").getLogger("t"))  # fmt: skip


def test_bad_folders_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--tasks-dir"):
        hear_eval.run_embeddings(tmp_path / "missing", tmp_path / "out")
    with pytest.raises(ValueError, match="task_metadata.json"):
        hear_eval.score_task(tmp_path)


def test_the_benchmark_command_scores_a_run_folder(tasks: Path, checkpoint: Path, tmp_path: Path, capsys) -> None:
    import shutil

    from muqkit.cli.main import main

    run = tmp_path / "run"
    shutil.copytree(checkpoint, run / "model")
    out = tmp_path / "hear"
    assert main(["benchmark", "hear", str(run), "--tasks-dir", str(tasks), "--task", "notes_family",
                 "--out", str(out), "--layers", "1,2"]) == 0  # fmt: skip
    scores = json.loads((out / "muqkit.hear-layers=1-2" / "scores.json").read_text())
    assert set(scores) == {"notes_family"} and 0.0 <= scores["notes_family"] <= 1.0
    assert f"notes_family: {scores['notes_family']:.4f}" in capsys.readouterr().out


def test_the_benchmark_command_refuses_bad_input(tmp_path: Path, checkpoint: Path, capsys) -> None:
    from muqkit.cli.main import main

    assert main(["benchmark", "hear", str(checkpoint), "--tasks-dir", str(tmp_path / "none"),
                 "--out", str(tmp_path / "o")]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1 and "--tasks-dir" in err
