"""``muqkit tokenizer train | report | encode``: Mel-RVQ and its baselines from the command line."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from muqkit.cli.errors import positive_float, positive_int

log = logging.getLogger(__name__)

KINDS = ("mel_rvq", "latent_rvq", "random_projection", "kmeans")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("tokenizer", help="train, inspect and run tokenizers (Mel-RVQ, baselines)")
    sub = parser.add_subparsers(dest="tokenizer_command", metavar="SUBCOMMAND", required=True)

    p = sub.add_parser("train", help="train a Mel-RVQ / latent RVQ, or fit a random-projection / k-means baseline")
    p.add_argument("data", help="folder of audio / feature files, plain list of paths, or manifest")
    p.add_argument("output", help="run folder (the tokenizer is saved to OUTPUT/tokenizer)")
    p.add_argument("--kind", choices=KINDS, default="mel_rvq")
    p.add_argument("--val", help="held-out manifest or folder, validated during training")
    p.add_argument("--steps", type=positive_int, default=2000, help="optimiser steps")
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--crop-seconds", type=positive_float, default=5.0)
    p.add_argument("--crop-frames", type=int, default=125, help="feature crop length (latent_rvq)")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--num-codebooks", type=int, help="RVQ stages / random projections")
    p.add_argument("--codebook-size", type=int)
    p.add_argument("--codebook-dim", type=int)
    p.add_argument("--input-dim", type=int, help="feature size (latent_rvq)")
    p.add_argument("--stale-tolerance", type=int, help="steps before an unused code is replaced (0: never)")
    p.add_argument("--feature", choices=("mfcc", "mel"), help="k-means features (kmeans)")
    p.add_argument("--no-kmeans-init", action="store_true", help="keep random codebooks at the start")
    p.add_argument("--stats-max-seconds", type=float, help="audio read by the statistics pass (default: all)")
    p.add_argument("--preload", action="store_true", help="decode all audio into memory once")
    p.add_argument(
        "--cache-frames",
        action="store_true",
        help="keep the stacked mel of the statistics pass in memory and train on crops of it (fast on CPU)",
    )
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--accelerator", default="auto")
    p.add_argument("--devices", default="1")
    p.add_argument("--precision", default="32-true")
    p.add_argument("--checkpoint-every", type=int, default=500)
    p.add_argument("--resume", action="store_true", help="continue from OUTPUT/checkpoints/last.ckpt")
    p.add_argument("--overwrite", action="store_true", help="replace the run already in OUTPUT")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run_train)

    p = sub.add_parser("report", help="usage, perplexity, per-stage error and seed stability (JSON + PNG)")
    p.add_argument("tokenizer", help="tokenizer folder or Hub id (official MuQ checkpoints too)")
    p.add_argument("data", help="held-out manifest or folder")
    p.add_argument("--out", required=True, help="folder for report.json, stages.png, agreement.png")
    p.add_argument(
        "--compare",
        nargs="*",
        default=[],
        metavar="TOKENIZER",
        help="tokenizers to compare with (e.g. the same recipe trained with another seed)",
    )
    p.add_argument("--single-vq", help="a one-stage tokenizer with as many codes, for the error comparison")
    p.add_argument("--random-projection-seeds", type=int, nargs=2, default=(142, 143), metavar=("A", "B"))
    p.add_argument("--max-seconds", type=positive_float, help="audio read (default: all)")
    p.add_argument("--overwrite", action="store_true", help="replace a report already in --out")
    p.set_defaults(func=run_report)

    p = sub.add_parser("encode", help="tokenize audio files into a safetensors file of codes")
    p.add_argument("tokenizer", help="tokenizer folder or Hub id")
    p.add_argument("audio", nargs="+", help="audio files, or manifests / folders of them")
    p.add_argument("--out", required=True, help="output .safetensors: one (num_codebooks, frames) tensor per file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.set_defaults(func=run_encode)


def _model_fields(args: argparse.Namespace) -> dict:
    fields = {
        "num_codebooks": args.num_codebooks,
        "codebook_size": args.codebook_size,
        "codebook_dim": args.codebook_dim,
        "input_dim": args.input_dim,
        "stale_tolerance": args.stale_tolerance,
        "feature": args.feature,
    }
    return {k: v for k, v in fields.items() if v is not None}


def run_train(args: argparse.Namespace) -> int:
    model = _model_fields(args)
    if args.kind in ("random_projection", "kmeans"):
        from muqkit.runfolder import prepare_run_folder
        from muqkit.train.tokenizer import fit_baseline

        model.pop("stale_tolerance", None)
        prepare_run_folder(args.output, overwrite=args.overwrite, owned=("tokenizer",), option="OUTPUT")
        out = fit_baseline(
            args.data,
            Path(args.output) / "tokenizer",
            kind=args.kind,
            model=model,
            seed=args.seed,
            max_seconds=args.stats_max_seconds,
        )
        print(f"saved {args.kind} tokenizer to {out}")
        return 0
    from muqkit.train.tokenizer import TokenizerTrainingConfig, train_tokenizer

    devices = int(args.devices) if args.devices.isdigit() else args.devices
    config = TokenizerTrainingConfig(
        kind=args.kind,
        crop_seconds=args.crop_seconds,
        crop_frames=args.crop_frames,
        batch_size=args.batch_size,
        max_steps=args.steps,
        lr=args.lr,
        kmeans_init=not args.no_kmeans_init,
        stats_max_seconds=args.stats_max_seconds,
        preload=args.preload,
        cache_frames=args.cache_frames,
        num_workers=args.workers,
        seed=args.seed,
        accelerator=args.accelerator,
        devices=devices,
        precision=args.precision,
        checkpoint_every=args.checkpoint_every,
        model=model,
    )
    result = train_tokenizer(
        args.data, args.output, config, validation=args.val, resume=args.resume, overwrite=args.overwrite,
        progress=not args.no_progress,
    )  # fmt: skip
    print(
        json.dumps(
            {
                "tokenizer": str(result.tokenizer_dir),
                "steps": result.steps,
                "train_seconds": round(result.seconds, 1),
                "statistics_seconds": round(result.statistics_seconds, 1),
                "metrics": result.final_metrics,
            },
            indent=2,
        )
    )
    return 0


def run_report(args: argparse.Namespace) -> int:
    from muqkit.data.files import AUDIO_EXTENSIONS, FEATURE_EXTENSIONS, iterate_chunks, list_files
    from muqkit.runfolder import prepare_run_folder
    from muqkit.tokenizer.base import load_tokenizer
    from muqkit.tokenizer.diagnostics import make_report, plot_report

    prepare_run_folder(args.out, overwrite=args.overwrite, owned=("report.json", "stages.png", "agreement.png"))
    tokenizer = load_tokenizer(args.tokenizer)
    others = {f"vs {name}": load_tokenizer(name) for name in args.compare}
    single = load_tokenizer(args.single_vq) if args.single_vq else None
    audio = hasattr(tokenizer, "features")
    files = list_files(args.data, extensions=AUDIO_EXTENSIONS if audio else FEATURE_EXTENSIONS)
    chunks = iterate_chunks(
        files, kind="audio" if audio else "features", sample_rate=int(getattr(tokenizer.config, "sample_rate", 0)),
        chunk_seconds=30.0, max_seconds=args.max_seconds,
    )
    report = make_report(
        tokenizer,
        chunks,
        files=len(files),
        others=others,
        single_vq=single,
        random_projection_seeds=args.random_projection_seeds if audio else (),
    )
    from muqkit.atomic import atomic_path

    out = Path(args.out)
    with atomic_path(out / "report.json") as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    written = plot_report(report, out)
    for stage in report["diagnostics"]["stages"]:
        print(
            f"stage {stage['stage']}: usage {100 * stage['usage']:.1f}%  "
            f"perplexity {stage['perplexity']:.0f}  error {stage['error_db']:.2f} dB "
            f"(gain {stage['gain_db']:.2f} dB)"
        )
    for name, values in report.get("agreement", {}).items():
        print(f"{name}: AMI " + " ".join(f"{v:.3f}" for v in values["ami"]))
    print(f"wrote {out / 'report.json'} and " + ", ".join(str(p) for p in written))
    return 0


def run_encode(args: argparse.Namespace) -> int:
    import torch
    from safetensors.torch import save_file

    from muqkit.data.files import AUDIO_EXTENSIONS, list_files, read_audio
    from muqkit.tokenizer.base import load_tokenizer

    out = Path(args.out)
    if out.is_dir():
        raise ValueError(f"--out {out}: is a folder; give the .safetensors file to write")
    if out.exists() and not args.overwrite:
        raise ValueError(f"--out {out}: exists; pass --overwrite to replace it")
    tokenizer: Any = load_tokenizer(args.tokenizer)  # an AudioTokenizer (encode, sample_rate)
    files: list[Path] = []
    for entry in args.audio:
        path = Path(entry)
        files.extend([path] if path.suffix.lower() in AUDIO_EXTENSIONS else list_files(path))
    codes = {}
    for path in files:
        audio = torch.from_numpy(read_audio(path, tokenizer.sample_rate)).unsqueeze(0)
        codes[str(path)] = tokenizer.encode(audio)[0].contiguous()
        log.info("%s: %s codes", path, tuple(codes[str(path)].shape))
    from muqkit.atomic import atomic_path

    with atomic_path(out) as tmp:
        metadata = {"frame_rate": str(tokenizer.frame_rate), "model_type": tokenizer.model_type}
        save_file(codes, str(tmp), metadata=metadata)
    print(f"wrote codes of {len(codes)} files to {args.out}")
    return 0
