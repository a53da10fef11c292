"""``muqkit data``: build the offline benchmark corpus."""

from __future__ import annotations

import argparse
import logging

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``muqkit data build-corpus``."""
    data = subparsers.add_parser("data", help="build and inspect data sets")
    sub = data.add_subparsers(dest="data_command", metavar="COMMAND")
    build = sub.add_parser(
        "build-corpus",
        help="render music21 scores and single notes with FluidSynth, add Debian game music",
        description="Build the offline benchmark corpus (deterministic from --seed, resumable, cached).",
    )
    build.add_argument("--out", required=True, help="output folder (empty, or holding the same build)")
    build.add_argument("--size", choices=("ci", "demo", "small", "medium", "full"), default="ci")
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--no-game-music", action="store_true", help="skip the Debian game-music pool")
    build.add_argument("--deb-cache", default=None, help="where .deb files are downloaded (default OUT/cache/debs)")
    build.add_argument("--soundfont", action="append", default=None, help="GM soundfont to use (repeatable)")
    build.add_argument("--jobs", type=int, default=1, help="parallel fluidsynth processes")
    build.add_argument(
        "--upgrade",
        action="store_true",
        help="add the frame labels of format 3 to a complete format-2 build in --out (same settings; no rendering)",
    )
    build.set_defaults(func=_build_corpus)
    data.set_defaults(func=lambda args: (data.print_help(), 2)[1])


def _build_corpus(args: argparse.Namespace) -> int:
    from muqkit.atomic import check_writable
    from muqkit.data.corpus import CorpusMismatchError, build_corpus
    from muqkit.data.corpus.fluidsynth import SystemRequirementError

    check_writable(args.out, folder=True)
    try:
        summary = build_corpus(
            args.out,
            size=args.size,
            seed=args.seed,
            game_music=not args.no_game_music,
            deb_cache=args.deb_cache,
            soundfonts=args.soundfont,
            jobs=args.jobs,
            upgrade=args.upgrade,
        )
    except (CorpusMismatchError, SystemRequirementError) as exc:
        logger.error("%s", exc)
        return 1
    total = sum(summary.hours.values())
    for name, count in summary.counts.items():
        print(f"{name:8s} {count:6d} items {summary.hours[name]:7.2f} h")
    print(
        f"total    {sum(summary.counts.values()):6d} items {total:7.2f} h in {summary.root} "
        f"({summary.seconds_taken:.0f} s)"
    )
    return 0
