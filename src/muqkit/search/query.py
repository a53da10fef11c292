"""Querying an index with the model that built it: text to music and music to music.

:class:`Searcher` is what ``muqkit search`` (and an application serving an index) calls::

    searcher = Searcher("runs/index")                    # loads the index's model on first use
    searcher.text(["a calm piano piece"], k=10)          # MuQ-MuLan indexes
    searcher.like("music/track.flac", k=10)              # any index; a file outside the index is embedded
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from muqkit.search.build import MULAN_SOURCE, MuQAudioLatents, source_layer
from muqkit.search.index import IndexMismatchError, SearchHit, VectorIndex, open_index

if TYPE_CHECKING:
    from muqkit.mulan.model import MuQMuLan

ModelKind = Literal["mulan", "muq"]


class TextSearchUnavailable(RuntimeError):
    """The index's model has no text tower (MuQ latents): no text search, no tags."""


def model_kind(id_or_folder: str | os.PathLike[str]) -> ModelKind:
    """``"mulan"`` for a MuQ-MuLan checkpoint (official or muqkit format), ``"muq"`` for a MuQ one.

    Only ``config.json`` is read (downloaded for a Hub id).

    Raises:
        CheckpointError: no such folder or Hub id, or no readable ``config.json``.
    """
    from muqkit.hub.loaders import MULAN_MODEL_TYPE
    from muqkit.hub.weights import read_config, resolve_folder

    raw = read_config(resolve_folder(id_or_folder, allow_patterns=["config.json"]))
    return "mulan" if raw.get("model_type") == MULAN_MODEL_TYPE or "mulan" in raw else "muq"


def load_index_model(
    id_or_folder: str | os.PathLike[str],
    *,
    layer: int | None = None,
    device: str = "cpu",
    dtype: str = "float32",
) -> tuple[MuQMuLan | MuQAudioLatents, str]:
    """The model that embeds audio for an index, in eval mode, and its fingerprint.

    A MuQ-MuLan checkpoint gives the MuQ-MuLan (audio and text latents); a MuQ checkpoint gives
    :class:`~muqkit.search.build.MuQAudioLatents` of hidden state ``layer`` (default: the last). The
    fingerprint (:func:`muqkit.embed.model_fingerprint`) is of the stored float32 weights, before the cast
    to ``dtype``, so it names the checkpoint whatever the dtype.

    Raises:
        CheckpointError: the model cannot be found or loaded.
    """
    import torch

    from muqkit.embed.api import load_muq
    from muqkit.hub.weights import model_fingerprint

    if model_kind(id_or_folder) == "mulan":
        if layer is not None:
            raise ValueError(f"{id_or_folder} is a MuQ-MuLan checkpoint; a layer only applies to MuQ ones")
        from muqkit.mulan.model import MuQMuLan

        mulan = MuQMuLan.from_pretrained(id_or_folder, map_location=device)
        fingerprint = model_fingerprint(mulan)
        return mulan.to(getattr(torch, dtype)).eval(), fingerprint
    muq = load_muq(os.fspath(id_or_folder))
    fingerprint = model_fingerprint(muq)
    muq = muq.to(device=torch.device(device), dtype=getattr(torch, dtype))
    return MuQAudioLatents(muq, layer=-1 if layer is None else layer), fingerprint


class Searcher:
    """An index and, loaded when first needed, the model that embeds queries for it.

    Args:
        index: an index folder or an open :class:`VectorIndex`.
        model: the model (Hub id or folder) to embed queries with (default: the one recorded in the index);
            its fingerprint must match the index's.
        device: torch device of the model.
        dtype: ``"float32"`` or ``"bfloat16"``.
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
            self._model = onnx
            return onnx
        layer = None if self.is_mulan else source_layer(self.index.meta.source)
        if self.is_mulan != (model_kind(self.model_name) == "mulan"):
            raise IndexMismatchError(
                f"the index holds {self.index.meta.source} vectors; {self.model_name} is a "
                f"{'MuQ' if self.is_mulan else 'MuQ-MuLan'} checkpoint; use the model that built it "
                f"({self.index.meta.model_id})"
            )
        model, fingerprint = load_index_model(self.model_name, layer=layer, device=self.device, dtype=self.dtype)
        self.index.check(model_sha256=fingerprint, dim=int(model.config.dim_latent))
        self._model = model
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
        """(dim,) vector of an audio file, computed as the index's vectors were."""
        import torch

        from muqkit.audio.io import load_audio

        model = self.model()
        if self.is_mulan:
            with torch.inference_mode():
                wav = load_audio(path, sample_rate=model.sample_rate)
                return model.extract_audio_latents([wav]).float()[0].numpy()
        from muqkit.embed import embed_paths, read_embedding
        from muqkit.embed.store import output_name

        layer = model.layer
        with tempfile.TemporaryDirectory() as tmp:
            summary = embed_paths([path], tmp, model=model.muq, layers=[layer], pooling="mean", progress=False,
                                  device=self.device, dtype=self.dtype)  # type: ignore[arg-type]  # fmt: skip
            if not summary.ok:
                raise ValueError(summary.failures[0].error)
            return read_embedding(Path(tmp) / output_name(Path(path).name, "safetensors")).layers[layer].numpy()
