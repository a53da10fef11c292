"""``muqkit demo --out DIR``: the whole pipeline offline on CPU (see :mod:`muqkit.recipes.demo`)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``demo``."""
    p = subparsers.add_parser(
        "demo",
        help="the whole pipeline offline on CPU: corpus, Mel-RVQ, pretraining, refinement, probes",
        description="Builds the offline corpus, trains a Mel-RVQ, pretrains a tiny MuQ, runs one refinement "
        "iteration, probes everything against the baselines, prints the table, writes the plots and "
        "installs the final model as muqkit's offline default. About 18 minutes on 2 idle cores.",
    )
    p.add_argument("--out", required=True, help="demo folder")
    p.add_argument("--resume", action="store_true", help="continue the demo in --out (finished steps are skipped)")
    p.add_argument("--overwrite", action="store_true", help="replace the demo in --out")
    p.add_argument("--budget-minutes", type=float, default=15.0, help="scales the training steps (default 15)")
    p.add_argument("--quick", action="store_true", help="toy sizes (about two minutes; for tests)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=2, help="parallel renderers for the corpus")
    p.add_argument("--no-plots", action="store_true")
    p.set_defaults(func=_run)
    register_claims(subparsers)


def _run(args: argparse.Namespace) -> int:
    from muqkit.recipes.demo import run_demo

    run_demo(args.out, budget_minutes=args.budget_minutes, quick=args.quick, seed=args.seed, jobs=args.jobs,
             plots=not args.no_plots, resume=args.resume, overwrite=args.overwrite)  # fmt: skip
    return 0


def register_claims(subparsers: argparse._SubParsersAction) -> None:
    """Add ``claims``."""
    p = subparsers.add_parser(
        "claims",
        help="the paper's claims at small scale: every pretraining arm, several seeds, probed and compared",
        description="Pretrains MuQ on Mel-RVQ codes, on random-projection (BEST-RQ) codes and one refinement "
        "iteration, with the same preset and budget, once per seed; probes them next to a random-weight MuQ "
        "and the handcrafted baselines; writes OUT/claims.md and OUT/claims.json with the verdicts. "
        "Resumable: finished steps are skipped.",
    )
    p.add_argument("--corpus", required=True, help="a built corpus (muqkit data build-corpus --size small)")
    p.add_argument("--out", required=True, help="experiment folder")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--preset", help="MuQ preset of every arm (default: tiny)")
    p.add_argument("--pretrain-steps", type=int, help="steps of each pretraining run (default: 800)")
    p.add_argument("--rvq-steps", type=int, help="steps of each Mel-RVQ and latent RVQ (default: 400)")
    p.add_argument("--tasks", nargs="+", help="probing tasks (default: key collection dance tags instrument pitch)")
    p.set_defaults(func=_run_claims)


def _run_claims(args: argparse.Namespace) -> int:
    import dataclasses
    import shlex
    import sys

    from muqkit.recipes.claims import CLAIMS_PLAN, run_claims

    changes = {"preset": args.preset, "pretrain_steps": args.pretrain_steps, "rvq_steps": args.rvq_steps,
               "refine_rvq_steps": args.rvq_steps, "tasks": tuple(args.tasks) if args.tasks else None}  # fmt: skip
    plan = dataclasses.replace(CLAIMS_PLAN, **{k: v for k, v in changes.items() if v is not None})
    command = "muqkit " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    claims = run_claims(args.corpus, args.out, seeds=args.seeds, plan=plan, command=command)
    return 0 if claims else 1
