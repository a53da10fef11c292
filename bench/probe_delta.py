"""Two probe runs of the same models and tasks side by side (``muqkit probe`` results.json), e.g. float32 and
``--dtype int8``: per model and task the test figure of each run and their difference, at the layer each run
chose on validation and at every layer, and the mean over tasks.

    python bench/probe_delta.py runs/int8-probes/clip-float32 runs/int8-probes/clip-int8
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any


def rows(folder: Path) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(model, task, head) -> the row of ``folder/results.json``."""
    data = json.loads((folder / "results.json").read_text())
    return {(r["model"], r["task"], r["head"]): r for r in data["rows"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reference", type=Path, help="probe output folder (results.json), e.g. float32")
    parser.add_argument("other", type=Path, help="probe output folder of the same models and tasks, e.g. int8")
    args = parser.parse_args()
    ref, other = rows(args.reference), rows(args.other)
    missing = sorted(set(ref) ^ set(other))
    if missing:
        raise SystemExit(f"the runs differ in models, tasks or heads: {missing[:4]}")
    print(f"| model | task | metric | {args.reference.name} (layer) | {args.other.name} (layer) | difference | "
          "largest difference at one layer |\n|---|---|---|---|---|---|---|")  # fmt: skip
    by_model: dict[str, list[tuple[float, float]]] = {}
    for key in sorted(ref, key=lambda k: (k[0], k[1])):
        a, b = ref[key], other[key]
        per_layer = {int(p[0]): p[2] for p in a.get("per_layer") or []}
        layer_gaps = [abs(p[2] - per_layer[int(p[0])]) for p in b.get("per_layer") or [] if int(p[0]) in per_layer]
        worst = f"{max(layer_gaps):.4f}" if layer_gaps else ""
        first = f"{a['mean']:.4f} ± {a['std']:.4f} ({a['layer']})"
        second = f"{b['mean']:.4f} ± {b['std']:.4f} ({b['layer']})"
        print(f"| {key[0]} | {key[1]} | {a['metric']} | {first} | {second} | {b['mean'] - a['mean']:+.4f} | {worst} |")
        by_model.setdefault(key[0], []).append((a["mean"], b["mean"]))
    print(f"\n| model | tasks | mean, {args.reference.name} | mean, {args.other.name} | difference |")
    print("|---|---|---|---|---|")
    for model, pairs in by_model.items():
        mean_a = statistics.mean(p[0] for p in pairs)
        mean_b = statistics.mean(p[1] for p in pairs)
        print(f"| {model} | {len(pairs)} | {mean_a:.4f} | {mean_b:.4f} | {mean_b - mean_a:+.4f} |")


if __name__ == "__main__":
    main()
