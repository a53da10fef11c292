"""Throughput of ``muqkit embed --devices N`` on the CPU, and the resume check after a rank is killed (kill -9).

Writes ``--files`` generated audio files (durations spread over 0.5x to 1.5x ``--seconds``) and a random-weight
model of ``--preset``, then runs ``muqkit embed`` with each ``--devices`` value into a fresh folder and reports
seconds of audio per second (wall time of the whole command, process start-up and model loading included).
With ``--kill-check`` it then starts a 2-process run, kills one rank with SIGKILL once a few outputs exist,
checks that every output on disk is complete, reruns the command and checks that the result equals the
1-process run's.

Usage::

    OMP_NUM_THREADS=1 python bench/bench_embed_devices.py --preset small --files 16 --seconds 12 --kill-check
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def embed(audio: Path, out: Path, model: Path, devices: int, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "muqkit.cli.main", "embed", str(audio), "--out", str(out), "--model", str(model),
               "--layers", "-1", "--pooling", "mean", "--no-progress", "--devices", str(devices), *extra]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def outputs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.safetensors") if ".muqkit-tmp-" not in p.name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--files", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--kill-check", action="store_true")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    import soundfile as sf
    import torch

    from muqkit import MuQ
    from muqkit.embed import read_embedding

    report: dict = {"args": vars(args), "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = MuQ.from_preset(args.preset, seed=0).save_pretrained(root / "model")
        rng = np.random.default_rng(0)
        total = 0.0
        for i in range(args.files):
            seconds = args.seconds * (0.5 + i / max(1, args.files - 1))
            t = np.arange(int(seconds * 24000)) / 24000
            wav = 0.3 * np.sin(2 * np.pi * (110 + 20 * i) * t) + 0.05 * rng.standard_normal(t.size)
            sf.write(root / "music" / f"{i:03d}.wav" if (root / "music").is_dir() else _mk(root / "music", i),
                     wav.astype(np.float32), 24000)  # fmt: skip
            total += seconds
        for devices in args.devices:
            start = time.perf_counter()
            proc = embed(root / "music", root / f"out{devices}", model, devices)
            stdout, stderr = proc.communicate()
            wall = time.perf_counter() - start
            if proc.returncode != 0:
                raise SystemExit(f"--devices {devices} failed ({proc.returncode}): {stderr[-2000:]}")
            row = {"devices": devices, "wall_s": round(wall, 1), "audio_s": round(total, 1),
                   "audio_s_per_s": round(total / wall, 2)}  # fmt: skip
            report["runs"].append(row)
            print(json.dumps(row), flush=True)
        if args.kill_check:
            out = root / "killed"
            proc = embed(root / "music", out, model, 2)
            import psutil

            while len(outputs(out)) < 3 and proc.poll() is None:
                time.sleep(0.2)
            children = [c for c in psutil.Process(proc.pid).children() if "python" in c.name().lower()]
            victim = max(children, key=lambda c: c.pid)  # one rank
            os.kill(victim.pid, signal.SIGKILL)
            _, stderr = proc.communicate()
            on_disk = outputs(out)
            for path in on_disk:  # every output present is complete and readable
                read_embedding(path)
            rerun = embed(root / "music", out, model, 2)
            stdout, _ = rerun.communicate()
            reference = {p.name: read_embedding(p).layers for p in outputs(root / f"out{args.devices[0]}")}
            resumed = {p.name: read_embedding(p).layers for p in outputs(out)}
            same = reference.keys() == resumed.keys() and all(
                torch.allclose(reference[k][layer], resumed[k][layer], atol=1e-5) for k in reference
                for layer in reference[k]
            )  # fmt: skip
            check = {
                "killed_exit_status": proc.returncode,
                "killed_message": next((x for x in stderr.splitlines() if "died" in x), stderr.strip()[-200:]),
                "outputs_after_kill": len(on_disk),
                "rerun_exit_status": rerun.returncode,
                "rerun_summary": stdout.strip().splitlines()[0] if stdout.strip() else "",
                "outputs_after_rerun": len(resumed),
                "equal_to_1_process": same,
                "rank_files_left": len(list(out.glob(".index.rank-*"))),
            }
            report["kill_check"] = check
            print(json.dumps(check), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


def _mk(folder: Path, i: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{i:03d}.wav"


if __name__ == "__main__":
    main()
