"""Why the training log's stage-0 accuracy and the saved model's differ: one model, four kinds of batch.

The demo's pretraining log shows ``acc_0`` (the first Mel-RVQ stage, on masked frames) at a few per cent
for all its steps, while the same model, probed on zero-padded crops of the same files, scores several
times higher. This measures the final model (``DEMO/iter1/model``, with its head) on the masked frames of:

- ``loader``: the training loader's batches (crops drawn in proportion to duration, short files kept
  short with their padding masked), first as a whole, then split into crops of scores and of single notes;
- ``file, masked``: crops drawn with every file alike, short files kept short;
- ``file, padded``: the same crops, short files zero-padded to 3 s and trained on whole (silence included),

each next to the commonest code's share on the same frames, in train mode (what the log shows: dropout
on, BatchNorm on batch statistics) and in eval mode. Masks and noise come from the task's generator of
each batch, as in training.

    .venv/bin/python bench/stage0_accuracy.py outputs/demo [--batches 10]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("demo", type=Path)
    parser.add_argument("--batches", type=int, default=10)
    args = parser.parse_args()

    from muqkit.data.loader import RandomCropDataset, collate_crops, load_records
    from muqkit.hub.loaders import load_pretrainer
    from muqkit.tokenizer.mel_rvq import MelRVQ
    from muqkit.train.pretrain import PretrainTask, PretrainTrainingConfig

    saved = json.loads((args.demo / "iter1" / "run_config.json").read_text())
    config = PretrainTrainingConfig.from_dict(saved["config"])
    tokenizer = MelRVQ.from_pretrained(config.tokenizer)
    pretrainer = load_pretrainer(args.demo / "iter1" / "model", tokenizer)
    task = PretrainTask(pretrainer, seed=config.seed)
    records = load_records(saved["manifests"], splits=config.splits, min_seconds=0.04)

    def dataset(sampling: str, pad: bool) -> RandomCropDataset:
        return RandomCropDataset(records, crop_seconds=config.crop_seconds, seed=config.seed,
                                 sampling=sampling, pad_short=pad)  # fmt: skip

    def measure(data: RandomCropDataset, keep: Any = None) -> dict[str, float]:
        out = {}
        for mode in ("train", "eval"):
            task.train(mode == "train")
            torch.manual_seed(0)
            hits = majority = frames = 0.0
            for b in range(args.batches):
                items = [data[b * config.batch_size + j] for j in range(config.batch_size)]
                if keep is not None:
                    items = [x for x in items if keep(data, int(x["index"]))]
                    if not items:
                        continue
                batch = collate_crops(items)
                with torch.no_grad():
                    result = pretrainer(batch["audio"], batch["lengths"], generator=task._generator(batch))
                    m = float(result.num_masked)
                    hits += float(result.codebook_accuracies[0]) * m
                    majority += float(result.codebook_majority[0]) * m
                    frames += m
            out[f"acc_0 {mode}"] = hits / max(frames, 1)
            out["majority_0"] = majority / max(frames, 1)
            out["masked frames"] = frames
        return out

    def source(name: str) -> Any:
        return lambda data, i: data.records[data.locate(i)[0]][0].source == name

    loader = dataset("duration", False)
    rows = {
        "loader": measure(loader),
        "loader, scores only": measure(loader, source("scores")),
        "loader, notes only": measure(loader, source("notes")),
        "file, masked": measure(dataset("file", False)),
        "file, padded": measure(dataset("file", True)),
    }
    print("| batches | acc_0 train mode | acc_0 eval mode | commonest code's share | masked frames |")
    print("|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['acc_0 train']:.3f} | {r['acc_0 eval']:.3f} | {r['majority_0']:.3f} | "
              f"{int(r['masked frames'])} |")


if __name__ == "__main__":
    main()
