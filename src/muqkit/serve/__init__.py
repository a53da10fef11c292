"""A local web app over an audio index: search by text or by example, listen, tags and a map.

``muqkit serve --index IDX`` serves :func:`muqkit.serve.app.create_app` with uvicorn. The app talks to a
:class:`~muqkit.serve.backend.SearchBackend`; :class:`~muqkit.serve.backend.IndexBackend` implements it
over :class:`muqkit.mulan.index.AudioIndex`. FastAPI and uvicorn are the ``serve`` extra; this package
imports them only in :mod:`muqkit.serve.app`.
"""

from muqkit.serve.backend import (
    Hit,
    IndexBackend,
    SearchBackend,
    TagScore,
    TextSearchUnavailable,
    Track,
    UnknownTrack,
)
from muqkit.serve.embedder import Embedder, MuQAudioLatents, build_muq_index, load_embedder

__all__ = [
    "Embedder",
    "Hit",
    "IndexBackend",
    "MuQAudioLatents",
    "SearchBackend",
    "TagScore",
    "TextSearchUnavailable",
    "Track",
    "UnknownTrack",
    "build_muq_index",
    "load_embedder",
]
