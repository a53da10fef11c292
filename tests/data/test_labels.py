"""Frame labels of rendered scores, checked by hand on a Bach chorale and a hand-written jig."""

from __future__ import annotations

from collections import namedtuple

import numpy as np
import pytest

from muqkit.data.labels import ScoreLabels, frame_targets, read_labels, score_labels, write_labels
from muqkit.data.theory import (
    IGNORE,
    MAJMIN_CLASSES,
    Bar,
    beat_positions,
    chord_segments,
    majmin_index,
    melody_segments,
    name_chord,
)

N = namedtuple("N", "start end pitch")

JIG = """X:1
T:Test jig
M:6/8
L:1/8
R:jig
K:G
D | GAB cde | d3 B2 z |
"""


def _notes(parts, sec=1.0):
    return [N(on * sec, (on + dur) * sec, p) for part in parts for on, dur, p in part]


def test_chord_names_and_classes():
    assert name_chord([48, 52, 55]) == "C:maj"
    assert name_chord([52, 60, 67]) == "C:maj/3"
    assert name_chord([55, 60, 64]) == "C:maj/5"
    assert name_chord([57, 60, 64, 67]) == "A:min7"  # the bass's reading wins over C:maj6
    assert name_chord([48, 57, 64, 67]) == "C:maj6"
    assert name_chord([43, 59, 62, 65]) == "G:7"
    assert name_chord([47, 62, 65]) == "B:dim"
    assert name_chord([43, 53, 59]) == "G:7"  # no fifth
    assert name_chord([]) == "N"
    assert name_chord([60, 61, 62]) == "X"
    assert MAJMIN_CLASSES[majmin_index("G:7")] == "G:maj"
    assert MAJMIN_CLASSES[majmin_index("F#:min7/b3")] == "F#:min"
    assert majmin_index("B:dim") == IGNORE and majmin_index("X") == IGNORE
    assert MAJMIN_CLASSES[majmin_index("N")] == "N" and len(MAJMIN_CLASSES) == 25


def test_chord_labels_parse_in_mir_eval():
    mir_eval = pytest.importorskip("mir_eval")
    for label in ("C:maj/3", "A:min7", "Bb:hdim7/b7", "F#:min/b3", "Db:maj6", "E:sus4"):
        mir_eval.chord.encode(label)  # raises on a malformed label


def test_dyads_continue_the_chord_they_belong_to():
    # C major triad for a second, then only C and G (part of it), then C and D (not part of it), then silence
    notes = [(0, 1, 48), (0, 2, 55), (0, 1, 64), (1, 2, 60), (2, 3, 60), (2, 3, 62)]
    assert chord_segments(notes, 4.0) == [(0, 2, "C:maj"), (2, 3, "X"), (3, 4.0, "N")]


def test_melody_is_the_top_line_and_restruck_notes_split():
    notes = [(0, 1, 60), (0, 1, 64), (1, 2, 64), (2.5, 3, 62)]
    assert melody_segments(notes, 4.0) == [(0, 1, 64), (1, 2, 64), (2.5, 3, 62)]


def test_beats_of_a_pickup_and_a_metre_change():
    bars = [Bar(0.0, 1.0, 3.0, "4/4"), Bar(1.0, 4.0, 0.0, "4/4"), Bar(5.0, 3.0, 0.0, "3/4")]
    assert beat_positions(bars) == [(0.0, 4), (1.0, 1), (2.0, 2), (3.0, 3), (4.0, 4), (5.0, 1), (6.0, 2), (7.0, 3)]
    # a reel in 4/4 is felt in two; a jig in 6/8 in dotted quarters
    assert beat_positions([Bar(0.0, 4.0, 0.0, "4/4")], dance="reel") == [(0.0, 1), (2.0, 2)]
    assert beat_positions([Bar(0.0, 0.5, 2.5, "6/8"), Bar(0.5, 3.0, 0.0, "6/8")]) == [(0.5, 1), (2.0, 2)]


def test_hand_written_jig(tmp_path):
    pytest.importorskip("music21")
    from muqkit.data.corpus.scores import ScoreRef, parse_score

    (tmp_path / "tunes").mkdir()
    (tmp_path / "tunes" / "jig.abc").write_text(JIG)
    score = parse_score(ScoreRef("ryans_mammoth", "tunes/jig.abc", 0), tmp_path)
    assert score.metre == "6/8" and score.dance == "jig"
    assert score.bars[0] == Bar(0.0, 0.5, 2.5, "6/8")  # the pickup: one eighth of a 6/8 bar
    labels = score_labels(
        "jig",
        _notes(score.parts),
        duration=8.0,
        bars=score.bars,
        qpm=60.0,
        dance="jig",
        score_length=score.length,
        polyphonic=False,
    )
    # beats on dotted quarters from the first full bar; the pickup holds none
    assert labels.beats == ((0.5, 1), (2.0, 2), (3.5, 1), (5.0, 2))
    assert labels.downbeats == (0.5, 3.5)
    # D | G A B c d e | d3 B2 z  (K:G; c is C natural)
    assert labels.melody == (
        (0.0, 0.5, 62),
        (0.5, 1.0, 67),
        (1.0, 1.5, 69),
        (1.5, 2.0, 71),
        (2.0, 2.5, 72),
        (2.5, 3.0, 74),
        (3.0, 3.5, 76),
        (3.5, 5.0, 74),
        (5.0, 6.0, 71),
    )
    assert labels.onsets == (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 5.0)
    assert labels.chords == ()
    frames = frame_targets(labels, 210)
    assert np.flatnonzero(frames.beat[:, 0]).tolist() == [12, 50, 87, 125]
    assert np.flatnonzero(frames.beat[:, 1]).tolist() == [12, 87]
    assert frames.melody[0] == 62 - 21 + 1 and frames.melody[137] == 71 - 21 + 1
    assert frames.melody[160] == 0  # after the last note: unvoiced
    assert frames.melody[199] == 0 and frames.melody[205] == IGNORE  # past the clip's 8 s
    assert (frames.chord == IGNORE).all()
    assert np.flatnonzero(frames.onset).tolist() == [0, 12, 25, 37, 50, 62, 75, 87, 125]


def test_bach_chorale_bwv_1_6():
    pytest.importorskip("music21")
    from muqkit.data.corpus.scores import ScoreRef, parse_score

    score = parse_score(ScoreRef("bach_chorales", "bach/bwv1.6.mxl", 0))
    labels = score_labels(
        "bwv1.6",
        _notes(score.parts),
        duration=6.0,
        bars=score.bars,
        qpm=60.0,
        score_length=score.length,
        polyphonic=True,
    )
    # a one-beat pickup in 4/4: beat 4, then the first downbeat one second in
    assert labels.beats[:6] == ((0.0, 4), (1.0, 1), (2.0, 2), (3.0, 3), (4.0, 4), (5.0, 1))
    # F major: I | V6 I vi I6 | IV (checked against the score: F-A-C; E-G-C over E; F-A-C; D-F-A; A-C-F over A)
    assert labels.chords[:6] == (
        (0.0, 1.0, "F:maj"),
        (1.0, 2.0, "C:maj/3"),
        (2.0, 3.0, "F:maj"),
        (3.0, 4.0, "D:min"),
        (4.0, 5.0, "F:maj/3"),
        (5.0, 5.5, "Bb:maj"),
    )
    assert labels.melody == ()
    frames = frame_targets(labels, 150)
    assert [MAJMIN_CLASSES[c] for c in frames.chord[[0, 30, 60, 80, 110]]] == [
        "F:maj",
        "C:maj",
        "F:maj",
        "D:min",
        "F:maj",
    ]


def test_sidecar_round_trip(tmp_path):
    labels = ScoreLabels("x", 4.0, ((0.5, 1), (1.0, 2)), ((0.0, 4.0, "C:maj"),), (), (0.0, 0.5))
    write_labels(tmp_path / "x.json", labels)
    assert read_labels(tmp_path / "x.json") == labels
    with pytest.raises(FileNotFoundError, match="no frame labels"):
        read_labels(tmp_path / "y.json")


def test_crop_keeps_what_the_first_seconds_hold():
    labels = ScoreLabels("x", 4.0, ((0.5, 1), (2.5, 2)), ((0.0, 3.0, "C:maj"), (3.0, 4.0, "N")), (), (0.5, 2.5))
    cropped = labels.crop(2.0)
    assert cropped == ScoreLabels("x", 2.0, ((0.5, 1),), ((0.0, 2.0, "C:maj"),), (), (0.5,))
    assert labels.crop(5.0) is labels
