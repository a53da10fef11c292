"""One GPU check, sized for one H100/H200 within 8 minutes (run through ``bench/gpu_check.sh``).

Phases, each writing under ``OUT`` (``gpu_check.json`` holds every figure; ``gpu_check.log`` the log):

1. ``parity``: CUDA float32 (TF32 off) against the CPU fixtures of the official implementation:
   the muq_small hidden states and mel, and one replayed training step (loss and gradients).
2. ``embed``: MuQ-large (random weights) embedding throughput in bf16 with SDPA attention, in audio
   seconds per second, for a few batch sizes of 30 s clips (goal: >= 2,000).
3. ``pretrain``: MuQ-large pretraining throughput in bf16 autocast (forward, backward, AdamW) and
   model FLOPs utilisation: FLOPs of one step counted by ``torch.utils.flop_counter`` over the
   time of one step, against the GPU's dense bf16 peak (989 TFLOP/s for H100 SXM and H200; goal:
   >= 40%).
4. ``claims``: the remaining minutes on a ``small``-preset claims run (Mel-RVQ, BEST-RQ, random
   weights, handcrafted features) on the small prepared corpus (``bench/gpu_prepare.sh``).

``--device cpu --smoke`` runs every phase at toy sizes on a CPU, to test the script itself.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger("gpu_check")
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def phase_parity(args: argparse.Namespace) -> dict[str, Any]:
    from muqkit.hub.official.inference import check_inference
    from muqkit.hub.official.objective import check_objective

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    result: dict[str, Any] = {}
    inference = check_inference(Path(args.parity) / "muq_small", device=args.device)
    log.info("%s", inference.format())
    for row in inference.rows:
        if row.name.endswith(".mel_db"):
            result[f"{row.name}_max_diff"] = row.difference
    result["hidden_states_max_diff"] = max(row.difference for row in inference.rows if "hidden_state" in row.name)
    result["hidden_states_ok"] = inference.ok
    objective = Path(args.parity) / "objective_small"
    if objective.is_dir():
        report = check_objective(objective, device=args.device)
        result["objective"] = report.summary()
        result["objective_ok"] = report.ok
        log.info("%s", report.format())
    return result


def _random_wavs(batch: int, seconds: float, device: str) -> torch.Tensor:
    g = torch.Generator(device="cpu").manual_seed(0)
    t = torch.arange(int(seconds * 24000)) / 24000
    tones = 0.2 * torch.sin(2 * torch.pi * 220 * (1 + torch.rand(batch, 1, generator=g)) * t)
    return (tones + 0.02 * torch.randn(batch, t.numel(), generator=g)).to(device)


def phase_embed(args: argparse.Namespace) -> dict[str, Any]:
    from muqkit import MuQ

    model = MuQ.from_preset(args.preset).to(args.device, torch.bfloat16).eval()
    seconds = 2.0 if args.smoke else 30.0
    rows = []
    for batch in args.embed_batches:
        wavs = _random_wavs(batch, seconds, args.device)
        with torch.inference_mode():
            for _ in range(2):
                model(wavs, output_hidden_states=False)
            _sync(args.device)
            start = time.perf_counter()
            for _ in range(args.repeats):
                model(wavs, output_hidden_states=False)
            _sync(args.device)
        elapsed = (time.perf_counter() - start) / args.repeats
        rows.append({"batch": batch, "clip_seconds": seconds, "audio_seconds_per_second": batch * seconds / elapsed})
        log.info("embed %s bf16 batch %d: %.0f audio s/s", args.preset, batch, rows[-1]["audio_seconds_per_second"])
    memory = torch.cuda.max_memory_allocated() / 2**30 if args.device.startswith("cuda") else None
    best = max(r["audio_seconds_per_second"] for r in rows)
    return {"preset": args.preset, "rows": rows, "best_audio_seconds_per_second": best, "goal": 2000,
            "goal_met": best >= 2000, "peak_memory_gib": memory}


def phase_pretrain(args: argparse.Namespace) -> dict[str, Any]:
    from torch.utils.flop_counter import FlopCounterMode

    from muqkit import MuQ
    from muqkit.ssl.pretrain import MuQPretrainer, PretrainConfig
    from muqkit.tokenizer import MelRVQ, MelRVQConfig

    torch.manual_seed(0)
    tokenizer = MelRVQ(MelRVQConfig(), mean=-20.0, std=20.0)
    pretrainer = MuQPretrainer(MuQ.from_preset(args.preset), PretrainConfig(), tokenizer).to(args.device).train()
    optimizer = torch.optim.AdamW(pretrainer.parameters(), lr=1e-4, fused=args.device.startswith("cuda"))
    seconds = 2.0 if args.smoke else 30.0
    wavs = _random_wavs(args.train_batch, seconds, args.device)
    codes = pretrainer.encode_targets(wavs, torch.full((wavs.shape[0],), wavs.shape[1], device=args.device))
    generator = torch.Generator(device=args.device).manual_seed(0)

    def step() -> None:
        with torch.autocast(args.device.split(":")[0], dtype=torch.bfloat16):
            out = pretrainer(wavs, codes=codes, generator=generator)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    with FlopCounterMode(display=False) as counter:
        step()
    flops = counter.get_total_flops()
    for _ in range(2):
        step()
    _sync(args.device)
    start = time.perf_counter()
    for _ in range(args.repeats):
        step()
    _sync(args.device)
    elapsed = (time.perf_counter() - start) / args.repeats
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    peak = next((v for k, v in PEAK_BF16.items() if k in name), None)
    mfu = flops / elapsed / peak if peak else None
    log.info("pretrain %s bf16 batch %d x %.0f s: %.1f audio s/s, %.1f TFLOP/s, MFU %s", args.preset,
             args.train_batch, seconds, args.train_batch * seconds / elapsed, flops / elapsed / 1e12, mfu)
    return {"preset": args.preset, "batch": args.train_batch, "clip_seconds": seconds, "step_seconds": elapsed,
            "audio_seconds_per_second": args.train_batch * seconds / elapsed, "flops_per_step": flops,
            "achieved_tflops": flops / elapsed / 1e12, "peak_tflops": peak / 1e12 if peak else None,
            "mfu": mfu, "goal_mfu": 0.4, "goal_met": mfu is not None and mfu >= 0.4}


def phase_claims(args: argparse.Namespace, seconds_left: float) -> dict[str, Any]:
    import dataclasses

    from muqkit.recipes.claims import CLAIMS_PLAN, run_claims

    corpus = Path(args.data)
    if not (corpus / "scores.jsonl").is_file():
        return {"skipped": f"no prepared corpus at {corpus} (bash bench/gpu_prepare.sh)"}
    # Steps for the time left: three trained arms (two pretrainings and the refinement's), probes last.
    steps = args.claims_steps or max(50, int(seconds_left * 0.55 / 3 / args.seconds_per_step))
    plan = dataclasses.replace(
        CLAIMS_PLAN, preset=args.claims_preset, pretrain_steps=steps, rvq_steps=min(1000, steps),
        refine_rvq_steps=min(500, steps), crop_seconds=5.0, batch_size=32, latent_seconds=1200.0,
    )  # fmt: skip
    if args.smoke:
        plan = dataclasses.replace(plan, preset="tiny", pretrain_steps=4, rvq_steps=4, refine_rvq_steps=4,
                                   batch_size=2, crop_seconds=2.0, probe_epochs=5, num_codebooks=2,
                                   codebook_size=32, latent_seconds=30.0, tasks=("pitch",))  # fmt: skip
    start = time.perf_counter()
    claims = run_claims(corpus, Path(args.out) / "claims", seeds=(0,), plan=plan,
                        command=f"bench/gpu_check.py claims ({steps} steps)")
    return {"steps": steps, "seconds": time.perf_counter() - start,
            "claims": [dataclasses.asdict(c) for c in claims]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--parity", default=".gpu/parity", help="folder holding muq_small/ and objective_small/")
    parser.add_argument("--data", default=".gpu/data", help="prepared corpus (bench/gpu_prepare.sh)")
    parser.add_argument("--budget", type=float, default=450.0, help="seconds for every phase together")
    parser.add_argument("--preset", default="large")
    parser.add_argument("--embed-batches", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--train-batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--claims-preset", default="small")
    parser.add_argument("--claims-steps", type=int, default=0, help="default: what the time left allows")
    parser.add_argument("--seconds-per-step", type=float, default=0.25, help="estimate for the claims plan")
    parser.add_argument("--phases", default="parity,embed,pretrain,claims")
    parser.add_argument("--smoke", action="store_true", help="toy sizes (to test the script on a CPU)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.preset, args.embed_batches, args.train_batch, args.repeats = "tiny", [2], 2, 1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s",
                        handlers=[logging.StreamHandler(sys.stdout), logging.FileHandler(out / "gpu_check.log")])
    started = time.perf_counter()
    report: dict[str, Any] = {"device": args.device, "torch": torch.__version__,
                              "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None}
    for phase in args.phases.split(","):
        t0 = time.perf_counter()
        try:
            if phase == "claims":
                report[phase] = phase_claims(args, args.budget - (t0 - started))
            else:
                report[phase] = {"parity": phase_parity, "embed": phase_embed, "pretrain": phase_pretrain}[phase](args)
        except Exception as exc:  # one failing phase must not lose the others' figures
            report[phase] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
            log.error("phase %s failed: %s", phase, exc)
        report[phase]["phase_seconds"] = round(time.perf_counter() - t0, 1)
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()
        (out / "gpu_check.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
        log.info("phase %s done in %.1f s", phase, report[phase]["phase_seconds"])
    failed = [p for p in args.phases.split(",") if "error" in report.get(p, {})]
    print(f"gpu_check: {len(args.phases.split(',')) - len(failed)} phases ran, failed: {failed or 'none'}; "
          f"{os.fspath(out / 'gpu_check.json')}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
