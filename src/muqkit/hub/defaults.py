"""Which MuQ model commands use when none is named.

Order: the ``MUQKIT_DEFAULT_MODEL`` environment variable; the checkpoint that ``muqkit demo`` installs
in ``$MUQKIT_HOME/default-model`` (``MUQKIT_HOME`` defaults to ``~/.cache/muqkit``), which works
offline; else the released ``OpenMuQ/MuQ-large-msd-iter`` from the Hub.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from muqkit.atomic import clean_temporaries, temp_prefix

OFFICIAL_MUQ = "OpenMuQ/MuQ-large-msd-iter"
DEFAULT_MODEL_DIRNAME = "default-model"


def muqkit_home() -> Path:
    """muqkit's own cache folder (``$MUQKIT_HOME``, default ``~/.cache/muqkit``)."""
    return Path(os.environ.get("MUQKIT_HOME", "~/.cache/muqkit")).expanduser()


def default_muq_model() -> str:
    """The model id or folder to use when the user names none."""
    named = os.environ.get("MUQKIT_DEFAULT_MODEL")
    if named:
        return named
    installed = muqkit_home() / DEFAULT_MODEL_DIRNAME
    if (installed / "config.json").is_file():
        return str(installed)
    return OFFICIAL_MUQ


def install_default_model(folder: str | os.PathLike[str]) -> Path:
    """Copy a checkpoint folder to ``$MUQKIT_HOME/default-model`` (replacing any previous one whole)."""
    target = muqkit_home() / DEFAULT_MODEL_DIRNAME
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_temporaries(target.parent, recursive=False)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=temp_prefix(DEFAULT_MODEL_DIRNAME)))
    try:
        for name in ("config.json", "model.safetensors"):
            shutil.copy2(Path(folder) / name, staging / name)
        old = None
        if target.exists():
            old = target.with_name(f".{DEFAULT_MODEL_DIRNAME}.old")
            shutil.rmtree(old, ignore_errors=True)
            target.rename(old)
        staging.rename(target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target
