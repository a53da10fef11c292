"""The embedding index: ``index.jsonl`` in the output folder, one JSON record per input file.

Records are appended as each file finishes (so an interrupted run keeps what it did) and the file is
compacted at the end of a run to the latest record of each output. A torn last line (a crash in the
middle of a write) is ignored when reading.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

from muqkit.atomic import atomic_path

INDEX_NAME = "index.jsonl"
RANK_INDEX_GLOB = ".index.rank-*.jsonl"  # one per rank of a distributed run, merged into INDEX_NAME at its end
Status = Literal["ok", "failed"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IndexRecord:
    """Provenance of one output.

    Attributes:
        input: the audio file, as found (relative to the working folder if given relative).
        output: the output file or folder, relative to the output folder.
        status: ``"ok"`` or ``"failed"``.
        error: why the file failed (``None`` when ok).
        model_id: the model's Hub id or folder (``preset:NAME`` for a random-weight preset), for people;
            the model is identified by ``model_sha256``.
        revision: the model's Hub revision, when known.
        model_sha256: content hash of the model's config and weights (:func:`muqkit.embed.model_fingerprint`):
            re-saved weights in the same folder give another hash, the same model in another folder the same.
        layers: the stored hidden-state indices (0 = conv front end, i = Conformer layer i).
        pooling: ``"none"`` (frames) or ``"mean"`` (one vector per layer).
        frame_rate: output frames per second.
        sample_rate: the rate the model reads, in Hz.
        chunk_seconds: length of the chunks long inputs are cut into.
        dtype: the model's compute dtype (outputs are stored as float32).
        format: ``"safetensors"`` or ``"npy"``.
        input_sha256: checksum of the input file's bytes.
        input_bytes: size of the input file.
        source_sample_rate: the input file's own sample rate.
        channels: the input file's channels (averaged to mono).
        duration: seconds of audio embedded (after resampling; 0 when the file could not be read).
        num_frames: frames computed.
        output_bytes: size of the output.
        muqkit_version: the version that wrote the record.
    """

    input: str
    output: str
    status: Status
    error: str | None = None
    model_id: str | None = None
    revision: str | None = None
    model_sha256: str | None = None
    layers: tuple[int, ...] = ()
    pooling: str = "none"
    frame_rate: float = 0.0
    sample_rate: int = 0
    chunk_seconds: float = 0.0
    dtype: str = "float32"
    format: str = "safetensors"
    input_sha256: str | None = None
    input_bytes: int | None = None
    source_sample_rate: int | None = None
    channels: int | None = None
    duration: float = 0.0
    num_frames: int = 0
    output_bytes: int | None = None
    muqkit_version: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IndexRecord:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["layers"] = tuple(values.get("layers") or ())
        return cls(**values)


def read_index(path: str | os.PathLike[str]) -> dict[str, IndexRecord]:
    """The latest record of each output in an index file (empty if there is none).

    Lines that are not valid records (a torn write) are skipped with a warning.
    """
    path = Path(path)
    records: dict[str, IndexRecord] = {}
    if not path.exists():
        return records
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = IndexRecord.from_dict(json.loads(line))
            except (ValueError, TypeError) as exc:
                log.warning("%s:%d: skipping an unreadable index line (%s)", path, number, exc)
                continue
            records[record.output] = record
    return records


class IndexWriter:
    """Appends records to an index file, one line per record, flushed as written."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = self.path.open("a", encoding="utf-8")

    def append(self, record: IndexRecord) -> None:
        self._handle.write(record.to_json() + "\n")
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> IndexWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def compact_index(path: str | os.PathLike[str]) -> dict[str, IndexRecord]:
    """Rewrite an index atomically with only the latest record of each output, sorted by output.

    Returns:
        The records kept.
    """
    path = Path(path)
    records = dict(sorted(read_index(path).items()))
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        for record in records.values():
            handle.write(record.to_json() + "\n")
    return records


def rank_index_path(out_dir: str | os.PathLike[str], rank: int) -> Path:
    """Where rank ``rank`` of a distributed run appends its records (merged into ``index.jsonl`` at the end)."""
    return Path(out_dir) / f".index.rank-{rank}.jsonl"


def read_previous(out_dir: str | os.PathLike[str]) -> dict[str, IndexRecord]:
    """The latest record of each output in a folder: ``index.jsonl``, then the per-rank files a distributed
    run left unmerged (it was killed), oldest first."""
    folder = Path(out_dir)
    records = read_index(folder / INDEX_NAME)
    for path in sorted(folder.glob(RANK_INDEX_GLOB), key=lambda p: (p.stat().st_mtime_ns, p.name)):
        records.update(read_index(path))
    return records


def merge_index(out_dir: str | os.PathLike[str]) -> dict[str, IndexRecord]:
    """Write ``index.jsonl`` atomically with the latest record of each output (see :func:`read_previous`),
    sorted by output, then delete the per-rank files it took in.

    Returns:
        The records kept.
    """
    folder = Path(out_dir)
    ranks = list(folder.glob(RANK_INDEX_GLOB))
    records = dict(sorted(read_previous(folder).items()))
    with atomic_path(folder / INDEX_NAME) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        for record in records.values():
            handle.write(record.to_json() + "\n")
    for path in ranks:
        path.unlink(missing_ok=True)
    return records


def consolidate_index(out_dir: str | os.PathLike[str]) -> None:
    """Merge the per-rank files a killed distributed run left into ``index.jsonl`` before a new run writes, so
    that every record of the new run is newer than every older one."""
    folder = Path(out_dir)
    if folder.is_dir() and any(folder.glob(RANK_INDEX_GLOB)):
        merge_index(folder)
