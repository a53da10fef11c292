"""MuQ-MuLan's text tower in int8 on onnxruntime against float32, with each kind of scales (``quantize_mulan``'s
``text_scales``: ``quantize_dynamic`` with one weight scale per matrix or per output channel, and ``MatMulNBits``
with weights and activations scaled per block of 32 input channels, the default): the latency of one text query
(tokenisation included) and each text's latent cosine to float32's, the four taking turns in one run.

    OMP_NUM_THREADS=1 python bench/bench_text_int8.py --model large-text --rounds 5
    OMP_NUM_THREADS=1 python bench/bench_text_int8.py --model runs/int8-mulan/run/model
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_serve import QUERIES, build_model, cpu_description, millis  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="large-text", help="as bench/bench_serve.py: fixture, tiny, large-text "
                        "or a MuQ-MuLan folder")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=5, help="timed passes over the 12 queries (after a warm-up)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    from muqkit.export.int8 import quantize_mulan_text

    print(f"CPU: {json.dumps(cpu_description())}; threads {torch.get_num_threads()}; load {os.getloadavg()[0]:.2f}")
    model = build_model(args.model).float().eval()
    threads = torch.get_num_threads()
    candidates = {"float32": model,
                  "int8 per matrix": quantize_mulan_text(model, threads=threads, text_scales="matrix"),
                  "int8 per channel": quantize_mulan_text(model, threads=threads, text_scales="channel"),
                  "int8 per block": quantize_mulan_text(model, threads=threads, text_scales="block")}  # fmt: skip
    texts = [f"{q} ({i})" for i in range(args.rounds + 1) for q in QUERIES]  # new texts each round
    times: dict[str, list[float]] = {name: [] for name in candidates}
    latents: dict[str, list[torch.Tensor]] = {name: [] for name in candidates}
    with torch.inference_mode():
        for i, text in enumerate(texts):
            for name, candidate in candidates.items():  # the candidates take turns on each text
                start = time.perf_counter()
                latent = candidate.extract_text_latents([text])
                if i >= len(QUERIES):  # the first pass warms up
                    times[name].append(time.perf_counter() - start)
                latents[name].append(latent[0].float())
    ref = torch.stack(latents["float32"])
    record = {"model": args.model, "load_after": os.getloadavg()[0], "candidates": {}}
    print("| text tower | median ms | p90 ms | lowest cosine to float32 | mean cosine |\n|---|---|---|---|---|")
    for name in candidates:
        cos = torch.nn.functional.cosine_similarity(torch.stack(latents[name]).double(), ref.double(), dim=-1)
        row = {**millis(times[name]), "min_cosine": round(float(cos.min()), 5)}
        row["mean_cosine"] = round(float(cos.mean()), 5)
        record["candidates"][name] = row
        print(f"| {name} | {row['median_ms']:.1f} | {row['p90_ms']:.1f} | {row['min_cosine']:.5f} | "
              f"{row['mean_cosine']:.5f} |")  # fmt: skip
    for name in ("float32", "int8 per channel"):
        ratio = statistics.median(times[name]) / statistics.median(times["int8 per block"])
        print(f"median time of {name} / int8 per block: {ratio:.2f}")
    if args.json:
        args.json.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
