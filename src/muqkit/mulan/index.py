"""Audio files embedded with MuQ-MuLan: the latents behind ``similarity``, ``zeroshot``, ``mulan evaluate``
and the search index (:func:`muqkit.search.build.index_audio`, which stores them in a FAISS index)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from muqkit.mulan.model import MuQMuLan

log = logging.getLogger(__name__)


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
