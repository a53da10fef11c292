"""Random-crop training data over manifests, folders or lists of files, with a resumable, rank-aware sampler.

Crops are *stateless*: crop ``i`` (file, start) is drawn from a generator seeded by ``(seed, i)``,
so the data a run sees is a function of the sample counter alone. The sampler hands rank ``r`` of
``W`` the indices ``(step * W + r) * batch + j``; resuming at optimiser step ``s`` just starts the
counter there, which restores the data position exactly with any number of worker processes.

Crop starts are aligned to target frames (``frame_samples``), so labels pre-extracted from whole
files line up with the crop (``labels[:, start // frame_samples :]``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from muqkit.audio.io import read_crop
from muqkit.data.manifest import AudioRecord, manifest_records, manifest_root

log = logging.getLogger(__name__)


def file_records(source: str | os.PathLike[str], *, split: str = "pool") -> list[tuple[AudioRecord, Path]]:
    """Records of the audio files of a folder or a plain list of paths (read from their headers).

    Each file is its own group; ids are paths relative to the folder (or as the list gives them).
    """
    from muqkit.audio.io import audio_info
    from muqkit.data.files import read_path_list, scan_folder

    root = Path(source)
    files = scan_folder(root) if root.is_dir() else read_path_list(root)
    if not files:
        raise ValueError(f"{source}: no audio files")
    out = []
    for path in files:
        info = audio_info(path)
        item = path.relative_to(root).as_posix() if root.is_dir() else str(path)
        record = AudioRecord(
            id=item, path=str(path.absolute()), duration=info.duration, sample_rate=info.sample_rate,
            num_samples=info.frames, split=split, group=item, source="files",
        )  # fmt: skip
        out.append((record, path))
    return out


def load_records(
    sources: Sequence[str | os.PathLike[str]],
    *,
    splits: Sequence[str] | None = ("train", "pool"),
    min_seconds: float = 0.0,
    allow_empty: bool = False,
) -> list[tuple[AudioRecord, Path]]:
    """Records (and their audio paths) of several sources, keeping ``splits`` (``None``: all).

    A source is a manifest of :class:`AudioRecord` lines, a folder of audio files or a plain list of
    paths (see :mod:`muqkit.data.files`); the files of a folder or a list are in the ``"pool"`` split.

    Raises:
        ValueError: no record is left (unless ``allow_empty``).
    """
    from muqkit.data.files import is_record_manifest

    out = []
    for source in sources:
        if Path(source).is_dir() or not is_record_manifest(source):
            pairs = file_records(source)
        else:
            pairs = manifest_records(source)
        out += [(r, p) for r, p in pairs if (splits is None or r.split in splits) and r.duration >= min_seconds]
    if not out and not allow_empty:
        raise ValueError(f"no records with splits {splits} in {[str(m) for m in sources]}")
    return out


def absolute_records(
    sources: Sequence[str | os.PathLike[str]], *, split: str | None = None
) -> list[AudioRecord]:
    """Records of ``split`` (all when ``None``) of :func:`load_records`'s sources, each with its absolute
    audio path in ``path`` (possibly none)."""
    pairs = load_records(sources, splits=None if split is None else (split,), allow_empty=True)
    return [replace(record, path=str(path.absolute())) for record, path in pairs]


CROP_SAMPLING = ("duration", "file")


class RandomCropDataset(Dataset):
    """Random crops of audio files, chosen in proportion to their duration (or every file alike).

    Args:
        records: ``(record, audio path)`` pairs (see :func:`load_records`).
        crop_seconds: crop length; shorter files give the whole file (padded in the batch, the padding
            masked by the batch's ``lengths``), or, with ``pad_short``, the file followed by silence up
            to the crop length, as one full-length crop.
        sample_rate: output rate in Hz.
        seed: crop ``i`` depends on ``(seed, i)`` only.
        frame_samples: crop starts are multiples of this (one target frame).
        labels: optional ``record id -> (num_codebooks, frames)`` codes of whole files; each crop
            then carries the matching slice under ``"codes"``.
        preload: decode every file once into memory (fast for small corpora).
        sampling: ``duration``: a file's chance is proportional to its duration (every second of
            audio alike); ``file``: every file alike (short files are drawn far more often).
        pad_short: give short files as full-length crops ending in silence (the silence is trained
            on as audio; with ``labels`` it is input without targets), instead of short crops whose
            padding is masked.
    """

    def __init__(
        self,
        records: Sequence[tuple[AudioRecord, Path]],
        *,
        crop_seconds: float,
        sample_rate: int = 24000,
        seed: int = 0,
        frame_samples: int = 960,
        labels: Mapping[str, torch.Tensor] | None = None,
        preload: bool = False,
        sampling: str = "duration",
        pad_short: bool = False,
    ) -> None:
        if not crop_seconds > 0:
            raise ValueError(f"crop_seconds must be positive, got {crop_seconds}")
        if sampling not in CROP_SAMPLING:
            raise ValueError(f"sampling must be one of {', '.join(CROP_SAMPLING)}, got {sampling!r}")
        self.sampling = sampling
        self.pad_short = pad_short
        self.records = list(records)
        self.sample_rate = sample_rate
        self.crop_samples = int(round(crop_seconds * sample_rate / frame_samples)) * frame_samples
        self.seed = seed
        self.frame_samples = frame_samples
        self.labels = labels
        if labels is not None:
            missing = [r.id for r, _ in self.records if r.id not in labels]
            if missing:
                raise ValueError(f"{len(missing)} records have no labels, e.g. {missing[:3]}")
        self.num_samples = np.array([round(r.duration * sample_rate) for r, _ in self.records], dtype=np.int64)
        weights = self.num_samples if sampling == "duration" else np.ones(len(self.records))
        self.cumulative = np.cumsum(weights / weights.sum())
        self.cache = [read_crop(p, sample_rate, 0, 1 << 40) for _, p in self.records] if preload else None
        if self.cache is not None:
            self.num_samples = np.array([len(a) for a in self.cache], dtype=np.int64)

    def __len__(self) -> int:
        return 1 << 62  # indexed by a global counter; the sampler decides how many are drawn

    def locate(self, index: int) -> tuple[int, int]:
        """(record, start sample) of crop ``index``."""
        rng = np.random.default_rng((self.seed, index))
        record = min(int(np.searchsorted(self.cumulative, rng.random(), side="right")), len(self.records) - 1)
        span = max(0, int(self.num_samples[record]) - self.crop_samples) // self.frame_samples
        start = int(rng.integers(0, span + 1)) * self.frame_samples
        return record, start

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        record, start = self.locate(index)
        if self.cache is not None:
            audio = self.cache[record][start : start + self.crop_samples]
        else:
            audio = read_crop(self.records[record][1], self.sample_rate, start, self.crop_samples)
        item = {"audio": audio, "index": torch.tensor(index)}
        if self.labels is not None:  # the padding below has no labels (-100 in the batch: never a target)
            codes = self.labels[self.records[record][0].id]
            first = start // self.frame_samples
            item["codes"] = codes[:, first : first + len(audio) // self.frame_samples].long()
        if self.pad_short and len(audio) < self.crop_samples:
            item["audio"] = torch.nn.functional.pad(torch.as_tensor(audio), (0, self.crop_samples - len(audio)))
        return item


class FrameCropDataset(Dataset):
    """Crops of ``crop_frames`` rows of (frames, dim) arrays (feature files or tensors in memory), chosen in
    proportion to their length.

    Like :class:`RandomCropDataset`, crop ``i`` depends on ``(seed, i)`` only, so with a
    :class:`ResumableSampler` the data of a run is a function of the step counter (exact resume).

    Args:
        arrays: (frames, dim) feature files (see :func:`muqkit.data.files.read_features`) or tensors.
        crop_frames: crop length in rows; shorter arrays give the whole array (padded in the batch).
        seed: crop ``i`` depends on ``(seed, i)`` only.
    """

    def __init__(self, arrays: Sequence[Path | torch.Tensor], *, crop_frames: int, seed: int = 0) -> None:
        from muqkit.data.files import read_features

        if crop_frames < 1:
            raise ValueError(f"crop_frames must be >= 1, got {crop_frames}")
        if not arrays:
            raise ValueError("FrameCropDataset: no arrays")
        self.arrays = [a.numpy() if isinstance(a, torch.Tensor) else read_features(a) for a in arrays]
        self.crop_frames = crop_frames
        self.seed = seed
        lengths = np.array([a.shape[0] for a in self.arrays], dtype=np.float64)
        self.cumulative = np.cumsum(lengths / lengths.sum())

    def __len__(self) -> int:
        return 1 << 62  # indexed by a global counter; the sampler decides how many are drawn

    def locate(self, index: int) -> tuple[int, int]:
        """(array, first row) of crop ``index``."""
        rng = np.random.default_rng((self.seed, index))
        item = min(int(np.searchsorted(self.cumulative, rng.random(), side="right")), len(self.arrays) - 1)
        start = int(rng.integers(0, max(1, self.arrays[item].shape[0] - self.crop_frames + 1)))
        return item, start

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item, start = self.locate(index)
        rows = np.array(self.arrays[item][start : start + self.crop_frames], dtype=np.float32)
        return {"frames": torch.from_numpy(rows), "index": torch.tensor(index)}


def collate_frames(items: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Pad frame crops: ``frames`` (B, T, dim), ``lengths`` (B,), ``index`` (B,)."""
    lengths = torch.tensor([x["frames"].shape[0] for x in items], dtype=torch.long)
    frames = items[0]["frames"].new_zeros((len(items), int(lengths.max()), items[0]["frames"].shape[1]))
    for i, x in enumerate(items):
        frames[i, : x["frames"].shape[0]] = x["frames"]
    return {"frames": frames, "lengths": lengths, "index": torch.stack([x["index"] for x in items])}


class ResumableSampler(Sampler[int]):
    """Global crop indices for one rank: ``(step * world + rank) * batch_size + j``.

    The rank and world size are read when iteration starts (after the process group exists).

    Args:
        batch_size: crops per rank per batch.
        num_batches: batches this rank draws in total (counting those before ``start_batch``).
        start_batch: first batch to draw (the resume position).
    """

    def __init__(self, *, batch_size: int, num_batches: int, start_batch: int = 0) -> None:
        self.batch_size = batch_size
        self.num_batches = num_batches
        self.start_batch = start_batch

    @staticmethod
    def _rank_world() -> tuple[int, int]:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
        return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))

    def __len__(self) -> int:
        # The whole run's length, whatever the start: a resumed Lightning run restores its batch index
        # within the epoch (``start_batch``) and ends the epoch at this length. A shorter length made it
        # end the epoch early and draw the first resumed batches again.
        return self.num_batches * self.batch_size

    def __iter__(self) -> Iterator[int]:
        rank, world = self._rank_world()
        for step in range(self.start_batch, self.num_batches):
            first = (step * world + rank) * self.batch_size
            yield from range(first, first + self.batch_size)


def collate_crops(items: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Pad crops: ``audio`` (B, samples), ``lengths`` (B,), ``index`` (B,), and ``codes`` (B, N, frames)
    padded with -100 when the items carry labels."""
    lengths = torch.tensor([len(x["audio"]) for x in items], dtype=torch.long)
    audio = torch.zeros(len(items), int(lengths.max()))
    for i, x in enumerate(items):
        audio[i, : len(x["audio"])] = x["audio"]
    batch = {"audio": audio, "lengths": lengths, "index": torch.stack([x["index"] for x in items])}
    if "codes" in items[0]:
        frames = max(x["codes"].shape[1] for x in items)
        codes = torch.full((len(items), items[0]["codes"].shape[0], frames), -100, dtype=torch.long)
        for i, x in enumerate(items):
            codes[i, :, : x["codes"].shape[1]] = x["codes"]
        batch["codes"] = codes
    return batch


def crop_loader(
    source: Dataset | torch.utils.data.IterableDataset, *, batch_size: int, num_workers: int, seed: int,
    sampler: Sampler | None = None,
) -> DataLoader:
    """A loader of crop batches (:func:`collate_crops`) from a crop dataset (with its ``sampler``) or a crop
    stream, with a generator seeded by ``seed`` of its own (the global random state is left alone)."""
    return DataLoader(
        source, batch_size=batch_size, sampler=sampler, collate_fn=collate_crops, num_workers=num_workers,
        persistent_workers=num_workers > 0, generator=torch.Generator().manual_seed(seed),
    )  # fmt: skip


__all__ = [
    "CROP_SAMPLING",
    "crop_loader",
    "FrameCropDataset",
    "absolute_records",
    "RandomCropDataset",
    "ResumableSampler",
    "collate_crops",
    "collate_frames",
    "file_records",
    "load_records",
    "manifest_root",
    "read_crop",
]
