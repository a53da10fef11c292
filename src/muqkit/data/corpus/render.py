"""Rendering a corpus plan: FluidSynth timelines per soundfont, the loudness policy, WAV files and records.

Items of one soundfont are rendered together on one timeline (:func:`soundfont_batches`) and cut apart; a finished
batch leaves a JSON note in ``out/cache/render`` so an interrupted build resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf

from muqkit.atomic import atomic_path
from muqkit.data.corpus.fluidsynth import render_slots
from muqkit.data.corpus.midi import Slot
from muqkit.data.corpus.plan import PlannedItem
from muqkit.data.corpus.sizes import SAMPLE_RATE, CorpusMismatchError
from muqkit.data.labels import ScoreLabels, labels_path, score_labels, write_labels
from muqkit.data.manifest import AudioRecord

logger = logging.getLogger(__name__)


def write_wav(path: Path, audio: np.ndarray) -> None:
    """Write ``audio`` as a 24 kHz 16-bit WAV file, atomically."""
    with atomic_path(path, suffix=".wav") as tmp:
        sf.write(tmp, audio, SAMPLE_RATE, subtype="PCM_16")


def finish(audio: np.ndarray, source: str) -> np.ndarray | None:
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


def soundfont_batches(items: list[PlannedItem], max_seconds: float = 600.0) -> list[list[PlannedItem]]:
    """Group items by soundfont into timelines of at most ``max_seconds``."""
    by_font: dict[str, list[PlannedItem]] = {}
    for item in items:
        by_font.setdefault(item.soundfont, []).append(item)
    out: list[list[PlannedItem]] = []
    for font in sorted(by_font):
        batch: list[PlannedItem] = []
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


def render_batch(batch: list[PlannedItem], audio_dir: Path, done_dir: Path, render: bool = True) -> list[str]:
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
    audios = render_slots(slots, batch[0].soundfont, sample_rate=SAMPLE_RATE)
    kept = []
    for item, audio in zip(batch, audios, strict=True):
        finished = finish(audio, item.source)
        if finished is None:
            logger.debug("%s is silent; dropped", item.id)
            continue
        write_wav(audio_dir / f"{item.id}.wav", finished)
        kept.append(item.id)
    done.write_text(json.dumps(kept))
    return kept


def write_item_labels(root: Path, item: PlannedItem) -> ScoreLabels:
    """Write the frame-label sidecar of a planned score item (its notes, bars and tempo)."""
    labels = score_labels(
        item.id,
        item.notes,
        duration=item.duration,
        bars=item.bars,
        qpm=item.labels["tempo_qpm"],
        dance=item.labels.get("dance", ""),
        score_length=item.score_length,
        polyphonic=item.labels["num_parts"] > 1,
    )
    write_labels(labels_path(root, item.id), labels)
    return labels


def render_items(
    items: list[PlannedItem], out: Path, source: str, jobs: int, render: bool = True
) -> list[AudioRecord]:
    """Render ``items`` of one ``source`` into ``out/audio/<source>/`` (``jobs`` FluidSynth processes at a
    time) and return the records of the files kept (silent items are dropped), sorted by id."""
    audio_dir = out / "audio" / source
    done_dir = out / "cache" / "render"
    audio_dir.mkdir(parents=True, exist_ok=True)
    done_dir.mkdir(parents=True, exist_ok=True)
    batches = soundfont_batches(items)
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:  # fluidsynth runs as a subprocess
        kept_lists = list(pool.map(lambda b: render_batch(b, audio_dir, done_dir, render), batches))
    kept = {i for ids in kept_lists for i in ids}
    records = []
    for item in sorted(items, key=lambda i: i.id):
        if item.id not in kept:
            continue
        labels = {k: v for k, v in item.labels.items() if k != "split"}
        if source == "scores":
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


__all__ = ["soundfont_batches", "finish", "render_batch", "render_items", "write_item_labels", "write_wav"]
