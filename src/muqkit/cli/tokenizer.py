"""``muqkit tokenizer train | report | encode``: Mel-RVQ and its baselines from the command line."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from muqkit.cli.errors import positive_float, positive_int
from muqkit.cli.options import config_from_args, device_count, field_option, hidden_alias

log = logging.getLogger(__name__)

KINDS = ("mel_rvq", "latent_rvq", "random_projection", "kmeans")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("tokenizer", help="train, inspect and run tokenizers (Mel-RVQ, baselines)")
    sub = parser.add_subparsers(dest="tokenizer_command", metavar="SUBCOMMAND", required=True)

    p = sub.add_parser("train", help="train a Mel-RVQ / latent RVQ, or fit a random-projection / k-means baseline")
    p.add_argument("data", help="folder of audio / feature files, plain list of paths, or manifest")
    p.add_argument("output", nargs="?", help="run folder (the tokenizer is saved to OUTPUT/tokenizer); or --out")
    p.add_argument("--out", help="run folder (same as OUTPUT)")
    p.add_argument("--kind", choices=KINDS, default="mel_rvq")
    p.add_argument("--val", help="held-out manifest or folder, validated during training")
    T = "muqkit.train.tokenizer:TokenizerTrainingConfig."
    field_option(p, "--max-steps", T + "max_steps", 2000, type=positive_int, help="optimiser steps")
    hidden_alias(p, "--steps", "max_steps", type=positive_int)
    field_option(p, "--batch-size", T + "batch_size", 32, type=positive_int)
    field_option(p, "--crop-seconds", T + "crop_seconds", 5.0, type=positive_float)
    field_option(p, "--crop-frames", T + "crop_frames", 125, type=positive_int, help="feature crop (latent_rvq)")
    field_option(p, "--lr", T + "lr", 1e-4, type=positive_float)
    p.add_argument("--num-codebooks", type=int, help="RVQ stages / random projections")
    p.add_argument("--codebook-size", type=int)
    p.add_argument("--codebook-dim", type=int)
    p.add_argument("--input-dim", type=int, help="feature size (latent_rvq)")
    p.add_argument("--stale-tolerance", type=int, help="steps before an unused code is replaced (0: never)")
    p.add_argument("--feature", choices=("mfcc", "mel"), help="k-means features (kmeans)")
    p.add_argument("--no-kmeans-init", action="store_true", help="keep random codebooks at the start")
    field_option(
        p, "--stats-max-seconds", T + "stats_max_seconds", None, type=positive_float,
        help="audio read by the statistics pass (None: all)",
    )  # fmt: skip
    p.add_argument("--preload", action="store_true", help="decode all audio into memory once")
    p.add_argument(
        "--cache-frames",
        action="store_true",
        help="keep the stacked mel of the statistics pass in memory and train on crops of it (fast on CPU)",
    )
    field_option(p, "--num-workers", T + "num_workers", 0, type=int, help="data-loader worker processes")
    hidden_alias(p, "--workers", "num_workers", type=int)
    field_option(p, "--seed", T + "seed", 0, type=int)
    field_option(p, "--accelerator", T + "accelerator", "auto")
    field_option(p, "--devices", T + "devices", 1, type=device_count)
    field_option(p, "--precision", T + "precision", "32-true")
    field_option(p, "--checkpoint-every", T + "checkpoint_every", 500, type=positive_int)
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


def _output(args: argparse.Namespace) -> str:
    if args.output and args.out and args.output != args.out:
        raise ValueError(f"give the run folder once: OUTPUT {args.output!r} or --out {args.out!r}")
    output = args.output or args.out
    if not output:
        raise ValueError("give the run folder: OUTPUT or --out")
    return output


def run_train(args: argparse.Namespace) -> int:
    model = _model_fields(args)
    output = _output(args)
    if args.kind in ("random_projection", "kmeans"):
        from muqkit.train.tokenizer import fit_baseline_run

        out = fit_baseline_run(
            args.data, output, kind=args.kind, model=model, seed=args.seed, max_seconds=args.stats_max_seconds,
            overwrite=args.overwrite,
        )  # fmt: skip
        print(f"saved {args.kind} tokenizer to {out}")
        return 0
    from muqkit.train.tokenizer import TokenizerTrainingConfig, train_tokenizer

    config = config_from_args(TokenizerTrainingConfig, args, kmeans_init=not args.no_kmeans_init, model=model)
    result = train_tokenizer(
        args.data, output, config, validation=args.val, resume=args.resume, overwrite=args.overwrite,
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

    prepare_run_folder(
        args.out, overwrite=args.overwrite, owned=("report.json", "stages.png", "agreement.png"), resumable=False
    )
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
    from safetensors.torch import save_file

    from muqkit.atomic import atomic_path, check_writable
    from muqkit.data.files import AUDIO_EXTENSIONS, list_files
    from muqkit.tokenizer.base import encode_files, load_tokenizer

    out = Path(args.out)
    if out.is_dir():
        raise ValueError(f"--out {out}: is a folder; give the .safetensors file to write")
    if out.exists() and not args.overwrite:
        raise ValueError(f"--out {out}: exists; pass --overwrite to replace it")
    check_writable(out)
    tokenizer: Any = load_tokenizer(args.tokenizer)  # an AudioTokenizer (encode, sample_rate)
    files: list[Path] = []
    for entry in map(Path, args.audio):
        files.extend([entry] if entry.suffix.lower() in AUDIO_EXTENSIONS else list_files(entry))
    codes = encode_files(tokenizer, files)
    with atomic_path(out) as tmp:
        metadata = {"frame_rate": str(tokenizer.frame_rate), "model_type": tokenizer.model_type}
        save_file(codes, str(tmp), metadata=metadata)
    print(f"wrote codes of {len(codes)} files to {args.out}")
    return 0
