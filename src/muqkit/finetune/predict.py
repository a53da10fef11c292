"""Run a fine-tuned model (``muqkit finetune``'s folder) on audio files.

Clip tasks give a label (the class, the tags above 0.5, or the regression values) and the scores; frame
tasks give beat and downbeat times, onset times, chord segments (also writable as ``.lab``) or the
melody's MIDI pitch per frame (0 unvoiced).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from muqkit.audio.mel import SAMPLE_RATE
from muqkit.finetune.model import TaskHead, TaskModel, load_head

FRAME_RATE = 25.0


def load_finetuned(folder: str | os.PathLike[str]) -> TaskModel:
    """The backbone (``folder/model``) and head of a fine-tuned run, in eval mode."""
    from muqkit import MuQ

    folder = Path(folder)
    head = load_head(folder)
    return TaskModel(MuQ.from_pretrained(folder / "model"), head).eval()


def _decode(head: TaskHead, out: np.ndarray) -> dict[str, Any]:
    spec = head.spec
    if spec.kind in ("key", "multiclass"):
        return {"label": spec.classes[int(out.argmax())], "scores": out.tolist()}
    if spec.kind == "multilabel":
        probs = 1 / (1 + np.exp(-out))
        return {"labels": [c for c, p in zip(spec.classes, probs, strict=True) if p > 0.5], "scores": probs.tolist()}
    if spec.kind == "regression":
        values = out * np.asarray(spec.target_std or 1.0) + np.asarray(spec.target_mean or 0.0)
        return {"values": values.tolist()}
    from muqkit.eval import frame_metrics as fm

    if spec.kind == "events":
        probs = 1 / (1 + np.exp(-out))
        times = [fm.pick_peaks(probs[:, k], threshold=spec.threshold).round(3).tolist() for k in range(out.shape[1])]
        if spec.task == "beat":
            return {"beats": times[0], "downbeats": times[1]}
        return {"onsets": times[0]}
    classes = out.argmax(1)
    if spec.task == "chord":
        segments = fm.frames_to_segments(classes, spec.classes)
        return {"chords": [[round(a, 3), round(b, 3), c] for a, b, c in segments]}
    from muqkit.data.labels import MELODY_LOW

    return {"frame_rate": FRAME_RATE, "midi": np.where(classes > 0, classes + MELODY_LOW - 1, 0).tolist()}


@torch.no_grad()
def predict_files(model: TaskModel, files: Sequence[str | os.PathLike[str]]) -> list[dict[str, Any]]:
    """One result dict per file (``{"file": ..., **prediction}``)."""
    from muqkit.audio.io import load_audio

    results = []
    for path in files:
        wav = load_audio(path, sample_rate=SAMPLE_RATE)
        out, frames = model(wav[None], torch.tensor([len(wav)]))
        o = out[0].float()
        o = o[: int(frames[0])] if o.dim() == 2 else o
        results.append({"file": str(path), "task": model.head.spec.task, **_decode(model.head, o.numpy())})
    return results


def chords_to_lab(chords: Sequence[Sequence[Any]]) -> str:
    """``start end label`` lines (the ``.lab`` format of chord annotations)."""
    return "".join(f"{a:.3f}\t{b:.3f}\t{c}\n" for a, b, c in chords)


__all__ = ["chords_to_lab", "load_finetuned", "predict_files"]
