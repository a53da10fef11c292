"""The corpus's rendering plan: which notes are played, by which instrument, at which tempo.

Scores come from music21's catalogue (:mod:`muqkit.data.corpus.scores`, parsed once and cached as JSON);
single notes are drawn per (soundfont, GM program) instrument, NSynth-style. Every random choice is
drawn from a generator seeded by ``(seed, item id)`` (:func:`item_rng`), so the plan does not depend on
processing order, and splits are assigned per group (score, instrument).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from muqkit.data.corpus.midi import MELODIC_FAMILIES, Note, gm_family
from muqkit.data.corpus.sizes import CorpusSize
from muqkit.data.manifest import assign_splits
from muqkit.data.theory import Bar, beat_quarters, key_label

logger = logging.getLogger(__name__)

NOTE_VELOCITIES: tuple[int, ...] = (25, 50, 75, 100, 127)  # NSynth's velocities


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
@dataclass(frozen=True)
class PlannedItem:
    """A planned rendered item: its record fields and its slot (times relative to the slot start).

    Attributes:
        labels: the manifest record's labels (``split`` is the record's split, not a label).
        soundfont: the soundfont file it is rendered with.
        bars: the score's measures (score items: their beats and downbeats).
        score_length: the score's length in quarter notes (score items: no beats after it).
    """

    id: str
    source: str
    group: str
    duration: float
    programs: tuple[tuple[int, int], ...]
    notes: tuple[Note, ...]
    labels: dict[str, Any] = field(default_factory=dict)
    soundfont: str = ""
    bars: tuple[Bar, ...] = ()
    score_length: float | None = None


def item_rng(seed: int, *keys: object) -> random.Random:
    """A generator seeded by ``(seed, *keys)`` through SHA-256 (the same on every machine and run)."""
    digest = hashlib.sha256(":".join(map(str, (seed, *keys))).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def plan_scores(
    size: CorpusSize, seed: int, soundfonts: list[Path], cache: Path, log_every: int = 50
) -> list[PlannedItem]:
    """Plan the renderings of each collection's first usable scores (in a seeded order); parsed scores are
    cached as JSON in ``cache``. Splits are assigned per score."""
    from muqkit.data.corpus.scores import COLLECTIONS, ParsedScore, ScoreRejected, corpus_root, list_scores, parse_score

    root = corpus_root()
    cache.mkdir(parents=True, exist_ok=True)
    items: list[PlannedItem] = []
    for collection in COLLECTIONS:
        refs = list_scores(collection, root)
        item_rng(seed, "order", collection).shuffle(refs)
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
                item = score_item(score, r, size, seed, soundfonts)
                if item is not None:
                    item.labels["split"] = splits[score.ref.id]
                    items.append(item)
    return items


def score_item(score: Any, render: int, size: CorpusSize, seed: int, soundfonts: list[Path]) -> PlannedItem | None:
    """Plan rendering ``render`` of a parsed score (``None`` when no note falls in the clip)."""
    rng = item_rng(seed, score.ref.id, render)
    soundfont = rng.choice(soundfonts)
    transpose = rng.randint(-5, 6)
    qpm = float(rng.randint(60, 150))
    beat = beat_quarters(score.metre, score.dance)
    if score.dance in DANCE_BPM:  # drawn from its own generator: the item's other draws stay as they were
        low, high = DANCE_BPM[score.dance]
        qpm = item_rng(seed, score.ref.id, render, "dance-tempo").randint(low, high) * beat
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
        labels["key"] = key_label(score.tonic + transpose, score.mode)
        labels["mode"] = score.mode
    else:
        labels["key_issue"] = score.key_issue
    return PlannedItem(
        id=f"{score.ref.id}.r{render}",
        source="scores",
        group=score.ref.id,
        duration=float(duration),
        programs=tuple(zip(channels, programs, strict=False)),
        notes=tuple(notes),
        labels=labels,
        soundfont=str(soundfont),
        bars=score.bars,
        score_length=score.length,
    )


def plan_notes(size: CorpusSize, seed: int, soundfonts: list[Path]) -> list[PlannedItem]:
    """Plan the single notes: per soundfont and melodic family, ``programs_per_family`` programs, each
    playing ``pitches_per_instrument`` pitches. Splits are assigned per instrument."""
    items: list[PlannedItem] = []
    instruments: list[tuple[Path, int]] = []
    for soundfont in soundfonts:
        for family in MELODIC_FAMILIES:
            rng = item_rng(seed, "programs", soundfont.name, family)
            offsets = sorted(rng.sample(range(8), size.programs_per_family))
            instruments.extend((soundfont, family * 8 + o) for o in offsets)
    groups = [f"{sf_.stem}.p{program:03d}" for sf_, program in instruments]
    splits = assign_splits(groups, seed=seed)
    hold = size.note_seconds * 2.0 / 3.0
    for (soundfont, program), group in zip(instruments, groups, strict=True):
        rng = item_rng(seed, "notes", group)
        low, high = (28, 67) if gm_family(program) == "bass" else (40, 88)
        for pitch in sorted(rng.sample(range(low, high + 1), size.pitches_per_instrument)):
            velocity = rng.choice(NOTE_VELOCITIES)
            items.append(
                PlannedItem(
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
                    },
                    soundfont=str(soundfont),
                )
            )
    return items


__all__ = [
    "DANCE_BPM",
    "NOTE_VELOCITIES",
    "PlannedItem",
    "item_rng",
    "plan_notes",
    "plan_scores",
    "score_item",
]
