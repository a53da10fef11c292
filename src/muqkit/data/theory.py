"""Music theory of the corpus: bars and felt beats, keys and chord names (what the labels are made of).

Times here are in quarter notes from a score's start. The corpus planner (:mod:`muqkit.data.corpus.plan`)
uses the felt beat for tempi, the score parser (:mod:`muqkit.data.corpus.scores`) the bars and keys, and the
frame labels (:mod:`muqkit.data.labels`) the beats and chord names of rendered clips.

Chord names follow mir_eval's syntax (``"D:min7/b3"``); the 25-class vocabulary (:data:`MAJMIN_CLASSES`) is
12 major, 12 minor and ``N``; chords whose triad is neither major nor minor (dim, aug, sus) map to
:data:`IGNORE`, as mir_eval's ``majmin`` comparison skips them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

PITCH_NAMES: tuple[str, ...] = ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
#: The 25 chord classes: ``C:maj`` ... ``B:maj`` (0-11), ``C:min`` ... ``B:min`` (12-23), ``N`` (24).
MAJMIN_CLASSES: tuple[str, ...] = (
    *(f"{n}:maj" for n in PITCH_NAMES),
    *(f"{n}:min" for n in PITCH_NAMES),
    "N",
)
NO_CHORD = 24
IGNORE = -1
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


# --------------------------------------------------------------------------------------------------
# bars and beats


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


# Dances felt "in two" when written in 4/4 (a beat is a half note).
_IN_TWO = frozenset({"reel", "hornpipe"})


def beat_quarters(metre: str, dance: str = "") -> float:
    """Length of the felt beat in quarter notes: a dotted quarter in compound time (6/8, 9/8, 12/8),
    the denominator's note otherwise, a half note for reels and hornpipes written in 4/4.

    Example:
        >>> beat_quarters("6/8"), beat_quarters("2/2"), beat_quarters("3/4"), beat_quarters("4/4", "reel")
        (1.5, 2.0, 1.0, 2.0)
    """
    try:
        num, den = (int(x) for x in metre.split("/"))
    except ValueError:
        return 1.0
    if den == 8 and num % 3 == 0 and num > 3:
        return 1.5
    if den == 4 and num == 4 and dance in _IN_TWO:
        return 2.0
    return 4.0 / den


def beat_positions(bars: Sequence[Bar], beat: float | None = None, *, dance: str = "") -> list[tuple[float, int]]:
    """Beats of a score in quarter notes, with their position in the bar (1 = downbeat).

    A bar with ``padding`` (a pickup) is the end of a virtual bar starting ``padding`` earlier: its beats
    are those of the virtual bar that fall inside it, so a one-beat pickup in 4/4 is position 4.

    Args:
        bars: the score's measures.
        beat: beat length in quarter notes (default: :func:`beat_quarters` of each bar's metre).
        dance: dance type, for the beat of reels and hornpipes (felt in two).
    """
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


# --------------------------------------------------------------------------------------------------
# keys


def key_label(pitch_class: int, mode: str) -> str:
    """mir_eval key string, e.g. ``key_label(3, "minor") == "Eb minor"``."""
    if mode not in ("major", "minor"):
        raise ValueError(f"mode must be 'major' or 'minor', got {mode!r}")
    return f"{PITCH_NAMES[pitch_class % 12]} {mode}"


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


def chord_pitch_classes(label: str) -> frozenset[int] | None:
    """The pitch classes of a chord label of :func:`name_chord`; ``None`` for ``N`` and ``X``."""
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
            known = chord_pitch_classes(previous) if previous else None
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


__all__ = [
    "Bar",
    "IGNORE",
    "MAJMIN_CLASSES",
    "NO_CHORD",
    "PITCH_NAMES",
    "bar_quarters",
    "beat_positions",
    "beat_quarters",
    "chord_pitch_classes",
    "chord_segments",
    "key_label",
    "majmin_index",
    "melody_segments",
    "name_chord",
]
