"""Embedding audio with MuQ: files and folders to one output per input plus a provenance index.

The library function behind ``muqkit embed``::

    from muqkit.embed import embed_paths, read_embedding

    summary = embed_paths(["music/"], "embeddings/", model="OpenMuQ/MuQ-large-msd-iter", layers=[6, 12])
    emb = read_embedding("embeddings/album/track.flac.safetensors")
    emb.layers[12].shape, emb.timestamps[:3]   # (frames, 1024), tensor([0.00, 0.04, 0.08])

Timestamps are the centres of the frames in seconds, ``k / frame_rate`` for frame ``k``.
"""

from muqkit.embed.api import (
    DEFAULT_MODEL,
    EmbedSummary,
    FileFailure,
    InputFile,
    embed_paths,
    find_inputs,
    model_fingerprint,
)
from muqkit.embed.chunks import Chunk, ChunkOutput, chunk_bounds, encode_batch, encode_chunks, resolve_layers
from muqkit.embed.index import INDEX_NAME, IndexRecord, read_index
from muqkit.embed.store import EmbeddingFile, read_embedding

__all__ = [
    "DEFAULT_MODEL",
    "INDEX_NAME",
    "Chunk",
    "ChunkOutput",
    "EmbedSummary",
    "EmbeddingFile",
    "FileFailure",
    "IndexRecord",
    "InputFile",
    "chunk_bounds",
    "embed_paths",
    "encode_batch",
    "encode_chunks",
    "find_inputs",
    "model_fingerprint",
    "read_embedding",
    "read_index",
    "resolve_layers",
]
