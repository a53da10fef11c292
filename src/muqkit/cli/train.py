"""``muqkit pretrain`` and ``muqkit refine``: thin shells over :mod:`muqkit.train.pretrain` and
:mod:`muqkit.train.refine`."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from muqkit.cli.errors import positive_float, positive_int
from muqkit.cli.options import device_count, field_option, hidden_alias

log = logging.getLogger(__name__)

REFINE_STEPS = ("all", "latents", "rvq", "labels", "train")


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    from muqkit.train.pretrain import preset_settings

    keys = ("max_steps", "batch_size", "crop_seconds", "devices", "precision", "num_workers", "seed")
    overrides: dict[str, Any] = {key: getattr(args, key, None) for key in keys}
    if getattr(args, "no_progress", False):
        overrides["progress"] = False
    return preset_settings(args.preset, set_items=args.set or (), overrides=overrides)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--preset", default="tiny",
        help="a preset shipped in muqkit/configs/pretrain (tiny, small, base, large) or a YAML file (default: tiny)",
    )
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a setting (repeatable; JSON values)")
    p.add_argument("--max-steps", type=positive_int, help="optimiser steps (default: the preset's)")
    hidden_alias(p, "--steps", "max_steps", type=positive_int)
    p.add_argument("--batch-size", type=positive_int, help="crops per device per micro-batch")
    p.add_argument("--crop-seconds", type=positive_float)
    p.add_argument("--devices", type=device_count, help="devices per node")
    p.add_argument("--precision", help="32-true, bf16-mixed, 16-mixed")
    p.add_argument("--num-workers", type=int, help="data-loader worker processes")
    hidden_alias(p, "--workers", "num_workers", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--no-progress", action="store_true")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``pretrain`` and ``refine``."""
    p = subparsers.add_parser(
        "pretrain",
        help="pretrain MuQ on JSONL manifests (Lightning: CPU, GPUs, nodes)",
        description="Pretrain a MuQ encoder by masked prediction of tokenizer codes. Writes OUT/model "
        "(official format), OUT/checkpoints/last.ckpt and OUT/logs. Multi-GPU: run under torchrun or "
        "SLURM srun with --devices N (and --set num_nodes=M).",
    )
    p.add_argument(
        "manifests", nargs="+", metavar="DATA",
        help="manifests (muqkit data build-corpus writes them), folders of audio or plain lists of paths",
    )
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--tokenizer", help="target tokenizer folder (Mel-RVQ, random projection, k-means, latent RVQ)")
    p.add_argument("--labels", help="pre-extracted label folder (muqkit refine --step labels)")
    p.add_argument("--latent-model", help="previous MuQ whose layer a latent-RVQ tokenizer reads")
    p.add_argument("--latent-layer", type=int)
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/last.ckpt")
    p.add_argument("--mel-stats", choices=["auto", "tokenizer", "corpus", "preset"],
                   help="input normalisation: the tokenizer's statistics, a pass over the training audio, or the "
                        "preset's (MSD); default auto: the tokenizer's when it has them, else the pass")
    p.add_argument("--overwrite", action="store_true", help="replace the run already in OUT")
    _common(p)
    p.set_defaults(func=run_pretrain)

    p = subparsers.add_parser(
        "refine",
        help="one iteration of refinement: latents -> latent RVQ -> labels -> next model",
        description="Iterative refinement of a trained MuQ. --step all runs every step and skips those "
        "whose output exists; a single step can run alone.",
    )
    p.add_argument("model", help="the trained MuQ (folder or Hub id)")
    p.add_argument("manifests", nargs="+", metavar="DATA", help="manifests, folders of audio or plain lists of paths")
    p.add_argument("--out", required=True, help="iteration folder: latents/, rvq/, labels/, pretrain/")
    p.add_argument("--step", choices=REFINE_STEPS, default="all")
    p.add_argument("--layer", type=int, help="hidden state to tokenize (default: 3/4 of the depth, 9 of 12)")
    p.add_argument("--latent-seconds", type=float, help="audio whose latents train the RVQ (default: all)")
    R = "muqkit.train.refine:RefineConfig."
    field_option(p, "--num-codebooks", R + "num_codebooks", 8, type=positive_int)
    field_option(p, "--codebook-size", R + "codebook_size", 1024, type=positive_int)
    field_option(p, "--codebook-dim", R + "codebook_dim", 16, type=positive_int)
    field_option(p, "--rvq-steps", R + "rvq_steps", 2000, type=positive_int)
    field_option(p, "--shard-items", R + "shard_items", 256, type=positive_int, help="records per label shard")
    _common(p)
    p.set_defaults(func=run_refine)


def run_pretrain(args: argparse.Namespace) -> int:
    from muqkit.train.pretrain import PretrainTrainingConfig, train_pretrain

    settings = _settings(args)
    for key in ("tokenizer", "labels", "latent_model", "latent_layer", "mel_stats"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    config = PretrainTrainingConfig.from_dict(settings)
    result = train_pretrain(args.manifests, args.out, config, resume=args.resume, overwrite=args.overwrite)
    print(f"{result.steps} steps in {result.seconds:.1f} s ({result.audio_seconds / max(result.seconds, 1e-9):.1f} "
          f"audio s/s); model: {result.model_dir}")  # fmt: skip
    return 0


def run_refine(args: argparse.Namespace) -> int:
    from muqkit.train.refine import RefineConfig, refine, refine_step

    settings = _settings(args)
    config = RefineConfig(
        layer=args.layer, latent_seconds=args.latent_seconds, num_codebooks=args.num_codebooks,
        codebook_size=args.codebook_size, codebook_dim=args.codebook_dim, rvq_steps=args.rvq_steps,
        shard_items=args.shard_items, pretrain=settings,
    )  # fmt: skip
    progress = settings.get("progress", True)
    if args.step == "all":
        print(f"next model: {refine(args.model, args.manifests, args.out, config, progress=progress).model_dir}")
    else:
        print(refine_step(args.step, args.model, args.manifests, args.out, config, progress=progress))
    return 0
