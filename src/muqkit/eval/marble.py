"""Adapters for local copies of MARBLE's datasets, in MARBLE's JSONL metadata layout.

MARBLE (v2) describes each split of a data set with a JSON-lines file, one audio file per line::

    {"audio_path": "data/GTZAN/genres/blues/blues.00012.wav", "label": "blues",
     "duration": 30.01, "sample_rate": 22050, "num_samples": 661794, "bit_depth": 16, "channels": 1}

stored as ``<root>/data/<NAME>/<NAME>.{train,val,test}.jsonl`` (``<root>/<NAME>.<split>.jsonl`` is also
accepted). ``audio_path`` is relative to the MARBLE root, to the JSONL's folder, or absolute. Labels:
GTZAN a genre name, MTT a list of tag names or a 50-dim multi-hot list, GS a key in mir_eval spelling
(``"Db major"``), EMO ``[arousal, valence]``, NSynth and VocalSet a class name or number (or a dict of
fields, read with the adapter's ``label_field``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from muqkit.data.manifest import AudioRecord
from muqkit.eval.tasks import KINDS, TaskData, encode_task

GTZAN_GENRES: tuple[str, ...] = (
    "blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock",
)  # fmt: skip
SPLIT_FILES: dict[str, tuple[str, ...]] = {
    "train": ("train",),
    "valid": ("val", "valid", "validation"),
    "test": ("test",),
}


@dataclass(frozen=True)
class MarbleAdapter:
    """How to read one MARBLE task.

    Attributes:
        task: registry name (``gtzan``, ``gs-key``, ...).
        dataset: MARBLE's folder / file prefix (``GTZAN``, ``GS``, ...).
        kind: task kind (see :data:`muqkit.eval.tasks.KINDS`).
        classes: fixed class names, or ``None`` to take those of the training split.
        label_field: when a record's ``label`` is a dict, or the record has this key, read it.
        alt_datasets: other prefixes MARBLE releases have used for the same data.
        folders: other folders under ``<root>/data`` that may hold the files (HookTheory's tasks share one).
        label_map: raw label (a list is joined with ``_``) -> class name; labels outside it are dropped.
        major_minor_only: keep only major and minor keys (drops modal keys such as ``"A dorian"``).
    """

    task: str
    dataset: str
    kind: str
    classes: tuple[str, ...] | None = None
    label_field: str | None = None
    alt_datasets: tuple[str, ...] = ()
    folders: tuple[str, ...] = ()
    label_map: tuple[tuple[str, str], ...] = ()
    major_minor_only: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")

    def split_file(self, root: Path, split: str) -> Path:
        """The JSONL of a split under a MARBLE root (several layouts are tried)."""
        tried = []
        for name in (self.dataset, *self.alt_datasets):
            for alias in SPLIT_FILES[split]:
                for folder in (root / "data" / name, root / name, *(root / "data" / f for f in self.folders), root):
                    candidate = folder / f"{name}.{alias}.jsonl"
                    tried.append(candidate)
                    if candidate.is_file():
                        return candidate
        raise FileNotFoundError(f"{self.task}: no {split} metadata under {root}; tried e.g. {tried[0]} and {tried[-1]}")

    def label(self, entry: dict[str, Any]) -> Any:
        if self.label_field is not None and self.label_field in entry:
            return entry[self.label_field]
        value = entry["label"]
        if isinstance(value, dict) and self.label_field is not None:
            return value[self.label_field]
        if self.label_map:
            key = "_".join(value) if isinstance(value, list) else str(value)
            return dict(self.label_map).get(key)
        if self.major_minor_only:
            from muqkit.eval.metrics import key_index

            try:
                key_index(str(value))
            except ValueError:
                return None
        return value


# MARBLE v2's HookTheory structure classes (a list of labels is joined with "_" first)
HOOKTHEORY_SECTIONS: tuple[tuple[str, str], ...] = (
    ("intro", "intro"), ("verse", "verse"), ("pre-chorus", "pre-chorus"), ("chorus", "chorus"),
    ("bridge", "bridge"), ("outro", "outro"), ("instrumental", "inst"), ("solo", "inst"),
    ("pre-chorus_chorus", "chorus"), ("verse_pre-chorus", "verse"), ("intro_verse", "verse"),
    ("intro_chorus", "chorus"),
)  # fmt: skip


MARBLE_ADAPTERS: dict[str, MarbleAdapter] = {
    a.task: a
    for a in (
        MarbleAdapter("gtzan", "GTZAN", "multiclass", GTZAN_GENRES, alt_datasets=("GTZANGenre",)),
        MarbleAdapter("mtt", "MTT", "multilabel", alt_datasets=("MagnaTagATune",)),
        MarbleAdapter("gs-key", "GS", "key", alt_datasets=("GiantSteps",)),
        MarbleAdapter("emo", "EMO", "regression", alt_datasets=("EMOMusic",)),
        MarbleAdapter(
            "nsynth-instrument", "NSynth", "multiclass", label_field="instrument", alt_datasets=("NSynthI",)
        ),  # fmt: skip
        MarbleAdapter("nsynth-pitch", "NSynth", "multiclass", label_field="pitch", alt_datasets=("NSynthP",)),
        MarbleAdapter(
            "vocalset-singer", "VocalSet", "multiclass", label_field="singer", alt_datasets=("VocalSetS",)
        ),  # fmt: skip
        MarbleAdapter(
            "vocalset-technique", "VocalSet", "multiclass", label_field="technique", alt_datasets=("VocalSetT",)
        ),  # fmt: skip
        MarbleAdapter("hooktheory-key", "HookTheoryKey", "key", folders=("HookTheory",), major_minor_only=True),
        MarbleAdapter(
            "hooktheory-structure", "HookTheoryStructure", "multiclass",
            ("intro", "verse", "pre-chorus", "chorus", "bridge", "outro", "inst"),
            folders=("HookTheory",), label_map=HOOKTHEORY_SECTIONS,
        ),  # fmt: skip
    )
}


def _resolve(audio_path: str, root: Path, jsonl: Path) -> Path:
    path = Path(audio_path)
    if path.is_absolute():
        return path
    for base in (root, jsonl.parent):
        if (base / path).is_file():
            return (base / path).resolve()
    return (root / path).resolve()


def read_marble_records(adapter: MarbleAdapter, root: Path) -> Iterator[tuple[AudioRecord, dict[str, Any]]]:
    """Every item of a MARBLE task's train, valid and test JSONL files, as a record and its raw entry.

    The record has no labels (each task reads its own from the entry); its id is ``DATASET:audio_path``.

    Raises:
        FileNotFoundError: a split's metadata or an audio file is missing.
    """
    for split in ("train", "valid", "test"):
        jsonl = adapter.split_file(root, split)
        with open(jsonl, encoding="utf-8") as f:
            for line_no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                entry = json.loads(line)
                path = _resolve(entry["audio_path"], root, jsonl)
                if not path.is_file():
                    raise FileNotFoundError(f"{jsonl}:{line_no}: audio file {entry['audio_path']} not found")
                sample_rate = int(entry.get("sample_rate", 0)) or 1
                num_samples = int(entry.get("num_samples", round(float(entry.get("duration", 0)) * sample_rate)))
                record = AudioRecord(
                    id=f"{adapter.dataset}:{entry['audio_path']}",
                    path=str(path),
                    duration=float(entry.get("duration", num_samples / sample_rate)),
                    sample_rate=sample_rate,
                    num_samples=num_samples,
                    split=split,
                    group=str(entry["audio_path"]),
                    source=f"marble-{adapter.dataset}",
                )
                yield record, entry


def load_marble_task(task: str, root: str | os.PathLike[str]) -> TaskData:
    """Read a MARBLE task from a local MARBLE root into a :class:`TaskData`.

    Args:
        task: a name of :data:`MARBLE_ADAPTERS`.
        root: the folder holding ``data/<NAME>/<NAME>.<split>.jsonl``.

    Raises:
        FileNotFoundError: a split's metadata or an audio file is missing.
    """
    if task not in MARBLE_ADAPTERS:
        raise ValueError(f"unknown MARBLE task {task!r}; known: {sorted(MARBLE_ADAPTERS)}")
    adapter = MARBLE_ADAPTERS[task]
    root = Path(root)
    items: list[tuple[AudioRecord, Any]] = []
    for record, entry in read_marble_records(adapter, root):
        label = adapter.label(entry)
        if label is None:  # outside the task's classes (a modal key, an unlisted section)
            continue
        items.append((replace(record, labels={"label": label}), label))
    return encode_task(task, adapter.kind, root, items, classes=adapter.classes)
