"""Frame-level tasks of the corpus: per-frame probes on 25 Hz features, scored with mir_eval.

Tasks (:data:`FRAME_TASKS`) read the frame labels of a format-3 corpus (:mod:`muqkit.data.labels`):

- ``beat``: beat and downbeat activations (two sigmoid outputs); F-measure at 70 ms after peak picking
  (threshold chosen on validation) or madmom's DBN (``dbn=True``); primary ``beat_f``, also ``downbeat_f``.
- ``chord``: 25 classes (12 major, 12 minor, no chord) on the part-songs; ``majmin`` and ``mirex``
  weighted overlap against the full reference labels.
- ``melody``: 89 classes (unvoiced, MIDI 21-108) on the single-part tunes; overall accuracy (``oa``),
  raw pitch (``rpa``) and raw chroma (``rca``) accuracy.
- ``onset``: one sigmoid output; F-measure at 50 ms.

A frame probe is the clip probe's head (:mod:`muqkit.eval.probes`: linear, or MLP with 512 units) applied to
every frame of one layer or of a learned softmax mix of layers, trained on all training frames with
Adam; the epoch with the lowest validation loss is kept (training stops after ``patience`` epochs
without a lower one). Event targets are widened to the neighbouring frames (value 0.5) while training.

Frame features (:class:`FrameExtractor`): ``mel`` (128-band log-mel, averaged to 25 Hz), ``chroma``
(12 pitch classes, 4096-point STFT, hop 40 ms), ``onset`` (alias ``rhythm``: log-mel flux in 8 band groups
at 100 Hz, 4 values per frame), ``random:PRESET`` and ``muq:FOLDER_OR_HUB_ID`` (every hidden state).
External references scored with the same metrics, no probe: ``madmom-beats`` (RNN + DBN downbeat tracker)
and ``madmom-chords`` (CNN + CRF chord recogniser).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import nn

from muqkit.data.corpus.format import require_frame_labels
from muqkit.data.labels import (
    IGNORE,
    MAJMIN_CLASSES,
    MELODY_LOW,
    NUM_MELODY_CLASSES,
    ScoreLabels,
    frame_targets,
    labels_path,
    read_labels,
)
from muqkit.data.manifest import SPLITS, AudioRecord, read_manifest
from muqkit.eval import frame_metrics as fm

logger = logging.getLogger(__name__)
FRAME_RATE = 25.0
SAMPLE_RATE = 24000


@dataclass(frozen=True)
class FrameTaskSpec:
    """A frame-level task.

    Attributes:
        name: registry name.
        kind: ``"events"`` (sigmoid outputs, peak picking) or ``"classes"`` (softmax over classes).
        num_outputs: outputs per frame.
        metric: primary metric.
        parts: which score clips: ``"any"``, ``"several"`` (part-songs) or ``"one"`` (single-part tunes).
        description: one line for reports.
    """

    name: str
    kind: str
    num_outputs: int
    metric: str
    parts: str
    description: str

    def __post_init__(self) -> None:
        if self.kind not in ("events", "classes") or self.parts not in ("any", "several", "one"):
            raise ValueError(f"FrameTaskSpec {self.name}: kind events|classes and parts any|several|one required")


FRAME_TASKS: dict[str, FrameTaskSpec] = {
    t.name: t
    for t in (
        FrameTaskSpec("beat", "events", 2, "beat_f", "any", "beats and downbeats of score clips (F, 70 ms)"),
        FrameTaskSpec("chord", "classes", 25, "majmin", "several", "chords of part-songs (25 classes, overlap)"),
        FrameTaskSpec("melody", "classes", NUM_MELODY_CLASSES, "oa", "one", "melody of tunes (pitch + voicing)"),
        FrameTaskSpec("onset", "events", 1, "onset_f", "any", "note onsets of score clips (F, 50 ms)"),
    )
}


@dataclass(frozen=True)
class FrameTaskData:
    """Records and frame labels of one frame task.

    Attributes:
        spec: the task.
        root: the corpus folder.
        records: split -> records.
        labels: item id -> its sidecar.
        manifest: every record of the scores manifest (the feature cache embeds them all once).
        title: the task's name in reports when it differs from the spec's (a MARBLE data set).
    """

    spec: FrameTaskSpec
    root: Path
    records: Mapping[str, tuple[AudioRecord, ...]]
    labels: Mapping[str, ScoreLabels]
    manifest: tuple[AudioRecord, ...]
    title: str = ""

    @property
    def name(self) -> str:
        return self.title or self.spec.name

    @property
    def metric(self) -> str:
        return self.spec.metric

    def summary(self) -> str:
        counts = ", ".join(f"{s} {len(self.records[s])}" for s in SPLITS)
        return f"{self.name} (frames, {self.spec.num_outputs} outputs): {counts}"

    def targets(self, item_id: str, num_frames: int) -> np.ndarray:
        """(frames, outputs) float32 for event tasks, (frames,) int64 class indices (or IGNORE) otherwise."""
        t = frame_targets(self.labels[item_id], num_frames, FRAME_RATE)
        return {"beat": t.beat, "chord": t.chord, "melody": t.melody, "onset": t.onset[:, None]}[self.spec.name]


def load_frame_task(name: str, corpus: str | os.PathLike[str]) -> FrameTaskData:
    """Load a task of :data:`FRAME_TASKS` from a format-3 corpus."""
    if name not in FRAME_TASKS:
        raise ValueError(f"unknown frame task {name!r}; known: {sorted(FRAME_TASKS)}")
    spec = FRAME_TASKS[name]
    corpus = Path(corpus)
    require_frame_labels(corpus)
    manifest = read_manifest(corpus / "scores.jsonl")
    keep = [
        r
        for r in manifest
        if r.split in SPLITS
        and (spec.parts == "any" or (r.labels.get("num_parts", 1) > 1) == (spec.parts == "several"))
    ]
    labels = {r.id: read_labels(labels_path(corpus, r.id)) for r in keep}
    records = {s: tuple(r for r in keep if r.split == s) for s in SPLITS}
    for s in SPLITS:
        if not records[s]:
            raise ValueError(f"frame task {name}: the {s} split is empty")
    return FrameTaskData(spec, corpus, records, labels, tuple(manifest))


# --------------------------------------------------------------------------------------------------
# features


class FrameExtractor(Protocol):
    """What the frame feature cache needs from a model."""

    id: str
    num_layers: int

    def embed_frames(self, wavs: Sequence[torch.Tensor]) -> list[np.ndarray]:
        """(frames, num_layers, dim) float32 per waveform ((samples,) float32 at 24 kHz), 25 frames a second."""
        ...


class HandcraftedFrameExtractor:
    """Classic features at 25 Hz: ``mel``, ``chroma`` or ``onset`` (see the module docstring)."""

    KINDS = ("mel", "chroma", "onset")

    def __init__(self, kind: str) -> None:
        if kind not in self.KINDS:
            raise ValueError(f"frame feature kind must be one of {self.KINDS}, got {kind!r}")
        from muqkit.audio.mel import MelFrontend
        from muqkit.eval.features import chroma_filter

        self.kind = kind
        self.id = f"frames-{kind}-v1"
        self.num_layers = 1
        self.frontend = MelFrontend()
        self.n_fft, self.hop = 4096, SAMPLE_RATE // 25
        self.chroma_fb = chroma_filter(self.n_fft, SAMPLE_RATE)

    @torch.no_grad()
    def embed_frames(self, wavs: Sequence[torch.Tensor]) -> list[np.ndarray]:
        out = []
        for wav in wavs:
            frames = len(wav) // self.hop
            if self.kind == "chroma":
                spec = torch.stft(wav, self.n_fft, self.hop, window=torch.hann_window(self.n_fft), return_complex=True)
                chroma = (spec.abs() ** 2).T @ self.chroma_fb  # (stft frames, 12)
                feats = torch.log1p(100 * chroma / chroma.amax(1, keepdim=True).clamp(min=1e-10))[:frames]
            else:
                mel = self.frontend(wav[None], torch.tensor([len(wav)])).mel[0].T  # (100 Hz frames, 128) dB
                mel = mel[: frames * 4]
                if self.kind == "mel":
                    feats = mel.reshape(-1, 4, mel.shape[1]).mean(1)
                else:
                    flux = torch.diff(mel, dim=0, prepend=mel[:1]).clamp_min(0)  # (100 Hz, 128)
                    flux = flux.reshape(flux.shape[0], 8, 16).mean(2)  # 8 band groups
                    feats = flux.reshape(-1, 4 * 8)
            out.append(feats[:, None, :].numpy().astype(np.float32))
        return out


class MuQFrameExtractor:
    """Every hidden state of a MuQ-like model, frame by frame (25 Hz)."""

    def __init__(self, model: torch.nn.Module, name: str) -> None:
        from muqkit.eval.features import weights_fingerprint

        self.model = model.eval()
        depth = getattr(getattr(model, "config", None), "encoder_depth", None)
        if depth is None:
            out = self.model(torch.zeros(1, SAMPLE_RATE), lengths=torch.tensor([SAMPLE_RATE]))
            depth = len(out.hidden_states) - 1
        self.num_layers = depth + 1
        self.id = f"frames-{name}-{weights_fingerprint(model)}"

    @torch.no_grad()
    def embed_frames(self, wavs: Sequence[torch.Tensor]) -> list[np.ndarray]:
        from muqkit.eval.features import pad_batch

        batch, lengths = pad_batch(wavs)
        out = self.model(batch, lengths=lengths, output_hidden_states=True)
        states = torch.stack([h.float() for h in out.hidden_states], dim=2)  # (B, T, L, D)
        return [states[i, : int(n)].numpy().astype(np.float32) for i, n in enumerate(out.lengths)]


FRAME_ALIASES = {"mel": "mel", "chroma": "chroma", "onset": "onset", "rhythm": "onset"}
REFERENCES: dict[str, str] = {"madmom-beats": "beat", "madmom-chords": "chord"}


def has_frame_extractor(spec: str) -> bool:
    """Whether a model spec has frame features (or is an external frame reference)."""
    return spec in FRAME_ALIASES or spec in REFERENCES or spec.partition(":")[0] in ("random", "muq")


def make_frame_extractor(spec: str) -> FrameExtractor:
    """Build a frame extractor: ``mel`` | ``chroma`` | ``onset`` (``rhythm``) | ``random:PRESET`` | ``muq:PATH``."""
    if spec in FRAME_ALIASES:
        return HandcraftedFrameExtractor(FRAME_ALIASES[spec])
    kind, _, arg = spec.partition(":")
    if kind in ("random", "muq") and arg:
        from muqkit import MuQ

        if kind == "random":
            return MuQFrameExtractor(MuQ.from_preset(arg, seed=0), f"random-{arg}")
        name = "muq-" + "".join(c if c.isalnum() else "-" for c in arg)[-40:]
        return MuQFrameExtractor(MuQ.from_pretrained(arg), name)
    raise ValueError(f"no frame features for {spec!r}: use mel, chroma, onset, rhythm, random:PRESET or muq:PATH")


@dataclass(frozen=True)
class FrameFeatures:
    """Frame features of a manifest: item ``ids[k]`` owns rows ``offsets[k]:offsets[k + 1]`` of ``values``.

    Attributes:
        ids: item ids.
        values: (total frames, layers, dim) float32.
        offsets: (items + 1,) int64.
        model_id: the extractor's id.
        seconds: time spent embedding (0 when cached).
    """

    ids: tuple[str, ...]
    values: np.ndarray
    offsets: np.ndarray
    model_id: str
    seconds: float = 0.0

    def index(self) -> dict[str, int]:
        return {i: k for k, i in enumerate(self.ids)}


def embed_frames(
    records: Sequence[AudioRecord],
    root: str | os.PathLike[str],
    extractor: FrameExtractor,
    *,
    cache_dir: str | os.PathLike[str] | None,
    batch_size: int = 8,
) -> FrameFeatures:
    """Frame features of every record, cached as ``<cache_dir>/<model id>/<key>.safetensors`` (float16)."""
    from safetensors.numpy import load_file, save_file

    from muqkit.atomic import atomic_path
    from muqkit.eval.cache import cache_key, read_record

    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / extractor.id / f"{cache_key(extractor.id, None, records)}.safetensors"
        if path.is_file():
            data = load_file(str(path))
            ids = tuple(json.loads(data["ids_json"].tobytes().decode()))
            logger.info("frame features of %d items from %s", len(ids), path)
            return FrameFeatures(ids, data["features"].astype(np.float32), data["offsets"], extractor.id)
    t0 = time.perf_counter()
    order = sorted(range(len(records)), key=lambda i: (records[i].num_samples, records[i].id))
    values: list[np.ndarray | None] = [None] * len(records)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        feats = extractor.embed_frames([read_record(records[i], Path(root)) for i in chunk])
        for i, f in zip(chunk, feats, strict=True):
            values[i] = f
        if (start // batch_size) % 20 == 0:
            logger.info("%s: %d/%d items embedded", extractor.id, start + len(chunk), len(records))
    arrays = [v for v in values if v is not None]
    offsets = np.concatenate([[0], np.cumsum([len(v) for v in arrays])]).astype(np.int64)
    stacked = np.concatenate(arrays).astype(np.float32)
    ids = tuple(r.id for r in records)
    if path is not None:
        with atomic_path(path, suffix=".safetensors") as tmp:
            ids_bytes = np.frombuffer(json.dumps(ids).encode(), dtype=np.uint8)
            save_file(
                {"features": stacked.astype(np.float16), "offsets": offsets, "ids_json": ids_bytes.copy()}, str(tmp)
            )
    return FrameFeatures(ids, stacked, offsets, extractor.id, time.perf_counter() - t0)


# --------------------------------------------------------------------------------------------------
# probes


@dataclass(frozen=True)
class FrameProbeConfig:
    """Training settings of a frame probe.

    Attributes:
        head: ``"linear"`` or ``"mlp"``.
        hidden: MLP hidden units.
        dropout: MLP dropout.
        lr: Adam learning rate.
        batch_size: frames per step.
        max_epochs: upper bound on epochs over the training frames.
        patience: epochs without a lower validation loss before stopping.
        dbn: decode beats and downbeats with madmom's DBN instead of peak picking.
    """

    head: str = "linear"
    hidden: int = 512
    dropout: float = 0.2
    lr: float = 1e-3
    batch_size: int = 1024
    max_epochs: int = 20
    patience: int = 3
    dbn: bool = False

    def __post_init__(self) -> None:
        from muqkit.eval.probes import HEADS

        if self.head not in HEADS:
            raise ValueError(f"FrameProbeConfig.head must be one of {HEADS}, got {self.head!r}")
        if self.hidden < 1 or not 0 <= self.dropout < 1 or self.lr <= 0 or self.batch_size < 1:
            raise ValueError("FrameProbeConfig: hidden >= 1, dropout in [0, 1), lr > 0 and batch_size >= 1 required")
        if self.max_epochs < 1 or self.patience < 1:
            raise ValueError("FrameProbeConfig: max_epochs and patience must be >= 1")


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


def _widen(y: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Event targets with 0.5 on the frames next to each event (within an item)."""
    out = y.copy()
    for a, b in zip(offsets[:-1], offsets[1:], strict=True):
        seg, w = y[a:b], out[a:b]
        w[1:] = np.maximum(w[1:], 0.5 * seg[:-1])
        w[:-1] = np.maximum(w[:-1], 0.5 * seg[1:])
    return out


@dataclass(frozen=True)
class FrameProbeResult:
    """One trained frame probe (fields as :class:`muqkit.eval.probes.ProbeResult`, plus the peak threshold)."""

    val: float
    test: dict[str, float]
    epochs: int
    best_epoch: int
    layer_weights: tuple[float, ...] | None = None
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
    from muqkit.eval.probes import ProbeConfig, ProbeHead, torch_threads

    with torch_threads(1):
        gen = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        train = data["train"]
        mean = train.x.mean(0, keepdims=True)
        std = train.x.std(0, keepdims=True) + 1e-5
        xs = {s: torch.from_numpy(((d.x - mean) / std).astype(np.float32)) for s, d in data.items()}
        events = spec.kind == "events"
        if events:
            y_train = torch.from_numpy(_widen(train.y, train.offsets))
            y_valid = torch.from_numpy(data["valid"].y)
            loss_fn: nn.Module = nn.BCEWithLogitsLoss()
        else:
            y_train = torch.from_numpy(train.y).long()
            y_valid = torch.from_numpy(data["valid"].y).long()
            loss_fn = nn.CrossEntropyLoss(ignore_index=IGNORE)
        head_config = ProbeConfig(head=config.head, hidden=config.hidden, dropout=config.dropout)
        model = ProbeHead(xs["train"].shape[1], xs["train"].shape[2], spec.num_outputs, head_config)
        optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
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


# --------------------------------------------------------------------------------------------------
# the suite


def _over_seeds(
    spec: FrameTaskSpec, data: Mapping[str, FrameSplit], config: FrameProbeConfig, seeds: Sequence[int]
) -> tuple[dict[str, float], dict[str, float], float, list[FrameProbeResult]]:
    runs = [train_frame_probe(spec, data, config=config, seed=s) for s in seeds]
    keys = list(runs[0].test)
    mean = {k: float(np.mean([r.test[k] for r in runs])) for k in keys}
    std = {k: float(np.std([r.test[k] for r in runs])) for k in keys}
    return mean, std, float(np.mean([r.val for r in runs])), runs


def probe_frame_task(
    model: str,
    task: FrameTaskData,
    feats: FrameFeatures,
    *,
    heads: Sequence[str],
    seeds: Sequence[int],
    layer_modes: Sequence[str],
    config: FrameProbeConfig,
) -> list:
    """Rows (:class:`muqkit.eval.suite.ResultRow`) of one model on one frame task, as the clip suite makes them."""
    from muqkit.eval.suite import ResultRow

    rows = []
    num_layers = feats.values.shape[1]
    spec = task.spec
    for head in heads:
        cfg = replace(config, head=head)
        if num_layers == 1:
            t = time.perf_counter()
            mean, std, val, _ = _over_seeds(spec, split_arrays(task, feats), cfg, seeds)
            rows.append(
                ResultRow(model, task.name, head, "-", spec.metric, mean[spec.metric], std[spec.metric], val, mean,
                          probe_seconds=time.perf_counter() - t)
            )  # fmt: skip
            continue
        if "sweep" in layer_modes:
            t = time.perf_counter()
            sweep = []
            for layer in range(num_layers):
                mean, std, val, _ = _over_seeds(spec, split_arrays(task, feats, [layer]), cfg, seeds)
                sweep.append((layer, mean, std, val))
            best_layer, mean, std, val = max(sweep, key=lambda p: (np.nan_to_num(p[3], nan=-np.inf), -p[0]))
            per_layer = tuple((lay, v, m[spec.metric], s[spec.metric]) for lay, m, s, v in sweep)
            rows.append(
                ResultRow(model, task.name, head, f"best:{best_layer}", spec.metric, mean[spec.metric],
                          std[spec.metric], val, mean, per_layer=per_layer, probe_seconds=time.perf_counter() - t)
            )  # fmt: skip
        if "last" in layer_modes:
            t = time.perf_counter()
            mean, std, val, _ = _over_seeds(spec, split_arrays(task, feats, [num_layers - 1]), cfg, seeds)
            rows.append(
                ResultRow(model, task.name, head, f"last:{num_layers - 1}", spec.metric, mean[spec.metric],
                          std[spec.metric], val, mean, probe_seconds=time.perf_counter() - t)
            )  # fmt: skip
        if "weighted" in layer_modes:
            t = time.perf_counter()
            mean, std, val, runs = _over_seeds(spec, split_arrays(task, feats), cfg, seeds)
            weights = tuple(float(w) for w in np.mean([r.layer_weights or () for r in runs], axis=0))
            rows.append(
                ResultRow(model, task.name, head, "weighted", spec.metric, mean[spec.metric], std[spec.metric], val,
                          mean, layer_weights=weights, probe_seconds=time.perf_counter() - t)
            )  # fmt: skip
    return rows


def madmom_reference(name: str, task: FrameTaskData, split: str = "test") -> dict[str, float]:
    """Scores of madmom's own beat or chord model on a split (no probe): ``madmom-beats`` or ``madmom-chords``."""
    import soxr

    from muqkit.eval.cache import read_record
    from muqkit.eval.features import import_madmom

    if REFERENCES.get(name) != task.spec.name:
        raise ValueError(f"{name} is a reference for the {REFERENCES.get(name)} task, not {task.name}")
    madmom = import_madmom()
    records = task.records[split]
    if name == "madmom-beats":
        from madmom.features.downbeats import DBNDownBeatTrackingProcessor, RNNDownBeatProcessor

        rnn, dbn = RNNDownBeatProcessor(), DBNDownBeatTrackingProcessor(beats_per_bar=[2, 3, 4], fps=100)
    else:
        from madmom.features.chords import CNNChordFeatureProcessor, CRFChordRecognitionProcessor

        cnn, crf = CNNChordFeatureProcessor(), CRFChordRecognitionProcessor()
    beat_f, down_f = [], []
    sums = {"majmin": [0.0, 0.0], "mirex": [0.0, 0.0]}
    start = time.perf_counter()
    for i, r in enumerate(records, 1):
        if i % 10 == 0 or i == len(records):
            logger.info("%s: %d/%d %s clips (%.0f s)", name, i, len(records), split, time.perf_counter() - start)
        audio = soxr.resample(read_record(r, task.root).numpy().astype(np.float32), SAMPLE_RATE, 44100)
        signal = madmom.audio.Signal(audio, sample_rate=44100, num_channels=1)
        labels = task.labels[r.id]
        if name == "madmom-beats":
            found = np.asarray(dbn(rnn(signal)))
            beats = found[:, 0] if found.size else np.zeros(0)
            downs = found[found[:, 1] == 1, 0] if found.size else np.zeros(0)
            beat_f.append(fm.beat_f_measure([t for t, _ in labels.beats], beats))
            down_f.append(fm.beat_f_measure(labels.downbeats, downs))
        else:
            segments = [(float(a), float(b), str(c)) for a, b, c in crf(cnn(signal))]
            for k, (right, total) in fm.chord_overlap(labels.chords, segments).items():
                sums[k][0] += right
                sums[k][1] += total
    if name == "madmom-beats":
        return {"beat_f": float(np.mean(beat_f)), "downbeat_f": float(np.mean(down_f))}
    return {k: v[0] / max(v[1], 1e-9) for k, v in sums.items()}


def run_frame_suite(
    models: Sequence[str],
    tasks: Sequence[FrameTaskData],
    *,
    heads: Sequence[str] = ("linear", "mlp"),
    seeds: Sequence[int] = (0, 1, 2),
    layer_modes: Sequence[str] = ("sweep", "weighted"),
    config: FrameProbeConfig | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    batch_size: int = 8,
    extractor_factory: Callable[[str], FrameExtractor] = make_frame_extractor,
) -> list:
    """Embed every frame task's clips with every model (cached) and probe; madmom references score alone."""
    from muqkit.eval.suite import ResultRow

    config = config or FrameProbeConfig()
    rows: list = []
    for model in models:
        if model in REFERENCES:
            for task in tasks:
                if REFERENCES[model] == task.spec.name:
                    t = time.perf_counter()
                    scores = madmom_reference(model, task)
                    rows.append(
                        ResultRow(model, task.name, "zero-shot", "-", task.metric, scores[task.metric], 0.0,
                                  float("nan"), scores, probe_seconds=time.perf_counter() - t)
                    )  # fmt: skip
            continue
        if not has_frame_extractor(model):
            logger.info("%s has no frame features; skipped on frame tasks", model)
            continue
        extractor = None
        for task in tasks:
            extractor = extractor or extractor_factory(model)
            feats = embed_frames(
                sorted(task.manifest, key=lambda r: r.id), task.root, extractor, cache_dir=cache_dir,
                batch_size=batch_size,
            )  # fmt: skip
            task_rows = probe_frame_task(
                model, task, feats, heads=heads, seeds=seeds, layer_modes=layer_modes, config=config
            )
            if task_rows:
                task_rows[0] = replace(task_rows[0], embed_seconds=feats.seconds)
            for row in task_rows:
                logger.info("%-14s %-8s %-9s %-9s %s %.4f ± %.4f", model, task.name, row.head, row.layer,
                            row.metric, row.mean, row.std)  # fmt: skip
            rows.extend(task_rows)
    return rows


__all__ = [
    "FRAME_TASKS",
    "FrameExtractor",
    "FrameFeatures",
    "FrameProbeConfig",
    "FrameProbeResult",
    "FrameSplit",
    "FrameTaskData",
    "FrameTaskSpec",
    "HandcraftedFrameExtractor",
    "MuQFrameExtractor",
    "embed_frames",
    "has_frame_extractor",
    "load_frame_task",
    "make_frame_extractor",
    "madmom_reference",
    "probe_frame_task",
    "run_frame_suite",
    "score_outputs",
    "split_arrays",
    "train_frame_probe",
]
