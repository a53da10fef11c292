"""Exact time-aligned labels of rendered scores: beats and downbeats, chords, melody and note onsets.

The corpus renders every score itself, so it knows where each note, beat and bar falls in the audio.
For each rendered score clip the builder writes a sidecar ``labels/scores/<id>.json``
(:class:`ScoreLabels`) holding events and segments in seconds:

- ``beats``: ``(time, position in bar)`` pairs, position 1 on a downbeat (madmom's convention). Beats
  follow the felt beat of :func:`muqkit.data.corpus_plan.beat_quarters` (a dotted quarter in 6/8, a half note
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

LABELS_VERSION = 1
PITCH_NAMES: tuple[str, ...] = ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
#: The 25 chord classes: ``C:maj`` ... ``B:maj`` (0-11), ``C:min`` ... ``B:min`` (12-23), ``N`` (24).
MAJMIN_CLASSES: tuple[str, ...] = (
    *(f"{n}:maj" for n in PITCH_NAMES),
    *(f"{n}:min" for n in PITCH_NAMES),
    "N",
)
NO_CHORD = 24
IGNORE = -1
#: Melody classes: 0 unvoiced, then MIDI pitches 21 (A0) to 108 (C8).
MELODY_LOW, MELODY_HIGH = 21, 108
NUM_MELODY_CLASSES = MELODY_HIGH - MELODY_LOW + 2

# (mir_eval quality, intervals above the root); earlier entries win ties between roots that are not the bass.
_QUALITIES: tuple[tuple[str, frozenset[int]], ...] = tuple(
    (name, frozenset(iv))
    for name, iv in (
        ("maj", (0, 4, 7)),
        ("min", (0, 3, 7)),
        ("7", (0, 4, 7, 10)),
        ("min7", (0, 3, 7, 10)),
        ("maj7", (0, 4, 7, 11)),
        ("dim", (0, 3, 6)),
        ("hdim7", (0, 3, 6, 10)),
        ("dim7", (0, 3, 6, 9)),
        ("aug", (0, 4, 8)),
        ("minmaj7", (0, 3, 7, 11)),
        ("maj6", (0, 4, 7, 9)),
        ("min6", (0, 3, 7, 9)),
        ("sus4", (0, 5, 7)),
        ("sus2", (0, 2, 7)),
        # sevenths without their fifth, as four-part writing often has them
        ("7", (0, 4, 10)),
        ("min7", (0, 3, 10)),
        ("maj7", (0, 4, 11)),
    )
)
_MAJ_FAMILY = frozenset({"maj", "7", "maj7", "maj6"})
_MIN_FAMILY = frozenset({"min", "min7", "min6", "minmaj7"})
_DEGREES = ("1", "b2", "2", "b3", "3", "4", "b5", "5", "#5", "6", "b7", "7")


@dataclass(frozen=True)
class Bar:
    """One measure of a score (quarter notes from the score's start).

    Attributes:
        offset: where the measure starts.
        length: its notated content (shorter than a full bar for a pickup or a closing bar).
        padding: quarter notes missing at its start (a pickup: music21's ``paddingLeft``).
        metre: the time signature in force, e.g. ``"6/8"``.
    """

    offset: float
    length: float
    padding: float
    metre: str


def bar_quarters(metre: str) -> float:
    """Length of a full bar in quarter notes (``"6/8"`` -> 3.0); 4.0 for an unreadable metre."""
    try:
        num, den = (int(x) for x in metre.split("/"))
    except ValueError:
        return 4.0
    return num * 4.0 / den


def beat_positions(bars: Sequence[Bar], beat: float | None = None, *, dance: str = "") -> list[tuple[float, int]]:
    """Beats of a score in quarter notes, with their position in the bar (1 = downbeat).

    A bar with ``padding`` (a pickup) is the end of a virtual bar starting ``padding`` earlier: its beats
    are those of the virtual bar that fall inside it, so a one-beat pickup in 4/4 is position 4.

    Args:
        bars: the score's measures.
        beat: beat length in quarter notes (default: :func:`muqkit.data.corpus_plan.beat_quarters` of each bar's metre).
        dance: dance type, for the beat of reels and hornpipes (felt in two).
    """
    from muqkit.data.corpus_plan import beat_quarters

    out: list[tuple[float, int]] = []
    eps = 1e-6
    for bar in bars:
        step = beat if beat is not None else beat_quarters(bar.metre, dance)
        start = bar.offset - bar.padding
        count = max(1, round(bar_quarters(bar.metre) / step))
        for k in range(count):
            t = start + k * step
            if bar.offset - eps <= t < bar.offset + bar.length - eps:
                out.append((t, k + 1))
    return out


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
# chords


def name_chord(pitches: Iterable[int]) -> str:
    """mir_eval label of a set of sounding MIDI pitches (``"N"`` if empty, ``"X"`` if not a known chord).

    The root is the one whose intervals match a quality of the vocabulary, the bass's reading first
    (so a C-E-G-A sonority over C is ``C:maj6``, over A ``A:min7``); an inversion names the bass's degree.

    Example:
        >>> name_chord([52, 60, 64, 67]), name_chord([62, 65, 69, 72]), name_chord([60, 61, 62])
        ('C:maj/3', 'D:min7', 'X')
    """
    pitches = sorted(set(pitches))
    if not pitches:
        return "N"
    bass = pitches[0] % 12
    classes = {p % 12 for p in pitches}
    roots = [bass] + sorted(classes - {bass})
    best: tuple[int, int, int, str] | None = None  # (not the bass, quality rank, root, quality)
    for root in roots:
        intervals = frozenset((c - root) % 12 for c in classes)
        for rank, (name, template) in enumerate(_QUALITIES):
            if intervals == template:
                candidate = (0 if root == bass else 1, rank, root, name)
                if best is None or candidate < best:
                    best = candidate
    if best is None:
        return "X"
    root, quality = best[2], best[3]
    label = f"{PITCH_NAMES[root]}:{quality}"
    if root != bass:
        label += "/" + _DEGREES[(bass - root) % 12]
    return label


def _chord_pitch_classes(label: str) -> frozenset[int] | None:
    if label in ("N", "X"):
        return None
    root_name, _, rest = label.partition(":")
    quality = rest.split("/")[0]
    root = PITCH_NAMES.index(root_name)
    template = next(t for n, t in _QUALITIES if n == quality)
    return frozenset((root + i) % 12 for i in template)


def majmin_index(label: str) -> int:
    """Class of :data:`MAJMIN_CLASSES` for a mir_eval label; :data:`IGNORE` for ``X`` and non-major/minor chords.

    Example:
        >>> majmin_index("D:min7/b3"), majmin_index("N"), majmin_index("B:dim")
        (14, 24, -1)
    """
    if label == "N":
        return NO_CHORD
    if label == "X":
        return IGNORE
    root_name, _, rest = label.partition(":")
    quality = rest.split("/")[0] or "maj"
    if root_name not in PITCH_NAMES:
        import mir_eval

        root = mir_eval.chord.pitch_class_to_semitone(root_name)
    else:
        root = PITCH_NAMES.index(root_name)
    if quality in _MAJ_FAMILY:
        return root
    if quality in _MIN_FAMILY:
        return 12 + root
    return IGNORE


def _segments(notes: Sequence[tuple[float, float, int]], end: float) -> list[tuple[float, float, list[int]]]:
    """Cut [0, end) at every note start and end; each piece with the pitches sounding in it."""
    cuts = sorted({0.0, end, *(min(n[0], end) for n in notes), *(min(n[1], end) for n in notes)})
    out = []
    for a, b in zip(cuts[:-1], cuts[1:], strict=True):
        if b - a <= 1e-9:
            continue
        out.append((a, b, [p for s, e, p in notes if s <= a + 1e-9 and e > a + 1e-9]))
    return out


def chord_segments(notes: Sequence[tuple[float, float, int]], end: float) -> list[tuple[float, float, str]]:
    """Chord label segments of a polyphonic clip (``(start, end, pitch)`` notes in seconds), merged.

    A sonority of fewer than three pitch classes continues the previous chord when it is part of it
    (a held note, the root and fifth of the last triad) and is ``X`` otherwise.
    """
    out: list[tuple[float, float, str]] = []
    previous: str | None = None
    for a, b, pitches in _segments(notes, end):
        label = name_chord(pitches)
        classes = {p % 12 for p in pitches}
        if pitches and len(classes) < 3:
            known = _chord_pitch_classes(previous) if previous else None
            label = previous if previous is not None and known is not None and classes <= known else "X"
        if label not in ("N", "X"):
            previous = label
        elif label == "N":
            previous = None
        if out and out[-1][2] == label and abs(out[-1][1] - a) < 1e-9:
            out[-1] = (out[-1][0], b, label)
        else:
            out.append((a, b, label))
    return out


def melody_segments(notes: Sequence[tuple[float, float, int]], end: float) -> list[tuple[float, float, int]]:
    """The top line of a clip: ``(start, end, midi)`` of the highest sounding pitch, merged; gaps unvoiced."""
    out: list[tuple[float, float, int]] = []
    for a, b, pitches in _segments(notes, end):
        if not pitches:
            continue
        top = max(pitches)
        # a re-struck note is a new segment (its onset matters); a held one continues
        restruck = any(abs(s - a) < 1e-9 and p == top for s, _, p in notes)
        if out and out[-1][2] == top and abs(out[-1][1] - a) < 1e-9 and not restruck:
            out[-1] = (out[-1][0], b, top)
        else:
            out.append((a, b, top))
    return out


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


def write_item_labels(root: str | os.PathLike[str], item: Any) -> ScoreLabels:
    """Write the sidecar of a planned score item of :mod:`muqkit.data.corpus_plan` (its notes, bars and tempo)."""
    labels = score_labels(
        item.id,
        item.notes,
        duration=item.duration,
        bars=item.labels["_bars"],
        qpm=item.labels["tempo_qpm"],
        dance=item.labels.get("dance", ""),
        score_length=item.labels.get("_length"),
        polyphonic=item.labels["num_parts"] > 1,
    )
    write_labels(labels_path(root, item.id), labels)
    return labels


UPGRADE_HINT = "muqkit data build-corpus --upgrade"


def check_upgradable(out: Path, existing: dict[str, Any], version: int, upgrade: bool) -> dict[str, Any]:
    """The stamp of a corpus of another format, as a build of ``version`` continues it; else a clear error.

    Only a complete format-2 build can be upgraded (to format 3: the same audio plus frame labels).
    """
    from muqkit.data.corpus_sizes import CorpusMismatchError

    found = existing.get("format")
    if found == 2 and version == 3 and upgrade:
        if not existing.get("complete"):
            raise CorpusMismatchError(
                f"{out} holds an unfinished corpus of format 2; finish it with an older "
                "muqkit or build anew, --upgrade needs a complete one"
            )
        return {**existing, "format": version, "complete": False}
    hint = (
        f"add its frame labels without rendering again with `{UPGRADE_HINT}` (same --out, --size and --seed), or "
        if found == 2 and version == 3
        else ""
    )
    raise CorpusMismatchError(
        f"{out} holds a corpus of format {found}, this muqkit writes format {version} (format 3 adds the frame "
        f"labels of the score clips): {hint}build anew in another --out"
    )


def require_frame_labels(corpus: str | os.PathLike[str]) -> None:
    """Raise a clear error unless ``corpus`` is a corpus of format 3 or later (one with frame labels)."""
    stamp = Path(corpus) / "corpus.json"
    if not stamp.is_file():
        raise FileNotFoundError(f"{stamp} not found: build the corpus with `muqkit data build-corpus --out {corpus}`")
    found = json.loads(stamp.read_text()).get("format")
    if not isinstance(found, int) or found < 3:
        raise ValueError(
            f"{corpus} is a corpus of format {found}, which has no frame labels (format 3 adds them): run "
            f"`{UPGRADE_HINT} --out {corpus}` with its --size and --seed (no audio is rendered)"
        )


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
    "write_item_labels",
    "write_labels",
    "require_frame_labels",
]
