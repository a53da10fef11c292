"""Re-estimate a pretrained MuQ's BatchNorm running statistics on clean (unmasked) audio.

MuQ pretrains on masked input: 60% of each crop's 400 ms spans are replaced by noise, so the running
statistics its BatchNorm layers keep describe noisy input, and a probe feeds them clean audio. This
writes a copy of a checkpoint whose running statistics are the exact averages over clean random
crops of a corpus (every other weight unchanged), and prints, per BatchNorm layer, how far the old
statistics were from the new ones. Probe both with ``muqkit probe`` to see what the mismatch costs.

    .venv/bin/python bench/bn_recalibrate.py MODEL OUT --corpus runs/small --batches 100
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path

import torch

MANIFESTS = ("scores.jsonl", "notes.jsonl", "game.jsonl")


def recalibrate(model: torch.nn.Module, batches: Iterable[torch.Tensor]) -> list[dict[str, float]]:
    """Replace the running statistics of ``model``'s BatchNorm layers with their exact averages over
    ``batches`` (every other module in eval mode); returns, per layer, the mean absolute shift of the
    running mean in old standard deviations and the mean ratio of new to old running variance."""
    from muqkit.encoder.conv import ResidualBlock2d, batch_norms

    norms = batch_norms(model)
    old = [(m.running_mean.clone(), m.running_var.clone(), m.momentum) for m in norms]
    model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches
        m.train()
    # an eval-mode conv block runs its BatchNorms fused into the convolutions (no statistics):
    # in train mode it calls them (it has no dropout)
    blocks = [m for m in model.modules() if isinstance(m, ResidualBlock2d)]
    for m in blocks:
        m.train()
    with torch.no_grad():
        for wavs in batches:
            model(wavs, output_hidden_states=False)
    report = []
    for m in blocks:
        m.eval()
    for m, (mean, var, momentum) in zip(norms, old, strict=True):
        m.momentum = momentum
        m.eval()
        report.append({
            "mean_shift": float(((m.running_mean - mean) / var.sqrt()).abs().mean()),
            "var_ratio": float((m.running_var / var).mean()),
        })  # fmt: skip
    return report


def main() -> None:
    from muqkit.data.loader import RandomCropDataset, load_records
    from muqkit.hub.loaders import load_muq, save_muq

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="a MuQ checkpoint folder (a pretraining snapshot)")
    parser.add_argument("out", type=Path, help="the recalibrated copy (a new folder)")
    parser.add_argument("--corpus", type=Path, required=True, help="a built corpus (its training audio)")
    parser.add_argument("--batches", type=int, default=100, help="batches of 8 random 3 s crops")
    parser.add_argument("--seed", type=int, default=12345)
    args = parser.parse_args()
    if args.out.exists():
        parser.error(f"{args.out} exists")
    records = load_records([args.corpus / m for m in MANIFESTS if (args.corpus / m).is_file()])
    crops = RandomCropDataset(records, crop_seconds=3.0, seed=args.seed, sampling="file", pad_short=True)
    batches = (  # read as they are used
        torch.stack([torch.as_tensor(crops[b * 8 + i]["audio"]) for i in range(8)]) for b in range(args.batches)
    )
    model = load_muq(args.model)
    for i, row in enumerate(recalibrate(model, batches)):
        print(f"BatchNorm {i}: running mean moved {row['mean_shift']:.3f} old std, variance x{row['var_ratio']:.3f}")
    save_muq(model, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
