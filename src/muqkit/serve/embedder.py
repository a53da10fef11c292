"""The model behind the app: it embeds queries (texts, uploaded audio, tag prompts) once loaded.

An index (:mod:`muqkit.search`) holds MuQ-MuLan latents (``muqkit mulan index`` with a MuQ-MuLan model:
text search, tags, music search) or mean-pooled MuQ hidden states (``muqkit mulan index`` with a MuQ
checkpoint, the demo's index, ``muqkit index embeddings``: music search and the map only). The index's
``source`` says which, and the model is checked against the fingerprint the index recorded.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import torch

from muqkit.hub.loaders import ModelSource
from muqkit.search.build import MuQAudioLatents
from muqkit.search.query import ModelKind, TextSearchUnavailable, model_kind

if TYPE_CHECKING:
    from muqkit.mulan.model import MuQMuLan
    from muqkit.search.index import VectorIndex

__all__ = ["Embedder", "ModelKind", "MuQAudioLatents", "index_embedder", "load_embedder", "model_kind", "model_label"]

TAG_CACHE_SIZE = 32
QUERY_CACHE_SIZE = 256  # text queries whose latents are kept (a latent is 2 KiB at 512 dimensions)
T = TypeVar("T")


class Embedder:
    """A loaded model that embeds queries into the index's latent space, safe to share between threads.

    Every forward pass runs on the embedder's own thread, one at a time, whichever thread asks, so memory
    stays bounded: the math libraries keep buffers per thread that runs a model, and with passes on the
    request pool's 40 threads, 50 clients searching and uploading at once (``bench/bench_serve.py
    --concurrent 50``) raised the server's peak memory by 630 MiB, against 40 MiB on one thread.

    Args:
        model: a MuQ-MuLan (text, tags and audio) or :class:`MuQAudioLatents` (audio only).
        name: the model's name as the app shows it (in the page and in errors): never a server path.
        fingerprint: :func:`muqkit.embed.model_fingerprint` of its weights, checked against the index's
            (``None``: not checked).
        source: the Hub id or folder it was loaded from (messages on the server's console; default ``name``).
    """

    def __init__(
        self,
        model: MuQMuLan | MuQAudioLatents,
        *,
        name: str,
        fingerprint: str | None = None,
        source: str | None = None,
    ) -> None:
        self.model = model
        self.name = name
        self.source = name if source is None else source
        self.fingerprint = fingerprint
        self.kind: ModelKind = "muq" if isinstance(model, MuQAudioLatents) else "mulan"
        self.sample_rate = int(model.sample_rate)
        self.dim = int(model.config.dim_latent)
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="muqkit-model")
        self._tags: OrderedDict[tuple[str, ...], torch.Tensor] = OrderedDict()  # read and written by the worker
        self._queries: OrderedDict[str, torch.Tensor] = OrderedDict()  # likewise

    def _run(self, work: Callable[[], T]) -> T:
        """``work()`` on the model's thread without autograd (its grad mode is its own); its result or error."""

        def call() -> T:
            with torch.no_grad():
                return work()

        return self._worker.submit(call).result()

    @property
    def can_embed_text(self) -> bool:
        return self.kind == "mulan"

    def _text_model(self) -> MuQMuLan:
        if self.kind != "mulan":
            raise TextSearchUnavailable(
                f"the index holds MuQ latents ({self.name}): text search and tags need a MuQ-MuLan index "
                "(muqkit mulan index with a MuQ-MuLan model)"
            )
        return self.model  # type: ignore[return-value]

    def text_latents(self, texts: Sequence[str]) -> torch.Tensor:
        """(Q, d) float32 latents of ``texts``; the latest :data:`QUERY_CACHE_SIZE` texts are kept, so a repeated
        query does not run the text tower.

        Raises:
            TextSearchUnavailable: the model has no text tower.
        """
        model = self._text_model()
        texts = list(texts)

        def cached() -> torch.Tensor:  # the latest QUERY_CACHE_SIZE texts are answered without the model
            missing = list(dict.fromkeys(t for t in texts if t not in self._queries))
            if missing:
                for text, latent in zip(missing, model.extract_text_latents(missing).float().cpu(), strict=True):
                    self._queries[text] = latent
            for text in texts:
                self._queries.move_to_end(text)
            out = torch.stack([self._queries[t] for t in texts]) if texts else torch.zeros(0, self.dim)
            while len(self._queries) > QUERY_CACHE_SIZE:
                self._queries.popitem(last=False)
            return out

        return self._run(cached)

    def audio_latent(self, wav: torch.Tensor) -> torch.Tensor:
        """(d,) latent of a 1-D waveform at :attr:`sample_rate`."""
        return self._run(lambda: self.model.extract_audio_latents([wav]).float().cpu()[0])

    def tag_latents(self, tags: Sequence[str]) -> torch.Tensor:
        """(K, d) latents of tag names through the default prompt ensemble (cached per tag list).

        Raises:
            TextSearchUnavailable: the model has no text tower.
        """
        from muqkit.mulan.zeroshot import DEFAULT_PROMPTS, ZeroShotClassifier

        model = self._text_model()
        key = tuple(tags)

        def cached() -> torch.Tensor:
            if key in self._tags:
                self._tags.move_to_end(key)
                return self._tags[key]
            latents = ZeroShotClassifier.from_model(model, key, DEFAULT_PROMPTS).tag_latents
            self._tags[key] = latents
            if len(self._tags) > TAG_CACHE_SIZE:
                self._tags.popitem(last=False)
            return latents

        return self._run(cached)


def model_label(id_or_folder: str | os.PathLike[str]) -> str:
    """The name the app shows for a model: a local folder by its own name (never its path on the server), a
    Hub id (``OpenMuQ/MuQ-MuLan-large``) as given."""
    text = os.fspath(id_or_folder)
    if os.path.exists(text):
        return Path(text).resolve().name or text
    return text


def load_embedder(
    id_or_folder: str | os.PathLike[str] | ModelSource, *, layer: int | None = None, device: str = "cpu",
    dtype: str = "float32",
) -> Embedder:
    """Load a MuQ-MuLan or a MuQ checkpoint (MuQ latents of hidden state ``layer``, default the last) in eval
    mode (:func:`muqkit.search.query.load_index_model`), named by :func:`model_label`.

    Raises:
        CheckpointError: the model cannot be found or loaded.
    """
    from muqkit.search.query import load_index_model

    name = id_or_folder.name if isinstance(id_or_folder, ModelSource) else os.fspath(id_or_folder)
    model, fingerprint = load_index_model(id_or_folder, layer=layer, device=device, dtype=dtype)
    return Embedder(model, name=model_label(name), fingerprint=fingerprint, source=name)


def index_embedder(
    index: VectorIndex, *, model: str | None = None, device: str = "cpu", dtype: str = "float32"
) -> Embedder:
    """The model of an index (``model``, default the one it records), chosen as ``muqkit search`` chooses it
    (:func:`muqkit.search.query.index_model`) and loaded with :func:`load_embedder`: a MuQ-MuLan for
    ``mulan-audio`` vectors, MuQ latents of the index's layer for ``muq-mean`` ones.

    Raises:
        ValueError: the index names no model and none is given, or the model is of the other kind.
    """
    from muqkit.search.query import index_model

    source, layer = index_model(index, model=model)
    return load_embedder(source, layer=layer, device=device, dtype=dtype)
