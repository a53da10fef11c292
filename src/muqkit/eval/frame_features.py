"""Frame features at 25 Hz for the frame tasks, cached like the clip features (:mod:`muqkit.eval.cache`).

:class:`FrameExtractor` maps a waveform to ``(frames, layers, dim)``: ``mel`` (128-band log-mel, averaged to
25 Hz), ``chroma`` (12 pitch classes, 4096-point STFT, hop 40 ms), ``onset`` (alias ``rhythm``: log-mel flux
in 8 band groups at 100 Hz, 4 values per frame), ``random:PRESET`` and ``muq:FOLDER_OR_HUB_ID`` (every hidden
state; the models are those of :func:`muqkit.eval.features.muq_from_spec`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from muqkit.atomic import atomic_path
from muqkit.audio.mel import FRAME_RATE, SAMPLE_RATE, MelFrontend
from muqkit.data.manifest import AudioRecord
from muqkit.eval.cache import cache_key, embed_in_batches, entry_path
from muqkit.eval.features import (
    chroma_filter,
    count_hidden_states,
    hidden_states,
    model_for_features,
    muq_from_spec,
    precision_tag,
    resolved_precision,
    weights_fingerprint,
)
from muqkit.eval.references import REFERENCES

logger = logging.getLogger(__name__)


class FrameExtractor(Protocol):
    """What the frame feature cache needs from a model."""

    id: str
    num_layers: int

    def embed_frames(self, wavs: Sequence[torch.Tensor]) -> list[np.ndarray]:
        """(frames, num_layers, dim) float32 per waveform ((samples,) float32 at 24 kHz), 25 frames a second."""
        ...


class HandcraftedFrameExtractor:
    """Classic features at 25 Hz: ``mel``, ``chroma`` or ``onset`` (see the module docstring)."""

    KINDS = ("mel", "chroma", "onset")

    def __init__(self, kind: str) -> None:
        if kind not in self.KINDS:
            raise ValueError(f"frame feature kind must be one of {self.KINDS}, got {kind!r}")
        self.kind = kind
        self.id = f"frames-{kind}-v1"
        self.num_layers = 1
        self.frontend = MelFrontend()
        self.n_fft, self.hop = 4096, SAMPLE_RATE // FRAME_RATE
        self.chroma_fb = chroma_filter(self.n_fft, SAMPLE_RATE)

    @torch.no_grad()
    def embed_frames(self, wavs: Sequence[torch.Tensor]) -> list[np.ndarray]:
        out = []
        for wav in wavs:
            frames = len(wav) // self.hop
            if self.kind == "chroma":
                spec = torch.stft(wav, self.n_fft, self.hop, window=torch.hann_window(self.n_fft), return_complex=True)
                chroma = (spec.abs() ** 2).T @ self.chroma_fb  # (stft frames, 12)
                feats = torch.log1p(100 * chroma / chroma.amax(1, keepdim=True).clamp(min=1e-10))[:frames]
            else:
                mel = self.frontend(wav[None], torch.tensor([len(wav)])).mel[0].T  # (100 Hz frames, 128) dB
                mel = mel[: frames * 4]
                if self.kind == "mel":
                    feats = mel.reshape(-1, 4, mel.shape[1]).mean(1)
                else:
                    flux = torch.diff(mel, dim=0, prepend=mel[:1]).clamp_min(0)  # (100 Hz, 128)
                    flux = flux.reshape(flux.shape[0], 8, 16).mean(2)  # 8 band groups
                    feats = flux.reshape(-1, 4 * 8)
            out.append(feats[:, None, :].numpy().astype(np.float32))
        return out


class MuQFrameExtractor:
    """Every hidden state of a MuQ-like model, frame by frame (25 Hz).

    Args:
        model: the MuQ model, float32.
        name: readable prefix of the cache id.
        precision: ``"float32"``, ``"bfloat16"`` or ``"int8"``, run as ``muqkit embed --dtype`` runs it
            (:func:`muqkit.eval.features.model_for_features`); the cache id names it.
    """

    def __init__(self, model: torch.nn.Module, name: str, *, precision: str = "float32") -> None:
        self.num_layers = count_hidden_states(model.eval())
        self.id = f"frames-{name}-{weights_fingerprint(model)}{precision_tag(precision)}"
        self.precision = precision
        self.model = model_for_features(model, precision, self.num_layers)

    @torch.no_grad()
    def embed_frames(self, wavs: Sequence[torch.Tensor]) -> list[np.ndarray]:
        # (layers, frames, dim) per item -> (frames, layers, dim), C-contiguous (as the cache writes it)
        return [h.transpose(0, 1).contiguous().numpy().astype(np.float32) for h in hidden_states(self.model, wavs)]


FRAME_ALIASES = {"mel": "mel", "chroma": "chroma", "onset": "onset", "rhythm": "onset"}


def has_frame_extractor(spec: str) -> bool:
    """Whether a model spec has frame features (or is an external frame reference)."""
    return spec in FRAME_ALIASES or spec in REFERENCES or spec.partition(":")[0] in ("random", "muq")


def make_frame_extractor(spec: str, *, dtype: str = "float32") -> FrameExtractor:
    """Build a frame extractor: ``mel`` | ``chroma`` | ``onset`` (``rhythm``) | ``random:PRESET`` | ``muq:PATH``;
    ``dtype`` is a MuQ's precision (as in :func:`muqkit.eval.features.make_extractor`)."""
    if spec in FRAME_ALIASES:
        return HandcraftedFrameExtractor(FRAME_ALIASES[spec])
    muq = muq_from_spec(spec)
    if muq is not None:
        return MuQFrameExtractor(*muq, precision=resolved_precision(dtype))
    raise ValueError(f"no frame features for {spec!r}: use mel, chroma, onset, rhythm, random:PRESET or muq:PATH")


@dataclass(frozen=True)
class FrameFeatures:
    """Frame features of a manifest: item ``ids[k]`` owns rows ``offsets[k]:offsets[k + 1]`` of ``values``.

    Attributes:
        ids: item ids.
        values: (total frames, layers, dim) float32.
        offsets: (items + 1,) int64.
        model_id: the extractor's id.
        seconds: time spent embedding (0 when cached).
    """

    ids: tuple[str, ...]
    values: np.ndarray
    offsets: np.ndarray
    model_id: str
    seconds: float = 0.0

    def index(self) -> dict[str, int]:
        return {i: k for k, i in enumerate(self.ids)}


def embed_frames(
    records: Sequence[AudioRecord],
    root: str | os.PathLike[str],
    extractor: FrameExtractor,
    *,
    cache_dir: str | os.PathLike[str] | None,
    batch_size: int = 8,
) -> FrameFeatures:
    """Frame features of every record, cached as ``<cache_dir>/<model id>/<key>.safetensors`` (float16)."""
    from safetensors.numpy import load_file, save_file

    path = None
    if cache_dir is not None:
        path = entry_path(cache_dir, extractor.id, cache_key(extractor.id, None, records))
        if path.is_file():
            data = load_file(str(path))
            ids = tuple(json.loads(data["ids_json"].tobytes().decode()))
            logger.info("frame features of %d items from %s", len(ids), path)
            return FrameFeatures(ids, data["features"].astype(np.float32), data["offsets"], extractor.id)
    t0 = time.perf_counter()
    arrays = embed_in_batches(records, root, extractor.embed_frames, batch_size=batch_size, model_id=extractor.id)
    offsets = np.concatenate([[0], np.cumsum([len(v) for v in arrays])]).astype(np.int64)
    stacked = np.concatenate(arrays).astype(np.float32)
    ids = tuple(r.id for r in records)
    if path is not None:
        with atomic_path(path, suffix=".safetensors") as tmp:
            ids_bytes = np.frombuffer(json.dumps(ids).encode(), dtype=np.uint8)
            # safetensors writes an array's buffer as it lies in memory: a transposed view would be stored scrambled
            features = np.ascontiguousarray(stacked, dtype=np.float16)
            save_file({"features": features, "offsets": offsets, "ids_json": ids_bytes.copy()}, str(tmp))
    return FrameFeatures(ids, stacked, offsets, extractor.id, time.perf_counter() - t0)


__all__ = [
    "FRAME_ALIASES",
    "FrameExtractor",
    "FrameFeatures",
    "HandcraftedFrameExtractor",
    "MuQFrameExtractor",
    "embed_frames",
    "has_frame_extractor",
    "make_frame_extractor",
]
