"""Embed a manifest once per model and layer set, and reuse it.

A cache entry is one safetensors file ``<cache_dir>/<model id>/<key>.safetensors`` holding
``features`` (items, layers, dim) float32 and ``num_frames`` (items,); its metadata stores the item
ids in order. The key hashes the model id, the layer set and the manifest's content hash, so a
changed manifest or model never reads stale features, and moving the corpus does not invalidate them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from muqkit.atomic import atomic_path
from muqkit.audio.mel import SAMPLE_RATE
from muqkit.data.manifest import AudioRecord, manifest_hash
from muqkit.eval.features import FeatureExtractor

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Features:
    """Pooled features of a manifest.

    Attributes:
        ids: item ids, in the order of ``values``.
        values: (items, layers, dim) float32.
        layers: which layers of the model the second axis holds.
        model_id: the extractor's id.
        seconds: time taken to embed (0 when read from the cache).
    """

    ids: tuple[str, ...]
    values: np.ndarray
    layers: tuple[int, ...]
    model_id: str
    seconds: float = 0.0

    def select(self, ids: Sequence[str]) -> np.ndarray:
        """Rows for the given ids, (len(ids), layers, dim)."""
        index = {i: k for k, i in enumerate(self.ids)}
        missing = [i for i in ids if i not in index]
        if missing:
            raise KeyError(f"{len(missing)} ids have no features, e.g. {missing[:3]}")
        return self.values[[index[i] for i in ids]]


def cache_key(model_id: str, layers: Sequence[int] | None, records: Sequence[AudioRecord]) -> str:
    """Key of a cache entry (hex, 20 chars)."""
    text = json.dumps(
        {"model": model_id, "layers": None if layers is None else list(layers), "manifest": manifest_hash(records)}
    )
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def read_record(record: AudioRecord, root: Path) -> torch.Tensor:
    """A manifest record's audio, mono at 24 kHz, (samples,) float."""
    from muqkit.audio.io import load_audio

    return load_audio(record.resolve(root), sample_rate=SAMPLE_RATE)


def entry_path(cache_dir: str | os.PathLike[str], model_id: str, key: str) -> Path:
    """Where a cache entry lives: ``<cache_dir>/<model id>/<key>.safetensors``."""
    return Path(cache_dir) / model_id / f"{key}.safetensors"


def embed_in_batches(
    records: Sequence[AudioRecord],
    root: str | os.PathLike[str],
    embed: Callable[[list[torch.Tensor]], list[np.ndarray]],
    *,
    batch_size: int,
    model_id: str,
) -> list[np.ndarray]:
    """``embed`` of every record's audio (:func:`read_record`), in the order of ``records``; the records are
    fed shortest first, ``batch_size`` at a time, to limit padding."""
    order = sorted(range(len(records)), key=lambda i: (records[i].num_samples, records[i].id))
    values: list[np.ndarray | None] = [None] * len(records)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        feats = embed([read_record(records[i], Path(root)) for i in chunk])
        for i, f in zip(chunk, feats, strict=True):
            values[i] = f
        if (start // batch_size) % 20 == 0:
            logger.info("%s: %d/%d items embedded", model_id, start + len(chunk), len(records))
    return [v for v in values if v is not None]


def embed_records(
    records: Sequence[AudioRecord],
    root: str | os.PathLike[str],
    extractor: FeatureExtractor,
    *,
    cache_dir: str | os.PathLike[str] | None,
    layers: Sequence[int] | None = None,
    batch_size: int = 8,
) -> Features:
    """Pooled features of every record, from the cache when present.

    Args:
        records: items to embed (their content, not their order on disk, keys the cache).
        root: folder the records' relative paths start from.
        extractor: the model.
        cache_dir: cache folder; ``None`` disables caching.
        layers: layers to keep (default all).
        batch_size: items per forward pass (items are sorted by length to limit padding).

    Returns:
        :class:`Features` in the order of ``records``.
    """
    from safetensors.numpy import load_file, save_file

    root = Path(root)
    keep = tuple(range(extractor.num_layers)) if layers is None else tuple(layers)
    if any(not 0 <= layer < extractor.num_layers for layer in keep):
        raise ValueError(f"layers {keep} out of range for a model with {extractor.num_layers} layers")
    path = None
    if cache_dir is not None:
        path = entry_path(cache_dir, extractor.id, cache_key(extractor.id, keep, records))
        if path.is_file():
            from safetensors import safe_open

            with safe_open(str(path), framework="numpy") as f:
                ids = tuple(json.loads(f.metadata()["ids"]))
            cached = load_file(str(path))["features"]
            logger.info("features of %d items from %s", len(ids), path)
            return Features(ids, cached, keep, extractor.id)
    t0 = time.perf_counter()
    values = embed_in_batches(records, root, extractor.embed, batch_size=batch_size, model_id=extractor.id)
    stacked = np.stack([v[list(keep)] for v in values]).astype(np.float32)
    seconds = time.perf_counter() - t0
    ids = tuple(r.id for r in records)
    if path is not None:
        with atomic_path(path, suffix=".safetensors") as tmp:
            save_file({"features": stacked}, str(tmp), metadata={"ids": json.dumps(ids), "model": extractor.id})
    return Features(ids, stacked, keep, extractor.id, seconds)
