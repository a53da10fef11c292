"""How close are a model's int8 hidden states to its float32 ones, on real audio? Per layer, per frame.

Embeds the same files with ``muqkit.embed.embed_paths`` twice (``dtype="float32"`` and ``"int8"``, every
hidden state, no pooling) and prints, for each layer, the lowest and the mean cosine between the two
over every frame of every file, with the CPU it ran on.

    .venv/bin/python bench/int8_fidelity.py runs/recipe/seed1/iter2/pretrain/model runs/small/audio/scores \\
        --out runs/int8-fidelity --limit 40
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a MuQ folder or Hub id")
    parser.add_argument("inputs", nargs="+", help="audio files or folders")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=40, help="at most this many files (sorted paths)")
    args = parser.parse_args()

    from safetensors.torch import load_file

    from muqkit.embed.api import embed_paths, find_inputs
    from muqkit.embed.precision import read_cpu_features

    print(f"CPU: {read_cpu_features().describe()}")
    files = sorted(str(f.path) for f in find_inputs(args.inputs))[: args.limit]
    for dtype in ("float32", "int8"):
        embed_paths(files, args.out / dtype, model=args.model, dtype=dtype, progress=False)  # type: ignore[arg-type]
    lowest: dict[str, float] = {}
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for out in sorted((args.out / "float32").rglob("*.safetensors")):
        ref = load_file(str(out))
        got = load_file(str(args.out / "int8" / out.relative_to(args.out / "float32")))
        for name in ref:
            if not name.startswith("layer_"):
                continue
            cos = torch.nn.functional.cosine_similarity(ref[name].double(), got[name].double(), dim=-1)
            lowest[name] = min(lowest.get(name, 1.0), float(cos.min()))
            sums[name] = sums.get(name, 0.0) + float(cos.sum())
            counts[name] = counts.get(name, 0) + cos.numel()
    rows = {name: {"min": lowest[name], "mean": sums[name] / counts[name], "frames": counts[name]}
            for name in sorted(lowest, key=lambda n: int(n.split("_")[1]))}  # fmt: skip
    print(f"{len(files)} files; model {args.model}")
    print("| layer | lowest frame cosine | mean | frames |\n|---|---|---|---|")
    for name, row in rows.items():
        print(f"| {name} | {row['min']:.5f} | {row['mean']:.5f} | {row['frames']} |")
    record = {"model": args.model, "files": len(files), "layers": rows}
    (args.out / "fidelity.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
