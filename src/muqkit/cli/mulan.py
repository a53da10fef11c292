"""MuQ-MuLan commands: ``mulan train|index|evaluate``, ``similarity``, ``zeroshot``, ``search``.

Each command is a few lines around a library call; heavy imports happen inside the command functions.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from muqkit.cli.errors import AUDIO_INPUTS_HELP, device, positive_int, report_failures
from muqkit.cli.index import index_options
from muqkit.cli.options import DTYPE_CHOICES, config_from_args, field_option, hidden_alias

DEFAULT_MODEL = "OpenMuQ/MuQ-MuLan-large"


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``mulan`` (train, index, evaluate), ``similarity``, ``zeroshot`` and ``search``."""
    mulan = subparsers.add_parser("mulan", help="train, index and evaluate MuQ-MuLan music-text models")
    sub = mulan.add_subparsers(dest="mulan_command", metavar="COMMAND")
    mulan.set_defaults(func=lambda args: (mulan.print_help(), 2)[1])

    train = sub.add_parser("train", help="train on (audio, caption) pairs from corpus manifests")
    M = "muqkit.train.mulan:MuLanTrainConfig."
    train.add_argument(
        "--manifest",
        action="append",
        required=True,
        metavar="JSONL",
        help="corpus manifest (repeatable); captions from a 'caption' label or metadata templates",
    )
    train.add_argument("--out", required=True, metavar="DIR", help="run folder (checkpoints/, model/)")
    field_option(train, "--preset", M + "preset", "tiny", choices=("tiny", "large", "test"), help="model preset")
    train.add_argument(
        "--model-config", default=None, metavar="JSON", help="MuQMuLanConfig JSON (overrides --preset)"
    )
    train.add_argument("--init", default=None, metavar="CKPT", help="start from a MuQ-MuLan checkpoint")
    train.add_argument(
        "--muq", default=None, metavar="CKPT", help="pretrained MuQ checkpoint for the audio backbone"
    )
    train.add_argument(
        "--audio-layer",
        type=int,
        default=None,
        help="backbone hidden state feeding the audio tower (-1: last, 0: conv front end, k: layer k)",
    )
    train.add_argument(
        "--lag-pooling",
        type=int,
        default=None,
        metavar="FRAMES",
        help="add autocorrelations up to this lag (25 Hz frames; 50 = 2 s) to the audio tower's mean, "
        "a muqkit extension that keeps rhythm (0: none, the official tower)",
    )
    train.add_argument(
        "--text-backbone", default=None, help="text encoder (HF id or folder, or all-MiniLM-L6-v2)"
    )
    train.add_argument(
        "--freeze",
        default="text_backbone",
        help="comma-separated parts to freeze: audio_backbone,text_backbone,audio,text or 'none' "
        "(default: text_backbone)",
    )
    field_option(train, "--max-steps", M + "max_steps", 1000, type=positive_int, help="optimiser steps")
    hidden_alias(train, "--steps", "max_steps", type=positive_int)
    field_option(train, "--batch-size", M + "batch_size", 16, type=positive_int)
    field_option(train, "--lr", M + "lr", 3e-4, type=float)
    field_option(train, "--warmup-steps", M + "warmup_steps", 50, type=int)
    field_option(
        train, "--clip-seconds", M + "clip_seconds", None, type=float, help="training clip length (None: the model's)"
    )
    hidden_alias(train, "--clip-secs", "clip_seconds", type=float)
    train.add_argument(
        "--no-decoupled", action="store_true", help="classic InfoNCE instead of the decoupled loss"
    )
    field_option(train, "--precision", M + "precision", "32", help="32, bf16-mixed or 16-mixed")
    field_option(train, "--accelerator", M + "accelerator", "auto")
    field_option(train, "--devices", M + "devices", 1, type=int, help="devices (DDP with gathered negatives when > 1)")
    field_option(train, "--num-workers", M + "num_workers", 0, type=int)
    field_option(train, "--val-every", M + "val_every", 200, type=int, help="validation / checkpoint interval in steps")
    field_option(train, "--seed", M + "seed", 0, type=int)
    train.add_argument("--no-resume", action="store_true", help="ignore out/checkpoints/last.ckpt")
    train.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    train.set_defaults(func=run_train)

    index = sub.add_parser(
        "index", help="embed audio files or folders into a FAISS index, for `muqkit search` and `muqkit serve` "
        "(a MuQ checkpoint as --model gives MuQ latents: music search only)",
    )  # fmt: skip
    index.add_argument("paths", nargs="+", metavar="PATH")
    index.add_argument("--out", required=True, metavar="DIR", help="index folder")
    _model_args(index)
    index.add_argument("--batch-size", type=positive_int, default=4, help="songs per batch")
    index.add_argument("--overwrite", action="store_true", help="replace an index already in --out")
    index_options(index)
    index.set_defaults(func=run_index)

    evaluate = sub.add_parser("evaluate", help="zero-shot tagging and retrieval on a manifest split")
    evaluate.add_argument("--manifest", action="append", required=True, metavar="JSONL")
    evaluate.add_argument("--split", default="test")
    evaluate.add_argument("--source", default=None, help="only items of this source (e.g. scores)")
    evaluate.add_argument(
        "--unannotated-negative",
        action="store_true",
        help="count items without a value in a tag group (no mode, no dance type) as negatives of its tags "
        "(default: leave them out of that group)",
    )
    evaluate.add_argument(
        "--min-positives",
        type=int,
        default=1,
        metavar="N",
        help="score only tags with at least N positive items (default 1: every tag)",
    )
    evaluate.add_argument(
        "--exclude-groups",
        action="append",
        default=[],
        metavar="JSONL",
        help="leave out items whose group (score, tune, recording) appears in this manifest, in any split; "
        "e.g. the audio the backbone was pretrained on (repeatable)",
    )
    evaluate.add_argument(
        "--exclude-splits",
        nargs="+",
        default=None,
        metavar="SPLIT",
        help="only the groups of these splits of the --exclude-groups manifests (default: every split)",
    )
    evaluate.add_argument("--json", default=None, metavar="FILE", help="also write the figures as JSON")
    _model_args(evaluate)
    evaluate.set_defaults(func=run_evaluate)

    similarity = subparsers.add_parser("similarity", help="audio-text similarities with MuQ-MuLan")
    similarity.add_argument("audio", nargs="+", metavar="AUDIO", help=AUDIO_INPUTS_HELP)
    similarity.add_argument("--text", action="append", required=True, help="a text (repeatable)")
    _model_args(similarity)
    similarity.add_argument("--json", action="store_true", help="print JSON instead of a table")
    similarity.set_defaults(func=run_similarity)

    zeroshot = subparsers.add_parser("zeroshot", help="zero-shot tagging of audio from tag names")
    zeroshot.add_argument("audio", nargs="+", metavar="AUDIO", help=AUDIO_INPUTS_HELP)
    zeroshot.add_argument(
        "--tags", required=True, help="comma-separated tag names, or @FILE with one tag per line"
    )
    zeroshot.add_argument(
        "--prompt",
        action="append",
        default=None,
        help="prompt template with {tag} (repeatable; default: a small ensemble)",
    )
    zeroshot.add_argument("--top-k", type=positive_int, default=5)
    _model_args(zeroshot)
    zeroshot.add_argument("--json", action="store_true")
    zeroshot.set_defaults(func=run_zeroshot)

    search = subparsers.add_parser(
        "search", help="text-to-music or music-to-music search over an index (`muqkit mulan index`, `muqkit index`)"
    )
    search.add_argument("query", nargs="*", help="query text(s)")
    search.add_argument(
        "--like", action="append", default=[], metavar="FILE",
        help="music-to-music: files like this one (in the index or not; repeatable)",
    )  # fmt: skip
    search.add_argument("--index", required=True, metavar="DIR")
    search.add_argument("--model", default=None, help="model (default: the one that built the index)")
    search.add_argument("--device", type=device, default="cpu")
    _dtype_arg(search)
    search.add_argument(
        "--backend", choices=("torch", "onnxruntime"), default="torch",
        help="embed queries with PyTorch, or with onnxruntime (--model: a folder from `muqkit export onnx --mulan`)",
    )  # fmt: skip
    search.add_argument("--top-k", type=positive_int, default=10)
    search.add_argument("--json", action="store_true")
    search.set_defaults(func=run_search)


def _model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", default=DEFAULT_MODEL, help=f"MuQ-MuLan checkpoint (default: {DEFAULT_MODEL})"
    )
    parser.add_argument("--device", type=device, default="cpu", help="torch device (default: cpu)")
    _dtype_arg(parser)


def _dtype_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dtype",
        choices=DTYPE_CHOICES,
        default="float32",
        help="compute precision (bfloat16: about 2x faster on CPUs with bf16 instructions and on GPUs, "
        "latents within about 1e-3, emulated and slow elsewhere; int8: CPU only, the text tower in int8 on "
        "onnxruntime and the audio tower in int8 as `muqkit embed --dtype int8` (compiled on the first audio "
        "call); auto: from the CPU's features; the mel is always computed in float32)"
    )


def _load(name: str, device: str, dtype: str = "float32"):  # noqa: ANN202 - keeps torch out of the parser
    import torch

    from muqkit.embed.precision import resolve_precision
    from muqkit.mulan import MuQMuLan

    precision = resolve_precision(dtype, device=device)
    model = MuQMuLan.from_pretrained(name, map_location=device)
    if precision == "int8":  # both towers in int8 (the audio tower quantised on its first call)
        from muqkit.export.int8 import quantize_mulan

        return quantize_mulan(model)
    return model.to(getattr(torch, precision))


def run_train(args: argparse.Namespace) -> int:
    from muqkit.train.mulan import MuLanTrainConfig, train_mulan

    freeze = () if args.freeze in ("", "none") else tuple(p.strip() for p in args.freeze.split(","))
    config = config_from_args(
        MuLanTrainConfig, args, manifests=tuple(args.manifest), freeze=freeze, decoupled=not args.no_decoupled,
        resume=not args.no_resume,
    )  # fmt: skip
    print(train_mulan(config))
    return 0


def _model_name(name: str) -> str:
    """A folder as an absolute path (so an index finds its model from any working folder); a Hub id as is."""
    return str(Path(name).absolute()) if Path(name).is_dir() else name


def _texts(texts: list[str], option: str) -> list[str]:
    empty = [i + 1 for i, t in enumerate(texts) if not t.strip()]
    if empty:
        raise ValueError(f"{option}: text number {empty[0]} is empty; give a non-empty text")
    return texts


def run_index(args: argparse.Namespace) -> int:
    from muqkit.cli.index import index_config, owned_entries
    from muqkit.runfolder import prepare_run_folder
    from muqkit.search.build import index_audio
    from muqkit.search.query import load_index_model

    config = index_config(args)
    out = prepare_run_folder(args.out, overwrite=args.overwrite, owned=owned_entries(args.out), resumable=False)
    # a MuQ-MuLan, or a MuQ as MuQ latents (the last layer); the fingerprint is of the stored float32 weights
    model, fingerprint = load_index_model(args.model, device=args.device, dtype=args.dtype)
    index, update = index_audio(
        model, args.paths, model_id=_model_name(args.model), model_sha256=fingerprint, config=config,
        batch_size=args.batch_size,
    )  # fmt: skip
    index.save(out)
    print(f"indexed {len(index)} files into {out} ({index.kind})")
    return report_failures(update.failures, "muqkit mulan index")


def run_evaluate(args: argparse.Namespace) -> int:
    from muqkit.data.loader import absolute_records
    from muqkit.mulan.evaluate import evaluate_items
    from muqkit.mulan.index import embed_files

    if args.json:
        from muqkit.atomic import check_writable

        check_writable(args.json, option="--json")
    records = [r for r in absolute_records(args.manifest, split=args.split) if args.source in (None, r.source)]
    if args.exclude_groups:
        from muqkit.data.manifest import without_groups_of

        kept = without_groups_of(records, args.exclude_groups, splits=args.exclude_splits)
        print(f"left out {len(records) - len(kept)} of {len(records)} items whose group is in "
              f"{', '.join(args.exclude_groups)}", file=sys.stderr)
        records = kept
    if not records:
        print(f"no items in split {args.split!r}", file=sys.stderr)
        return 2
    model = _load(args.model, args.device, args.dtype)
    latents = embed_files(model, [r.path for r in records])
    result = evaluate_items(
        model,
        latents,
        [dict(r.labels) for r in records],
        unannotated_negative=args.unannotated_negative,
        min_positives=args.min_positives,
    )
    print(result.to_markdown())
    if args.json:
        from muqkit.atomic import atomic_path

        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps({**result.to_dict(), "excluded_groups_from": args.exclude_groups,
                                      "excluded_splits": args.exclude_splits,
                                      "min_positives": args.min_positives}, indent=2))
    return 0


def run_similarity(args: argparse.Namespace) -> int:
    from muqkit.data.files import find_audio
    from muqkit.mulan.index import embed_audio_files

    texts = _texts(args.text, "--text")
    files = find_audio(args.audio)
    model = _load(args.model, args.device, args.dtype)
    embedded = embed_audio_files(model, files)
    files = list(embedded.paths)
    sim = model.calc_similarity(embedded.latents, model.extract_text_latents(texts).cpu())
    if args.json:
        print(json.dumps({"audio": [str(f) for f in files], "texts": args.text, "similarity": sim.tolist()}))
    else:
        print("\t".join(["audio", *args.text]))
        for f, row in zip(files, sim.tolist(), strict=True):
            print("\t".join([str(f), *(f"{v:.4f}" for v in row)]))
    return report_failures(embedded.failures, "muqkit similarity")


def run_zeroshot(args: argparse.Namespace) -> int:
    from muqkit.data.files import find_audio
    from muqkit.mulan.index import embed_audio_files
    from muqkit.mulan.zeroshot import DEFAULT_PROMPTS, ZeroShotClassifier, check_prompt

    if args.tags.startswith("@"):
        with open(args.tags[1:], encoding="utf-8") as fh:
            tags = [line.strip() for line in fh if line.strip()]
    else:
        tags = [t.strip() for t in args.tags.split(",") if t.strip()]
    if not tags:
        raise ValueError(f"--tags {args.tags!r}: no tag names; give comma-separated names or @FILE, one per line")
    for template in args.prompt or ():
        check_prompt(template)
    files = find_audio(args.audio)
    model = _load(args.model, args.device, args.dtype)
    classifier = ZeroShotClassifier.from_model(model, tags, args.prompt or DEFAULT_PROMPTS)
    embedded = embed_audio_files(model, files)
    files = list(embedded.paths)
    predictions = classifier.predict(embedded.latents, top_k=args.top_k)
    if args.json:
        print(
            json.dumps(
                [
                    {"audio": str(f), "tags": list(p.tags), "scores": list(p.scores)}
                    for f, p in zip(files, predictions, strict=True)
                ]
            )
        )
    else:
        for f, p in zip(files, predictions, strict=True):
            print(f"{f}\t" + ", ".join(f"{t} ({s:.3f})" for t, s in zip(p.tags, p.scores, strict=True)))
    return report_failures(embedded.failures, "muqkit zeroshot")


def run_search(args: argparse.Namespace) -> int:
    from muqkit.search.query import Searcher

    if not args.query and not args.like:
        raise ValueError("give query text(s), or --like FILE for music-to-music search")
    _texts(args.query, "query")
    searcher = Searcher(args.index, model=args.model, device=args.device, dtype=args.dtype, backend=args.backend)
    results = list(zip(args.query, searcher.text(args.query, args.top_k), strict=True)) if args.query else []
    results += [(f"like:{f}", searcher.like(f, args.top_k)) for f in args.like]
    if args.json:
        print(json.dumps([{"query": q, "hits": [h.__dict__ for h in hs]} for q, hs in results]))
    else:
        for q, hs in results:
            print(f"# {q}")
            for h in hs:
                print(f"{h.rank}\t{h.score:.4f}\t{h.path}")
    return 0
