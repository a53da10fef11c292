"""Metrics of zero-shot tagging (ROC-AUC, average precision) and cross-modal retrieval (R@k, ranks).

Plain numpy, so they run without scikit-learn; they agree with ``sklearn.metrics.roc_auc_score`` and
``average_precision_score`` (ties included).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of binary ``labels`` ranked by ``scores`` (ties count one half).

    Returns ``nan`` when ``labels`` has only one class.
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel().astype(bool)
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(scores.size, dtype=np.float64)
    sorted_scores = scores[order]
    # Average ranks over ties (1-based).
    boundaries = np.flatnonzero(np.diff(sorted_scores)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [scores.size]])
    for s, e in zip(starts, ends, strict=True):
        ranks[order[s:e]] = (s + e + 1) / 2.0
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Average precision (area under the precision-recall curve as a step sum over thresholds, as
    scikit-learn computes it). Returns ``nan`` without positives."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel().astype(bool)
    n_pos = int(labels.sum())
    if n_pos == 0:
        return math.nan
    order = np.argsort(-scores, kind="mergesort")
    sorted_scores = scores[order]
    hits = labels[order].astype(np.float64)
    # One point per distinct threshold: the last index of each run of equal scores.
    last = np.concatenate([np.flatnonzero(np.diff(sorted_scores)), [scores.size - 1]])
    tp = np.cumsum(hits)[last]
    precision = tp / (last + 1)
    recall = tp / n_pos
    return float(np.sum(np.diff(np.concatenate([[0.0], recall])) * precision))


@dataclass(frozen=True)
class TaggingMetrics:
    """Macro-averaged tagging metrics.

    Attributes:
        roc_auc: macro ROC-AUC over tags with both classes present.
        pr_auc: macro average precision over the same tags.
        per_tag: tag -> (ROC-AUC, PR-AUC, positives).
        groups: group -> (macro ROC-AUC, macro PR-AUC, chance PR-AUC: the mean positive rate).
    """

    roc_auc: float
    pr_auc: float
    per_tag: Mapping[str, tuple[float, float, int]]
    groups: Mapping[str, tuple[float, float, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {
            "roc_auc": self.roc_auc,
            "pr_auc": self.pr_auc,
            "per_tag": {
                k: {"roc_auc": r, "pr_auc": p, "positives": n} for k, (r, p, n) in self.per_tag.items()
            },
            "groups": {
                k: {"roc_auc": r, "pr_auc": p, "chance_pr_auc": c} for k, (r, p, c) in self.groups.items()
            },
        }


def tagging_metrics(
    scores: np.ndarray | torch.Tensor,
    labels: np.ndarray | torch.Tensor,
    tags: Sequence[str],
    *,
    groups: Mapping[str, Sequence[str]] | None = None,
    known: np.ndarray | torch.Tensor | None = None,
    min_positives: int = 1,
) -> TaggingMetrics:
    """Per-tag and macro ROC-AUC / PR-AUC of (N, K) ``scores`` against (N, K) binary ``labels``.

    Tags with only positives or only negatives are left out of the averages. ``groups`` maps a group name
    to the tags it averages over (the tags of the group present in ``tags``). ``known`` (N, K), when
    given, says which labels are known: tag ``k`` is scored over the items with ``known[:, k]`` only
    (an item whose mode is not annotated is neither a positive nor a negative of ``minor``), and its
    chance PR-AUC is its positive rate among them. Tags with fewer than ``min_positives`` positives are
    left out too (a ROC-AUC over three positives is mostly noise).
    """
    s = np.asarray(scores.detach().cpu() if isinstance(scores, torch.Tensor) else scores, dtype=np.float64)
    y = np.asarray(labels.detach().cpu() if isinstance(labels, torch.Tensor) else labels).astype(bool)
    if s.shape != y.shape or s.ndim != 2 or s.shape[1] != len(tags):
        raise ValueError(f"scores {s.shape} and labels {y.shape} must both be (N, {len(tags)})")
    if known is None:
        m = np.ones_like(y)
    else:
        m = np.asarray(known.detach().cpu() if isinstance(known, torch.Tensor) else known).astype(bool)
        if m.shape != y.shape:
            raise ValueError(f"known {m.shape} must be like labels {y.shape}")
        if bool((y & ~m).any()):
            raise ValueError("a positive label is marked unknown")
    per_tag: dict[str, tuple[float, float, int]] = {}
    rate: dict[str, float] = {}
    for k, tag in enumerate(tags):
        rows = m[:, k]
        positives = int(y[rows, k].sum())
        if max(1, min_positives) <= positives < int(rows.sum()):
            sk, yk = s[rows, k], y[rows, k]
            per_tag[tag] = (roc_auc(sk, yk), average_precision(sk, yk), positives)
            rate[tag] = positives / int(rows.sum())

    def macro(names: Sequence[str]) -> tuple[float, float]:
        kept = [per_tag[t] for t in names if t in per_tag]
        if not kept:
            return math.nan, math.nan
        return float(np.mean([r for r, _, _ in kept])), float(np.mean([p for _, p, _ in kept]))

    summary = {}
    for name, members in (groups or {}).items():
        r, p = macro(members)
        kept = [t for t in members if t in per_tag]
        chance = float(np.mean([rate[t] for t in kept])) if kept else math.nan
        summary[name] = (r, p, chance)
    r, p = macro(list(tags))
    return TaggingMetrics(roc_auc=r, pr_auc=p, per_tag=per_tag, groups=summary)


@dataclass(frozen=True)
class RetrievalMetrics:
    """Retrieval of the one relevant item per query.

    Attributes:
        r1, r5, r10: fraction of queries whose relevant item ranks in the top 1, 5, 10.
        median_rank: median 1-based rank of the relevant item.
        mean_rank: mean 1-based rank.
        num_queries: queries.
        num_candidates: candidates per query.
        relevant_counts: relevant candidates of each query (empty: one each); chance levels account for
            them (a query with ``g`` relevant candidates among ``C`` has chance R@k
            ``1 - C(C - g, k) / C(C, k)``, not ``k / C``).
    """

    r1: float
    r5: float
    r10: float
    median_rank: float
    mean_rank: float
    num_queries: int
    num_candidates: int
    relevant_counts: tuple[int, ...] = ()

    def _chance_curve(self) -> np.ndarray:
        """P(rank <= r) of a random ranking for r = 1..num_candidates, averaged over the queries."""
        n = self.num_candidates
        counts = self.relevant_counts or (1,)
        r = np.arange(1, n + 1)
        curve = np.zeros(n, dtype=np.float64)
        for g, times in zip(*np.unique(np.asarray(counts), return_counts=True), strict=True):
            # P(no relevant among the first r) = prod_{i<r} (n - g - i) / (n - i)
            miss = np.cumprod(np.clip((n - g - (r - 1)) / (n - (r - 1)), 0.0, None))
            curve += times * (1.0 - miss)
        return curve / len(counts)

    def chance(self, k: int) -> float:
        """R@k of a random ranking (exact, given each query's number of relevant candidates)."""
        if k >= self.num_candidates:
            return 1.0
        return float(self._chance_curve()[k - 1])

    def chance_median_rank(self) -> float:
        """Median rank of a random ranking (over all queries pooled)."""
        return float(np.searchsorted(self._chance_curve(), 0.5) + 1)


def ranks_of_targets(similarity: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """1-based rank of ``targets[q]`` among the candidates of query ``q`` in a (Q, C) similarity matrix
    (ties counted pessimistically: an equal score ranks ahead)."""
    target_scores = similarity.gather(1, targets.view(-1, 1))  # (Q, 1)
    others = similarity >= target_scores
    return others.sum(dim=1)  # includes the target itself


def retrieval_metrics(
    similarity: torch.Tensor, targets: torch.Tensor | None = None, *, relevant: torch.Tensor | None = None
) -> RetrievalMetrics:
    """Recall@k and ranks of the relevant candidate of each query.

    Args:
        similarity: (Q, C) query-candidate scores.
        targets: (Q,) index of the relevant candidate (default: the diagonal, ``targets[q] = q``).
        relevant: (Q, C) boolean, several relevant candidates per query (e.g. identical captions); the
            rank is then that of the best-scored relevant candidate among the irrelevant ones.
    """
    similarity = similarity.detach().float().cpu()
    if relevant is not None:
        relevant = relevant.cpu().bool()
        if relevant.shape != similarity.shape or not bool(relevant.any(dim=1).all()):
            raise ValueError("relevant must be (Q, C) like similarity, with at least one relevant per query")
        best = similarity.masked_fill(~relevant, float("-inf")).amax(dim=1, keepdim=True)  # (Q, 1)
        ranks = ((similarity >= best) & ~relevant).sum(dim=1).float() + 1
        counts = tuple(int(c) for c in relevant.sum(dim=1).tolist())
    else:
        counts = ()
        if targets is None:
            if similarity.shape[0] > similarity.shape[1]:
                raise ValueError("diagonal targets need at most as many queries as candidates")
            targets = torch.arange(similarity.shape[0])
        ranks = ranks_of_targets(similarity, targets.cpu().long()).float()
    return RetrievalMetrics(
        r1=float((ranks <= 1).float().mean()),
        r5=float((ranks <= 5).float().mean()),
        r10=float((ranks <= 10).float().mean()),
        median_rank=float(ranks.median()),
        mean_rank=float(ranks.mean()),
        num_queries=int(similarity.shape[0]),
        num_candidates=int(similarity.shape[1]),
        relevant_counts=counts,
    )


@dataclass(frozen=True)
class CrossModalRetrieval:
    """Both directions of paired audio-text retrieval.

    Attributes:
        text_to_music: texts as queries over the audio.
        music_to_text: audio as queries over the texts.
    """

    text_to_music: RetrievalMetrics
    music_to_text: RetrievalMetrics


def cross_modal_retrieval(
    audio_latents: torch.Tensor, text_latents: torch.Tensor, *, groups: Sequence[object] | None = None
) -> CrossModalRetrieval:
    """Retrieval metrics for N paired (audio_i, text_i) latents.

    Args:
        audio_latents: (N, d).
        text_latents: (N, d), row ``i`` describing audio ``i``.
        groups: optional (N,) keys; pairs with equal keys (e.g. equal captions) count as relevant to each
            other.
    """
    if audio_latents.shape[0] != text_latents.shape[0]:
        raise ValueError("paired retrieval needs as many texts as audio items")
    sim = audio_latents.float().cpu() @ text_latents.float().cpu().T  # (N_audio, N_text)
    relevant = None
    if groups is not None:
        keys = list(groups)
        ids = {k: i for i, k in enumerate(dict.fromkeys(keys))}
        codes = torch.tensor([ids[k] for k in keys])
        relevant = codes[:, None] == codes[None, :]
    return CrossModalRetrieval(
        text_to_music=retrieval_metrics(sim.T, relevant=relevant),
        music_to_text=retrieval_metrics(sim, relevant=relevant),
    )
