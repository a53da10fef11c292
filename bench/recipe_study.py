"""Does a recipe clearly learn on this machine? Train it with three seeds, probe it along training.

A recipe is a :class:`~muqkit.recipes.demo.DemoPlan` (tokenizer, MuQ preset, crops, steps) run on a
built corpus the way ``muqkit claims`` runs its iteration-1 arm and the refinement (iteration 2), once
per training seed; every seed trains its own Mel-RVQ, MuQ (iteration 1), latent RVQ and MuQ
(iteration 2). Then every seed's random-weight start (step 0 of its own run), its snapshots along
iteration 1, its iteration 2 and the mel features are probed with ``muqkit probe`` on the corpus's
six clip tasks (linear probes, probe seeds 0-2, best layer on validation, test split) and on its
four frame tasks (linear frame probes, probe seed 0, best layer).

    .venv/bin/python bench/recipe_study.py runs/small runs/recipe --seeds 0 1 2 --train-only   # one process per seed
    .venv/bin/python bench/recipe_study.py runs/small runs/recipe --seeds 0 1 2                # probes + table

Writes OUT/recipe.json and OUT/recipe.md: per model, the mean over the clip tasks and over the frame
tasks (mean ± half-range over the training seeds, and per seed), and the checks the recipe must pass:
iteration 1 above its random start by at least twice the seed spread on both means, iteration 2 at
least level with the mel features on at least half of the tasks. Resumable (finished runs are kept).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

CLIP_TASKS = ("key", "collection", "dance", "tags", "instrument", "pitch")
FRAME_TASKS = ("beat", "chord", "melody", "onset")
MANIFESTS = ("scores.jsonl", "notes.jsonl", "game.jsonl")
log = logging.getLogger("recipe_study")


def recipe_plan(steps: int, preset: str, codebooks: int, codes: int, rvq_steps: int, snapshots: int,
                crop_seconds: float = 3.0, batch_size: int = 8) -> Any:  # fmt: skip
    """The plan studied: the side-by-side's optimiser and data (``tiny-official``: fairseq Adam at 5e-4, 8%
    warm-up then linear decay; batches of 8 crops of 3 s of every file alike, short files padded with
    silence). The crop length also sets the Mel-RVQ's training crops."""
    from muqkit.recipes.demo import DemoPlan

    return DemoPlan(
        corpus="small", rvq_steps=rvq_steps, pretrain_steps=steps, refine_rvq_steps=rvq_steps,
        crop_seconds=crop_seconds, batch_size=batch_size, crop_sampling="file", pad_short=True, num_codebooks=codebooks,
        codebook_size=codes, tasks=CLIP_TASKS, probe_seeds=(0, 1, 2), preset=preset, latent_seconds=3600.0,
        snapshots=snapshots, tokenizer_seconds=3600.0,
    )  # fmt: skip


def cpu_flags() -> str:
    """The CPU's model and its vector extensions (benchmarks print them)."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "")
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    return f"{model}; {' '.join(f for f in flags if f.startswith(('avx', 'amx')) or f in ('fma', 'f16c'))}"


def train(corpus: Path, out: Path, plan: Any, seed: int) -> dict[str, float]:
    """One seed's Mel-RVQ, iteration 1 and iteration 2 (finished steps are skipped on a rerun)."""
    from muqkit.atomic import atomic_path
    from muqkit.data.loader import load_records
    from muqkit.recipes.demo import train_arms

    manifests = [corpus / m for m in MANIFESTS if (corpus / m).is_file()]
    files = out / "pretrain-audio.txt"
    if not files.is_file():
        with atomic_path(files) as tmp:
            tmp.write_text("".join(f"{p.resolve()}\n" for _, p in load_records(manifests)))
    timings: dict[str, float] = {}
    path = out / f"seed{seed}" / "timings.json"
    if path.is_file():
        return json.loads(path.read_text())
    train_arms(out / f"seed{seed}", plan, manifests, files, seed=seed, bestrq=False, timings=timings)
    timings["threads"] = torch.get_num_threads()
    path.write_text(json.dumps(timings, indent=2) + "\n")
    return timings


def models_of(out: Path, seeds: list[int], steps: list[int]) -> dict[str, Path]:
    """Model spec -> folder: each seed's snapshots at ``steps`` (step 0 its random start) and iteration 2."""
    from muqkit.train.pretrain import snapshot_dir

    models: dict[str, Path] = {}
    for seed in seeds:
        for step in steps:
            models[f"s{seed}-step{step}"] = snapshot_dir(out / f"seed{seed}" / "iter1", step)
        models[f"s{seed}-iter2"] = out / f"seed{seed}" / "iter2" / "pretrain" / "model"
    return models


def probe(corpus: Path, out: Path, models: dict[str, Path], tasks: tuple[str, ...], seeds: str) -> Path:
    """``muqkit probe`` on ``tasks`` (results kept when there)."""
    results = out / "results.json"
    if results.is_file():
        return results
    cli = [sys.executable, "-c", "from muqkit.cli.main import main; main()"]
    command = [*cli, "probe", "--corpus", str(corpus), "--out", str(out),
               "--model", "mel", *[a for p in models.values() for a in ("--model", f"muq:{p}")],
               *[a for t in tasks for a in ("--task", t)], "--heads", "linear", "--seeds", seeds,
               "--layers", "sweep", "--max-epochs", "100", "--no-plots"]  # fmt: skip
    subprocess.run(command, check=True)
    return results


def scores(results: Path, models: dict[str, Path]) -> dict[str, dict[str, float]]:
    """Per model name (and ``mel``), each task's best-layer linear test score (mean over probe seeds)."""
    rows = json.loads(results.read_text())["rows"]
    by_spec = {f"muq:{p}": name for name, p in models.items()}
    out: dict[str, dict[str, float]] = {}
    for row in rows:
        if row["head"] != "linear" or not (row["layer"] == "-" or row["layer"].startswith("best")):
            continue
        name = "mel" if row["model"] == "mel" else by_spec.get(row["model"])
        if name is not None:
            out.setdefault(name, {})[row["task"]] = row["mean"]
    return out


def summarise(clip: dict[str, dict[str, float]], frame: dict[str, dict[str, float]], seeds: list[int],
              steps: list[int]) -> dict[str, Any]:  # fmt: skip
    """Means over tasks per seed, their mean and half-range, and the recipe's checks."""

    def mean_over(table: dict[str, dict[str, float]], name: str, tasks: tuple[str, ...]) -> float:
        return statistics.fmean(table[name][t] for t in tasks)

    def stat(values: list[float]) -> dict[str, Any]:
        return {"mean": statistics.fmean(values), "spread": (max(values) - min(values)) / 2, "runs": values}

    points = [f"step{s}" for s in steps] + ["iter2"]
    summary: dict[str, Any] = {"clip": {}, "frame": {}, "tasks": {}}
    for kind, table, tasks in (("clip", clip, CLIP_TASKS), ("frame", frame, FRAME_TASKS)):
        summary[kind]["mel"] = mean_over(table, "mel", tasks)
        for point in points:
            summary[kind][point] = stat([mean_over(table, f"s{s}-{point}", tasks) for s in seeds])
        gains = [mean_over(table, f"s{s}-step{steps[-1]}", tasks) - mean_over(table, f"s{s}-step0", tasks)
                 for s in seeds]  # fmt: skip
        summary[kind]["iter1_gain"] = stat(gains)
        for task in tasks:
            summary["tasks"][task] = {
                "mel": table["mel"][task],
                **{point: statistics.fmean(table[f"s{s}-{point}"][task] for s in seeds) for point in points},
            }
    checks = {}
    for kind in ("clip", "frame"):
        last = summary[kind][f"step{steps[-1]}"]
        start = summary[kind]["step0"]
        margin = last["mean"] - start["mean"]
        spread = max(last["spread"], start["spread"], summary[kind]["iter1_gain"]["spread"])
        checks[f"iter1 above its random start by twice the seed spread ({kind})"] = {
            "holds": margin >= 2 * spread, "margin": margin, "spread": spread,
        }  # fmt: skip
    level = [t for t, row in summary["tasks"].items() if row["iter2"] >= row["mel"]]
    checks["iter2 level with mel on at least half of the tasks"] = {
        "holds": len(level) * 2 >= len(summary["tasks"]), "tasks": level, "of": len(summary["tasks"]),
    }  # fmt: skip
    summary["checks"] = checks
    return summary


def markdown(summary: dict[str, Any], steps: list[int], record: dict[str, Any]) -> str:
    """The curve table (means over tasks), the per-task table and the checks."""
    points = [f"step{s}" for s in steps] + ["iter2"]
    lines = [f"CPU: {record['cpu']}", "", "| model | clip tasks (6) | per seed | frame tasks (4) | per seed |",
             "|---|---|---|---|---|"]  # fmt: skip
    for point in points:
        cells = []
        for kind in ("clip", "frame"):
            s = summary[kind][point]
            cells += [f"{s['mean']:.3f} ± {s['spread']:.3f}", ", ".join(f"{v:.3f}" for v in s["runs"])]
        name = "random start" if point == "step0" else point.replace("step", "iteration 1, step ")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append(f"| mel | {summary['clip']['mel']:.3f} | | {summary['frame']['mel']:.3f} | |")
    tasks = list(summary["tasks"])
    lines += ["", "| model | " + " | ".join(tasks) + " |", "|---" * (len(tasks) + 1) + "|"]
    for point in ["mel", *points]:
        lines.append(f"| {point} | " + " | ".join(f"{summary['tasks'][t][point]:.3f}" for t in tasks) + " |")
    lines += ["", "| check | holds | measured |", "|---|---|---|"]
    for name, check in summary["checks"].items():
        detail = ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in check.items()
                           if k != "holds")  # fmt: skip
        lines.append(f"| {name} | {'yes' if check['holds'] else 'no'} | {detail} |")
    lines += ["", f"training seconds per seed: {record['timings']}"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path, help="a built format-3 corpus (muqkit data build-corpus --size small)")
    parser.add_argument("out", type=Path)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=3000, help="pretraining steps of each iteration")
    parser.add_argument("--preset", default="tiny-official")
    parser.add_argument("--codebooks", type=int, default=4)
    parser.add_argument("--codes", type=int, default=1024)
    parser.add_argument("--rvq-steps", type=int, default=1000)
    parser.add_argument("--snapshots", type=int, default=6, help="snapshots along iteration 1")
    parser.add_argument("--crop-seconds", type=float, default=3.0, help="MuQ pretraining crop length")
    parser.add_argument("--batch-size", type=int, default=8, help="MuQ pretraining crops per step")
    parser.add_argument("--probe-steps", type=int, nargs="+", help="iteration-1 steps to probe (default: 0, "
                        "a third, two thirds and the last snapshot)")  # fmt: skip
    parser.add_argument("--train-only", action="store_true")
    parser.add_argument("--iter1-only", action="store_true", help="probe iteration 1's snapshots only")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    plan = recipe_plan(args.steps, args.preset, args.codebooks, args.codes, args.rvq_steps, args.snapshots,
                       args.crop_seconds, args.batch_size)  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {"cpu": cpu_flags(), "plan": dataclasses.asdict(plan), "timings": {}}
    print(f"CPU: {record['cpu']}; torch threads {torch.get_num_threads()}", flush=True)
    if not args.iter1_only:
        for seed in args.seeds:
            record["timings"][str(seed)] = train(args.corpus, args.out, plan, seed)
    if args.train_only:
        return
    every = max(1, args.steps // args.snapshots)
    steps = args.probe_steps or sorted({0, (args.steps // 3) // every * every, (2 * args.steps // 3) // every * every,
                                        args.steps})  # fmt: skip
    models = models_of(args.out, args.seeds, steps)
    start = time.perf_counter()
    clip: dict[str, dict[str, float]] = {}
    frame: dict[str, dict[str, float]] = {}
    # Iteration 1's snapshots first (they can be probed while iteration 2 trains), then iteration 2.
    for group in ("iter1", "iter2"):
        chosen = {k: v for k, v in models.items() if k.endswith("iter2") == (group == "iter2")}
        for kind, tasks, seeds, table in (("clip", CLIP_TASKS, "0,1,2", clip), ("frame", FRAME_TASKS, "0", frame)):
            results = probe(args.corpus, args.out / f"probes-{kind}-{group}", chosen, tasks, seeds)
            for name, row in scores(results, chosen).items():
                table.setdefault(name, {}).update(row)
        if args.iter1_only:
            return
    record["probe_seconds"] = round(time.perf_counter() - start, 1)
    summary = summarise(clip, frame, args.seeds, steps)
    record.update(summary=summary, steps=steps, command=" ".join(["bench/recipe_study.py", *sys.argv[1:]]))
    (args.out / "recipe.json").write_text(json.dumps(record, indent=2) + "\n")
    text = markdown(summary, steps, record)
    (args.out / "recipe.md").write_text(text)
    print(text)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
