"""Tokenizer speed on CPU: frames (25 Hz tokens) per second, mel included where a method needs it.

Compares, in one run and on the same audio:
  * Mel-RVQ (muqkit), 8 x 1024 x 16;
  * the official RVQ code (``muq`` package, in ``.venv-official``) on the same weights, with its own
    torchaudio mel, normalisation and rearrange;
  * the random-projection quantizer (muqkit);
  * the EnCodec 24 kHz encoder at 6 kbps (``encodec`` package in ``.venv-official``, random weights;
    its 75 Hz codes are counted as 25 Hz frames of the same audio, as MuQ subsamples them).

    .venv/bin/python bench/bench_tokenizer.py --seconds 60 --repeats 3 --threads 1 [--json out.json]

The official virtualenv is created by ``bench/official_env.sh`` when missing (plus ``pip install encodec``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
OFFICIAL_PYTHON = ROOT / ".venv-official" / "bin" / "python"

OFFICIAL_SCRIPT = r"""
import json, sys, time, torch
from einops import rearrange
from safetensors.torch import load_file
torch.set_num_threads(int(sys.argv[3]))
from muq.muq.modules.rvq import ResidualVectorQuantize
from muq.muq.modules.features import MelSTFT
state = load_file(sys.argv[1] + "/model.safetensors")
stat = json.load(open(sys.argv[1] + "/config.json"))["stat"]
rvq = ResidualVectorQuantize(input_dim=512, n_codebooks=8, codebook_size=1024, codebook_dim=16,
                             quantizer_dropout=0.0).eval()
rvq.load_state_dict({k[len("model.rvq."):]: v for k, v in state.items() if k.startswith("model.rvq.")})
mel = MelSTFT(n_fft=2048, hop_length=240, is_db=True)
wavs = load_file(sys.argv[2])["wavs"]
def official(x):
    m = mel(x)[..., :-1]
    m = (m - stat["melspec_2048_mean"]) / stat["melspec_2048_std"]
    m = rearrange(m, "b f (t s) -> b t (s f)", s=4)
    return rvq(m.permute(0, 2, 1))[1]
from encodec import EncodecModel
encodec = EncodecModel.encodec_model_24khz(pretrained=False).eval()
encodec.set_target_bandwidth(6.0)
def run_encodec(x):
    return torch.cat([f[0] for f in encodec.encode(x.unsqueeze(1))], dim=-1)
out = {}
for name, fn in (("official_rvq", official), ("encodec_6kbps", run_encodec)):
    with torch.inference_mode():
        codes = fn(wavs[:, :24000])
        times = []
        for _ in range(int(sys.argv[4])):
            t = time.perf_counter(); codes = fn(wavs); times.append(time.perf_counter() - t)
    out[name] = {"seconds": min(times), "codes_shape": list(codes.shape)}
    if name == "official_rvq":
        torch.save(codes, sys.argv[2] + ".official_codes.pt")
print(json.dumps(out))
"""


def time_fn(fn, wavs: torch.Tensor, repeats: int) -> tuple[float, torch.Tensor]:
    with torch.inference_mode():
        fn(wavs[:, :24000])
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            out = fn(wavs)
            times.append(time.perf_counter() - start)
    return min(times), out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="audio per call (batch of 2 items)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--skip-official", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from safetensors.torch import save_file

    from muqkit.tokenizer import MelRVQ, MelRVQConfig, RandomProjectionConfig, RandomProjectionTokenizer

    torch.manual_seed(0)
    samples = int(args.seconds * 24000 / 2)
    wavs = 0.1 * torch.randn(2, samples)
    frames = 2 * (samples // 240 // 4)
    mel_rvq = MelRVQ(MelRVQConfig(), mean=6.77, std=18.4).eval()
    rp = RandomProjectionTokenizer(RandomProjectionConfig(codebook_size=1024), mean=6.77, std=18.4).eval()
    results: dict[str, dict] = {}
    for name, model in (("mel_rvq_muqkit", mel_rvq), ("random_projection_muqkit", rp)):
        seconds, codes = time_fn(model.encode, wavs, args.repeats)
        results[name] = {"seconds": seconds, "codes_shape": list(codes.shape)}
    mel_seconds, _ = time_fn(mel_rvq.featurize, wavs, args.repeats)
    results["mel_only_muqkit"] = {"seconds": mel_seconds}
    ours = mel_rvq.encode(wavs)

    if not args.skip_official:
        subprocess.run(["bash", str(ROOT / "bench" / "official_env.sh")], check=True, cwd=ROOT)
        if subprocess.run([str(OFFICIAL_PYTHON), "-c", "import encodec"], capture_output=True).returncode:
            subprocess.run([str(OFFICIAL_PYTHON), "-m", "pip", "install", "-q", "encodec"], check=True)
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "model"
            folder.mkdir()
            from muqkit.hub.official.rvq import mel_rvq_to_official

            save_file(mel_rvq_to_official(mel_rvq.state_dict()), str(folder / "model.safetensors"))
            stat = {"melspec_2048_mean": 6.77, "melspec_2048_std": 18.4}
            (folder / "config.json").write_text(json.dumps({"stat": stat}))
            save_file({"wavs": wavs.contiguous()}, str(Path(tmp) / "wavs.safetensors"))
            proc = subprocess.run(
                [
                    str(OFFICIAL_PYTHON),
                    "-c",
                    OFFICIAL_SCRIPT,
                    str(folder),
                    str(Path(tmp) / "wavs.safetensors"),
                    str(args.threads),
                    str(args.repeats),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            results.update(json.loads(proc.stdout.strip().splitlines()[-1]))
            official_codes = torch.load(str(Path(tmp) / "wavs.safetensors") + ".official_codes.pt")
            results["official_rvq"]["codes_equal_muqkit"] = bool(torch.equal(official_codes, ours))

    for value in results.values():
        value["frames_per_second"] = frames / value["seconds"]
    base = results["mel_rvq_muqkit"]["frames_per_second"]
    print(f"{args.seconds:.0f} s of audio ({frames} frames at 25 Hz), {args.threads} thread(s)")
    for name, value in results.items():
        print(
            f"  {name:26s} {value['frames_per_second']:12.0f} frames/s   "
            f"(Mel-RVQ is {base / value['frames_per_second']:.1f}x)"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
