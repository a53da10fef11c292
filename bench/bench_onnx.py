"""Speed of MuQ on the CPU: PyTorch eager float32 and bfloat16 against the ONNX graph on onnxruntime (float32).

One run exports a random-weight model of the chosen preset (``large`` by default: random weights time the same
as trained ones), warms each backend up once on 2 s of audio, then times ``--repeats`` calls of each backend on
``--seconds`` of audio at each batch size, on ``--threads`` threads, and reports the fastest call, seconds of audio
per second, and the largest difference and smallest per-frame cosine of each backend's outputs against PyTorch
float32.

Usage::

    OMP_NUM_THREADS=1 python bench/bench_onnx.py --preset large --seconds 30 --batch 1 4 --json out.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch


def timed(call, repeats: int) -> tuple[float, list[torch.Tensor]]:  # noqa: ANN001
    """Fastest of ``repeats`` calls (each backend was warmed up once on short audio) and the last outputs."""
    best, out = float("inf"), []
    for _ in range(repeats):
        start = time.perf_counter()
        out = call()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="large")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--layer", type=int, default=-1, help="hidden state to output (the graph stops there)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument(
        "--backends", nargs="+", default=["torch-fp32", "torch-bf16", "onnxruntime-fp32"],
        help="torch-fp32 (always run: the reference), torch-bf16, onnxruntime-fp32",
    )  # fmt: skip
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    from muqkit import MuQ
    from muqkit.embed.chunks import encode_batch, resolve_layers
    from muqkit.export.onnx import OnnxMuQ, export_muq

    torch.set_num_threads(args.threads)
    muq = MuQ.from_preset(args.preset, seed=0).eval()
    layers = resolve_layers(args.layer, int(muq.config.encoder_depth) + 1)
    rate = int(muq.config.sample_rate)
    results: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "muq.onnx"
        start = time.perf_counter()
        export_muq(muq, path, layers=layers)
        export_s = time.perf_counter() - start
        size = path.stat().st_size
        print(f"export {export_s:.1f} s, {size / 2**20:.0f} MiB", flush=True)
        runner = OnnxMuQ(path, threads=args.threads)
        bf16 = MuQ.from_preset(args.preset, seed=0).eval().to(torch.bfloat16) if "torch-bf16" in args.backends else None
        backends = {
            "torch-fp32": lambda w: encode_batch(muq, w, layers=layers),
            "torch-bf16": lambda w: encode_batch(bf16, w, layers=layers),
            "onnxruntime-fp32": lambda w: runner.encode_batch(w, layers=layers),
        }
        backends = {k: v for k, v in backends.items() if k == "torch-fp32" or k in args.backends}
        with torch.inference_mode():
            for call in backends.values():  # warm-up: kernels and allocations, on 2 s
                call([torch.randn(2 * rate)])
        for batch in args.batch:
            wavs = [0.1 * torch.randn(int(args.seconds * rate), generator=torch.Generator().manual_seed(i))
                    for i in range(batch)]  # fmt: skip
            outputs = {}
            for name, call in backends.items():
                with torch.inference_mode():
                    seconds, outputs[name] = timed(lambda c=call, w=wavs: c(w), args.repeats)
                row = {
                    "backend": name,
                    "preset": args.preset,
                    "batch": batch,
                    "audio_seconds": args.seconds,
                    "threads": args.threads,
                    "call_s": round(seconds, 3),
                    "audio_s_per_s": round(batch * args.seconds / seconds, 3),
                }
                if name != "torch-fp32":
                    pairs = list(zip(outputs[name], outputs["torch-fp32"], strict=True))
                    row["max_abs_diff_vs_fp32"] = max(float((a.float() - b).abs().max()) for a, b in pairs)
                    row["min_frame_cosine_vs_fp32"] = min(
                        float(torch.nn.functional.cosine_similarity(a.float(), b, dim=-1).min()) for a, b in pairs
                    )
                results.append(row)
                print(json.dumps(row), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "export_s": export_s, "onnx_bytes": size,
                                               "results": results}, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
