"""The offline corpus: rendered music21 scores, NSynth-style notes and Debian game music.

``build_corpus(out, size="ci", seed=0)`` writes::

    out/corpus.json               stamp: size, seed, soundfonts, counts, hours (refuses to mix builds)
    out/scores.jsonl              rendered score excerpts (key, mode, metre, collection, dance, tags, tempo)
    out/notes.jsonl               single notes (GM program, family, pitch, velocity)
    out/game.jsonl                game-music segments (unlabeled; package, album, genre tags)
    out/audio/{scores,notes,game}/<id>.wav   24 kHz mono 16-bit
    out/labels/scores/<id>.json   beats, chords, melody, onsets of each score clip (muqkit.data.labels)
    out/cache/                    parsed scores and finished render batches (resuming is cheap)

Manifests sit next to ``audio/``, so their relative paths resolve against the manifest's folder.
Every random choice is drawn from a generator seeded by ``(seed, item id)``, so the corpus does not
depend on processing order, and splits are assigned per group (score, instrument, track).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from muqkit.atomic import atomic_path
from muqkit.data.manifest import AudioRecord, assign_splits, check_no_leakage, write_manifest
from muqkit.data.midi import GM_FAMILIES, MELODIC_FAMILIES, Note, Slot, gm_family
from muqkit.data.render import find_soundfonts, render_slots, require_fluidsynth

logger = logging.getLogger(__name__)

# 2: dance tunes at their dance's tempo (was uniform 60-150 qpm for every score)
# 3: frame labels of every score clip (labels/scores/<id>.json, see muqkit.data.labels); same audio as 2
FORMAT_VERSION = 3
SAMPLE_RATE = 24000
NOTE_VELOCITIES: tuple[int, ...] = (25, 50, 75, 100, 127)  # NSynth's velocities


@dataclass(frozen=True)
class CorpusSize:
    """How much of each source a build uses.

    Attributes:
        name: ``"ci"``, ``"small"``, ``"medium"`` or ``"full"``.
        scores_per_collection: usable scores taken per music21 collection (``None``: all of them).
        renders_per_score: renderings of each score (soundfont, programs, tempo, transposition vary).
        clip_seconds: longest excerpt rendered from the start of a score.
        programs_per_family: GM programs per family for the single notes (of 8).
        pitches_per_instrument: pitches drawn for each (soundfont, program) instrument.
        note_seconds: length of a single-note item (the note is held for two thirds of it).
        game_packages: Debian game-music packages used for the unlabeled pool.
        game_segments_per_track: segments taken from each track (``None``: the whole track).
        game_segment_seconds: length of a game-music segment.
    """

    name: str
    scores_per_collection: int | None
    renders_per_score: int
    clip_seconds: float
    programs_per_family: int
    pitches_per_instrument: int
    note_seconds: float
    game_packages: tuple[str, ...]
    game_segments_per_track: int | None
    game_segment_seconds: float

    def __post_init__(self) -> None:
        if self.scores_per_collection is not None and self.scores_per_collection < 3:
            raise ValueError("scores_per_collection must be >= 3 (one per split) or None")
        if self.renders_per_score < 1 or not 1 <= self.programs_per_family <= 8:
            raise ValueError("renders_per_score must be >= 1 and programs_per_family in [1, 8]")
        if self.clip_seconds < 2 or self.note_seconds < 0.5 or self.game_segment_seconds < 1:
            raise ValueError("clip_seconds >= 2, note_seconds >= 0.5 and game_segment_seconds >= 1 required")


SIZES: dict[str, CorpusSize] = {
    "ci": CorpusSize("ci", 4, 1, 6.0, 1, 2, 1.5, ("asc-music",), 1, 8.0),
    # The demo's: enough test items per task (>= 30 key clips, about 90 notes) in a few minutes.
    "demo": CorpusSize("demo", 36, 2, 8.0, 4, 4, 2.0, (), 1, 8.0),
    "small": CorpusSize("small", 80, 2, 10.0, 4, 4, 3.0, ("asc-music", "drascula-music", "hyperrogue-music"), 6, 30.0),
    # The small corpus's pool and notes with four times the scores, rendered three times: enough
    # annotated tunes (mode, metre, dance type) for music-text training on a CPU.
    "medium": CorpusSize(
        "medium", 320, 3, 10.0, 4, 4, 3.0, ("asc-music", "drascula-music", "hyperrogue-music"), 6, 30.0
    ),
    "full": CorpusSize(
        "full",
        None,
        2,
        20.0,
        8,
        12,
        4.0,
        (
            "asc-music",
            "drascula-music",
            "hyperrogue-music",
            "planetblupi-music-ogg",
            "singularity-music",
            "nexuiz-music",
            "warzone2100-music",
            "wesnoth-1.16-music",
            "ufoai-music",
        ),
        None,
        30.0,
    ),
}


# Tempo ranges of dance tunes in beats per minute, as they are played (a reel or a jig at about 110
# beats a minute, a hornpipe slower, an air slow and free). A dance is defined by its tempo as much as by
# its rhythm; rendering every score at one uniform range would leave only the note grouping to tell a
# reel from a hornpipe. Other scores keep a uniform 60-150 quarter notes a minute.
DANCE_BPM: dict[str, tuple[int, int]] = {
    "reel": (104, 124),
    "jig": (104, 124),
    "slide": (120, 140),
    "hornpipe": (72, 92),
    "strathspey": (120, 150),
    "polka": (120, 140),
    "march": (100, 120),
    "schottische": (90, 110),
    "waltz": (130, 170),
    "air": (50, 76),
}
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


class CorpusMismatchError(RuntimeError):
    """The output folder holds (part of) a corpus built with other settings."""


@dataclass(frozen=True)
class CorpusSummary:
    """What a build produced.

    Attributes:
        root: the corpus folder.
        counts: items per manifest.
        hours: hours of audio per manifest.
        seconds_taken: wall-clock seconds of this build (0 when it was already complete).
    """

    root: Path
    counts: dict[str, int]
    hours: dict[str, float]
    seconds_taken: float


@dataclass(frozen=True)
class _Item:
    """A planned rendered item: its record fields and its slot (times relative to the slot start)."""

    id: str
    source: str
    group: str
    duration: float
    programs: tuple[tuple[int, int], ...]
    notes: tuple[Note, ...]
    labels: dict[str, Any] = field(default_factory=dict)


def _rng(seed: int, *keys: object) -> random.Random:
    digest = hashlib.sha256(":".join(map(str, (seed, *keys))).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _stamp(size: CorpusSize, seed: int, soundfonts: list[Path], game: bool) -> dict[str, Any]:
    return {
        "format": FORMAT_VERSION,
        "size": size.name,
        "seed": seed,
        "size_spec": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(size).items()},
        "sample_rate": SAMPLE_RATE,
        "soundfonts": [p.name for p in soundfonts],
        "game_music": list(size.game_packages) if game else [],
    }


def _write_stamp(out: Path, stamp: dict[str, Any]) -> None:
    with atomic_path(out / "corpus.json") as tmp:
        tmp.write_text(json.dumps(stamp, indent=2) + "\n")


def _check_folder(out: Path, stamp: dict[str, Any], upgrade: bool = False) -> dict[str, Any] | None:
    """Return the existing stamp if it matches; raise if the folder holds another build."""
    stamp_file = out / "corpus.json"
    if stamp_file.is_file():
        existing = json.loads(stamp_file.read_text())
        if existing.get("format") != FORMAT_VERSION:
            from muqkit.data.labels import check_upgradable

            existing = check_upgradable(out, existing, FORMAT_VERSION, upgrade)
        settings = {k: existing.get(k) for k in stamp}
        if settings != stamp:
            changed = [k for k in stamp if settings[k] != stamp[k]]
            if "size" in changed:  # the spec differs too; the name says it
                changed.remove("size_spec")
            diff = ", ".join(f"{k}: {settings[k]!r} there, {stamp[k]!r} asked" for k in changed)
            raise CorpusMismatchError(
                f"{out} holds a corpus built with other settings ({diff}); refusing to mix them in one folder. "
                "Use another --out, or delete the folder first."
            )
        return existing
    if out.exists() and any(out.iterdir()):
        raise CorpusMismatchError(f"{out} is not empty and holds no corpus.json; refusing to write a corpus into it")
    return None


# --------------------------------------------------------------------------------------------------
# planning


def _plan_scores(size: CorpusSize, seed: int, soundfonts: list[Path], cache: Path, log_every: int = 50) -> list[_Item]:
    from muqkit.data.scores import COLLECTIONS, ParsedScore, ScoreRejected, corpus_root, list_scores, parse_score

    root = corpus_root()
    cache.mkdir(parents=True, exist_ok=True)
    items: list[_Item] = []
    for collection in COLLECTIONS:
        refs = list_scores(collection, root)
        _rng(seed, "order", collection).shuffle(refs)
        parsed: list[ParsedScore] = []
        for ref in refs:
            if size.scores_per_collection is not None and len(parsed) >= size.scores_per_collection:
                break
            cached = cache / f"{ref.id}.json"
            if cached.is_file():
                data = json.loads(cached.read_text())
                if data.get("rejected"):
                    continue
                if "bars" in data:  # entries written before format 3 are parsed again for their bars
                    parsed.append(ParsedScore.from_dict(data))
                    continue
            try:
                score = parse_score(ref, root)
            except ScoreRejected as exc:
                cached.write_text(json.dumps({"rejected": str(exc)}))
                logger.debug("%s", exc)
                continue
            cached.write_text(json.dumps(score.to_dict()))
            parsed.append(score)
            if len(parsed) % log_every == 0:
                logger.info("%s: %d scores parsed", collection, len(parsed))
        splits = assign_splits([s.ref.id for s in parsed], seed=seed)
        logger.info(
            "%s: %d scores (%d with a checked key)", collection, len(parsed), sum(s.mode is not None for s in parsed)
        )
        for score in parsed:
            for r in range(size.renders_per_score):
                item = _score_item(score, r, size, seed, soundfonts)
                if item is not None:
                    item.labels["split"] = splits[score.ref.id]
                    items.append(item)
    return items


def _score_item(score: Any, render: int, size: CorpusSize, seed: int, soundfonts: list[Path]) -> _Item | None:
    rng = _rng(seed, score.ref.id, render)
    soundfont = rng.choice(soundfonts)
    transpose = rng.randint(-5, 6)
    qpm = float(rng.randint(60, 150))
    beat = beat_quarters(score.metre, score.dance)
    if score.dance in DANCE_BPM:  # drawn from its own generator: the item's other draws stay as they were
        low, high = DANCE_BPM[score.dance]
        qpm = _rng(seed, score.ref.id, render, "dance-tempo").randint(low, high) * beat
    n_parts = len(score.parts)
    if n_parts > 1 and rng.random() < 0.5:  # a homogeneous ensemble
        family = rng.choice(MELODIC_FAMILIES)
        programs = [family * 8 + rng.randrange(8)] * n_parts
    else:
        programs = [rng.choice(MELODIC_FAMILIES) * 8 + rng.randrange(8) for _ in range(n_parts)]
    channels = [c for c in range(16) if c != 9][:n_parts]
    base_velocity = rng.randint(50, 110)
    sec = 60.0 / qpm
    notes: list[Note] = []
    for part, channel in zip(score.parts, channels, strict=False):
        part_velocity = base_velocity + rng.randint(-10, 10)
        for onset, dur, pitch in part:
            start = onset * sec
            if start >= size.clip_seconds:
                break
            p = pitch + transpose
            if not 21 <= p <= 108:
                continue
            velocity = min(127, max(1, part_velocity + rng.randint(-6, 6)))
            notes.append(Note(start, min(start + dur * sec, size.clip_seconds), p, velocity, channel))
    if not notes:
        return None
    duration = min(size.clip_seconds, math.ceil(max(n.end for n in notes) + 1.0))
    if duration < 2.0:
        return None
    families = sorted({gm_family(p) for p in programs[: len(channels)]})
    labels: dict[str, Any] = {
        "collection": score.ref.collection,
        "title": score.title,
        "metre": score.metre,
        "dance": score.dance,
        "origin": score.origin,
        "tempo_qpm": qpm,
        "tempo_bpm": round(qpm / beat, 2),
        "transpose": transpose,
        "programs": programs[: len(channels)],
        "families": families,
        "num_parts": n_parts,
        "soundfont": soundfont.name,
        "tags": sorted({*families, "polyphonic" if n_parts > 1 else "monophonic"}),
        "score": score.ref.id,
    }
    if score.mode is not None:
        from muqkit.data.scores import key_label

        labels["key"] = key_label(score.tonic + transpose, score.mode)
        labels["mode"] = score.mode
    else:
        labels["key_issue"] = score.key_issue
    return _Item(
        id=f"{score.ref.id}.r{render}",
        source="scores",
        group=score.ref.id,
        duration=float(duration),
        programs=tuple(zip(channels, programs, strict=False)),
        notes=tuple(notes),
        labels={**labels, "_soundfont": str(soundfont), "_bars": score.bars, "_length": score.length},
    )


def _plan_notes(size: CorpusSize, seed: int, soundfonts: list[Path]) -> list[_Item]:
    items: list[_Item] = []
    instruments: list[tuple[Path, int]] = []
    for soundfont in soundfonts:
        for family in MELODIC_FAMILIES:
            offsets = sorted(_rng(seed, "programs", soundfont.name, family).sample(range(8), size.programs_per_family))
            instruments.extend((soundfont, family * 8 + o) for o in offsets)
    groups = [f"{sf_.stem}.p{program:03d}" for sf_, program in instruments]
    splits = assign_splits(groups, seed=seed)
    hold = size.note_seconds * 2.0 / 3.0
    for (soundfont, program), group in zip(instruments, groups, strict=True):
        rng = _rng(seed, "notes", group)
        low, high = (28, 67) if gm_family(program) == "bass" else (40, 88)
        for pitch in sorted(rng.sample(range(low, high + 1), size.pitches_per_instrument)):
            velocity = rng.choice(NOTE_VELOCITIES)
            items.append(
                _Item(
                    id=f"notes.{group}.{pitch:03d}.{velocity:03d}",
                    source="notes",
                    group=group,
                    duration=size.note_seconds,
                    programs=((0, program),),
                    notes=(Note(0.0, hold, pitch, velocity, 0),),
                    labels={
                        "program": program,
                        "family": gm_family(program),
                        "pitch": pitch,
                        "velocity": velocity,
                        "soundfont": soundfont.name,
                        "instrument": group,
                        "split": splits[group],
                        "_soundfont": str(soundfont),
                    },
                )
            )
    return items


# --------------------------------------------------------------------------------------------------
# rendering


def _write_wav(path: Path, audio: np.ndarray) -> None:
    with atomic_path(path, suffix=".wav") as tmp:
        sf.write(tmp, audio, SAMPLE_RATE, subtype="PCM_16")


def _finish(audio: np.ndarray, source: str) -> np.ndarray | None:
    """Loudness policy: scores at -20 dBFS RMS; notes keep their velocity dynamics. Silence is dropped."""
    rms = float(np.sqrt(np.mean(audio.astype(np.float64) ** 2)))
    if rms < 1e-4:
        return None
    if source == "scores":
        audio = audio * (0.1 / rms)
    peak = float(np.abs(audio).max())
    if peak > 0.99:
        audio = audio * (0.99 / peak)
    return audio.astype(np.float32)


def _batches(items: list[_Item], max_seconds: float = 600.0) -> list[list[_Item]]:
    """Group items by soundfont into timelines of at most ``max_seconds``."""
    by_font: dict[str, list[_Item]] = {}
    for item in items:
        by_font.setdefault(item.labels["_soundfont"], []).append(item)
    out: list[list[_Item]] = []
    for font in sorted(by_font):
        batch: list[_Item] = []
        total = 0.0
        for item in by_font[font]:
            if batch and total + item.duration > max_seconds:
                out.append(batch)
                batch, total = [], 0.0
            batch.append(item)
            total += math.ceil(item.duration) + 1
        if batch:
            out.append(batch)
    return out


def _render_batch(batch: list[_Item], audio_dir: Path, done_dir: Path, render: bool = True) -> list[str]:
    """Render one batch (skipped when a previous run finished it); returns the ids kept."""
    key = hashlib.sha256(json.dumps([(i.id, i.duration, repr(i.notes), i.programs) for i in batch]).encode())
    done = done_dir / f"{key.hexdigest()[:20]}.json"
    if done.is_file():
        kept = json.loads(done.read_text())
        if all((audio_dir / f"{i}.wav").is_file() for i in kept):
            return kept
    if not render:
        raise CorpusMismatchError(
            f"{audio_dir}: the audio of {batch[0].id} and others is missing or differs from "
            "this build's plan; labels cannot be added without rendering (build anew)"
        )
    slots, start = [], 0.0
    for item in batch:
        slots.append(Slot(start, item.duration, item.programs, item.notes))
        start += math.ceil(item.duration) + 1
    audios = render_slots(slots, batch[0].labels["_soundfont"], sample_rate=SAMPLE_RATE)
    kept = []
    for item, audio in zip(batch, audios, strict=True):
        finished = _finish(audio, item.source)
        if finished is None:
            logger.debug("%s is silent; dropped", item.id)
            continue
        _write_wav(audio_dir / f"{item.id}.wav", finished)
        kept.append(item.id)
    done.write_text(json.dumps(kept))
    return kept


def _render(items: list[_Item], out: Path, source: str, jobs: int, render: bool = True) -> list[AudioRecord]:
    audio_dir = out / "audio" / source
    done_dir = out / "cache" / "render"
    audio_dir.mkdir(parents=True, exist_ok=True)
    done_dir.mkdir(parents=True, exist_ok=True)
    batches = _batches(items)
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:  # fluidsynth runs as a subprocess
        kept_lists = list(pool.map(lambda b: _render_batch(b, audio_dir, done_dir, render), batches))
    kept = {i for ids in kept_lists for i in ids}
    records = []
    for item in sorted(items, key=lambda i: i.id):
        if item.id not in kept:
            continue
        labels = {k: v for k, v in item.labels.items() if not k.startswith("_") and k != "split"}
        if source == "scores":
            from muqkit.data.labels import write_item_labels

            write_item_labels(out, item)
        n = round(item.duration * SAMPLE_RATE)
        records.append(
            AudioRecord(
                id=item.id,
                path=f"audio/{source}/{item.id}.wav",
                duration=n / SAMPLE_RATE,
                sample_rate=SAMPLE_RATE,
                num_samples=n,
                split=item.labels["split"],
                group=item.group,
                source=source,
                labels=labels,
            )
        )
    return records


def _game_records(size: CorpusSize, seed: int, out: Path, deb_cache: Path) -> list[AudioRecord]:
    from muqkit.data.game import fetch_packages, list_tracks

    unpacked = fetch_packages(size.game_packages, deb_cache)
    return segment_tracks(unpacked, out, size=size, seed=seed, list_tracks=list_tracks)


def segment_tracks(
    unpacked: dict[str, Path],
    out: Path,
    *,
    size: CorpusSize,
    seed: int,
    list_tracks: Callable[[dict[str, Path]], list[Any]] | None = None,
) -> list[AudioRecord]:
    """Cut the tracks of unpacked game-music packages into corpus segments.

    Segments are spread evenly over each track; splits (90 % train, 10 % valid) are assigned per track.

    Args:
        unpacked: package name -> unpacked folder (as :func:`muqkit.data.game.fetch_packages` returns).
        out: the corpus folder.
        size: the corpus size (segment length and count).
        seed: split seed.
        list_tracks: track lister (defaults to :func:`muqkit.data.game.list_tracks`).

    Returns:
        Records of the segments, sorted by id.
    """
    from muqkit.audio.io import AudioError, load_audio
    from muqkit.data.game import list_tracks as default_list_tracks

    tracks = (list_tracks or default_list_tracks)(unpacked)
    audio_dir = out / "audio" / "game"
    audio_dir.mkdir(parents=True, exist_ok=True)
    groups = {t.path: f"game.{t.package}.{_slug(t.name)}" for t in tracks}
    splits = assign_splits(list(groups.values()), seed=seed, fractions=(0.9, 0.1, 0.0))
    seg = round(size.game_segment_seconds * SAMPLE_RATE)
    records: list[AudioRecord] = []
    for track in tracks:
        group = groups[track.path]
        index_file = out / "cache" / "game" / f"{group}.json"
        if index_file.is_file():
            ids = json.loads(index_file.read_text())
            if all((audio_dir / f"{i}.wav").is_file() for i in ids):
                starts = None
            else:
                ids = None
        else:
            ids = None
        if ids is None:
            try:
                audio = load_audio(track.path, sample_rate=SAMPLE_RATE).numpy()
            except AudioError as exc:
                logger.warning("skipping %s", exc)
                continue
            available = len(audio) // seg
            if available == 0:
                continue
            count = available if size.game_segments_per_track is None else min(available, size.game_segments_per_track)
            starts = [round(k * (available - 1) / max(count - 1, 1)) * seg for k in range(count)] if count > 1 else [0]
            ids = []
            for k, s in enumerate(starts):
                item_id = f"{group}.s{k:03d}"
                piece = audio[s : s + seg]
                peak = float(np.abs(piece).max())
                _write_wav(audio_dir / f"{item_id}.wav", piece * (0.99 / peak) if peak > 0.99 else piece)
                ids.append(item_id)
            index_file.parent.mkdir(parents=True, exist_ok=True)
            index_file.write_text(json.dumps(ids))
        for item_id in ids:
            records.append(
                AudioRecord(
                    id=item_id,
                    path=f"audio/game/{item_id}.wav",
                    duration=seg / SAMPLE_RATE,
                    sample_rate=SAMPLE_RATE,
                    num_samples=seg,
                    split=splits[group],
                    group=group,
                    source="game",
                    labels={"package": track.package, "track": track.name, "album": track.description, **track.tags},
                )
            )
    return sorted(records, key=lambda r: r.id)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in Path(text).with_suffix("").as_posix()).strip("-")


# --------------------------------------------------------------------------------------------------
# entry point


def build_corpus(
    out: str | os.PathLike[str],
    *,
    size: str | CorpusSize = "ci",
    seed: int = 0,
    game_music: bool = True,
    deb_cache: str | os.PathLike[str] | None = None,
    soundfonts: Iterable[str] | None = None,
    jobs: int = 1,
    sources: tuple[str, ...] = ("scores", "notes", "game"),
    upgrade: bool = False,
) -> CorpusSummary:
    """Build (or finish, or verify) a corpus in ``out``.

    Args:
        out: output folder; must be empty, missing, or hold a build with the same settings.
        size: a name of :data:`SIZES` or a :class:`CorpusSize`.
        seed: seed of every random choice and of the splits.
        game_music: include the Debian game-music pool (needs ``apt-get download``).
        deb_cache: where ``.deb`` files are downloaded and unpacked (default ``out/cache/debs``).
        soundfonts: GM soundfont files to use (default: Debian's, whichever are installed).
        jobs: parallel FluidSynth processes.
        sources: which of ``"scores"``, ``"notes"``, ``"game"`` to build.
        upgrade: add the frame labels of format 3 to a complete format-2 build of the same settings,
            reusing its audio (nothing is rendered; the scores are parsed again).

    Returns:
        A :class:`CorpusSummary`.

    Raises:
        CorpusMismatchError: ``out`` holds another build.
        SystemRequirementError: fluidsynth, a soundfont or a Debian tool is missing (says what to install).
    """
    t0 = time.perf_counter()
    if isinstance(size, str) and size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose from {sorted(SIZES)}")
    spec = SIZES[size] if isinstance(size, str) else size
    unknown = set(sources) - {"scores", "notes", "game"}
    if unknown:
        raise ValueError(f"unknown sources {sorted(unknown)}; choose from scores, notes, game")
    game_music = game_music and "game" in sources
    out = Path(out)
    fonts = find_soundfonts(list(soundfonts) if soundfonts is not None else None)
    stamp = {**_stamp(spec, seed, fonts, game_music), "sources": sorted(sources)}
    existing = _check_folder(out, stamp, upgrade)
    manifests = {s: out / f"{s}.jsonl" for s in sources if s != "game" or game_music}
    if existing is not None and existing.get("complete") and all(p.is_file() for p in manifests.values()):
        return CorpusSummary(out, existing["counts"], existing["hours"], 0.0)
    if "scores" in sources or "notes" in sources:
        require_fluidsynth()
    out.mkdir(parents=True, exist_ok=True)
    _write_stamp(out, {**stamp, "complete": False})

    counts: dict[str, int] = {}
    hours: dict[str, float] = {}
    for source in manifests:
        t = time.perf_counter()
        if source == "scores":
            plan = _plan_scores(spec, seed, fonts, out / "cache" / "scores")
            records = _render(plan, out, "scores", jobs, render=not upgrade)
        elif source == "notes":
            records = _render(_plan_notes(spec, seed, fonts), out, "notes", jobs)
        else:
            records = _game_records(spec, seed, out, Path(deb_cache) if deb_cache else out / "cache" / "debs")
        check_no_leakage(records)
        counts[source] = write_manifest(manifests[source], records)
        hours[source] = round(sum(r.duration for r in records) / 3600.0, 4)
        logger.info("%s: %d items, %.2f h, %.1f s", source, counts[source], hours[source], time.perf_counter() - t)
    final = {**stamp, "complete": True, "counts": counts, "hours": hours}
    _write_stamp(out, final)
    return CorpusSummary(out, counts, hours, time.perf_counter() - t0)


def corpus_size_table() -> str:
    """Markdown table of the predefined sizes (for documentation)."""
    rows = ["| size | " + " | ".join(f.name for f in SIZES["ci"].__dataclass_fields__.values()) + " |"]
    for spec in SIZES.values():
        rows.append("| " + " | ".join(str(v) for v in asdict(spec).values()) + " |")
    return "\n".join(rows)


__all__ = [
    "CorpusSize",
    "CorpusSummary",
    "CorpusMismatchError",
    "SIZES",
    "build_corpus",
    "segment_tracks",
    "GM_FAMILIES",
]
