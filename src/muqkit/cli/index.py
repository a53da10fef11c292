"""``muqkit index``: keep a FAISS search index up to date (add, remove, MuQ embeddings, info).

``muqkit mulan index`` builds a MuQ-MuLan index and ``muqkit search`` queries any index; both live in
:mod:`muqkit.cli.mulan` and share the index options defined here.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from muqkit.cli.errors import device, positive_int, report_failures
from muqkit.cli.options import DTYPE_CHOICES

# Entries an index folder may hold (this format and the previous one), for --overwrite.
_OWNED = re.compile(
    r"^(meta\.json|(vectors|items|faiss)-\d+\.(npy|jsonl|index)|latents\.safetensors|items\.jsonl|index\.json)$"
)


def index_options(parser: argparse.ArgumentParser) -> None:
    """``--kind``, ``--exact-threshold``, ``--nprobe`` ... for commands that create an index."""
    parser.add_argument(
        "--kind",
        choices=("auto", "flat", "ivfpq", "hnsw"),
        default="auto",
        help="FAISS index: exact inner product (flat), IVF-PQ with exact re-ranking, HNSW, or auto (flat below "
        "--exact-threshold files, ivfpq from it on; default)",
    )
    parser.add_argument(
        "--exact-threshold", type=positive_int, default=100_000, metavar="N", help="see --kind (default 100000)"
    )
    parser.add_argument("--nprobe", type=positive_int, default=64, help="IVF lists searched per query (default 64)")


def index_config(args: argparse.Namespace):  # noqa: ANN201 - keeps numpy out of the parser
    from muqkit.search import IndexConfig

    return IndexConfig(kind=args.kind, exact_threshold=args.exact_threshold, nprobe=args.nprobe)


def owned_entries(folder: str) -> tuple[str, ...]:
    """The index files in ``folder`` (what ``--overwrite`` may delete)."""
    path = Path(folder)
    return tuple(p.name for p in path.iterdir() if _OWNED.match(p.name)) if path.is_dir() else ("meta.json",)


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``index`` (add, remove, embeddings, info)."""
    index = subparsers.add_parser("index", help="update a search index: add or remove files, index MuQ embeddings")
    sub = index.add_subparsers(dest="index_command", metavar="COMMAND")
    index.set_defaults(func=lambda args: (index.print_help(), 2)[1])

    add = sub.add_parser("add", help="embed audio files with the index's MuQ-MuLan model and add them")
    add.add_argument("paths", nargs="+", metavar="PATH", help="audio files or folders")
    add.add_argument("--index", required=True, metavar="DIR")
    add.add_argument("--device", type=device, default="cpu")
    add.add_argument(
        "--dtype",
        choices=DTYPE_CHOICES,
        default="float32",
        help="compute precision; an index built in int8 takes int8 vectors only, one built in float32 (or "
        "bfloat16) none of int8 (default: float32)",
    )
    add.add_argument("--batch-size", type=positive_int, default=4, help="songs per batch")
    add.set_defaults(func=run_add)

    remove = sub.add_parser("remove", help="remove files from an index")
    remove.add_argument("paths", nargs="+", metavar="PATH", help="files as given or by any path to them")
    remove.add_argument("--index", required=True, metavar="DIR")
    remove.set_defaults(func=run_remove)

    embeddings = sub.add_parser(
        "embeddings",
        help="index (or update an index of) mean-pooled MuQ embeddings from `muqkit embed --pooling mean`",
        description="Make the index in --out mirror a `muqkit embed --pooling mean` folder: its files are added or "
        "replaced (when their content changed), and every other file of the index is removed and listed on stderr, "
        "files added by `muqkit index add` included (embed them into EMBEDDINGS to keep them).",
    )  # fmt: skip
    embeddings.add_argument("folder", metavar="EMBEDDINGS", help="a `muqkit embed --pooling mean` output folder")
    embeddings.add_argument("--layer", type=int, required=True, help="hidden state to index (must be stored)")
    embeddings.add_argument("--out", required=True, metavar="DIR", help="index folder (updated if it holds one)")
    index_options(embeddings)
    embeddings.set_defaults(func=run_embeddings)

    info = sub.add_parser("info", help="what an index holds and which model made it")
    info.add_argument("--index", required=True, metavar="DIR")
    info.set_defaults(func=run_info)


def run_add(args: argparse.Namespace) -> int:
    from muqkit.atomic import check_writable
    from muqkit.search import open_index
    from muqkit.search.build import index_audio
    from muqkit.search.query import Searcher

    searcher = Searcher(open_index(args.index, mmap=False), device=args.device, dtype=args.dtype)
    check_writable(args.index, folder=True, option="--index")
    model = searcher.model()
    index, update = index_audio(  # the model's own fingerprint: vectors of another precision are refused
        model, args.paths, index=searcher.index, model_sha256=searcher.fingerprint, batch_size=args.batch_size,
    )  # fmt: skip
    if update.added or update.replaced:
        index.save(args.index)
    print(f"{args.index}: {update.added} added, {update.replaced} replaced, {update.unchanged} unchanged "
          f"({len(index)} in all, {index.kind})")  # fmt: skip
    return report_failures(update.failures, "muqkit index add")


def run_remove(args: argparse.Namespace) -> int:
    from muqkit.atomic import check_writable
    from muqkit.search import open_index

    index = open_index(args.index, mmap=False)
    check_writable(args.index, folder=True, option="--index")
    removed = index.remove(args.paths)
    index.save(args.index)
    print(f"removed {removed} of {len(args.paths)} files from {args.index} ({len(index)} left)")
    return 0 if removed == len(args.paths) else 1


def run_embeddings(args: argparse.Namespace) -> int:
    from muqkit.atomic import check_writable
    from muqkit.search import open_index
    from muqkit.search.build import index_embeddings

    config = index_config(args)
    check_writable(args.out, folder=True)
    existing = open_index(args.out, mmap=False) if (Path(args.out) / "meta.json").is_file() else None
    index, update = index_embeddings(args.folder, layer=args.layer, index=existing, config=config)
    index.save(args.out)
    for path in update.removed_paths:
        print(f"muqkit index embeddings: removed {path} (not in {args.folder})", file=sys.stderr)
    print(f"{args.out}: {update.added} added, {update.replaced} replaced, {update.removed} removed, "
          f"{len(index)} files ({index.kind})")  # fmt: skip
    return 0


def run_info(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from muqkit.search import open_index

    index = open_index(args.index)
    print(json.dumps(asdict(index.meta), indent=2), file=sys.stdout)
    return 0
