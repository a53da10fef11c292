"""Which change makes a small pretrained MuQ learn? One factor at a time, measured with learning curves.

Every arm pretrains the same preset from the same seed on the same corpus audio (the built corpus's
scores, notes and game music, train and pool splits) and keeps snapshots; each run is probed along
training (``muqkit.eval.curves``: linear probes, probe seed 0, best layer on validation, test split)
next to its own random-weight start (step 0) and the mel baseline. The tokenizers are analysed too:
code usage and perplexity per stage, and how much pitch a bag of each note's codes carries (stages
1..k, logistic regression on the single notes' train split, accuracy on their test split).

    .venv/bin/python bench/learning_study.py runs/bench-small/corpus runs/study            # every arm
    .venv/bin/python bench/learning_study.py runs/bench-small/corpus runs/study --arms base recon

Resumable: finished tokenizers, runs and curves are kept. Writes OUT/study.json and OUT/study.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

TASKS = ("key", "collection", "dance", "tags", "instrument", "pitch")
TOKENIZERS: dict[str, dict[str, Any]] = {
    # the claims plan's Mel-RVQ (400 steps of 16 x 4 s)
    "tok-400": {"max_steps": 400, "batch_size": 16, "crop_seconds": 4.0, "lr": 1e-3},
    # closer to the official budget (about 4,000 steps of 32 x 5 s)
    "tok-2000": {"max_steps": 2000, "batch_size": 32, "crop_seconds": 5.0, "lr": 1e-3},
}
ARMS: dict[str, dict[str, Any]] = {
    "base": {"tokenizer": "tok-400", "settings": {}},
    "tok2000": {"tokenizer": "tok-2000", "settings": {}},
    "recon": {"tokenizer": "tok-400", "settings": {"recon_weight": 1.0}},
    "lr5e-4": {"tokenizer": "tok-400", "settings": {"lr": 5e-4}},
    "lr2e-4": {"tokenizer": "tok-400", "settings": {"lr": 2e-4}},
    "bestrq": {"tokenizer": "random-projection", "settings": {}},
}
"""One factor at a time against ``base``; ``--base-run`` reuses a finished run (a claims arm) as ``base``."""
log = logging.getLogger("learning_study")


def train_tokenizers(names: set[str], out: Path, files: Path, seed: int) -> dict[str, Path]:
    from muqkit.train.tokenizer import TokenizerTrainingConfig, fit_baseline, train_tokenizer

    folders = {}
    for name in sorted(names):
        folder = out / "tokenizers" / name
        if name == "random-projection":
            if not (folder / "config.json").is_file():
                fit_baseline(files, folder, kind="random_projection", seed=seed,
                             model={"num_codebooks": 8, "codebook_size": 1024})  # fmt: skip
            folders[name] = folder
            continue
        if not (folder / "tokenizer" / "config.json").is_file():
            start = time.perf_counter()
            knobs = TOKENIZERS[name]
            config = TokenizerTrainingConfig(
                kind="mel_rvq", cache_frames=True, seed=seed, checkpoint_every=knobs["max_steps"],
                model={"num_codebooks": 8, "codebook_size": 1024, "codebook_dim": 16}, **knobs,
            )  # fmt: skip
            train_tokenizer(files, folder, config, progress=False)
            (folder / "seconds.txt").write_text(f"{time.perf_counter() - start:.1f}\n")
        folders[name] = folder / "tokenizer"
    return folders


def analyse_tokenizer(folder: Path, corpus: Path) -> dict[str, Any]:
    """Usage and perplexity per stage on the score clips; pitch from bags of codes of the notes."""
    from sklearn.linear_model import LogisticRegression

    from muqkit.audio.io import load_audio
    from muqkit.data.manifest import read_manifest
    from muqkit.tokenizer.base import load_tokenizer

    tok: Any = load_tokenizer(folder)
    if not hasattr(tok, "rvq"):
        return {}
    size = int(tok.codebook_size)

    def codes_of(path: Path) -> np.ndarray:
        wav = load_audio(path, sample_rate=24000).float().unsqueeze(0)
        return tok.encode(wav)[0].numpy()  # (stages, frames)

    scores = [r for r in read_manifest(corpus / "scores.jsonl") if r.split == "test"]
    counts = np.zeros((tok.num_codebooks, size))
    for r in scores:
        c = codes_of(corpus / r.path)
        for s in range(c.shape[0]):
            counts[s] += np.bincount(c[s][c[s] >= 0], minlength=size)
    p = counts / counts.sum(1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.nansum(np.where(p > 0, p * np.log(p), 0.0), axis=1)
    notes = [r for r in read_manifest(corpus / "notes.jsonl") if r.split in ("train", "test")]
    bags = []
    for r in notes:
        c = codes_of(corpus / r.path)
        bags.append(np.stack([np.bincount(c[s][c[s] >= 0], minlength=size) for s in range(c.shape[0])]))
    bag = np.stack(bags).astype(np.float64)  # (notes, stages, size)
    bag /= np.maximum(bag.sum(-1, keepdims=True), 1)
    labels = np.array([int(r.labels["pitch"]) for r in notes])
    train = np.array([r.split == "train" for r in notes])
    pitch = {}
    for k in (1, 2, 4, tok.num_codebooks):
        x = bag[:, :k].reshape(len(notes), -1)
        clf = LogisticRegression(max_iter=2000, C=10.0).fit(x[train], labels[train])
        pitch[f"stages_1_{k}"] = float((clf.predict(x[~train]) == labels[~train]).mean())
    chance = float(np.bincount(labels[~train]).max() / (~train).sum())
    return {"usage": (counts > 0).mean(1).tolist(), "perplexity": np.exp(entropy).tolist(),
            "pitch_from_codes": pitch, "pitch_majority": chance, "test_notes": int((~train).sum())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus")
    parser.add_argument("out")
    parser.add_argument("--arms", nargs="+", default=list(ARMS))
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--steps", type=int, default=2400)
    parser.add_argument("--snapshots", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-analysis", action="store_true")
    parser.add_argument("--tokenizer-seconds", type=float, default=7200.0, help="audio the Mel-RVQs train on")
    parser.add_argument("--tokenizer", help="use this Mel-RVQ folder as tok-400 (e.g. a claims run's)")
    parser.add_argument("--base-run", help="a finished run with snapshots to use as the base arm")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (1 when arms run side by side)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)

    from muqkit.data.loader import load_records
    from muqkit.eval.curves import learning_curve
    from muqkit.eval.probes import ProbeConfig
    from muqkit.eval.suite import SuiteConfig
    from muqkit.recipes.demo import audio_sample
    from muqkit.train.pretrain import PretrainTrainingConfig, load_preset, train_pretrain

    corpus, out = Path(args.corpus), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    manifests = [corpus / m for m in ("scores.jsonl", "notes.jsonl", "game.jsonl") if (corpus / m).is_file()]
    files = out / "pretrain-audio.txt"
    if not files.is_file():
        files.write_text("".join(f"{p.resolve()}\n" for _, p in load_records(manifests)))
    # The Mel-RVQs train on a seeded two-hour sample of the same audio (the statistics pass over all
    # 7.6 hours costs a quarter of an hour on 2 cores for each tokenizer).
    sample = audio_sample(files, manifests, out / "tokenizer-audio.txt", args.tokenizer_seconds, args.seed)
    needed = {ARMS[a]["tokenizer"] for a in args.arms if not (a == "base" and args.base_run)}
    if args.tokenizer:
        needed.discard("tok-400")
    tokenizers = train_tokenizers(needed, out, sample, args.seed)
    if args.tokenizer:
        tokenizers["tok-400"] = Path(args.tokenizer)
    probe = SuiteConfig(heads=("linear",), seeds=(0,), layer_modes=("sweep",),
                        probe=ProbeConfig(max_epochs=100, patience=20))  # fmt: skip
    record: dict[str, Any] = json.loads((out / "study.json").read_text()) if (out / "study.json").is_file() else {}
    record.setdefault("arms", {})
    record.setdefault("tokenizers", {})
    for arm in args.arms:
        run = Path(args.base_run) if arm == "base" and args.base_run else out / "runs" / arm
        if not (run / "model" / "config.json").is_file():
            settings = {
                **load_preset(args.preset), "tokenizer": str(tokenizers[ARMS[arm]["tokenizer"]]),
                "crop_seconds": 4.0, "batch_size": 8, "max_steps": args.steps, "warmup_steps": args.steps // 10,
                "checkpoint_every": args.steps, "seed": args.seed, "progress": False, "log_every": 10,
                "snapshot_every": args.steps // args.snapshots, **ARMS[arm]["settings"],
            }  # fmt: skip
            train_pretrain(manifests, run, PretrainTrainingConfig.from_dict(settings), overwrite=True)
        curve = learning_curve(run, corpus, out / "curves" / arm, tasks=TASKS, config=probe)
        seconds = json.loads((run / "pretrain.json").read_text()).get("seconds", 0.0)
        record["arms"][arm] = {"tokenizer": ARMS[arm]["tokenizer"], "settings": ARMS[arm]["settings"],
                               "run": str(run), "train_seconds": seconds,
                               "curve": curve.to_json(), "summary": curve.summary()}  # fmt: skip
        log.info("%s: %s", arm, curve.summary())
        (out / "study.json").write_text(json.dumps(record, indent=2) + "\n")
    if not args.no_analysis:
        for name, folder in tokenizers.items():
            if name not in record["tokenizers"]:
                record["tokenizers"][name] = analyse_tokenizer(folder, corpus)
                (out / "study.json").write_text(json.dumps(record, indent=2) + "\n")
    (out / "study.md").write_text(markdown(record))
    print((out / "study.md").read_text())


def markdown(record: dict[str, Any]) -> str:
    lines = ["| arm | " + " | ".join(TASKS) + " | mean | vs its random start |", "|---" * (len(TASKS) + 3) + "|"]
    for arm, data in record["arms"].items():
        c = data["curve"]
        last = [c["scores"][t][-1]["mean"] for t in TASKS]
        start = c["baselines"]["random"]["mean"]
        lines.append(f"| {arm} (step {c['steps'][-1]}) | " + " | ".join(f"{v:.3f}" for v in last)
                     + f" | {np.mean(last):.3f} | {np.mean(last) - start:+.3f} |")
    first = next(iter(record["arms"].values()), None)
    if first:
        c = first["curve"]
        for name in ("random", "mel"):
            values = [c["baselines"][name][t]["mean"] for t in TASKS]
            lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in values) + f" | {np.mean(values):.3f} | |")
    for name, data in record.get("tokenizers", {}).items():
        if data:
            lines.append(f"\n{name}: usage {[round(u, 3) for u in data['usage']]}, perplexity "
                         f"{[round(p) for p in data['perplexity']]}, pitch from codes {data['pitch_from_codes']} "
                         f"(majority {data['pitch_majority']:.3f}, {data['test_notes']} test notes)")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
