"""int8 on the CPU: the candidate quantisation paths for MuQ side by side, fidelity and speed.

Every candidate runs the model after the mel frontend (the frontend stays float32 and is shared): the
conv front end and the Conformer, from the normalised log-mel to every hidden state. Candidates:

- ``torch-fp32``: PyTorch eager float32 (the reference: muqkit's fast path, fused BatchNorm convolutions);
- ``torch-bf16``: the same in bfloat16;
- ``torchao-int8``: torchao ``quantize_`` with ``Int8DynamicActivationInt8WeightConfig`` on every
  ``nn.Linear`` (dynamic int8 activations, int8 weights; convolutions stay float32);
- ``ort-fp32`` / ``ort-int8``: the exported ONNX graph (muqkit.export.onnx) on onnxruntime, float32 and
  after ``quantize_dynamic`` (int8 weights, ``MatMul`` only: ``ConvInteger`` is slow in onnxruntime);
- ``pt2e-int8``: PyTorch 2 export quantisation with torchao's ``X86InductorQuantizer`` (static: the
  convolutions and linear layers in int8, activations calibrated on ``--calibration`` clips), then
  ``torch.compile`` (Inductor with freezing: oneDNN's quantised kernels; needs a C++ compiler);
- ``openvino-fp32`` / ``openvino-int8``: the same ONNX graph in OpenVINO, float32 and after NNCF's static
  post-training quantisation (``ModelType.TRANSFORMER``, the same calibration clips).

Fidelity: for each hidden state, the cosine of each valid frame to float32's (min and mean over frames and
items), on a batch of music-like signals (chords, noise, clicks) that were not in the calibration set.
Speed: ``--seconds`` of audio per item at each batch size and thread count, the fastest of ``--repeats``
rounds in which the candidates take turns (so that load from other processes affects them alike). Memory:
each candidate in a fresh child process builds its model and runs one call at the largest batch; its peak
resident memory (``VmHWM``) is reported.

Usage::

    python bench/bench_int8.py --preset small --seconds 10 --threads 1 --batch 1
    python bench/bench_int8.py --preset large --seconds 30 --threads 1 2 --batch 1 4 --json out.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

CANDIDATES = ("torch-fp32", "torch-bf16", "torchao-int8", "ort-fp32", "ort-int8", "pt2e-int8", "openvino-fp32",
              "openvino-int8")  # fmt: skip
FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_bf16",
         "amx_int8")  # fmt: skip
Encode = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # mel, mel lengths -> (batch, layers, T, dim)


def cpu_line() -> str:
    """The CPU's model, its relevant flags, PyTorch's vector code and the load, on one line."""
    name, flags = platform.processor() or platform.machine(), set()
    if os.path.exists("/proc/cpuinfo"):
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                name = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    have = " ".join(f for f in FLAGS if f in flags) or "none of " + ",".join(FLAGS)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"CPU: {name}; {os.cpu_count()} cores; flags: {have}; torch {torch.__version__} capability "
            f"{torch.backends.cpu.get_cpu_capability()}; load average {load}")  # fmt: skip


def signals(count: int, seconds: float, rate: int, seed: int) -> list[torch.Tensor]:
    """Music-like test signals: a few partials of random chords with vibrato, noise and clicks."""
    gen = torch.Generator().manual_seed(seed)
    n = int(seconds * rate)
    t = torch.arange(n) / rate
    out = []
    for _ in range(count):
        wave = torch.zeros(n)
        for _ in range(4):
            f0 = 110 * 2 ** (float(torch.rand(1, generator=gen)) * 3)
            for k in range(1, 5):
                wave += torch.sin(2 * math.pi * k * f0 * t + 0.3 * torch.sin(2 * math.pi * 5 * t)) / k
        wave += 0.3 * torch.randn(n, generator=gen)
        clicks = torch.zeros(n)
        clicks[:: rate // 2] = 3.0
        out.append(0.1 * (wave + clicks) / wave.abs().max())
    return out


def mel_batch(muq: Any, wavs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The float32 frontend on a padded batch: (batch, n_mels, frames), (batch,)."""
    lengths = torch.tensor([w.numel() for w in wavs])
    batch = torch.zeros(len(wavs), int(lengths.max()))
    for i, w in enumerate(wavs):
        batch[i, : w.numel()] = w
    with torch.inference_mode():
        out = muq.frontend(batch, lengths)
    return out.mel, out.lengths


class Body(torch.nn.Module):
    """The model after the frontend, every hidden state (``MuQEncoderGraph``, the export form)."""

    def __init__(self, muq: Any) -> None:
        super().__init__()
        from muqkit.export.onnx import MuQEncoderGraph

        self.encoder = MuQEncoderGraph(muq, range(int(muq.config.encoder_depth) + 1))

    def forward(self, mel: torch.Tensor, mel_lengths: torch.Tensor) -> torch.Tensor:
        return self.encoder(mel, mel_lengths)[0]


def build(name: str, args: argparse.Namespace, calibration: list[tuple[torch.Tensor, torch.Tensor]],
          threads: int, tmp: Path) -> Encode:  # fmt: skip
    """The candidate ``name`` on ``threads`` threads."""
    from muqkit import MuQ

    muq = MuQ.from_preset(args.preset, seed=0).eval()
    # batch 2 and two lengths: export would fix a dimension of size 1
    mel0, lengths0 = calibration[0]
    example = (torch.cat([mel0, mel0]), torch.cat([lengths0, lengths0 - 7]))
    if name in ("torch-fp32", "torch-bf16", "torchao-int8"):
        if name == "torch-bf16":
            muq = muq.to(torch.bfloat16)
        if name == "torchao-int8":
            from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

            quantize_(muq.conformer, Int8DynamicActivationInt8WeightConfig())
            quantize_(muq.conv, Int8DynamicActivationInt8WeightConfig())

        def call(mel: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
            states, _ = muq.embed_mel(mel, lengths)
            return torch.stack(states, dim=1).float()

        return call
    if name == "pt2e-int8":
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
        from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
            X86InductorQuantizer,
            get_default_x86_inductor_quantization_config,
        )

        body = Body(muq).eval()
        dims = {"mel": {0: torch.export.Dim("batch", max=64), 2: torch.export.Dim.AUTO},
                "mel_lengths": {0: torch.export.Dim("batch", max=64)}}  # fmt: skip
        program = torch.export.export(body, example, dynamic_shapes=dims).module()
        quantizer = X86InductorQuantizer().set_global(get_default_x86_inductor_quantization_config())
        prepared = prepare_pt2e(program, quantizer)
        with torch.no_grad():
            for mel, lengths in calibration:
                prepared(mel, lengths)
        converted = convert_pt2e(prepared)
        import torch._inductor.config as inductor_config

        inductor_config.freezing = True  # weights as constants: the quantised kernels' prepacking
        compiled = torch.compile(converted)
        with torch.no_grad():
            compiled(*example)  # compiles (a later shape may compile again)
        return lambda mel, lengths: compiled(mel, lengths)
    onnx_path = tmp / f"body-{args.preset}.onnx"
    if not onnx_path.exists():
        export_body(muq, onnx_path, example)
    if name.startswith("ort-"):
        import onnxruntime as ort

        path = onnx_path
        if name == "ort-int8":
            from onnxruntime.quantization import QuantType, quantize_dynamic

            path = tmp / f"body-{args.preset}-int8.onnx"
            if not path.exists():
                quantize_dynamic(str(onnx_path), str(path), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"])
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return lambda mel, lengths: torch.from_numpy(
            session.run(["hidden"], {"mel": mel.numpy(), "mel_lengths": lengths.numpy()})[0]
        )
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(onnx_path))
    if name == "openvino-int8":
        import nncf

        data = nncf.Dataset([{"mel": m.numpy(), "mel_lengths": n.numpy()} for m, n in calibration])
        model = nncf.quantize(model, data, model_type=nncf.ModelType.TRANSFORMER, subset_size=len(calibration))
    compiled = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32",
                                                 "PERFORMANCE_HINT": "LATENCY"})  # fmt: skip
    request = compiled.create_infer_request()

    def run_ov(mel: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        result = request.infer({"mel": mel.numpy(), "mel_lengths": lengths.numpy()})
        return torch.from_numpy(result[compiled.output(0)].copy())

    return run_ov


def export_body(muq: Any, path: Path, example: tuple[torch.Tensor, torch.Tensor]) -> None:
    """The model after the frontend as ONNX, dynamic batch and frames."""
    batch, frames = torch.export.Dim("batch", min=1), torch.export.Dim("frames", min=16)
    with torch.no_grad():
        program = torch.onnx.export(
            Body(muq).eval(), example, dynamic_shapes={"mel": {0: batch, 2: frames}, "mel_lengths": {0: batch}},
            input_names=["mel", "mel_lengths"], output_names=["hidden"], opset_version=18, dynamo=True,
            external_data=False,
        )  # fmt: skip
        assert program is not None
        program.save(str(path))


def fidelity(out: torch.Tensor, ref: torch.Tensor, frames: torch.Tensor) -> list[dict[str, float]]:
    """Per hidden state: min and mean cosine of each valid frame to the reference's."""
    rows = []
    for layer in range(ref.shape[1]):
        cos = torch.cat([
            torch.nn.functional.cosine_similarity(out[i, layer, : int(n)].float(), ref[i, layer, : int(n)], dim=-1)
            for i, n in enumerate(frames)
        ])  # fmt: skip
        rows.append({"min": round(float(cos.min()), 5), "mean": round(float(cos.mean()), 5)})
    return rows


def peak_memory_mb() -> float:
    for line in open("/proc/self/status", encoding="utf-8"):
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def memory_child(args: argparse.Namespace, name: str) -> None:
    """Build one candidate, run one call at the largest batch, print the peak resident memory."""
    from muqkit import MuQ

    torch.set_num_threads(max(args.threads))
    rate = int(MuQ.from_preset(args.preset, seed=0).config.sample_rate)
    ref = MuQ.from_preset(args.preset, seed=0).eval()
    calibration = [mel_batch(ref, signals(1, args.seconds, rate, seed=100 + i)) for i in range(args.calibration)]
    mel, lengths = mel_batch(ref, signals(max(args.batch), args.seconds, rate, seed=0))
    del ref
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        call = build(name, args, calibration, max(args.threads), Path(tmp))
        call(mel, lengths)
    print(json.dumps({"peak_rss_mb": peak_memory_mb()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="large")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3, help="rounds; each candidate is timed once a round")
    parser.add_argument("--calibration", type=int, default=8, help="clips of --seconds for static quantisation")
    parser.add_argument("--candidates", nargs="+", default=list(CANDIDATES), choices=CANDIDATES)
    parser.add_argument("--no-memory", action="store_true", help="skip the per-candidate memory children")
    parser.add_argument("--memory-of", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    if args.memory_of:
        memory_child(args, args.memory_of)
        return
    print(cpu_line(), flush=True)
    from muqkit import MuQ

    ref = MuQ.from_preset(args.preset, seed=0).eval()
    rate = int(ref.config.sample_rate)
    calibration = [mel_batch(ref, signals(1, args.seconds, rate, seed=100 + i)) for i in range(args.calibration)]
    names = ["torch-fp32", *[c for c in args.candidates if c != "torch-fp32"]]
    results: dict[str, Any] = {"cpu": cpu_line(), "args": vars(args), "build_s": {}, "fidelity": {}, "speed": [],
                               "peak_rss_mb": {}}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for threads in args.threads:
            torch.set_num_threads(threads)
            calls: dict[str, Encode] = {}
            for name in names:
                start = time.perf_counter()
                try:
                    calls[name] = build(name, args, calibration, threads, Path(tmp))
                except Exception as exc:  # a candidate that fails is reported, the others go on
                    print(f"{name}: failed to build: {type(exc).__name__}: {str(exc)[:300]}", flush=True)
                    results["build_s"][name] = f"failed: {type(exc).__name__}: {str(exc)[:300]}"
                    continue
                results["build_s"].setdefault(name, round(time.perf_counter() - start, 1))
            for batch in args.batch:
                mel, lengths = mel_batch(ref, signals(batch, args.seconds, rate, seed=0))
                frames = ref.conv.output_lengths(lengths)
                times: dict[str, list[float]] = {name: [] for name in calls}
                outputs: dict[str, torch.Tensor] = {}
                with torch.inference_mode():
                    for name, call in calls.items():  # warm-up (first-call allocations, kernel selection)
                        outputs[name] = call(mel, lengths)
                    for _ in range(args.repeats):
                        for name, call in calls.items():
                            start = time.perf_counter()
                            call(mel, lengths)
                            times[name].append(time.perf_counter() - start)
                for name in calls:
                    if name not in results["fidelity"]:
                        layers = fidelity(outputs[name], outputs["torch-fp32"], frames)
                        results["fidelity"][name] = layers
                        worst = min(r["min"] for r in layers)
                        print(f"{name}: per-frame cosine to float32, worst layer min {worst:.5f}, means "
                              + " ".join(f"{r['mean']:.4f}" for r in layers), flush=True)  # fmt: skip
                    best = min(times[name])
                    row = {"candidate": name, "threads": threads, "batch": batch, "seconds": args.seconds,
                           "call_s": round(best, 3), "median_s": round(statistics.median(times[name]), 3),
                           "audio_s_per_s": round(batch * args.seconds / best, 2),
                           "speedup_vs_fp32": round(min(times["torch-fp32"]) / best, 2),
                           "load": round(os.getloadavg()[0], 2)}  # fmt: skip
                    results["speed"].append(row)
                    print(json.dumps(row), flush=True)
            del calls
    if not args.no_memory:
        for name in names:
            child = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--memory-of", name],
                                   capture_output=True, text=True)  # fmt: skip
            lines = [line for line in child.stdout.splitlines() if line.startswith("{")]
            peak = json.loads(lines[-1])["peak_rss_mb"] if child.returncode == 0 and lines else None
            results["peak_rss_mb"][name] = peak
            print(f"{name}: peak resident memory {peak} MiB (build + one call at batch {max(args.batch)})", flush=True)
    results["load_after"] = [round(x, 2) for x in os.getloadavg()]
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
