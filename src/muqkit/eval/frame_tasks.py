"""Frame-level tasks of the corpus: what each task predicts per 25 Hz frame and how it is scored.

Tasks (:data:`FRAME_TASKS`) read the frame labels of a format-3 corpus (:mod:`muqkit.data.labels`):

- ``beat``: beat and downbeat activations (two sigmoid outputs); F-measure at 70 ms; primary ``beat_f``, also
  ``downbeat_f``.
- ``chord``: 25 classes (12 major, 12 minor, no chord) on the part-songs; ``majmin`` and ``mirex`` weighted
  overlap against the full reference labels.
- ``melody``: 89 classes (unvoiced, MIDI 21-108) on the single-part tunes; overall accuracy (``oa``), raw pitch
  (``rpa``) and raw chroma (``rca``) accuracy.
- ``onset``: one sigmoid output; F-measure at 50 ms.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from muqkit.audio.mel import FRAME_RATE as _MUQ_FRAME_RATE
from muqkit.data.corpus.format import require_frame_labels
from muqkit.data.labels import NUM_MELODY_CLASSES, ScoreLabels, frame_targets, labels_path, read_labels
from muqkit.data.manifest import SPLITS, AudioRecord, read_manifest

FRAME_RATE = float(_MUQ_FRAME_RATE)


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


__all__ = ["FRAME_RATE", "FRAME_TASKS", "FrameTaskData", "FrameTaskSpec", "load_frame_task"]
