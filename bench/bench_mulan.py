"""MuQ-MuLan embedding speed on CPU: muqkit's batched path against the official per-item loop.

Both run the same random-weight model, written in the official format by muqkit and loaded by each side
with its own ``MuQMuLan.from_pretrained``. The official package runs in its own virtualenv (``--official-python``)
in a subprocess; its audio call is the documented ``mulan(wavs=wavs)`` (one item at a time, one clip at a
time), its text call ``mulan(texts=texts)``. The script also checks that both sides give the same latents.

Usage (from the repository root)::

    python bench/bench_mulan.py --songs 10 --seconds 180 --muq-preset small --threads 2

The text backbone is an XLM-R encoder (the only kind the official loader accepts) with MiniLM's tokenizer,
since no XLM-R tokenizer ships offline.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]

OFFICIAL_SCRIPT = r"""
import json, sys, time, torch
from safetensors.torch import load_file, save_file
from muq import MuQMuLan
threads, repeats, dtype = int(sys.argv[1]), int(sys.argv[2]), getattr(torch, sys.argv[3])
torch.set_num_threads(threads)
data = load_file("inputs.safetensors")
texts = json.load(open("texts.json"))
mulan = MuQMuLan.from_pretrained("./mulan").eval().to(dtype)
out = {}
with torch.no_grad():
    mulan(wavs=data["wavs"][:1, : 24000 * 2]); mulan(texts=texts[:2])  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter(); audio = mulan(wavs=data["wavs"]); times.append(time.perf_counter() - t)
    out["audio_seconds"] = min(times)
    times = []
    for _ in range(repeats):
        t = time.perf_counter(); text = mulan(texts=texts); times.append(time.perf_counter() - t)
    out["text_seconds"] = min(times)
save_file({"audio": audio.float().contiguous(), "text": text.float().contiguous()},
          f"official_latents_{sys.argv[3]}.safetensors")
json.dump(out, open(f"official_times_{sys.argv[3]}.json", "w"))
"""

TEXTS = [
    "a calm piano piece in a minor key",
    "a fast Irish jig in D major, in 6/8 time, played on reed",
    "slow waltz performed by strings",
    "an upbeat rock song with drums and electric guitar",
    "female vocal jazz with a walking bass line",
    "a brisk reel featuring brass and synth lead",
    "sad violin melody",
    "a moderate march in common time played on organ",
]


def build_model(muq_preset: str, text_layers: int, seed: int):
    """A random-weight MuQ-MuLan with an XLM-R text backbone (MiniLM's tokenizer)."""
    from muqkit.mulan import MuQMuLan, mulan_preset
    from muqkit.mulan.config import TransformerConfig

    xlmr = {
        "model_type": "xlm-roberta",
        "vocab_size": 30522,
        "hidden_size": 384,
        "num_hidden_layers": text_layers,
        "num_attention_heads": 6,
        "intermediate_size": 1536,
        "max_position_embeddings": 514,
        "pad_token_id": 0,
        "bos_token_id": 101,
        "eos_token_id": 102,
        "type_vocab_size": 1,
    }
    config = mulan_preset("large")
    config = replace(
        config,
        audio=replace(config.audio, backbone=f"preset:{muq_preset}", transformer=TransformerConfig(dim=768, depth=2)),
        text=replace(
            config.text,
            backbone="all-MiniLM-L6-v2",
            backbone_config=xlmr,
            max_length=128,
            transformer=TransformerConfig(dim=768, depth=2),
        ),
    )
    torch.manual_seed(seed)
    return MuQMuLan.from_config(config).eval()


def songs(n: int, seconds: float, seed: int) -> torch.Tensor:
    """(n, samples) synthetic songs: chords of sines with an envelope, plus noise."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * 24000)) / 24000
    out = []
    for _ in range(n):
        f = 110 * 2 ** (torch.randint(0, 36, (3,), generator=g) / 12)
        wav = sum(torch.sin(2 * torch.pi * fi * t) for fi in f) / 3
        wav = wav * (0.5 + 0.5 * torch.sin(2 * torch.pi * 0.5 * t)) + 0.05 * torch.randn(t.shape, generator=g)
        out.append(wav.float())
    return torch.stack(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--songs", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--muq-preset", default="small", help="MuQ preset of the audio backbone (tiny..large)")
    parser.add_argument("--text-layers", type=int, default=6)
    parser.add_argument("--texts", type=int, default=64, help="texts embedded per call")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--clip-batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per side (the best is kept)")
    parser.add_argument("--official-python", default=str(ROOT / ".venv-official" / "bin" / "python"))
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--dtypes",
        nargs="+",
        default=["float32"],
        choices=["float32", "bfloat16"],
        help="weight dtypes timed on both sides (bfloat16: opt-in, lower precision)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from safetensors.torch import load_file, save_file

    from muqkit.mulan import MuQMuLan

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        build_model(args.muq_preset, args.text_layers, args.seed).save_pretrained(work, official=True)
        wavs = songs(args.songs, args.seconds, args.seed)
        texts = [TEXTS[i % len(TEXTS)] + ("" if i < len(TEXTS) else f" number {i}") for i in range(args.texts)]
        save_file({"wavs": wavs}, str(work / "inputs.safetensors"))
        (work / "texts.json").write_text(json.dumps(texts))

        # Each side, each dtype: the official package in its own process (a dtype it cannot run is
        # recorded with its error), muqkit here.
        official: dict[str, dict] = {}
        official_latents: dict[str, dict[str, torch.Tensor]] = {}
        if Path(args.official_python).exists():
            env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONWARNINGS": "ignore"}
            for dtype in args.dtypes:
                run = subprocess.run(
                    [args.official_python, "-c", OFFICIAL_SCRIPT, str(args.threads), str(args.repeats), dtype],
                    cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                )  # fmt: skip
                if run.returncode != 0:
                    official[dtype] = {"error": run.stderr.strip().splitlines()[-1]}
                    continue
                official[dtype] = json.loads((work / f"official_times_{dtype}.json").read_text())
                official_latents[dtype] = load_file(str(work / f"official_latents_{dtype}.safetensors"))
        else:
            print(f"official python not found at {args.official_python}: timing muqkit only", file=sys.stderr)

        ours: dict[str, dict] = {}
        ours_latents: dict[str, dict[str, torch.Tensor]] = {}
        for dtype in args.dtypes:
            mulan = MuQMuLan.from_pretrained(work / "mulan").to(getattr(torch, dtype))
            with torch.inference_mode():
                mulan(wavs=wavs[:1, : 24000 * 2])
                mulan(texts=texts[:2])
                times = []
                for _ in range(args.repeats):
                    t = time.perf_counter()
                    audio = mulan(wavs=wavs, clip_batch_size=args.clip_batch_size)
                    times.append(time.perf_counter() - t)
                ours_audio = min(times)
                times = []
                for _ in range(args.repeats):
                    t = time.perf_counter()
                    text = mulan(texts=texts)
                    times.append(time.perf_counter() - t)
                ours_text = min(times)
            ours[dtype] = {"audio_seconds": ours_audio, "text_seconds": ours_text}
            ours_latents[dtype] = {"audio": audio.float(), "text": text.float()}

    def rates(times: dict) -> dict:
        if "error" in times:
            return times
        return {**times, "songs_per_second": args.songs / times["audio_seconds"],
                "texts_per_second": len(texts) / times["text_seconds"]}  # fmt: skip

    clips = args.songs * -(-int(args.seconds * 24000) // mulan.config.clip_samples)
    result: dict = {
        "songs": args.songs, "seconds": args.seconds, "clips": clips, "texts": len(texts),
        "muq_preset": args.muq_preset, "threads": args.threads, "clip_batch_size": args.clip_batch_size,
        "muqkit": {d: rates(t) for d, t in ours.items()}, "official": {d: rates(t) for d, t in official.items()},
    }  # fmt: skip
    reference = official_latents.get("float32")
    if reference is not None:
        base = official["float32"]
        result["speedup_vs_official_float32"] = {
            d: {"audio": base["audio_seconds"] / t["audio_seconds"], "text": base["text_seconds"] / t["text_seconds"]}
            for d, t in ours.items()
        }
        result["agreement_with_official_float32"] = {}
        for d, lat in ours_latents.items():
            # The official text tower does not mask padding: only unpadded texts can agree exactly.
            result["agreement_with_official_float32"][d] = {
                f"{kind}_{stat}": value
                for kind in ("audio", "text")
                for stat, value in (
                    ("max_abs_diff", float((lat[kind] - reference[kind]).abs().max())),
                    ("min_cosine", float(torch.nn.functional.cosine_similarity(lat[kind], reference[kind]).min())),
                )
            }
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
