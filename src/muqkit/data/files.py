"""Finding and reading the files a command is given: the one audio-extension policy, folder scans, plain
lists of paths, and the readers of audio and feature files.

Every command that reads audio accepts three kinds of source, told apart here:

- a **folder**, scanned recursively (hidden files and folders skipped, sorted) for :data:`AUDIO_EXTENSIONS`;
- a **plain list** of paths: a text file with one path per line (or a JSON object per line with one of
  :data:`PATH_KEYS`), relative paths taken from the list's folder, blank lines and ``#`` comments skipped;
- a **manifest** of :class:`~muqkit.data.manifest.AudioRecord` lines, read with its splits
  (:func:`muqkit.data.loader.load_records`).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

#: Extensions picked up when a folder is scanned for audio (all decoded by libsndfile >= 1.1).
AUDIO_EXTENSIONS: frozenset[str] = frozenset(
    {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".w64", ".caf", ".au"}
)
#: Extensions of (frames, dim) feature files (the inputs of a latent RVQ).
FEATURE_EXTENSIONS: frozenset[str] = frozenset({".npy", ".safetensors", ".pt"})
#: Extensions of the text files read as a plain list of paths or a manifest when given among audio files.
LIST_EXTENSIONS: frozenset[str] = frozenset({".txt", ".lst", ".list", ".jsonl"})
#: Keys a JSON line of a plain list may hold its path under.
PATH_KEYS: tuple[str, ...] = ("path", "audio_filepath", "audio_path", "audio", "file", "features", "feature_path")


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def scan_folder(folder: str | os.PathLike[str], extensions: Iterable[str] = AUDIO_EXTENSIONS) -> list[Path]:
    """Files under ``folder`` (recursively, sorted) whose extension is in ``extensions``; hidden files and
    folders and folders named like audio files are left out."""
    root = Path(folder)
    allowed = {e.lower() for e in extensions}
    return [p for p in sorted(root.rglob("*")) if p.suffix.lower() in allowed and p.is_file() and not _hidden(p, root)]


def find_audio(
    paths: Sequence[str | os.PathLike[str]], *, extensions: Iterable[str] = AUDIO_EXTENSIONS
) -> list[Path]:
    """Audio files among ``paths``: folders scanned with :func:`scan_folder`, lists and manifests
    (:data:`LIST_EXTENSIONS`) read with :func:`list_files` (every split), other files kept whatever their
    extension.

    Raises:
        FileNotFoundError: a path does not exist.
        ValueError: no file at all.
    """
    extensions = frozenset(extensions)
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found += scan_folder(p, extensions)
        elif p.is_file():
            found += list_files(p, splits=None) if p.suffix.lower() in LIST_EXTENSIONS else [p]
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
    if not found:
        raise ValueError(f"no audio files ({', '.join(sorted(extensions))}) under {', '.join(map(str, paths))}")
    return found


def is_record_manifest(path: str | os.PathLike[str]) -> bool:
    """Whether the first entry of a text file is a full :class:`~muqkit.data.manifest.AudioRecord`."""
    from muqkit.data.manifest import AudioRecord

    with open(path, encoding="utf-8") as fh:
        first = next((line.strip() for line in fh if line.strip() and not line.startswith("#")), "")
    if not first.startswith("{"):
        return False
    try:
        AudioRecord.from_dict(json.loads(first))
    except (json.JSONDecodeError, TypeError, ValueError):
        return False
    return True


def read_path_list(path: str | os.PathLike[str]) -> list[Path]:
    """The paths of a plain list (see the module docstring).

    Raises:
        ValueError: a line is a JSON object without a path key, or the list is empty (names file and line).
    """
    source = Path(path)
    files: list[Path] = []
    with open(source, encoding="utf-8") as fh:
        for number, raw in enumerate(fh, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("{"):
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{source}:{number}: not a JSON object ({exc.msg})") from None
                key = next((k for k in PATH_KEYS if k in entry), None)
                if key is None:
                    raise ValueError(f"{source}:{number}: not an AudioRecord, and no path key among {PATH_KEYS}")
                line = str(entry[key])
            item = Path(line)
            files.append(item if item.is_absolute() else source.parent / item)
    if not files:
        raise ValueError(f"{source}: empty list of files")
    return files


def list_files(
    source: str | os.PathLike[str],
    *,
    extensions: Iterable[str] = AUDIO_EXTENSIONS,
    splits: Sequence[str] | None = ("train", "pool"),
) -> list[Path]:
    """The files of one source: a folder, a plain list, or a manifest (records of ``splits`` only;
    ``None``: all).

    Raises:
        ValueError: no file found (names the source).
    """
    source = Path(source)
    if source.is_dir():
        files = scan_folder(source, extensions)
        if not files:
            raise ValueError(f"{source}: no files with extensions {sorted(extensions)}")
        return files
    if is_record_manifest(source):
        from muqkit.data.manifest import manifest_records

        files = [path for _, path in manifest_records(source, splits=splits)]
        if not files:
            raise ValueError(f"{source}: no records with splits {splits}")
        return files
    return read_path_list(source)


# ----------------------------------------------------------------------------- readers
def read_audio(path: Path, sample_rate: int, *, start: float = 0.0, duration: float | None = None) -> np.ndarray:
    """Mono float32 audio at ``sample_rate``: the whole file (:func:`muqkit.audio.io.load_audio`), or
    ``duration`` seconds from ``start`` (:func:`muqkit.audio.io.read_crop`)."""
    if start == 0.0 and duration is None:
        from muqkit.audio.io import load_audio

        return load_audio(path, sample_rate=sample_rate, min_duration=0.0).numpy()
    from muqkit.audio.io import read_crop

    first = int(round(start * sample_rate))
    count = 1 << 40 if duration is None else int(math.ceil(duration * sample_rate))
    return read_crop(path, sample_rate, first, count).numpy()


def read_features(path: Path) -> np.ndarray:
    """A (frames, dim) feature array from ``.npy`` (memory-mapped), ``.safetensors`` or ``.pt``."""
    suffix = path.suffix.lower()
    if suffix == ".npy":
        array = np.load(path, mmap_mode="r")
    elif suffix == ".safetensors":
        from safetensors.numpy import load_file

        tensors = load_file(str(path))
        array = tensors["features"] if "features" in tensors else next(iter(tensors.values()))
    elif suffix == ".pt":
        from muqkit.hub.weights import safe_torch_load

        array = safe_torch_load(path).numpy()
    else:
        raise ValueError(f"{path}: unsupported feature file (use {sorted(FEATURE_EXTENSIONS)})")
    if array.ndim != 2:
        raise ValueError(f"{path}: features must be (frames, dim), got shape {array.shape}")
    return array


def iterate_chunks(
    files: Sequence[Path],
    *,
    kind: str,
    sample_rate: int,
    chunk_seconds: float = 60.0,
    chunk_frames: int = 4096,
    max_seconds: float | None = None,
) -> Iterator[torch.Tensor]:
    """Stream files as (length, *) chunks: audio of ``chunk_seconds`` (``kind="audio"``) or ``chunk_frames``
    feature rows (``kind="features"``); audio stops after ``max_seconds`` when given."""
    seen = 0.0
    for path in files:
        if kind == "audio":
            audio = torch.from_numpy(read_audio(path, sample_rate))
            step = int(chunk_seconds * sample_rate)
            for start in range(0, audio.shape[0], step):
                chunk = audio[start : start + step]
                if chunk.shape[0] >= 2048:
                    yield chunk
            seen += audio.shape[0] / sample_rate
        else:
            array = read_features(path)
            for start in range(0, array.shape[0], chunk_frames):
                yield torch.from_numpy(np.array(array[start : start + chunk_frames], dtype=np.float32))
            seen += array.shape[0]
        if max_seconds is not None and kind == "audio" and seen >= max_seconds:
            return


__all__ = [
    "AUDIO_EXTENSIONS",
    "FEATURE_EXTENSIONS",
    "LIST_EXTENSIONS",
    "PATH_KEYS",
    "find_audio",
    "is_record_manifest",
    "iterate_chunks",
    "list_files",
    "read_audio",
    "read_features",
    "read_path_list",
    "scan_folder",
]
