"""WebDataset-style tar shards: write a manifest's audio into tars, stream random crops from them.

A shard folder holds ``shard-00000.tar`` ... (members ``<key>.wav`` / ``<key>.flac`` with the original
file's bytes and ``<key>.json`` with the :class:`~muqkit.data.manifest.AudioRecord``) and ``shards.json``
(the shard names and item counts). Tars are read sequentially, one member after another, so a corpus
that lives on slow or remote storage streams without random access; the same tars open with the
``webdataset`` package.

:class:`ShardCropStream` gives each (rank, worker) slot the shards ``i`` with ``i % slots == slot``,
one random crop per item, looping over its shards forever. Its position is a batch counter: resuming
at batch ``b`` makes each worker skip the crops it had produced, so the resumed stream is exactly
the one an uninterrupted run would have seen.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from muqkit.atomic import atomic_path
from muqkit.data.loader import load_records

INDEX = "shards.json"


def write_shards(
    manifests: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    items_per_shard: int = 1000,
    splits: Sequence[str] | None = ("train", "pool"),
) -> Path:
    """Pack the manifests' audio files into tar shards (resumable: finished shards are kept).

    Returns:
        The ``shards.json`` index.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    records = sorted(load_records(manifests, splits=splits), key=lambda p: p[0].id)
    shards = []
    for k in range(0, len(records), items_per_shard):
        name = f"shard-{k // items_per_shard:05d}.tar"
        chunk = records[k : k + items_per_shard]
        shards.append({"name": name, "items": len(chunk), "seconds": round(sum(r.duration for r, _ in chunk), 2)})
        if (out / name).is_file():
            continue
        with atomic_path(out / name) as tmp, tarfile.open(tmp, "w") as tar:
            for record, path in chunk:
                key = record.id.replace("/", "_").replace(".", "_")
                meta = json.dumps(record.to_dict(), sort_keys=True).encode()
                _add(tar, f"{key}.json", meta)
                tar.add(str(path), arcname=f"{key}{path.suffix.lower()}")
    index = out / INDEX
    index.write_text(json.dumps({"shards": shards}, indent=2) + "\n")
    return index


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def iter_shard(path: str | os.PathLike[str]) -> Iterator[tuple[dict, bytes]]:
    """``(record dict, audio bytes)`` of a tar shard, in order, reading it sequentially."""
    pending: dict[str, dict] = {}
    audio: dict[str, bytes] = {}
    with tarfile.open(path, "r|") as tar:  # stream mode: no seeking
        for member in tar:
            if not member.isfile():
                continue
            key, _, ext = member.name.rpartition(".")
            data = tar.extractfile(member).read()  # type: ignore[union-attr]
            if ext == "json":
                pending[key] = json.loads(data)
            else:
                audio[key] = data
            if key in pending and key in audio:
                yield pending.pop(key), audio.pop(key)


class ShardCropStream(IterableDataset):
    """One random crop per item of a shard folder, streamed; rank- and worker-aware, resumable.

    Args:
        folder: shard folder (with ``shards.json``).
        crop_seconds: crop length (shorter items give the whole item).
        batch_size: the DataLoader's batch size (each worker yields whole batches of crops).
        sample_rate: output rate (items at another rate are resampled).
        seed: crops depend on ``(seed, slot, crop counter)``.
        frame_samples: crop starts are multiples of this.
        start_batch: batches this rank has already consumed (the resume position).
    """

    def __init__(
        self,
        folder: str | os.PathLike[str],
        *,
        crop_seconds: float,
        batch_size: int,
        sample_rate: int = 24000,
        seed: int = 0,
        frame_samples: int = 960,
        start_batch: int = 0,
    ) -> None:
        self.folder = Path(folder)
        self.shards = [s["name"] for s in json.loads((self.folder / INDEX).read_text())["shards"]]
        self.crop_samples = int(round(crop_seconds * sample_rate / frame_samples)) * frame_samples
        self.batch_size = batch_size
        self.sample_rate = sample_rate
        self.seed = seed
        self.frame_samples = frame_samples
        self.start_batch = start_batch

    def _slot(self) -> tuple[int, int, int, int]:
        from muqkit.data.loader import ResumableSampler

        rank, world = ResumableSampler._rank_world()
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        return rank * workers + worker, world * workers, worker, workers

    def _decode(self, data: bytes) -> torch.Tensor:
        import soundfile as sf

        audio, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
        audio = audio.mean(axis=1)
        if rate != self.sample_rate:
            import soxr

            audio = soxr.resample(audio, rate, self.sample_rate).astype(np.float32)
        return torch.from_numpy(np.ascontiguousarray(audio))

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        slot, slots, worker, workers = self._slot()
        mine = [s for i, s in enumerate(self.shards) if i % slots == slot % len(self.shards)]
        if slots > len(self.shards):
            raise ValueError(f"{len(self.shards)} shards cannot feed {slots} (rank, worker) slots; write more shards")
        # batches are drawn round-robin over workers: worker w made ceil((start - w) / workers) of them
        skip = max(0, -(-(self.start_batch - worker) // workers)) * self.batch_size
        counter = 0
        while True:
            for shard in mine:
                for record, data in iter_shard(self.folder / shard):
                    counter += 1
                    if counter <= skip:
                        continue  # resuming: only the position advances (no decoding)
                    audio = self._decode(data)
                    if not bool(torch.isfinite(audio).all()):
                        from muqkit.audio.io import AudioError

                        raise AudioError(f"{self.folder / shard}:{record.get('id', counter)}",
                                         "audio contains NaN or infinite samples")  # fmt: skip
                    rng = np.random.default_rng((self.seed, slot, counter))
                    span = max(0, len(audio) - self.crop_samples) // self.frame_samples
                    start = int(rng.integers(0, span + 1)) * self.frame_samples
                    yield {"audio": audio[start : start + self.crop_samples],
                           "index": torch.tensor(counter * slots + slot)}  # fmt: skip


__all__ = ["ShardCropStream", "iter_shard", "write_shards"]
