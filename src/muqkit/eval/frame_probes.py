"""Frame probes: the clip probes' head (:class:`~muqkit.eval.probes.ProbeHead`: linear, or MLP with 512 units)
applied to every frame of one layer or of a learned softmax mix of layers.

A probe is trained on all training frames with Adam; the epoch with the lowest validation loss is kept
(training stops after ``patience`` epochs without a lower one). Event targets are widened to the
neighbouring frames (value 0.5) while training. Beats are decoded by peak picking (threshold chosen on
validation) or madmom's DBN (``dbn=True``); outputs are scored with mir_eval (:mod:`muqkit.eval.frame_metrics`).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from muqkit.data.labels import IGNORE, MAJMIN_CLASSES, MELODY_LOW, ScoreLabels
from muqkit.data.manifest import SPLITS
from muqkit.eval import frame_metrics as fm
from muqkit.eval.frame_features import FrameFeatures
from muqkit.eval.frame_tasks import FRAME_RATE, FrameTaskData, FrameTaskSpec
from muqkit.eval.probes import ProbeConfig, ProbeHead, ProbeResult, SeedSummary, torch_threads


@dataclass(frozen=True)
class FrameProbeConfig(ProbeConfig):
    """Training settings of a frame probe: :class:`~muqkit.eval.probes.ProbeConfig` with the frame defaults
    (a linear head, 1024 frames a step, at most 20 epochs, patience 3) and beat decoding.

    Attributes:
        dbn: decode beats and downbeats with madmom's DBN instead of peak picking.
    """

    head: str = "linear"
    batch_size: int = 1024
    max_epochs: int = 20
    patience: int = 3
    dbn: bool = False


@dataclass(frozen=True)
class FrameSplit:
    """One split of a frame task as arrays: features, targets and each item's frame range and labels."""

    x: np.ndarray  # (frames, layers, dim)
    y: np.ndarray  # (frames, outputs) float32 or (frames,) int64
    offsets: np.ndarray  # (items + 1,)
    labels: tuple[ScoreLabels, ...]


def split_arrays(
    task: FrameTaskData, feats: FrameFeatures, layers: Sequence[int] | None = None
) -> dict[str, FrameSplit]:
    """The task's splits as :class:`FrameSplit` (targets sized to each item's feature frames)."""
    index = feats.index()
    out = {}
    for split in SPLITS:
        xs, ys, labels = [], [], []
        for r in task.records[split]:
            k = index[r.id]
            x = feats.values[feats.offsets[k] : feats.offsets[k + 1]]
            if layers is not None:
                x = x[:, list(layers)]
            xs.append(x)
            ys.append(task.targets(r.id, len(x)))
            labels.append(task.labels[r.id])
        offsets = np.concatenate([[0], np.cumsum([len(x) for x in xs])]).astype(np.int64)
        out[split] = FrameSplit(np.concatenate(xs), np.concatenate(ys), offsets, tuple(labels))
    return out


def score_outputs(
    spec: FrameTaskSpec, outputs: np.ndarray, split: FrameSplit, *, threshold: float = 0.5, dbn: bool = False
) -> dict[str, float]:
    """Metrics of per-frame outputs (probabilities for events, logits or probabilities for classes)."""
    items = [outputs[a:b] for a, b in zip(split.offsets[:-1], split.offsets[1:], strict=True)]
    if spec.name == "beat":
        beat_f, down_f = [], []
        for out, labels in zip(items, split.labels, strict=True):
            if dbn:
                beats, downs = fm.dbn_beats(out[:, 0]), fm.dbn_downbeats(out)
            else:
                beats = fm.pick_peaks(out[:, 0], threshold=threshold)
                downs = fm.pick_peaks(out[:, 1], threshold=threshold)
            beat_f.append(fm.beat_f_measure([t for t, _ in labels.beats], beats))
            down_f.append(fm.beat_f_measure(labels.downbeats, downs))
        return {"beat_f": float(np.mean(beat_f)), "downbeat_f": float(np.mean(down_f))}
    if spec.name == "onset":
        scores = [
            fm.onset_f_measure(labels.onsets, fm.pick_peaks(out[:, 0], threshold=threshold))
            for out, labels in zip(items, split.labels, strict=True)
        ]
        return {"onset_f": float(np.mean(scores))}
    if spec.name == "chord":
        sums: dict[str, list[float]] = {"majmin": [0.0, 0.0], "mirex": [0.0, 0.0]}
        for out, labels in zip(items, split.labels, strict=True):
            segments = fm.frames_to_segments(out.argmax(1), MAJMIN_CLASSES)
            for name, (right, total) in fm.chord_overlap(labels.chords, segments).items():
                sums[name][0] += right
                sums[name][1] += total
        return {k: v[0] / max(v[1], 1e-9) for k, v in sums.items()}
    classes = outputs.argmax(1)
    estimate = np.where(classes > 0, classes + MELODY_LOW - 1, 0)
    reference = np.where(split.y > 0, split.y + MELODY_LOW - 1, split.y)  # IGNORE stays negative
    m = fm.melody_accuracy(reference, estimate, frame_rate=FRAME_RATE)
    return {"oa": m["oa"], "rpa": m["rpa"], "rca": m["rca"]}


def widen_events(y: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Event targets with 0.5 on the frames next to each event (within an item)."""
    out = y.copy()
    for a, b in zip(offsets[:-1], offsets[1:], strict=True):
        seg, w = y[a:b], out[a:b]
        w[1:] = np.maximum(w[1:], 0.5 * seg[:-1])
        w[:-1] = np.maximum(w[:-1], 0.5 * seg[1:])
    return out


@dataclass(frozen=True)
class FrameProbeResult(ProbeResult):
    """One trained frame probe: a :class:`~muqkit.eval.probes.ProbeResult` and the peak-picking threshold chosen
    on validation (event tasks without DBN decoding)."""

    threshold: float | None = None


THRESHOLDS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6)


def train_frame_probe(
    spec: FrameTaskSpec, data: Mapping[str, FrameSplit], *, config: FrameProbeConfig, seed: int = 0
) -> FrameProbeResult:
    """Train a per-frame probe on the training frames and score it on the test clips.

    Args:
        spec: the task.
        data: split -> :class:`FrameSplit`; more than one layer in ``x`` means a learned weighted sum.
        config: training settings.
        seed: seed of initialisation, shuffling and dropout.
    """
    with torch_threads(1):
        gen = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        train = data["train"]
        mean = train.x.mean(0, keepdims=True)
        std = train.x.std(0, keepdims=True) + 1e-5
        xs = {s: torch.from_numpy(((d.x - mean) / std).astype(np.float32)) for s, d in data.items()}
        events = spec.kind == "events"
        if events:
            y_train = torch.from_numpy(widen_events(train.y, train.offsets))
            y_valid = torch.from_numpy(data["valid"].y)
            loss_fn: nn.Module = nn.BCEWithLogitsLoss()
        else:
            y_train = torch.from_numpy(train.y).long()
            y_valid = torch.from_numpy(data["valid"].y).long()
            loss_fn = nn.CrossEntropyLoss(ignore_index=IGNORE)
        model = ProbeHead(xs["train"].shape[1], xs["train"].shape[2], spec.num_outputs, config)
        optimiser = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        trainable = torch.ones(len(y_train), dtype=torch.bool) if events else y_train != IGNORE
        rows = trainable.nonzero().squeeze(1)
        if len(rows) == 0:
            raise ValueError(f"frame task {spec.name}: no labelled training frames")

        def predict(split: str) -> torch.Tensor:
            model.eval()
            with torch.no_grad():
                return torch.cat([model(chunk) for chunk in xs[split].split(8192)])

        best_loss, best_epoch, best_state, epoch = np.inf, 0, copy.deepcopy(model.state_dict()), 0
        for epoch in range(1, config.max_epochs + 1):
            model.train()
            perm = rows[torch.randperm(len(rows), generator=gen)]
            for start in range(0, len(perm), config.batch_size):
                idx = perm[start : start + config.batch_size]
                loss = loss_fn(model(xs["train"][idx]), y_train[idx])
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
            val_loss = float(loss_fn(predict("valid"), y_valid))
            if val_loss < best_loss:
                best_loss, best_epoch, best_state = val_loss, epoch, copy.deepcopy(model.state_dict())
            elif epoch - best_epoch >= config.patience:
                break
        model.load_state_dict(best_state)

        def outputs(split: str) -> np.ndarray:
            out = predict(split)
            return (out.sigmoid() if events else out).numpy()

        valid_out, test_out = outputs("valid"), outputs("test")
        threshold = None
        if events and not config.dbn:
            val_scores = [score_outputs(spec, valid_out, data["valid"], threshold=t)[spec.metric] for t in THRESHOLDS]
            threshold = THRESHOLDS[int(np.argmax(val_scores))]
            val = float(max(val_scores))
        else:
            val = score_outputs(spec, valid_out, data["valid"], dbn=config.dbn)[spec.metric]
        test = score_outputs(spec, test_out, data["test"], threshold=threshold or 0.5, dbn=config.dbn)
        weights = None
        if model.layer_logits is not None:
            weights = tuple(float(w) for w in model.layer_logits.detach().softmax(0))
    return FrameProbeResult(val, test, epoch, best_epoch, weights, threshold)


def frame_probe_over_seeds(
    spec: FrameTaskSpec, data: Mapping[str, FrameSplit], config: FrameProbeConfig, seeds: Sequence[int]
) -> SeedSummary:
    """:func:`train_frame_probe` once per seed; mean and std of the test metrics."""
    runs = [train_frame_probe(spec, data, config=config, seed=s) for s in seeds]
    return SeedSummary.of(runs, ignore_nan_val=False)


__all__ = [
    "THRESHOLDS",
    "FrameProbeConfig",
    "FrameProbeResult",
    "FrameSplit",
    "frame_probe_over_seeds",
    "score_outputs",
    "split_arrays",
    "train_frame_probe",
    "widen_events",
]
