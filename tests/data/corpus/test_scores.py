"""music21 source: ABC splitting, key checks on real corpus scores (skips without music21)."""

from __future__ import annotations

import pytest

from muqkit.data.corpus.scores import ScoreRef, _dance, _split_abc
from muqkit.data.theory import key_label

ABC = """% header comment
X:1
T:First
R:reel
K:G
GABc|
X:2
T:No key field, skipped
ABc|
X:3
T:Third
K:Am
ABcd|
"""


def test_split_abc_keeps_tunes_with_key_fields():
    tunes = _split_abc(ABC)
    assert len(tunes) == 2
    assert tunes[0].startswith("X:1") and "K:Am" in tunes[1]


def test_key_label_and_dance():
    assert key_label(3, "minor") == "Eb minor"
    assert key_label(13, "major") == "Db major"
    assert _dance("Hornpipe, slow") == "hornpipe"
    assert _dance("song") == ""
    with pytest.raises(ValueError):
        key_label(0, "dorian")


@pytest.fixture(scope="module")
def music21_root():
    pytest.importorskip("music21", reason="the score source needs music21 (pip install music21)")
    from muqkit.data.corpus.scores import corpus_root

    return corpus_root()


def test_bach_chorale_key_checked(music21_root):
    from muqkit.data.corpus.scores import parse_score

    score = parse_score(ScoreRef("bach_chorales", "bach/bwv10.7.mxl", 0), music21_root)
    assert (score.tonic, score.mode) == (7, "minor")  # G minor, two flats, ends on G
    assert score.metre == "4/4" and len(score.parts) == 4
    assert score.key_issue == ""


def test_abc_tune_labels(music21_root):
    from muqkit.data.corpus.scores import list_scores, parse_score

    refs = [r for r in list_scores("ryans_mammoth", music21_root) if "42dHighland" in r.file]
    score = parse_score(refs[0], music21_root)
    assert score.dance == "strathspey"
    assert (score.tonic, score.mode) == (9, "minor")  # K:Am
    assert len(score.parts) == 1


def test_modal_tune_gets_no_key(music21_root):
    from muqkit.data.corpus.scores import ParsedScore, list_scores, parse_score

    # Essen's first Chinese song: K:C signature but ends on D (a mode): the key must be withheld.
    ref = [r for r in list_scores("essen_folksongs", music21_root) if r.file.endswith("han1.abc")][0]
    score = parse_score(ref, music21_root)
    assert score.mode is None and score.key_issue
    assert score.origin == "China"
    assert ParsedScore.from_dict(score.to_dict()) == score
