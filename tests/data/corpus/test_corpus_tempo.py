"""Rendering tempi: dance tunes at their dance's tempo, other scores uniform (no fluidsynth needed)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from muqkit.data.corpus import DANCE_BPM, SIZES, beat_quarters
from muqkit.data.corpus.plan import score_item
from muqkit.data.corpus.scores import ParsedScore, ScoreRef
from muqkit.mulan.captions import caption_from_metadata

FONTS = [Path("a.sf2"), Path("b.sf2")]


def _score(dance: str, metre: str, tune: int = 0) -> ParsedScore:
    eighths = tuple((0.5 * i, 0.5, 60 + i % 12) for i in range(64))
    return ParsedScore(ScoreRef("ryans_mammoth", "x.abc", tune), "t", (eighths,), 7, "major", metre, dance, "", 32.0)


@pytest.mark.parametrize(
    ("metre", "dance", "beat"),
    [("6/8", "jig", 1.5), ("9/8", "jig", 1.5), ("12/8", "slide", 1.5), ("2/2", "reel", 2.0), ("2/4", "reel", 1.0),
     ("4/4", "reel", 2.0), ("4/4", "", 1.0), ("3/4", "waltz", 1.0), ("3/8", "", 0.5), ("C", "", 1.0)],
)
def test_beat_quarters(metre, dance, beat):
    assert beat_quarters(metre, dance) == beat


def test_dance_tunes_render_at_their_dance_tempo():
    for dance, metre in (("reel", "2/2"), ("reel", "2/4"), ("jig", "6/8"), ("hornpipe", "4/4")):
        low, high = DANCE_BPM[dance]
        bpms = set()
        for tune in range(40):
            labels = score_item(_score(dance, metre, tune), 0, SIZES["small"], 0, FONTS).labels
            assert low <= labels["tempo_bpm"] <= high
            assert labels["tempo_qpm"] == pytest.approx(labels["tempo_bpm"] * beat_quarters(metre, dance))
            bpms.add(labels["tempo_bpm"])
        assert len(bpms) > 5  # drawn, not fixed


def test_dance_tempo_leaves_the_other_draws_alone():
    # The same score as a dance and as a plain tune: soundfont, programs and transposition are equal, and
    # the plain tune keeps the uniform 60-150 qpm range.
    for tune in range(20):
        plain = score_item(_score("", "2/2", tune), 1, SIZES["small"], 0, FONTS)
        dance = score_item(dataclasses.replace(_score("reel", "2/2", tune)), 1, SIZES["small"], 0, FONTS)
        assert 60 <= plain.labels["tempo_qpm"] <= 150 and plain.labels["tempo_bpm"] * 2 == plain.labels["tempo_qpm"]
        for key in ("soundfont", "programs", "transpose", "key"):
            assert plain.labels[key] == dance.labels[key]
        # A faster dance tempo packs more notes into the clip.
        assert (len(dance.notes) > len(plain.notes)) == (dance.labels["tempo_qpm"] > plain.labels["tempo_qpm"])


def test_captions_name_the_felt_tempo():
    # A reel in 2/2 at 115 half notes a minute is 230 quarter notes a minute: "lively", not "very fast".
    labels = {"dance": "reel", "metre": "2/2", "tempo_qpm": 230.0, "tempo_bpm": 115.0}
    assert caption_from_metadata(labels).startswith("a lively reel")
    assert caption_from_metadata({"dance": "reel", "tempo_qpm": 230.0}).startswith("a fast reel")
