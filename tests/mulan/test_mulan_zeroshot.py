"""Captions from metadata, the tag vocabulary and the zero-shot classifier."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from muqkit.mulan.captions import TAG_GROUPS, caption_from_metadata, tag_vocabulary, tempo_word
from muqkit.mulan.zeroshot import ZeroShotClassifier, evaluate_zero_shot, known_matrix, label_matrix

META = {
    "key": "A minor",
    "mode": "minor",
    "metre": "6/8",
    "dance": "jig",
    "families": ["reed", "synth_lead"],
    "tempo_qpm": 150,
    "origin": "ireland",
}


def test_caption_templates_vary_but_keep_the_facts():
    assert caption_from_metadata(META) == "a fast Irish jig in A minor, in 6/8 time, played on reed and synth lead"
    rng = random.Random(0)
    captions = {caption_from_metadata(META, rng) for _ in range(50)}
    assert len(captions) > 10
    for c in captions:
        assert "jig" in c and "Irish" in c
    # the key is named in some captions, the mode on its own in others (as the zero-shot prompts say it)
    assert any("A minor" in c for c in captions) and any("a minor key" in c or "minor mode" in c for c in captions)
    assert caption_from_metadata({**META, "caption": " given text "}) == "given text"
    assert caption_from_metadata({"family": "brass"}) == "a piece played on brass"
    assert tempo_word(60) == "slow" and tempo_word(200) == "fast"


def test_vocabulary_and_labels():
    items = [META, {"mode": "major", "metre": "3/4", "dance": "waltz", "families": ["piano"]}, {"family": "reed"}]
    vocab = tag_vocabulary(items)
    assert vocab == {
        "instrument": ["piano", "reed", "synth lead"],
        "mode": ["major", "minor"],
        "metre": ["3/4", "6/8"],
        "dance": ["jig", "waltz"],
    }
    tags, labels = label_matrix(items, vocab, TAG_GROUPS)
    assert labels.shape == (3, 9)
    assert labels[2].tolist() == [t == "instrument:reed" for t in tags]
    assert labels[0, tags.index("dance:jig")] and not labels[1, tags.index("dance:jig")]
    known = known_matrix(items, vocab, TAG_GROUPS)
    assert known.shape == labels.shape and not (labels & ~known).any()
    # The single note has an instrument but no mode, metre or dance: unknown there, not negative.
    assert known[2].tolist() == [t.startswith("instrument:") for t in tags]


class _FakeModel:
    """Text latents = one-hot of the first known word in the text."""

    temperature = torch.tensor(10.0)

    def __init__(self, words=("piano", "reed", "jig")):
        self.words = words

    def extract_text_latents(self, texts):
        out = torch.zeros(len(texts), len(self.words))
        for i, t in enumerate(texts):
            for k, w in enumerate(self.words):
                if w in t:
                    out[i, k] = 1.0
                    break
        return out


def test_classifier_averages_prompts_and_ranks_tags():
    clf = ZeroShotClassifier.from_model(_FakeModel(), ["piano", "reed", "jig"], ["{tag}", "music with {tag}"])
    assert torch.allclose(clf.tag_latents, torch.eye(3))
    audio = torch.tensor([[0.1, 0.9, 0.2], [0.8, 0.0, 0.3]])
    preds = clf.predict(audio, top_k=2)
    assert preds[0].tags == ("reed", "jig") and preds[1].tags == ("piano", "jig")
    assert np.allclose(clf.scores(audio).numpy(), audio.numpy())


def test_zero_shot_leaves_unannotated_items_out_of_a_group():
    items = [{"dance": "jig"}, {"dance": "reel"}, {"dance": "reel"}, {}]  # the last: no dance annotated
    vocab = {"dance": ["jig", "reel"]}
    audio = torch.tensor([[0.0, 0.0, 0.9], [0.0, 0.0, 0.1], [0.0, 0.0, 0.2], [0.0, 0.0, 1.0]])  # "jig" axis
    excluded = evaluate_zero_shot(_FakeModel(), audio, items, vocab, scoring="similarity").tagging
    assert excluded.per_tag["dance:jig"][0] == pytest.approx(1.0)
    assert excluded.groups["dance"][2] == pytest.approx((1 / 3 + 2 / 3) / 2)
    negative = evaluate_zero_shot(
        _FakeModel(), audio, items, vocab, unannotated_negative=True, scoring="similarity"
    ).tagging
    assert negative.per_tag["dance:jig"][0] == pytest.approx(2 / 3)


def test_exclusive_groups_compare_their_tags_per_item():
    # Each clip is similar to both mode prompts by an amount of its own (timbre, texture); only the
    # difference says minor or major. Scored alone, "minor" ranks the clips by that offset.
    items = [{"mode": "minor"}, {"mode": "major"}, {"mode": "minor"}, {"mode": "major"}]
    vocab = {"mode": ["major", "minor"]}
    audio = torch.tensor([[0.9, 0.8], [0.3, 0.4], [0.5, 0.45], [1.0, 1.1]])  # (minor, major) axes
    model = _FakeModel(("minor", "major"))
    raw = evaluate_zero_shot(model, audio, items, vocab, scoring="similarity")
    auto = evaluate_zero_shot(model, audio, items, vocab)
    assert raw.tagging.per_tag["mode:minor"][0] == pytest.approx(0.5)
    assert auto.tagging.per_tag["mode:minor"][0] == pytest.approx(1.0)
    assert auto.tagging.groups["mode"][0] == pytest.approx(1.0)
    assert auto.accuracy["mode"] == pytest.approx((1.0, 0.5))
    with pytest.raises(ValueError, match="scoring"):
        evaluate_zero_shot(model, audio, items, vocab, scoring="softmax")
