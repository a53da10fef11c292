"""How the CLI reports problems: user errors are one line and exit status 2, never a traceback.

Exit statuses (also in the README):

* 0: success;
* 1: the command ran but some inputs failed (``embed``, ``similarity``, ``mulan index`` report them);
* 2: a user error: a bad option, a missing or corrupt input, model or manifest, a run folder that would
  be overwritten; one line on stderr names the file or option and the problem;
* 130: interrupted (Ctrl-C).

``--debug`` (or ``MUQKIT_DEBUG=1``) re-raises instead, with the full traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

EXIT_OK = 0
EXIT_FAILED_INPUTS = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
# What a command that reads audio files accepts (see :mod:`muqkit.data.files`).
AUDIO_INPUTS_HELP = "audio files, folders, or lists of paths / manifests (.txt, .jsonl)"


def debug_enabled(args: argparse.Namespace | None = None) -> bool:
    """Whether tracebacks are wanted (``--debug`` or ``MUQKIT_DEBUG=1``)."""
    if args is not None and getattr(args, "debug", False):
        return True
    return os.environ.get("MUQKIT_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


def user_error_types() -> tuple[type[BaseException], ...]:
    """The exceptions that mean "the input or the options are wrong" rather than "muqkit has a bug"."""
    from muqkit.hub.weights import CheckpointError

    types: list[type[BaseException]] = [ValueError, CheckpointError, OSError, json.JSONDecodeError, FloatingPointError]
    try:  # a missing optional extra (transformers, lightning, ...) is a user error too
        types.append(ModuleNotFoundError)
    except NameError:  # pragma: no cover
        pass
    return tuple(types)


def describe(exc: BaseException) -> str:
    """One line for an exception: its message, with the file for OS errors."""
    if isinstance(exc, ModuleNotFoundError):
        return f"{exc}; install the extra that provides it (see the README)"
    if isinstance(exc, OSError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror}"
    text = str(exc).strip() or type(exc).__name__
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return "; ".join(lines)


@contextmanager
def _watch_interrupts() -> Iterator[Callable[[], bool]]:
    """Note Ctrl-C (SIGINT) while a command runs; yields "was it pressed?".

    Ctrl-C still raises ``KeyboardInterrupt``; the note lets :func:`run_command` recognise an interrupt that
    a library turned into ``sys.exit(1)`` (Lightning's ``Trainer.fit`` does, after its graceful shutdown).
    The previous handler is restored afterwards (Lightning also leaves SIGINT ignored).
    """
    pressed: list[bool] = []
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or previous is not signal.default_int_handler:
        yield lambda: bool(pressed)  # signals go to the main thread; a custom handler is left alone
        return

    def note(signum: int, frame: Any) -> None:
        pressed.append(True)
        signal.default_int_handler(signum, frame)

    signal.signal(signal.SIGINT, note)
    try:
        yield lambda: bool(pressed)
    finally:
        signal.signal(signal.SIGINT, previous)


def run_command(func: Callable[[argparse.Namespace], Any], args: argparse.Namespace, prog: str) -> int:
    """Run a command function, turning user errors into one line on stderr and exit status 2, and an
    interrupt (Ctrl-C) into exit status 130."""
    with _watch_interrupts() as interrupted:
        if debug_enabled(args):
            return int(func(args) or 0)
        try:
            return int(func(args) or 0)
        except KeyboardInterrupt:
            print(f"{prog}: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        except SystemExit as exc:
            if interrupted() and exc.code not in (0, None):  # a library's exit after Ctrl-C (Lightning: 1)
                print(f"{prog}: interrupted", file=sys.stderr)
                return EXIT_INTERRUPTED
            raise
        except user_error_types() as exc:
            print(f"{prog}: error: {describe(exc)}", file=sys.stderr)
            return EXIT_USAGE


# -- argparse types shared by the commands -------------------------------------------------------------
def positive_int(text: str) -> int:
    """An integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


def device(text: str) -> str:
    """A torch device that exists on this machine (``cpu``, ``cuda``, ``cuda:1``, ``mps``)."""
    import torch

    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"not a torch device: {text!r} (e.g. cpu, cuda, cuda:1)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"{text!r}: CUDA is not available on this machine (use --device cpu)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(f"{text!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise argparse.ArgumentTypeError(f"{text!r}: MPS is not available on this machine (use --device cpu)")
    return text


def report_failures(failures: tuple[tuple[str, str], ...] | list[tuple[str, str]], prog: str) -> int:
    """Print the files left out; the exit status (1 if any, like ``muqkit embed``)."""
    for _, problem in failures:
        print(f"{prog}: skipped {problem}", file=sys.stderr)
    if failures:
        print(f"{prog}: {len(failures)} file(s) skipped", file=sys.stderr)
    return 1 if failures else 0
