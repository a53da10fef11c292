"""Run folders: the one rule every command that writes a folder of results follows.

* A missing or empty folder is created and used.
* A folder that already holds a run is continued with ``resume=True`` (``--resume``), replaced with
  ``overwrite=True`` (``--overwrite``: only the entries the command writes are deleted first, never
  anything else in the folder), and otherwise refused with a :class:`RunFolderError` that says so.
* A path that exists and is not a folder is refused.

Temporaries that a killed run left behind (see :mod:`muqkit.atomic`) are removed in every case. In a
distributed run only rank 0 checks the folder; the other ranks just create it.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from muqkit.atomic import TEMP_MARKER, check_writable, clean_temporaries

log = logging.getLogger(__name__)


class RunFolderError(ValueError):
    """A run folder cannot be used as asked (it holds a run, or it is a file)."""


def existing_entries(folder: Path, names: Iterable[str] | None = None) -> list[str]:
    """Entries of ``folder`` (only ``names`` when given), temporaries and hidden files left out."""
    if not folder.is_dir():
        return []
    found = sorted(p.name for p in folder.iterdir() if not p.name.startswith(".") and TEMP_MARKER not in p.name)
    if names is not None:
        wanted = set(names)
        found = [n for n in found if n in wanted]
    return found


def prepare_run_folder(
    folder: str | os.PathLike[str],
    *,
    resume: bool = False,
    overwrite: bool = False,
    owned: Iterable[str] | None = None,
    option: str = "--out",
    resumable: bool = True,
) -> Path:
    """Check and create a run folder.

    Args:
        folder: the run folder.
        resume: continue the run in it (its contents are kept).
        overwrite: replace the run in it: the ``owned`` entries are deleted first.
        owned: names of the entries the command writes (a run is "in" the folder when one of them is there;
            ``None``: any non-hidden entry counts, and none is deleted by ``overwrite``).
        option: how the user named the folder, for messages.
        resumable: whether the command can continue a run (``--resume``); the refusal suggests it only then.

    Returns:
        The folder, created.

    Raises:
        RunFolderError: the path is a file, or the folder holds a run and neither ``resume`` nor
            ``overwrite`` was given.
        ValueError: the folder cannot be written (read-only, ``/proc``); checked before anything is deleted.
    """
    path = Path(folder)
    if path.exists() and not path.is_dir():
        raise RunFolderError(f"{option} {path}: exists and is not a folder")
    if not global_rank_zero():  # rank 0 checks (and clears) the folder; it may already have written to it
        path.mkdir(parents=True, exist_ok=True)
        return path
    if resume and overwrite:
        raise RunFolderError("give --resume or --overwrite, not both")
    owned = None if owned is None else tuple(owned)
    present = existing_entries(path, owned)
    if present and not resume and not overwrite:
        shown = ", ".join(present[:5]) + (", ..." if len(present) > 5 else "")
        how = "pass --resume to continue it or --overwrite to replace it" if resumable else (
            "pass --overwrite to replace it, or choose another folder")  # fmt: skip
        raise RunFolderError(f"{option} {path}: already holds a run ({shown}); {how}")
    check_writable(path, folder=True, option=option)  # before anything is deleted
    if present and not resume:
        for name in present if owned is not None else ():
            target = path / name
            log.info("--overwrite: removing %s", target)
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            else:
                target.unlink()
    path.mkdir(parents=True, exist_ok=True)
    clean_temporaries(path)
    return path


def global_rank_zero() -> bool:
    """Whether this process is rank 0 of a distributed run (or not distributed): the launchers (torchrun,
    Lightning's subprocess launcher, SLURM) set these variables in every process."""
    return all(os.environ.get(name, "0") in ("", "0") for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"))


__all__ = ["RunFolderError", "existing_entries", "global_rank_zero", "prepare_run_folder"]
