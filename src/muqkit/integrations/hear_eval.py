"""HEAR 2021 end to end: hear-eval-kit's embedding runner on :mod:`muqkit.hear`, then a score.

    from muqkit.integrations.hear_eval import run_embeddings, score_task

    run_embeddings("hear-tasks/", "embeddings/", model="runs/pt/model")      # heareval's own runner
    scores = score_task("embeddings/muqkit.hear/nsynth_pitch-v2.2.3-5h")     # {"test": {...}, "primary": ...}

**Embeddings**: :func:`run_embeddings` calls ``heareval.embeddings.runner`` (hear-eval-kit 2021.1.3) unchanged.
Its modules import TensorFlow only to tell TensorFlow models from torch ones (``isinstance(model,
tf.Module)``) and, when CUDA is there, to check that TensorFlow sees the GPU too; without TensorFlow a
stand-in module is given to that import alone (it says no GPU and no TensorFlow model), and removed again.

**Predictions**: hear-eval-kit's prediction runner (``heareval.predictions.runner``) cannot run with current
libraries: it is written for PyTorch Lightning 1.x, and with Lightning 2.x

* ``pl.Trainer(gpus=...)`` raises ``TypeError`` (the argument was removed in Lightning 2.0);
* its prediction models implement ``validation_epoch_end`` / ``test_epoch_end``, which Lightning 2.0 refuses
  (``NotImplementedError: Support for validation_epoch_end has been removed in v2.0.0``);
* it reads its own checkpoints with ``torch.load`` and torch >= 2.6 loads with ``weights_only=True``: the
  checkpoints hold the grid point's classes (``torch.nn.BatchNorm1d``, ``torch.optim.Adam``), which are refused;
* ``trainer.fit_loop.current_epoch = ...`` fails (the property has no setter in Lightning 2.x).

Lightning 1.x cannot be installed beside it either (``pytorch-lightning<2`` uses ``np.Inf``, removed in
numpy 2). :func:`score_task` therefore runs the part of the prediction stage that does work: it reads the
embedding runner's outputs with hear-eval-kit's own reader (``SplitMemmapDataset``), its splits
(``get_splits_from_metadata``, k-fold included), its event post-processing (``get_events_for_all_files``
with the task's grid, chosen on the validation split) and its score functions (``heareval.score``, sed_eval
for events), with a scikit-learn probe (standardisation and a logistic regression, one-vs-rest for
multilabel and event tasks) in place of its Lightning MLP grid search. Scores are therefore
hear-eval-kit's metrics of a linear probe, not the leaderboard's MLP numbers.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import os
import sys
import types
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

HEAR_MODULE = "muqkit.hear"

__all__ = [
    "HEAR_MODULE",
    "ProbeResult",
    "fit_probe",
    "run_embeddings",
    "score_task",
    "tensorflow_stand_in",
]


@contextlib.contextmanager
def tensorflow_stand_in() -> Iterator[None]:
    """While active, ``import tensorflow`` gives a stand-in when TensorFlow is not installed: ``tf.Module``
    is a class no model is an instance of, and ``tf.test.is_gpu_available()`` is False. The stand-in leaves
    ``sys.modules`` afterwards, so other libraries never see it."""
    if importlib.util.find_spec("tensorflow") is not None or "tensorflow" in sys.modules:
        yield
        return
    stand_in = types.ModuleType("tensorflow")
    stand_in.Module = type("Module", (), {})  # type: ignore[attr-defined]
    stand_in.test = types.SimpleNamespace(is_gpu_available=lambda *args, **kwargs: False)  # type: ignore[attr-defined]
    sys.modules["tensorflow"] = stand_in
    try:
        yield
    finally:
        sys.modules.pop("tensorflow", None)


def _require(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            f"{module} needs hear-eval-kit: pip install 'muqkit[hear]' and "
            "pip install --no-deps heareval==2021.1.3 (see docs/usage.md#hear)",
            name=exc.name,
        ) from exc


def run_embeddings(
    tasks_dir: str | os.PathLike[str],
    embeddings_dir: str | os.PathLike[str],
    *,
    model: str | os.PathLike[str] | None = None,
    model_options: Mapping[str, Any] | None = None,
    task: str = "all",
    module: str = HEAR_MODULE,
) -> Path:
    """Run hear-eval-kit's embedding runner (``python -m heareval.embeddings.runner``) in this process.

    Args:
        tasks_dir: a folder of HEAR tasks as hear-preprocess writes them (``<task>/task_metadata.json``,
            ``labelvocabulary.csv``, ``<split>.json``, ``48000/<split>/*.wav``).
        embeddings_dir: where the runner writes (``<module>[-<options>]/<task>/``).
        model: checkpoint folder (``--model``); None: the module's default model.
        model_options: keyword arguments of :func:`muqkit.hear.load_model` (``--model-options``).
        task: one task's folder name, or ``"all"``.
        module: the HEAR API module.

    Returns:
        The folder holding one embedding folder per task.

    Raises:
        ValueError: ``tasks_dir`` or ``model`` does not exist.
    """
    if not Path(tasks_dir).is_dir():
        raise ValueError(f"--tasks-dir {tasks_dir}: not a folder of HEAR tasks")
    if model is not None and not Path(model).exists():
        raise ValueError(f"--model {model}: no such checkpoint folder (the HEAR runner takes a local folder)")
    with tensorflow_stand_in():
        runner = _require("heareval.embeddings.runner")
    options = json.dumps(dict(model_options or {}))
    args = [module, "--tasks-dir", str(tasks_dir), "--embeddings-dir", str(embeddings_dir), "--task", task,
            "--model-options", options] + (["--model", str(model)] if model is not None else [])  # fmt: skip
    runner.runner.main(args=args, standalone_mode=False)
    slug = ""
    if model_options:
        from slugify import slugify

        slug = "-" + "-".join(f"{slugify(k)}={slugify(str(v))}" for k, v in model_options.items())
    return Path(embeddings_dir) / f"{module}{slug}"


# --------------------------------------------------------------------------------------------------
# The prediction stage: hear-eval-kit's reader, splits, post-processing and scores; a scikit-learn probe
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProbeResult:
    """Scores of one task.

    Attributes:
        task: the task's name.
        scores: per test split (fold), every score of the task's ``evaluation`` list (sub-scores of event
            scores as ``name_subscore``).
        primary: the first score of the task's list, averaged over test splits.
        postprocessing: the event post-processing chosen on each validation split (event tasks).
    """

    task: str
    scores: dict[str, dict[str, float]]
    primary: float
    postprocessing: dict[str, dict[str, float]]


def fit_probe(x: np.ndarray, y: np.ndarray, *, multilabel: bool, seed: int = 0, c: float = 1.0) -> Any:
    """The probe: standardisation and a logistic regression (one-vs-rest when ``multilabel``), scikit-learn.

    Args:
        x: (n, dim) embeddings.
        y: (n, labels) multi-hot targets (one-hot for multiclass).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    logistic = LogisticRegression(C=c, max_iter=1000, random_state=seed)
    if multilabel:
        return make_pipeline(StandardScaler(), OneVsRestClassifier(logistic)).fit(x, y.astype(int))
    return make_pipeline(StandardScaler(), logistic).fit(x, y.argmax(axis=1))


def predict_probabilities(probe: Any, x: np.ndarray, num_labels: int) -> np.ndarray:
    """(n, num_labels) probabilities of every label (labels the probe never saw get 0)."""
    proba = probe.predict_proba(x)
    classes = probe.classes_ if not hasattr(probe[-1], "estimators_") else np.arange(num_labels)
    out = np.zeros((x.shape[0], num_labels), dtype=np.float64)
    out[:, np.asarray(classes, dtype=int)] = proba
    return out


def _split_data(path: Path, names: Sequence[str], label_to_idx: dict[str, int], nlabels: int,
                embedding_type: str) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:  # fmt: skip
    """Embeddings, multi-hot targets and frame metadata of splits, read by hear-eval-kit's reader."""
    tp = _require("heareval.predictions.task_predictions")
    xs, ys, meta = [], [], []
    for name in names:
        data = tp.SplitMemmapDataset(embedding_path=path, label_to_idx=label_to_idx, nlabels=nlabels,
                                     split_name=name, embedding_type=embedding_type, in_memory=True,
                                     metadata=True)  # fmt: skip
        xs.append(np.asarray(data.embeddings, dtype=np.float32))
        ys.append(data.y.numpy())
        meta += list(data.metadata)
    return np.concatenate(xs), np.concatenate(ys), meta


def score_task(embed_task_dir: str | os.PathLike[str], *, seed: int = 0, c: float = 1.0) -> ProbeResult:
    """Score one task folder written by the embedding runner, and write ``test.predicted-scores.json`` in it.

    For each data split of the task (one for train/valid/test tasks, one per fold for k-fold tasks, as
    hear-eval-kit forms them): fit :func:`fit_probe` on the train split, and score the test split with the
    task's score functions; for event tasks, frame probabilities become events with hear-eval-kit's
    post-processing, the setting chosen by the primary score on the validation split.

    Raises:
        ValueError: the folder holds no embedding runner output.
    """
    path = Path(embed_task_dir)
    if not (path / "task_metadata.json").is_file():
        raise ValueError(f"{path}: no task_metadata.json; not a task folder of the HEAR embedding runner")
    tp = _require("heareval.predictions.task_predictions")
    hs = _require("heareval.score")
    metadata = json.loads((path / "task_metadata.json").read_text())
    label_vocab, nlabels = tp.label_vocab_nlabels(path)
    label_to_idx = hs.label_vocab_as_dict(label_vocab, key="label", value="idx")
    idx_to_label = {idx: label for label, idx in label_to_idx.items()}
    scores = [hs.available_scores[name](label_to_idx=label_to_idx) for name in metadata["evaluation"]]
    embedding_type = metadata["embedding_type"]
    multilabel = embedding_type == "event" or metadata["prediction_type"] == "multilabel"
    grid = metadata.get("evaluation_params", {}).get("event_postprocessing_grid", tp.EVENT_POSTPROCESSING_GRID)

    results: dict[str, dict[str, float]] = {}
    chosen: dict[str, dict[str, float]] = {}
    for split in tp.get_splits_from_metadata(metadata):
        x_train, y_train, _ = _split_data(path, split["train"], label_to_idx, nlabels, embedding_type)
        probe = fit_probe(x_train, y_train, multilabel=multilabel, seed=seed, c=c)
        test_name = "|".join(split["test"])
        x_test, y_test, meta_test = _split_data(path, split["test"], label_to_idx, nlabels, embedding_type)
        p_test = predict_probabilities(probe, x_test, nlabels)
        if embedding_type == "scene":
            results[test_name] = _evaluate(scores, p_test, y_test)
            continue
        x_valid, _, meta_valid = _split_data(path, split["valid"], label_to_idx, nlabels, embedding_type)
        valid_events = _events(tp, predict_probabilities(probe, x_valid, nlabels), meta_valid, idx_to_label, grid)
        valid_targets = _targets(path, split["valid"])
        best = max(valid_events, key=lambda pp: _primary(scores[0](valid_events[pp], valid_targets)))
        test_events = _events(tp, p_test, meta_test, idx_to_label, grid, best)[best]
        results[test_name] = _evaluate(scores, test_events, _targets(path, split["test"]))
        chosen[test_name] = {k: float(v) for k, v in best}
    primary_name = str(scores[0])
    primary = float(np.mean([r[primary_name] for r in results.values()]))
    result = ProbeResult(task=str(metadata["task_name"]), scores=results, primary=primary, postprocessing=chosen)
    report = {"task": result.task, "primary_score": primary_name, "primary": primary, "scores": results,
              "postprocessing": chosen, "probe": f"StandardScaler + LogisticRegression(C={c})",
              "seed": seed}  # fmt: skip
    (path / "test.predicted-scores.json").write_text(json.dumps(report, indent=2) + "\n")
    return result


def _primary(value: Any) -> float:
    score = value[0][1] if isinstance(value, tuple) else value
    return 0.0 if np.isnan(score) else float(score)


def _evaluate(scores: Sequence[Any], predictions: Any, targets: Any) -> dict[str, float]:
    out: dict[str, float] = {}
    for score in scores:
        value = score(predictions, targets)
        if isinstance(value, tuple):
            out[str(score)] = float(value[0][1])
            out.update({f"{score}_{name}": float(v) for name, v in value})
        else:
            out[str(score)] = float(value)
    return out


def _events(tp: Any, probabilities: np.ndarray, meta: list[dict[str, Any]], idx_to_label: dict[int, str],
            grid: Mapping[str, list[float]], postprocessing: Any = None) -> dict[Any, Any]:  # fmt: skip
    import torch

    return dict(tp.get_events_for_all_files(
        torch.from_numpy(probabilities), [m["filename"] for m in meta], [m["timestamp"] for m in meta],
        idx_to_label, grid, postprocessing,
    ))  # fmt: skip


def _targets(path: Path, names: Sequence[str]) -> dict[str, Any]:
    targets: dict[str, Any] = {}
    for name in names:
        targets.update(json.loads((path / f"{name}.json").read_text()))
    return targets
