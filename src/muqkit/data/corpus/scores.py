"""music21's bundled scores as a labelled source: enumeration, parsing, key checks and note extraction.

Collections (the genre-like classes): Bach chorales, Palestrina mass movements, Essen folk songs,
O'Neill's 1850 Irish tunes, Ryan's Mammoth Collection and Aird's Airs (Scottish). ABC files are split
into their tunes here and each tune is parsed alone, so a build touches only the tunes it uses.

A key label is kept only when it is trustworthy: music21's key analysis must agree with the notated key
signature (and the ABC ``K:`` field's mode when the field names one) *and* with the bass of the final
sonority. Modal tunes and pieces that end away from the tonic keep their other labels but get no key,
rather than a wrong one.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

from muqkit.data.theory import Bar

#: Collection name -> (folder inside music21's corpus, file pattern).
COLLECTIONS: dict[str, tuple[str, str]] = {
    "bach_chorales": ("bach", "bwv*.mxl"),
    "palestrina": ("palestrina", "*.krn"),
    "essen_folksongs": ("essenFolksong", "*.abc"),
    "oneills_irish": ("oneills1850", "*.abc"),
    "ryans_mammoth": ("ryansMammoth", "*.abc"),
    "airds_scottish": ("airdsAirs", "*.abc"),
}

_DANCES = ("reel", "jig", "hornpipe", "strathspey", "waltz", "polka", "march", "slide", "air", "schottische")


@dataclass(frozen=True)
class ScoreRef:
    """Where one score lives: a file of music21's corpus and, for ABC files, the tune number."""

    collection: str
    file: str  # path relative to music21's corpus folder
    tune: int  # index of the tune in an ABC file, 0 otherwise

    @property
    def id(self) -> str:
        stem = re.sub(r"[^A-Za-z0-9]+", "-", Path(self.file).with_suffix("").as_posix()).strip("-")
        return f"{self.collection}.{stem}.{self.tune}"


@dataclass(frozen=True)
class ParsedScore:
    """Notes and labels of one score.

    Attributes:
        ref: the score's location.
        title: title from the score's metadata ('' when absent).
        parts: per part, ``(onset, duration, midi_pitch)`` in quarter notes from the start.
        tonic: pitch class (0-11) of the checked key; ``None`` when the key failed a check.
        mode: ``"major"`` or ``"minor"``; ``None`` when the key failed a check.
        metre: time signature, e.g. ``"6/8"``.
        dance: dance type from the ABC ``R:`` field ('' when absent or not a dance).
        origin: region from the ABC ``O:`` field, first component ('' when absent).
        length: duration of the score in quarter notes.
        key_issue: why the key is not trusted ('' when it is).
        bars: the measures of the first part (for beats and downbeats; empty in a cache entry written
            before corpus format 3).
    """

    ref: ScoreRef
    title: str
    parts: tuple[tuple[tuple[float, float, int], ...], ...]
    tonic: int | None
    mode: str | None
    metre: str
    dance: str
    origin: str
    length: float
    key_issue: str = ""
    bars: tuple[Bar, ...] = ()

    def to_dict(self) -> dict:
        return {
            "ref": [self.ref.collection, self.ref.file, self.ref.tune],
            "title": self.title,
            "parts": [[list(n) for n in p] for p in self.parts],
            "tonic": self.tonic,
            "mode": self.mode,
            "metre": self.metre,
            "dance": self.dance,
            "origin": self.origin,
            "length": self.length,
            "key_issue": self.key_issue,
            "bars": [[b.offset, b.length, b.padding, b.metre] for b in self.bars],
        }

    @classmethod
    def from_dict(cls, d: dict) -> ParsedScore:
        return cls(
            ref=ScoreRef(*d["ref"]),
            title=d["title"],
            parts=tuple(tuple((float(a), float(b), int(c)) for a, b, c in p) for p in d["parts"]),
            tonic=None if d["tonic"] is None else int(d["tonic"]),
            mode=d["mode"],
            metre=d["metre"],
            dance=d["dance"],
            origin=d["origin"],
            length=float(d["length"]),
            key_issue=d.get("key_issue", ""),
            bars=tuple(Bar(float(o), float(n), float(p), str(m)) for o, n, p, m in d.get("bars", ())),
        )


class ScoreRejected(ValueError):
    """A score that cannot be used (unparseable, no trustworthy key, too short)."""


def corpus_root() -> Path:
    """music21's bundled corpus folder."""
    try:
        import music21
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("the score source needs music21: pip install 'muqkit[eval]' (or music21)") from exc
    return Path(music21.__file__).parent / "corpus"


def _split_abc(text: str) -> list[str]:
    """Split an ABC file into tunes (each starting with an ``X:`` line)."""
    tunes: list[list[str]] = []
    for line in text.splitlines():
        if line.startswith("X:"):
            tunes.append([])
        if tunes:
            tunes[-1].append(line)
    return ["\n".join(t) for t in tunes if any(line.startswith("K:") for line in t)]


def list_scores(collection: str, root: Path | None = None) -> list[ScoreRef]:
    """Every score of a collection, in a fixed order."""
    if collection not in COLLECTIONS:
        raise ValueError(f"unknown collection {collection!r}; known: {sorted(COLLECTIONS)}")
    root = corpus_root() if root is None else root
    folder, pattern = COLLECTIONS[collection]
    refs: list[ScoreRef] = []
    for path in sorted((root / folder).glob(pattern)):
        rel = path.relative_to(root).as_posix()
        if path.suffix == ".abc":
            if path.name.startswith("test"):  # music21's parser test files, not songs
                continue
            n = len(_split_abc(path.read_text(encoding="latin-1")))
            refs.extend(ScoreRef(collection, rel, i) for i in range(n))
        else:
            refs.append(ScoreRef(collection, rel, 0))
    return refs


def _abc_field(tune: str, name: str) -> str:
    for line in tune.splitlines():
        if line.startswith(f"{name}:"):
            return line[len(name) + 1 :].strip()
    return ""


def _dance(field: str) -> str:
    low = field.lower()
    return next((d for d in _DANCES if d in low), "")


def parse_score(ref: ScoreRef, root: Path | None = None) -> ParsedScore:
    """Parse one score and check its key.

    Raises:
        ScoreRejected: with the reason the score is not usable at all (unparseable, no notes or metre).
    """
    import music21

    root = corpus_root() if root is None else root
    path = root / ref.file
    dance = origin = ""
    mode_hint = ""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if path.suffix == ".abc":
                tune = _split_abc(path.read_text(encoding="latin-1"))[ref.tune]
                dance = _dance(_abc_field(tune, "R"))
                origin = _abc_field(tune, "O").split(",")[0].strip()
                k_field = _abc_field(tune, "K").split("%")[0].strip().lower()
                m = re.match(r"^[a-g][#b]?\s*(m|min|minor|maj|major|ion|aeo)?$", k_field)
                if m and m.group(1):
                    mode_hint = "minor" if m.group(1) in ("m", "min", "minor", "aeo") else "major"
                elif m:
                    mode_hint = "major"
                score = music21.converter.parse(tune, format="abc")
            else:
                score = music21.converter.parse(str(path))
        except Exception as exc:  # music21 raises many kinds of errors on odd files
            raise ScoreRejected(f"{ref.id}: music21 cannot parse it ({type(exc).__name__}: {exc})") from exc

        signatures = list(score.recurse().getElementsByClass("KeySignature"))
        analysed = score.analyze("key")
        key_issue = ""
        if not signatures:
            key_issue = "no key signature"
        elif len({s.sharps for s in signatures}) > 1:
            key_issue = "the key signature changes"
        elif analysed.sharps != signatures[0].sharps:
            key_issue = f"analysed key {analysed} disagrees with the key signature ({signatures[0].sharps})"
        elif mode_hint and analysed.mode != mode_hint:
            key_issue = f"analysed key {analysed} disagrees with the K: field mode {mode_hint}"
        times = list(score.recurse().getElementsByClass("TimeSignature"))
        metre = times[0].ratioString if times else ""
        if not metre:
            raise ScoreRejected(f"{ref.id}: no time signature")

        parts = []
        part_streams = list(score.parts) if score.hasPartLikeStreams() else [score]  # type: ignore[union-attr]
        for part in part_streams:
            notes = []
            for element in part.stripTies().flatten().notes:
                dur = float(element.duration.quarterLength)
                if dur <= 0:  # grace notes
                    continue
                for pitch in element.pitches:
                    notes.append((float(element.offset), dur, int(pitch.midi)))
            if notes:
                parts.append(tuple(sorted(notes)))
        if not parts:
            raise ScoreRejected(f"{ref.id}: no notes")
        length = max(on + dur for part in parts for on, dur, _ in part)
        last_onset = max(on for part in parts for on, _, _ in part)
        final_bass = min(p for part in parts for on, dur, p in part if on + dur >= length - 1e-6 or on == last_onset)
        if not key_issue and final_bass % 12 != analysed.tonic.pitchClass:
            key_issue = f"final bass {final_bass % 12} is not the tonic of {analysed}"
        bars = _bars(part_streams[0], metre)
        title = str(score.metadata.title or "") if score.metadata is not None else ""
    return ParsedScore(
        ref=ref,
        title=title,
        parts=tuple(parts),
        tonic=None if key_issue else analysed.tonic.pitchClass,
        mode=None if key_issue else analysed.mode,
        key_issue=key_issue,
        metre=metre,
        dance=dance,
        origin=origin,
        length=length,
        bars=bars,
    )


def _bars(part, metre: str) -> tuple[Bar, ...]:  # noqa: ANN001 - a music21 stream
    """The measures of a music21 part with their offsets, pickups and time signatures."""
    bars = []
    for measure in part.getElementsByClass("Measure"):
        if measure.timeSignature is not None:
            metre = measure.timeSignature.ratioString
        bars.append(
            Bar(
                float(measure.offset),
                float(measure.duration.quarterLength),
                float(measure.paddingLeft or 0.0),
                metre,
            )
        )
    return tuple(bars)
