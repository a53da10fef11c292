"""Tiny fabricated data sets in MARBLE's layout, for tests and for trying the suite without downloads."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from muqkit.eval.marble import MARBLE_ADAPTERS

#: Labels of the three clips of each split, per task.
LABELS: dict[str, list] = {
    "gtzan": ["blues", "rock", "jazz"],
    "mtt": [["guitar", "rock"], ["piano"], ["guitar"]],
    "gs-key": ["Db major", "A minor", "C major"],
    "emo": [[0.1, -0.2], [0.5, 0.3], [-0.4, 0.0]],
    "nsynth-instrument": ["brass", "guitar", "brass"],
    "nsynth-pitch": [60, 62, 60],
    "vocalset-singer": ["f1", "m2", "f1"],
    "vocalset-technique": ["vibrato", "belt", "vibrato"],
    "hooktheory-key": ["D major", "A dorian", "E minor"],  # the modal key is dropped
    "hooktheory-structure": [["chorus"], ["intro", "verse"], "verse"],
}


def make_marble_root(
    root: str | os.PathLike[str], task: str, *, split_names: tuple[str, ...] = ("train", "val", "test")
) -> Path:
    """Write ``root/data/<NAME>/`` for a MARBLE task: three 1 s clips per split and one JSONL per split.

    Args:
        root: the MARBLE root to create.
        task: a name of :data:`muqkit.eval.marble.MARBLE_ADAPTERS`.
        split_names: which split files to write (MARBLE calls validation ``val``).

    Returns:
        ``root``.
    """
    import soundfile as sf

    root = Path(root)
    adapter = MARBLE_ADAPTERS[task]
    folder = root / "data" / adapter.dataset
    (folder / "audio").mkdir(parents=True, exist_ok=True)
    for split in split_names:
        lines = []
        for i, label in enumerate(LABELS[task]):
            rel = f"data/{adapter.dataset}/audio/{split}{i}.wav"
            sr = 16000
            sf.write(root / rel, 0.1 * np.sin(np.arange(sr) * 0.02 * (i + 1)).astype(np.float32), sr)
            entry = {"audio_path": rel, "duration": 1.0, "sample_rate": sr, "num_samples": sr, "bit_depth": 16,
                     "channels": 1}  # fmt: skip
            if adapter.label_field:
                entry["label"] = {adapter.label_field: label, "other": 0}
            else:
                entry["label"] = label
            lines.append(json.dumps(entry))
        (folder / f"{adapter.dataset}.{split}.jsonl").write_text("\n".join(lines) + "\n")
    return root


def make_marble_frame_root(
    root: str | os.PathLike[str], task: str, *, split_names: tuple[str, ...] = ("train", "val", "test")
) -> Path:
    """Write ``root/data/<NAME>/`` for a MARBLE frame task (``chords1217``, ``gtzan-beat``): two 4 s clips per
    split (clicks on a 0.5 s beat, a bar of four; or two chords of 2 s) and one JSONL per split."""
    import soundfile as sf

    from muqkit.eval.marble_frames import MARBLE_FRAME_ADAPTERS

    root = Path(root)
    adapter = MARBLE_FRAME_ADAPTERS[task]
    folder = root / "data" / adapter.dataset
    (folder / "audio").mkdir(parents=True, exist_ok=True)
    sr = 16000
    t = np.arange(4 * sr) / sr
    for split in split_names:
        lines = []
        for i in range(2):
            rel = f"data/{adapter.dataset}/audio/{split}{i}.wav"
            if adapter.frame_task == "beat":
                beats = [round(0.25 + 0.5 * k + 0.05 * i, 3) for k in range(7)]
                audio = np.zeros_like(t)
                for k, b in enumerate(beats):
                    n = int(b * sr)
                    audio[n : n + 160] = (0.8 if k % 4 == 0 else 0.4) * np.sin(np.arange(160) * 0.5)
                label: object = {"beat": beats, "downbeat": beats[::4], "tempo": 120.0, "meter": "4/4"}
            else:
                roots = (60 + i, 65 + i)  # a major triad on each
                audio = np.zeros_like(t) + sum(
                    0.05 * np.sin(2 * np.pi * 440 * 2 ** ((r + iv - 69) / 12) * t) * ((t >= 2 * k) & (t < 2 * k + 2))
                    for k, r in enumerate(roots)
                    for iv in (0, 4, 7)
                )
                names = ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
                label = [
                    {"start_time": 2.0 * k, "end_time": 2.0 * k + 2, "chord_str": f"{names[r % 12]}:maj"}
                    for k, r in enumerate(roots)
                ]
            sf.write(root / rel, np.asarray(audio, dtype=np.float32), sr)
            entry = {"audio_path": rel, "label": label, "duration": 4.0, "sample_rate": sr, "num_samples": 4 * sr,
                     "bit_depth": 16, "channels": 1}  # fmt: skip
            lines.append(json.dumps(entry))
        (folder / f"{adapter.dataset}.{split}.jsonl").write_text("\n".join(lines) + "\n")
    return root


def make_frame_corpus(root: str | os.PathLike[str], fmt: int = 3) -> Path:
    """A corpus folder of format ``fmt`` with six single-part 4 s clips (two per split) of clicks on a beat
    (0.4-0.65 s apart, a bar of four), their frame-label sidecars and ``scores.jsonl``."""
    import soundfile as sf

    from muqkit.data.labels import ScoreLabels, labels_path, write_labels
    from muqkit.data.manifest import AudioRecord, write_manifest

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    records = []
    for k, split in enumerate(("train", "train", "valid", "valid", "test", "test")):
        period = 0.4 + 0.05 * k
        beats = tuple((round(float(t), 4), 1 + j % 4) for j, t in enumerate(np.arange(0.2, 3.9, period)))
        audio = np.zeros(96000, dtype=np.float32)
        for t, pos in beats:
            i = int(t * 24000)
            audio[i : i + 240] = (0.9 if pos == 1 else 0.5) * np.sin(np.arange(240) * 0.3)
        sf.write(root / f"c{k}.wav", audio, 24000)
        labels = ScoreLabels(f"c{k}", 4.0, beats, (), (), tuple(t for t, _ in beats))
        write_labels(labels_path(root, f"c{k}"), labels)
        records.append(AudioRecord(f"c{k}", f"c{k}.wav", 4.0, 24000, 96000, split, f"g{k}", "scores", {"num_parts": 1}))
    write_manifest(root / "scores.jsonl", records)
    (root / "corpus.json").write_text(json.dumps({"format": fmt}))
    return root
