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


def padded_mel(
    frontend: torch.nn.Module, batch: torch.Tensor, lengths: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The float32 frontend on a (batch, samples) batch with (batch,) valid samples: the normalised log-mel
    (batch, n_mels, frames) as long as ``samples`` gives, zero past each item's frames (the frontend alone
    stops at the longest item's, which would be another compiled shape), and the (batch,) valid frames."""
    out = frontend(batch, lengths)
    frames = int(frontend.num_frames(torch.tensor(batch.shape[1])))  # type: ignore[operator]
    mel = torch.nn.functional.pad(out.mel, (0, frames - out.mel.shape[-1]))
    return mel, out.lengths


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
            mel, mel_lengths = padded_mel(self.frontend, batch, lengths)  # float32 (items, n_mels, frames)
            hidden, frames = self.encode_mel(mel, mel_lengths)  # (items, num_layers, T, dim)
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
    compiled = quantize_graph(encoder, example, mels, dynamic_shapes=dims)
    pad = int(pad_samples) if pad_samples else 30 * rate
    return Int8MuQ(muq, compiled, layers=chosen, batch_size=max(1, int(batch_size)), pad_samples=pad)


def quantize_graph(
    graph: torch.nn.Module,
    example: tuple[torch.Tensor, ...],
    calibration: Sequence[tuple[torch.Tensor, ...]],
    *,
    dynamic_shapes: dict[str, Any] | None = None,
) -> Any:
    """PyTorch 2 export quantisation of an export-form module for the x86 CPU: ``torch.export`` on
    ``example`` (static shapes unless ``dynamic_shapes``), torchao's ``prepare_pt2e`` with the
    ``X86InductorQuantizer`` (int8 weights per output channel, uint8 activations per tensor; convolutions
    and linear layers), activation ranges from calling it on each input tuple of ``calibration``,
    ``convert_pt2e``, then ``torch.compile`` with static shapes (call the result under
    ``torch._inductor.config.patch(freezing=True)`` and ``torch.no_grad()``, outside inference mode).
    """
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
        X86InductorQuantizer,
        get_default_x86_inductor_quantization_config,
    )

    with torch.no_grad():
        program = torch.export.export(graph.eval(), example, dynamic_shapes=dynamic_shapes).module()
        quantizer = X86InductorQuantizer().set_global(get_default_x86_inductor_quantization_config())
        prepared = prepare_pt2e(program, quantizer)  # type: ignore[arg-type]
        for inputs in calibration:
            prepared(*inputs)
        converted = convert_pt2e(prepared)
    # Static shapes: the x86 int8 lowering does not take symbolic ones; freezing folds the weights into the
    # prepacked oneDNN int8 kernels.
    return torch.compile(converted, dynamic=False)


class Int8MuLanAudio:
    """MuQ-MuLan's audio tower in int8: the MuQ backbone, the projection, the tower's transformer and the
    latent projection, quantised together (:func:`quantize_mulan_audio`); the mel frontend stays float32.

    Clips run ``batch_size`` at a time, each padded to the clip length (one compiled shape): padding is
    masked everywhere (:class:`muqkit.export.onnx.MuLanAudioEncoderGraph`), so it does not change a clip's
    latent.
    """

    def __init__(self, frontend: torch.nn.Module, compiled: Any, *, batch_size: int, clip_samples: int) -> None:
        self.frontend = frontend
        self._compiled = compiled
        self.batch_size = batch_size
        self.clip_samples = clip_samples

    def clip_latents(self, clips: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(clips, samples) waveforms, at most ``clip_samples`` long, with (clips,) valid samples (``None``:
        all) -> (clips, dim_latent) float32 unit latents."""
        import torch._inductor.config as inductor_config

        count, samples = clips.shape
        if samples > self.clip_samples:
            raise ValueError(f"clips of {samples} samples are longer than the model's {self.clip_samples}")
        lengths = torch.full((count,), samples) if lengths is None else lengths.cpu()
        out = []
        with torch.inference_mode(False), torch.no_grad(), inductor_config.patch(freezing=True):
            for start in range(0, count, self.batch_size):
                part = clips[start : start + self.batch_size].float().cpu()
                batch = torch.zeros(self.batch_size, self.clip_samples)
                batch[: part.shape[0], :samples] = part
                valid = torch.full((self.batch_size,), self.clip_samples)  # padding items: dropped
                valid[: part.shape[0]] = lengths[start : start + self.batch_size]
                mel, mel_lengths = padded_mel(self.frontend, batch, valid)  # float32 (batch, n_mels, frames)
                out.append(self._compiled(mel, mel_lengths)[: part.shape[0]].clone())
        return torch.cat(out)


def quantize_mulan_audio(
    mulan: Any, *, batch_size: int = 4, calibration: Sequence[torch.Tensor] | None = None
) -> Int8MuLanAudio:
    """Quantise a float32 MuQ-MuLan's audio tower to int8 for the CPU, on the PyTorch 2 export path of
    :func:`quantize_muq` (the model is not changed).

    Args:
        mulan: a :class:`muqkit.mulan.MuQMuLan`, float32, on the CPU.
        batch_size: clips per call (a batch is padded to this many).
        calibration: waveforms at the model's rate, each cut to its first clip (default:
            :func:`calibration_signals`, one clip long each).

    Raises:
        ValueError: int8 cannot run here (:func:`int8_problem`).
    """
    problem = int8_problem()
    if problem:
        raise ValueError(problem)
    from muqkit.export.onnx import MuLanAudioEncoderGraph

    mulan = mulan.float().eval()
    clip = int(mulan.config.clip_samples)
    frontend = mulan.audio.backbone.frontend
    rate = int(mulan.sample_rate)
    signals = list(calibration) if calibration is not None else calibration_signals(
        seconds=clip / rate, sample_rate=rate)  # fmt: skip
    if not signals:
        raise ValueError("calibration: give at least one waveform")
    size = max(1, int(batch_size))
    batches = []
    with torch.no_grad():
        for start in range(0, len(signals), size):
            part = [w.float().reshape(-1)[:clip] for w in signals[start : start + size]]
            part += part[: size - len(part)] * size  # a short last batch: filled with its own clips
            part = part[:size]
            batch = torch.zeros(size, clip)
            for i, w in enumerate(part):
                batch[i, : w.numel()] = w
            batches.append(padded_mel(frontend, batch, torch.tensor([w.numel() for w in part])))
    compiled = quantize_graph(MuLanAudioEncoderGraph(mulan), batches[0], batches)
    return Int8MuLanAudio(frontend, compiled, batch_size=size, clip_samples=clip)


__all__ = [
    "Int8MuLanAudio",
    "Int8MuQ",
    "calibration_signals",
    "int8_problem",
    "padded_mel",
    "quantize_graph",
    "quantize_muq",
    "quantize_mulan_audio",
]
