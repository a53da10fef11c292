"""Frame-level evaluation: per-frame probes on 25 Hz features of the corpus's frame tasks, scored with mir_eval.

The frame side is split the way the clip side is: task specs in :mod:`~muqkit.eval.frame_tasks`, features and
their cache in :mod:`~muqkit.eval.frame_features` (sharing :mod:`~muqkit.eval.cache` and the models of
:mod:`~muqkit.eval.features`), probes in :mod:`~muqkit.eval.frame_probes` (the clip probes' head and config),
the madmom references in :mod:`~muqkit.eval.references`. This module is the frame suite: it makes the rows of
:class:`~muqkit.eval.suite.ResultRow` with the clip suite's layer modes, and re-exports the names above.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

from muqkit.eval.frame_features import (
    FrameExtractor,
    FrameFeatures,
    HandcraftedFrameExtractor,
    MuQFrameExtractor,
    embed_frames,
    has_frame_extractor,
    make_frame_extractor,
)
from muqkit.eval.frame_probes import (
    THRESHOLDS,
    FrameProbeConfig,
    FrameProbeResult,
    FrameSplit,
    frame_probe_over_seeds,
    score_outputs,
    split_arrays,
    train_frame_probe,
)
from muqkit.eval.frame_tasks import FRAME_RATE, FRAME_TASKS, FrameTaskData, FrameTaskSpec, load_frame_task
from muqkit.eval.probes import SeedSummary
from muqkit.eval.references import REFERENCES, madmom_reference
from muqkit.eval.suite import ResultRow, layer_mode_rows

logger = logging.getLogger(__name__)


def probe_frame_task(
    model: str,
    task: FrameTaskData,
    feats: FrameFeatures,
    *,
    heads: Sequence[str],
    seeds: Sequence[int],
    layer_modes: Sequence[str],
    config: FrameProbeConfig,
) -> list[ResultRow]:
    """Rows of one model on one frame task, made as the clip suite makes them
    (:func:`~muqkit.eval.suite.layer_mode_rows`)."""
    rows = []
    for head in heads:
        cfg = replace(config, head=head)

        def on_layers(layers: list[int] | None, cfg: FrameProbeConfig = cfg) -> SeedSummary:
            return frame_probe_over_seeds(task.spec, split_arrays(task, feats, layers), cfg, seeds)

        rows += layer_mode_rows(model, task.name, task.spec.metric, head, num_layers=feats.values.shape[1],
                                layer_modes=layer_modes, probe=on_layers)  # fmt: skip
    return rows


def run_frame_suite(
    models: Sequence[str],
    tasks: Sequence[FrameTaskData],
    *,
    heads: Sequence[str] = ("linear", "mlp"),
    seeds: Sequence[int] = (0, 1, 2),
    layer_modes: Sequence[str] = ("sweep", "weighted"),
    config: FrameProbeConfig | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    batch_size: int = 8,
    extractor_factory: Callable[[str], FrameExtractor] = make_frame_extractor,
) -> list[ResultRow]:
    """Embed every frame task's clips with every model (cached) and probe; madmom references score alone."""
    config = config or FrameProbeConfig()
    rows: list[ResultRow] = []
    for model in models:
        if model in REFERENCES:
            for task in tasks:
                if REFERENCES[model] == task.spec.name:
                    t = time.perf_counter()
                    scores = madmom_reference(model, task)
                    rows.append(
                        ResultRow(model, task.name, "zero-shot", "-", task.metric, scores[task.metric], 0.0,
                                  float("nan"), scores, probe_seconds=time.perf_counter() - t)
                    )  # fmt: skip
            continue
        if not has_frame_extractor(model):
            logger.info("%s has no frame features; skipped on frame tasks", model)
            continue
        extractor = None
        for task in tasks:
            extractor = extractor or extractor_factory(model)
            feats = embed_frames(
                sorted(task.manifest, key=lambda r: r.id), task.root, extractor, cache_dir=cache_dir,
                batch_size=batch_size,
            )  # fmt: skip
            task_rows = probe_frame_task(
                model, task, feats, heads=heads, seeds=seeds, layer_modes=layer_modes, config=config
            )
            if task_rows:
                task_rows[0] = replace(task_rows[0], embed_seconds=feats.seconds)
            for row in task_rows:
                logger.info("%-14s %-8s %-9s %-9s %s %.4f ± %.4f", model, task.name, row.head, row.layer,
                            row.metric, row.mean, row.std)  # fmt: skip
            rows.extend(task_rows)
    return rows


__all__ = [
    "FRAME_RATE",
    "FRAME_TASKS",
    "REFERENCES",
    "THRESHOLDS",
    "FrameExtractor",
    "FrameFeatures",
    "FrameProbeConfig",
    "FrameProbeResult",
    "FrameSplit",
    "FrameTaskData",
    "FrameTaskSpec",
    "HandcraftedFrameExtractor",
    "MuQFrameExtractor",
    "embed_frames",
    "has_frame_extractor",
    "load_frame_task",
    "make_frame_extractor",
    "madmom_reference",
    "probe_frame_task",
    "run_frame_suite",
    "score_outputs",
    "split_arrays",
    "train_frame_probe",
]
