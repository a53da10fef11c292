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
  post-training quantisation (``ModelType.TRANSFORMER``, the same calibration clips). NNCF's int8 graph of
  this model gives empty outputs for inputs of another length than its calibration clips (OpenVINO 2026.4,
  NNCF 3.4), so the calibration clips are ``--seconds`` long, the length measured.

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
    from muqkit.embed.precision import read_cpu_features

    cpu = read_cpu_features()
    have = " ".join(f for f in FLAGS if f in cpu.flags) or "none of " + ",".join(FLAGS)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"CPU: {cpu.model}; {os.cpu_count()} cores; flags: {have}; torch {torch.__version__} capability "
            f"{cpu.capability}; load average {load}")  # fmt: skip


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


class Builder:
    """Builds the candidates; what does not depend on the thread count (exports, quantised models, compiled
    modules) is built once and kept for the next thread count."""

    def __init__(self, args: argparse.Namespace, calibration: list[torch.Tensor], tmp: Path) -> None:
        self.args, self.calibration, self.tmp = args, calibration, tmp
        self.kept: dict[str, Any] = {}

    def model(self) -> Any:
        from muqkit import MuQ

        return MuQ.from_preset(self.args.preset, seed=0).eval()

    def onnx(self) -> Path:
        path = self.tmp / "body.onnx"
        if not path.exists():
            muq = self.model()
            mel, lengths = mel_batch(muq, self.calibration[:1])  # batch 2, two lengths: export would fix a 1
            export_body(muq, path, (torch.cat([mel, mel]), torch.cat([lengths, lengths - 7])))
        return path

    def build(self, name: str, threads: int) -> Encode:
        """The candidate ``name`` on ``threads`` threads."""
        if name in self.kept and not name.startswith(("ort-", "openvino-")):
            return self.kept[name]
        if name in ("torch-fp32", "torch-bf16", "torchao-int8"):
            muq = self.model()
            if name == "torch-bf16":
                muq = muq.to(torch.bfloat16)
            if name == "torchao-int8":
                from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

                quantize_(muq.conformer, Int8DynamicActivationInt8WeightConfig())  # every nn.Linear
                quantize_(muq.conv, Int8DynamicActivationInt8WeightConfig())

            def call(mel: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
                states, _ = muq.embed_mel(mel, lengths)
                return torch.stack(states, dim=1).float()

            self.kept[name] = call
            return call
        if name == "pt2e-int8":  # muqkit's int8 (muqkit.embed.int8), on the same calibration clips
            from muqkit.embed.int8 import quantize_muq

            muq = self.model()
            int8 = quantize_muq(muq, layers=range(int(muq.config.encoder_depth) + 1), calibration=self.calibration)

            def run_int8(mel: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
                with torch.inference_mode(False), torch.no_grad():
                    return int8.encode_mel(mel.clone(), lengths.clone())[0]

            self.kept[name] = run_int8
            return run_int8
        if name.startswith("ort-"):
            import onnxruntime as ort

            path = self.onnx()
            if name == "ort-int8":
                from onnxruntime.quantization import QuantType, quantize_dynamic

                path = self.tmp / "body-int8.onnx"
                if not path.exists():
                    quantize_dynamic(str(self.onnx()), str(path), weight_type=QuantType.QInt8,
                                     op_types_to_quantize=["MatMul"])  # fmt: skip
            options = ort.SessionOptions()
            options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            return lambda mel, lengths: torch.from_numpy(
                session.run(["hidden"], {"mel": mel.numpy(), "mel_lengths": lengths.numpy()})[0]
            )
        import openvino as ov

        core = ov.Core()
        if name not in self.kept:
            model = core.read_model(str(self.onnx()))
            if name == "openvino-int8":
                import nncf

                muq = self.model()
                data = nncf.Dataset([dict(zip(("mel", "mel_lengths"), (t.numpy() for t in mel_batch(muq, [clip])),
                                              strict=True)) for clip in self.calibration])  # fmt: skip
                model = nncf.quantize(model, data, model_type=nncf.ModelType.TRANSFORMER,
                                      subset_size=len(self.calibration))  # fmt: skip
            self.kept[name] = model
        compiled = core.compile_model(self.kept[name], "CPU", {"INFERENCE_NUM_THREADS": threads,
                                                               "INFERENCE_PRECISION_HINT": "f32",
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
    from muqkit.embed.int8 import calibration_signals

    torch.set_num_threads(max(args.threads))
    ref = MuQ.from_preset(args.preset, seed=0).eval()
    rate = int(ref.config.sample_rate)
    calibration = calibration_signals(count=args.calibration, seconds=args.seconds, sample_rate=rate)
    mel, lengths = mel_batch(ref, signals(max(args.batch), args.seconds, rate, seed=0))
    del ref
    with tempfile.TemporaryDirectory() as tmp:
        call = Builder(args, calibration, Path(tmp)).build(name, max(args.threads))
        with torch.inference_mode():
            call(mel, lengths)
    print(json.dumps({"peak_rss_mb": peak_memory_mb()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="large")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--repeats",
        type=int,
        default=2,
        help="timed rounds after a warm-up call; each candidate is timed once a round (0: fidelity only)",
    )
    parser.add_argument(
        "--calibration",
        type=int,
        default=8,
        help="clips of muqkit.embed.int8.calibration_signals, --seconds long, for static quantisation",
    )
    parser.add_argument("--candidates", nargs="+", default=list(CANDIDATES), choices=CANDIDATES)
    parser.add_argument(
        "--memory",
        nargs="*",
        default=None,
        metavar="CANDIDATE",
        help="candidates whose peak memory to measure, each in a child process (default: all run)",
    )
    parser.add_argument("--memory-of", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--json", default=None)
    parser.add_argument(
        "--workdir",
        default=None,
        help="keep the ONNX exports here for the next run (default: a "
        "temporary folder); a graph already there is reused",
    )
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    if args.memory_of:
        memory_child(args, args.memory_of)
        return
    print(cpu_line(), flush=True)
    from muqkit import MuQ

    ref = MuQ.from_preset(args.preset, seed=0).eval()
    rate = int(ref.config.sample_rate)
    from muqkit.embed.int8 import calibration_signals

    calibration = calibration_signals(count=args.calibration, seconds=args.seconds, sample_rate=rate)
    names = ["torch-fp32", *[c for c in args.candidates if c != "torch-fp32"]]
    results: dict[str, Any] = {"cpu": cpu_line(), "args": vars(args), "build_s": {}, "fidelity": {}, "speed": [],
                               "peak_rss_mb": {}}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.workdir or tmp) / f"{args.preset}-{args.seconds:g}s"
        work.mkdir(parents=True, exist_ok=True)
        builder = Builder(args, calibration, work)
        for threads in args.threads:
            torch.set_num_threads(threads)
            calls: dict[str, Encode] = {}
            for name in names:
                start = time.perf_counter()
                try:
                    calls[name] = builder.build(name, threads)
                except Exception as exc:  # a candidate that fails is reported, the others go on
                    print(f"{name}: failed to build: {type(exc).__name__}: {str(exc)[:300]}", flush=True)
                    results["build_s"][name] = f"failed: {type(exc).__name__}: {str(exc)[:300]}"
                    continue
                results["build_s"].setdefault(name, round(time.perf_counter() - start, 1))
                print(f"{name}: built in {time.perf_counter() - start:.1f} s", flush=True)
            for batch in args.batch:
                mel, lengths = mel_batch(ref, signals(batch, args.seconds, rate, seed=0))
                frames = ref.conv.output_lengths(lengths)
                times: dict[str, list[float]] = {name: [] for name in calls}
                outputs: dict[str, torch.Tensor] = {}
                with torch.inference_mode():
                    for name, call in calls.items():  # warm-up (first-call allocations, kernel selection, compiling)
                        start = time.perf_counter()
                        outputs[name] = call(mel, lengths)
                        print(f"{name}: first call at batch {batch}, {threads} threads: "
                              f"{time.perf_counter() - start:.1f} s", flush=True)  # fmt: skip
                    for _ in range(args.repeats):
                        for name, call in calls.items():
                            start = time.perf_counter()
                            call(mel, lengths)
                            times[name].append(time.perf_counter() - start)
                for name in calls:
                    if name not in results["fidelity"] and "torch-fp32" in outputs:
                        layers = fidelity(outputs[name], outputs["torch-fp32"], frames)
                        results["fidelity"][name] = layers
                        worst = min(r["min"] for r in layers)
                        print(f"{name}: per-frame cosine to float32, worst layer min {worst:.5f}, means "
                              + " ".join(f"{r['mean']:.4f}" for r in layers), flush=True)  # fmt: skip
                    if not times[name]:
                        continue
                    best = min(times[name])
                    row = {"candidate": name, "threads": threads, "batch": batch, "seconds": args.seconds,
                           "call_s": round(best, 3), "median_s": round(statistics.median(times[name]), 3),
                           "audio_s_per_s": round(batch * args.seconds / best, 2),
                           "speedup_vs_fp32": round(min(times["torch-fp32"]) / best, 2),
                           "load": round(os.getloadavg()[0], 2)}  # fmt: skip
                    results["speed"].append(row)
                    print(json.dumps(row), flush=True)
            del calls
    for name in names if args.memory is None else [n for n in names if n in args.memory]:
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
