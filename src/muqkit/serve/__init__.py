"""A local web app over an audio index: search by text or by example, listen, tags and a map.

``muqkit serve --index IDX`` serves :func:`muqkit.serve.app.create_app` with uvicorn. The app talks to a
:class:`~muqkit.serve.backend.SearchBackend`; :class:`~muqkit.serve.backend.IndexBackend` implements it
over the FAISS index of :mod:`muqkit.search`. FastAPI and uvicorn are the ``serve`` extra; this package
imports them only in :mod:`muqkit.serve.app`.
"""

from muqkit.search.query import TextSearchUnavailable
from muqkit.serve.backend import (
    Hit,
    IndexBackend,
    SearchBackend,
    TagScore,
    Track,
    UnknownTrack,
)
from muqkit.serve.embedder import Embedder, MuQAudioLatents, index_embedder, load_embedder

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
    "index_embedder",
    "load_embedder",
]
