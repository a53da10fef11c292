"""MuQ-MuLan: MuQ audio tower and a text tower mapped into one L2-normalised latent space.

    audio (B, samples) -> clips -> AudioTower (C, dim_a) -> audio_to_latents -> l2norm -> mean over clips
    texts [B]          -> TextTower (B, dim_t)          -> text_to_latents  -> l2norm

Call styles of the official package work: ``mulan(wavs=wavs)``, ``mulan(texts=[...])`` and
``mulan.calc_similarity(audio_latents, text_latents)``. Unlike the official loop, clips of every item of a
batch run through the audio tower together.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from muqkit.mulan.audio import AudioTower, AudioTowerOutput, cut_clips
from muqkit.mulan.config import MuQMuLanConfig
from muqkit.mulan.text import (
    TextBatch,
    TextTower,
    TextTowerOutput,
    backbone_config_dict,
    build_text_backbone,
    resolve_text_backbone,
)

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MuLanAudioOutput:
    """Audio latents of clips that went through the tower in one pass (no clip cutting).

    Attributes:
        latents: (B, dim_latent) L2-normalised.
        tower: the audio tower's output (embeddings, states, frame lengths).
    """

    latents: torch.Tensor
    tower: AudioTowerOutput


@dataclass(frozen=True)
class MuLanTextOutput:
    """Text latents.

    Attributes:
        latents: (B, dim_latent) L2-normalised.
        tower: the text tower's output (embeddings, states, mask).
    """

    latents: torch.Tensor
    tower: TextTowerOutput


class MuQMuLan(nn.Module):
    """The music-text model.

    Args:
        audio: the audio tower.
        text: the text tower.
        config: the architecture this model was built from (saved with it).

    Example:
        >>> mulan = MuQMuLan.from_pretrained("OpenMuQ/MuQ-MuLan-large").eval()  # doctest: +SKIP
        >>> a = mulan(wavs=wavs)                    # (B, 512)
        >>> t = mulan(texts=["a calm piano piece"])  # (1, 512)
        >>> mulan.calc_similarity(a, t)             # (B, 1)
    """

    def __init__(self, audio: AudioTower, text: TextTower, *, config: MuQMuLanConfig) -> None:
        super().__init__()
        if audio.sample_rate != config.sample_rate:
            raise ValueError(
                f"the audio backbone runs at {audio.sample_rate} Hz, the config says {config.sample_rate}"
            )
        self.config = config
        self.audio = audio
        self.text = text
        self.audio_to_latents = nn.Linear(audio.dim, config.dim_latent)
        self.text_to_latents = nn.Linear(text.dim, config.dim_latent)
        # Log of the similarity multiplier of the contrastive loss (the official "temperature").
        self.log_scale = nn.Parameter(torch.tensor(math.log(config.init_temperature)))
        self.name_or_path: str | None = None

    # ----------------------------------------------------------------------------------------------
    # Construction and checkpoints
    # ----------------------------------------------------------------------------------------------
    @classmethod
    def from_config(
        cls,
        config: MuQMuLanConfig,
        *,
        load_backbone_weights: bool = False,
        search: Sequence[str | os.PathLike[str]] = (),
        cache_dir: str | os.PathLike[str] | None = None,
        text_tokenizer: str | os.PathLike[str] | None = None,
    ) -> MuQMuLan:
        """Build a model from its config.

        Args:
            config: the architecture.
            load_backbone_weights: load the pretrained MuQ and text encoder weights (to start training);
                otherwise the backbones are random and their weights are expected from a checkpoint.
            search: folders against which relative backbone names are resolved.
            cache_dir: Hugging Face cache folder.
            text_tokenizer: a folder holding the text tokenizer (a saved model's); default: the text
                backbone's own.
        """
        from muqkit.ssl.muq import MuQ, MuQConfig

        folders = [Path(s) for s in search]
        audio_name = config.audio.backbone
        if audio_name.startswith("preset:"):
            if config.audio.backbone_config is not None:
                backbone = MuQ(config.audio.backbone_config)
            else:
                backbone = MuQ.from_preset(audio_name.split(":", 1)[1], seed=None)
        elif load_backbone_weights:
            backbone = MuQ.from_pretrained(_resolve_path(audio_name, folders), cache_dir=cache_dir)
        elif config.audio.backbone_config is not None:
            backbone = MuQ(config.audio.backbone_config)
        else:
            backbone = MuQ(MuQConfig.from_pretrained(_resolve_path(audio_name, folders), cache_dir=cache_dir))
        if config.audio.backbone_config is None:
            config = replace(config, audio=replace(config.audio, backbone_config=backbone.config))
        audio = AudioTower(
            backbone,
            layer=config.audio.layer,
            transformer=config.audio.transformer,
            lag_pooling=config.audio.lag_pooling,
            lag_channels=config.audio.lag_channels,
        )

        saved_tokenizer = None if text_tokenizer is None else Path(text_tokenizer)
        needs_source = load_backbone_weights or saved_tokenizer is None or config.text.backbone_config is None
        source = resolve_text_backbone(config.text.backbone, search=folders) if needs_source else None
        text_model, tokenizer = build_text_backbone(
            source,
            tokenizer_source=None if saved_tokenizer is None else str(saved_tokenizer),
            config=None if load_backbone_weights else config.text.backbone_config,
            load_weights=load_backbone_weights,
            cache_dir=cache_dir,
        )
        if config.text.backbone_config is None:
            config = replace(
                config, text=replace(config.text, backbone_config=backbone_config_dict(text_model))
            )
        text = TextTower(
            text_model, tokenizer, transformer=config.text.transformer, max_length=config.text.max_length
        )
        return cls(audio, text, config=config)

    @classmethod
    def from_pretrained(
        cls,
        id_or_folder: str | os.PathLike[str],
        *,
        revision: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        map_location: str | torch.device = "cpu",
    ) -> MuQMuLan:
        """Load a checkpoint in the official format (``OpenMuQ/MuQ-MuLan-large`` or a folder written by the
        official ``save_pretrained``) or muqkit's (:meth:`save_pretrained`), in eval mode (see
        :func:`muqkit.hub.loaders.load_mulan`).

        Raises:
            muqkit.hub.weights.CheckpointError: missing files, or weights that do not fit.
        """
        from muqkit.hub.loaders import load_mulan

        return load_mulan(id_or_folder, revision=revision, cache_dir=cache_dir).eval().to(map_location)

    def save_pretrained(self, folder: str | os.PathLike[str], *, official: bool = False) -> Path:
        """Write the model (muqkit's format, or with ``official`` the official layout: see
        :func:`muqkit.hub.loaders.save_mulan`). Returns the folder holding ``config.json`` and
        ``model.safetensors``."""
        from muqkit.hub.loaders import save_mulan

        return save_mulan(self, folder, official=official)

    # ----------------------------------------------------------------------------------------------
    # Properties
    # ----------------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.log_scale.device

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def sr(self) -> int:
        """The official name of :attr:`sample_rate`."""
        return self.config.sample_rate

    @property
    def clip_secs(self) -> float:
        return self.config.clip_secs

    @property
    def temperature(self) -> torch.Tensor:
        """The similarity multiplier of the contrastive loss."""
        return self.log_scale.exp()

    # ----------------------------------------------------------------------------------------------
    # Towers without clip cutting (training)
    # ----------------------------------------------------------------------------------------------
    def encode_audio(self, wavs: torch.Tensor, lengths: torch.Tensor | None = None) -> MuLanAudioOutput:
        """Latents of (B, samples) waveforms taken whole (no clip cutting), with (B,) valid samples."""
        tower = self.audio(wavs.to(self.device), None if lengths is None else lengths.to(self.device))
        latents = F.normalize(self.audio_to_latents(tower.embeds), dim=-1)
        return MuLanAudioOutput(latents=latents, tower=tower)

    def encode_text(self, batch: TextBatch | Sequence[str]) -> MuLanTextOutput:
        """Latents of tokenised texts (or of raw strings, tokenised here)."""
        if not isinstance(batch, TextBatch):
            batch = self.text.tokenize(batch)
        tower = self.text(batch)
        latents = F.normalize(self.text_to_latents(tower.embeds), dim=-1)
        return MuLanTextOutput(latents=latents, tower=tower)

    # ----------------------------------------------------------------------------------------------
    # Inference (official call style)
    # ----------------------------------------------------------------------------------------------
    def extract_audio_latents(
        self,
        wavs: torch.Tensor | Sequence[torch.Tensor],
        lengths: torch.Tensor | None = None,
        *,
        clip_batch_size: int = 32,
        parallel_processing: bool | None = None,
    ) -> torch.Tensor:
        """Audio latents of a batch of songs of any length.

        Each item is cut into clips of ``clip_secs`` (the last one wrapped around with audio from the
        item's start), every clip of every item goes through the audio tower in batches of
        ``clip_batch_size``, and an item's latent is the mean of its clips' L2-normalised latents (not
        normalised again, as in the official model).

        Args:
            wavs: (B, samples) waveforms at ``sample_rate``, or a list of 1-D waveforms.
            lengths: (B,) valid samples per item for a padded batch.
            clip_batch_size: clips per forward pass (memory bound).
            parallel_processing: accepted for compatibility with the official signature; ignored.

        Returns:
            (B, dim_latent) latents.
        """
        del parallel_processing
        if clip_batch_size < 1:
            raise ValueError(f"clip_batch_size must be >= 1, got {clip_batch_size}")

        def clip_latents(group: torch.Tensor) -> torch.Tensor:
            return torch.cat([self.encode_audio(group[start : start + clip_batch_size]).latents.float()
                              for start in range(0, group.shape[0], clip_batch_size)])  # fmt: skip

        return song_latents(wavs, lengths, self.config.clip_samples, self.config.dim_latent, clip_latents,
                            device=self.device)  # fmt: skip

    def extract_text_latents(self, texts: Sequence[str], *, batch_size: int = 32) -> torch.Tensor:
        """(B, dim_latent) float32 latents of ``texts``; a text's latent does not depend on its batch.

        Texts go through the tower sorted by token count, ``batch_size`` at a time, so that batches carry
        little padding (the text backbone computes every padded position).
        """
        if isinstance(texts, str):
            raise TypeError("texts must be a list of strings, not one string")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        texts = list(texts)
        out = torch.zeros(len(texts), self.config.dim_latent, device=self.device)
        if not texts:
            return out
        counts = self.text.token_counts(texts)
        order = sorted(range(len(texts)), key=counts.__getitem__)
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            latents = self.encode_text([texts[i] for i in chunk]).latents
            out[torch.tensor(chunk, device=self.device)] = latents.float()
        return out

    def forward(
        self,
        wavs: torch.Tensor | Sequence[torch.Tensor] | None = None,
        texts: Sequence[str] | None = None,
        *,
        lengths: torch.Tensor | None = None,
        parallel_processing: bool | None = None,
        clip_batch_size: int = 32,
    ) -> torch.Tensor:
        """Latents of audio OR texts, as the official ``MuQMuLan.__call__``.

        Args:
            wavs: (B, samples) waveforms (or a list of 1-D ones), see :meth:`extract_audio_latents`.
            texts: list of strings.
            lengths: (B,) valid samples of a padded ``wavs`` batch.
            parallel_processing: ignored (clips are always batched).
            clip_batch_size: clips per forward pass.

        Returns:
            (B, dim_latent) latents.
        """
        if (wavs is None) == (texts is None):
            raise ValueError("give either wavs or texts, not both and not neither")
        if wavs is not None:
            return self.extract_audio_latents(
                wavs, lengths, clip_batch_size=clip_batch_size, parallel_processing=parallel_processing
            )
        assert texts is not None
        return self.extract_text_latents(texts)

    @staticmethod
    def calc_similarity(audio_latents: torch.Tensor, text_latents: torch.Tensor) -> torch.Tensor:
        """Dot products of audio and text latents: (A, d) x (T, d) -> (A, T); 1-D inputs drop their axis."""
        if audio_latents.dim() not in (1, 2) or text_latents.dim() not in (1, 2):
            raise ValueError(
                f"latents must be (d,) or (n, d), got {tuple(audio_latents.shape)} and "
                f"{tuple(text_latents.shape)}"
            )
        return (
            audio_latents @ text_latents.transpose(-1, -2)
            if text_latents.dim() == 2
            else audio_latents @ text_latents
        )


def _resolve_path(name: str, folders: Sequence[Path]) -> str:
    path = Path(name).expanduser()
    if not path.is_absolute():
        for base in folders:
            if (base / path).is_dir():
                return str(base / path)
    return name


def song_latents(
    wavs: torch.Tensor | Sequence[torch.Tensor],
    lengths: torch.Tensor | None,
    clip_samples: int,
    dim_latent: int,
    clip_latents: Callable[[torch.Tensor], torch.Tensor],
    *,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """(B, dim_latent) latents of songs of any length: each item cut into clips of ``clip_samples``
    (:func:`muqkit.mulan.audio.cut_clips`), ``clip_latents`` on each group of clips ((c, samples) ->
    (c, dim_latent) unit latents), an item's latent the mean of its clips'. ``wavs``: (B, samples) with
    ``lengths``, or a list of 1-D waveforms. The float32 model and the int8 one both pool through here."""
    if not isinstance(wavs, torch.Tensor):
        items = [torch.as_tensor(w) for w in wavs]
        if lengths is not None:
            raise ValueError("give lengths only with a padded (B, samples) tensor")
        lengths = torch.tensor([w.shape[-1] for w in items])
        wavs = nn.utils.rnn.pad_sequence([w.reshape(-1) for w in items], batch_first=True)
    if wavs.dim() == 1:
        wavs = wavs.unsqueeze(0)
    if wavs.dim() != 2:
        raise ValueError(f"wavs must be (batch, samples), got shape {tuple(wavs.shape)}")
    wavs = wavs.to(device, torch.float32)
    clips = cut_clips(wavs, lengths, clip_samples)
    total = torch.zeros(wavs.shape[0], dim_latent, device=device)
    for group, owners in clips.groups:
        total.index_add_(0, owners, clip_latents(group).float())
    return total / clips.counts.to(total.device, total.dtype).unsqueeze(-1)
