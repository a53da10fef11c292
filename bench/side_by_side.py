"""muqkit's trainer beside the official code's, at the same budget, from the same start.

For each training seed:

1. muqkit trains the tiny MuQ with the ``tiny-official`` preset (the official recipe's optimiser and
   schedule: fairseq's Adam, eps 1e-6, weight decay 0.01, lr 5e-4, 8% warm-up then linear decay,
   clipping at 10) on the demo corpus, with a 4 x 1024 x 16 Mel-RVQ (the official
   ``ResidualVectorQuantize`` shape) trained once for the study, short files zero-padded to the crop
   (``pad_short``: the official model takes no lengths), snapshots every 200 steps;
2. the official ``MuQModel`` (``bench/official_trainer.py``, in ``.venv-official``) starts from muqkit's
   step-0 snapshot of that seed (same weights, head, Mel-RVQ and corpus statistics, official format) and
   trains on the very crops muqkit's data layer drew (file, start, length), with its own masking, the
   same optimiser and schedule;
3. both runs are probed along training on the demo's tasks (``muqkit.eval.curves.learning_curve``; muqkit
   loads the official snapshots), next to the mel baseline.

    bash bench/official_env.sh
    .venv/bin/python bench/side_by_side.py outputs/demo runs/side-by-side --seeds 0 1 2 --steps 800

Resumable. Writes OUT/side_by_side.json, OUT/side_by_side.md, OUT/curves.png (loss and per-codebook
accuracy against the commonest code's share, both trainers) and OUT/summary.json (the means the demo's
closing lines quote: copied to ``src/muqkit/recipes/side_by_side.json``).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from pipeline_factors import codebook_summary, cpu_flags

REPO = Path(__file__).resolve().parents[1]
OFFICIAL_PYTHON = REPO / ".venv-official" / "bin" / "python"
log = logging.getLogger("side_by_side")


def train_tokenizer(files: Path, out: Path, seed: int) -> Path:
    """The study's Mel-RVQ: 4 x 1024 x 16 (the official quantizer's codebook shape), the demo's schedule."""
    from muqkit.train.tokenizer import TokenizerTrainingConfig, train_tokenizer

    if not (out / "tokenizer" / "config.json").is_file():
        config = TokenizerTrainingConfig(
            kind="mel_rvq", cache_frames=True, seed=seed, max_steps=300, batch_size=16, crop_seconds=3.0, lr=1e-3,
            checkpoint_every=300, model={"num_codebooks": 4, "codebook_size": 1024, "codebook_dim": 16},
        )  # fmt: skip
        train_tokenizer(files, out, config, progress=False)
    return out / "tokenizer"


def crop_list(config: Any, manifests: list[str]) -> tuple[list[list[list[Any]]], int]:
    """The run's batches as ``[file, start, samples]`` (muqkit's crops of this seed), and the crop length."""
    from muqkit.train.pretrain import crop_dataset, training_records

    dataset = crop_dataset(replace(config, preload=False), training_records(config, manifests))
    batches = []
    for step in range(config.max_steps):
        batch = []
        for i in range(step * config.batch_size, (step + 1) * config.batch_size):
            record, start = dataset.locate(i)
            count = min(dataset.crop_samples, int(dataset.num_samples[record]) - start)
            batch.append([str(dataset.records[record][1]), start, count])
        batches.append(batch)
    return batches, dataset.crop_samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("demo", type=Path, help="a finished `muqkit demo` folder (corpus, audio list, settings)")
    parser.add_argument("out", type=Path)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--snapshot-every", type=int, default=200)
    parser.add_argument("--no-curves", action="store_true")
    parser.add_argument("--trainers", nargs="+", default=["muqkit", "official"], choices=["muqkit", "official"])
    parser.add_argument("--tokenizer", type=Path, help="reuse this Mel-RVQ folder (default: train one into OUT)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not OFFICIAL_PYTHON.is_file():
        raise SystemExit("no official venv: run `bash bench/official_env.sh` first")

    from muqkit.eval.curves import learning_curve
    from muqkit.eval.probes import ProbeConfig
    from muqkit.eval.suite import SuiteConfig
    from muqkit.recipes.demo import DemoPlan
    from muqkit.train.pretrain import PretrainTrainingConfig, load_preset, train_pretrain

    saved = json.loads((args.demo / "iter1" / "run_config.json").read_text())
    manifests = saved["manifests"]
    tokenizer = args.tokenizer or train_tokenizer(args.demo / "pretrain-audio.txt", args.out / "mel_rvq", seed=0)
    plan = DemoPlan()
    probe = ProbeConfig(max_epochs=plan.probe_epochs, patience=max(5, plan.probe_epochs // 5))
    suite = SuiteConfig(heads=("linear",), seeds=plan.probe_seeds, layer_modes=("sweep",), probe=probe)
    settings = {k: v for k, v in load_preset("tiny-official").items() if k != "description"}
    results: dict[str, Any] = {"cpu": cpu_flags(), "torch_threads": torch.get_num_threads(), "steps": args.steps,
                               "runs": {}}  # fmt: skip
    for seed in args.seeds:
        config = PretrainTrainingConfig.from_dict({
            **settings, "tokenizer": str(tokenizer), "seed": seed, "max_steps": args.steps, "pad_short": True,
            "snapshot_every": args.snapshot_every, "checkpoint_every": args.steps, "progress": False, "log_every": 1,
        })  # fmt: skip
        runs = {name: args.out / name / f"seed{seed}" for name in args.trainers}
        final = f"step-{args.steps:07d}"
        if "muqkit" in runs and not (runs["muqkit"] / "snapshots" / final / "config.json").is_file():
            start = time.perf_counter()
            train_pretrain(manifests, runs["muqkit"], config, overwrite=True)
            (runs["muqkit"] / "seconds.txt").write_text(f"{time.perf_counter() - start:.1f}\n")
        if "official" in runs and not (runs["official"] / "snapshots" / final / "config.json").is_file():
            batches, crop_samples = crop_list(replace(config, max_steps=args.steps), manifests)
            crops = args.out / f"crops-seed{seed}.json"
            crops.write_text(json.dumps(batches))
            subprocess.run([str(OFFICIAL_PYTHON), str(REPO / "bench" / "official_trainer.py"),
                            str(args.out / "muqkit" / f"seed{seed}" / "snapshots" / "step-0000000"), str(crops),
                            str(runs["official"]),
                            "--seed", str(seed), "--crop-samples", str(crop_samples),
                            "--snapshot-every", str(args.snapshot_every)], check=True)  # fmt: skip
        for name, run in runs.items():
            entry: dict[str, Any] = {"seconds": float((run / "seconds.txt").read_text()),
                                     "codebooks": codebook_summary(run)}  # fmt: skip
            if not args.no_curves:
                if not (run / "curve" / "curve.json").is_file():
                    learning_curve(run, args.demo / "corpus", run / "curve", tasks=list(plan.tasks), config=suite)
                entry["curve"] = json.loads((run / "curve" / "curve.json").read_text())
            results["runs"].setdefault(name, {})[str(seed)] = entry
        (args.out / "side_by_side.json").write_text(json.dumps(results, indent=2) + "\n")
    command = "python bench/side_by_side.py DEMO OUT --seeds " + " ".join(map(str, args.seeds))
    summary: dict[str, Any] = {"steps": args.steps, "seeds": args.seeds, "tasks": list(plan.tasks), "command": command}
    if not args.no_curves:
        for name, seeds in results["runs"].items():
            finals = [statistics.fmean(e["curve"]["scores"][t][-1]["mean"] for t in e["curve"]["tasks"])
                      for e in seeds.values()]  # fmt: skip
            starts = [statistics.fmean(e["curve"]["scores"][t][0]["mean"] for t in e["curve"]["tasks"])
                      for e in seeds.values()]  # fmt: skip
            summary[name] = {"mean": statistics.fmean(finals), "start": statistics.fmean(starts),
                             "spread": (max(finals) - min(finals)) / 2, "per_seed": finals}  # fmt: skip
        (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    text = report(results)
    (args.out / "side_by_side.md").write_text(text + "\n")
    plot(args.out, results)
    print(text)


def report(results: dict[str, Any]) -> str:
    """Mean over tasks at each probed step, mean ± half-range over seeds; per-codebook accuracy/majority."""
    from pipeline_factors import report as factor_report

    return factor_report({"cpu": results["cpu"], "arms": results["runs"]})


def plot(out: Path, results: dict[str, Any]) -> None:
    """Training loss and per-codebook accuracy (solid) against the commonest code's share (dotted)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    colours = {"muqkit": "tab:blue", "official": "tab:orange"}
    for name in results["runs"]:
        for seed in results["runs"][name]:
            with open(out / name / f"seed{seed}" / "logs" / "version_0" / "metrics.csv", newline="") as handle:
                rows = [r for r in csv.DictReader(handle) if r.get("train/acc_0")]
            steps = [int(r["step"]) for r in rows]
            smooth = _smooth([float(r["train/loss"]) for r in rows])
            axes[0].plot(steps, smooth, color=colours[name], alpha=0.7, label=f"{name} seed {seed}")
            for i, style in ((0, "-"), (1, "--")):
                acc = _smooth([float(r[f"train/acc_{i}"]) for r in rows])
                axes[1].plot(steps, acc, style, color=colours[name], alpha=0.6,
                             label=f"{name} acc_{i}" if seed == "0" else None)  # fmt: skip
                majority = _smooth([float(r[f"train/majority_{i}"]) for r in rows])
                axes[1].plot(steps, majority, ":", color="grey", alpha=0.4)
    axes[0].set(title="masked-prediction loss (20-step mean)", xlabel="step")
    axes[1].set(title="codebook 0/1 accuracy; dotted: commonest code's share", xlabel="step")
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=110)


def _smooth(values: list[float], width: int = 20) -> list[float]:
    return [statistics.fmean(values[max(0, i - width + 1) : i + 1]) for i in range(len(values))]


if __name__ == "__main__":
    sys.exit(main())
