"""Atomic file output: every writer in muqkit goes through :func:`atomic_path` (or :func:`temp_name` for
folders), so an interrupted run never leaves a half-written file under its final name.

Temporary names are recognisable: ``.<final name>.muqkit-tmp-<pid>-<random><suffix>``, beside the final
file. A run killed in the middle of a write (``kill -9``, power loss) leaves such a file behind; the
next run that writes into the same folder removes the ones whose process is gone
(:func:`clean_temporaries`) and leaves those of a live process (a concurrent run) alone.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TEMP_MARKER = ".muqkit-tmp-"
_TEMP_PATTERN = re.compile(r"^\..+" + re.escape(TEMP_MARKER) + r"(\d+)-")

log = logging.getLogger(__name__)


def temp_prefix(name: str) -> str:
    """The prefix of a temporary file or folder that will become ``name`` (owned by this process)."""
    return f".{name}{TEMP_MARKER}{os.getpid()}-"


@contextmanager
def atomic_path(path: str | os.PathLike[str], *, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it replaces ``path`` when the block succeeds and is
    removed when the block fails.

    Args:
        path: the final file.
        suffix: the temporary file's suffix, for writers that infer the format from it (``.npy``, ``.wav``).
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder; give the file to write", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temp_prefix(path.name), suffix=suffix)
    except OSError as exc:  # name the file asked for, not the hidden temporary
        raise OSError(exc.errno, f"cannot write here ({exc.strerror})", str(path)) from exc
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; outputs are shared like normal files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_writable(path: str | os.PathLike[str], *, folder: bool = False, option: str = "--out") -> None:
    """Check, before any work runs, that a file (or, with ``folder``, a folder) can be written at ``path``:
    a file is written into the nearest folder that exists on the way to it, so a file is created and
    removed there (this catches read-only folders, read-only file systems and ``/proc`` alike).

    Args:
        path: the output.
        folder: ``path`` is a folder to write into (otherwise a file).
        option: how the user named it, for messages.

    Raises:
        ValueError: ``path`` is a folder where a file is wanted, a file where a folder is wanted, or a
            file cannot be created there; the message names ``option``, the path and the problem.
    """
    target = Path(path)
    if folder and target.exists() and not target.is_dir():
        raise ValueError(f"{option} {target}: exists and is not a folder")
    if not folder and target.is_dir():
        raise ValueError(f"{option} {target}: is a folder; give the file to write")
    probe = target if folder else target.parent
    while not probe.exists() and probe != probe.parent:  # the folder the first new entry would go into
        probe = probe.parent
    if not probe.is_dir():
        raise ValueError(f"{option} {target}: {probe} is not a folder")
    try:
        fd, tmp = tempfile.mkstemp(dir=probe, prefix=temp_prefix("write-check"))
    except OSError as exc:
        raise ValueError(
            f"{option} {target}: {probe} is not writable (creating a file there fails: {exc.strerror or exc})"
        ) from None
    os.close(fd)
    os.unlink(tmp)


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


def is_stale_temporary(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a muqkit temporary whose writing process no longer runs."""
    match = _TEMP_PATTERN.match(Path(path).name)
    return match is not None and not _process_alive(int(match.group(1)))


def clean_temporaries(folder: str | os.PathLike[str], *, recursive: bool = True) -> list[Path]:
    """Remove the temporaries that killed muqkit runs left in ``folder`` (and below it).

    Only names made by :func:`atomic_path` / :func:`temp_prefix` whose process is gone are removed; no
    other file is touched.

    Returns:
        The removed paths.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed: list[Path] = []
    candidates = folder.rglob(f"*{TEMP_MARKER}*") if recursive else folder.glob(f"*{TEMP_MARKER}*")
    for path in sorted(candidates, key=lambda p: len(p.parts)):
        if not is_stale_temporary(path) or not (path.is_symlink() or path.exists()):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    if removed:
        log.info("removed %d temporary file(s) left by an interrupted run in %s", len(removed), folder)
    return removed
