"""A folder of audio embedded once with MuQ-MuLan, searched by text.

An index folder holds ``latents.safetensors`` ((N, d) audio latents) and ``items.jsonl`` (one line per row:
the audio path and its duration), plus ``index.json`` naming the model that embedded it.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from muqkit.data.files import find_audio

if TYPE_CHECKING:
    from muqkit.mulan.model import MuQMuLan

log = logging.getLogger(__name__)

LATENTS_NAME = "latents.safetensors"
ITEMS_NAME = "items.jsonl"
META_NAME = "index.json"


@dataclass(frozen=True)
class SearchHit:
    """One search result.

    Attributes:
        path: the audio file.
        score: its similarity to the query.
        rank: 1-based position.
    """

    path: str
    score: float
    rank: int


@dataclass(frozen=True)
class AudioIndex:
    """Audio latents with their files.

    Attributes:
        paths: the audio files (as given when the index was built).
        latents: (N, d) audio latents.
        model: the model that embedded them (name or folder).
    """

    paths: tuple[str, ...]
    latents: torch.Tensor
    model: str

    def __post_init__(self) -> None:
        if self.latents.dim() != 2 or self.latents.shape[0] != len(self.paths):
            raise ValueError(f"latents must be ({len(self.paths)}, d), got {tuple(self.latents.shape)}")

    def search(self, query_latents: torch.Tensor, *, top_k: int = 10) -> list[list[SearchHit]]:
        """The ``top_k`` best items of each (Q, d) query latent."""
        scores = query_latents.float().cpu() @ self.latents.float().T  # (Q, N)
        values, indices = scores.topk(min(top_k, len(self.paths)), dim=1)
        return [
            [
                SearchHit(self.paths[i], float(v), r + 1)
                for r, (v, i) in enumerate(zip(vals.tolist(), idx.tolist(), strict=True))
            ]
            for vals, idx in zip(values, indices, strict=True)
        ]

    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Write the index folder (each file atomically). Paths are stored absolute, so the index is
        searched from any working folder."""
        from safetensors.torch import save_file

        from muqkit.atomic import atomic_path

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / LATENTS_NAME) as tmp:
            save_file({"latents": self.latents.float().contiguous()}, str(tmp))
        with atomic_path(folder / ITEMS_NAME) as tmp, open(tmp, "w", encoding="utf-8") as fh:
            for path in self.paths:
                fh.write(json.dumps({"path": str(Path(path).absolute())}) + "\n")
        with atomic_path(folder / META_NAME) as tmp:
            tmp.write_text(json.dumps({"model": self.model, "size": len(self.paths)}, indent=2) + "\n")
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> AudioIndex:
        """Read an index folder written by :meth:`save`. Relative paths (older indexes) are taken from
        the index folder.

        Raises:
            FileNotFoundError: not an index folder.
            ValueError: a corrupt index file (the message names it).
        """
        from safetensors.torch import load_file

        folder = Path(folder)
        if not (folder / LATENTS_NAME).is_file():
            raise FileNotFoundError(
                f"{folder}: not a MuQ-MuLan index (no {LATENTS_NAME}); build one with `muqkit mulan index`"
            )
        current = folder / ITEMS_NAME
        try:
            with open(current, encoding="utf-8") as fh:
                paths = tuple(str(folder / json.loads(line)["path"]) for line in fh if line.strip())
            current = folder / META_NAME
            meta = json.loads(current.read_text())
            model = str(meta["model"])
            current = folder / LATENTS_NAME
            latents = load_file(str(current))["latents"]
            return cls(paths=paths, latents=latents, model=model)
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"{current}: missing; rebuild the index with `muqkit mulan index`") from exc
        except Exception as exc:  # JSON, key, safetensors and shape errors alike
            raise ValueError(
                f"{current}: corrupt MuQ-MuLan index file ({type(exc).__name__}: {exc}); rebuild the index with "
                "`muqkit mulan index`"
            ) from exc


@dataclass(frozen=True)
class EmbeddedFiles:
    """Latents of the audio files that could be embedded, and why the others could not.

    Attributes:
        paths: the embedded files, in order.
        latents: (len(paths), d) audio latents.
        failures: ``(file, problem)`` of each file left out.
    """

    paths: tuple[Path, ...]
    latents: torch.Tensor
    failures: tuple[tuple[str, str], ...]


@torch.no_grad()
def embed_audio_files(
    model: MuQMuLan, files: Sequence[str | os.PathLike[str]], *, batch_size: int = 4
) -> EmbeddedFiles:
    """Embed audio files, skipping (and reporting) those that cannot be read or give non-finite latents."""
    from muqkit.audio.io import AudioError, load_audio

    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    kept: list[Path] = []
    out: list[torch.Tensor] = []
    failures: list[tuple[str, str]] = []
    pending: list[tuple[Path, torch.Tensor]] = []

    def flush() -> None:
        if not pending:
            return
        latents = model.extract_audio_latents([w for _, w in pending]).float().cpu()
        for (path, _), row in zip(pending, latents, strict=True):
            if bool(torch.isfinite(row).all()):
                kept.append(path)
                out.append(row)
            else:
                failures.append((str(path), "the model gave NaN or infinite latents"))
        pending.clear()

    for f in map(Path, files):
        try:
            pending.append((f, load_audio(f, sample_rate=model.sample_rate)))
        except (AudioError, OSError) as exc:
            message = str(exc) if isinstance(exc, AudioError) else f"{f}: {exc}"
            log.warning("skipping %s", message)
            failures.append((str(f), message))
        if len(pending) == batch_size:
            flush()
    flush()
    latents = torch.stack(out) if out else torch.zeros(0, model.config.dim_latent)
    return EmbeddedFiles(paths=tuple(kept), latents=latents, failures=tuple(failures))


@torch.no_grad()
def embed_files(
    model: MuQMuLan,
    files: Sequence[str | os.PathLike[str]],
    *,
    batch_size: int = 4,
    progress: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """(N, d) audio latents of audio files (decoded at the model's rate, several songs per batch)."""
    from muqkit.audio.io import load_audio

    out = []
    for start in range(0, len(files), batch_size):
        wavs = [load_audio(f, sample_rate=model.sample_rate) for f in files[start : start + batch_size]]
        out.append(model.extract_audio_latents(wavs).cpu())
        if progress is not None:
            progress(len(wavs))
    return torch.cat(out) if out else torch.zeros(0, model.config.dim_latent)


def build_index(
    model: MuQMuLan, paths: Sequence[str | os.PathLike[str]], *, model_name: str, batch_size: int = 4
) -> AudioIndex:
    """Embed the audio files under ``paths`` into an :class:`AudioIndex`."""
    index, _ = build_index_reporting(model, paths, model_name=model_name, batch_size=batch_size)
    return index


def build_index_reporting(
    model: MuQMuLan, paths: Sequence[str | os.PathLike[str]], *, model_name: str, batch_size: int = 4
) -> tuple[AudioIndex, tuple[tuple[str, str], ...]]:
    """Like :func:`build_index`, also returning the ``(file, problem)`` of the files left out.

    Raises:
        ValueError: no audio file, or none that could be embedded.
    """
    embedded = embed_audio_files(model, find_audio(paths), batch_size=batch_size)
    if not embedded.paths:
        problems = "; ".join(problem for _, problem in embedded.failures[:3])
        raise ValueError(f"none of the audio files could be embedded ({problems})")
    index = AudioIndex(
        paths=tuple(str(f.absolute()) for f in embedded.paths), latents=embedded.latents, model=model_name
    )
    return index, embedded.failures
