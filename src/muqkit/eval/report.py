"""Results tables (markdown and JSON) and per-layer plots (PNG) of a suite run."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from muqkit.eval.suite import ResultRow


def _cell(row: ResultRow) -> str:
    if row.head == "zero-shot":  # a fixed model: no probe seeds, so no spread
        return f"{row.mean:.3f}"
    return f"{row.mean:.3f} ± {row.std:.3f}"


def _number(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.3f}"  # not measured (no validation for zero-shot rows)


def markdown_table(rows: Sequence[ResultRow], *, head: str = "mlp") -> str:
    """Compact table: one line per task, one column per model, for one head.

    A multi-layer model's cell is its best-on-validation layer (the layer is named) unless only a
    weighted row exists; the madmom key model's zero-shot score appears in its own column.
    """
    models: list[str] = []
    tasks: list[tuple[str, str]] = []
    cells: dict[tuple[str, str], str] = {}
    for row in rows:
        column = f"{row.model} (zero-shot)" if row.head == "zero-shot" else row.model
        if row.head not in (head, "zero-shot"):
            continue
        if column not in models:
            models.append(column)
        if (row.task, row.metric) not in tasks:
            tasks.append((row.task, row.metric))
        key = (row.task, column)
        if row.layer.startswith("best") or row.layer == "-" or key not in cells:
            suffix = f" (L{row.layer.split(':')[1]})" if ":" in row.layer else ""
            cells[key] = _cell(row) + suffix
    lines = ["| task | metric | " + " | ".join(models) + " |", "|---|---|" + "---|" * len(models)]
    for task, metric in tasks:
        lines.append(f"| {task} | {metric} | " + " | ".join(cells.get((task, m), "") for m in models) + " |")
    return "\n".join(lines)


def long_table(rows: Sequence[ResultRow]) -> str:
    """Every row: model, task, head, layer choice, test mean ± std, validation mean, timings."""
    lines = [
        "| model | task | head | layer | metric | test | val | other metrics | embed s | probe s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        others = ", ".join(f"{k} {v:.3f}" for k, v in r.metrics.items() if k != r.metric)
        lines.append(
            f"| {r.model} | {r.task} | {r.head} | {r.layer} | {r.metric} | {_cell(r)} | {_number(r.val)} | {others} "
            f"| {r.embed_seconds:.1f} | {r.probe_seconds:.1f} |"
        )
    return "\n".join(lines)


def plot_layers(rows: Sequence[ResultRow], out_dir: str | os.PathLike[str]) -> list[Path]:
    """One PNG per task: test score per layer for every swept model and head, single-layer baselines
    as horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for task in dict.fromkeys(r.task for r in rows):
        task_rows = [r for r in rows if r.task == task]
        if not any(r.per_layer for r in task_rows):
            continue
        fig, ax = plt.subplots(figsize=(6.4, 4.0))
        for r in task_rows:
            if r.per_layer:
                layers = [p[0] for p in r.per_layer]
                means = [p[2] for p in r.per_layer]
                stds = [p[3] for p in r.per_layer]
                ax.errorbar(layers, means, yerr=stds, marker="o", capsize=3, label=f"{r.model} {r.head}")
            elif r.layer == "-":
                ax.axhline(r.mean, linestyle="--", linewidth=1, label=f"{r.model} {r.head}", color=None)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("layer (0 = embeddings)")
        ax.set_ylabel(task_rows[0].metric)
        ax.set_title(task)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
        fig.tight_layout()
        path = out_dir / f"layers-{task}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths


def write_report(
    rows: Sequence[ResultRow],
    out_dir: str | os.PathLike[str],
    *,
    meta: Mapping[str, Any] | None = None,
    plots: bool = True,
) -> dict[str, Path]:
    """Write ``results.json``, ``results.md`` and ``layers-<task>.png`` into ``out_dir``.

    Args:
        rows: suite rows.
        out_dir: output folder.
        meta: anything to record next to the rows (command, settings, timings).
        plots: also write the per-layer plots.

    Returns:
        Name -> path of what was written.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "results.json"
    json_path.write_text(
        json.dumps({"meta": dict(meta or {}), "rows": [asdict(r) for r in rows]}, indent=2, sort_keys=True) + "\n"
    )
    heads = list(dict.fromkeys(r.head for r in rows if r.head != "zero-shot"))
    parts = ["# Probe results", ""]
    if meta and meta.get("command"):
        parts += ["```", str(meta["command"]), "```", ""]
    for head in heads:
        parts += [f"## {head} probe (test, mean ± std over seeds)", "", markdown_table(rows, head=head), ""]
    parts += ["## All rows", "", long_table(rows), ""]
    md_path = out_dir / "results.md"
    md_path.write_text("\n".join(parts))
    written = {"json": json_path, "markdown": md_path}
    if plots:
        for path in plot_layers(rows, out_dir):
            written[path.stem] = path
    return written
