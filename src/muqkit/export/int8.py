"""MuQ-MuLan in int8 on the CPU, both towers.

The text tower: the exported text graph (:class:`muqkit.export.onnx.MuLanTextGraph`) quantised with
onnxruntime's ``quantize_dynamic`` (int8 weights, activations quantised per call), run by onnxruntime. A text
query is a handful of tokens through a BERT-sized backbone and the tower's transformer: matrix products on few
rows, bound by reading the weights, which int8 reads a quarter of. onnxruntime's dynamic int8 is its
best-kept path for such encoders; torchao's dynamic int8 in eager PyTorch was slower than float32 on this
shape (``bench/bench_serve.py``).

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
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from muqkit.mulan.model import MuQMuLan


def text_int8_problem() -> str | None:
    """Why the int8 text tower cannot run here (onnxruntime or onnx missing), or ``None``."""
    from importlib.util import find_spec

    missing = [name for name in ("onnxruntime", "onnx", "onnxscript") if find_spec(name) is None]
    return f"--dtype int8 for MuQ-MuLan needs {', '.join(missing)}: pip install 'muqkit[onnx]'" if missing else None


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
        from muqkit.mulan.audio import cut_clips

        del clip_batch_size, parallel_processing
        if self._audio is None:
            from muqkit.embed.int8 import quantize_mulan_audio

            self._audio = quantize_mulan_audio(self._mulan, batch_size=self.audio_batch_size)
        if not isinstance(wavs, torch.Tensor):
            if lengths is not None:
                raise ValueError("give lengths only with a padded (B, samples) tensor")
            items = [torch.as_tensor(w).reshape(-1).float() for w in wavs]
            lengths = torch.tensor([w.numel() for w in items])
            wavs = torch.nn.utils.rnn.pad_sequence(items, batch_first=True)
        if wavs.dim() == 1:
            wavs = wavs.unsqueeze(0)
        clips = cut_clips(wavs.float().cpu(), lengths, int(self._mulan.config.clip_samples))
        total = torch.zeros(wavs.shape[0], int(self._mulan.config.dim_latent))
        for group, owners in clips.groups:
            total.index_add_(0, owners, self._audio.clip_latents(group))
        return total / clips.counts.float().unsqueeze(-1)

    def extract_text_latents(self, texts: Sequence[str], *, batch_size: int = 1) -> torch.Tensor:
        """(B, dim_latent) float32 unit latents, tokenised as the PyTorch tower does. Texts go one at a time
        (``batch_size`` is accepted for the PyTorch model's interface): dynamic int8 quantises each call's
        activations with one scale, so padding in a batch would change a text's latent."""
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
    per_channel: bool = True,
) -> Int8MuLan:
    """MuQ-MuLan with both towers in int8 (the model is kept, in float32, for everything else): the text
    tower exported to ONNX, quantised and loaded in onnxruntime now; the audio tower quantised
    (:func:`muqkit.embed.int8.quantize_mulan_audio`) on the first audio call.

    Args:
        mulan: the float32 model, on the CPU.
        threads: onnxruntime's threads for the text tower (default: its own choice).
        audio: ``False`` keeps the audio tower in float32 (the text tower alone in int8).
        audio_batch_size: clips per call of the int8 audio tower.
        per_channel: the text tower's int8 weights with one scale per output channel (the default) rather than
            one per matrix, which holds a small text backbone's latents far closer to float32's (the tiny
            preset's MiniLM: lowest caption cosine 0.980 against 0.913; ``docs/benchmarks.md``).

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
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

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
        with _quiet_root_logger():  # quantize_dynamic advises pre-processing on the root logger each time
            quantize_dynamic(str(graph), str(quantised), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"],
                             per_channel=per_channel)  # fmt: skip
        session = ort.InferenceSession(str(quantised), options, providers=["CPUExecutionProvider"])
    return Int8MuLan(mulan, session, audio=audio, audio_batch_size=audio_batch_size)


def quantize_mulan_text(mulan: MuQMuLan, *, threads: int | None = None, per_channel: bool = True) -> Int8MuLan:
    """MuQ-MuLan with the text tower alone in int8 (:func:`quantize_mulan` with ``audio=False``)."""
    return quantize_mulan(mulan, threads=threads, audio=False, per_channel=per_channel)


__all__ = ["Int8MuLan", "quantize_mulan", "quantize_mulan_text", "text_int8_problem"]
