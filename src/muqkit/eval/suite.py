"""Run probes of several models on several tasks and collect one row per (model, task, head, layer choice).

For a model with several layers, every layer is probed (the sweep, kept for the per-layer plots), the
layer with the best mean validation score is reported as ``best``, and a learnable softmax-weighted sum
of all layers is reported as ``weighted``. Single-layer features (handcrafted) give one row per head.
The madmom key model also gets a ``zero-shot`` row on key tasks: its own prediction, no probe.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import numpy as np

from muqkit.eval.cache import Features, embed_records
from muqkit.eval.features import FeatureExtractor, make_extractor
from muqkit.eval.probes import HEADS, ProbeConfig, SeedSummary, evaluate, probe_over_seeds
from muqkit.eval.tasks import TaskData

logger = logging.getLogger(__name__)
LAYER_MODES: tuple[str, ...] = ("sweep", "weighted", "last")


@dataclass(frozen=True)
class SuiteConfig:
    """What a suite run does.

    Attributes:
        heads: probe heads to train (``linear``, ``mlp``).
        seeds: probe seeds (mean and std are over these).
        layer_modes: for multi-layer models, any of ``sweep`` (every layer, best by validation),
            ``weighted`` (learned mix) and ``last`` (the last layer only).
        probe: base training settings (its ``head`` is replaced by each of ``heads``).
        batch_size: items per forward pass when embedding.
    """

    heads: tuple[str, ...] = ("linear", "mlp")
    seeds: tuple[int, ...] = (0, 1, 2)
    layer_modes: tuple[str, ...] = ("sweep", "weighted")
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    batch_size: int = 8

    def __post_init__(self) -> None:
        if not self.heads or any(h not in HEADS for h in self.heads):
            raise ValueError(f"heads must be a non-empty subset of {HEADS}, got {self.heads}")
        if not self.layer_modes or any(m not in LAYER_MODES for m in self.layer_modes):
            raise ValueError(f"layer_modes must be a non-empty subset of {LAYER_MODES}, got {self.layer_modes}")
        if not self.seeds:
            raise ValueError("need at least one seed")


@dataclass(frozen=True)
class ResultRow:
    """One line of the results table.

    Attributes:
        model: model spec (``chroma``, ``random:tiny``, ...).
        task: task name.
        head: ``linear``, ``mlp`` or ``zero-shot``.
        layer: ``"-"`` (single layer), ``"best:K"``, ``"weighted"``, ``"last:K"``.
        metric: primary metric name.
        mean: mean test score over seeds.
        std: its standard deviation.
        val: mean validation score.
        metrics: mean of every test metric.
        per_layer: ``(layer, val mean, test mean, test std)`` of the sweep (empty otherwise).
        layer_weights: mean learned layer weights of a weighted probe (empty otherwise).
        embed_seconds: time spent embedding the task's manifest (0 when cached).
        probe_seconds: time spent training probes for this row.
    """

    model: str
    task: str
    head: str
    layer: str
    metric: str
    mean: float
    std: float
    val: float
    metrics: dict[str, float]
    per_layer: tuple[tuple[int, float, float, float], ...] = ()
    layer_weights: tuple[float, ...] = ()
    embed_seconds: float = 0.0
    probe_seconds: float = 0.0


def _split_features(task: TaskData, feats: Features) -> dict[str, np.ndarray]:
    return {s: feats.select([r.id for r in task.records[s]]) for s in ("train", "valid", "test")}


def layer_mode_rows(
    model: str,
    task: str,
    metric: str,
    head: str,
    *,
    num_layers: int,
    layer_modes: Sequence[str],
    probe: Callable[[list[int] | None], SeedSummary],
) -> list[ResultRow]:
    """The rows of one head for each layer mode (one ``-`` row for single-layer features).

    Args:
        model, task, metric, head: what the rows name.
        num_layers: layers of the features.
        layer_modes: any of :data:`LAYER_MODES`.
        probe: trains the head over seeds on the given layers (``None``: all of them, mixed by learned weights
            when there are several).
    """

    def row(layer: str, s: SeedSummary, started: float, **extra: Any) -> ResultRow:
        return ResultRow(model, task, head, layer, metric, s.mean[metric], s.std[metric], s.val_mean, s.mean,
                         probe_seconds=time.perf_counter() - started, **extra)  # fmt: skip

    if num_layers == 1:
        t = time.perf_counter()
        return [row("-", probe(None), t)]
    rows = []
    if "sweep" in layer_modes:
        t = time.perf_counter()
        sweep = [(layer, probe([layer])) for layer in range(num_layers)]
        best_layer, best = max(sweep, key=lambda p: (np.nan_to_num(p[1].val_mean, nan=-np.inf), -p[0]))
        per_layer = tuple((lay, s.val_mean, s.mean[metric], s.std[metric]) for lay, s in sweep)
        rows.append(row(f"best:{best_layer}", best, t, per_layer=per_layer))
    if "last" in layer_modes:
        t = time.perf_counter()
        rows.append(row(f"last:{num_layers - 1}", probe([num_layers - 1]), t))
    if "weighted" in layer_modes:
        t = time.perf_counter()
        s = probe(None)
        # weighted-sum probes always record their layer weights
        run_weights = [cast(tuple[float, ...], r.layer_weights) for r in s.runs]
        rows.append(row("weighted", s, t, layer_weights=tuple(float(w) for w in np.mean(run_weights, axis=0))))
    return rows


def probe_task(
    model: str,
    task: TaskData,
    feats: Features,
    config: SuiteConfig,
) -> list[ResultRow]:
    """All rows of one model on one task, from its features."""
    x = _split_features(task, feats)
    y = dict(task.targets)
    rows: list[ResultRow] = []
    if model == "madmom-key" and task.kind == "key":
        scores = evaluate("key", y["test"], x["test"][:, 0])
        val = evaluate("key", y["valid"], x["valid"][:, 0])["weighted_score"]
        rows.append(ResultRow(model, task.name, "zero-shot", "-", task.metric, scores[task.metric], 0.0, val, scores))
    for head in config.heads:
        probe = replace(config.probe, head=head)

        def on_layers(layers: list[int] | None, probe: ProbeConfig = probe) -> SeedSummary:
            xl = x if layers is None else {k: v[:, layers] for k, v in x.items()}
            return probe_over_seeds(task.kind, xl, y, task.num_outputs, config=probe, seeds=config.seeds)

        rows += layer_mode_rows(model, task.name, task.metric, head, num_layers=x["train"].shape[1],
                                layer_modes=config.layer_modes, probe=on_layers)  # fmt: skip
    return rows


def run_suite(
    models: Sequence[str],
    tasks: Sequence[TaskData],
    *,
    config: SuiteConfig,
    cache_dir: str | os.PathLike[str] | None,
    extractor_factory: Callable[[str], FeatureExtractor] = make_extractor,
) -> list[ResultRow]:
    """Embed every task's manifest with every model (cached) and probe.

    ``madmom-key`` is run on key tasks only.
    """
    rows: list[ResultRow] = []
    for model in models:
        extractor = None
        for task in tasks:
            if model == "madmom-key" and task.kind != "key":
                continue
            extractor = extractor or extractor_factory(model)
            # the whole source manifest, so tasks sharing it share one cache entry
            feats = embed_records(
                sorted(task.manifest, key=lambda r: r.id),
                task.root,
                extractor,
                cache_dir=cache_dir,
                batch_size=config.batch_size,
            )
            logger.info("%s on %s: %s", model, task.summary(), f"embedded in {feats.seconds:.1f}s")
            task_rows = probe_task(model, task, feats, config)
            if task_rows:
                task_rows[0] = replace(task_rows[0], embed_seconds=feats.seconds)
            for row in task_rows:
                logger.info(
                    "%-14s %-12s %-9s %-9s %s %.4f ± %.4f",
                    model,
                    task.name,
                    row.head,
                    row.layer,
                    row.metric,
                    row.mean,
                    row.std,
                )
            rows.extend(task_rows)
    return rows


def default_cache_dir(corpus: str | os.PathLike[str] | None) -> Path | None:
    """``<corpus>/cache/features`` when a corpus is given."""
    return Path(corpus) / "cache" / "features" if corpus is not None else None
