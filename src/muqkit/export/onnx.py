"""ONNX export of MuQ (chosen hidden states) and a CPU runner on ``onnxruntime``.

The exported graph computes what :meth:`muqkit.MuQ.forward` computes, from the waveform::

    wavs (batch, samples) float32, lengths (batch,) int64
      -> log-mel (reflect padding per item, STFT as a strided convolution with a windowed DFT basis,
         HTK mel filterbank, dB, normalisation), padded frames zeroed
      -> conv subsampling -> Conformer layers up to the deepest requested one
      -> hidden (batch, num_layers, frames, dim) float32, frames (batch,) int64

Batch and length are dynamic. Every mask is always applied (multiplying by one where nothing is padded),
so the graph has no data-dependent branch: an item's valid frames do not depend on its batch, as in
PyTorch. The PyTorch code's fast paths (sparse filterbank, fused eval convolutions, chunked conv front
end) give the same numbers and are left out of the graph.

:class:`OnnxMuQ` runs such a file and is a drop-in for ``muqkit.embed.chunks.encode_batch``: chunking and
batching are the embedding pipeline's own, so chunk boundaries fall where they do with PyTorch.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from muqkit.audio.mel import reflect_indices
from muqkit.audio.tensors import lengths_to_mask
from muqkit.encoder.conv import conv_out_length

if TYPE_CHECKING:
    from muqkit.mulan.model import MuQMuLan
    from muqkit.ssl.muq import MuQ

log = logging.getLogger(__name__)

OPSET = 18
META_SUFFIX = ".json"


def _time_mask(lengths: torch.Tensor, size: int, dtype: torch.dtype) -> torch.Tensor:
    """(batch, size) float mask of the steps before ``lengths``."""
    return lengths_to_mask(lengths, size).to(dtype)


class MuQEncoderGraph(nn.Module):
    """The export form of MuQ after its mel frontend: normalised log-mel in, the requested hidden states out.

    The conv front end runs without its fast paths (unfused BatchNorm, no chunking), which give the same
    numbers; the quantisers of :mod:`muqkit.embed.int8` start from this form too.

    Args:
        muq: the model (its conv front end and Conformer are shared, not copied).
        layers: hidden-state indices (0 = conv front end, i = Conformer layer i), in the output's order.
    """

    def __init__(self, muq: MuQ, layers: Sequence[int]) -> None:
        super().__init__()
        self.layers = tuple(int(i) for i in layers)
        depth = int(muq.config.encoder_depth)
        if not self.layers or any(not 0 <= i <= depth for i in self.layers):
            raise ValueError(f"layers must lie in 0..{depth}, got {list(layers)}")
        self.depth = depth
        self.deepest = max(self.layers)
        self.conv = muq.conv
        self.conformer = muq.conformer

    def subsample(self, mel: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The conv front end without its fast paths: (batch, n_mels, frames) -> (batch, T, dim)."""
        conv = self.conv
        x = mel.unsqueeze(1)  # (batch, 1, n_mels, frames)
        for block in conv._residual_blocks:
            lengths = conv_out_length(lengths, block.stride[1])
            h = F.relu(block.bn1(block.conv1(x)))
            h = h * _time_mask(lengths, h.shape[-1], h.dtype)[:, None, None, :]
            h = block.bn2(block.conv2(h))
            shortcut = block.bn3(block.conv3(x)) if block.has_shortcut else x
            y = F.relu(h + shortcut)
            x = y * _time_mask(lengths, y.shape[-1], y.dtype)[:, None, None, :]
        batch, channels, bands, frames = x.shape
        x = conv.proj(x.permute(0, 3, 1, 2).reshape(batch, frames, channels * bands))
        return x * _time_mask(lengths, frames, x.dtype).unsqueeze(-1), lengths

    def forward(self, mel: torch.Tensor, mel_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """mel (batch, n_mels, frames) zero past ``mel_lengths`` (batch,) -> hidden (batch, num_layers, T,
        dim), frames (batch,)."""
        x, frames = self.subsample(mel, mel_lengths)
        conformer = self.conformer
        batch, time, _ = x.shape
        mask = lengths_to_mask(frames, time)  # (batch, time)
        key_mask = mask.view(batch, 1, 1, time)
        valid = mask.unsqueeze(-1).to(x.dtype)
        rotary = conformer.rotary(time, x.dtype)
        states = [x]
        for layer in conformer.layers[: self.deepest]:
            x = layer(x, rotary, key_mask, valid)
            states.append(x)
        if self.deepest == self.depth:
            states[-1] = conformer.layer_norm(x)
        hidden = torch.stack([states[i] * valid for i in self.layers], dim=1)
        return hidden, frames


class MuQGraph(nn.Module):
    """The export form of a MuQ: waveform and lengths in, the requested hidden states out.

    Args:
        muq: the model (its weights are shared, not copied).
        layers: hidden-state indices (0 = conv front end, i = Conformer layer i), in the output's order.
    """

    window: torch.Tensor  # buffer (n_fft,)
    filterbank: torch.Tensor  # buffer (n_mels, n_freqs)

    def __init__(self, muq: MuQ, layers: Sequence[int]) -> None:
        super().__init__()
        self.muq = muq
        self.encoder = MuQEncoderGraph(muq, layers)
        self.layers, self.depth = self.encoder.layers, self.encoder.depth
        frontend = muq.frontend
        self.register_buffer("window", torch.hann_window(frontend.n_fft), persistent=False)
        self.register_buffer("filterbank", frontend.filterbank.float().t().contiguous(), persistent=False)

    def log_mel(self, wavs: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(batch, samples), (batch,) -> normalised log-mel (batch, n_mels, frames), valid frames (batch,)."""
        frontend = self.muq.frontend
        hop, n_fft = frontend.hop_length, frontend.n_fft
        samples = wavs.shape[1]
        frames = samples // hop
        total = (frames - 1) * hop + n_fft
        index, valid = reflect_indices(lengths, n_fft // 2, total)
        padded = torch.gather(wavs, 1, index.clamp(max=samples - 1)) * valid  # (batch, total)
        starts = torch.arange(frames, device=wavs.device).unsqueeze(1) * hop  # (frames, 1)
        windows = padded[:, starts + torch.arange(n_fft, device=wavs.device)]  # (batch, frames, n_fft)
        # In float64: onnxruntime's float32 DFT is less exact than PyTorch's in the quietest bins, where the
        # dB scale magnifies the error; float64 makes both exact to float32 rounding.
        spec = torch.fft.rfft((windows * self.window).double(), dim=-1)  # (batch, frames, n_freqs)
        power = (spec.real.square() + spec.imag.square()).float()
        mel = torch.matmul(self.filterbank, power.transpose(1, 2))  # (batch, n_mels, frames)
        mel_db = 10.0 * torch.log10(torch.clamp(mel, min=1e-10))
        if frontend.mean is not None:
            mel_db = (mel_db - frontend.mean) / float(frontend.std)  # type: ignore[arg-type]
        mel_lengths = torch.div(lengths, hop, rounding_mode="floor")
        return mel_db * _time_mask(mel_lengths, mel_db.shape[-1], mel_db.dtype).unsqueeze(1), mel_lengths

    def forward(self, wavs: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """wavs (batch, samples), lengths (batch,) -> hidden (batch, num_layers, T, dim), frames (batch,)."""
        return self.encoder(*self.log_mel(wavs, lengths))


@dataclass(frozen=True)
class ExportedGraph:
    """An ONNX file and what it computes.

    Attributes:
        path: the ``.onnx`` file.
        meta_path: its ``.json`` description (model id and fingerprint, layers, sample rate, ...).
        kind: ``"muq"``, ``"mulan-audio"`` or ``"mulan-text"``.
    """

    path: str
    meta_path: str
    kind: str


def export_muq(
    muq: MuQ,
    path: str | os.PathLike[str],
    *,
    layers: Sequence[int],
    model_id: str | None = None,
    example_seconds: float = 2.0,
) -> ExportedGraph:
    """Write MuQ's graph (hidden states ``layers``) to ``path`` as ONNX with dynamic batch and length, and a
    ``.json`` beside it naming the model (``model_sha256``), the layers and the frame rate.

    Raises:
        ValueError: a layer out of range.
    """
    from muqkit.atomic import atomic_path
    from muqkit.hub.weights import model_fingerprint

    muq = muq.float().eval()
    graph = MuQGraph(muq, layers).eval()
    rate = int(muq.config.sample_rate)
    wavs = torch.randn(2, int(example_seconds * rate))
    lengths = torch.tensor([wavs.shape[1], wavs.shape[1] - 3 * muq.min_samples - 17])
    batch, samples = torch.export.Dim("batch", min=1), torch.export.Dim("samples", min=4 * muq.min_samples)
    path = Path(path)
    with torch.no_grad(), atomic_path(path, suffix=".onnx") as tmp:
        program = torch.onnx.export(
            graph,
            (wavs, lengths),
            dynamic_shapes={"wavs": {0: batch, 1: samples}, "lengths": {0: batch}},
            input_names=["wavs", "lengths"],
            output_names=["hidden", "frames"],
            opset_version=OPSET,
            dynamo=True,
            external_data=False,
        )
        assert program is not None
        program.save(str(tmp))
    meta = {
        "kind": "muq",
        "model_id": model_id or getattr(muq, "name_or_path", None),
        "model_sha256": model_fingerprint(muq),
        "layers": list(graph.layers),
        "encoder_depth": graph.depth,
        "dim": int(muq.config.encoder_dim),
        "sample_rate": rate,
        "frame_rate": float(muq.config.frame_rate),
        "min_samples": int(muq.min_samples),
        "hop_length": int(muq.config.hop_length),
        "time_strides": [int(block.stride[1]) for block in muq.conv._residual_blocks],
        "opset": OPSET,
        "inputs": {"wavs": "float32 (batch, samples)", "lengths": "int64 (batch,)"},
        "outputs": {"hidden": "float32 (batch, num_layers, frames, dim)", "frames": "int64 (batch,)"},
    }
    meta_path = path.with_suffix(META_SUFFIX)
    with atomic_path(meta_path) as tmp:
        tmp.write_text(json.dumps(meta, indent=2) + "\n")
    return ExportedGraph(path=str(path), meta_path=str(meta_path), kind="muq")


def _session(path: Path, options: Any, providers: list[str]) -> Any:
    """An onnxruntime session of the graph in ``path``.

    Raises:
        FileNotFoundError: there is no such file.
        ValueError: onnxruntime cannot load it (empty, truncated or corrupt: ``InvalidProtobuf``, ``Fail``,
            ``InvalidGraph``, ...); the message names the file.
    """
    import onnxruntime as ort

    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such ONNX file; write it with `muqkit export onnx`")
    try:
        return ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:  # onnxruntime's errors share no base class but Exception
        if type(exc).__module__.split(".")[0] != "onnxruntime":
            raise
        detail = str(exc).split(" failed:", 1)[-1].strip() or type(exc).__name__
        raise ValueError(
            f"{path}: not a loadable ONNX graph (empty, truncated or corrupt: {detail}); export it again with "
            "`muqkit export onnx`"
        ) from exc


class _Config:
    """The few config fields the embedding pipeline reads from a model."""

    def __init__(self, meta: dict[str, Any]) -> None:
        self.sample_rate = int(meta["sample_rate"])
        self.frame_rate = float(meta["frame_rate"])
        self.encoder_depth = int(meta["encoder_depth"])
        self.encoder_dim = int(meta["dim"])


class OnnxMuQ:
    """A MuQ graph exported by :func:`export_muq`, run with ``onnxruntime`` on the CPU.

    Args:
        path: the ``.onnx`` file (its ``.json`` beside it).
        threads: intra-op threads (``None``: onnxruntime's default).
    """

    def __init__(self, path: str | os.PathLike[str], *, threads: int | None = None) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        meta_path = self.path.with_suffix(META_SUFFIX)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such ONNX file; write one with `muqkit export onnx`")
        try:
            self.meta = json.loads(meta_path.read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"{meta_path}: missing or corrupt description of {self.path.name} ({exc})") from exc
        if self.meta.get("kind") != "muq":
            raise ValueError(f"{self.path}: a {self.meta.get('kind')} graph, not MuQ")
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session = _session(self.path, options, ["CPUExecutionProvider"])
        self.config = _Config(self.meta)
        self.layers = tuple(self.meta["layers"])
        self.min_samples = int(self.meta["min_samples"])
        self.name_or_path = self.meta.get("model_id")
        self.revision = None
        # What identifies this model's outputs in an embedding index: the source weights, run by onnxruntime.
        self.fingerprint = f"{self.meta['model_sha256']}+onnx"

    def to(self, device: Any = None, dtype: Any = None) -> OnnxMuQ:
        """Only the CPU and float32 (kept for the PyTorch model's interface)."""
        if device is not None and torch.device(device).type != "cpu":
            raise ValueError(f"--device {device}: the onnxruntime backend runs on the CPU")
        if dtype is not None and dtype != torch.float32:
            raise ValueError("--dtype: the onnxruntime backend runs the exported float32 graph")
        return self

    def eval(self) -> OnnxMuQ:
        return self

    def num_frames(self, num_samples: torch.Tensor | int) -> torch.Tensor:
        """Output frames for inputs of ``num_samples`` samples (as :meth:`muqkit.MuQ.num_frames`)."""
        frames = torch.div(torch.as_tensor(num_samples), int(self.meta["hop_length"]), rounding_mode="floor")
        for stride in self.meta["time_strides"]:
            frames = conv_out_length(frames, int(stride))
        return frames

    def check_layers(self, layers: Sequence[int]) -> None:
        """Raise ``ValueError`` unless every layer was exported."""
        missing = [layer for layer in layers if layer not in self.layers]
        if missing:
            raise ValueError(
                f"{self.path}: hidden states {missing} were not exported (it has {list(self.layers)}); "
                "export them with `muqkit export onnx --layers`"
            )

    def __call__(
        self, wavs: np.ndarray | torch.Tensor, lengths: np.ndarray | torch.Tensor
    ) -> tuple[np.ndarray, np.ndarray]:
        """(batch, samples) float32 and (batch,) lengths -> hidden (batch, layers, T, dim), frames (batch,)."""
        wavs = np.ascontiguousarray(np.asarray(wavs, dtype=np.float32))
        lengths = np.asarray(lengths, dtype=np.int64)
        hidden, frames = self.session.run(None, {"wavs": wavs, "lengths": lengths})
        return hidden, frames

    def encode_batch(self, wavs: Sequence[torch.Tensor], *, layers: tuple[int, ...]) -> list[torch.Tensor]:
        """Like :func:`muqkit.embed.chunks.encode_batch`: one (num_layers, frames_i, dim) tensor per signal."""
        self.check_layers(layers)
        batch = torch.zeros(len(wavs), max(w.numel() for w in wavs))
        for i, wav in enumerate(wavs):
            batch[i, : wav.numel()] = wav.float()
        hidden, frames = self(batch.numpy(), np.array([w.numel() for w in wavs]))
        pick = [self.layers.index(layer) for layer in layers]
        out = torch.from_numpy(hidden[:, pick])  # (batch, num_layers, T, dim)
        return [out[i, :, : int(frames[i])] for i in range(len(wavs))]


# --------------------------------------------------------------------------------------------------
# MuQ-MuLan: the audio tower (on clips) and the text tower (on token ids)
# --------------------------------------------------------------------------------------------------
class MuLanAudioGraph(nn.Module):
    """MuQ-MuLan's audio tower on clips taken whole: (clips, samples) -> (clips, dim_latent) unit latents.

    Clip cutting (``clip_secs``, the last clip wrapped with audio from the start) and the mean over an item's
    clips happen outside the graph, as in :meth:`muqkit.mulan.MuQMuLan.extract_audio_latents`.
    """

    def __init__(self, mulan: MuQMuLan) -> None:
        super().__init__()
        self.mulan = mulan
        tower = mulan.audio
        self.backbone = MuQGraph(tower.backbone, [tower.layer])

    def forward(self, wavs: torch.Tensor) -> torch.Tensor:
        tower = self.mulan.audio
        lengths = torch.full((wavs.shape[0],), wavs.shape[1], dtype=torch.long, device=wavs.device)
        hidden, _ = self.backbone(wavs, lengths)  # (clips, 1, T, backbone_dim)
        x = tower.transformer(tower.proj(hidden[:, 0]))  # (clips, T, dim), every frame valid
        embeds = x.mean(dim=1)
        if tower.lag_pool is not None:
            embeds = embeds + tower.lag_pool(x, None)
        return F.normalize(self.mulan.audio_to_latents(embeds), dim=-1)


class MuLanAudioEncoderGraph(nn.Module):
    """MuQ-MuLan's audio tower after the mel frontend, on padded clips: normalised log-mel (clips, n_mels,
    frames) zero past ``mel_lengths`` (clips,) -> (clips, dim_latent) unit latents. The export form the int8
    audio tower (:func:`muqkit.embed.int8.quantize_mulan_audio`) starts from.

    Padding is masked as in :meth:`muqkit.mulan.audio.AudioTower.forward` with lengths (the backbone's frames,
    the transformer's keys, the mean and the lag pooling), so a clip's latent does not depend on how much
    it is padded; the transformer runs on every position (the packed fast path is left out).
    """

    def __init__(self, mulan: MuQMuLan) -> None:
        super().__init__()
        tower = mulan.audio
        self.encoder = MuQEncoderGraph(tower.backbone, [tower.layer])
        self.proj = tower.proj
        self.layers = tower.transformer.layers
        self.lag_pool = tower.lag_pool
        self.to_latents = mulan.audio_to_latents

    def forward(self, mel: torch.Tensor, mel_lengths: torch.Tensor) -> torch.Tensor:
        from muqkit.mulan.transformer import masked_mean

        hidden, frames = self.encoder(mel, mel_lengths)  # (clips, 1, T, backbone_dim), (clips,)
        mask = lengths_to_mask(frames, hidden.shape[2])  # (clips, T)
        x = self.proj(hidden[:, 0])  # (clips, T, dim)
        for layer in self.layers:
            x = layer(x, mask)
        embeds = masked_mean(x, mask)  # (clips, dim)
        if self.lag_pool is not None:
            embeds = embeds + self.lag_pool(x, mask)
        return F.normalize(self.to_latents(embeds), dim=-1)


class MuLanTextGraph(nn.Module):
    """MuQ-MuLan's text tower: token ids and attention mask (batch, tokens) -> (batch, dim_latent) unit latents.

    Padding is masked after the backbone (in attention and in the mean), so a text's latent does not depend
    on its batch; the tower's transformer runs on every position (the packed fast path is left out).
    """

    def __init__(self, mulan: MuQMuLan) -> None:
        super().__init__()
        self.mulan = mulan

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        from muqkit.mulan.transformer import masked_mean

        tower = self.mulan.text
        states = tower.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.bool()
        x = tower.proj(states.to(tower.proj_dtype))
        for layer in tower.transformer.layers:
            x = layer(x, mask)
        return F.normalize(self.mulan.text_to_latents(masked_mean(x, mask)), dim=-1)


def export_graph(
    module: nn.Module, args: tuple, path: Path, *, dynamic: dict, inputs: list[str], outputs: list[str]
) -> None:
    """Write ``module`` called on ``args`` to ``path`` as ONNX (atomically) with the ``dynamic`` shapes."""
    from muqkit.atomic import atomic_path

    with torch.no_grad(), atomic_path(path, suffix=".onnx") as tmp:
        program = torch.onnx.export(module, args, dynamic_shapes=dynamic, input_names=inputs, output_names=outputs,
                                    opset_version=OPSET, dynamo=True, external_data=False, verbose=False)  # fmt: skip
        assert program is not None
        program.save(str(tmp))


def export_mulan(
    mulan: MuQMuLan, folder: str | os.PathLike[str], *, model_id: str | None = None
) -> list[ExportedGraph]:
    """Write MuQ-MuLan's towers to ``folder``: ``audio.onnx`` (clips -> latents), ``text.onnx`` (token ids ->
    latents), ``tokenizer/`` (the text tower's tokenizer) and ``mulan.json`` (model identity, clip length)."""
    from muqkit.atomic import atomic_path
    from muqkit.hub.weights import model_fingerprint

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    mulan = mulan.float().eval()
    config = mulan.config
    clip = int(config.clip_samples)
    audio = MuLanAudioGraph(mulan).eval()
    clips = torch.export.Dim("clips", min=1)
    samples = torch.export.Dim("samples", min=4 * mulan.audio.backbone.min_samples)
    export_graph(audio, (0.1 * torch.randn(2, min(clip, 48_000)),), folder / "audio.onnx",
            dynamic={"wavs": {0: clips, 1: samples}}, inputs=["wavs"], outputs=["latents"])  # fmt: skip
    batch = mulan.text.tokenize(["a calm piano piece in a minor key", "drums"])
    texts, tokens = torch.export.Dim("texts", min=1), torch.export.Dim("tokens", min=2, max=int(mulan.text.max_length))
    export_graph(MuLanTextGraph(mulan).eval(), (batch.input_ids, batch.attention_mask), folder / "text.onnx",
            dynamic={"input_ids": {0: texts, 1: tokens}, "attention_mask": {0: texts, 1: tokens}},
            inputs=["input_ids", "attention_mask"], outputs=["latents"])  # fmt: skip
    mulan.text.tokenizer.save_pretrained(str(folder / "tokenizer"))
    meta = {
        "kind": "mulan",
        "model_id": model_id,
        "model_sha256": model_fingerprint(mulan),
        "dim_latent": int(config.dim_latent),
        "sample_rate": int(mulan.sample_rate),
        "clip_samples": clip,
        "max_length": int(mulan.text.max_length),
        "opset": OPSET,
    }
    with atomic_path(folder / "mulan.json") as tmp:
        tmp.write_text(json.dumps(meta, indent=2) + "\n")
    return [
        ExportedGraph(str(folder / "audio.onnx"), str(folder / "mulan.json"), "mulan-audio"),
        ExportedGraph(str(folder / "text.onnx"), str(folder / "mulan.json"), "mulan-text"),
    ]


class OnnxMuLan:
    """MuQ-MuLan towers exported by :func:`export_mulan`, run with onnxruntime; the inference methods of
    :class:`muqkit.mulan.MuQMuLan` (``extract_audio_latents``, ``extract_text_latents``)."""

    def __init__(self, folder: str | os.PathLike[str], *, threads: int | None = None) -> None:
        import onnxruntime as ort
        from transformers import AutoTokenizer

        self.folder = Path(folder)
        meta_path = self.folder / "mulan.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{self.folder}: no mulan.json; export the model with `muqkit export onnx --mulan`")
        try:
            self.meta = json.loads(meta_path.read_text())
        except ValueError as exc:
            raise ValueError(f"{meta_path}: corrupt description of the exported model ({exc})") from exc
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        providers = ["CPUExecutionProvider"]
        self.audio = _session(self.folder / "audio.onnx", options, providers)
        self.text = _session(self.folder / "text.onnx", options, providers)
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.folder / "tokenizer"))
        self.sample_rate = int(self.meta["sample_rate"])
        self.fingerprint = str(self.meta["model_sha256"])
        self.dim_latent = int(self.meta["dim_latent"])

    def extract_audio_latents(self, wavs: Sequence[torch.Tensor], *, clip_batch_size: int = 32) -> torch.Tensor:
        """(B, dim_latent) latents of 1-D waveforms: clips as in PyTorch, each clip's latent, their mean."""
        from muqkit.mulan.audio import cut_clips

        items = [torch.as_tensor(w).reshape(-1).float() for w in wavs]
        lengths = torch.tensor([w.numel() for w in items])
        padded = nn.utils.rnn.pad_sequence(items, batch_first=True)
        clips = cut_clips(padded, lengths, int(self.meta["clip_samples"]))
        total = torch.zeros(len(items), self.dim_latent)
        for group, owners in clips.groups:
            for start in range(0, group.shape[0], clip_batch_size):
                part = np.ascontiguousarray(group[start : start + clip_batch_size].numpy(), dtype=np.float32)
                latents = torch.from_numpy(self.audio.run(None, {"wavs": part})[0])
                total.index_add_(0, owners[start : start + clip_batch_size], latents)
        return total / clips.counts.float().unsqueeze(-1)

    def extract_text_latents(self, texts: Sequence[str]) -> torch.Tensor:
        """(B, dim_latent) latents of texts, tokenised as the PyTorch tower does (truncated to its limit)."""
        encoded = self.tokenizer(list(texts), padding=True, truncation=True, max_length=int(self.meta["max_length"]),
                                 return_tensors="np")  # fmt: skip
        feeds = {"input_ids": encoded["input_ids"].astype(np.int64),
                 "attention_mask": encoded["attention_mask"].astype(np.int64)}  # fmt: skip
        return torch.from_numpy(self.text.run(None, feeds)[0])
