"""MuQ-MuLan in int8 on the CPU, both towers.

The text tower: the exported text graph (:class:`muqkit.export.onnx.MuLanTextGraph`) with each weight matrix
product turned into onnxruntime's ``MatMulNBits`` at 8 bits (``MatMulNBitsQuantizer``): int8 weights with one
scale per block of 32 input channels of each output channel, and ``accuracy_level=4``, under which onnxruntime
quantises the activations to int8 per row and block as well and multiplies in int8. A text query is a handful of
tokens through a BERT-sized backbone and the tower's transformer: matrix products on few rows, bound by reading
the weights, which int8 reads a quarter of. The scales per row and block follow the outliers of a transformer's
activations, which one scale per matrix call (``quantize_dynamic``, ``text_scales="channel"`` or
``"matrix"``) does not: on a trained tiny MuQ-MuLan the captions' lowest cosine to float32 is 0.9994 against
0.9888, at about 2.4x the time of ``quantize_dynamic`` and a third of float32's (``bench/bench_text_int8.py``,
``docs/benchmarks.md``). torchao's dynamic int8 (per-token activation scales) in eager PyTorch was between the
two in fidelity and slower than both.

The audio tower: the MuQ backbone, the projection, the tower's transformer and the latent projection on
PyTorch 2's export quantisation, as MuQ in ``muqkit embed --dtype int8``
(:func:`muqkit.embed.int8.quantize_mulan_audio`; the mel frontend stays float32). It is quantised and
compiled on the first audio call, so a server that only embeds text queries never pays for it.

    int8 = quantize_mulan(MuQMuLan.from_pretrained("OpenMuQ/MuQ-MuLan-large"))
    int8.extract_text_latents(["a calm piano piece"])     # (1, 512) float32, unit length
    int8.extract_audio_latents([wav])                     # (1, 512) float32, from the int8 audio tower
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

if TYPE_CHECKING:
    from muqkit.mulan.model import MuQMuLan


def text_int8_problem() -> str | None:
    """Why the int8 text tower cannot run here (onnxruntime or onnx missing), or ``None``."""
    from importlib.util import find_spec

    missing = [name for name in ("onnxruntime", "onnx", "onnxscript") if find_spec(name) is None]
    return f"--dtype int8 for MuQ-MuLan needs {', '.join(missing)}: pip install 'muqkit[onnx]'" if missing else None


TextScales = Literal["block", "channel", "matrix"]
# Input channels per weight (and activation) scale of the "block" text tower; 16 was as close and slower, 64 faster
# and further (the trained tiny MuQ-MuLan's captions: lowest cosine 0.9995, 0.9994 and 0.9987 for 16, 32 and 64).
TEXT_BLOCK_SIZE = 32


class Int8MuLan:
    """A MuQ-MuLan whose ``extract_text_latents`` runs the int8 text graph and whose ``extract_audio_latents``
    runs the int8 audio tower (built on its first call; the float32 model's with ``audio=False``); every other
    attribute is the float32 model's (``config``, ``sample_rate``, ``calc_similarity``, ...). Build it with
    :func:`quantize_mulan`.
    """

    def __init__(self, mulan: MuQMuLan, session: Any, *, audio: bool = True, audio_batch_size: int = 4) -> None:
        self._mulan = mulan
        self._session = session
        self.audio_int8 = audio
        self.audio_batch_size = audio_batch_size
        self._audio: Any = None

    def __getattr__(self, name: str) -> Any:  # only for names the wrapper does not have
        return getattr(self._mulan, name)

    def to(self, device: Any = None, dtype: Any = None) -> Int8MuLan:
        """Only the CPU (kept for the PyTorch model's interface)."""
        if device is not None and torch.device(device).type != "cpu":
            raise ValueError(f"--device {device}: int8 runs on the CPU")
        return self

    def eval(self) -> Int8MuLan:
        return self

    def extract_audio_latents(
        self,
        wavs: torch.Tensor | Sequence[torch.Tensor],
        lengths: torch.Tensor | None = None,
        *,
        clip_batch_size: int = 32,
        parallel_processing: bool | None = None,
    ) -> torch.Tensor:
        """(B, dim_latent) float32 audio latents as :meth:`muqkit.mulan.MuQMuLan.extract_audio_latents` computes
        them (the same clips, the mean of their unit latents), each clip through the int8 audio tower
        (``clip_batch_size`` is accepted for the PyTorch model's interface: the int8 tower runs its own
        batch size)."""
        if not self.audio_int8:
            return self._mulan.extract_audio_latents(wavs, lengths, clip_batch_size=clip_batch_size,
                                                     parallel_processing=parallel_processing)  # fmt: skip
        from muqkit.mulan.model import song_latents

        del clip_batch_size, parallel_processing
        if self._audio is None:
            from muqkit.embed.int8 import quantize_mulan_audio

            self._audio = quantize_mulan_audio(self._mulan, batch_size=self.audio_batch_size)
        config = self._mulan.config
        return song_latents(wavs, lengths, int(config.clip_samples), int(config.dim_latent), self._audio.clip_latents)

    def extract_text_latents(self, texts: Sequence[str], *, batch_size: int = 1) -> torch.Tensor:
        """(B, dim_latent) float32 unit latents, tokenised as the PyTorch tower does. Texts go one at a time
        (``batch_size`` is accepted for the PyTorch model's interface): ``quantize_dynamic`` (``text_scales``
        ``"channel"`` or ``"matrix"``) quantises each call's activations with one scale, so padding in a batch
        would change a text's latent."""
        if isinstance(texts, str):
            raise TypeError("texts must be a list of strings, not one string")
        del batch_size
        out = torch.zeros(len(texts), int(self._mulan.config.dim_latent))
        for i, text in enumerate(texts):
            batch = self._mulan.text.tokenize([text])
            feeds = {"input_ids": batch.input_ids.numpy().astype(np.int64),
                     "attention_mask": batch.attention_mask.numpy().astype(np.int64)}  # fmt: skip
            out[i] = torch.from_numpy(self._session.run(None, feeds)[0][0]).float()
        return out


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def quantize_mulan(
    mulan: MuQMuLan,
    *,
    threads: int | None = None,
    audio: bool = True,
    audio_batch_size: int = 4,
    text_scales: TextScales = "block",
) -> Int8MuLan:
    """MuQ-MuLan with both towers in int8 (the model is kept, in float32, for everything else): the text
    tower exported to ONNX, quantised and loaded in onnxruntime now; the audio tower quantised
    (:func:`muqkit.embed.int8.quantize_mulan_audio`) on the first audio call.

    Args:
        mulan: the float32 model, on the CPU.
        threads: onnxruntime's threads for the text tower (default: its own choice).
        audio: ``False`` keeps the audio tower in float32 (the text tower alone in int8).
        audio_batch_size: clips per call of the int8 audio tower.
        text_scales: the text tower's int8 scales. ``"block"`` (the default): ``MatMulNBits`` at 8 bits, weights
            and activations with one scale per block of :data:`TEXT_BLOCK_SIZE` input channels (per output
            channel, per row). ``"channel"``: ``quantize_dynamic``, weights with one scale per output channel,
            activations one per call. ``"matrix"``: ``quantize_dynamic``, one weight scale per matrix. The
            trained tiny MuQ-MuLan's captions, lowest cosine to float32: 0.9994, 0.9888 and 0.923
            (``docs/benchmarks.md``).

    Raises:
        ValueError: onnxruntime or onnx is not installed (:func:`text_int8_problem`), or, with ``audio``,
            torchao or a C++ compiler is missing (:func:`muqkit.embed.int8.int8_problem`).
    """
    problem = text_int8_problem()
    if not problem and audio:
        from muqkit.embed.int8 import int8_problem

        problem = int8_problem()
    if problem:
        raise ValueError(problem)
    if text_scales not in ("block", "channel", "matrix"):
        raise ValueError(f"text_scales must be 'block', 'channel' or 'matrix', got {text_scales!r}")
    import onnxruntime as ort

    from muqkit.export.onnx import MuLanTextGraph, export_graph

    mulan = mulan.float().eval()
    batch = mulan.text.tokenize(["a calm piano piece in a minor key", "drums"])
    texts, tokens = torch.export.Dim("texts", min=1), torch.export.Dim("tokens", min=2, max=int(mulan.text.max_length))
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    with tempfile.TemporaryDirectory() as tmp:
        graph, quantised = Path(tmp) / "text.onnx", Path(tmp) / "text-int8.onnx"
        export_graph(MuLanTextGraph(mulan).eval(), (batch.input_ids, batch.attention_mask), graph,
                dynamic={"input_ids": {0: texts, 1: tokens}, "attention_mask": {0: texts, 1: tokens}},
                inputs=["input_ids", "attention_mask"], outputs=["latents"])  # fmt: skip
        with _quiet_root_logger():  # the quantisers advise and report on the root logger each time
            _quantize_text_graph(graph, quantised, text_scales)
        session = ort.InferenceSession(str(quantised), options, providers=["CPUExecutionProvider"])
    return Int8MuLan(mulan, session, audio=audio, audio_batch_size=audio_batch_size)


def _import_matmul_nbits_quantizer() -> Any:
    """onnxruntime's ``matmul_nbits_quantizer`` module, imported without its side effect on logging: its import
    calls ``logging.basicConfig(level=INFO)``, which (where the root logger has no handler yet) would add a
    handler and print every node it skips, and leave the process's logging configured by onnxruntime."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    from onnxruntime.quantization import matmul_nbits_quantizer

    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
    root.setLevel(level)
    return matmul_nbits_quantizer


def _quantize_text_graph(graph: Path, out: Path, text_scales: TextScales) -> None:
    """Write ``graph``'s weight matrix products in int8 to ``out`` (``text_scales`` as :func:`quantize_mulan`)."""
    if text_scales == "block":
        import onnx

        nbits = _import_matmul_nbits_quantizer()
        config = nbits.DefaultWeightOnlyQuantConfig(block_size=TEXT_BLOCK_SIZE, is_symmetric=True, accuracy_level=4,
                                                    bits=8)  # fmt: skip
        quantizer = nbits.MatMulNBitsQuantizer(onnx.load(str(graph)), algo_config=config)
        quantizer.process()
        quantizer.model.save_model_to_file(str(out), False)
        return
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(graph), str(out), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"],
                     per_channel=text_scales == "channel")  # fmt: skip


def quantize_mulan_text(mulan: MuQMuLan, *, threads: int | None = None, text_scales: TextScales = "block") -> Int8MuLan:
    """MuQ-MuLan with the text tower alone in int8 (:func:`quantize_mulan` with ``audio=False``)."""
    return quantize_mulan(mulan, threads=threads, audio=False, text_scales=text_scales)


__all__ = ["TEXT_BLOCK_SIZE", "Int8MuLan", "TextScales", "quantize_mulan", "quantize_mulan_text", "text_int8_problem"]
