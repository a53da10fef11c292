"""The model behind the app: it embeds queries (texts, uploaded audio, tag prompts) once loaded.

An index holds MuQ-MuLan latents (``muqkit mulan index``: text search, tags, music search) or MuQ
latents (:func:`build_muq_index`, the demo's index: music search and the map only). Which one is read
from the config of the model that built the index.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F

from muqkit.serve.backend import TextSearchUnavailable

if TYPE_CHECKING:
    from muqkit.mulan.index import AudioIndex
    from muqkit.mulan.model import MuQMuLan
    from muqkit.ssl.muq import MuQ

ModelKind = Literal["mulan", "muq"]

# MuQ sees at most this much audio at once; longer files are cut and their frames averaged.
MUQ_CHUNK_SECONDS = 30.0
TAG_CACHE_SIZE = 32


def model_kind(id_or_folder: str | os.PathLike[str]) -> ModelKind:
    """``"mulan"`` for a MuQ-MuLan checkpoint (official or muqkit format), ``"muq"`` for a MuQ one.

    Only ``config.json`` is read (downloaded for a Hub id).

    Raises:
        CheckpointError: no such folder or Hub id, or no readable ``config.json``.
    """
    from muqkit.hub.loaders import MULAN_MODEL_TYPE
    from muqkit.hub.weights import read_config, resolve_folder

    raw = read_config(resolve_folder(id_or_folder, allow_patterns=["config.json"]))
    return "mulan" if raw.get("model_type") == MULAN_MODEL_TYPE or "mulan" in raw else "muq"


@dataclass(frozen=True)
class LatentConfig:
    """What :func:`muqkit.mulan.index.embed_audio_files` reads of a model's config.

    Attributes:
        dim_latent: width of the latents.
    """

    dim_latent: int


class MuQAudioLatents:
    """MuQ as an audio-latent model: the L2-normalised mean of the last hidden state over time.

    Gives a MuQ the ``extract_audio_latents`` / ``sample_rate`` / ``config.dim_latent`` interface of
    :class:`~muqkit.mulan.model.MuQMuLan`, so the MuQ-MuLan index builder embeds with it unchanged.

    Args:
        muq: the model (put in eval mode).
        chunk_seconds: longest audio given to the model at once.
    """

    def __init__(self, muq: MuQ, *, chunk_seconds: float = MUQ_CHUNK_SECONDS) -> None:
        if chunk_seconds <= 0:
            raise ValueError(f"chunk_seconds must be positive, got {chunk_seconds}")
        self.muq = muq.eval()
        self.sample_rate = int(muq.config.sample_rate)
        self.config = LatentConfig(dim_latent=int(muq.config.encoder_dim))
        self.chunk_samples = int(chunk_seconds * self.sample_rate)

    @torch.no_grad()
    def extract_audio_latents(self, wavs: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        """(B, encoder_dim) latents of waveforms of any length (a list of 1-D tensors or (B, samples))."""
        out = []
        device = next(self.muq.parameters()).device
        for wav in wavs:
            wav = torch.as_tensor(wav).reshape(-1).float()
            total = torch.zeros(self.config.dim_latent)
            frames = 0
            chunks = list(wav.split(self.chunk_samples))
            if len(chunks) > 1 and chunks[-1].numel() < self.muq.min_samples:
                chunks.pop()  # a tail shorter than one frame adds nothing
            for chunk in chunks:
                states = self.muq(chunk[None].to(device), output_hidden_states=False).last_hidden_state[0]
                total += states.float().sum(0).cpu()  # (frames, dim) -> (dim,)
                frames += states.shape[0]
            out.append(F.normalize(total / max(frames, 1), dim=-1))
        return torch.stack(out) if out else torch.zeros(0, self.config.dim_latent)


def build_muq_index(
    muq: MuQ, paths: Sequence[str | os.PathLike[str]], *, model_name: str, batch_size: int = 4
) -> tuple[AudioIndex, tuple[tuple[str, str], ...]]:
    """An :class:`~muqkit.mulan.index.AudioIndex` of MuQ latents (:class:`MuQAudioLatents`) of the audio
    under ``paths``, and the ``(file, problem)`` of the files left out. ``model_name``: the MuQ folder or
    Hub id recorded in the index (the app loads it to embed uploaded audio)."""
    from muqkit.mulan.index import build_index_reporting

    model = MuQAudioLatents(muq)
    return build_index_reporting(model, paths, model_name=model_name, batch_size=batch_size)  # type: ignore[arg-type]


class Embedder:
    """A loaded model that embeds queries into the index's latent space, safe to share between threads.

    Args:
        model: a MuQ-MuLan (text, tags and audio) or :class:`MuQAudioLatents` (audio only).
        name: the model's name or folder (shown by the app).
    """

    def __init__(self, model: MuQMuLan | MuQAudioLatents, *, name: str) -> None:
        self.model = model
        self.name = name
        self.kind: ModelKind = "muq" if isinstance(model, MuQAudioLatents) else "mulan"
        self.sample_rate = int(model.sample_rate)
        self.dim = int(model.config.dim_latent)
        self._lock = threading.Lock()  # one forward pass at a time: bounded memory, no shared-state races
        self._tags: OrderedDict[tuple[str, ...], torch.Tensor] = OrderedDict()

    @property
    def can_embed_text(self) -> bool:
        return self.kind == "mulan"

    def _text_model(self) -> MuQMuLan:
        if self.kind != "mulan":
            raise TextSearchUnavailable(
                f"the index holds MuQ latents ({self.name}): text search and tags need a MuQ-MuLan index "
                "(muqkit mulan index)"
            )
        return self.model  # type: ignore[return-value]

    @torch.no_grad()
    def text_latents(self, texts: Sequence[str]) -> torch.Tensor:
        """(Q, d) float32 latents of ``texts``.

        Raises:
            TextSearchUnavailable: the model has no text tower.
        """
        model = self._text_model()
        with self._lock:
            return model.extract_text_latents(list(texts)).float().cpu()

    @torch.no_grad()
    def audio_latent(self, wav: torch.Tensor) -> torch.Tensor:
        """(d,) latent of a 1-D waveform at :attr:`sample_rate`."""
        with self._lock:
            return self.model.extract_audio_latents([wav]).float().cpu()[0]

    def tag_latents(self, tags: Sequence[str]) -> torch.Tensor:
        """(K, d) latents of tag names through the default prompt ensemble (cached per tag list).

        Raises:
            TextSearchUnavailable: the model has no text tower.
        """
        from muqkit.mulan.zeroshot import DEFAULT_PROMPTS, ZeroShotClassifier

        model = self._text_model()
        key = tuple(tags)
        with self._lock:
            if key in self._tags:
                self._tags.move_to_end(key)
                return self._tags[key]
            latents = ZeroShotClassifier.from_model(model, key, DEFAULT_PROMPTS).tag_latents
            self._tags[key] = latents
            if len(self._tags) > TAG_CACHE_SIZE:
                self._tags.popitem(last=False)
            return latents


def load_embedder(
    id_or_folder: str | os.PathLike[str], *, device: str = "cpu", dtype: str = "float32"
) -> Embedder:
    """Load the model of an index (a MuQ-MuLan or a MuQ checkpoint) in eval mode.

    Raises:
        CheckpointError: the model cannot be found or loaded.
    """
    name = str(id_or_folder)
    if model_kind(id_or_folder) == "mulan":
        from muqkit.mulan.model import MuQMuLan

        mulan = MuQMuLan.from_pretrained(id_or_folder, map_location=device).to(getattr(torch, dtype)).eval()
        return Embedder(mulan, name=name)
    from muqkit.ssl.muq import MuQ

    muq = MuQ.from_pretrained(id_or_folder).to(device=device, dtype=getattr(torch, dtype)).eval()
    return Embedder(MuQAudioLatents(muq), name=name)
