"""``muqkit finetune`` and ``muqkit predict``: fine-tune MuQ on a task, run the result on files."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from muqkit.cli.errors import positive_float, positive_int
from muqkit.cli.options import comma_list, field_option

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``muqkit finetune`` and ``muqkit predict``."""
    p = subparsers.add_parser(
        "finetune",
        help="fine-tune MuQ on a corpus or MARBLE task (freeze, LoRA or full)",
        description="Train a MuQ backbone and a task head on a clip-level or frame-level task; write the merged "
        "backbone (OUT/model, a plain MuQ checkpoint), the LoRA adapter alone (OUT/adapter), the head and "
        "OUT/finetune.json with the test metrics.",
    )
    p.add_argument("--model", required=True, help="MuQ checkpoint folder or Hub id (or random:PRESET)")
    p.add_argument("--task", required=True, help="corpus task (key, ..., beat, chord, melody, onset) or MARBLE task")
    p.add_argument("--corpus", default=None, help="corpus folder (corpus and frame tasks)")
    p.add_argument("--marble-root", default=None, help="local MARBLE root (MARBLE tasks)")
    F, L = "muqkit.finetune.train:FineTuneConfig.", "muqkit.finetune.lora:LoRAConfig."
    field_option(p, "--mode", F + "mode", "lora", choices=("freeze", "lora", "full"))
    p.add_argument("--out", required=True, help="output folder")
    field_option(p, "--head", F + "head", "linear", choices=("linear", "mlp"))
    field_option(p, "--lr", F + "lr", 1e-4, type=positive_float, help="backbone learning rate (top layer)")
    field_option(p, "--head-lr", F + "head_lr", 1e-3, type=positive_float, help="head and layer-weight learning rate")
    field_option(p, "--layer-decay", F + "layer_decay", 0.9, type=_decay, help="layer-wise learning-rate decay")
    field_option(p, "--batch-size", F + "batch_size", 8, type=positive_int)
    field_option(p, "--max-epochs", F + "max_epochs", 10, type=positive_int)
    field_option(p, "--patience", F + "patience", 3, type=positive_int, help="early stopping on the val loss")
    p.add_argument("--bf16", action="store_true", help="bf16 mixed precision")
    field_option(p, "--max-seconds", F + "max_seconds", 10.0, type=positive_float, help="clips are cut to this length")
    field_option(p, "--lora-rank", L + "rank", 8, type=positive_int)
    field_option(p, "--lora-alpha", L + "alpha", 16, type=positive_int)
    field_option(
        p, "--lora-targets", L + "targets", ("attention",), type=comma_list,
        help="comma-separated groups (attention, ffn, conv) or module names",
    )  # fmt: skip
    field_option(p, "--seed", F + "seed", 0, type=int)
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/last.ckpt")
    p.add_argument("--overwrite", action="store_true", help="replace the run (finished or interrupted) in --out")
    p.set_defaults(func=_finetune)

    q = subparsers.add_parser(
        "predict",
        help="run a fine-tuned model on audio files",
        description="Print one JSON line per file (clip label, or beat times / chord segments / melody); "
        "--lab-dir also writes chord segments as .lab files.",
    )
    q.add_argument("model", help="folder written by `muqkit finetune`")
    q.add_argument("files", nargs="+", help="audio files")
    q.add_argument("--out", default=None, help="JSONL file (default: standard output)")
    q.add_argument("--lab-dir", default=None, help="write <stem>.lab chord files here (chord models)")
    q.set_defaults(func=_predict)


def _decay(text: str) -> float:
    value = positive_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text!r}")
    return value


def _finetune(args: argparse.Namespace) -> int:
    from muqkit.atomic import check_writable
    from muqkit.finetune.lora import LoRAConfig
    from muqkit.finetune.train import FineTuneConfig, check_resume, finetune, run_settings

    out = Path(args.out)
    check_writable(out, folder=True)
    config = FineTuneConfig(
        mode=args.mode, head=args.head, lr=args.lr, head_lr=args.head_lr, layer_decay=args.layer_decay,
        batch_size=args.batch_size, max_epochs=args.max_epochs, patience=args.patience,
        precision="bf16" if args.bf16 else "32", seed=args.seed, max_seconds=args.max_seconds,
        lora=LoRAConfig(rank=args.rank, alpha=args.alpha,
                        targets=args.targets),
    )  # fmt: skip
    if args.resume:  # before loading anything: a run made with other settings cannot be continued
        check_resume(out, run_settings(args.task, config))
    task = _load_task(args)
    model = _load_model(args.model)
    result = finetune(model, task, out, config, resume=args.resume, overwrite=args.overwrite)
    print(json.dumps({"task": args.task, "mode": args.mode, "trainable": result.trainable,
                      "seconds": round(result.seconds, 1), "val": result.val, "test": result.test}))  # fmt: skip
    return 0


def _load_task(args: argparse.Namespace):  # noqa: ANN202 - TaskData or FrameTaskData
    from muqkit.eval.frame_tasks import FRAME_TASKS, load_frame_task
    from muqkit.eval.marble import MARBLE_ADAPTERS, load_marble_task
    from muqkit.eval.marble_frames import MARBLE_FRAME_ADAPTERS, load_marble_frame_task
    from muqkit.eval.tasks import CORPUS_TASKS, load_corpus_task

    if args.task in CORPUS_TASKS or args.task in FRAME_TASKS:
        if args.corpus is None:
            raise ValueError(f"task {args.task} needs --corpus")
        return (
            load_frame_task(args.task, args.corpus)
            if args.task in FRAME_TASKS
            else load_corpus_task(args.task, args.corpus)
        )
    if args.task in MARBLE_ADAPTERS or args.task in MARBLE_FRAME_ADAPTERS:
        if args.marble_root is None:
            raise ValueError(f"task {args.task} needs --marble-root")
        if args.task in MARBLE_FRAME_ADAPTERS:
            return load_marble_frame_task(args.task, args.marble_root)
        return load_marble_task(args.task, args.marble_root)
    known = sorted({*CORPUS_TASKS, *FRAME_TASKS, *MARBLE_ADAPTERS, *MARBLE_FRAME_ADAPTERS})
    raise ValueError(f"unknown task {args.task!r}; known: {', '.join(known)}")


def _load_model(spec: str):  # noqa: ANN202 - a MuQ
    from muqkit import MuQ

    if spec.startswith("random:"):
        return MuQ.from_preset(spec.split(":", 1)[1], seed=0)
    return MuQ.from_pretrained(spec.removeprefix("muq:"))


def _predict(args: argparse.Namespace) -> int:
    from muqkit.atomic import atomic_path, check_writable
    from muqkit.finetune.model import load_head
    from muqkit.finetune.predict import chords_to_lab, load_finetuned, predict_files

    if args.out:
        check_writable(args.out)
    if args.lab_dir:  # before any prediction is printed: the head says what the model predicts
        check_writable(args.lab_dir, folder=True, option="--lab-dir")
        task = load_head(args.model).spec.task
        if task != "chord":
            raise ValueError(f"--lab-dir: {args.model} is a {task} model; .lab files need a chord model")
    model = load_finetuned(args.model)
    results = predict_files(model, args.files)
    lines = "".join(json.dumps(r) + "\n" for r in results)
    if args.out:
        with atomic_path(args.out, suffix=".jsonl") as tmp:
            tmp.write_text(lines)
    else:
        print(lines, end="")
    for r in results if args.lab_dir else ():
        with atomic_path(Path(args.lab_dir) / f"{Path(r['file']).stem}.lab", suffix=".lab") as tmp:
            tmp.write_text(chords_to_lab(r["chords"]))
    return 0
