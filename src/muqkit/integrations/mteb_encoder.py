"""MuQ and MuQ-MuLan as MTEB encoders, for MAEB (MTEB's audio benchmark) and any MTEB audio task.

    import mteb
    from muqkit.integrations.mteb_encoder import load_mteb_model

    model = load_mteb_model("OpenMuQ/MuQ-large-msd-iter", layers=[6], pooling="mean")  # or a run's model/ folder
    results = mteb.evaluate(model, mteb.get_benchmark("MAEB(v1, audio-only)"))

Both encoders implement MTEB's encoder protocol (``encode`` over a ``DataLoader`` of a task's rows,
``similarity``, ``similarity_pairwise``, ``mteb_model_meta``) and differ from MTEB's own MuQ-MuLan wrapper in
three ways:

* **padding is masked**: clips of different lengths are batched with their lengths, and MuQ is
  padding-exact, so a clip's embedding does not depend on its batch (MuQ-MuLan's clips are grouped by
  length and run unpadded, :meth:`muqkit.MuQMuLan.extract_audio_latents`);
* **long audio is embedded whole**: MuQ encodes ``chunk_seconds`` chunks (30 s by default, the
  ``muqkit embed`` engine, :mod:`muqkit.embed.chunks`) and pools the frames of all of them; MuQ-MuLan cuts
  its official clips (10 s for the released model) and averages their latents. Nothing is cut off;
* **audio is decoded and resampled by muqkit** (:mod:`muqkit.integrations.audio_items`): a
  ``datasets.Audio`` column is read with ``decode=False`` and its bytes decoded with soundfile, so neither
  torchcodec nor torchaudio is needed.

MuQ's embedding of a clip: the chosen hidden states (``layers``; ``"all"`` = the conv front end and every
Conformer layer), averaged (``reduce="mean"``) or concatenated (``"concat"``), then pooled over the clip's
frames (``pooling``: ``"mean"``, ``"max"`` or ``"mean_std"``, the mean and the standard deviation side by
side). Similarity: cosine. MuQ-MuLan's: its 512-d (``dim_latent``) audio and text latents with its own
similarity, the dot product (as the official ``calc_similarity``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from muqkit.embed.chunks import (
    Chunk,
    LayerSpec,
    chunk_bounds,
    chunk_length,
    encode_chunks,
    resolve_layers,
    samples_per_frame,
)
from muqkit.hub.defaults import OFFICIAL_MUQ
from muqkit.hub.weights import model_fingerprint
from muqkit.integrations.audio_items import waveform_from_item

try:
    from mteb.models import ModelMeta
    from mteb.models.abs_encoder import AbsEncoder
except ModuleNotFoundError as exc:  # pragma: no cover - depends on the install
    raise ModuleNotFoundError(
        "muqkit.integrations.mteb_encoder needs mteb: pip install 'muqkit[mteb]' (plain mteb, not mteb[audio])",
        name=exc.name,
    ) from exc

if TYPE_CHECKING:
    from torch.utils.data import DataLoader

    from muqkit.mulan.model import MuQMuLan
    from muqkit.ssl.muq import MuQ

Pooling = Literal["mean", "max", "mean_std"]
Reduce = Literal["mean", "concat"]
POOLINGS: tuple[str, ...] = ("mean", "max", "mean_std")
OFFICIAL_MULAN = "OpenMuQ/MuQ-MuLan-large"
# The released weights' licence (their model cards); a user's own checkpoint says "not specified" unless told.
OFFICIAL_LICENSES = {OFFICIAL_MUQ: "cc-by-nc-4.0", OFFICIAL_MULAN: "cc-by-nc-4.0"}
MUQ_CODE = "https://github.com/tencent-ailab/MuQ"
MUQ_CITATION = """@misc{zhu2025muq,
  title={MuQ: Self-Supervised Music Representation Learning with Mel Residual Vector Quantization},
  author={Haina Zhu and Yizhi Zhou and Hangting Chen and Jianwei Yu and Ziyang Ma and Rongzhi Gu and Yi Luo and
    Wei Tan and Xie Chen},
  year={2025},
  eprint={2501.01108},
  archivePrefix={arXiv},
  primaryClass={cs.SD},
}"""

__all__ = [
    "OFFICIAL_MULAN",
    "POOLINGS",
    "MuQEncoder",
    "MuQMuLanEncoder",
    "checkpoint_kind",
    "load_mteb_model",
    "model_meta",
    "pool_frames",
]


# --------------------------------------------------------------------------------------------------
# Model meta
# --------------------------------------------------------------------------------------------------
def mteb_name(id_or_folder: str | os.PathLike[str]) -> str:
    """The ``organization/model`` name MTEB files results under: a Hub id as it is, a local folder as
    ``muqkit/<folder>`` (``muqkit/<run>-<folder>`` for a run's ``model/`` folder)."""
    path = Path(id_or_folder).expanduser()
    if not path.is_dir() and str(id_or_folder).count("/") == 1:
        return str(id_or_folder)
    path = path.resolve()
    stem = f"{path.parent.name}-{path.name}" if path.name == "model" and path.parent.name else path.name
    return "muqkit/" + (re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-") or "model")


def model_meta(
    model: torch.nn.Module,
    *,
    name_or_path: str,
    revision: str | None,
    modalities: Sequence[str],
    embed_dim: int,
    similarity: str,
    license: str | None = None,
    loader: Any = None,
    loader_kwargs: dict[str, Any] | None = None,
    experiment_kwargs: dict[str, Any] | None = None,
) -> ModelMeta:
    """MTEB's :class:`ModelMeta` for a loaded muqkit model.

    Args:
        model: the loaded model (its parameters are counted; its weights fingerprinted when ``revision`` is None).
        name_or_path: the Hub id or folder it was loaded from (see :func:`mteb_name`).
        revision: the Hub revision; None: the first 12 hex digits of :func:`muqkit.hub.weights.model_fingerprint`,
            so that results of different weights never share a name and revision.
        modalities: ``["audio"]`` or ``["audio", "text"]``.
        embed_dim: width of the embeddings ``encode`` returns.
        similarity: ``"cosine"`` or ``"dot"``.
        license: licence of the weights; default: the model card's for the released checkpoints, else
            ``"not specified"``.
        loader, loader_kwargs: how ``mteb.get_model`` would rebuild the encoder.
        experiment_kwargs: the settings that change the embedding (layers, pooling), part of MTEB's run name.
    """
    official = name_or_path in OFFICIAL_LICENSES
    n_parameters = sum(p.numel() for p in model.parameters())
    text = "text" in modalities
    return ModelMeta(
        loader=loader,
        loader_kwargs=dict(loader_kwargs or {}),
        name=mteb_name(name_or_path),
        revision=revision or model_fingerprint(model)[:12],
        release_date=None,
        languages=(["eng-Latn", "zho-Hans"] if official else ["eng-Latn"]) if text else None,
        n_parameters=n_parameters,
        memory_usage_mb=round(sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20, 1),
        max_tokens=None,
        embed_dim=embed_dim,
        license=license or OFFICIAL_LICENSES.get(name_or_path, "not specified"),  # type: ignore[arg-type]
        open_weights=True,
        public_training_code=MUQ_CODE if official else None,
        public_training_data=None,
        framework=["PyTorch"],
        reference=f"https://huggingface.co/{name_or_path}" if official else None,
        similarity_fn_name=similarity,  # type: ignore[arg-type]
        use_instructions=False,
        training_datasets=None,
        modalities=list(modalities),  # type: ignore[arg-type]
        citation=MUQ_CITATION if official else None,
        experiment_kwargs=experiment_kwargs or None,
    )


# --------------------------------------------------------------------------------------------------
# Reading a task's rows
# --------------------------------------------------------------------------------------------------
def _columns(inputs: DataLoader[Any]) -> set[str]:
    features = getattr(inputs.dataset, "features", None)
    if features is not None:
        return set(features)
    names = getattr(inputs.dataset, "column_names", None)
    return set(names) if names is not None else {"audio"}


def iter_audio_batches(inputs: DataLoader[Any], sample_rate: int) -> Iterator[list[torch.Tensor]]:
    """The audio of a task's ``DataLoader``, batch by batch, as (samples,) waveforms at ``sample_rate``.

    A Hugging Face dataset is read directly with its audio column cast to ``Audio(decode=False)`` (no
    torchcodec); rows come in the DataLoader's order and batch size.
    """
    dataset: Any = inputs.dataset
    batch_size = inputs.batch_size or 1
    if hasattr(dataset, "cast_column") and hasattr(dataset, "features"):
        from datasets import Audio

        feature = dataset.features["audio"]
        if isinstance(feature, Audio) and feature.decode:
            dataset = dataset.cast_column("audio", Audio(decode=False))
        for start in range(0, len(dataset), batch_size):
            items = dataset[start : start + batch_size]["audio"]
            yield [waveform_from_item(item, sample_rate, name=f"row {start + i}") for i, item in enumerate(items)]
        return
    row = 0
    for batch in inputs:  # a plain torch dataset: its collate gives the items
        items = batch["audio"]
        yield [waveform_from_item(item, sample_rate, name=f"row {row + i}") for i, item in enumerate(items)]
        row += len(items)


def iter_text_batches(inputs: DataLoader[Any]) -> Iterator[list[str]]:
    """The texts of a task's ``DataLoader``, batch by batch."""
    dataset = inputs.dataset
    if hasattr(dataset, "select_columns") and "text" in getattr(dataset, "column_names", ()):
        texts = dataset["text"]
        batch_size = inputs.batch_size or 1
        for start in range(0, len(texts), batch_size):
            yield [str(t) for t in texts[start : start + batch_size]]
        return
    for batch in inputs:
        yield [str(t) for t in batch["text"]]


def _device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


# --------------------------------------------------------------------------------------------------
# MuQ
# --------------------------------------------------------------------------------------------------
def pool_frames(frames: torch.Tensor, pooling: Pooling) -> torch.Tensor:
    """Pool (frames, dim) over time: ``mean`` and ``max`` give (dim,), ``mean_std`` (2 * dim,)."""
    if pooling == "mean":
        return frames.mean(dim=0)
    if pooling == "max":
        return frames.amax(dim=0)
    if pooling == "mean_std":
        return torch.cat([frames.mean(dim=0), frames.std(dim=0, unbiased=False)])
    raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")


class MuQEncoder(AbsEncoder):
    """MuQ (any muqkit or official checkpoint) as an MTEB audio encoder.

    Args:
        model_name: Hub id or checkpoint folder (official format, as ``MuQ.save_pretrained`` writes it).
        revision: Hub revision.
        device: where the model runs (default: CUDA when available).
        model: an already loaded :class:`muqkit.MuQ` (``model_name`` then only names it).
        layers: hidden states: ``"all"`` or indices (0 = conv front end, i = Conformer layer i, negative from the end).
        reduce: ``"mean"`` averages the chosen layers, ``"concat"`` concatenates them.
        pooling: ``"mean"``, ``"max"`` or ``"mean_std"`` over each clip's frames.
        chunk_seconds: longest piece of audio encoded in one pass; longer clips are encoded chunk by chunk and
            all their frames pooled.
        batch_size: chunks per model call (the task's batch size does not change what a clip gets).
        license: licence of the weights, for the model meta.
        cache_dir: Hugging Face cache folder.
    """

    def __init__(
        self,
        model_name: str = OFFICIAL_MUQ,
        revision: str | None = None,
        *,
        device: str | torch.device | None = None,
        model: MuQ | None = None,
        layers: LayerSpec = "all",
        reduce: Reduce = "mean",
        pooling: Pooling = "mean",
        chunk_seconds: float = 30.0,
        batch_size: int = 8,
        license: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        **kwargs: Any,
    ) -> None:
        if reduce not in ("mean", "concat"):
            raise ValueError(f"reduce must be 'mean' or 'concat', got {reduce!r}")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if model is None:
            from muqkit.ssl.muq import MuQ

            model = MuQ.from_pretrained(model_name, revision=revision, cache_dir=cache_dir)
        self.device = _device(device)
        self.model = model.eval().to(self.device)
        config = self.model.config
        self.layers = resolve_layers(layers, int(config.encoder_depth) + 1)
        self.reduce = reduce
        self.pooling = pooling
        self.chunk_samples = chunk_length(chunk_seconds, config)
        self.frame_samples = samples_per_frame(config)
        self.batch_size = batch_size
        self.sample_rate = int(config.sample_rate)
        width = int(config.encoder_dim) * (len(self.layers) if reduce == "concat" else 1)
        self.embed_dim = width * (2 if pooling == "mean_std" else 1)
        settings = {"layers": ",".join(map(str, self.layers)), "reduce": reduce, "pooling": pooling,
                    "chunk_seconds": self.chunk_samples / self.sample_rate}  # fmt: skip
        self.mteb_model_meta = model_meta(
            self.model,
            name_or_path=model_name,
            revision=revision,
            modalities=["audio"],
            embed_dim=self.embed_dim,
            similarity="cosine",
            license=license,
            loader=MuQEncoder,
            loader_kwargs={"layers": list(self.layers), "reduce": reduce, "pooling": pooling,
                           "chunk_seconds": chunk_seconds},  # fmt: skip
            experiment_kwargs=settings,
        )

    def frames(self, wavs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Every frame of each clip: one (frames_i, width) float32 tensor per (samples,) waveform at 24 kHz.

        Clips longer than ``chunk_seconds`` are encoded in chunks whose frames are concatenated; chunks of
        all the clips are batched ``batch_size`` at a time with their lengths (no unmasked padding); a clip
        shorter than one frame (40 ms) is zero-padded to one frame.
        """
        clips = [w.reshape(-1).float() for w in wavs]
        clips = [torch.nn.functional.pad(w, (0, self.frame_samples - w.numel())) if w.numel() < self.frame_samples
                 else w for w in clips]  # fmt: skip

        def chunks() -> Iterator[Chunk]:
            for key, wav in enumerate(clips):
                bounds = chunk_bounds(wav.numel(), chunk_samples=self.chunk_samples, min_samples=self.frame_samples)
                for index, (start, end) in enumerate(bounds):
                    yield Chunk(key=key, index=index, samples=wav[start:end], last=index == len(bounds) - 1)

        parts: list[list[torch.Tensor]] = [[] for _ in clips]
        with torch.inference_mode():
            for out in encode_chunks(self.model, chunks(), layers=self.layers, batch_size=self.batch_size):
                parts[out.key].append(out.hidden.float().cpu())  # (layers, T, dim)
        result = []
        for pieces in parts:
            hidden = torch.cat(pieces, dim=1)  # (layers, frames, dim)
            if self.reduce == "mean":
                result.append(hidden.mean(dim=0))
            else:
                result.append(hidden.permute(1, 0, 2).flatten(1))  # (frames, layers * dim), layer-major
        return result

    def embed_waveforms(self, wavs: Sequence[torch.Tensor]) -> torch.Tensor:
        """(B, embed_dim) float32 embeddings of (samples,) waveforms at 24 kHz (see :meth:`frames`)."""
        return torch.stack([pool_frames(f, self.pooling) for f in self.frames(wavs)])

    def encode(
        self,
        inputs: DataLoader[Any],
        *,
        task_metadata: Any,
        hf_split: str,
        hf_subset: str,
        prompt_type: Any = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """(rows, embed_dim) float32 embeddings of the audio of a task's rows (MTEB's encoder protocol)."""
        if "audio" not in _columns(inputs):
            raise ValueError(f"MuQ embeds audio only; task {getattr(task_metadata, 'name', '?')} gave no audio column")
        out = [self.embed_waveforms(batch) for batch in iter_audio_batches(inputs, self.sample_rate)]
        return torch.cat(out).numpy() if out else np.zeros((0, self.embed_dim), dtype=np.float32)


# --------------------------------------------------------------------------------------------------
# MuQ-MuLan
# --------------------------------------------------------------------------------------------------
class MuQMuLanEncoder(AbsEncoder):
    """MuQ-MuLan (official or muqkit checkpoint) as an MTEB audio and text encoder.

    Args:
        model_name: Hub id or checkpoint folder.
        revision: Hub revision.
        device: where the model runs (default: CUDA when available).
        model: an already loaded :class:`muqkit.MuQMuLan`.
        clip_batch_size: clips per audio-tower call.
        text_batch_size: texts per text-tower call.
        license: licence of the weights, for the model meta.
        cache_dir: Hugging Face cache folder.
    """

    def __init__(
        self,
        model_name: str = OFFICIAL_MULAN,
        revision: str | None = None,
        *,
        device: str | torch.device | None = None,
        model: MuQMuLan | None = None,
        clip_batch_size: int = 32,
        text_batch_size: int = 32,
        license: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        **kwargs: Any,
    ) -> None:
        if clip_batch_size < 1 or text_batch_size < 1:
            raise ValueError(f"batch sizes must be at least 1, got {clip_batch_size}, {text_batch_size}")
        if model is None:
            from muqkit.mulan.model import MuQMuLan

            model = MuQMuLan.from_pretrained(model_name, revision=revision, cache_dir=cache_dir)
        self.device = _device(device)
        self.model = model.eval().to(self.device)
        self.clip_batch_size = clip_batch_size
        self.text_batch_size = text_batch_size
        self.sample_rate = int(self.model.sample_rate)
        self.embed_dim = int(self.model.config.dim_latent)
        self.mteb_model_meta = model_meta(
            self.model,
            name_or_path=model_name,
            revision=revision,
            modalities=["audio", "text"],
            embed_dim=self.embed_dim,
            similarity="dot",
            license=license,
            loader=MuQMuLanEncoder,
            experiment_kwargs=None,
        )

    def embed_waveforms(self, wavs: Sequence[torch.Tensor]) -> torch.Tensor:
        """(B, dim_latent) float32 audio latents of (samples,) waveforms at 24 kHz: each cut into the model's
        clips (the official wrap-around rule) whose latents are averaged; clips shorter than one frame are
        zero-padded to one frame (40 ms)."""
        frame = int(self.sample_rate // 25)
        clips = [w.reshape(-1).float() for w in wavs]
        clips = [torch.nn.functional.pad(w, (0, frame - w.numel())) if w.numel() < frame else w for w in clips]
        with torch.inference_mode():
            latents = self.model.extract_audio_latents(clips, clip_batch_size=self.clip_batch_size)
        return latents.float().cpu()

    def embed_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """(B, dim_latent) float32 text latents; a text's latent does not depend on its batch."""
        with torch.inference_mode():
            return self.model.extract_text_latents(list(texts), batch_size=self.text_batch_size).float().cpu()

    def encode(
        self,
        inputs: DataLoader[Any],
        *,
        task_metadata: Any,
        hf_split: str,
        hf_subset: str,
        prompt_type: Any = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """(rows, dim_latent) latents of a task's rows: audio, text, or (rows holding both) their sum, as
        MTEB's multimodal wrappers fuse them."""
        columns = _columns(inputs)
        parts = []
        if "text" in columns:
            parts.append(torch.cat([self.embed_texts(b) for b in iter_text_batches(inputs)]))
        if "audio" in columns:
            parts.append(torch.cat([self.embed_waveforms(b) for b in iter_audio_batches(inputs, self.sample_rate)]))
        if not parts:
            raise ValueError(f"task {getattr(task_metadata, 'name', '?')} gave neither an audio nor a text column")
        if len(parts) == 2 and parts[0].shape != parts[1].shape:
            raise ValueError(f"{parts[0].shape[0]} texts and {parts[1].shape[0]} audio items in one dataset")
        return (parts[0] if len(parts) == 1 else parts[0] + parts[1]).numpy()


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------
def checkpoint_kind(
    id_or_folder: str | os.PathLike[str],
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Literal["muq", "mulan"]:
    """Whether a checkpoint (Hub id or folder) holds MuQ or MuQ-MuLan, from its ``config.json``.

    Raises:
        muqkit.hub.weights.CheckpointError: not a checkpoint folder or Hub id, or no readable config.
    """
    from muqkit.hub.loaders import MULAN_MODEL_TYPE
    from muqkit.hub.weights import read_config, resolve_folder

    raw = read_config(resolve_folder(id_or_folder, revision=revision, cache_dir=cache_dir))
    return "mulan" if raw.get("model_type") == MULAN_MODEL_TYPE or "text_model" in raw else "muq"


def load_mteb_model(
    id_or_folder: str | os.PathLike[str] | None = None,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    device: str | torch.device | None = None,
    **options: Any,
) -> MuQEncoder | MuQMuLanEncoder:
    """The MTEB encoder of a checkpoint: :class:`MuQMuLanEncoder` for MuQ-MuLan, else :class:`MuQEncoder`.

    Args:
        id_or_folder: Hub id or folder (a run's ``model/`` folder); None: muqkit's default MuQ
            (:func:`muqkit.hub.defaults.default_muq_model`).
        revision, cache_dir: for a Hub id.
        device: where the model runs.
        **options: the encoder's options (``layers``, ``reduce``, ``pooling``, ``chunk_seconds``, ``batch_size``
            for MuQ; ``clip_batch_size``, ``text_batch_size`` for MuQ-MuLan; ``license``).

    Raises:
        ValueError: an option the model does not take.
        muqkit.hub.weights.CheckpointError: not a checkpoint.
    """
    from muqkit.hub.defaults import default_muq_model

    name = str(id_or_folder) if id_or_folder is not None else default_muq_model()
    kind = checkpoint_kind(name, revision=revision, cache_dir=cache_dir)
    allowed = {"muq": {"layers", "reduce", "pooling", "chunk_seconds", "batch_size", "license"},
               "mulan": {"clip_batch_size", "text_batch_size", "license"}}[kind]  # fmt: skip
    unknown = sorted(set(options) - allowed)
    if unknown:
        what = "MuQ-MuLan" if kind == "mulan" else "MuQ"
        raise ValueError(f"{name} is a {what} checkpoint, which takes no option {', '.join(unknown)} "
                         f"(it takes {', '.join(sorted(allowed))})")  # fmt: skip
    cls = MuQMuLanEncoder if kind == "mulan" else MuQEncoder
    return cls(name, revision, device=device, cache_dir=cache_dir, **options)
