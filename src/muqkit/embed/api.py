"""``embed_paths``: embed audio files and folders with MuQ into one output per input plus an index."""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Literal

import torch

from muqkit.atomic import check_writable, clean_temporaries
from muqkit.audio.io import AudioError, audio_info, stream_audio
from muqkit.data.files import LIST_EXTENSIONS, list_files, scan_folder
from muqkit.embed.chunks import (
    Chunk,
    LayerSpec,
    chunk_length,
    encode_chunks,
    merge_short_tail,
    resolve_layers,
    samples_per_frame,
)
from muqkit.embed.index import (
    INDEX_NAME,
    IndexRecord,
    IndexWriter,
    consolidate_index,
    merge_index,
    read_previous,
)
from muqkit.embed.precision import model_in_precision, resolve_precision
from muqkit.embed.prefetch import prefetch
from muqkit.embed.store import (
    TIMESTAMPS_KEY,
    OutputFormat,
    layer_key,
    output_name,
    output_size,
    write_embedding,
)
from muqkit.hub.defaults import OFFICIAL_MUQ, default_muq_model
from muqkit.hub.weights import model_fingerprint

if TYPE_CHECKING:
    from muqkit.ssl.muq import MuQ

Pooling = Literal["none", "mean"]
DTypeName = Literal["float32", "bfloat16", "int8", "auto"]
DEFAULT_MODEL = OFFICIAL_MUQ
_HASH_BLOCK = 1 << 20

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InputFile:
    """An audio file to embed and where its output goes.

    Attributes:
        path: the audio file.
        relative: its path relative to the folder it was found in (its name when given directly); the
            output mirrors it under the output folder.
    """

    path: Path
    relative: PurePosixPath


@dataclass(frozen=True)
class FileFailure:
    """An input that could not be embedded.

    Attributes:
        input: the audio file.
        error: what went wrong (names the file and the problem).
    """

    input: str
    error: str


@dataclass(frozen=True)
class EmbedSummary:
    """What :func:`embed_paths` did.

    Attributes:
        out_dir: the output folder.
        index_path: the index file (``index.jsonl`` in ``out_dir``).
        num_files: inputs found.
        num_embedded: inputs embedded in this run.
        num_skipped: inputs skipped because an up-to-date output existed.
        num_failed: inputs that failed (listed in ``failures`` and in the index).
        audio_seconds: seconds of audio embedded in this run.
        elapsed_seconds: wall time of the run.
        failures: the failed inputs and why.
    """

    out_dir: str
    index_path: str
    num_files: int
    num_embedded: int
    num_skipped: int
    num_failed: int
    audio_seconds: float
    elapsed_seconds: float
    failures: tuple[FileFailure, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        """Whether every input has an output."""
        return self.num_failed == 0

    def __str__(self) -> str:
        speed = self.audio_seconds / self.elapsed_seconds if self.elapsed_seconds > 0 else 0.0
        lines = [
            f"{self.num_files} files: {self.num_embedded} embedded, {self.num_skipped} skipped (up to date), "
            f"{self.num_failed} failed",
            f"{self.audio_seconds / 3600:.3f} h of audio in {self.elapsed_seconds:.1f} s "
            f"({speed:.1f} s of audio per s)",
            f"index: {self.index_path}",
        ]
        lines += [f"FAILED {f.error}" for f in self.failures]
        return "\n".join(lines)


def find_inputs(paths: Sequence[str | os.PathLike[str]]) -> list[InputFile]:
    """Expand files and folders into the audio files to embed.

    A folder is searched recursively for files with an audio extension (hidden files and folders are
    skipped, :func:`muqkit.data.files.scan_folder`), in sorted order; their outputs mirror the tree below
    the folder. A text file (``.txt``, ``.lst``, ``.list``, ``.jsonl``) is a plain list of paths or a
    manifest: each file it names is taken, its output named after it. Any other file is taken whatever its
    extension and its output is named after it. A path that does not exist is kept, so that it is reported
    as failed rather than silently dropped.

    Raises:
        ValueError: two inputs would write the same output.
    """
    found: list[InputFile] = []
    for given in paths:
        root = Path(given)
        if root.is_dir():
            found += [InputFile(path, PurePosixPath(path.relative_to(root).as_posix())) for path in scan_folder(root)]
        elif root.suffix.lower() in LIST_EXTENSIONS and root.is_file():  # a plain list of paths or a manifest
            found += [InputFile(path, PurePosixPath(path.name)) for path in list_files(root, splits=None)]
        else:
            found.append(InputFile(root, PurePosixPath(root.name)))
    seen: dict[PurePosixPath, Path] = {}
    clashes = []
    for item in found:
        if item.relative in seen:
            clashes.append(f"{seen[item.relative]} and {item.path}")
        seen[item.relative] = item.path
    if clashes:
        raise ValueError("these inputs would write the same output; embed them separately: " + "; ".join(clashes))
    return found


def embed_paths(
    paths: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    model: MuQ | str | os.PathLike[str] | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    layers: LayerSpec = "all",
    pooling: Pooling = "none",
    chunk_seconds: float = 30.0,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    dtype: DTypeName = "float32",
    fmt: OutputFormat = "safetensors",
    overwrite: bool = False,
    progress: bool = True,
) -> EmbedSummary:
    """Embed audio files and folders with MuQ: one output per input, plus ``index.jsonl``.

    Each output holds ``layer_{i}`` tensors, float32 (frames, dim) or (dim,) with ``pooling="mean"``
    (the mean over all frames of the file), and ``timestamps``: float64 (frames,) seconds, the centre
    of each frame's receptive field, ``k / frame_rate`` for frame ``k`` (mel frames are centred STFT
    frames and the conv front end is symmetric, so frame ``k`` is centred on sample ``k * 960``).

    Files are decoded in blocks of ``chunk_seconds`` and encoded chunk by chunk (see
    :mod:`muqkit.embed.chunks` for what happens at chunk boundaries), with chunks of several files
    batched together, so memory is bounded by ``batch_size`` chunks plus the outputs of the files in
    flight. Outputs are written atomically; a rerun skips inputs whose index record is ``ok`` with the
    same input checksum and settings and whose output is still there with the recorded size. A file
    that cannot be embedded is recorded as failed in the index and the summary, and the run goes on.

    Args:
        paths: audio files and folders (searched recursively).
        out_dir: output folder; the tree below each input folder is mirrored in it.
        model: a MuQ (moved to ``device`` and ``dtype`` in place), or a Hub id or folder to load.
        revision: Hub revision when ``model`` is a Hub id.
        cache_dir: Hub cache folder.
        layers: ``"all"`` or hidden-state indices (0 = conv front end, i = Conformer layer i, negative
            from the end).
        pooling: ``"none"`` keeps every frame, ``"mean"`` averages them.
        chunk_seconds: chunk length for long inputs, rounded down to whole frames (40 ms).
        batch_size: chunks per model call.
        device: where the model runs.
        dtype: ``"float32"``, or the opt-ins ``"bfloat16"``, ``"int8"`` (CPU; :mod:`muqkit.embed.int8`) and
            ``"auto"`` (from the CPU's features: :mod:`muqkit.embed.precision`); outputs are stored as float32
            and the precision used is recorded in their provenance.
        fmt: ``"safetensors"`` (``<name>.safetensors``) or ``"npy"`` (folder ``<name>.embedding/``).
        overwrite: embed again even when an up-to-date output exists.
        progress: show a progress bar (files and hours of audio).

    Returns:
        An :class:`EmbedSummary`; ``summary.ok`` is False when any input failed.

    Raises:
        ValueError: an invalid option, or two inputs that would write the same output.
    """
    started = time.perf_counter()
    consolidate_index(out_dir)  # records a killed distributed run left
    run, inputs = prepare_run(
        paths, out_dir, model=model, revision=revision, cache_dir=cache_dir, layers=layers, pooling=pooling,
        chunk_seconds=chunk_seconds, batch_size=batch_size, device=device, dtype=dtype, fmt=fmt, overwrite=overwrite,
    )  # fmt: skip
    run.run(inputs, index_path=run.out_dir / INDEX_NAME, batch_size=batch_size, progress=progress)
    merge_index(run.out_dir)
    return run.summary(len(inputs), started)


def prepare_run(
    paths: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    model: MuQ | str | os.PathLike[str] | None,
    revision: str | None,
    cache_dir: str | os.PathLike[str] | None,
    layers: LayerSpec,
    pooling: Pooling,
    chunk_seconds: float,
    batch_size: int,
    device: str | torch.device,
    dtype: DTypeName,
    fmt: OutputFormat,
    overwrite: bool,
) -> tuple[_Run, list[InputFile]]:
    """Validate the options of :func:`embed_paths`, find the inputs and load the model (shared with
    :func:`muqkit.embed.distributed.embed_distributed`)."""
    if pooling not in ("none", "mean"):
        raise ValueError(f"pooling must be 'none' or 'mean', got {pooling!r}")
    precision = resolve_precision(dtype, device=device)  # auto resolved; an emulated bfloat16 warned about
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    output_name("x", fmt)  # validates fmt
    check_out_dir(out_dir)
    inputs = find_inputs(paths)

    muq = load_muq(model, revision=revision, cache_dir=cache_dir)
    # before any dtype change: the stored weights (an ONNX graph carries its source model's, tagged)
    fingerprint = getattr(muq, "fingerprint", None) or model_fingerprint(muq)
    config = muq.config
    chosen = resolve_layers(layers, int(config.encoder_depth) + 1)
    # int8: one compiled shape, batches of whole chunks
    muq = model_in_precision(muq, precision, layers=chosen, batch_size=batch_size,
                             pad_samples=chunk_length(chunk_seconds, config), device=device)  # fmt: skip
    run = _Run(
        muq=muq,
        out_dir=Path(out_dir),
        layers=chosen,
        pooling=pooling,
        chunk_samples=chunk_length(chunk_seconds, config),
        min_samples=samples_per_frame(config),
        template=IndexRecord(
            input="",
            output="",
            status="ok",
            model_id=getattr(muq, "name_or_path", None) or (None if isinstance(model, torch.nn.Module) else str(model)),
            revision=getattr(muq, "revision", None) or revision,
            model_sha256=fingerprint,
            pooling=pooling,
            frame_rate=float(config.frame_rate),
            sample_rate=int(config.sample_rate),
            chunk_seconds=chunk_length(chunk_seconds, config) / config.sample_rate,
            dtype=precision,
            format=fmt,
            muqkit_version=_version(),
        ),
        overwrite=overwrite,
    )
    check_layers = getattr(muq, "check_layers", None)  # an exported graph holds only some hidden states
    if check_layers is not None:
        check_layers(run.layers)
    run.out_dir.mkdir(parents=True, exist_ok=True)
    clean_temporaries(run.out_dir)  # left by a run killed in the middle of a write
    return run, inputs


def check_out_dir(out_dir: str | os.PathLike[str]) -> None:
    """Refuse an output folder that is a file or cannot be written (before any model is loaded).

    Raises:
        ValueError: names ``--out`` and the problem.
    """
    out_path = Path(out_dir)
    if out_path.exists() and not out_path.is_dir():
        raise ValueError(f"--out {out_path}: exists and is not a folder")
    check_writable(out_path, folder=True)


def load_muq(
    model: MuQ | str | os.PathLike[str] | None,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> MuQ:
    """Return ``model`` if it is a module, else load it with the hub (:func:`muqkit.hub.loaders.load_model`)
    from a Hub id, folder or exported ``.onnx`` file (``None``: the default model, see
    :func:`muqkit.hub.defaults.default_muq_model`).

    Raises:
        CheckpointError: the checkpoint cannot be loaded or is not a MuQ (a MuQ-MuLan, say).
    """
    if isinstance(model, torch.nn.Module):
        return model
    from muqkit.hub.loaders import load_model

    return load_model(default_muq_model() if model is None else model, kinds=("muq", "onnx"), revision=revision,
                      cache_dir=cache_dir)  # fmt: skip


def file_sha256(path: str | os.PathLike[str]) -> tuple[str, int]:
    """SHA-256 hex digest and size of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while block := handle.read(_HASH_BLOCK):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


@dataclass
class _FileState:
    """One input in flight: its identity and the frames computed so far."""

    item: InputFile
    record: IndexRecord  # filled as the file is read
    samples: int = 0
    frames: int = 0
    chunks: list[torch.Tensor] = field(default_factory=list)  # (layers, T, dim) float32, pooling none
    sums: torch.Tensor | None = None  # (layers, dim) float64, pooling mean


class _Run:
    """The state of one :func:`embed_paths` call."""

    def __init__(
        self,
        *,
        muq: MuQ,
        out_dir: Path,
        layers: tuple[int, ...],
        pooling: str,
        chunk_samples: int,
        min_samples: int,
        template: IndexRecord,
        overwrite: bool,
    ) -> None:
        self.muq = muq
        self.out_dir = out_dir
        self.layers = layers
        self.pooling = pooling
        self.chunk_samples = chunk_samples
        self.min_samples = min_samples
        self.template = _replace(template, layers=layers)
        self.overwrite = overwrite
        self.previous = read_previous(out_dir)
        self.failures: list[FileFailure] = []
        self.num_embedded = 0
        self.num_skipped = 0
        self.audio_seconds = 0.0
        self.states: dict[int, _FileState] = {}
        self._index: IndexWriter | None = None
        self._bar: Any = None  # a tqdm bar while running
        self._hours_done = 0.0
        self._hours_total = 0.0

    # -- driving ---------------------------------------------------------------------------------
    def run(self, inputs: list[InputFile], *, index_path: Path, batch_size: int, progress: bool) -> None:
        """Embed ``inputs``, appending their records to ``index_path``."""
        with torch.inference_mode(), IndexWriter(index_path) as index:
            self.execute(inputs, index=index, batch_size=batch_size, progress=progress)

    def summary(self, num_files: int, started: float) -> EmbedSummary:
        return EmbedSummary(
            out_dir=str(self.out_dir),
            index_path=str(self.out_dir / INDEX_NAME),
            num_files=num_files,
            num_embedded=self.num_embedded,
            num_skipped=self.num_skipped,
            num_failed=len(self.failures),
            audio_seconds=self.audio_seconds,
            elapsed_seconds=time.perf_counter() - started,
            failures=tuple(self.failures),
        )

    def execute(self, inputs: list[InputFile], *, index: IndexWriter, batch_size: int, progress: bool) -> None:
        from tqdm import tqdm

        self._index = index
        self._hours_total = sum(header_seconds(item.path) for item in inputs) / 3600
        with tqdm(total=len(inputs), unit="file", disable=not progress, dynamic_ncols=True) as bar:
            self._bar = bar
            self._show()
            for out in encode_chunks(self.muq, self._chunks(inputs), layers=self.layers, batch_size=batch_size):
                state = self.states.get(out.key)
                if state is None:  # the file failed after some of its chunks were queued
                    continue
                hidden = out.hidden.float().cpu()  # (layers, T, dim)
                state.frames += hidden.shape[1]
                if self.pooling == "mean":
                    sums = hidden.double().sum(dim=1)  # (layers, dim)
                    state.sums = sums if state.sums is None else state.sums + sums
                else:
                    state.chunks.append(hidden)
                if out.last:
                    self._finish(out.key)

    def _chunks(self, inputs: list[InputFile]) -> Iterator[Chunk]:
        """Read the inputs one after the other as chunks; skip finished ones, record failures."""
        sample_rate = int(self.muq.config.sample_rate)
        for key, item in enumerate(inputs):
            output = str(item.relative.parent / output_name(item.relative.name, self.template.format))  # type: ignore[arg-type]
            state = _FileState(item, _replace(self.template, input=str(item.path), output=output))
            self.states[key] = state
            try:
                if not item.path.is_file():
                    raise AudioError(item.path, "file not found" if not item.path.exists() else "not a regular file")
                sha, size = file_sha256(item.path)
                state.record = _replace(state.record, input_sha256=sha, input_bytes=size)
                if self._up_to_date(state.record):
                    self.num_skipped += 1
                    del self.states[key]
                    self._advance(self.previous[output].duration)
                    continue
                info = audio_info(item.path)
                state.record = _replace(state.record, source_sample_rate=info.sample_rate, channels=info.channels)
                blocks = prefetch(  # the next blocks are decoded while the model encodes these
                    stream_audio(
                        item.path,
                        block_samples=self.chunk_samples,
                        sample_rate=sample_rate,
                        min_duration=self.min_samples / sample_rate,
                    )
                )
                for index, (samples, last) in enumerate(merge_short_tail(blocks, min_samples=self.min_samples)):
                    state.samples += samples.numel()
                    yield Chunk(key=key, index=index, samples=samples, last=last)
            except (AudioError, OSError) as exc:
                self._fail(key, exc)

    # -- per file ----------------------------------------------------------------------------------
    def _up_to_date(self, record: IndexRecord) -> bool:
        if self.overwrite:
            return False
        old = self.previous.get(record.output)
        if old is None or old.status != "ok" or old.input_sha256 != record.input_sha256:
            return False
        settings = ("model_sha256", "layers", "pooling", "chunk_seconds", "dtype", "format")
        if any(getattr(old, name) != getattr(record, name) for name in settings):
            return False
        return output_size(self.out_dir / record.output) == old.output_bytes

    def _finish(self, key: int) -> None:
        state = self.states.pop(key)
        sample_rate = int(self.muq.config.sample_rate)
        frame_rate = float(self.muq.config.frame_rate)
        expected = int(self.muq.num_frames(torch.tensor(state.samples)))
        if state.frames != expected:  # chunks are whole frames long, so this cannot happen
            raise RuntimeError(f"{state.item.path}: {state.frames} frames from chunks, {expected} expected")
        if self.pooling == "mean":
            assert state.sums is not None
            stacked = (state.sums / state.frames).float()  # (layers, dim)
        else:
            stacked = torch.cat(state.chunks, dim=1)  # (layers, frames, dim)
        if not bool(torch.isfinite(stacked).all()):
            self.states[key] = state
            self._fail(key, AudioError(state.item.path, "the model gave NaN or infinite outputs for this file "
                                       "(are the model's weights finite?); nothing written"))  # fmt: skip
            return
        tensors = {layer_key(layer): stacked[j] for j, layer in enumerate(self.layers)}
        tensors[TIMESTAMPS_KEY] = torch.arange(state.frames, dtype=torch.float64) / frame_rate
        duration = state.samples / sample_rate
        record = _replace(state.record, duration=duration, num_frames=state.frames)
        try:
            size = write_embedding(
                self.out_dir / record.output,
                tensors,
                metadata=_metadata(record),
                fmt=record.format,  # type: ignore[arg-type]
            )
        except OSError as exc:
            self.states[key] = state
            self._fail(key, exc)
            return
        record = _replace(record, output_bytes=size)
        assert self._index is not None
        self._index.append(record)
        self.num_embedded += 1
        self.audio_seconds += duration
        self._advance(duration)

    def _fail(self, key: int, exc: BaseException) -> None:
        state = self.states.pop(key)
        message = str(exc) if isinstance(exc, AudioError) else f"{state.item.path}: {type(exc).__name__}: {exc}"
        log.warning("failed: %s", message)
        record = _replace(state.record, status="failed", error=message)
        assert self._index is not None
        self._index.append(record)
        self.failures.append(FileFailure(input=str(state.item.path), error=message))
        self._advance(0.0)

    def _advance(self, seconds: float) -> None:
        """Count one more input as done (``seconds`` of audio) on the progress bar."""
        self._hours_done += seconds / 3600
        if self._bar is not None:
            self._bar.update(1)
            self._show()

    def _show(self) -> None:
        self._bar.set_postfix_str(
            f"audio {self._hours_done:.2f}/{self._hours_total:.2f} h, failed {len(self.failures)}",
            refresh=False,
        )


def header_seconds(path: Path) -> float:
    """A file's duration from its header (0 when it cannot be read: the file is reported when embedded)."""
    try:
        return audio_info(path).duration
    except AudioError:
        return 0.0


def _metadata(record: IndexRecord) -> dict[str, str]:
    """Provenance strings stored inside each output."""
    return {
        "model_id": record.model_id or "",
        "revision": record.revision or "",
        "model_sha256": record.model_sha256 or "",
        "layers": ",".join(map(str, record.layers)),
        "pooling": record.pooling,
        "frame_rate": repr(record.frame_rate),
        "sample_rate": str(record.sample_rate),
        "chunk_seconds": repr(record.chunk_seconds),
        "dtype": record.dtype,
        "duration": repr(record.duration),
        "num_frames": str(record.num_frames),
        "input": Path(record.input).name,
        "input_sha256": record.input_sha256 or "",
        "timestamps": "seconds, centre of each frame (k / frame_rate)",
        "muqkit_version": record.muqkit_version,
    }


def _replace(record: IndexRecord, **changes: object) -> IndexRecord:
    from dataclasses import replace

    return replace(record, **changes)  # type: ignore[arg-type]


def _version() -> str:
    from muqkit import __version__

    return __version__
