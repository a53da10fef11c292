"""Chunked, batched encoding: the engine shared by :func:`muqkit.embed.embed_paths` and :mod:`muqkit.hear`.

Long audio is cut into chunks of a fixed number of samples, a whole number of output frames long, so
the frames of consecutive chunks concatenate into the frame grid of the whole signal: chunk ``c``
starts at frame ``c * chunk_frames`` and the concatenation has exactly ``model.num_frames(samples)``
frames. A final remainder shorter than one frame period (40 ms) is merged into the chunk before it.
Chunks do not overlap: a frame sees context from its own chunk only, so frames within a few seconds
of a chunk boundary differ from those of an unchunked pass (the receptive field of the Conformer is
the whole chunk); a signal no longer than one chunk is encoded in one pass.

Chunks of several signals are stacked into one padded batch with per-item ``lengths``. MuQ is
padding-exact (an item's valid frames do not depend on what it is batched with), so batching changes
neither the frames nor the number of model calls per chunk.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch

if TYPE_CHECKING:
    from muqkit.ssl.muq import MuQ, MuQConfig

LayerSpec = Literal["all"] | Sequence[int] | int


@dataclass(frozen=True)
class Chunk:
    """A piece of one signal, to be encoded.

    Attributes:
        key: which signal the chunk belongs to.
        index: position of the chunk within its signal (0, 1, ...).
        samples: (samples,) float waveform at the model's rate.
        last: whether this is the signal's final chunk.
    """

    key: int
    index: int
    samples: torch.Tensor
    last: bool


@dataclass(frozen=True)
class ChunkOutput:
    """The frames of one encoded chunk.

    Attributes:
        key: the signal the chunk belongs to.
        index: position of the chunk within its signal.
        hidden: (num_layers, frames, dim), the requested hidden states in the requested order, on the
            model's device, in the model's dtype.
        last: whether this was the signal's final chunk.
    """

    key: int
    index: int
    hidden: torch.Tensor
    last: bool


def samples_per_frame(config: MuQConfig) -> int:
    """Input samples per output frame (960 for MuQ: 24 kHz / 25 Hz)."""
    sample_rate, frame_rate = int(config.sample_rate), float(config.frame_rate)
    hop = sample_rate / frame_rate
    if abs(hop - round(hop)) > 1e-9:
        raise ValueError(f"sample rate {sample_rate} is not a whole number of frames at {frame_rate} Hz")
    return round(hop)


def chunk_length(chunk_seconds: float, config: MuQConfig) -> int:
    """``chunk_seconds`` in samples, rounded down to a whole number of output frames (at least one)."""
    if not (chunk_seconds > 0 and math.isfinite(chunk_seconds)):
        raise ValueError(f"chunk_seconds must be a finite positive number, got {chunk_seconds}")
    hop = samples_per_frame(config)
    frames = int(chunk_seconds * config.sample_rate / hop + 1e-9)
    if frames < 1:
        raise ValueError(f"chunk_seconds={chunk_seconds} is shorter than one frame ({hop} samples)")
    return frames * hop


def chunk_bounds(num_samples: int, *, chunk_samples: int, min_samples: int) -> list[tuple[int, int]]:
    """``(start, end)`` sample ranges of the chunks of a signal of ``num_samples`` samples.

    Chunks are ``chunk_samples`` long, the last one shorter; a last one shorter than ``min_samples``
    is merged into the one before it.
    """
    bounds = [(s, min(s + chunk_samples, num_samples)) for s in range(0, num_samples, chunk_samples)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] < min_samples:
        bounds[-2:] = [(bounds[-2][0], num_samples)]
    return bounds


def merge_short_tail(blocks: Iterable[torch.Tensor], *, min_samples: int) -> Iterator[tuple[torch.Tensor, bool]]:
    """Yield ``(block, is_last)`` from fixed-size blocks whose final one may be short, merging a final
    block shorter than ``min_samples`` into the one before it (as :func:`chunk_bounds` does).

    Holds one block back to know which is last, so the caller sees at most two blocks at a time.
    """
    held: torch.Tensor | None = None
    for block in blocks:
        if held is not None:
            if block.numel() < min_samples:  # a short block can only be the final one
                held = torch.cat([held, block])
                continue
            yield held, False
        held = block
    if held is not None:
        yield held, True


def resolve_layers(layers: LayerSpec, num_hidden_states: int) -> tuple[int, ...]:
    """Normalise a layer request to indices into ``hidden_states``.

    Args:
        layers: ``"all"``, one index, or a sequence of indices; 0 is the conv front end, ``i`` the
            ``i``-th Conformer layer; negative indices count from the end (-1 is the last layer).
        num_hidden_states: ``encoder_depth + 1``.

    Returns:
        Non-negative indices, in the requested order.

    Raises:
        ValueError: an index is out of range, repeated, or the request is empty.
    """
    if isinstance(layers, str):
        if layers != "all":
            raise ValueError(f"layers must be 'all' or a list of indices, got {layers!r}")
        return tuple(range(num_hidden_states))
    requested = [layers] if isinstance(layers, int) else list(layers)
    if not requested:
        raise ValueError("layers is empty; give 'all' or at least one index")
    resolved = []
    for layer in requested:
        if isinstance(layer, bool) or not isinstance(layer, int):
            raise ValueError(f"layer indices must be integers, got {layer!r}")
        if not -num_hidden_states <= layer < num_hidden_states:
            raise ValueError(
                f"layer {layer} out of range: this model has hidden states 0..{num_hidden_states - 1} "
                "(0 = conv front end, i = Conformer layer i)"
            )
        resolved.append(layer % num_hidden_states)
    if len(set(resolved)) != len(resolved):
        raise ValueError(f"layers {requested} name a hidden state twice")
    return tuple(resolved)


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of a model's first parameter (CPU for a model without parameters)."""
    for parameter in model.parameters():
        return parameter.device
    return torch.device("cpu")


def encode_batch(model: MuQ, wavs: Sequence[torch.Tensor], *, layers: tuple[int, ...]) -> list[torch.Tensor]:
    """Encode signals of different lengths in one padded batch.

    Args:
        model: a MuQ-like encoder.
        wavs: (samples,) waveforms, each at least one frame long.
        layers: indices into ``hidden_states`` (see :func:`resolve_layers`).

    Returns:
        One (num_layers, frames_i, dim) tensor per signal, its valid frames only, on the model's device.
    """
    if not isinstance(model, torch.nn.Module) and hasattr(model, "encode_batch"):  # another backend (onnxruntime)
        return model.encode_batch(wavs, layers=layers)
    device = model_device(model)
    lengths = torch.tensor([w.numel() for w in wavs], device=device)
    batch = torch.zeros(len(wavs), int(lengths.max()), device=device)  # (batch, samples), zero padded
    for i, wav in enumerate(wavs):
        batch[i, : wav.numel()] = wav.to(device=device, dtype=batch.dtype)
    depth = int(model.config.encoder_depth)
    deepest = max(layers)
    # Layers past the deepest requested one need not run (the last layer carries the final LayerNorm).
    kwargs = {"num_layers": deepest} if deepest < depth else {}
    out = model(batch, lengths=lengths, output_hidden_states=True, **kwargs)
    assert out.hidden_states is not None
    states = out.hidden_states  # tuple of (batch, T, dim)
    frames = out.lengths.tolist()
    return [torch.stack([states[layer][i, : frames[i]] for layer in layers]) for i in range(len(wavs))]


def encode_chunks(
    model: MuQ, chunks: Iterable[Chunk], *, layers: tuple[int, ...], batch_size: int
) -> Iterator[ChunkOutput]:
    """Encode a stream of chunks ``batch_size`` at a time, yielding their outputs in input order.

    Chunks are pulled from ``chunks`` lazily, so at most ``batch_size`` chunks are held at once.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    pending: list[Chunk] = []

    def flush() -> Iterator[ChunkOutput]:
        hidden = encode_batch(model, [c.samples for c in pending], layers=layers)
        for chunk, h in zip(pending, hidden, strict=True):
            yield ChunkOutput(key=chunk.key, index=chunk.index, hidden=h, last=chunk.last)
        pending.clear()

    for chunk in chunks:
        pending.append(chunk)
        if len(pending) == batch_size:
            yield from flush()
    if pending:
        yield from flush()
