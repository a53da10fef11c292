"""The ``muqkit`` command: a thin shell over library calls.

User errors (bad options, missing or corrupt files) print one line and exit with status 2; see
:mod:`muqkit.cli.errors` for the exit statuses and ``--debug`` for tracebacks.

Each command group lives in its own module under ``muqkit.cli`` and exposes
``register(subparsers)``, which adds its sub-commands and sets ``func`` on their parsers. Modules are
imported only to build the parser; heavy libraries are imported inside the command functions.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# (module, human description) of every command group, in the order ``--help`` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "muqkit.cli.embed",
    "muqkit.cli.tokenizer",
    "muqkit.cli.data",
    "muqkit.cli.probe",
    "muqkit.cli.finetune",
    "muqkit.cli.train",
    "muqkit.cli.mulan",
    "muqkit.cli.index",
    "muqkit.cli.export",
    "muqkit.cli.benchmark",
    "muqkit.cli.demo",
    "muqkit.cli.serve",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="muqkit", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument(
        "--debug", action="store_true", help="show the full traceback of an error (also MUQKIT_DEBUG=1)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # the command group is not part of this build
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:  # faiss logs each CPU-specific build it fails to import (AVX512, AVX2) at INFO
        logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    from muqkit.cli.errors import run_command

    return run_command(args.func, args, f"muqkit {args.command}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
