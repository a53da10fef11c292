"""Compare learning curves of several pretraining runs (one factor changed per run) at the steps they share.

Reads the ``curve.json`` files written by ``muqkit curve`` and prints a markdown table (per task and the
mean, per arm and step) with the random-weight start and the mel baseline as reference rows; ``--png``
draws the mean against steps for every arm.

    .venv/bin/python bench/compare_curves.py base=runs/curve-2400/curve.json \
        lr5e-4=runs/study-curves/lr5e-4/curve.json recon=runs/study-curves/recon/curve.json --png OUT.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def load(arms: list[str]) -> dict[str, dict[str, Any]]:
    curves = {}
    for arm in arms:
        name, _, path = arm.partition("=")
        if not path:
            raise SystemExit(f"{arm}: expected NAME=PATH/curve.json")
        curves[name] = json.loads(Path(path).read_text())
    return curves


def table(curves: dict[str, dict[str, Any]]) -> str:
    first = next(iter(curves.values()))
    tasks = first["tasks"]
    shared = sorted(set.intersection(*(set(c["steps"]) for c in curves.values())))
    lines = [
        "| arm | step | " + " | ".join(tasks) + " | mean |",
        "|---|---|" + "---|" * (len(tasks) + 1),
    ]
    for reference in ("random", "mel"):
        row = first["baselines"].get(reference)
        if row:
            cells = [f"{row[t]['mean']:.3f}" for t in tasks]
            lines.append(f"| {reference} | - | " + " | ".join(cells) + f" | {row['mean']:.3f} |")
    for step in shared:
        if step == 0:
            continue
        for name, curve in curves.items():
            i = curve["steps"].index(step)
            cells = [f"{curve['scores'][t][i]['mean']:.3f}" for t in tasks]
            lines.append(f"| {name} | {step} | " + " | ".join(cells) + f" | {curve['mean'][i]:.3f} |")
    return "\n".join(lines)


def plot(curves: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, curve in curves.items():
        ax.plot(curve["steps"], curve["mean"], marker="o", label=name)
    first = next(iter(curves.values()))
    for reference, style in (("random", ":"), ("mel", "--")):
        if reference in first["baselines"]:
            ax.axhline(first["baselines"][reference]["mean"], color="grey", linestyle=style, label=reference)
    ax.set_xlabel("pretraining step")
    ax.set_ylabel(f"mean over {len(first['tasks'])} tasks (test)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("arms", nargs="+", help="NAME=PATH/curve.json")
    parser.add_argument("--png", help="draw the mean against steps here")
    args = parser.parse_args()
    curves = load(args.arms)
    print(table(curves))
    if args.png:
        plot(curves, Path(args.png))


if __name__ == "__main__":
    main()
