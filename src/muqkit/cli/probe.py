"""``muqkit probe``: probe models on corpus or MARBLE tasks and write a results table and plots."""

from __future__ import annotations

import argparse
import functools
import logging
import shlex
import sys
import time

from muqkit.cli.options import DTYPE_CHOICES, comma_list

logger = logging.getLogger(__name__)

SUITE_MODELS = ("mel", "mfcc", "chroma", "rhythm", "random:tiny", "madmom-key", "madmom-beats", "madmom-chords")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``muqkit probe``."""
    p = subparsers.add_parser(
        "probe",
        help="linear/MLP probes on frozen features (MARBLE protocol)",
        description="Probe models on tasks. Models: mel, mfcc, chroma, rhythm, madmom-key, random:PRESET, "
        "muq:FOLDER_OR_HUB_ID. Tasks: corpus tasks (key, collection, metre, dance, tags, tempo, "
        "instrument, pitch; frame-level: beat, chord, melody, onset, on a format-3 corpus) with --corpus, "
        "MARBLE tasks (gtzan, mtt, gs-key, emo, nsynth-instrument, "
        "nsynth-pitch, vocalset-singer, vocalset-technique, hooktheory-key, hooktheory-structure; frame-level: "
        "chords1217, gtzan-beat) with --marble-root.",
    )
    p.add_argument("--model", action="append", default=None, help="model spec (repeatable)")
    p.add_argument("--task", action="append", default=None, help="task name (repeatable)")
    p.add_argument(
        "--suite",
        choices=("corpus", "marble"),
        default=None,
        help="every task of the corpus (or of the MARBLE root); default models: " + ", ".join(SUITE_MODELS),
    )
    p.add_argument("--corpus", default=None, help="corpus folder built by `muqkit data build-corpus`")
    p.add_argument("--marble-root", default=None, help="local MARBLE root (data/<NAME>/<NAME>.<split>.jsonl)")
    p.add_argument("--out", default="runs/probe", help="folder for results.md, results.json and plots")
    p.add_argument("--cache-dir", default=None, help="feature cache (default CORPUS/cache/features)")
    p.add_argument("--heads", default="linear,mlp", help="comma-separated: linear, mlp")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated probe seeds")
    p.add_argument("--layers", default="sweep,weighted", help="comma-separated: sweep, weighted, last")
    p.add_argument("--max-epochs", type=int, default=200)
    p.add_argument("--patience", type=int, default=20)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--frame-max-epochs", type=int, default=20, help="epochs of frame probes (over every frame)")
    p.add_argument("--frame-patience", type=int, default=3, help="frame probes: epochs without a lower val loss")
    p.add_argument("--dbn", action="store_true", help="decode beats with madmom's DBN instead of peak picking")
    p.add_argument(
        "--dtype",
        choices=DTYPE_CHOICES,
        default="float32",
        help="precision of the MuQ models (random:, muq:), run as `muqkit embed --dtype` runs them; features of "
        "each precision are cached apart (handcrafted features are always float32)",
    )
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--overwrite", action="store_true", help="replace results already in --out")
    p.set_defaults(func=_probe)

    c = subparsers.add_parser(
        "curve",
        help="learning curve: probe a pretraining run's snapshots along training",
        description="Probe every snapshot of a pretraining run (pretrain with --set snapshot_every=N) on the "
        "same corpus tasks and probe seeds; write OUT/curve.json and OUT/curve.png with the random-weight "
        "start (step 0) and the mel baseline as horizontal lines.",
    )
    c.add_argument("run", help="pretraining run folder (holds snapshots/step-*)")
    c.add_argument("--corpus", required=True, help="corpus folder built by `muqkit data build-corpus`")
    c.add_argument("--out", required=True, help="folder for curve.json and curve.png")
    c.add_argument("--tasks", default="key,collection,instrument,pitch", help="comma-separated corpus tasks")
    c.add_argument("--heads", default="linear", help="probe head (linear or mlp)")
    c.add_argument("--seeds", default="0", help="comma-separated probe seeds (the same at every step)")
    c.add_argument("--layers", default="sweep", help="sweep (best layer on validation), weighted or last")
    c.add_argument("--every", type=int, default=1, help="probe every N-th snapshot (first and last always)")
    c.add_argument("--baselines", default="mel", help="comma-separated handcrafted baselines")
    c.add_argument("--max-epochs", type=int, default=200)
    c.add_argument("--patience", type=int, default=20)
    c.set_defaults(func=_curve)


def _curve(args: argparse.Namespace) -> int:
    from muqkit.eval.curves import learning_curve
    from muqkit.eval.probes import ProbeConfig
    from muqkit.eval.suite import SuiteConfig

    config = SuiteConfig(
        heads=comma_list(args.heads), seeds=tuple(int(s) for s in comma_list(args.seeds)),
        layer_modes=comma_list(args.layers),
        probe=ProbeConfig(max_epochs=args.max_epochs, patience=args.patience),
    )  # fmt: skip
    curve = learning_curve(
        args.run, args.corpus, args.out, tasks=comma_list(args.tasks), config=config,
        baselines=comma_list(args.baselines), every=args.every,
    )  # fmt: skip
    print(curve.summary())
    print(f"wrote {args.out}/curve.json and {args.out}/curve.png")
    return 0




def _probe(args: argparse.Namespace) -> int:
    from muqkit.eval.features import make_extractor
    from muqkit.eval.frames import (
        FRAME_TASKS,
        REFERENCES,
        FrameProbeConfig,
        load_frame_task,
        make_frame_extractor,
        run_frame_suite,
    )
    from muqkit.eval.marble import MARBLE_ADAPTERS, load_marble_task
    from muqkit.eval.marble_frames import MARBLE_FRAME_ADAPTERS, load_marble_frame_task
    from muqkit.eval.probes import ProbeConfig
    from muqkit.eval.report import markdown_table, write_report
    from muqkit.eval.suite import SuiteConfig, default_cache_dir, run_suite
    from muqkit.eval.tasks import CORPUS_TASKS, load_corpus_task
    from muqkit.runfolder import prepare_run_folder

    t0 = time.perf_counter()
    from muqkit.embed.precision import resolve_precision

    dtype = resolve_precision(args.dtype)  # auto resolved once; an emulated bfloat16 warned about once
    prepare_run_folder(args.out, overwrite=args.overwrite, owned=("results.json", "results.md"), resumable=False)
    models = args.model or (list(SUITE_MODELS) if args.suite else None)
    if not models:
        logger.error("give --model (repeatable) or --suite")
        return 2
    names = args.task or []
    if args.suite == "corpus":
        names = names or [*CORPUS_TASKS, *FRAME_TASKS]
    elif args.suite == "marble":
        names = names or [*MARBLE_ADAPTERS, *MARBLE_FRAME_ADAPTERS]
    if not names:
        logger.error("give --task (repeatable) or --suite")
        return 2
    tasks, frame_tasks = [], []
    for name in names:
        on_corpus = name in CORPUS_TASKS or name in FRAME_TASKS
        if not on_corpus and name not in MARBLE_ADAPTERS and name not in MARBLE_FRAME_ADAPTERS:
            logger.error(
                "unknown task %s; corpus: %s; frame-level: %s; MARBLE: %s",
                name, sorted(CORPUS_TASKS), sorted(FRAME_TASKS), sorted({*MARBLE_ADAPTERS, *MARBLE_FRAME_ADAPTERS}),
            )  # fmt: skip
            return 2
        root = args.corpus if on_corpus else args.marble_root
        if root is None:
            logger.error("task %s needs %s", name, "--corpus" if on_corpus else "--marble-root")
            return 2
        try:
            if name in FRAME_TASKS or name in MARBLE_FRAME_ADAPTERS:
                load = load_frame_task if name in FRAME_TASKS else load_marble_frame_task
                frame_tasks.append(load(name, root))
                logger.info("%s", frame_tasks[-1].summary())
                continue
            task = load_corpus_task(name, root) if name in CORPUS_TASKS else load_marble_task(name, root)
        except ValueError as exc:
            if args.task:  # asked for by name: an error
                logger.error("%s", exc)
                return 1
            logger.warning("skipping %s", exc)  # a suite on a corpus too small for this task
            continue
        tasks.append(task)
        logger.info("%s", task.summary())
    config = SuiteConfig(
        heads=tuple(h for h in args.heads.split(",") if h),
        seeds=tuple(int(s) for s in args.seeds.split(",") if s),
        layer_modes=tuple(m for m in args.layers.split(",") if m),
        probe=ProbeConfig(max_epochs=args.max_epochs, patience=args.patience, lr=args.lr),
    )
    cache_dir = args.cache_dir or default_cache_dir(args.corpus or args.marble_root)
    clip_models = [m for m in models if m not in REFERENCES]
    clip_factory = functools.partial(make_extractor, dtype=dtype)
    rows = run_suite(clip_models, tasks, config=config, cache_dir=cache_dir, extractor_factory=clip_factory)
    if frame_tasks:
        frame_config = FrameProbeConfig(max_epochs=args.frame_max_epochs, patience=args.frame_patience, dbn=args.dbn)
        rows += run_frame_suite(
            models, frame_tasks, heads=config.heads, seeds=config.seeds, layer_modes=config.layer_modes,
            config=frame_config, cache_dir=cache_dir,
            extractor_factory=functools.partial(make_frame_extractor, dtype=dtype),
        )  # fmt: skip
    meta = {
        "command": "muqkit " + shlex.join(sys.argv[1:]) if sys.argv and sys.argv[0].endswith("muqkit") else "",
        "models": models,
        "tasks": [t.summary() for t in tasks] + [t.summary() for t in frame_tasks],
        "config": {
            "heads": config.heads,
            "seeds": config.seeds,
            "layers": config.layer_modes,
            "max_epochs": args.max_epochs,
            "patience": args.patience,
            "lr": args.lr,
            "frame_max_epochs": args.frame_max_epochs,
            "frame_patience": args.frame_patience,
            "dbn": args.dbn,
            "dtype": dtype,
        },
        "seconds": round(time.perf_counter() - t0, 1),
    }
    written = write_report(rows, args.out, meta=meta, plots=not args.no_plots)
    print(markdown_table(rows, head=config.heads[-1]))
    print(f"\nwrote {', '.join(str(p) for p in written.values())} in {meta['seconds']} s")
    return 0
