"""Querying an index with the model that built it: text to music and music to music.

:class:`Searcher` is what ``muqkit search`` (and an application serving an index) calls::

    searcher = Searcher("runs/index")                    # loads the index's model on first use
    searcher.text(["a calm piano piece"], k=10)          # MuQ-MuLan indexes
    searcher.like("music/track.flac", k=10)              # any index; a file outside the index is embedded
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from muqkit.search.build import MULAN_SOURCE, MuQAudioLatents, source_layer
from muqkit.search.index import IndexMismatchError, SearchHit, VectorIndex, open_index

if TYPE_CHECKING:
    from muqkit.hub.loaders import ModelSource
    from muqkit.mulan.model import MuQMuLan

ModelKind = Literal["mulan", "muq"]


class TextSearchUnavailable(RuntimeError):
    """The index's model has no text tower (MuQ latents): no text search, no tags."""


def model_kind(id_or_folder: str | os.PathLike[str]) -> ModelKind:
    """``"mulan"`` for a MuQ-MuLan checkpoint (official or muqkit format), ``"muq"`` for a MuQ one (or an exported
    ``.onnx`` MuQ): :func:`muqkit.hub.loaders.identify_model`, which reads only ``config.json``.

    Raises:
        CheckpointError: no such folder or Hub id, or no readable ``config.json``.
    """
    from muqkit.hub.loaders import identify_model

    return "mulan" if identify_model(id_or_folder).kind == "mulan" else "muq"


def load_index_model(
    id_or_folder: str | os.PathLike[str] | ModelSource,
    *,
    layer: int | None = None,
    device: str = "cpu",
    dtype: str = "float32",
) -> tuple[MuQMuLan | MuQAudioLatents, str]:
    """The model that embeds audio for an index, in eval mode, and its fingerprint.

    A MuQ-MuLan checkpoint gives the MuQ-MuLan (audio and text latents); a MuQ checkpoint gives
    :class:`~muqkit.search.build.MuQAudioLatents` of hidden state ``layer`` (default: the last). The
    fingerprint (:func:`muqkit.embed.model_fingerprint`) is of the stored float32 weights, before the cast
    to ``dtype``, so it names the checkpoint whatever the dtype. ``dtype`` is a precision of
    :mod:`muqkit.embed.precision`: ``int8`` runs both towers of a MuQ-MuLan in int8 (:mod:`muqkit.export.int8`)
    and a MuQ in int8 (:mod:`muqkit.embed.int8`); the fingerprint then gets ``+int8``, so that int8 and float32
    vectors are never added to one index (:meth:`~muqkit.search.index.VectorIndex.check`), as the ONNX
    graph's ``+onnx`` does; a query, which is not stored, may run in another precision than the index's. The
    checkpoint is recognised by the hub (:func:`muqkit.hub.loaders.identify_model`; pass its answer to read
    ``config.json`` once).

    Raises:
        CheckpointError: the model cannot be found or loaded.
    """
    import torch

    from muqkit.embed.precision import resolve_precision
    from muqkit.hub.loaders import ModelSource, identify_model, load_model
    from muqkit.hub.weights import model_fingerprint

    precision = resolve_precision(dtype, device=device)  # auto resolved; an emulated bfloat16 warned about
    source = id_or_folder if isinstance(id_or_folder, ModelSource) else identify_model(id_or_folder)
    if source.kind == "mulan" and layer is not None:
        raise ValueError(f"{source.name} is a MuQ-MuLan checkpoint; a layer only applies to MuQ ones")
    model = load_model(source, kinds=("muq", "mulan"))
    fingerprint = model_fingerprint(model)
    if precision == "int8":  # the latents change: an index records them as another model's
        fingerprint += "+int8"
    if precision == "int8" and source.kind == "mulan":
        from muqkit.export.int8 import quantize_mulan

        return quantize_mulan(model), fingerprint  # type: ignore[return-value]
    if source.kind == "mulan":
        return model.to(device=torch.device(device), dtype=getattr(torch, precision)), fingerprint
    from muqkit.embed.precision import model_in_precision

    model = model_in_precision(model, precision, layers=[-1 if layer is None else layer], device=device)
    return MuQAudioLatents(model, layer=-1 if layer is None else layer), fingerprint


def index_model(index: VectorIndex, *, model: str | None = None) -> tuple[ModelSource, int | None]:
    """Which model serves ``index``: ``model`` (default the one the index records), recognised by the hub, and
    the hidden state its vectors hold (``None`` for MuQ-MuLan vectors); load it with :func:`load_index_model`.
    :class:`Searcher` and the app (:func:`muqkit.serve.embedder.index_embedder`) both ask here.

    Raises:
        ValueError: the index names no model and none is given.
        IndexMismatchError: the model is of the other kind (MuQ for MuQ-MuLan vectors or the reverse).
    """
    from muqkit.hub.loaders import identify_model

    name = model or index.meta.model_id
    if not name:
        raise ValueError("the index names no model; give one with --model")
    is_mulan = index.meta.source == MULAN_SOURCE
    source = identify_model(name)
    if is_mulan != (source.kind == "mulan"):
        raise IndexMismatchError(
            f"the index holds {index.meta.source} vectors; {name} is a {'MuQ' if is_mulan else 'MuQ-MuLan'} "
            f"checkpoint; use the model that built it ({index.meta.model_id})"
        )
    return source, None if is_mulan else source_layer(index.meta.source)


class Searcher:
    """An index and, loaded when first needed, the model that embeds queries for it.

    Args:
        index: an index folder or an open :class:`VectorIndex`.
        model: the model (Hub id or folder) to embed queries with (default: the one recorded in the index);
            its fingerprint must match the index's.
        device: torch device of the model.
        dtype: ``"float32"``, ``"bfloat16"``, ``"int8"`` or ``"auto"`` (:mod:`muqkit.embed.precision`).
        backend: ``"torch"``, or ``"onnxruntime"`` with ``model`` a folder from ``muqkit export onnx --mulan``
            (MuQ-MuLan indexes).
    """

    def __init__(
        self,
        index: str | os.PathLike[str] | VectorIndex,
        *,
        model: str | None = None,
        device: str = "cpu",
        dtype: str = "float32",
        backend: str = "torch",
    ) -> None:
        if backend not in ("torch", "onnxruntime"):
            raise ValueError(f"backend must be 'torch' or 'onnxruntime', got {backend!r}")
        self.index = index if isinstance(index, VectorIndex) else open_index(index)
        if backend == "onnxruntime" and (not self.is_mulan or not model):
            raise ValueError("--backend onnxruntime searches MuQ-MuLan indexes with --model FOLDER from "
                             "`muqkit export onnx --mulan`")  # fmt: skip
        self.backend = backend
        self.model_name = model or self.index.meta.model_id
        self.device = device
        self.dtype = dtype
        self._model: Any = None
        self.fingerprint: str | None = None  # the query model's, once loaded (:meth:`model`)

    @property
    def is_mulan(self) -> bool:
        return self.index.meta.source == MULAN_SOURCE

    def model(self) -> Any:
        """The query model (MuQ-MuLan for a MuQ-MuLan index, :class:`MuQAudioLatents` of the index's layer
        otherwise), checked against the index."""
        if self._model is not None:
            return self._model
        if not self.model_name:
            raise ValueError("the index names no model; give one with --model")
        if self.backend == "onnxruntime":
            from muqkit.export.onnx import OnnxMuLan

            onnx = OnnxMuLan(self.model_name)
            self.index.check(model_sha256=onnx.fingerprint, dim=onnx.dim_latent)  # the source model's weights
            self._model, self.fingerprint = onnx, onnx.fingerprint
            return onnx
        source, layer = index_model(self.index, model=self.model_name)
        model, fingerprint = load_index_model(source, layer=layer, device=self.device, dtype=self.dtype)
        # queries may run in another precision than the index's vectors (adding vectors may not)
        self.index.check(model_sha256=fingerprint, dim=int(model.config.dim_latent), query=True)
        self._model, self.fingerprint = model, fingerprint
        return model

    def text(self, queries: list[str], k: int = 10) -> list[list[SearchHit]]:
        """The ``k`` best files for each text query (MuQ-MuLan indexes only)."""
        if not self.is_mulan:
            raise ValueError(
                f"this index holds {self.index.meta.source} vectors (MuQ, no text tower); "
                "search it with a file (--like)"
            )
        empty = [i + 1 for i, t in enumerate(queries) if not t.strip()]
        if empty:
            raise ValueError(f"query: text number {empty[0]} is empty; give a non-empty text")
        import torch

        with torch.inference_mode():
            latents = self.model().extract_text_latents(queries).float().cpu()
        return self.index.search(latents, k)

    def like(self, path: str | os.PathLike[str], k: int = 10) -> list[SearchHit]:
        """"More like this file": the ``k`` nearest files; the file itself is left out when it is in the index,
        and embedded with the index's model when it is not."""
        if path in self.index:
            return self.index.search_like(path, k)
        return self.index.search(self.embed_file(path), k)[0]

    def embed_file(self, path: str | os.PathLike[str]) -> np.ndarray:
        """(dim,) vector of an audio file, computed in memory as the index's vectors were (a MuQ-MuLan's audio
        latent, or :class:`~muqkit.search.build.MuQAudioLatents`: the mean of ``muqkit embed --pooling mean``)."""
        import torch

        from muqkit.audio.io import load_audio

        model = self.model()
        with torch.inference_mode():
            wav = load_audio(path, sample_rate=model.sample_rate)
            return model.extract_audio_latents([wav]).float()[0].numpy()
