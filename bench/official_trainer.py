"""Train the official ``MuQModel`` (PyPI ``muq``) with its own masking, the official recipe's optimiser and
schedule, on crops listed by muqkit's data layer. Runs in the official package's venv (``bash
bench/official_env.sh``), never in muqkit's; ``bench/side_by_side.py`` prepares its inputs and runs it.

- Model: an official checkpoint folder (``MuQ.from_pretrained``): muqkit's step-0 snapshot of the same
  seed, which holds the encoder, the prediction head (``model.linear``), the Mel-RVQ (``model.rvq``,
  ``use_rvq_target``) and the corpus statistics (``stat``): the same initial weights and targets as
  muqkit's run.
- Data: ``--crops``, a JSON list of batches, each a list of ``[audio file, start sample, samples]``
  (muqkit's ``RandomCropDataset.locate`` of the same seed); each crop is read with soundfile and
  zero-padded to the crop length, as muqkit's ``pad_short`` gives it.
- Step: ``MuQModel.get_targets`` (its Mel-RVQ on the clean audio), ``MuQModel.masking`` (its own 400 ms
  spans, p = 0.6, N(0, 0.1) noise, from torch's global generator seeded with ``--seed``),
  ``get_predictions`` and ``get_loss``: the steps of ``MuQModel.forward``, called one by one only to keep
  the mask for per-codebook accuracies. Train mode, float32.
- Optimiser: fairseq's Adam as the official recipe runs it (``muqkit.train.optim.FairseqAdam``, loaded
  from its file: decoupled weight decay on every parameter, epsilon added to the square root of the
  uncorrected second moment), betas (0.9, 0.98), eps 1e-6, weight decay 0.01; linear warm-up over
  ``--warmup-fraction`` of the steps, then linear (polynomial, power 1) decay to 0; gradient-norm
  clipping at ``--clip``.

Writes OUT/logs/version_0/metrics.csv (``train/loss``, ``train/acc_i``, ``train/majority_i`` per step,
as muqkit logs them) and OUT/snapshots/step-NNNNNNN (official ``save_pretrained``) every
``--snapshot-every`` steps and at the end.

    .venv-official/bin/python bench/official_trainer.py INIT CROPS OUT --seed 0
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from muq import MuQ


def fairseq_adam() -> type:
    """muqkit's FairseqAdam, loaded from its file (muqkit itself is not installed in this venv)."""
    path = Path(__file__).resolve().parents[1] / "src" / "muqkit" / "train" / "optim.py"
    spec = importlib.util.spec_from_file_location("muqkit_optim", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.FairseqAdam


def read_batch(batch: list[list], crop_samples: int) -> torch.Tensor:
    audio = np.zeros((len(batch), crop_samples), dtype=np.float32)
    for i, (path, start, count) in enumerate(batch):
        data, rate = sf.read(path, start=int(start), frames=int(count), dtype="float32", always_2d=True)
        if rate != 24000:
            raise ValueError(f"{path}: {rate} Hz; the side-by-side reads 24 kHz files")
        audio[i, : len(data)] = data.mean(axis=1)
    return torch.from_numpy(audio)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("init", type=Path, help="official checkpoint folder (muqkit's step-0 snapshot)")
    parser.add_argument("crops", type=Path, help="JSON: batches of [file, start, samples]")
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--crop-samples", type=int, required=True)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--warmup-fraction", type=float, default=0.08)
    parser.add_argument("--clip", type=float, default=10.0)
    parser.add_argument("--snapshot-every", type=int, default=200)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    batches = json.loads(args.crops.read_text())
    steps = len(batches)
    wrapper = MuQ.from_pretrained(str(args.init))
    model = wrapper.model
    if not model.use_rvq_target:
        raise SystemExit(f"{args.init}: not a checkpoint with Mel-RVQ targets (use_rvq_target is false)")
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = fairseq_adam()(params, lr=args.lr, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.01)
    warmup = int(round(args.warmup_fraction * steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, 1.0 - (step - warmup) / max(1, steps - warmup))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    torch.manual_seed(args.seed)
    snapshots = args.out / "snapshots"

    def snapshot(step: int) -> None:
        folder = snapshots / f"step-{step:07d}"
        if not (folder / "config.json").is_file():
            wrapper.save_pretrained(str(folder))

    snapshot(0)
    rows = []
    began = time.perf_counter()
    for step, batch in enumerate(batches):
        wavs = read_batch(batch, args.crop_samples)
        targets, _ = model.get_targets(wavs)
        masked_wavs, masked = model.masking(wavs)
        logits, _, masked = model.get_predictions(masked_wavs, mask=masked, return_new_mask=True)
        losses, accuracies = model.get_loss(logits, targets, masked)
        loss = sum(losses.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, args.clip)
        optimizer.step()
        schedule.step()
        with torch.no_grad():  # per-codebook figures, from the tensors get_loss used
            key = "melspec_2048"
            chosen = logits[key][tuple(masked.t())]  # (M, N * K)
            codes = targets[key][tuple(masked.t())]  # (M, N), rearranged by get_loss
            n = codes.shape[1]
            per_code = chosen.view(chosen.shape[0], n, -1)
            predicted = per_code.argmax(-1)
            row = {"step": step, "train/loss": float(loss), "train/acc": float(accuracies[key])}
            for i in range(n):
                row[f"train/ce_{i}"] = float(torch.nn.functional.cross_entropy(per_code[:, i], codes[:, i]))
                row[f"train/acc_{i}"] = float((predicted[:, i] == codes[:, i]).float().mean())
                row[f"train/majority_{i}"] = float(codes[:, i].bincount().max() / codes.shape[0])
            rows.append(row)
        if (step + 1) % args.snapshot_every == 0 or step + 1 == steps:
            snapshot(step + 1)
    logs = args.out / "logs" / "version_0"
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / "metrics.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (args.out / "seconds.txt").write_text(f"{time.perf_counter() - began:.1f}\n")


if __name__ == "__main__":
    main()
