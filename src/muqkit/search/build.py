"""Filling a :class:`~muqkit.search.VectorIndex`: MuQ-MuLan audio latents of audio files, or mean-pooled MuQ
embeddings written by ``muqkit embed --pooling mean``."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from muqkit.search.index import IndexConfig, VectorIndex, absolute

if TYPE_CHECKING:
    from muqkit.mulan.model import MuQMuLan

log = logging.getLogger(__name__)

MULAN_SOURCE = "mulan-audio"


def muq_source(layer: int) -> str:
    """The ``source`` of an index of mean-pooled MuQ hidden state ``layer``."""
    return f"muq-mean:layer_{layer}"


@dataclass(frozen=True)
class IndexUpdate:
    """What an update of an index did.

    Attributes:
        added: files added (or replaced).
        removed: files removed.
        failures: ``(file, problem)`` of the files that could not be embedded.
    """

    added: int
    removed: int
    failures: tuple[tuple[str, str], ...] = ()


def index_audio(
    model: MuQMuLan,
    paths: Sequence[str | os.PathLike[str]],
    *,
    index: VectorIndex | None = None,
    model_id: str | None = None,
    model_sha256: str | None = None,
    config: IndexConfig | None = None,
    batch_size: int = 4,
) -> tuple[VectorIndex, IndexUpdate]:
    """Embed the audio files under ``paths`` with MuQ-MuLan and add them to ``index`` (a new one when ``None``).

    Files are stored under the paths as given (folders expanded); a file already in the index is replaced.

    Raises:
        ValueError: no audio file, or none that could be embedded; an index of another model.
    """
    from muqkit.mulan.index import embed_audio_files, find_audio

    dim = int(model.config.dim_latent)
    if index is None:
        index = VectorIndex.create(dim, model_id=model_id, model_sha256=model_sha256, source=MULAN_SOURCE,
                                   config=config)  # fmt: skip
    else:
        _require_source(index, MULAN_SOURCE)
        index.check(model_sha256=model_sha256, dim=dim)
    embedded = embed_audio_files(model, find_audio(paths), batch_size=batch_size)
    if not embedded.paths:
        problems = "; ".join(problem for _, problem in embedded.failures[:3])
        raise ValueError(f"none of the audio files could be embedded ({problems})")
    index.add([str(p) for p in embedded.paths], embedded.latents)
    return index, IndexUpdate(added=len(embedded.paths), removed=0, failures=embedded.failures)


def index_embeddings(
    embeddings: str | os.PathLike[str],
    *,
    layer: int,
    index: VectorIndex | None = None,
    config: IndexConfig | None = None,
) -> tuple[VectorIndex, IndexUpdate]:
    """Bring ``index`` in line with a folder of mean-pooled MuQ embeddings (``muqkit embed --pooling mean``).

    Every ``ok`` record of the folder's ``index.jsonl`` is added (or replaced, when its input checksum
    changed); files no longer there are removed. Inputs are stored as the embedding run recorded them and
    resolved against the current folder.

    Args:
        embeddings: the ``muqkit embed`` output folder.
        layer: the hidden state to index (it must be among the stored layers).
        index: the index to update (a new one when ``None``).
        config: settings of a new index.

    Raises:
        ValueError: no usable record, frame-level (unpooled) embeddings, a layer not stored, or records of
            several models.
    """
    from muqkit.embed.index import INDEX_NAME, read_index
    from muqkit.embed.store import read_embedding

    folder = Path(embeddings)
    records = [r for r in read_index(folder / INDEX_NAME).values() if r.status == "ok"]
    if not records:
        raise ValueError(f"{folder / INDEX_NAME}: no embedded files; run `muqkit embed --pooling mean` first")
    unpooled = [r.input for r in records if r.pooling != "mean"]
    if unpooled:
        raise ValueError(f"{folder}: {unpooled[0]} has frame embeddings; embed with --pooling mean to index")
    models = {r.model_sha256 for r in records}
    if len(models) != 1:
        raise ValueError(f"{folder}: embeddings of {len(models)} different models; index one model's at a time")
    missing = [r.input for r in records if layer not in r.layers]
    if missing:
        raise ValueError(f"{folder}: layer {layer} is not stored for {missing[0]} (stored: {records[0].layers})")
    first = records[0]
    source = muq_source(layer)
    wanted = {absolute(r.input): r for r in records}
    if index is not None:
        _require_source(index, source)
        index.check(model_sha256=first.model_sha256)
        stale = [p for p in index.paths if absolute(p) not in wanted]
        current = index.checksums()
        todo = [r for key, r in wanted.items() if current.get(key) != r.input_sha256]
    else:
        stale, todo = [], list(wanted.values())
    vectors = [read_embedding(folder / r.output).layers[layer].float().numpy() for r in todo]
    if index is None:
        dim = int(vectors[0].shape[-1])
        index = VectorIndex.create(dim, model_id=first.model_id, model_sha256=first.model_sha256, source=source,
                                   config=config)  # fmt: skip
    removed = index.remove(stale)
    if todo:
        index.add([r.input for r in todo], np.stack(vectors), checksums=[r.input_sha256 for r in todo])
    return index, IndexUpdate(added=len(todo), removed=removed)


def _require_source(index: VectorIndex, source: str) -> None:
    if index.meta.source != source:
        raise ValueError(f"the index holds {index.meta.source} vectors, not {source}; use a new --out folder")
