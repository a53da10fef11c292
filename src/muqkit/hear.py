"""The HEAR 2021 API for MuQ, so muqkit drops into hear-eval-kit (``python -m heareval.embeddings.runner
muqkit.hear --model PATH``).

* :func:`load_model` returns a ``torch.nn.Module`` with ``sample_rate`` (48000: HEAR 2021 accepts only
  16000, 22050, 44100 and 48000 Hz, and hear-eval-kit prepares only those; the audio is resampled to
  MuQ's 24 kHz inside, with the soxr resampler :func:`muqkit.embed.embed_paths` uses),
  ``scene_embedding_size`` and ``timestamp_embedding_size``;
* :func:`get_timestamp_embeddings` maps audio (n_sounds, n_samples) to embeddings
  (n_sounds, n_timestamps, timestamp_embedding_size) and timestamps (n_sounds, n_timestamps) in
  milliseconds: frame ``k`` is centred at ``k * 40`` ms (25 Hz frames, see :mod:`muqkit.embed`);
* :func:`get_scene_embeddings` maps audio to (n_sounds, scene_embedding_size), the mean of the
  timestamp embeddings over time.

Default embedding: the mean of all hidden states (the conv front end and every Conformer layer, equal
weights), ``encoder_dim`` wide (1024 for MuQ-large). MuQ's best layer differs between tasks (middle
layers for tagging and key, later ones for structure), and the layer average is a robust single choice
that keeps the embedding as narrow as one layer. ``load_model(..., layers=[...], reduce="concat")``
picks other layers or concatenates them instead.

Sounds longer than ``chunk_seconds`` are encoded in chunks (as :func:`muqkit.embed.embed_paths` does);
sounds shorter than one frame (40 ms) are zero-padded to 40 ms. Embeddings are computed under
``torch.inference_mode()`` (no autograd graph is kept).

Check with the official validator: ``hear-validator muqkit.hear --model DIR``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
from torch import nn

from muqkit.audio.io import resample
from muqkit.audio.tensors import as_waveforms
from muqkit.embed.chunks import (
    Chunk,
    LayerSpec,
    chunk_bounds,
    chunk_length,
    encode_chunks,
    resolve_layers,
    samples_per_frame,
)
from muqkit.hub.defaults import default_muq_model

if TYPE_CHECKING:
    from muqkit.ssl.muq import MuQ

Reduce = Literal["mean", "concat"]
# The input rates HEAR 2021 allows; hear-eval-kit prepares tasks at these rates only.
HEAR_SAMPLE_RATES = (16000, 22050, 44100, 48000)
DEFAULT_SAMPLE_RATE = 48000

__all__ = [
    "DEFAULT_SAMPLE_RATE",
    "HEAR_SAMPLE_RATES",
    "HearMuQ",
    "get_scene_embeddings",
    "get_timestamp_embeddings",
    "load_model",
]


class HearMuQ(nn.Module):
    """MuQ wrapped with the attributes and options the HEAR API needs.

    Args:
        muq: the encoder (a :class:`muqkit.MuQ`).
        layers: hidden states to use: ``"all"`` or indices (0 = conv front end, i = Conformer layer i).
        reduce: ``"mean"`` averages the chosen layers, ``"concat"`` concatenates them.
        chunk_seconds: longest piece of audio encoded in one pass.
        batch_size: chunks per model call.
        sample_rate: the rate of the audio given to the API (default 48000; one of ``HEAR_SAMPLE_RATES``
            for hear-eval-kit, or MuQ's own rate to skip resampling).

    Attributes:
        sample_rate: input sample rate in Hz (48000 unless asked otherwise).
        model_sample_rate: the rate MuQ reads (24000); input is resampled to it.
        scene_embedding_size: width of a scene embedding.
        timestamp_embedding_size: width of a timestamp embedding.
    """

    def __init__(
        self,
        muq: MuQ,
        *,
        layers: LayerSpec = "all",
        reduce: Reduce = "mean",
        chunk_seconds: float = 30.0,
        batch_size: int = 8,
        sample_rate: int = DEFAULT_SAMPLE_RATE,
    ) -> None:
        super().__init__()
        if int(sample_rate) != sample_rate or sample_rate <= 0:
            raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
        if reduce not in ("mean", "concat"):
            raise ValueError(f"reduce must be 'mean' or 'concat', got {reduce!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        config = muq.config
        self.muq = muq
        self.layers = resolve_layers(layers, int(config.encoder_depth) + 1)
        self.reduce = reduce
        self.chunk_samples = chunk_length(chunk_seconds, config)
        self.batch_size = batch_size
        self.frame_samples = samples_per_frame(config)
        self.frame_rate = float(config.frame_rate)
        self.model_sample_rate = int(config.sample_rate)
        self.sample_rate = int(sample_rate)
        width = int(config.encoder_dim) * (len(self.layers) if reduce == "concat" else 1)
        self.scene_embedding_size = width
        self.timestamp_embedding_size = width

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Same as :func:`get_timestamp_embeddings`."""
        return get_timestamp_embeddings(audio, self)


def load_model(model_file_path: str = "", **kwargs: object) -> HearMuQ:
    """Load MuQ for the HEAR API.

    Args:
        model_file_path: a checkpoint folder in the official format, or a Hub id; empty for
            the default model (:func:`muqkit.hub.defaults.default_muq_model`).
        **kwargs: ``revision`` and ``cache_dir`` (Hub download), and the options of :class:`HearMuQ`
            (``layers``, ``reduce``, ``chunk_seconds``, ``batch_size``, ``sample_rate``).

    Returns:
        The model in eval mode, on the CPU (the caller moves it).
    """
    from muqkit.ssl.muq import MuQ

    revision = kwargs.pop("revision", None)
    cache_dir = kwargs.pop("cache_dir", None)
    muq = MuQ.from_pretrained(model_file_path or default_muq_model(), revision=revision, cache_dir=cache_dir)  # type: ignore[arg-type]
    return HearMuQ(muq.eval(), **kwargs).eval()  # type: ignore[arg-type]


def get_timestamp_embeddings(audio: torch.Tensor, model: HearMuQ) -> tuple[torch.Tensor, torch.Tensor]:
    """Frame embeddings of a batch of sounds.

    Args:
        audio: (n_sounds, n_samples) mono at ``model.sample_rate``, in [-1, 1].
        model: from :func:`load_model`.

    Returns:
        ``(embeddings, timestamps)``: float32 (n_sounds, n_timestamps, timestamp_embedding_size) and
        float32 (n_sounds, n_timestamps), the centre of each frame in milliseconds, on ``audio``'s
        device. Frames come at 25 Hz (every 40 ms). Computed under ``torch.inference_mode()``.
    """
    if not isinstance(audio, torch.Tensor) or audio.dim() != 2:
        shape = tuple(audio.shape) if hasattr(audio, "shape") else type(audio).__name__
        raise ValueError(f"audio must be a (n_sounds, n_samples) tensor, got {shape}")
    with torch.inference_mode():
        return _timestamp_embeddings(audio, model)


def _timestamp_embeddings(audio: torch.Tensor, model: HearMuQ) -> tuple[torch.Tensor, torch.Tensor]:
    device = audio.device
    audio = as_waveforms(audio, name="audio")
    if model.sample_rate != model.model_sample_rate:  # (n, samples) -> (n, samples'), soxr like embed
        resampled = resample(audio.detach().float().cpu().numpy().T, model.sample_rate, model.model_sample_rate)
        audio = torch.from_numpy(resampled.T.copy()).to(device)
    n_sounds, n_samples = audio.shape
    if n_samples < model.frame_samples:  # shorter than one frame: zero-pad to 40 ms
        audio = torch.nn.functional.pad(audio, (0, model.frame_samples - n_samples))
        n_samples = model.frame_samples
    bounds = chunk_bounds(n_samples, chunk_samples=model.chunk_samples, min_samples=model.frame_samples)
    chunks = (
        Chunk(key=i, index=c, samples=audio[i, start:end], last=c == len(bounds) - 1)
        for i in range(n_sounds)
        for c, (start, end) in enumerate(bounds)
    )
    per_sound: list[list[torch.Tensor]] = [[] for _ in range(n_sounds)]
    for out in encode_chunks(model.muq, chunks, layers=model.layers, batch_size=model.batch_size):
        per_sound[out.key].append(out.hidden)  # (layers, T, dim)
    hidden = torch.stack([torch.cat(parts, dim=1) for parts in per_sound]).float()  # (n, layers, T, dim)
    if model.reduce == "mean":
        embeddings = hidden.mean(dim=1)  # (n, T, dim)
    else:
        embeddings = hidden.permute(0, 2, 1, 3).flatten(2)  # (n, T, layers * dim), layer-major
    frames = embeddings.shape[1]
    timestamps = torch.arange(frames, device=device, dtype=torch.float32) * (1000.0 / model.frame_rate)
    return embeddings.to(device), timestamps.expand(n_sounds, frames).contiguous()


def get_scene_embeddings(audio: torch.Tensor, model: HearMuQ) -> torch.Tensor:
    """One embedding per sound: the mean of its timestamp embeddings over time.

    Args:
        audio: (n_sounds, n_samples) mono at ``model.sample_rate``.
        model: from :func:`load_model`.

    Returns:
        float32 (n_sounds, scene_embedding_size), on ``audio``'s device.
    """
    embeddings, _ = get_timestamp_embeddings(audio, model)
    with torch.inference_mode():
        return embeddings.mean(dim=1)
