"""Filling a :class:`~muqkit.search.VectorIndex`: MuQ-MuLan audio latents of audio files, mean-pooled MuQ
hidden states of audio files (:class:`MuQAudioLatents`), or mean-pooled MuQ embeddings written by
``muqkit embed --pooling mean`` (the same vectors as :class:`MuQAudioLatents` of that layer)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from muqkit.search.index import IndexConfig, VectorIndex, absolute

if TYPE_CHECKING:
    from muqkit.mulan.model import MuQMuLan
    from muqkit.ssl.muq import MuQ

log = logging.getLogger(__name__)

MULAN_SOURCE = "mulan-audio"


def muq_source(layer: int) -> str:
    """The ``source`` of an index of mean-pooled MuQ hidden state ``layer``."""
    return f"muq-mean:layer_{layer}"


def source_layer(source: str) -> int:
    """The hidden state of a ``muq-mean:layer_<i>`` source.

    Raises:
        ValueError: another source.
    """
    prefix = "muq-mean:layer_"
    if not source.startswith(prefix) or not source[len(prefix) :].isdigit():
        raise ValueError(f"{source!r} is not a mean-pooled MuQ source ({prefix}<i>)")
    return int(source[len(prefix) :])


@dataclass(frozen=True)
class LatentConfig:
    """What :func:`muqkit.mulan.index.embed_audio_files` reads of a model's config.

    Attributes:
        dim_latent: width of the latents.
    """

    dim_latent: int


class MuQAudioLatents:
    """MuQ as an audio-latent model: the L2-normalised mean over time of one hidden state.

    The frames are those of ``muqkit embed --pooling mean`` (non-overlapping chunks of ``chunk_seconds``,
    a tail shorter than one frame merged into the chunk before it), so an index of these latents and one
    of ``muqkit index embeddings --layer`` of the same layer hold the same vectors. Gives a MuQ the
    ``extract_audio_latents`` / ``sample_rate`` / ``config.dim_latent`` interface of
    :class:`~muqkit.mulan.model.MuQMuLan`, so :func:`index_audio` embeds with it unchanged.

    Args:
        muq: the model (put in eval mode).
        layer: index into the hidden states (0: conv front end, ``i``: Conformer layer ``i``; -1: the last).
        chunk_seconds: longest audio given to the model at once.
    """

    def __init__(self, muq: MuQ, *, layer: int = -1, chunk_seconds: float = 30.0) -> None:
        from muqkit.embed.chunks import chunk_length, resolve_layers

        self.muq = muq.eval()
        self.layer = resolve_layers([layer], int(muq.config.encoder_depth) + 1)[0]
        self.sample_rate = int(muq.config.sample_rate)
        self.config = LatentConfig(dim_latent=int(muq.config.encoder_dim))
        self.chunk_samples = chunk_length(chunk_seconds, muq.config)

    @property
    def source(self) -> str:
        """The index ``source`` of these latents (:func:`muq_source`)."""
        return muq_source(self.layer)

    @torch.no_grad()
    def extract_audio_latents(self, wavs: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        """(B, encoder_dim) latents of waveforms of any length (a list of 1-D tensors or (B, samples))."""
        from muqkit.embed.chunks import chunk_bounds

        out = []
        encode = getattr(self.muq, "encode_batch", None)  # an int8 MuQ (muqkit.embed.int8)
        first = None if encode is not None else next(self.muq.parameters())
        for wav in wavs:
            wav = torch.as_tensor(wav).reshape(-1).float()
            total = torch.zeros(self.config.dim_latent, dtype=torch.float64)
            frames = 0
            for start, end in chunk_bounds(wav.numel(), chunk_samples=self.chunk_samples,
                                           min_samples=self.muq.min_samples):  # fmt: skip
                if encode is not None:
                    states = encode([wav[start:end]], layers=(self.layer,))[0][0]  # (frames, dim)
                    total += states.double().sum(0)
                    frames += states.shape[0]
                    continue
                assert first is not None
                chunk = wav[start:end][None].to(device=first.device, dtype=first.dtype)
                states = self.muq(chunk, output_hidden_states=True).hidden_states[self.layer][0]
                total += states.double().sum(0).cpu()  # (frames, dim) -> (dim,)
                frames += states.shape[0]
            out.append(F.normalize((total / max(frames, 1)).float(), dim=-1))
        return torch.stack(out) if out else torch.zeros(0, self.config.dim_latent)


@dataclass(frozen=True)
class IndexUpdate:
    """What an update of an index did.

    Attributes:
        added: files new to the index.
        removed: files removed.
        failures: ``(file, problem)`` of the files that could not be embedded.
        replaced: files already in the index whose vectors were replaced (their content changed, or no
            checksum was recorded for them).
        unchanged: files already in the index with the same content (left as they were, not embedded again).
        removed_paths: the removed files, as the index named them.
    """

    added: int
    removed: int
    failures: tuple[tuple[str, str], ...] = ()
    replaced: int = 0
    unchanged: int = 0
    removed_paths: tuple[str, ...] = ()


def index_audio(
    model: MuQMuLan | MuQAudioLatents,
    paths: Sequence[str | os.PathLike[str]],
    *,
    index: VectorIndex | None = None,
    model_id: str | None = None,
    model_sha256: str | None = None,
    config: IndexConfig | None = None,
    batch_size: int = 4,
) -> tuple[VectorIndex, IndexUpdate]:
    """Embed the audio files under ``paths`` and add them to ``index`` (a new one when ``None``).

    ``model`` is a MuQ-MuLan (its audio latents, source ``mulan-audio``) or a :class:`MuQAudioLatents`
    (source ``muq-mean:layer_<i>``). Files are stored under the paths as given (folders expanded) with their
    content checksum; a file already in the index with the same content is left as it is (``unchanged``),
    one whose content changed (or that has no checksum) is embedded again (``replaced``).

    Raises:
        ValueError: no audio file, or none that could be embedded; an index of another model.
    """
    from muqkit.data.files import find_audio
    from muqkit.embed.api import file_sha256
    from muqkit.mulan.index import embed_audio_files

    dim = int(model.config.dim_latent)
    source = model.source if isinstance(model, MuQAudioLatents) else MULAN_SOURCE
    if index is None:
        index = VectorIndex.create(dim, model_id=model_id, model_sha256=model_sha256, source=source,
                                   config=config)  # fmt: skip
    else:
        _require_source(index, source)
        index.check(model_sha256=model_sha256, dim=dim)
    current = index.checksums()
    todo: list[Path] = []
    checksums: dict[str, str | None] = {}
    unchanged = 0
    for path in find_audio(paths):
        key = absolute(path)
        try:
            checksum: str | None = file_sha256(path)[0]
        except OSError:  # unreadable: embedding it reports the problem
            checksum = None
        if checksum is not None and current.get(key) == checksum:
            unchanged += 1
            continue
        todo.append(path)
        checksums[key] = checksum
    if not todo:
        return index, IndexUpdate(added=0, removed=0, unchanged=unchanged)
    embedded = embed_audio_files(model, todo, batch_size=batch_size)  # type: ignore[arg-type]
    if not embedded.paths:
        problems = "; ".join(problem for _, problem in embedded.failures[:3])
        raise ValueError(f"none of the audio files could be embedded ({problems})")
    keys = [absolute(p) for p in embedded.paths]
    index.add([str(p) for p in embedded.paths], embedded.latents, checksums=[checksums[k] for k in keys])
    replaced = sum(key in current for key in keys)
    return index, IndexUpdate(added=len(keys) - replaced, removed=0, failures=embedded.failures, replaced=replaced,
                              unchanged=unchanged)  # fmt: skip


def index_embeddings(
    embeddings: str | os.PathLike[str],
    *,
    layer: int,
    index: VectorIndex | None = None,
    config: IndexConfig | None = None,
) -> tuple[VectorIndex, IndexUpdate]:
    """Bring ``index`` in line with a folder of mean-pooled MuQ embeddings (``muqkit embed --pooling mean``).

    Every ``ok`` record of the folder's ``index.jsonl`` is added (or replaced, when its input checksum
    changed); every other file of the index is removed, files added by ``muqkit index add`` included (the
    index mirrors the folder; :attr:`IndexUpdate.removed_paths` names them, and ``muqkit index embeddings``
    lists them). Inputs are stored as the embedding run recorded them and resolved against the current folder.

    Args:
        embeddings: the ``muqkit embed`` output folder.
        layer: the hidden state to index (it must be among the stored layers).
        index: the index to update (a new one when ``None``).
        config: settings of a new index.

    Raises:
        ValueError: no usable record, frame-level (unpooled) embeddings, a layer not stored, or records of
            several models.
    """
    from muqkit.embed.index import INDEX_NAME, read_index
    from muqkit.embed.store import read_embedding

    folder = Path(embeddings)
    records = [r for r in read_index(folder / INDEX_NAME).values() if r.status == "ok"]
    if not records:
        raise ValueError(f"{folder / INDEX_NAME}: no embedded files; run `muqkit embed --pooling mean` first")
    unpooled = [r.input for r in records if r.pooling != "mean"]
    if unpooled:
        raise ValueError(f"{folder}: {unpooled[0]} has frame embeddings; embed with --pooling mean to index")
    models = {r.model_sha256 for r in records}
    if len(models) != 1:
        raise ValueError(f"{folder}: embeddings of {len(models)} different models; index one model's at a time")
    missing = [r.input for r in records if layer not in r.layers]
    if missing:
        raise ValueError(f"{folder}: layer {layer} is not stored for {missing[0]} (stored: {records[0].layers})")
    first = records[0]
    source = muq_source(layer)
    wanted = {absolute(r.input): r for r in records}
    if index is not None:
        _require_source(index, source)
        index.check(model_sha256=first.model_sha256)
        stale = [p for p in index.paths if absolute(p) not in wanted]
        current = index.checksums()
        todo = [r for key, r in wanted.items() if current.get(key) != r.input_sha256]
    else:
        stale, todo, current = [], list(wanted.values()), {}
    vectors = [read_embedding(folder / r.output).layers[layer].float().numpy() for r in todo]
    if index is None:
        dim = int(vectors[0].shape[-1])
        index = VectorIndex.create(dim, model_id=first.model_id, model_sha256=first.model_sha256, source=source,
                                   config=config)  # fmt: skip
    removed = index.remove(stale)
    if todo:
        index.add([r.input for r in todo], np.stack(vectors), checksums=[r.input_sha256 for r in todo])
    replaced = sum(absolute(r.input) in current for r in todo)
    return index, IndexUpdate(added=len(todo) - replaced, removed=removed, replaced=replaced,
                              unchanged=len(wanted) - len(todo), removed_paths=tuple(stale))  # fmt: skip


def _require_source(index: VectorIndex, source: str) -> None:
    if index.meta.source != source:
        raise ValueError(f"the index holds {index.meta.source} vectors, not {source}; use a new --out folder")
