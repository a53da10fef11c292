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

Each candidate runs in a process of its own (one after the other, in one run of this script), so that its
memory is its own: it builds the candidate, then at each thread count and batch size makes a warm-up call
(which compiles, where the candidate compiles) and ``--repeats`` timed calls, and reports its peak resident
memory (``VmHWM``: the build, that is the export, quantisation or compilation, and the calls) and its
resident memory after the calls (``VmRSS``). With ``--workdir`` the ONNX graphs (float32 and int8) are kept,
and a later run loads them instead of exporting again, so its ONNX candidates' peaks are those of
inference alone. PyTorch float32, the
reference, runs first and again last; each candidate's speed-up is against the mean of its two figures, and
both are printed, so that a change of load during the run shows. A candidate that fails is reported with its
error and the others go on.

Fidelity: for each hidden state, the cosine of each valid frame to float32's (min and mean over frames and
items), at the first batch size, on music-like signals (chords, noise, clicks) that are not the calibration
signals. Speed: ``--seconds`` of audio per item at each batch size and thread count, the fastest of
``--repeats`` calls.

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


def memory_mb() -> dict[str, float]:
    """This process's peak resident memory (``VmHWM``) and its resident memory now (``VmRSS``), MiB."""
    found = {}
    with open("/proc/self/status", encoding="utf-8") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                found[{"VmHWM": "peak_rss_mb", "VmRSS": "rss_mb"}[key]] = round(int(value.split()[0]) / 1024, 1)
    return found


def prepare_inputs(args: argparse.Namespace, work: Path) -> None:
    """The float32 frontend's mel of the test signals at each batch size, for every candidate's process."""
    from muqkit import MuQ

    ref = MuQ.from_preset(args.preset, seed=0).eval()
    rate = int(ref.config.sample_rate)
    inputs = {}
    for batch in args.batch:
        mel, lengths = mel_batch(ref, signals(batch, args.seconds, rate, seed=0))
        inputs[batch] = (mel, lengths, ref.conv.output_lengths(lengths))
    torch.save({"sample_rate": rate, "batches": inputs}, work / "inputs.pt")


def worker(args: argparse.Namespace, name: str, work: Path) -> dict[str, Any]:
    """One candidate in this process: build, time every thread count and batch size, compare with the float32
    reference's outputs (written by its own process first), and measure memory."""
    from muqkit.embed.int8 import calibration_signals

    saved = torch.load(work / "inputs.pt")
    inputs, rate = saved["batches"], int(saved["sample_rate"])
    calibration = calibration_signals(count=args.calibration, seconds=args.seconds, sample_rate=rate)
    builder = Builder(args, calibration, work)
    result: dict[str, Any] = {"candidate": name, "build_s": {}, "first_call_s": {}, "calls_s": {}, "load": {}}
    reference = work / f"reference-b{args.batch[0]}.pt"
    for threads in args.threads:
        torch.set_num_threads(threads)
        start = time.perf_counter()
        call = builder.build(name, threads)
        result["build_s"][str(threads)] = round(time.perf_counter() - start, 1)
        print(f"{name}: built for {threads} threads in {result['build_s'][str(threads)]} s", flush=True)
        for batch in args.batch:
            mel, lengths, frames = inputs[batch]
            key = f"t{threads}-b{batch}"
            with torch.inference_mode():
                start = time.perf_counter()
                out = call(mel, lengths)  # warm-up: first-call allocations, kernel selection, compiling
                result["first_call_s"][key] = round(time.perf_counter() - start, 2)
                times = []
                for _ in range(args.repeats):
                    start = time.perf_counter()
                    call(mel, lengths)
                    times.append(time.perf_counter() - start)
            result["calls_s"][key] = [round(t, 3) for t in times]
            result["load"][key] = round(os.getloadavg()[0], 2)
            print(f"{name}: {key} first call {result['first_call_s'][key]} s, calls {result['calls_s'][key]}",
                  flush=True)  # fmt: skip
            if threads == args.threads[0] and batch == args.batch[0]:
                if name == "torch-fp32" and not reference.exists():
                    torch.save(out, reference)
                elif reference.exists():
                    result["fidelity"] = fidelity(out, torch.load(reference), frames)
            del out
    result.update(memory_mb())
    return result


def run_worker(args: argparse.Namespace, name: str, work: Path, tag: str) -> dict[str, Any]:
    """Run :func:`worker` for ``name`` in a child process; its result, or why it failed."""
    out = work / f"result-{tag}.json"
    out.unlink(missing_ok=True)
    command = [sys.executable, __file__, *sys.argv[1:], "--worker", name, "--result-tag", tag, "--workdir", str(work)]
    child = subprocess.run(command, stdout=None, stderr=subprocess.PIPE, text=True)
    if child.returncode == 0 and out.exists():
        return json.loads(out.read_text())
    reason = json.loads(out.read_text()).get("error") if out.exists() else None
    if not reason:
        tail = [line for line in child.stderr.splitlines() if line.strip()][-3:]
        signal = f"killed by signal {-child.returncode}" if child.returncode < 0 else f"exit code {child.returncode}"
        reason = f"{signal}: {' | '.join(tail)[:400]}"
    return {"candidate": name, "error": reason}


def summarise(args: argparse.Namespace, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Rows of speed (against the mean of the float32 runs), fidelity and memory per candidate."""
    refs = [r for r in runs if r["candidate"] == "torch-fp32" and "error" not in r]
    rows, table = [], {}
    for run in runs:
        if "error" in run:
            table.setdefault(run["candidate"], {"error": run["error"]})
            continue
        if run["candidate"] == "torch-fp32" and run is not refs[0]:
            continue
        table[run["candidate"]] = {"peak_rss_mb": run.get("peak_rss_mb"), "rss_mb": run.get("rss_mb"),
                                   "fidelity": run.get("fidelity"), "build_s": run["build_s"]}  # fmt: skip
        for threads in args.threads:
            for batch in args.batch:
                key = f"t{threads}-b{batch}"
                best = min(run["calls_s"][key])
                fp32 = [min(r["calls_s"][key]) for r in refs]
                row = {"candidate": run["candidate"], "threads": threads, "batch": batch, "seconds": args.seconds,
                       "call_s": best, "audio_s_per_s": round(batch * args.seconds / best, 2),
                       "hours_per_hour_per_core": round(batch * args.seconds / best / threads, 2),
                       "fp32_call_s": fp32, "speedup_vs_fp32": round(statistics.mean(fp32) / best, 2) if fp32 else None,
                       "first_call_s": run["first_call_s"][key], "load": run["load"][key]}  # fmt: skip
                rows.append(row)
    return {"speed": rows, "candidates": table}


def print_tables(summary: dict[str, Any]) -> None:
    print("\n| candidate | threads | batch | s per call | audio h per h per core | vs PyTorch fp32 (fp32 s, first and "
          "last) | first call s | load |\n|---|---|---|---|---|---|---|---|")  # fmt: skip
    for r in summary["speed"]:
        fp32 = " / ".join(f"{x:.3f}" for x in r["fp32_call_s"])
        print(f"| {r['candidate']} | {r['threads']} | {r['batch']} | {r['call_s']:.3f} | {r['hours_per_hour_per_core']}"
              f" | {r['speedup_vs_fp32']}x ({fp32}) | {r['first_call_s']} | {r['load']} |")  # fmt: skip
    print("\n| candidate | lowest per-frame cosine (worst layer) | per-layer mean cosine | peak memory MiB (VmHWM) | "
          "resident after MiB (VmRSS) |\n|---|---|---|---|---|")  # fmt: skip
    for name, c in summary["candidates"].items():
        if "error" in c:
            print(f"| {name} | failed: {c['error']} | | | |")
            continue
        layers = c.get("fidelity") or []
        worst = f"{min(r['min'] for r in layers):.5f}" if layers else ""
        means = f"{min(r['mean'] for r in layers):.4f} to {max(r['mean'] for r in layers):.4f}" if layers else ""
        print(f"| {name} | {worst} | {means} | {c['peak_rss_mb']} | {c['rss_mb']} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="large")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=2, help="timed calls after a warm-up call, per batch size "
                        "and thread count (the fastest is reported)")  # fmt: skip
    parser.add_argument(
        "--calibration",
        type=int,
        default=8,
        help="clips of muqkit.embed.int8.calibration_signals, --seconds long, for static quantisation",
    )
    parser.add_argument("--candidates", nargs="+", default=list(CANDIDATES), choices=CANDIDATES)
    parser.add_argument("--no-second-reference", action="store_true",
                        help="run PyTorch float32 once, first (default: first and last)")  # fmt: skip
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--result-tag", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--json", default=None)
    parser.add_argument(
        "--workdir",
        default=None,
        help="keep the inputs, the float32 outputs and the ONNX exports here for the next run (default: a "
        "temporary folder); a graph already there is reused",
    )
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    if args.worker:
        work, tag = Path(args.workdir), args.result_tag or args.worker
        try:
            result = worker(args, args.worker, work)
        except Exception as exc:  # reported by the parent, which goes on with the other candidates
            (work / f"result-{tag}.json").write_text(json.dumps({"error": f"{type(exc).__name__}: {str(exc)[:400]}"}))
            raise
        (work / f"result-{tag}.json").write_text(json.dumps(result) + "\n")
        return
    print(cpu_line(), flush=True)
    results: dict[str, Any] = {"cpu": cpu_line(), "args": vars(args)}
    names = ["torch-fp32", *[c for c in args.candidates if c != "torch-fp32"]]
    with tempfile.TemporaryDirectory() as tmp:
        work = (Path(args.workdir) if args.workdir else Path(tmp)) / f"{args.preset}-{args.seconds:g}s"
        work.mkdir(parents=True, exist_ok=True)
        for stale in (*work.glob("reference-*.pt"), *work.glob("result-*.json")):
            stale.unlink(missing_ok=True)
        prepare_inputs(args, work)
        runs = []
        for name in names:
            print(f"== {name}", flush=True)
            runs.append(run_worker(args, name, work, name))
            print(f"{name}: {runs[-1].get('error') or 'done'}; peak memory {runs[-1].get('peak_rss_mb')} MiB",
                  flush=True)  # fmt: skip
        if len(names) > 1 and not args.no_second_reference:
            print("== torch-fp32 (again, last)", flush=True)
            runs.append(run_worker(args, "torch-fp32", work, "torch-fp32-last"))
    results["runs"] = runs
    results.update(summarise(args, runs))
    results["load_after"] = [round(x, 2) for x in os.getloadavg()]
    print_tables(results)
    print(f"load average after: {results['load_after']}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
