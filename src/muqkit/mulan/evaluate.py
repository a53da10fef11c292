"""Evaluation of a music-text model on held-out corpus items: zero-shot tagging and retrieval.

Zero-shot tags come from the items' metadata (instrument family, mode, metre, dance type), turned into
text latents through prompt templates; the model never saw them as classifier labels. A group's tags are
scored over the items annotated in that group (an item without a mode in its metadata is no negative of
``minor``). Retrieval pairs each item with its caption (the deterministic template) and counts items with
identical captions as relevant; chance levels account for those duplicates.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from muqkit.mulan.captions import TAG_GROUPS, caption_from_metadata, tag_vocabulary
from muqkit.mulan.metrics import CrossModalRetrieval, TaggingMetrics, cross_modal_retrieval
from muqkit.mulan.zeroshot import ZeroShotClassifier, evaluate_zero_shot

if TYPE_CHECKING:
    from muqkit.mulan.model import MuQMuLan


@dataclass(frozen=True)
class MuLanEvaluation:
    """Zero-shot tagging and retrieval figures of one model on one set of items.

    Attributes:
        num_items: evaluated items.
        tagging: per-tag and per-group ROC-AUC / PR-AUC (exclusive groups scored by the softmax over their
            tags, see :func:`muqkit.mulan.zeroshot.evaluate_zero_shot`).
        retrieval: text-to-music and music-to-text R@k and ranks.
        tagging_similarity: the same with every tag scored by its cosine similarity alone.
        accuracy: exclusive group -> (balanced top-1 accuracy, chance).
    """

    num_items: int
    tagging: TaggingMetrics
    retrieval: CrossModalRetrieval
    tagging_similarity: TaggingMetrics | None = None
    accuracy: Mapping[str, tuple[float, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        def r(m: Any) -> dict[str, float]:
            return {
                "R@1": m.r1,
                "R@5": m.r5,
                "R@10": m.r10,
                "median_rank": m.median_rank,
                "chance_R@1": m.chance(1),
                "chance_R@5": m.chance(5),
                "chance_R@10": m.chance(10),
                "chance_median_rank": m.chance_median_rank(),
                "candidates": m.num_candidates,
            }

        return {
            "num_items": self.num_items,
            "tagging": self.tagging.to_dict(),
            "tagging_similarity": None if self.tagging_similarity is None else self.tagging_similarity.to_dict(),
            "balanced_accuracy": {k: {"accuracy": a, "chance": c} for k, (a, c) in self.accuracy.items()},
            "text_to_music": r(self.retrieval.text_to_music),
            "music_to_text": r(self.retrieval.music_to_text),
        }

    def to_markdown(self) -> str:
        lines = [
            "| tag group | tags | ROC-AUC (chance 0.5) | PR-AUC | chance PR-AUC | ROC-AUC, similarity alone "
            "| balanced accuracy (chance) |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, (roc, pr, chance) in self.tagging.groups.items():
            n = sum(1 for t in self.tagging.per_tag if t.startswith(name + ":"))
            raw = self.tagging_similarity.groups[name][0] if self.tagging_similarity is not None else math.nan
            acc = f"{_f(self.accuracy[name][0])} ({_f(self.accuracy[name][1])})" if name in self.accuracy else ""
            lines.append(f"| {name} | {n} | {_f(roc)} | {_f(pr)} | {_f(chance)} | {_f(raw)} | {acc} |")
        lines += [
            "",
            "| retrieval | R@1 | R@5 | R@10 | median rank | chance R@1 / R@5 / R@10 / median rank |",
            "|---|---|---|---|---|---|",
        ]
        for name, m in (
            ("text to music", self.retrieval.text_to_music),
            ("music to text", self.retrieval.music_to_text),
        ):
            lines.append(
                f"| {name} | {_f(m.r1)} | {_f(m.r5)} | {_f(m.r10)} | {m.median_rank:.0f} "
                f"| {_f(m.chance(1))} / {_f(m.chance(5))} / {_f(m.chance(10))} / {m.chance_median_rank():.0f} |"
            )
        return "\n".join(lines) + "\n"


def _f(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:.3f}"


@torch.no_grad()
def evaluate_items(
    model: MuQMuLan,
    audio_latents: torch.Tensor,
    items: Sequence[Mapping[str, Any]],
    *,
    vocabulary: Mapping[str, Sequence[str]] | None = None,
    unannotated_negative: bool = False,
    min_positives: int = 1,
) -> MuLanEvaluation:
    """Evaluate ``audio_latents`` (N, d) of items with metadata ``items`` (N label dicts).

    Args:
        model: the model (for the text latents).
        audio_latents: the items' audio latents.
        items: their metadata (corpus labels).
        vocabulary: tags per group; default: every tag of :data:`TAG_GROUPS` seen in ``items``.
        unannotated_negative: count items not annotated in a group as negatives of its tags (default:
            leave them out of that group).
        min_positives: tags with fewer positive items are left out of the tagging figures.
    """
    vocabulary = vocabulary if vocabulary is not None else tag_vocabulary(items, TAG_GROUPS)
    classifier = ZeroShotClassifier.from_groups(model, vocabulary, TAG_GROUPS)  # tag latents, built once
    options: dict[str, Any] = {
        "unannotated_negative": unannotated_negative,
        "min_positives": min_positives,
        "classifier": classifier,
    }
    zero_shot = evaluate_zero_shot(model, audio_latents, items, vocabulary, **options)
    similarity = evaluate_zero_shot(model, audio_latents, items, vocabulary, scoring="similarity", **options)
    captions = [caption_from_metadata(labels) for labels in items]
    text_latents = model.extract_text_latents(captions)
    retrieval = cross_modal_retrieval(audio_latents, text_latents.cpu(), groups=captions)
    return MuLanEvaluation(
        num_items=len(items),
        tagging=zero_shot.tagging,
        retrieval=retrieval,
        tagging_similarity=similarity.tagging,
        accuracy=zero_shot.accuracy,
    )
