"""Learning curves: probe a pretraining run's snapshots along training.

``train_pretrain(..., snapshot_every=N)`` saves the encoder before the first step (the random-weight
start of that very run: same seed, same corpus statistics) and every N steps under
``RUN/snapshots/step-NNNNNNN``. :func:`learning_curve` probes every snapshot on the same tasks with
the same probe seeds, next to the mel baseline, and writes ``curve.json`` and ``curve.png`` (one
panel per task and one for the mean over tasks; the random-weight start and the mel baseline drawn as
horizontal lines).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from muqkit.atomic import atomic_path
from muqkit.eval.suite import ResultRow, SuiteConfig, default_cache_dir, run_suite

log = logging.getLogger(__name__)
SNAPSHOT = re.compile(r"^step-(\d+)$")


@dataclass(frozen=True)
class CurvePoint:
    """One probed score: mean and std over probe seeds on the test split."""

    mean: float
    std: float
    layer: str


@dataclass(frozen=True)
class LearningCurve:
    """Scores along training.

    Attributes:
        run: the pretraining run folder.
        tasks: task names; ``metrics``: their primary metric.
        steps: snapshot steps, ascending (0 = the random-weight start).
        scores: ``task -> [CurvePoint per step]``.
        baselines: ``name -> task -> CurvePoint`` (``mel``; ``random`` = step 0 when present).
        head: probe head.
    """

    run: str
    tasks: tuple[str, ...]
    metrics: dict[str, str]
    steps: tuple[int, ...]
    scores: dict[str, list[CurvePoint]]
    baselines: dict[str, dict[str, CurvePoint]]
    head: str

    def mean_curve(self) -> list[float]:
        """The mean over tasks at each step."""
        return [sum(self.scores[t][i].mean for t in self.tasks) / len(self.tasks) for i in range(len(self.steps))]

    def baseline_mean(self, name: str) -> float:
        return sum(self.baselines[name][t].mean for t in self.tasks) / len(self.tasks)

    def to_json(self) -> dict:
        return {
            "run": self.run, "tasks": list(self.tasks), "metrics": self.metrics, "steps": list(self.steps),
            "head": self.head, "scores": {t: [asdict(p) for p in ps] for t, ps in self.scores.items()},
            "mean": self.mean_curve(),
            "baselines": {b: {t: asdict(p) for t, p in v.items()} | {"mean": self.baseline_mean(b)}
                          for b, v in self.baselines.items()},
        }  # fmt: skip

    def summary(self) -> str:
        """One sentence: where the last snapshot stands against the random-weight start and the mel."""
        last = self.mean_curve()[-1]
        parts = [f"mean over {len(self.tasks)} tasks at step {self.steps[-1]}: {last:.3f}"]
        for name in ("random", "mel"):
            if name in self.baselines:
                base = self.baseline_mean(name)
                wins = sum(self.scores[t][-1].mean > self.baselines[name][t].mean for t in self.tasks)
                word = "above" if last > base else "below"
                label = "the random-weight start" if name == "random" else "the mel baseline"
                parts.append(f"{word} {label} ({base:.3f}; higher on {wins} of {len(self.tasks)} tasks)")
        return ", ".join(parts)


def find_snapshots(run: str | os.PathLike[str]) -> dict[int, Path]:
    """``step -> folder`` of the complete snapshots of a run (``config.json`` written last)."""
    folder = Path(run) / "snapshots"
    found = {}
    if folder.is_dir():
        for child in folder.iterdir():
            match = SNAPSHOT.match(child.name)
            if match and (child / "config.json").is_file():
                found[int(match.group(1))] = child
    return dict(sorted(found.items()))


def _point(rows: Sequence[ResultRow], model: str, task: str, head: str) -> CurvePoint:
    for r in rows:
        if r.model == model and r.task == task and r.head == head:
            return CurvePoint(r.mean, r.std, r.layer)
    raise KeyError(f"no result for {model} on {task} ({head})")


def learning_curve(
    run: str | os.PathLike[str],
    corpus: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    tasks: Sequence[str],
    config: SuiteConfig | None = None,
    baselines: Sequence[str] = ("mel",),
    every: int = 1,
) -> LearningCurve:
    """Probe every snapshot of ``run`` (and ``baselines``) on ``tasks`` of ``corpus``; write curve.json/png.

    Args:
        run: a pretraining run folder with ``snapshots/`` (``snapshot_every``).
        corpus: a built corpus (its feature cache is reused).
        out: output folder.
        tasks: corpus task names.
        config: probe settings (default: linear probes, probe seed 0, best layer on validation).
        baselines: handcrafted feature baselines drawn as horizontal lines.
        every: probe every ``every``-th snapshot (the first and the last always).

    Raises:
        FileNotFoundError: the run has no snapshots.
    """
    from muqkit.eval.features import MuQExtractor, make_extractor
    from muqkit.eval.tasks import load_corpus_task
    from muqkit.ssl.muq import MuQ

    snapshots = find_snapshots(run)
    if not snapshots:
        raise FileNotFoundError(f"{run}: no snapshots (pretrain with --set snapshot_every=N)")
    steps = list(snapshots)
    steps = sorted({s for i, s in enumerate(steps) if i % max(1, every) == 0} | {steps[0], steps[-1]})
    config = config or SuiteConfig(heads=("linear",), seeds=(0,), layer_modes=("sweep",))
    head = config.heads[0]
    task_data = [load_corpus_task(name, corpus) for name in tasks]
    names = {step: f"step-{step}" for step in steps}

    def factory(spec: str):  # noqa: ANN202
        for step, name in names.items():
            if spec == name:
                return MuQExtractor(MuQ.from_pretrained(snapshots[step]), f"{Path(run).name}-{name}")
        return make_extractor(spec)

    cache = default_cache_dir(corpus)
    rows = run_suite([names[s] for s in steps] + list(baselines), task_data, config=config, cache_dir=cache,
                     extractor_factory=factory)
    scores = {t: [_point(rows, names[s], t, head) for s in steps] for t in tasks}
    base = {b: {t: _point(rows, b, t, head) for t in tasks} for b in baselines}
    if steps[0] == 0:
        base["random"] = {t: scores[t][0] for t in tasks}
    curve = LearningCurve(
        run=str(run), tasks=tuple(tasks), metrics={t.name: t.metric for t in task_data}, steps=tuple(steps),
        scores=scores, baselines=base, head=head,
    )  # fmt: skip
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "curve.json") as tmp:
        tmp.write_text(json.dumps(curve.to_json(), indent=2) + "\n")
    plot_curve(curve, out / "curve.png")
    return curve


def plot_curve(curve: LearningCurve, path: str | os.PathLike[str]) -> Path:
    """One panel per task plus the mean: score against steps, baselines as horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [*curve.tasks, "mean"]
    cols = min(4, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.9 * rows), squeeze=False)
    styles = {"random": ("tab:red", "--"), "mel": ("tab:gray", ":")}
    for ax, panel in zip(axes.flat, panels, strict=False):
        if panel == "mean":
            ys, errs = curve.mean_curve(), None
            lines = {b: curve.baseline_mean(b) for b in curve.baselines}
            ax.set_ylabel("mean over tasks")
        else:
            ys = [p.mean for p in curve.scores[panel]]
            errs = [p.std for p in curve.scores[panel]]
            lines = {b: v[panel].mean for b, v in curve.baselines.items()}
            ax.set_ylabel(curve.metrics.get(panel, ""))
        ax.errorbar(curve.steps, ys, yerr=errs, marker="o", capsize=2, label="pretrained", color="tab:blue")
        for name, value in lines.items():
            color, style = styles.get(name, ("tab:green", "-."))
            label = "random-weight start" if name == "random" else name
            ax.axhline(value, color=color, linestyle=style, linewidth=1.2, label=label)
        ax.set_title(panel)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, loc="best")
    fig.suptitle(f"{Path(curve.run).name}: {curve.head} probes along training", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


__all__ = ["CurvePoint", "LearningCurve", "find_snapshots", "learning_curve", "plot_curve"]
