"""Typed audio manifests stored as JSON lines, in the spirit of lhotse's ``RecordingSet``.

One line of a manifest is one :class:`AudioRecord`: an audio file (path relative to the manifest's
folder), its duration and sample rate, the split it belongs to, the *group* that must never straddle
two splits (a score, a tune, a recording, an instrument) and free-form labels. Manifests are read
lazily, written atomically and hashed over their content (not their paths on disk), so a feature
cache keyed by the hash survives moving the corpus.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from muqkit.atomic import atomic_path

SPLITS: tuple[str, ...] = ("train", "valid", "test")


@dataclass(frozen=True)
class AudioRecord:
    """One audio item of a manifest.

    Attributes:
        id: unique, stable identifier (used as the cache key of the item's features).
        path: audio file, relative to the manifest's folder (or absolute for foreign data sets).
        duration: seconds.
        sample_rate: Hz.
        num_samples: samples per channel.
        split: ``"train"``, ``"valid"``, ``"test"`` or ``"pool"`` (unlabeled pretraining audio).
        group: items of one group (score, tune, recording, instrument) share a split.
        source: which builder or adapter produced the item (``"scores"``, ``"notes"``, ``"game"``, ...).
        labels: task labels and metadata (JSON values only).
    """

    id: str
    path: str
    duration: float
    sample_rate: int
    num_samples: int
    split: str
    group: str
    source: str
    labels: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.id:
            raise ValueError("AudioRecord.id must be a non-empty string")
        if self.split not in (*SPLITS, "pool"):
            raise ValueError(f"AudioRecord.split must be one of {(*SPLITS, 'pool')}, got {self.split!r}")
        if self.sample_rate <= 0 or self.num_samples < 0 or self.duration < 0:
            raise ValueError(f"AudioRecord {self.id}: invalid sample_rate/num_samples/duration")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (labels copied)."""
        out = asdict(self)
        out["labels"] = dict(self.labels)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AudioRecord:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        return cls(**{**data, "labels": dict(data.get("labels", {}))})

    def resolve(self, root: str | os.PathLike[str]) -> Path:
        """Absolute path of the audio file for a manifest stored in ``root``."""
        path = Path(self.path)
        return path if path.is_absolute() else Path(root) / path


def write_manifest(path: str | os.PathLike[str], records: Iterable[AudioRecord]) -> int:
    """Write records as JSON lines (atomically: a temporary file renamed into place).

    Returns:
        Number of records written.
    """
    count = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record.to_dict(), sort_keys=True, ensure_ascii=False) + "\n")
            count += 1
    return count


def iter_manifest(path: str | os.PathLike[str]) -> Iterator[AudioRecord]:
    """Lazily read a manifest written by :func:`write_manifest`."""
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield AudioRecord.from_dict(json.loads(line))
            except (json.JSONDecodeError, TypeError, ValueError) as exc:
                raise ValueError(f"{path}:{line_no}: not an AudioRecord ({exc})") from exc


def read_manifest(path: str | os.PathLike[str]) -> list[AudioRecord]:
    """Read a whole manifest into a list."""
    return list(iter_manifest(path))


def manifest_root(manifest: str | os.PathLike[str]) -> Path:
    """The folder a manifest's relative paths start from: its own folder, or the corpus folder above a
    ``manifests/`` folder (the layout :func:`muqkit.data.corpus.build_corpus` writes)."""
    folder = Path(manifest).resolve().parent
    first = next(iter_manifest(manifest), None)
    if first is None or Path(first.path).is_absolute() or (folder / first.path).exists():
        return folder
    if (folder.parent / first.path).exists():
        return folder.parent
    return folder


def manifest_records(
    path: str | os.PathLike[str], *, splits: Sequence[str] | None = None
) -> list[tuple[AudioRecord, Path]]:
    """The records of one manifest with their audio paths (resolved from :func:`manifest_root`), keeping
    ``splits`` (``None``: all)."""
    root = manifest_root(path)
    return [(r, r.resolve(root)) for r in read_manifest(path) if splits is None or r.split in splits]


def manifest_hash(records: Iterable[AudioRecord]) -> str:
    """SHA-256 (hex, 16 chars) of the records' content, independent of where the corpus lives."""
    h = hashlib.sha256()
    for record in records:
        h.update(json.dumps(record.to_dict(), sort_keys=True).encode())
        h.update(b"\n")
    return h.hexdigest()[:16]


def assign_splits(
    groups: Sequence[str],
    *,
    seed: int,
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
) -> dict[str, str]:
    """Deterministically assign whole groups to train/valid/test.

    The sorted, de-duplicated groups are shuffled with ``seed`` and cut at the given fractions, so
    every split gets its share (rounded) and, with three or more groups, at least one group each.

    Args:
        groups: group names (duplicates allowed).
        seed: shuffling seed.
        fractions: train, valid and test fractions (sum to 1).

    Returns:
        Mapping from group to split name.
    """
    if len(fractions) != 3 or abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) < 0:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
    unique = sorted(set(groups))
    random.Random(seed).shuffle(unique)
    n = len(unique)
    n_valid = round(n * fractions[1])
    n_test = round(n * fractions[2])
    if n >= 3:
        n_valid = max(n_valid, 1) if fractions[1] > 0 else 0
        n_test = max(n_test, 1) if fractions[2] > 0 else 0
    n_train = n - n_valid - n_test
    out: dict[str, str] = {}
    for i, group in enumerate(unique):
        out[group] = "train" if i < n_train else "valid" if i < n_train + n_valid else "test"
    return out


def without_groups_of(
    records: Iterable[AudioRecord],
    manifests: Sequence[str | os.PathLike[str]],
    *,
    splits: Sequence[str] | None = None,
) -> list[AudioRecord]:
    """``records`` less those whose group appears in ``manifests`` (records of ``splits`` only; ``None``:
    every split), e.g. the audio a backbone was pretrained on, left out of an evaluation."""
    seen = {r.group for m in manifests for r in iter_manifest(m) if splits is None or r.split in splits}
    return [r for r in records if r.group not in seen]


def check_no_leakage(records: Iterable[AudioRecord]) -> None:
    """Raise ``ValueError`` if one group appears in two splits."""
    seen: dict[str, str] = {}
    for record in records:
        prev = seen.setdefault(record.group, record.split)
        if prev != record.split:
            raise ValueError(f"group {record.group!r} is in both {prev!r} and {record.split!r}")
