"""Vector search over embedded audio: a FAISS index with its files and the model that made it.

The library API behind ``muqkit mulan index``, ``muqkit index`` and ``muqkit search``::

    from muqkit.search import open_index

    index = open_index("runs/index")                 # checks nothing; pass model_sha256= / dim= to check
    hits = index.search(text_latents, k=10)          # (Q, dim) -> Q lists of SearchHit(path, score, rank, given)
    similar = index.search_like("music/a.flac", k=10)  # "more like this file", itself left out
    index.add(["music/new.flac"], latents); index.remove(["music/old.flac"]); index.save("runs/index")

A save over a version another process saved meanwhile applies this index's adds and removes to that
version (no update is lost); ``IndexChangedError`` says when they cannot be applied.
"""

from muqkit.search.index import (
    KINDS,
    IndexChangedError,
    IndexConfig,
    IndexKind,
    IndexMeta,
    IndexMismatchError,
    SearchHit,
    VectorIndex,
    build_faiss,
    open_index,
)

__all__ = [
    "KINDS",
    "IndexChangedError",
    "IndexConfig",
    "IndexKind",
    "IndexMeta",
    "IndexMismatchError",
    "SearchHit",
    "VectorIndex",
    "build_faiss",
    "open_index",
]
