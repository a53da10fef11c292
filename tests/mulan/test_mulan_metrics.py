"""Tagging and retrieval metrics against hand-computed values (and scikit-learn when installed)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from muqkit.mulan.metrics import (
    average_precision,
    cross_modal_retrieval,
    retrieval_metrics,
    roc_auc,
    tagging_metrics,
)


def test_roc_auc_by_hand():
    # Positives at 0.9 and 0.4, negatives at 0.8, 0.3, 0.1: 5 of 6 pairs ordered right.
    assert roc_auc(np.array([0.9, 0.8, 0.4, 0.3, 0.1]), np.array([1, 0, 1, 0, 0])) == pytest.approx(5 / 6)
    # A tie between a positive and a negative counts one half.
    assert roc_auc(np.array([0.5, 0.5]), np.array([1, 0])) == pytest.approx(0.5)
    assert math.isnan(roc_auc(np.array([0.1, 0.2]), np.array([1, 1])))


def test_average_precision_by_hand():
    # Ranking: +, -, +, -, -  -> precision at the hits 1/1 and 2/3.
    ap = average_precision(np.array([0.9, 0.8, 0.4, 0.3, 0.1]), np.array([1, 0, 1, 0, 0]))
    assert ap == pytest.approx((1.0 + 2 / 3) / 2)
    assert math.isnan(average_precision(np.array([0.1]), np.array([0])))


def test_metrics_agree_with_sklearn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    scores = np.round(rng.random(200), 1)  # many ties
    labels = rng.random(200) < 0.3
    assert roc_auc(scores, labels) == pytest.approx(metrics.roc_auc_score(labels, scores))
    assert average_precision(scores, labels) == pytest.approx(metrics.average_precision_score(labels, scores))


def test_tagging_metrics_macro_and_groups():
    scores = np.array([[0.9, 0.1, 0.5], [0.2, 0.8, 0.5], [0.7, 0.3, 0.5]])
    labels = np.array([[1, 0, 1], [0, 1, 1], [1, 0, 1]])
    out = tagging_metrics(scores, labels, ["a", "b", "c"], groups={"g": ["a", "b"], "h": ["c"]})
    assert set(out.per_tag) == {"a", "b"}  # "c" has no negatives
    assert out.roc_auc == pytest.approx(1.0) and out.pr_auc == pytest.approx(1.0)
    assert out.groups["g"][2] == pytest.approx((2 / 3 + 1 / 3) / 2)
    assert math.isnan(out.groups["h"][0])


def test_retrieval_metrics_by_hand():
    sim = torch.tensor([[0.9, 0.1, 0.0], [0.8, 0.5, 0.1], [0.1, 0.2, 0.3]])
    m = retrieval_metrics(sim)  # ranks 1, 2, 1
    assert m.r1 == pytest.approx(2 / 3) and m.r5 == 1.0 and m.median_rank == 1.0
    assert m.mean_rank == pytest.approx(4 / 3) and m.chance(1) == pytest.approx(1 / 3)
    # Equal captions: both texts are relevant to both items.
    a = torch.eye(3)
    t = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    plain = cross_modal_retrieval(a, t)
    grouped = cross_modal_retrieval(a, t, groups=["x", "x", "y"])
    assert plain.text_to_music.r1 == pytest.approx(1 / 3) and grouped.text_to_music.r1 == 1.0


def test_tagging_metrics_leave_unknown_labels_out():
    # Item 2 is not annotated for tag "a": its high score must not count against "a".
    scores = np.array([[0.9], [0.1], [0.95], [0.2]])
    labels = np.array([[1], [0], [0], [0]])
    known = np.array([[1], [1], [0], [1]])
    assert tagging_metrics(scores, labels, ["a"]).per_tag["a"][0] == pytest.approx(2 / 3)
    out = tagging_metrics(scores, labels, ["a"], groups={"g": ["a"]}, known=known)
    assert out.per_tag["a"][0] == pytest.approx(1.0)
    assert out.groups["g"][2] == pytest.approx(1 / 3)  # chance among the 3 annotated items
    with pytest.raises(ValueError, match="unknown"):
        tagging_metrics(scores, labels, ["a"], known=np.zeros((4, 1)))


def test_retrieval_chance_with_duplicate_captions():
    n = 20
    plain = retrieval_metrics(torch.zeros(n, n) + torch.eye(n))
    assert plain.chance(1) == pytest.approx(1 / n) and plain.chance(10) == pytest.approx(10 / n)
    assert plain.chance_median_rank() == 10
    # Every query with 4 relevant candidates: chance R@k = 1 - C(16, k) / C(20, k).
    relevant = torch.zeros(n, n, dtype=torch.bool)
    for g in range(5):
        relevant[g * 4 : g * 4 + 4, g * 4 : g * 4 + 4] = True
    m = retrieval_metrics(torch.rand(n, n), relevant=relevant)
    assert m.relevant_counts == (4,) * n
    assert m.chance(1) == pytest.approx(4 / 20)
    assert m.chance(5) == pytest.approx(1 - math.comb(16, 5) / math.comb(20, 5))
    assert m.chance(30) == 1.0
    # P(rank <= 2) = 1 - C(16, 2) / C(20, 2) = 0.37, P(rank <= 3) = 1 - C(16, 3) / C(20, 3) = 0.51.
    assert m.chance_median_rank() == 3


def test_tags_with_too_few_positives_are_left_out():
    from muqkit.mulan.metrics import tagging_metrics

    labels = np.array([[1, 0], [1, 0], [0, 1], [0, 0], [1, 0]], dtype=bool)  # "a": 3 positives, "b": 1
    scores = np.array([[0.9, 0.9], [0.8, 0.1], [0.1, 0.0], [0.2, 0.5], [0.7, 0.2]])
    every = tagging_metrics(scores, labels, ["g:a", "g:b"], groups={"g": ["g:a", "g:b"]})
    assert set(every.per_tag) == {"g:a", "g:b"} and every.per_tag["g:b"][0] == pytest.approx(0.0)
    kept = tagging_metrics(scores, labels, ["g:a", "g:b"], groups={"g": ["g:a", "g:b"]}, min_positives=2)
    assert set(kept.per_tag) == {"g:a"} and kept.groups["g"][0] == pytest.approx(1.0)
