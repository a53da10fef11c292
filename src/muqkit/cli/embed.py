"""``muqkit embed``: embed audio files and folders with MuQ (a thin shell over ``embed_paths``)."""

from __future__ import annotations

import argparse

from muqkit.cli.errors import AUDIO_INPUTS_HELP, device, positive_float, positive_int
from muqkit.cli.options import DTYPE_CHOICES, layer_list


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``embed`` command."""
    parser = subparsers.add_parser(
        "embed",
        help="embed audio files and folders with MuQ",
        description=(
            "Embed audio files and folders (searched recursively) with MuQ. Writes one output per input, "
            "mirroring the input tree under --out, and index.jsonl with provenance. A rerun skips "
            "up-to-date outputs. Exits with status 1 if any input failed."
        ),
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help=AUDIO_INPUTS_HELP)
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument(
        "--model",
        default=None,
        help="Hub id or checkpoint folder (default: $MUQKIT_DEFAULT_MODEL, else the model `muqkit demo` "
        "installed in $MUQKIT_HOME/default-model, else OpenMuQ/MuQ-large-msd-iter)",
    )
    parser.add_argument("--revision", default=None, help="Hub revision (branch, tag or commit)")
    parser.add_argument("--cache-dir", default=None, help="Hub cache folder")
    parser.add_argument(
        "--layers",
        default="all",
        type=layer_list,
        help="'all' or comma-separated hidden-state indices: 0 = conv front end, i = Conformer layer i, "
        "negative from the end (default: all)",
    )
    parser.add_argument(
        "--pooling",
        choices=("none", "mean"),
        default="none",
        help="keep frames or average them (default: none)",
    )
    parser.add_argument(
        "--chunk-seconds",
        type=positive_float,
        default=30.0,
        help="longer inputs are encoded in chunks of this many seconds (default: 30)",
    )
    parser.add_argument("--batch-size", type=positive_int, default=8, help="chunks per model call (default: 8)")
    parser.add_argument("--device", type=device, default="cpu", help="torch device, e.g. cpu or cuda (default: cpu)")
    parser.add_argument(
        "--dtype",
        choices=DTYPE_CHOICES,
        default="float32",
        help="compute precision: float32 (the same embeddings on every machine), bfloat16 (fast where the CPU "
        "has native bfloat16, else emulated and slow), int8 (CPU; quantised, compiled once per run: the "
        "`int8` extra and a C++ compiler), or auto (from the CPU's features; never emulated bfloat16) "
        "(default: float32)",
    )
    parser.add_argument(
        "--format",
        dest="fmt",
        choices=("safetensors", "npy"),
        default="safetensors",
        help="output format (default: safetensors)",
    )
    parser.add_argument(
        "--backend",
        choices=("torch", "onnxruntime"),
        default="torch",
        help="run the model in PyTorch, or run a graph from `muqkit export onnx` (give its .onnx file as --model) "
        "with onnxruntime on the CPU (default: torch)",
    )
    parser.add_argument(
        "--devices",
        type=positive_int,
        default=1,
        help="processes, sharing the files by duration (CPU, or one GPU each with --device cuda); under torchrun "
        "or SLURM the launcher's world size is used (default: 1)",
    )
    parser.add_argument("--overwrite", action="store_true", help="embed again even if an output is up to date")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``muqkit embed``; returns 0 when every input was embedded, 1 if any failed, 2 on bad options
    or a model that cannot be loaded."""
    import sys

    from muqkit.embed import embed_paths
    from muqkit.embed.distributed import embed_distributed, launched_rank
    from muqkit.hub.weights import CheckpointError

    if (args.backend == "onnxruntime") != str(args.model or "").endswith(".onnx"):
        print("muqkit embed: error: --backend onnxruntime runs an exported graph: give its .onnx file as --model "
              "(and a .onnx --model needs --backend onnxruntime)", file=sys.stderr)  # fmt: skip
        return 2
    rank = launched_rank()
    distributed = args.devices > 1 or rank is not None
    try:
        summary = (embed_distributed if distributed else embed_paths)(  # type: ignore[operator]
            args.paths,
            args.out,
            **({"devices": args.devices} if distributed else {}),
            model=args.model,
            revision=args.revision,
            cache_dir=args.cache_dir,
            layers=args.layers,
            pooling=args.pooling,
            chunk_seconds=args.chunk_seconds,
            batch_size=args.batch_size,
            device=args.device,
            dtype=args.dtype,
            fmt=args.fmt,
            overwrite=args.overwrite,
            progress=not args.no_progress,
        )
    except (ValueError, CheckpointError) as exc:
        print(f"muqkit embed: error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:  # a rank died: what it and the others finished is kept
        if not distributed:
            raise
        print(f"muqkit embed: error: {exc}", file=sys.stderr)
        return 1
    if rank is None or rank.rank == 0:
        print(summary)
    return 0 if summary.ok else 1

