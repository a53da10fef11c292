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

This module is the builder (stamp, resume, one manifest per source); its parts live beside it: the sizes
in :mod:`~muqkit.data.corpus.sizes`, the format version in :mod:`~muqkit.data.corpus.format`, the plan of
what is played in :mod:`~muqkit.data.corpus.plan` (scores parsed by :mod:`~muqkit.data.corpus.scores`),
rendering in :mod:`~muqkit.data.corpus.render` and :mod:`~muqkit.data.corpus.fluidsynth`, the game-music
segments in :mod:`~muqkit.data.corpus.game`; manifests and splits in :mod:`muqkit.data.manifest`.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from muqkit.atomic import atomic_path
from muqkit.data.corpus.fluidsynth import find_soundfonts, require_fluidsynth
from muqkit.data.corpus.format import FORMAT_VERSION, check_upgradable
from muqkit.data.corpus.game import game_records
from muqkit.data.corpus.plan import plan_notes, plan_scores
from muqkit.data.corpus.render import render_items
from muqkit.data.corpus.sizes import SAMPLE_RATE, SIZES, CorpusMismatchError, CorpusSize
from muqkit.data.manifest import check_no_leakage, write_manifest

logger = logging.getLogger(__name__)


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
            plan = plan_scores(spec, seed, fonts, out / "cache" / "scores")
            records = render_items(plan, out, "scores", jobs, render=not upgrade)
        elif source == "notes":
            records = render_items(plan_notes(spec, seed, fonts), out, "notes", jobs)
        else:
            records = game_records(spec, seed, out, Path(deb_cache) if deb_cache else out / "cache" / "debs")
        check_no_leakage(records)
        counts[source] = write_manifest(manifests[source], records)
        hours[source] = round(sum(r.duration for r in records) / 3600.0, 4)
        logger.info("%s: %d items, %.2f h, %.1f s", source, counts[source], hours[source], time.perf_counter() - t)
    final = {**stamp, "complete": True, "counts": counts, "hours": hours}
    _write_stamp(out, final)
    return CorpusSummary(out, counts, hours, time.perf_counter() - t0)


__all__ = ["CorpusSummary", "build_corpus"]
