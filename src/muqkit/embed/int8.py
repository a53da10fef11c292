"""int8 inference of MuQ on the CPU, on PyTorch 2's export quantisation (torchao's ``X86InductorQuantizer``).

The mel frontend stays float32. The model after it (:class:`muqkit.export.onnx.MuQEncoderGraph`: the conv
front end and the Conformer) is captured with ``torch.export``, quantised statically with torchao's
``prepare_pt2e`` / ``convert_pt2e`` and the x86 quantiser (int8 weights per output channel, uint8
activations per tensor, calibrated on a fixed set of music-like signals; the convolutions and the linear
layers both), then compiled by Inductor with freezing, which runs them as oneDNN int8 kernels (VNNI or
AMX-INT8 where the CPU has them). ``bench/bench_int8.py`` measures this path against torchao's dynamic int8,
onnxruntime's ``quantize_dynamic`` and OpenVINO with NNCF; ``docs/benchmarks.md`` has the numbers.

Compilation takes a while (tens of seconds for small models, minutes for MuQ-large) and needs a C++
compiler; it happens once per input shape, so :class:`Int8MuQ` pads every batch to ``batch_size`` items
and to a whole number of ``pad_samples`` (the embedding's chunk length): a run compiles once or twice.
Padding never changes an item's frames (every step masks padded frames, as in float32).

    from muqkit import MuQ
    from muqkit.embed.int8 import quantize_muq

    int8 = quantize_muq(MuQ.from_pretrained("OpenMuQ/MuQ-large-msd-iter"), layers=(6, 12), batch_size=4)
    hidden = int8.encode_batch([wav], layers=(6, 12))   # [(2, frames, 1024)], float32
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from muqkit.ssl.muq import MuQ

CALIBRATION_CLIPS = 8
CALIBRATION_SECONDS = 10.0


def int8_problem() -> str | None:
    """Why int8 cannot run here (a missing package or C++ compiler), or ``None`` when it can."""
    from importlib.util import find_spec

    if find_spec("torchao") is None:
        return "--dtype int8 needs torchao: pip install 'muqkit[int8]'"
    compiler = os.environ.get("CXX") or "g++"
    if not any(shutil.which(name) for name in (compiler, "c++", "clang++")):
        return "--dtype int8 compiles the quantised model and needs a C++ compiler (g++ or clang++); none was found"
    return None


def calibration_signals(
    *, count: int = CALIBRATION_CLIPS, seconds: float = CALIBRATION_SECONDS, sample_rate: int = 24000, seed: int = 0
) -> list[torch.Tensor]:
    """Fixed music-like signals to calibrate activation ranges (the same every time, so int8 outputs are
    reproducible): chords of harmonic tones with vibrato, at several loudnesses, some clean (spectra with
    empty bands, down to the mel floor), some with noise, with clicks (onsets) and stretches of digital
    silence (as at the start and end of a track).

    Returns:
        ``count`` float32 (samples,) waveforms in [-1, 1].
    """
    gen = torch.Generator().manual_seed(seed)
    n = int(seconds * sample_rate)
    t = torch.arange(n, dtype=torch.float64) / sample_rate
    out = []
    for i in range(count):
        wave = torch.zeros(n, dtype=torch.float64)
        for _ in range(1 + i % 4):  # 1 to 4 notes
            f0 = 55.0 * 2 ** (float(torch.rand(1, generator=gen)) * 5)
            vibrato = 0.2 * torch.sin(2 * math.pi * (3 + 4 * float(torch.rand(1, generator=gen))) * t)
            for k in range(1, 7):
                wave += torch.sin(2 * math.pi * k * f0 * t + vibrato) / k**1.5
        wave = wave / wave.abs().max()
        noise = (0.0, 0.01, 0.1, 0.4)[i % 4]  # clean tones: empty bands in the spectrum
        wave += noise * torch.randn(n, generator=gen, dtype=torch.float64)
        wave[:: int(sample_rate * (0.25 + 0.25 * (i % 3)))] += 2.0  # clicks: onsets
        if i % 2:  # a stretch of silence
            start = int(float(torch.rand(1, generator=gen)) * n * 0.7)
            wave[start : start + n // 5] = 0.0
        gain = 10 ** (-float(torch.rand(1, generator=gen)) * 1.5)  # 0 to -30 dB
        out.append((0.9 * gain * wave / wave.abs().max()).float())
    return out


class Int8MuQ:
    """A MuQ whose encoder runs in int8 (see the module docstring); a drop-in for
    :func:`muqkit.embed.chunks.encode_batch` (``encode_batch``) with the float32 model's ``config``.

    Build it with :func:`quantize_muq`.
    """

    def __init__(self, muq: MuQ, compiled: Any, *, layers: tuple[int, ...], batch_size: int, pad_samples: int) -> None:
        # The float32 model's frontend and shapes only: its encoder weights are not kept.
        self.config = muq.config
        self.frontend = muq.frontend
        self._time_strides = tuple(int(block.stride[1]) for block in muq.conv._residual_blocks)
        self._compiled = compiled
        self.layers = layers
        self.batch_size = batch_size
        self.pad_samples = pad_samples
        self.name_or_path = muq.name_or_path
        self.revision = muq.revision
        self.min_samples = muq.min_samples

    def to(self, device: Any = None, dtype: Any = None) -> Int8MuQ:
        """Only the CPU (kept for the PyTorch model's interface)."""
        if device is not None and torch.device(device).type != "cpu":
            raise ValueError(f"--device {device}: int8 runs on the CPU")
        return self

    def eval(self) -> Int8MuQ:
        return self

    def num_frames(self, num_samples: torch.Tensor | int) -> torch.Tensor:
        """Output frames for inputs of ``num_samples`` samples (as :meth:`muqkit.MuQ.num_frames`)."""
        from muqkit.encoder.conv import conv_out_length

        frames = self.frontend.num_frames(torch.as_tensor(num_samples))
        for stride in self._time_strides:
            frames = conv_out_length(frames, stride)
        return frames

    def check_layers(self, layers: Sequence[int]) -> None:
        """Raise ``ValueError`` unless every layer was quantised."""
        missing = [layer for layer in layers if layer not in self.layers]
        if missing:
            raise ValueError(f"hidden states {missing} are not in this int8 model (it has {list(self.layers)})")

    def padded_shape(self, count: int, longest: int) -> tuple[int, int]:
        """(items, samples) a batch of ``count`` signals, the longest ``longest`` samples, is padded to."""
        items = max(count, self.batch_size)
        return items, self.pad_samples * max(1, math.ceil(longest / self.pad_samples))

    def encode_mel(self, mel: torch.Tensor, mel_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The int8 encoder on a normalised log-mel (batch, n_mels, frames) zero past ``mel_lengths`` (batch,)
        -> hidden (batch, num_layers, T, dim) float32 for :attr:`layers`, frames (batch,). A shape not seen
        before is compiled first. Call it without autograd and outside inference mode."""
        import torch._inductor.config as inductor_config

        with inductor_config.patch(freezing=True):  # weights folded into prepacked oneDNN int8 kernels
            return self._compiled(mel, mel_lengths)

    def encode_batch(self, wavs: Sequence[torch.Tensor], *, layers: tuple[int, ...]) -> list[torch.Tensor]:
        """Like :func:`muqkit.embed.chunks.encode_batch`: one (num_layers, frames_i, dim) float32 tensor per
        signal."""
        self.check_layers(layers)
        items, samples = self.padded_shape(len(wavs), max(w.numel() for w in wavs))
        # Inductor's frozen int8 kernels compile under no_grad, not inside inference mode (the pipeline's).
        with torch.inference_mode(False), torch.no_grad():
            batch = torch.zeros(items, samples)
            lengths = torch.full((items,), samples)  # padding items: full length, their outputs dropped
            for i, wav in enumerate(wavs):
                batch[i, : wav.numel()] = wav.float()
                lengths[i] = wav.numel()
            mel = self.frontend(batch, lengths)  # float32 (items, n_mels, frames), zero past lengths
            hidden, frames = self.encode_mel(mel.mel, mel.lengths)  # (items, num_layers, T, dim)
            pick = [self.layers.index(layer) for layer in layers]
            return [hidden[i, pick, : int(frames[i])].clone() for i in range(len(wavs))]


def quantize_muq(
    muq: MuQ,
    *,
    layers: Sequence[int],
    batch_size: int = 1,
    pad_samples: int | None = None,
    calibration: Sequence[torch.Tensor] | None = None,
) -> Int8MuQ:
    """Quantise a float32 MuQ's encoder to int8 for the CPU (the model is not changed).

    Args:
        muq: the model, float32, on the CPU.
        layers: the hidden states to compute (0 = conv front end, i = Conformer layer i).
        batch_size: batches are padded to this many items (one compiled shape).
        pad_samples: lengths are padded to a multiple of this (default: 30 s).
        calibration: waveforms at the model's sample rate to calibrate activation ranges (default:
            :func:`calibration_signals`; real music of the kind to be embedded suits a trained model best).

    Raises:
        ValueError: int8 cannot run here (:func:`int8_problem`), a layer out of range, or a model that is not
            a float32 PyTorch MuQ.
    """
    problem = int8_problem()
    if problem:
        raise ValueError(problem)
    if not isinstance(muq, torch.nn.Module):
        raise ValueError("--dtype int8 quantises a PyTorch model (--backend torch), not an exported graph")
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
        X86InductorQuantizer,
        get_default_x86_inductor_quantization_config,
    )

    from muqkit.export.onnx import MuQEncoderGraph

    depth = int(muq.config.encoder_depth)
    chosen = tuple(sorted({layer % (depth + 1) if layer < 0 else layer for layer in layers}))
    muq = muq.float().eval()
    encoder = MuQEncoderGraph(muq, chosen).eval()
    rate = int(muq.config.sample_rate)
    clips = list(calibration) if calibration is not None else calibration_signals(sample_rate=rate)
    if not clips:
        raise ValueError("calibration: give at least one waveform")
    mels = []
    with torch.no_grad():
        for clip in clips:
            clip = clip.float().reshape(1, -1)
            out = muq.frontend(clip, torch.tensor([clip.shape[1]]))
            mels.append((out.mel, out.lengths))
        # Two items of different lengths, so that export keeps batch and length symbolic.
        first = mels[0][0]
        example = (torch.cat([first, first]), torch.tensor([first.shape[-1], first.shape[-1] - 7]))
        batch = torch.export.Dim("batch")
        dims = {"mel": {0: batch, 2: torch.export.Dim.AUTO}, "mel_lengths": {0: batch}}
        program = torch.export.export(encoder, example, dynamic_shapes=dims).module()
        quantizer = X86InductorQuantizer().set_global(get_default_x86_inductor_quantization_config())
        prepared = prepare_pt2e(program, quantizer)  # type: ignore[arg-type]
        for mel, lengths in mels:
            prepared(mel, lengths)
        converted = convert_pt2e(prepared)
    # Static shapes: the x86 int8 lowering does not take symbolic ones; freezing folds the weights into the
    # prepacked oneDNN int8 kernels.
    compiled = torch.compile(converted, dynamic=False)
    pad = int(pad_samples) if pad_samples else 30 * rate
    return Int8MuQ(muq, compiled, layers=chosen, batch_size=max(1, int(batch_size)), pad_samples=pad)


__all__ = ["Int8MuQ", "calibration_signals", "int8_problem", "quantize_muq"]
