"""What does ``muqkit pretrain`` cost against the same pretrainer in a plain loop? One factor at a time.

Every arm trains the demo's tiny MuQ with the demo's Mel-RVQ on the demo's corpus, with the demo's
settings (its ``iter1/run_config.json``: lr 2e-4, 600 steps, batch 8, 3 s crops, AdamW, warm-up then
cosine, clipping at 1.0) and changes one thing:

- ``pipeline``: ``muqkit pretrain`` as the demo runs it (Lightning; crops drawn in proportion to the
  files' durations; files shorter than a crop kept short, their padding masked);
- ``file``: crops drawn with every file alike (``crop_sampling=file``);
- ``pad``: short files zero-padded to the crop and trained on whole (``pad_short``);
- ``file-pad``: both (the data of a plain loop that draws files uniformly and zero-pads them);
- ``no-decay-1d``: no weight decay on one-dimensional parameters (``decay_1d=False``);
- ``loop``: the pipeline's data, pretrainer, optimiser, schedule and clipping in a plain PyTorch loop
  (no Lightning).

Each arm runs with training seeds 0, 1 and 2 (the seed sets the initial weights, the crops and the
masks, so arms of one seed start from the same weights), saves snapshots at 0 / 300 / 600 steps
and is probed along training on the demo's tasks (``muqkit.eval.curves.learning_curve``: linear probes,
probe seeds 0-2, best layer on validation, test split), next to the mel baseline.

    .venv/bin/python bench/pipeline_factors.py outputs/demo runs/factors                 # every arm
    .venv/bin/python bench/pipeline_factors.py outputs/demo runs/factors --arms pipeline loop --seeds 0

Resumable (finished runs and curves are kept). Writes OUT/factors.json and OUT/factors.md (the mean over
tasks at every probed step, per arm: mean and spread over seeds; each codebook's logged accuracy
against its commonest code's share over the last 100 steps).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import platform
import statistics
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

ARMS: dict[str, dict[str, Any]] = {
    "pipeline": {},
    "file": {"crop_sampling": "file"},
    "pad": {"pad_short": True},
    "file-pad": {"crop_sampling": "file", "pad_short": True},
    "no-decay-1d": {"decay_1d": False},
    "loop": {},
}
log = logging.getLogger("pipeline_factors")


def cpu_flags() -> str:
    """The CPU's model and its vector extensions (benchmarks print them)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor()
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "")
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    wanted = [f for f in flags if f.startswith(("avx", "amx")) or f in ("fma", "f16c")]
    return f"{model}; {' '.join(wanted)}"


def plain_loop(config: Any, manifests: list[str], out: Path, snapshot_every: int) -> None:
    """``muqkit pretrain``'s task, data, optimiser, schedule and clipping in a bare PyTorch loop."""
    from torch.utils.data import DataLoader

    from muqkit.data.loader import ResumableSampler, collate_crops
    from muqkit.hub.loaders import save_pretrainer
    from muqkit.train.pretrain import (
        PretrainTask,
        _optimizer,
        build_pretrainer,
        build_targets,
        crop_dataset,
        snapshot_dir,
        training_records,
    )

    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    pretrainer = build_pretrainer(config, build_targets(config))
    dataset = crop_dataset(config, training_records(config, manifests))
    sampler = ResumableSampler(batch_size=config.batch_size, num_batches=config.max_steps)
    loader = DataLoader(dataset, batch_size=config.batch_size, collate_fn=collate_crops, sampler=sampler)
    task = PretrainTask(pretrainer, seed=config.seed).train()
    optimizer, schedule = _optimizer(config).build(task)
    params = [p for p in task.parameters() if p.requires_grad]
    torch.manual_seed(config.seed)  # dropout draws (the pipeline seeds everything with the run's seed too)
    rows = []
    save_pretrainer(pretrainer, snapshot_dir(out, 0))
    for step, batch in enumerate(loader, start=1):
        metrics = task.training_step(batch)
        metrics["loss"].backward()
        torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        rows.append({"step": step - 1, **{f"train/{k}": float(v) for k, v in metrics.items() if v.numel() == 1}})
        if step % snapshot_every == 0 or step == config.max_steps:
            save_pretrainer(pretrainer, snapshot_dir(out, step))
    logs = out / "logs" / "version_0"
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / "metrics.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def codebook_summary(run: Path, last: int = 100) -> dict[str, Any]:
    """Each codebook's logged accuracy and commonest-code share, averaged over the last ``last`` steps."""
    path = run / "logs" / "version_0" / "metrics.csv"
    with open(path, newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r.get("train/acc_0")]
    rows = rows[-last:]
    out: dict[str, Any] = {"steps": len(rows)}
    i = 0
    while rows and f"train/acc_{i}" in rows[0]:
        out[f"acc_{i}"] = statistics.fmean(float(r[f"train/acc_{i}"]) for r in rows)
        if f"train/majority_{i}" in rows[0]:
            out[f"majority_{i}"] = statistics.fmean(float(r[f"train/majority_{i}"]) for r in rows)
        if f"train/ce_{i}" in rows[0]:
            out[f"ce_{i}"] = statistics.fmean(float(r[f"train/ce_{i}"]) for r in rows)
        i += 1
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("demo", type=Path, help="a finished `muqkit demo` folder (corpus, Mel-RVQ, iter1 settings)")
    parser.add_argument("out", type=Path)
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--snapshot-every", type=int, default=300)
    parser.add_argument("--no-curves", action="store_true", help="train only")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    from muqkit.eval.curves import learning_curve
    from muqkit.eval.probes import ProbeConfig
    from muqkit.eval.suite import SuiteConfig
    from muqkit.recipes.demo import DemoPlan
    from muqkit.train.pretrain import PretrainTrainingConfig, train_pretrain

    saved = json.loads((args.demo / "iter1" / "run_config.json").read_text())
    base = PretrainTrainingConfig.from_dict(saved["config"])
    manifests = saved["manifests"]
    plan = DemoPlan()
    tasks = list(plan.tasks)
    probe = ProbeConfig(max_epochs=plan.probe_epochs, patience=max(5, plan.probe_epochs // 5))
    suite = SuiteConfig(heads=("linear",), seeds=plan.probe_seeds, layer_modes=("sweep",), probe=probe)
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"cpu": cpu_flags(), "torch_threads": torch.get_num_threads(),
                               "base": {k: v for k, v in asdict(base).items() if k != "model"}, "arms": {}}  # fmt: skip
    for seed in args.seeds:  # seed by seed, so that a partial study is balanced across arms
        for arm in args.arms:
            run = args.out / arm / f"seed{seed}"
            config = replace(base, seed=seed, snapshot_every=args.snapshot_every, progress=False,
                             checkpoint_every=base.max_steps, **ARMS[arm])  # fmt: skip
            final = run / "snapshots" / f"step-{config.max_steps:07d}"
            if not (final / "config.json").is_file():
                start = time.perf_counter()
                if arm == "loop":
                    plain_loop(config, manifests, run, args.snapshot_every)
                else:
                    train_pretrain(manifests, run, config, overwrite=True)
                (run / "seconds.txt").write_text(f"{time.perf_counter() - start:.1f}\n")
            entry: dict[str, Any] = {"seconds": float((run / "seconds.txt").read_text()),
                                     "codebooks": codebook_summary(run)}  # fmt: skip
            if not args.no_curves:
                curve_dir = run / "curve"
                if not (curve_dir / "curve.json").is_file():
                    learning_curve(run, args.demo / "corpus", curve_dir, tasks=tasks, config=suite)
                curve = json.loads((curve_dir / "curve.json").read_text())
                entry["curve"] = curve
            results["arms"].setdefault(arm, {})[str(seed)] = entry
            results["arms"] = dict(sorted(results["arms"].items(), key=lambda kv: list(ARMS).index(kv[0])))
            (args.out / "factors.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "factors.md").write_text(report(results) + "\n")
    print(report(results))


def report(results: dict[str, Any]) -> str:
    """The mean over tasks at each probed step (mean ± spread over seeds), per arm; the codebooks."""
    lines = [f"CPU: {results['cpu']}", ""]
    steps: list[int] = []
    table: dict[str, dict[int, list[float]]] = {}
    mel: list[float] = []
    for arm, seeds in results["arms"].items():
        for entry in seeds.values():
            curve = entry.get("curve")
            if not curve:
                continue
            steps = curve["steps"]
            tasks = curve["tasks"]
            for i, step in enumerate(steps):
                value = statistics.fmean(curve["scores"][t][i]["mean"] for t in tasks)
                table.setdefault(arm, {}).setdefault(step, []).append(value)
            if "mel" in curve["baselines"]:
                mel.append(statistics.fmean(curve["baselines"]["mel"][t]["mean"] for t in tasks))
    if table:
        lines.append("| arm | " + " | ".join(f"step {s}" for s in steps) + " | seconds |")
        lines.append("|---" * (len(steps) + 2) + "|")
        for arm, by_step in table.items():
            cells = []
            for s in steps:
                values = by_step.get(s, [])
                spread = (max(values) - min(values)) / 2 if len(values) > 1 else 0.0
                cells.append(f"{statistics.fmean(values):.3f} ± {spread:.3f} (n={len(values)})" if values else "")
            seconds = statistics.fmean(e["seconds"] for e in results["arms"][arm].values())
            lines.append(f"| {arm} | " + " | ".join(cells) + f" | {seconds:.0f} |")
        if mel:
            lines.append(f"\nmel baseline: {statistics.fmean(mel):.3f}")
    lines.append("\n| arm | seed | " + " | ".join(f"acc/maj {i}" for i in range(8)) + " |")
    for arm, seeds in results["arms"].items():
        for seed, entry in seeds.items():
            c = entry["codebooks"]
            cells = [f"{c[f'acc_{i}']:.3f}/{c.get(f'majority_{i}', float('nan')):.3f}" for i in range(8)
                     if f"acc_{i}" in c]  # fmt: skip
            lines.append(f"| {arm} | {seed} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
