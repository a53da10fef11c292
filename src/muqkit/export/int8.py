"""MuQ-MuLan with its text tower in int8: the exported text graph (:class:`muqkit.export.onnx.MuLanTextGraph`)
quantised with onnxruntime's ``quantize_dynamic`` (int8 weights, activations quantised per call), run by
onnxruntime on the CPU.

A text query is a handful of tokens through a BERT-sized backbone and the tower's transformer: matrix
products on few rows, bound by reading the weights, which int8 reads a quarter of. onnxruntime's dynamic
int8 is its best-kept path for such encoders; torchao's dynamic int8 in eager PyTorch was slower than
float32 on this shape (``bench/bench_serve.py``). The audio tower stays float32 (its MuQ runs int8 through
:mod:`muqkit.embed.int8` in ``muqkit embed``).

    int8 = quantize_mulan_text(MuQMuLan.from_pretrained("OpenMuQ/MuQ-MuLan-large"))
    int8.extract_text_latents(["a calm piano piece"])     # (1, 512) float32, unit length
    int8.extract_audio_latents([wav])                     # the float32 model's
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
    """A MuQ-MuLan whose ``extract_text_latents`` runs the int8 text graph; every other attribute is the float32
    model's (``config``, ``sample_rate``, ``extract_audio_latents``, ``calc_similarity``, ...). Build it with
    :func:`quantize_mulan_text`.
    """

    def __init__(self, mulan: MuQMuLan, session: Any) -> None:
        self._mulan = mulan
        self._session = session

    def __getattr__(self, name: str) -> Any:  # only for names the wrapper does not have
        return getattr(self._mulan, name)

    def to(self, device: Any = None, dtype: Any = None) -> Int8MuLan:
        """Only the CPU (kept for the PyTorch model's interface)."""
        if device is not None and torch.device(device).type != "cpu":
            raise ValueError(f"--device {device}: int8 runs on the CPU")
        return self

    def eval(self) -> Int8MuLan:
        return self

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


def quantize_mulan_text(mulan: MuQMuLan, *, threads: int | None = None) -> Int8MuLan:
    """Export MuQ-MuLan's text tower to ONNX, quantise it to int8 and load it in onnxruntime (the model is
    kept, in float32, for everything but text).

    Raises:
        ValueError: onnxruntime or onnx is not installed (:func:`text_int8_problem`).
    """
    problem = text_int8_problem()
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
            quantize_dynamic(str(graph), str(quantised), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"])
        session = ort.InferenceSession(str(quantised), options, providers=["CPUExecutionProvider"])
    return Int8MuLan(mulan, session)


__all__ = ["Int8MuLan", "quantize_mulan_text", "text_int8_problem"]
