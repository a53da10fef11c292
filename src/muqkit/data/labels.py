"""Exact time-aligned labels of rendered scores: beats and downbeats, chords, melody and note onsets.

The corpus renders every score itself, so it knows where each note, beat and bar falls in the audio.
For each rendered score clip the builder writes a sidecar ``labels/scores/<id>.json``
(:class:`ScoreLabels`) holding events and segments in seconds:

- ``beats``: ``(time, position in bar)`` pairs, position 1 on a downbeat (madmom's convention). Beats
  follow the felt beat of :func:`muqkit.data.theory.beat_quarters` (a dotted quarter in 6/8, a half note
  in a reel) and the bars of the score, so a pickup (anacrusis) starts on a later position of a
  virtual first bar and a metre change changes the bar length.
- ``chords`` (scores with more than one part): the score's vertical sonorities (what music21's
  ``chordify`` computes) named in mir_eval's syntax (``"D:min7/b3"``), ``"N"`` where nothing sounds and
  ``"X"`` where the sonority is not a known chord (a passing tone over a triad, an open fifth that does
  not continue the previous chord). mir_eval's metrics skip ``X``.
- ``melody`` (single-part scores: the folk and dance tunes): ``(start, end, midi pitch)`` of the
  sounding top line, the transposition applied; unvoiced elsewhere.
- ``onsets``: every distinct note onset.

:func:`frame_targets` turns a sidecar into per-frame arrays at any frame rate (25 Hz for MuQ). The 25-class
chord vocabulary (:data:`MAJMIN_CLASSES`) is 12 major, 12 minor and ``N``; chords whose triad is neither
major nor minor (dim, aug, sus) map to :data:`IGNORE`, as mir_eval's ``majmin`` comparison skips them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from muqkit.atomic import atomic_path
from muqkit.data.theory import (
    IGNORE,
    MAJMIN_CLASSES,
    NO_CHORD,
    Bar,
    bar_quarters,
    beat_positions,
    chord_segments,
    majmin_index,
    melody_segments,
    name_chord,
)

LABELS_VERSION = 1
#: Melody classes: 0 unvoiced, then MIDI pitches 21 (A0) to 108 (C8).
MELODY_LOW, MELODY_HIGH = 21, 108
NUM_MELODY_CLASSES = MELODY_HIGH - MELODY_LOW + 2


@dataclass(frozen=True)
class ScoreLabels:
    """Time-aligned labels of one rendered clip (seconds from the clip's start).

    Attributes:
        id: the item's id.
        duration: clip length in seconds.
        beats: ``(time, position in bar)``; position 1 is a downbeat.
        chords: ``(start, end, mir_eval label)`` covering the clip, or empty (single-part scores).
        melody: ``(start, end, midi)`` of the top line, or empty (scores with several parts).
        onsets: distinct note onsets.
    """

    id: str
    duration: float
    beats: tuple[tuple[float, int], ...]
    chords: tuple[tuple[float, float, str], ...]
    melody: tuple[tuple[float, float, int], ...]
    onsets: tuple[float, ...]

    @property
    def downbeats(self) -> tuple[float, ...]:
        return tuple(t for t, pos in self.beats if pos == 1)

    def crop(self, end: float) -> ScoreLabels:
        """The labels of the first ``end`` seconds (for a clip cut short)."""
        if end >= self.duration:
            return self

        def clip(segments: tuple) -> tuple:
            return tuple((a, min(b, end), v) for a, b, v in segments if a < end)

        return ScoreLabels(
            self.id,
            end,
            tuple(b for b in self.beats if b[0] < end),
            clip(self.chords),
            clip(self.melody),
            tuple(t for t in self.onsets if t < end),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": LABELS_VERSION,
            "id": self.id,
            "duration": self.duration,
            "beats": [[round(t, 6), p] for t, p in self.beats],
            "chords": [[round(a, 6), round(b, 6), c] for a, b, c in self.chords],
            "melody": [[round(a, 6), round(b, 6), m] for a, b, m in self.melody],
            "onsets": [round(t, 6) for t in self.onsets],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ScoreLabels:
        return cls(
            id=str(d["id"]),
            duration=float(d["duration"]),
            beats=tuple((float(t), int(p)) for t, p in d["beats"]),
            chords=tuple((float(a), float(b), str(c)) for a, b, c in d["chords"]),
            melody=tuple((float(a), float(b), int(m)) for a, b, m in d["melody"]),
            onsets=tuple(float(t) for t in d["onsets"]),
        )


# --------------------------------------------------------------------------------------------------
# a rendered clip


def score_labels(
    item_id: str,
    notes: Sequence[Any],
    *,
    duration: float,
    bars: Sequence[Bar],
    qpm: float,
    dance: str = "",
    score_length: float | None = None,
    polyphonic: bool,
) -> ScoreLabels:
    """Labels of one rendered clip.

    Args:
        item_id: the clip's id.
        notes: the rendered notes (objects with ``start``, ``end``, ``pitch`` in seconds, as the corpus
            plans them: transposed, cut at the clip's end).
        duration: clip length in seconds.
        bars: the score's measures (quarter notes).
        qpm: rendering tempo in quarter notes per minute.
        dance: dance type (the felt beat of reels and hornpipes).
        score_length: the score's length in quarter notes (no beats after it).
        polyphonic: chords (True) or melody (False).
    """
    sec = 60.0 / qpm
    end = duration if score_length is None else min(duration, score_length * sec)
    beats = tuple((q * sec, pos) for q, pos in beat_positions(bars, dance=dance) if q * sec < end - 1e-9)
    triples = [(float(n.start), float(min(n.end, duration)), int(n.pitch)) for n in notes if n.start < duration]
    onsets = tuple(sorted({round(s, 6) for s, _, _ in triples}))
    chords = tuple(chord_segments(triples, duration)) if polyphonic else ()
    melody = () if polyphonic else tuple(melody_segments(triples, duration))
    return ScoreLabels(item_id, float(duration), beats, chords, melody, onsets)


def labels_path(root: str | os.PathLike[str], item_id: str) -> Path:
    """Where the sidecar of a score clip lives in a corpus folder."""
    return Path(root) / "labels" / "scores" / f"{item_id}.json"


def write_labels(path: str | os.PathLike[str], labels: ScoreLabels) -> None:
    with atomic_path(path, suffix=".json") as tmp:
        tmp.write_text(json.dumps(labels.to_dict(), separators=(",", ":")) + "\n")


def read_labels(path: str | os.PathLike[str]) -> ScoreLabels:
    """Read a sidecar (``FileNotFoundError`` names the file when it is missing)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no frame labels (a corpus of format 3 has one per score clip)")
    return ScoreLabels.from_dict(json.loads(path.read_text()))


# --------------------------------------------------------------------------------------------------
# frames


@dataclass(frozen=True)
class FrameTargets:
    """Per-frame targets of one clip (frame ``i`` covers ``[i / rate, (i + 1) / rate)``).

    Attributes:
        beat: (frames, 2) float32: beat and downbeat activations (1 on the frame of the event).
        chord: (frames,) int64: :data:`MAJMIN_CLASSES` index or :data:`IGNORE` (at the frame centre).
        melody: (frames,) int64: 0 unvoiced, else ``midi - MELODY_LOW + 1``; :data:`IGNORE` without melody.
        onset: (frames,) float32: 1 on the frame of an onset.
    """

    beat: np.ndarray
    chord: np.ndarray
    melody: np.ndarray
    onset: np.ndarray


def _event_frames(times: Iterable[float], frames: int, rate: float) -> np.ndarray:
    out = np.zeros(frames, dtype=np.float32)
    for t in times:
        i = int(np.floor(t * rate + 1e-6))
        if 0 <= i < frames:
            out[i] = 1.0
    return out


def _segment_frames(segments: Iterable[tuple[float, float, int]], frames: int, rate: float, fill: int) -> np.ndarray:
    centres = (np.arange(frames) + 0.5) / rate
    out = np.full(frames, fill, dtype=np.int64)
    for a, b, value in segments:
        out[(centres >= a) & (centres < b)] = value
    return out


def frame_targets(labels: ScoreLabels, num_frames: int, frame_rate: float = 25.0) -> FrameTargets:
    """Per-frame targets of a sidecar, for ``num_frames`` frames at ``frame_rate`` Hz."""
    if num_frames < 0 or frame_rate <= 0:
        raise ValueError("num_frames must be >= 0 and frame_rate > 0")
    beat = np.stack(
        [
            _event_frames([t for t, _ in labels.beats], num_frames, frame_rate),
            _event_frames(labels.downbeats, num_frames, frame_rate),
        ],
        axis=1,
    )
    if labels.chords:
        chord = _segment_frames(((a, b, majmin_index(c)) for a, b, c in labels.chords), num_frames, frame_rate, IGNORE)
    else:
        chord = np.full(num_frames, IGNORE, dtype=np.int64)
    if labels.melody:
        melody = _segment_frames(
            ((a, b, min(max(m, MELODY_LOW), MELODY_HIGH) - MELODY_LOW + 1) for a, b, m in labels.melody),
            num_frames,
            frame_rate,
            0,
        )
        centres = (np.arange(num_frames) + 0.5) / frame_rate
        melody[centres >= labels.duration] = IGNORE
    else:
        melody = np.full(num_frames, IGNORE, dtype=np.int64)
    return FrameTargets(beat, chord, melody, _event_frames(labels.onsets, num_frames, frame_rate))


__all__ = [
    "Bar",
    "FrameTargets",
    "IGNORE",
    "MAJMIN_CLASSES",
    "NO_CHORD",
    "NUM_MELODY_CLASSES",
    "ScoreLabels",
    "bar_quarters",
    "beat_positions",
    "chord_segments",
    "frame_targets",
    "labels_path",
    "majmin_index",
    "melody_segments",
    "name_chord",
    "read_labels",
    "score_labels",
    "write_labels",
]
