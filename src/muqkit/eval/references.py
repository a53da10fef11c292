"""External frame-level references scored with the frame tasks' metrics, no probe: madmom's RNN + DBN
downbeat tracker (``madmom-beats``) and its CNN + CRF chord recogniser (``madmom-chords``)."""

from __future__ import annotations

import logging
import time

import numpy as np

from muqkit.audio.mel import SAMPLE_RATE
from muqkit.eval import frame_metrics as fm
from muqkit.eval.cache import read_record
from muqkit.eval.features import import_madmom
from muqkit.eval.frame_tasks import FrameTaskData

logger = logging.getLogger(__name__)

#: reference name -> the frame task it answers.
REFERENCES: dict[str, str] = {"madmom-beats": "beat", "madmom-chords": "chord"}


def madmom_reference(name: str, task: FrameTaskData, split: str = "test") -> dict[str, float]:
    """Scores of madmom's own beat or chord model on a split (no probe): ``madmom-beats`` or ``madmom-chords``."""
    import soxr

    if REFERENCES.get(name) != task.spec.name:
        raise ValueError(f"{name} is a reference for the {REFERENCES.get(name)} task, not {task.name}")
    madmom = import_madmom()
    records = task.records[split]
    if name == "madmom-beats":
        from madmom.features.downbeats import DBNDownBeatTrackingProcessor, RNNDownBeatProcessor

        rnn, dbn = RNNDownBeatProcessor(), DBNDownBeatTrackingProcessor(beats_per_bar=[2, 3, 4], fps=100)
    else:
        from madmom.features.chords import CNNChordFeatureProcessor, CRFChordRecognitionProcessor

        cnn, crf = CNNChordFeatureProcessor(), CRFChordRecognitionProcessor()
    beat_f, down_f = [], []
    sums = {"majmin": [0.0, 0.0], "mirex": [0.0, 0.0]}
    start = time.perf_counter()
    for i, r in enumerate(records, 1):
        if i % 10 == 0 or i == len(records):
            logger.info("%s: %d/%d %s clips (%.0f s)", name, i, len(records), split, time.perf_counter() - start)
        audio = soxr.resample(read_record(r, task.root).numpy().astype(np.float32), SAMPLE_RATE, 44100)
        signal = madmom.audio.Signal(audio, sample_rate=44100, num_channels=1)
        labels = task.labels[r.id]
        if name == "madmom-beats":
            found = np.asarray(dbn(rnn(signal)))
            beats = found[:, 0] if found.size else np.zeros(0)
            downs = found[found[:, 1] == 1, 0] if found.size else np.zeros(0)
            beat_f.append(fm.beat_f_measure([t for t, _ in labels.beats], beats))
            down_f.append(fm.beat_f_measure(labels.downbeats, downs))
        else:
            segments = [(float(a), float(b), str(c)) for a, b, c in crf(cnn(signal))]
            for k, (right, total) in fm.chord_overlap(labels.chords, segments).items():
                sums[k][0] += right
                sums[k][1] += total
    if name == "madmom-beats":
        return {"beat_f": float(np.mean(beat_f)), "downbeat_f": float(np.mean(down_f))}
    return {k: v[0] / max(v[1], 1e-9) for k, v in sums.items()}


__all__ = ["REFERENCES", "madmom_reference"]
