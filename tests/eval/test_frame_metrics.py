"""Frame-level metrics against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("mir_eval")

from muqkit.eval.frame_metrics import (  # noqa: E402
    beat_f_measure,
    chord_overlap,
    frames_to_segments,
    melody_accuracy,
    onset_f_measure,
    pick_peaks,
)


def test_beat_f_measure_by_hand():
    # 1.05 and 3.0 fall within 70 ms of a beat, 2.1 does not: P = 2/3, R = 2/4, F = 4/7
    assert beat_f_measure([1.0, 2.0, 3.0, 4.0], [1.05, 2.1, 3.0]) == pytest.approx(4 / 7)
    assert beat_f_measure([1.0, 2.0], [1.0, 2.0]) == 1.0
    assert beat_f_measure([1.0, 2.0], []) == 0.0


def test_onset_f_measure_by_hand():
    # 50 ms window: 0.54 matches 0.5, 1.07 misses 1.0; P = 1/2, R = 1/3, F = 0.4
    assert onset_f_measure([0.5, 1.0, 1.5], [0.54, 1.07]) == pytest.approx(0.4)


def test_chord_overlap_by_hand():
    ref = [(0, 2, "C:maj"), (2, 4, "A:min7"), (4, 5, "X"), (5, 6, "N"), (6, 7, "B:dim")]
    est = [(0, 1, "C:maj"), (1, 4, "A:min"), (4, 6, "N"), (6, 7, "B:dim")]
    scores = chord_overlap(ref, est)
    # majmin: 0-1 right, 1-2 wrong, 2-4 right (A:min7 -> A:min), X and B:dim skipped, 5-6 N right: 4 of 5 s
    assert scores["majmin"] == pytest.approx((4.0, 5.0))
    # mirex: A:min shares three notes with A:min7; B:dim is compared (right); X skipped: 5 of 6 s
    assert scores["mirex"] == pytest.approx((5.0, 6.0))


def test_melody_accuracy_by_hand():
    ref = np.array([60, 60, 0, 62, -1])
    est = np.array([60, 72, 0, 0, 50])
    m = melody_accuracy(ref, est)
    # voiced reference frames 0, 1, 3: pitch right on 0; chroma right on 0 and 1 (octave); the last frame skipped
    assert m["rpa"] == pytest.approx(1 / 3)
    assert m["rca"] == pytest.approx(2 / 3)
    assert m["oa"] == pytest.approx(2 / 4)  # frame 0 and the unvoiced frame 2


def test_decoders():
    assert pick_peaks(np.array([0, 0.2, 0.9, 0.3, 0, 0, 0.6, 0.6, 0]), threshold=0.5) == pytest.approx([0.1, 0.26])
    segments = frames_to_segments(np.array([0, 0, 1, 1, 0]), ["C:maj", "N"])
    assert [(round(a, 6), round(b, 6), c) for a, b, c in segments] == [
        (0.0, 0.08, "C:maj"),
        (0.08, 0.16, "N"),
        (0.16, 0.2, "C:maj"),
    ]


def test_madmom_dbn_tracks_a_regular_activation():
    from muqkit.eval.frame_metrics import dbn_beats

    try:
        from muqkit.eval.features import import_madmom

        import_madmom()
    except ImportError:
        pytest.skip("needs madmom")
    act = np.full(250, 0.02)
    act[::12] = 0.9  # a beat every 0.48 s (125 bpm) at 25 Hz
    beats = dbn_beats(act)
    assert beat_f_measure(np.arange(0, 250, 12) / 25 + 0.02, beats) > 0.9
