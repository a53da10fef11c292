"""``muqkit benchmark mteb|hear``: score a muqkit model (a run's ``model/`` folder, any checkpoint folder or Hub id)
on MTEB's audio tasks (MAEB) or on HEAR tasks. Both need network access for the real benchmarks' data."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

POOLINGS = ("mean", "max", "mean_std")


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``benchmark`` (mteb, hear)."""
    bench = subparsers.add_parser("benchmark", help="score a model on MTEB's audio benchmark (MAEB) or on HEAR")
    sub = bench.add_subparsers(dest="benchmark_command", metavar="BENCHMARK")
    bench.set_defaults(func=lambda args: (bench.print_help(), 2)[1])

    m = sub.add_parser(
        "mteb", help="MTEB / MAEB tasks (the mteb extra)",
        description="Run MTEB's evaluation with muqkit's encoder (masked batches, whole clips).",
    )  # fmt: skip
    m.add_argument("model", help="a run folder (its model/), a checkpoint folder or a Hub id (MuQ or MuQ-MuLan)")
    which = m.add_mutually_exclusive_group(required=True)
    which.add_argument("--benchmark", help="an MTEB benchmark, e.g. 'MAEB(v1, audio-only)' or 'MAEB(v1)'")
    which.add_argument("--tasks", help="comma-separated MTEB task names, e.g. GTZANGenre,BeijingOpera")
    m.add_argument("--out", required=True, help="results folder (MTEB's result cache layout)")
    m.add_argument("--layers", default="all", type=_layers, help="MuQ hidden states (default: all, averaged)")
    m.add_argument("--reduce", choices=("mean", "concat"), default="mean", help="how MuQ's layers combine")
    m.add_argument("--pooling", choices=POOLINGS, default="mean", help="MuQ's pooling over a clip's frames")
    m.add_argument("--batch-size", type=int, default=8, help="rows per encode batch")
    m.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    m.set_defaults(func=run_mteb)

    h = sub.add_parser("hear", help="HEAR 2021 tasks (the hear extra and heareval)",
                       description="hear-eval-kit's embedding runner on muqkit.hear, then a linear probe scored "
                       "by hear-eval-kit's metrics (see docs/usage.md#hear).")  # fmt: skip
    h.add_argument("model", help="a run folder (its model/) or a MuQ checkpoint folder")
    h.add_argument("--tasks-dir", required=True, help="folder of HEAR tasks (hear-preprocess output, 48000 Hz)")
    h.add_argument("--task", default="all", help="one task's folder name (default: all)")
    h.add_argument("--out", required=True, help="embeddings and scores folder")
    h.add_argument("--layers", default="all", type=_layers, help="MuQ hidden states (default: all, averaged)")
    h.set_defaults(func=run_hear)


def _layers(text: str) -> str | list[int]:
    if text.strip() == "all":
        return "all"
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'all' or comma-separated integers, got {text!r}") from None


def model_folder(given: str) -> str:
    """A run folder's ``model/`` when ``given`` holds one, else ``given`` (a checkpoint folder or Hub id)."""
    path = Path(given)
    if path.is_dir() and not (path / "config.json").is_file() and (path / "model" / "config.json").is_file():
        return str(path / "model")
    return given


def run_mteb(args: argparse.Namespace) -> int:
    import mteb

    from muqkit.integrations.mteb_encoder import MuQEncoder, checkpoint_kind, load_mteb_model

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")
    options = {"layers": args.layers, "reduce": args.reduce, "pooling": args.pooling}
    name = model_folder(args.model)
    kind = checkpoint_kind(name)
    model = load_mteb_model(name, device=args.device, **(options if kind == "muq" else {}))
    try:
        tasks = (mteb.get_benchmark(args.benchmark).tasks if args.benchmark
                 else mteb.get_tasks(tasks=[t.strip() for t in args.tasks.split(",") if t.strip()]))  # fmt: skip
    except KeyError as exc:
        raise ValueError(f"--benchmark/--tasks: {exc}") from exc
    if isinstance(model, MuQEncoder):
        tasks = [t for t in tasks if "text" not in t.metadata.modalities]  # MuQ has no text tower
    cache = mteb.ResultCache(cache_path=args.out)
    result = mteb.evaluate(model, tasks, cache=cache, encode_kwargs={"batch_size": args.batch_size})  # type: ignore[arg-type]
    for task_result in result.task_results:
        print(f"{task_result.task_name}: {task_result.get_score():.4f}")
    return 0


def run_hear(args: argparse.Namespace) -> int:
    from muqkit.integrations.hear_eval import run_embeddings, score_task

    options = {} if args.layers == "all" else {"layers": list(args.layers)}
    folder = run_embeddings(args.tasks_dir, args.out, model=model_folder(args.model), model_options=options,
                            task=args.task)  # fmt: skip
    summary = {}
    for task in sorted(p for p in folder.iterdir() if (p / "task_metadata.json").is_file()):
        result = score_task(task)
        summary[result.task] = result.primary
        print(f"{result.task}: {result.primary:.4f}")
    (folder / "scores.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 0
