"""What the app needs of an index: :class:`SearchBackend`, and :class:`IndexBackend` over a FAISS
:class:`~muqkit.search.VectorIndex` (the index ``muqkit mulan index`` and ``muqkit index`` write).

The app (:mod:`muqkit.serve.app`) talks only to the protocol, so another store is one more adapter.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np
import torch

if TYPE_CHECKING:
    from muqkit.search.index import VectorIndex
    from muqkit.serve.embedder import Embedder

# Formats Chromium and Firefox decode natively; the others are transcoded to WAV when played.
BROWSER_FORMATS = {".wav": "audio/wav", ".flac": "audio/flac", ".ogg": "audio/ogg", ".oga": "audio/ogg",
                   ".opus": "audio/ogg", ".mp3": "audio/mpeg"}  # fmt: skip
PROJECTIONS = ("pca", "umap")


class UnknownTrack(LookupError):
    """A track id that is not in the index."""


@dataclass(frozen=True)
class Track:
    """One indexed audio file.

    Attributes:
        id: its row in the index (0-based).
        path: the file relative to the collection's common folder (what answers show: never a server path).
        name: the file name.
        folder: its folder relative to the collection's common folder (``.`` at the top).
        playable: whether browsers decode the format natively (otherwise the app transcodes it).
        file: the file on the server (the app reads it; answers leave it out).
    """

    id: int
    path: str
    name: str
    folder: str
    playable: bool
    file: str


@dataclass(frozen=True)
class Hit:
    """One result: ``track`` at 1-based ``rank`` with similarity ``score``."""

    rank: int
    score: float
    track: Track


@dataclass(frozen=True)
class TagScore:
    """A tag's similarity to a track."""

    tag: str
    score: float


@runtime_checkable
class SearchBackend(Protocol):
    """The app's view of an index: tracks, searches, tags and a 2-D map."""

    @property
    def tracks(self) -> Sequence[Track]:
        """Every track, ``tracks[i].id == i``."""
        ...

    @property
    def model_name(self) -> str:
        """The model that embedded the index, by name (not its path on the server)."""
        ...

    @property
    def can_search_text(self) -> bool:
        """Whether texts (queries, tags) can be embedded."""
        ...

    def search_text(self, query: str, *, k: int) -> list[Hit]:
        """The ``k`` tracks closest to a description (raises :class:`~muqkit.search.query.TextSearchUnavailable`)."""
        ...

    def search_vector(self, latent: torch.Tensor, *, k: int, exclude: Sequence[int] = ()) -> list[Hit]:
        """The ``k`` tracks closest to a (d,) latent, leaving out the ``exclude`` ids."""
        ...

    def search_audio(self, wav: torch.Tensor, *, k: int) -> list[Hit]:
        """The ``k`` tracks closest to a 1-D waveform at :attr:`sample_rate`."""
        ...

    @property
    def sample_rate(self) -> int:
        """The rate :meth:`search_audio` reads."""
        ...

    def duration(self, track_id: int) -> float | None:
        """The track's duration in seconds (``None``: unknown, e.g. its file is missing)."""
        ...

    def more_like_this(self, track_id: int, *, k: int) -> list[Hit]:
        """The ``k`` tracks closest to a track, itself left out (raises :class:`UnknownTrack`)."""
        ...

    def tags(self, track_id: int, tags: Sequence[str]) -> list[TagScore]:
        """Zero-shot scores of ``tags`` for a track, best first."""
        ...

    def best_tags(self, tags: Sequence[str]) -> list[str]:
        """The best of ``tags`` for every track (colours of the map)."""
        ...

    def map_coordinates(self) -> np.ndarray:
        """(N, 2) coordinates in [0, 1] of a 2-D projection of the latents."""
        ...


def _tracks(paths: Sequence[str]) -> tuple[Track, ...]:
    """Tracks of absolute ``paths``, named relative to their common folder (the indexed root)."""
    parents = [str(Path(p).parent) for p in paths]
    root = os.path.commonpath(parents) if parents else ""
    return tuple(
        Track(id=i, path=os.path.relpath(p, root) if root else Path(p).name, name=Path(p).name,
              folder=os.path.relpath(parent, root) if root else ".", playable=Path(p).suffix.lower() in BROWSER_FORMATS,
              file=p)
        for i, (p, parent) in enumerate(zip(paths, parents, strict=True))
    )  # fmt: skip


def audio_duration(path: str) -> float | None:
    """Seconds of audio in a file from its header (:func:`muqkit.audio.io.audio_info`), or ``None`` if it is
    missing or unreadable."""
    from muqkit.audio.io import AudioError, audio_info

    try:
        return audio_info(path).duration
    except (AudioError, OSError):
        return None


def project_2d(latents: torch.Tensor, method: str = "pca", *, seed: int = 0) -> np.ndarray:
    """(N, d) latents -> (N, 2) coordinates scaled to [0, 1] (each axis alone; constant axes at 0.5).

    Args:
        latents: the points.
        method: ``pca`` (the two leading principal components) or ``umap`` (needs ``umap-learn``).
        seed: UMAP's random state.
    """
    if method not in PROJECTIONS:
        raise ValueError(f"projection must be one of {PROJECTIONS}, got {method!r}")
    x = latents.double().cpu()
    n = x.shape[0]
    if method == "umap" and n > 3:
        try:
            import umap  # type: ignore[import-not-found]
        except ImportError as exc:
            raise ModuleNotFoundError("the umap projection needs umap-learn: pip install umap-learn") from exc
        xy = umap.UMAP(n_components=2, random_state=seed, n_neighbors=min(15, n - 1)).fit_transform(x.numpy())
    else:
        centred = x - x.mean(0, keepdim=True)
        if n > 1:
            _, _, v = torch.linalg.svd(centred, full_matrices=False)  # v: (min(n, d), d)
            xy = (centred @ v[:2].T).numpy()
        else:
            xy = np.zeros((n, 1))
        if xy.shape[1] < 2:
            xy = np.concatenate([xy, np.zeros((n, 2 - xy.shape[1]))], axis=1)
    xy = np.asarray(xy, dtype=np.float64)
    low, span = xy.min(0), np.ptp(xy, axis=0) if n else np.zeros(2)
    out = np.full_like(xy, 0.5)
    for axis in range(2):
        if n and span[axis] > 1e-12:
            out[:, axis] = (xy[:, axis] - low[axis]) / span[axis]
    return out


class IndexBackend:
    """:class:`SearchBackend` over a :class:`~muqkit.search.VectorIndex` (exact or approximate, as the index
    was built), with the model that embedded it.

    Searches go through the index's FAISS structure; tags and the map use its stored vectors.

    Args:
        index: the index.
        embedder: its model, loaded once (checked against the index's dimension and model fingerprint).
        projection: the map's projection (``pca`` or ``umap``), computed on first use.

    Raises:
        ValueError: the model did not build the index (another dimension, fingerprint or kind).
    """

    def __init__(self, index: VectorIndex, embedder: Embedder, *, projection: str = "pca") -> None:
        from muqkit.search.build import MULAN_SOURCE

        if projection not in PROJECTIONS:
            raise ValueError(f"projection must be one of {PROJECTIONS}, got {projection!r}")
        if (index.meta.source == MULAN_SOURCE) != embedder.can_embed_text or (
            not embedder.can_embed_text and getattr(embedder.model, "source", None) != index.meta.source
        ):
            raise ValueError(
                f"the index holds {index.meta.source} vectors but the model {embedder.source} gives "
                f"{getattr(embedder.model, 'source', MULAN_SOURCE)} ones; serve the index with the model that built it"
            )
        if index.dim != embedder.dim:
            raise ValueError(
                f"the index's latents are {index.dim}-d but the model {embedder.source} gives "
                f"{embedder.dim}-d latents; serve the index with the model that built it"
            )
        index.check(model_sha256=embedder.fingerprint, query=True)  # queries may run in another precision
        self.index = index
        self.embedder = embedder
        self.projection = projection
        self._tracks = _tracks(index.absolute_paths)
        self._latents = torch.from_numpy(index.vectors())  # (N, d) unit vectors, row i = track i
        self._ids = {path: i for i, path in enumerate(index.absolute_paths)}  # the index's hits name paths
        self._map: np.ndarray | None = None
        self._durations: dict[int, float] = {}

    @property
    def tracks(self) -> Sequence[Track]:
        return self._tracks

    @property
    def model_name(self) -> str:
        return self.embedder.name

    @property
    def can_search_text(self) -> bool:
        return self.embedder.can_embed_text

    @property
    def sample_rate(self) -> int:
        return self.embedder.sample_rate

    def _track(self, track_id: int) -> Track:
        if not 0 <= track_id < len(self._tracks):
            raise UnknownTrack(f"no track {track_id}; ids go from 0 to {len(self._tracks) - 1}")
        return self._tracks[track_id]

    def duration(self, track_id: int) -> float | None:
        """Read from the file's header when first asked (not at start: an index may hold 100,000 files), then
        kept; ``None`` while the file is missing or unreadable."""
        seconds = self._durations.get(track_id)
        if seconds is None:
            seconds = audio_duration(self._track(track_id).file)
            if seconds is not None:
                self._durations[track_id] = seconds
        return seconds

    def search_text(self, query: str, *, k: int) -> list[Hit]:
        return self.search_vector(self.embedder.text_latents([query])[0], k=k)

    def search_vector(self, latent: torch.Tensor, *, k: int, exclude: Sequence[int] = ()) -> list[Hit]:
        hits = self.index.search(latent.reshape(1, -1), k + len(exclude))[0]
        kept: list[Hit] = []
        for hit in hits:
            track = self._tracks[self._ids[hit.path]]
            if track.id not in exclude:
                kept.append(Hit(rank=len(kept) + 1, score=hit.score, track=track))
        return kept[:k]

    def search_audio(self, wav: torch.Tensor, *, k: int) -> list[Hit]:
        return self.search_vector(self.embedder.audio_latent(wav), k=k)

    def more_like_this(self, track_id: int, *, k: int) -> list[Hit]:
        track = self._track(track_id)
        return self.search_vector(self._latents[track.id], k=k, exclude=(track.id,))

    def tags(self, track_id: int, tags: Sequence[str]) -> list[TagScore]:
        track = self._track(track_id)
        scores = self.embedder.tag_latents(tags) @ self._latents[track.id]  # (K,)
        order = scores.argsort(descending=True).tolist()
        return [TagScore(tag=tags[i], score=float(scores[i])) for i in order]

    def best_tags(self, tags: Sequence[str]) -> list[str]:
        best = (self._latents @ self.embedder.tag_latents(tags).T).argmax(1)  # (N,)
        return [tags[i] for i in best.tolist()]

    def map_coordinates(self) -> np.ndarray:
        if self._map is None:
            self._map = project_2d(self._latents, self.projection)
        return self._map
