"""Embedding files: one per input audio file, written atomically, in safetensors or npy.

Layout of one output (``fmt="safetensors"``, the file ``<input name>.safetensors``)::

    layer_{i}    float32 (frames, dim), or (dim,) when pooled; i indexes ``hidden_states``
                 (0 = conv front end, i = Conformer layer i)
    timestamps   float64 (frames,), seconds: the centre of each frame (see ``muqkit.embed``)
    metadata     strings: model id and revision, layers, pooling, frame rate, sample rate, duration,
                 input sha256, ...

``fmt="npy"`` writes the folder ``<input name>.embedding/`` holding ``layer_{i}.npy``,
``timestamps.npy`` and ``metadata.json`` with the same content.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from muqkit.atomic import atomic_path, temp_prefix

OutputFormat = Literal["safetensors", "npy"]
TIMESTAMPS_KEY = "timestamps"
_SUFFIX: dict[str, str] = {"safetensors": ".safetensors", "npy": ".embedding"}


def layer_key(layer: int) -> str:
    """Name of a layer's tensor in an embedding file."""
    return f"layer_{layer}"


def output_name(input_name: str, fmt: OutputFormat) -> str:
    """The output's file (or folder) name for an input file name: the full name plus a suffix, so
    ``song.wav`` and ``song.mp3`` side by side do not collide."""
    if fmt not in _SUFFIX:
        raise ValueError(f"unknown output format {fmt!r}; choose one of {sorted(_SUFFIX)}")
    return input_name + _SUFFIX[fmt]


@dataclass(frozen=True)
class EmbeddingFile:
    """The content of one embedding output.

    Attributes:
        layers: hidden-state index -> float32 (frames, dim), or (dim,) when pooled.
        timestamps: float64 (frames,) frame centres in seconds.
        metadata: provenance strings (model id, revision, layers, pooling, frame rate, ...).
    """

    layers: dict[int, torch.Tensor]
    timestamps: torch.Tensor
    metadata: dict[str, str] = field(default_factory=dict)


def write_embedding(
    path: str | os.PathLike[str],
    tensors: dict[str, torch.Tensor],
    *,
    metadata: dict[str, str],
    fmt: OutputFormat,
) -> int:
    """Write one output atomically: to a temporary name in the same folder, then ``os.replace``.

    A reader sees either the previous complete output or the new complete one, never a partial file.

    Args:
        path: the output file (safetensors) or folder (npy).
        tensors: name -> CPU tensor.
        metadata: strings stored with the tensors.
        fmt: ``"safetensors"`` or ``"npy"``.

    Returns:
        The size of the output in bytes.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    if fmt == "safetensors":
        from safetensors.torch import save_file

        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=metadata)
        return path.stat().st_size
    if fmt == "npy":
        tmp_dir = Path(tempfile.mkdtemp(prefix=temp_prefix(path.name), suffix=".tmp", dir=path.parent))
        try:
            for name, tensor in tensors.items():
                np.save(tmp_dir / f"{name}.npy", tensor.numpy())
            (tmp_dir / "metadata.json").write_text(json.dumps(metadata, indent=1, sort_keys=True))
            _replace_dir(tmp_dir, path)
        except BaseException:
            shutil.rmtree(tmp_dir, ignore_errors=True)
            raise
        return sum(f.stat().st_size for f in path.iterdir())
    raise ValueError(f"unknown output format {fmt!r}; choose one of {sorted(_SUFFIX)}")


def output_size(path: str | os.PathLike[str]) -> int | None:
    """Bytes of an output file or folder, or None when it does not exist."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    if path.is_dir():
        return sum(f.stat().st_size for f in path.iterdir() if f.is_file())
    return None


def read_embedding(path: str | os.PathLike[str]) -> EmbeddingFile:
    """Read an output written by :func:`write_embedding` (either format)."""
    path = Path(path)
    if path.is_dir():
        tensors = {f.stem: torch.from_numpy(np.load(f)) for f in path.glob("*.npy")}
        metadata = json.loads((path / "metadata.json").read_text())
    else:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
            tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
    timestamps = tensors.pop(TIMESTAMPS_KEY)
    layers = {int(k.removeprefix("layer_")): v for k, v in tensors.items() if k.startswith("layer_")}
    return EmbeddingFile(layers=dict(sorted(layers.items())), timestamps=timestamps, metadata=metadata)


def _replace_dir(new: Path, target: Path) -> None:
    """Put folder ``new`` at ``target``; an existing ``target`` is moved aside first, then deleted."""
    if target.exists():
        trash = Path(tempfile.mkdtemp(prefix=temp_prefix(target.name), suffix=".old", dir=target.parent))
        os.replace(target, trash / target.name)
        os.replace(new, target)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(new, target)
