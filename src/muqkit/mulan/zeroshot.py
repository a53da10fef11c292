"""Zero-shot tagging: tags become text latents (prompt ensembles), audio is scored against them.

Kept apart from the model and the loss: a classifier is a (K, d) matrix of tag latents built once from
tag names and prompt templates, then applied to any audio latents.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from muqkit.mulan.captions import TAG_GROUPS, TagGroup
from muqkit.mulan.metrics import TaggingMetrics, tagging_metrics

if TYPE_CHECKING:
    from muqkit.mulan.model import MuQMuLan

DEFAULT_PROMPTS: tuple[str, ...] = ("{tag}", "{tag} music", "a {tag} piece", "this music is {tag}")


@dataclass(frozen=True)
class TagPrediction:
    """Tags of one item, best first.

    Attributes:
        tags: tag names.
        scores: their similarities to the item (same order).
    """

    tags: tuple[str, ...]
    scores: tuple[float, ...]


class ZeroShotClassifier:
    """Scores audio latents against tag latents.

    Args:
        tags: tag names (K).
        tag_latents: (K, d) L2-normalised latents, one per tag.
    """

    def __init__(self, tags: Sequence[str], tag_latents: torch.Tensor) -> None:
        if tag_latents.dim() != 2 or tag_latents.shape[0] != len(tags):
            raise ValueError(f"tag_latents must be ({len(tags)}, d), got {tuple(tag_latents.shape)}")
        self.tags = tuple(tags)
        self.tag_latents = tag_latents

    @classmethod
    @torch.no_grad()
    def from_model(
        cls,
        model: MuQMuLan,
        tags: Sequence[str],
        prompts: Sequence[str] | Mapping[str, Sequence[str]] = DEFAULT_PROMPTS,
    ) -> ZeroShotClassifier:
        """Embed every tag through its prompts and average (then L2-normalise) the prompt latents.

        Args:
            model: the music-text model.
            tags: tag names.
            prompts: templates with ``{tag}`` for every tag, or a mapping tag -> its own templates.
        """
        if isinstance(prompts, str):
            raise TypeError("prompts must be a sequence of templates, not one string")
        texts: list[str] = []
        owners: list[int] = []
        for k, tag in enumerate(tags):
            templates = prompts[tag] if isinstance(prompts, Mapping) else prompts
            if not templates:
                raise ValueError(f"no prompt template for tag {tag!r}")
            for template in templates:
                check_prompt(template, require_tag=False)
                texts.append(template.format(tag=tag))
                owners.append(k)
        latents = model.extract_text_latents(texts).float().cpu()  # (P, d)
        summed = torch.zeros(len(tags), latents.shape[1]).index_add_(0, torch.tensor(owners), latents)
        return cls(tags, F.normalize(summed, dim=-1))

    @classmethod
    def from_groups(
        cls, model: MuQMuLan, vocabulary: Mapping[str, Sequence[str]], groups: Sequence[TagGroup] = TAG_GROUPS
    ) -> ZeroShotClassifier:
        """A classifier over the tags of several groups (``group name -> tags``), each with its prompts."""
        by_name = {g.name: g for g in groups}
        tags: list[str] = []
        prompts: dict[str, Sequence[str]] = {}
        for name, group_tags in vocabulary.items():
            for tag in group_tags:
                key = qualified(name, tag)
                tags.append(key)
                prompts[key] = [p.replace("{tag}", tag) for p in by_name[name].prompts]
        # Prompts are already filled in; "{tag}" no longer appears in them.
        return cls.from_model(model, tags, prompts)

    def scores(self, audio_latents: torch.Tensor) -> torch.Tensor:
        """(N, d) audio latents -> (N, K) similarities."""
        return audio_latents.float().cpu() @ self.tag_latents.T

    def predict(self, audio_latents: torch.Tensor, *, top_k: int = 5) -> list[TagPrediction]:
        """The ``top_k`` best tags of each item."""
        scores = self.scores(audio_latents)
        values, indices = scores.topk(min(top_k, len(self.tags)), dim=1)
        return [
            TagPrediction(tuple(self.tags[i] for i in idx.tolist()), tuple(float(v) for v in vals.tolist()))
            for vals, idx in zip(values, indices, strict=True)
        ]


def check_prompt(template: str, *, require_tag: bool = True) -> None:
    """Refuse a prompt template whose placeholders are not ``{tag}`` (or that lacks it, with ``require_tag``).

    Raises:
        ValueError: an unknown placeholder, a stray brace, or no ``{tag}``; the message says which.
    """
    import string

    try:
        names = [field for _, field, _, _ in string.Formatter().parse(template) if field is not None]
    except ValueError as exc:
        raise ValueError(f"prompt {template!r}: {exc} (write a literal brace as {{{{ or }}}})") from None
    unknown = sorted({n for n in names if n != "tag"})
    if unknown:
        shown = ", ".join("{" + n + "}" for n in unknown)
        raise ValueError(f"prompt {template!r}: unknown placeholder {shown}; the only placeholder is {{tag}}")
    if require_tag and "tag" not in names:
        raise ValueError(f"prompt {template!r}: no {{tag}} placeholder, so every tag would get the same text")


def qualified(group: str, tag: str) -> str:
    """The name of a tag within its group (``mode:minor``)."""
    return f"{group}:{tag}"


def label_matrix(
    items: Sequence[Mapping[str, Any]],
    vocabulary: Mapping[str, Sequence[str]],
    groups: Sequence[TagGroup] = TAG_GROUPS,
) -> tuple[list[str], np.ndarray]:
    """Binary (N, K) labels of metadata dicts over a grouped vocabulary; returns ``(tag names, labels)``."""
    by_name = {g.name: g for g in groups}
    tags = [qualified(name, tag) for name, ts in vocabulary.items() for tag in ts]
    column = {t: k for k, t in enumerate(tags)}
    labels = np.zeros((len(items), len(tags)), dtype=bool)
    for i, meta in enumerate(items):
        for name in vocabulary:
            for tag in by_name[name].values(meta):
                key = qualified(name, tag)
                if key in column:
                    labels[i, column[key]] = True
    return tags, labels


def known_matrix(
    items: Sequence[Mapping[str, Any]],
    vocabulary: Mapping[str, Sequence[str]],
    groups: Sequence[TagGroup] = TAG_GROUPS,
) -> np.ndarray:
    """(N, K) boolean, in :func:`label_matrix`'s column order: whether item ``i`` is annotated in the group
    of tag ``k`` at all (holds at least one value of that group). Items with no mode, metre, dance type or
    instrument in their metadata are unknown, not negatives, for that group's tags."""
    by_name = {g.name: g for g in groups}
    columns = [name for name, ts in vocabulary.items() for _ in ts]
    annotated = {name: [bool(by_name[name].values(meta)) for meta in items] for name in vocabulary}
    known = np.zeros((len(items), len(columns)), dtype=bool)
    for k, name in enumerate(columns):
        known[:, k] = annotated[name]
    return known


SCORINGS = ("auto", "similarity")


def group_softmax(
    scores: torch.Tensor, columns: Mapping[str, Sequence[int]], exclusive: Sequence[str], scale: float
) -> torch.Tensor:
    """(N, K) similarities with the columns of each ``exclusive`` group replaced by a softmax over that
    group's tags of ``scale`` x similarity (the probability of each tag among its group, per item)."""
    out = scores.clone()
    for name in exclusive:
        idx = torch.tensor(list(columns[name]), dtype=torch.long)
        if len(idx):
            out[:, idx] = torch.softmax(scale * scores[:, idx], dim=1)
    return out


@dataclass(frozen=True)
class ZeroShotResult:
    """Zero-shot tagging of a set of items.

    Attributes:
        tagging: per-tag and per-group ROC-AUC / PR-AUC of the scores (``scoring``).
        scoring: ``auto`` (exclusive groups: softmax over the group's tags per item; others: similarity) or
            ``similarity`` (every tag by its own cosine similarity).
        accuracy: exclusive group -> (balanced top-1 accuracy over its annotated items, chance 1 / tags).
    """

    tagging: TaggingMetrics
    scoring: str
    accuracy: Mapping[str, tuple[float, float]]


def evaluate_zero_shot(
    model: MuQMuLan,
    audio_latents: torch.Tensor,
    items: Sequence[Mapping[str, Any]],
    vocabulary: Mapping[str, Sequence[str]],
    groups: Sequence[TagGroup] = TAG_GROUPS,
    *,
    unannotated_negative: bool = False,
    scoring: str = "auto",
    min_positives: int = 1,
    classifier: ZeroShotClassifier | None = None,
) -> ZeroShotResult:
    """Zero-shot tagging metrics of ``audio_latents`` (N, d) against the tags of ``items`` (metadata),
    with per-group macro ROC-AUC and PR-AUC (multi-label: an item may carry several tags of a group).

    A group's tags are scored over the items annotated in that group (:func:`known_matrix`); with
    ``unannotated_negative=True`` every other item counts as a negative instead (the MagnaTagATune
    convention, right when a missing tag means "absent" rather than "not annotated").

    With ``scoring="auto"``, the tags of an exclusive group (one value per item: mode, metre, dance type)
    are scored by their softmax over the group at the model's learned temperature, CLIP's zero-shot
    classification: the question is which of the group's tags fits the item best, and a clip's overall
    similarity to every "minor" and "major" prompt alike (its timbre, its texture) cancels out. Other
    groups, and every group with ``scoring="similarity"``, use the cosine similarity of each tag. Tags with
    fewer than ``min_positives`` positive items are left out of the figures (not of the softmax).
    ``classifier``: the vocabulary's tag latents when already built (:meth:`ZeroShotClassifier.from_groups`)."""
    if scoring not in SCORINGS:
        raise ValueError(f"scoring must be one of {SCORINGS}, got {scoring!r}")
    classifier = classifier or ZeroShotClassifier.from_groups(model, vocabulary, groups)
    tags, labels = label_matrix(items, vocabulary, groups)
    known = None if unannotated_negative else known_matrix(items, vocabulary, groups)
    grouping = {name: [qualified(name, t) for t in ts] for name, ts in vocabulary.items()}
    column = {t: k for k, t in enumerate(tags)}
    columns = {name: [column[t] for t in members] for name, members in grouping.items()}
    by_name = {g.name: g for g in groups}
    exclusive = [name for name in vocabulary if by_name[name].exclusive]
    scores = classifier.scores(audio_latents)
    if scoring == "auto":
        scores = group_softmax(scores, columns, exclusive, float(model.temperature))
    accuracy = {name: _balanced_accuracy(scores[:, columns[name]].numpy(), labels[:, columns[name]])
                for name in exclusive}
    tagging = tagging_metrics(
        scores.numpy(), labels, tags, groups=grouping, known=known, min_positives=min_positives
    )
    return ZeroShotResult(tagging=tagging, scoring=scoring, accuracy=accuracy)


def _balanced_accuracy(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Mean per-class recall of the arg-max tag over the items with exactly one tag, and its chance."""
    rows = labels.sum(axis=1) == 1
    truth, guess = labels[rows].argmax(axis=1), scores[rows].argmax(axis=1)
    recalls = [float((guess[truth == k] == k).mean()) for k in range(labels.shape[1]) if (truth == k).any()]
    if not recalls:
        return float("nan"), float("nan")
    return float(np.mean(recalls)), 1.0 / len(recalls)
