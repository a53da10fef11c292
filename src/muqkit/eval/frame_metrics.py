"""Metrics of frame-level tasks through mir_eval, and the decoders that turn frame outputs into events.

- Beats and downbeats: F-measure with a 70 ms window (``mir_eval.beat.f_measure``), the mean over clips.
  Beats are decoded by peak picking, or with madmom's dynamic Bayesian network (``dbn=True``) as MARBLE does.
  Clips are not trimmed (mir_eval's ``evaluate`` drops the first 5 s, which would halve a 10 s clip).
- Chords: weighted overlap ratio of the ``majmin`` and ``mirex`` comparisons, weighted by duration over all
  clips together; references mir_eval cannot compare (``X``; non-major/minor chords for ``majmin``) are skipped.
- Melody: raw pitch accuracy, raw chroma accuracy and overall accuracy (``mir_eval.melody``) over all frames.
- Onsets: F-measure with a 50 ms window (``mir_eval.onset.f_measure``), the mean over clips.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def beat_f_measure(
    reference: Sequence[float] | np.ndarray, estimate: Sequence[float] | np.ndarray, *, window: float = 0.07
) -> float:
    """F-measure of beat times (seconds) within ``window`` seconds (0 when the reference is empty)."""
    import mir_eval

    ref, est = np.asarray(reference, dtype=float), np.asarray(estimate, dtype=float)
    if ref.size == 0:
        return float(est.size == 0)
    return float(mir_eval.beat.f_measure(ref, est, f_measure_threshold=window))


def onset_f_measure(
    reference: Sequence[float] | np.ndarray, estimate: Sequence[float] | np.ndarray, *, window: float = 0.05
) -> float:
    """F-measure of onset times (seconds) within ``window`` seconds."""
    import mir_eval

    ref, est = np.asarray(reference, dtype=float), np.asarray(estimate, dtype=float)
    if ref.size == 0:
        return float(est.size == 0)
    return float(mir_eval.onset.f_measure(ref, est, window=window)[0])


def chord_overlap(
    reference: Sequence[tuple[float, float, str]],
    estimate: Sequence[tuple[float, float, str]],
    *,
    comparisons: Sequence[str] = ("majmin", "mirex"),
) -> dict[str, tuple[float, float]]:
    """Correct and compared seconds of one clip per comparison (sum them over clips for the overlap ratio).

    Args:
        reference: ``(start, end, label)`` segments in mir_eval syntax.
        estimate: the same for the prediction (the gaps are ``N``).
        comparisons: names of ``mir_eval.chord`` comparison functions.

    Returns:
        comparison -> (correct seconds, compared seconds).
    """
    import mir_eval

    if not reference:
        return {c: (0.0, 0.0) for c in comparisons}
    ref_iv = np.array([[a, b] for a, b, _ in reference], dtype=float)
    ref_lab = [c for _, _, c in reference]
    if estimate:
        est_iv = np.array([[a, b] for a, b, _ in estimate], dtype=float)
        est_lab = [c for _, _, c in estimate]
    else:
        est_iv, est_lab = np.array([[ref_iv[0, 0], ref_iv[-1, 1]]]), ["N"]
    est_iv, est_lab = mir_eval.util.adjust_intervals(
        est_iv, est_lab, ref_iv.min(), ref_iv.max(), mir_eval.chord.NO_CHORD, mir_eval.chord.NO_CHORD
    )
    intervals, ref_m, est_m = mir_eval.util.merge_labeled_intervals(ref_iv, ref_lab, est_iv, est_lab)
    durations = mir_eval.util.intervals_to_durations(intervals)
    out = {}
    for name in comparisons:
        scores = np.asarray(getattr(mir_eval.chord, name)(ref_m, est_m), dtype=float)
        valid = scores >= 0
        out[name] = (float((scores[valid] * durations[valid]).sum()), float(durations[valid].sum()))
    return out


def melody_accuracy(reference: np.ndarray, estimate: np.ndarray, *, frame_rate: float = 25.0) -> dict[str, float]:
    """Raw pitch, raw chroma and overall accuracy of per-frame MIDI pitches (0 unvoiced; negative skipped).

    Args:
        reference: (frames,) true MIDI pitch per frame, 0 where unvoiced, < 0 where unknown (left out).
        estimate: (frames,) predicted MIDI pitch per frame, 0 where unvoiced.
        frame_rate: frames per second.
    """
    import mir_eval

    reference, estimate = np.asarray(reference, dtype=float), np.asarray(estimate, dtype=float)
    if reference.shape != estimate.shape:
        raise ValueError(f"reference and estimate need one value per frame, got {reference.shape}, {estimate.shape}")
    keep = reference >= 0
    reference, estimate = reference[keep], estimate[keep]
    if reference.size == 0:
        raise ValueError("no frames with a reference melody")
    times = np.arange(reference.size) / frame_rate

    def hz(midi: np.ndarray) -> np.ndarray:
        return np.where(midi > 0, 440.0 * 2.0 ** ((midi - 69.0) / 12.0), 0.0)

    ref_v, ref_c, est_v, est_c = mir_eval.melody.to_cent_voicing(times, hz(reference), times, hz(estimate))
    return {
        "rpa": float(mir_eval.melody.raw_pitch_accuracy(ref_v, ref_c, est_v, est_c)),
        "rca": float(mir_eval.melody.raw_chroma_accuracy(ref_v, ref_c, est_v, est_c)),
        "oa": float(mir_eval.melody.overall_accuracy(ref_v, ref_c, est_v, est_c)),
    }


# --------------------------------------------------------------------------------------------------
# decoders


def pick_peaks(activation: np.ndarray, *, threshold: float, frame_rate: float = 25.0, radius: int = 2) -> np.ndarray:
    """Event times (frame centres, seconds) of local maxima of ``activation`` (frames,) at or above ``threshold``.

    A peak is the largest value within ``radius`` frames on either side (the first of equal values).

    Example:
        >>> pick_peaks(np.array([0, 0.2, 0.9, 0.3, 0, 0, 0.6, 0.6, 0]), threshold=0.5)
        array([0.1 , 0.26])
    """
    act = np.asarray(activation, dtype=float)
    peaks = []
    for i in range(act.size):
        if act[i] < threshold:
            continue
        lo, hi = max(0, i - radius), min(act.size, i + radius + 1)
        window = act[lo:hi]
        if act[i] == window.max() and int(np.argmax(window)) + lo == i:
            peaks.append(i)
    return (np.asarray(peaks, dtype=float) + 0.5) / frame_rate


def dbn_beats(activation: np.ndarray, *, frame_rate: float = 25.0) -> np.ndarray:
    """Beat times from a beat activation (frames,) with madmom's DBN beat tracker (MARBLE's post-processing)."""
    from muqkit.eval.features import import_madmom

    import_madmom()
    from madmom.features.beats import DBNBeatTrackingProcessor

    act = np.clip(np.asarray(activation, dtype=np.float32), 1e-6, 1 - 1e-6)
    return np.asarray(DBNBeatTrackingProcessor(fps=frame_rate)(act), dtype=float) + 0.5 / frame_rate


def dbn_downbeats(activation: np.ndarray, *, frame_rate: float = 25.0) -> np.ndarray:
    """Downbeat times from (frames, 2) beat and downbeat activations with madmom's DBN bar tracker (2-4 beats)."""
    from muqkit.eval.features import import_madmom

    import_madmom()
    from madmom.features.downbeats import DBNDownBeatTrackingProcessor

    act = np.asarray(activation, dtype=np.float32)
    # madmom wants (beat that is no downbeat, downbeat)
    pair = np.stack([np.clip(act[:, 0] - act[:, 1], 0, 1), act[:, 1]], axis=1).clip(1e-6, 1 - 1e-6)
    out = np.asarray(DBNDownBeatTrackingProcessor(beats_per_bar=[2, 3, 4], fps=frame_rate)(pair))
    if out.size == 0:
        return np.zeros(0)
    return out[out[:, 1] == 1, 0].astype(float) + 0.5 / frame_rate


def frames_to_segments(
    classes: np.ndarray, names: Sequence[str], *, frame_rate: float = 25.0
) -> list[tuple[float, float, str]]:
    """Merge per-frame class indices into ``(start, end, name)`` segments.

    Example:
        >>> frames_to_segments(np.array([0, 0, 1]), ["C:maj", "N"])
        [(0.0, 0.08, 'C:maj'), (0.08, 0.12, 'N')]
    """
    out: list[tuple[float, float, str]] = []
    for i, c in enumerate(np.asarray(classes)):
        start, end, name = i / frame_rate, (i + 1) / frame_rate, names[int(c)]
        if out and out[-1][2] == name:
            out[-1] = (out[-1][0], end, name)
        else:
            out.append((start, end, name))
    return out


__all__ = [
    "beat_f_measure",
    "chord_overlap",
    "dbn_beats",
    "dbn_downbeats",
    "frames_to_segments",
    "melody_accuracy",
    "onset_f_measure",
    "pick_peaks",
]
