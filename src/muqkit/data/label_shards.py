"""Label shards: target codes pre-extracted from whole files, read back by pretraining.

A label folder holds ``labels-00000.safetensors ...`` (``{record id: (num_codebooks, frames)}`` integer
codes, int16 for codebooks of up to 32767 codes, int32 above) and an index ``labels.json`` with
``num_codebooks``, ``codebook_size``, ``frame_rate``, ``shards`` and ``records``.
:func:`muqkit.train.refine.extract_labels` writes them; :class:`muqkit.data.loader.RandomCropDataset`
slices them to each crop.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from muqkit.atomic import atomic_path

LABELS_INDEX = "labels.json"


def shard_name(index: int) -> str:
    """File name of label shard ``index``."""
    return f"labels-{index:05d}.safetensors"


def label_dtype(codebook_size: int) -> torch.dtype:
    """The smallest integer type the codes of a ``codebook_size`` codebook are stored in."""
    return torch.int16 if codebook_size <= 32767 else torch.int32


def write_label_shard(path: str | os.PathLike[str], codes: Mapping[str, torch.Tensor]) -> None:
    """Write one shard of ``{record id: (num_codebooks, frames)}`` codes, atomically."""
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in codes.items()}, str(tmp))


def write_label_index(folder: str | os.PathLike[str], meta: Mapping[str, Any]) -> Path:
    """Write the index of a label folder (see the module docstring); returns its path."""
    missing = {"num_codebooks", "codebook_size", "shards"} - set(meta)
    if missing:
        raise ValueError(f"label index: missing {sorted(missing)}")
    path = Path(folder) / LABELS_INDEX
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(dict(meta), indent=2) + "\n")
    return path


def read_labels(folder: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Every record's codes ``{id: (num_codebooks, frames) long}`` and the index of a label folder.

    Raises:
        FileNotFoundError: the folder has no index (names it).
    """
    from safetensors.torch import load_file

    folder = Path(folder)
    index = folder / LABELS_INDEX
    if not index.is_file():
        raise FileNotFoundError(f"{folder}: no {LABELS_INDEX}; run extract_labels first")
    meta = json.loads(index.read_text())
    labels: dict[str, torch.Tensor] = {}
    for shard in meta["shards"]:
        labels.update({k: v.long() for k, v in load_file(str(folder / shard)).items()})
    return labels, meta


__all__ = ["LABELS_INDEX", "label_dtype", "read_labels", "shard_name", "write_label_index", "write_label_shard"]
