"""``muqkit pretrain`` and ``muqkit refine``: thin shells over :mod:`muqkit.train.pretrain` and
:mod:`muqkit.train.refine`."""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any

from muqkit.cli.errors import positive_float, positive_int

log = logging.getLogger(__name__)

REFINE_STEPS = ("all", "latents", "rvq", "labels", "train")


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    from muqkit.train.pretrain import load_preset

    settings = load_preset(args.preset)
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        settings[key] = _value(value)
    for key in ("steps", "batch_size", "crop_seconds", "devices", "precision", "workers", "seed"):
        value = getattr(args, key, None)
        if value is not None:
            settings[{"steps": "max_steps", "workers": "num_workers"}.get(key, key)] = value
    if getattr(args, "no_progress", False):
        settings["progress"] = False
    explicit = {item.partition("=")[0] for item in args.set or []}
    steps, warmup = settings.get("max_steps"), settings.get("warmup_steps", 0)
    if args.steps is not None and "warmup_steps" not in explicit and steps is not None and warmup >= steps:
        settings["warmup_steps"] = steps // 10
        log.warning("--steps %d is not above the preset's warm-up (%d steps): warm-up set to %d steps "
                    "(--set warmup_steps=N to choose)", steps, warmup, steps // 10)
    return settings


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--preset", default="tiny",
        help="a preset shipped in muqkit/configs/pretrain (tiny, small, base, large) or a YAML file (default: tiny)",
    )
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a setting (repeatable; JSON values)")
    p.add_argument("--steps", type=positive_int, help="optimiser steps")
    p.add_argument("--batch-size", type=positive_int, help="crops per device per micro-batch")
    p.add_argument("--crop-seconds", type=positive_float)
    p.add_argument("--devices", help="devices per node")
    p.add_argument("--precision", help="32-true, bf16-mixed, 16-mixed")
    p.add_argument("--workers", type=int, help="data-loader worker processes")
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
    p.add_argument("--num-codebooks", type=int, default=8)
    p.add_argument("--codebook-size", type=int, default=1024)
    p.add_argument("--codebook-dim", type=int, default=16)
    p.add_argument("--rvq-steps", type=int, default=2000)
    p.add_argument("--shard-items", type=int, default=256, help="records per label shard")
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
    from pathlib import Path

    from muqkit.ssl.muq import MuQ
    from muqkit.ssl.pretrain import LatentTargets
    from muqkit.tokenizer.base import load_tokenizer
    from muqkit.train import refine as R

    out = Path(args.out)
    settings = _settings(args)
    if args.step == "all":
        config = R.RefineConfig(
            layer=args.layer, latent_seconds=args.latent_seconds, num_codebooks=args.num_codebooks,
            codebook_size=args.codebook_size, codebook_dim=args.codebook_dim, rvq_steps=args.rvq_steps,
            shard_items=args.shard_items, pretrain=settings,
        )  # fmt: skip
        result = R.refine(args.model, args.manifests, out, config, progress=settings.get("progress", True))
        print(f"next model: {result.model_dir}")
        return 0
    model = MuQ.from_pretrained(args.model)
    layer = R.default_layer(model.config.encoder_depth) if args.layer is None else args.layer
    if args.step == "latents":
        print(R.extract_latents(model, args.manifests, out / "latents", layer=layer, max_seconds=args.latent_seconds))
    elif args.step == "rvq":
        print(R.train_latent_rvq(
            out / "latents" / "latents.txt", out / "rvq", num_codebooks=args.num_codebooks,
            codebook_size=args.codebook_size, codebook_dim=args.codebook_dim, steps=args.rvq_steps,
        ))  # fmt: skip
    elif args.step == "labels":
        targets = LatentTargets(model, layer, load_tokenizer(out / "rvq" / "tokenizer"))
        print(R.extract_labels(targets, args.manifests, out / "labels", shard_items=args.shard_items))
    else:
        from muqkit.train.pretrain import PretrainTrainingConfig, train_pretrain

        next_config = PretrainTrainingConfig.from_dict({**settings, "labels": str(out / "labels"), "tokenizer": None})
        print(train_pretrain(args.manifests, out / "pretrain", next_config, overwrite=True).model_dir)
    return 0
