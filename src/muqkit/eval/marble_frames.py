"""MARBLE v2's frame-level tasks from local copies in its layout: Chords1217 and GTZAN beat tracking.

Each split is a JSONL file (``<root>/data/<NAME>/<NAME>.{train,val,test}.jsonl``, as for the clip tasks of
:mod:`muqkit.eval.marble`) whose ``label`` holds the annotations of the whole recording::

    Chords1217:        {"audio_path": ..., "label": [{"start_time": 0.0, "end_time": 1.25, "chord_str": "E:maj"}, ...]}
    GTZANBeatTracking: {"audio_path": ..., "label": {"beat": [0.43, 0.90, ...], "downbeat": [0.43, ...]}}

They load as :class:`muqkit.eval.frame_tasks.FrameTaskData` (tasks ``chord`` and ``beat``), so the frame probes,
metrics and ``muqkit finetune`` run on them unchanged. Recordings are embedded whole (MARBLE cuts them into
clips first); chord symbols outside the 25 classes are kept in mir_eval's syntax for the ``mirex`` score.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from muqkit.data.labels import ScoreLabels
from muqkit.data.manifest import SPLITS, AudioRecord
from muqkit.eval.frame_tasks import FRAME_TASKS, FrameTaskData
from muqkit.eval.marble import MarbleAdapter, read_marble_records


@dataclass(frozen=True)
class MarbleFrameAdapter:
    """How to read one MARBLE frame task.

    Attributes:
        task: registry name.
        dataset: MARBLE's folder / file prefix.
        frame_task: the :data:`muqkit.eval.frame_tasks.FRAME_TASKS` entry it feeds (``chord`` or ``beat``).
        alt_datasets: other prefixes of the same data.
    """

    task: str
    dataset: str
    frame_task: str
    alt_datasets: tuple[str, ...] = ()

    def labels(self, item_id: str, duration: float, label: Any) -> ScoreLabels:
        if self.frame_task == "chord":
            chords = tuple(
                (float(seg["start_time"]), float(seg["end_time"]), str(seg["chord_str"]))
                for seg in sorted(label, key=lambda s: float(s["start_time"]))
            )
            return ScoreLabels(item_id, duration, (), chords, (), ())
        downbeats = {round(float(t), 6) for t in label.get("downbeat", [])}
        beats = tuple((float(t), 1 if round(float(t), 6) in downbeats else 2) for t in sorted(label.get("beat", [])))
        return ScoreLabels(item_id, duration, beats, (), (), ())


MARBLE_FRAME_ADAPTERS: dict[str, MarbleFrameAdapter] = {
    a.task: a
    for a in (
        MarbleFrameAdapter("chords1217", "Chords1217", "chord"),
        MarbleFrameAdapter("gtzan-beat", "GTZANBeatTracking", "beat", alt_datasets=("GTZANBeat",)),
    )
}


def load_marble_frame_task(task: str, root: str | os.PathLike[str]) -> FrameTaskData:
    """Read a MARBLE frame task (``chords1217``, ``gtzan-beat``) from a local MARBLE root.

    Raises:
        FileNotFoundError: a split's metadata or an audio file is missing.
    """
    if task not in MARBLE_FRAME_ADAPTERS:
        raise ValueError(f"unknown MARBLE frame task {task!r}; known: {sorted(MARBLE_FRAME_ADAPTERS)}")
    adapter = MARBLE_FRAME_ADAPTERS[task]
    finder = MarbleAdapter(task, adapter.dataset, "multiclass", alt_datasets=adapter.alt_datasets)
    root = Path(root)
    records: dict[str, list[AudioRecord]] = {s: [] for s in SPLITS}
    labels: dict[str, ScoreLabels] = {}
    for record, entry in read_marble_records(finder, root):
        records[record.split].append(record)
        labels[record.id] = adapter.labels(record.id, record.duration, entry["label"])
    for split in SPLITS:
        if not records[split]:
            raise ValueError(f"{task}: the {split} split is empty")
    manifest = tuple(r for s in SPLITS for r in records[s])
    spec = FRAME_TASKS[adapter.frame_task]
    return FrameTaskData(spec, root, {s: tuple(v) for s, v in records.items()}, labels, manifest, title=task)


__all__ = ["MARBLE_FRAME_ADAPTERS", "MarbleFrameAdapter", "load_marble_frame_task"]
