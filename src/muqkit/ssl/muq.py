"""MuQ, the inference model: waveform -> log-mel -> conv front end -> Conformer -> hidden states.

Reads top to bottom::

    wavs (B, samples) 24 kHz
      -> MelFrontend            (B, 128, samples // 240)   normalised log-mel, 100 Hz
      -> ConvSubsampling        (B, T, dim)                T = ceil(ceil(frames / 2) / 2), 25 Hz
      -> Conformer              depth + 1 hidden states (B, T, dim)

Every stage carries per-item lengths, so an item in a padded batch gives exactly the frames it gives
alone. The pretraining wrapper (masking, heads, targets) lives apart from this model.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from muqkit.audio.mel import MEL_FIELDS, MelConfig, MelFrontend, WithMel
from muqkit.audio.tensors import as_waveforms, lengths_from_mask
from muqkit.configs import build, check_int, check_number, nest
from muqkit.encoder.conformer import Conformer, ConformerConfig
from muqkit.encoder.conv import ConvSubsampling

# The Conformer fields as older config files and keyword overrides give them, flat (name -> ConformerConfig
# field); MuQConfig reads each of them as a property.
CONFORMER_FIELDS: dict[str, str] = {
    "encoder_dim": "dim", "encoder_depth": "depth", "num_heads": "num_heads", "ffn_dim": "ffn_dim",
    "conv_kernel_size": "conv_kernel_size", "rotary_base": "rotary_base", "layer_norm_eps": "layer_norm_eps",
    "dropout": "dropout", "attention_dropout": "attention_dropout",
}


@dataclass(frozen=True)
class MuQConfig(WithMel):
    """Architecture of a MuQ encoder and the statistics of its input normalisation.

    The mel and Conformer fields are read flat too (``config.sample_rate``, ``config.encoder_dim``,
    ``config.num_heads``, ...); :meth:`from_dict` and :meth:`replace` accept them flat, as older config
    files hold them.

    Attributes:
        mel: the log-mel (official ``hop_length``, ``n_mels``; 24 kHz and n_fft 2048 fixed there).
        mel_mean: corpus mean of the dB mel used to normalise the input (official
            ``stat.melspec_2048_mean``).
        mel_std: corpus standard deviation of the dB mel (official ``stat.melspec_2048_std``).
        conv_dim: channels of the residual conv front end (official ``conv_dim``).
        conformer: the Conformer (official ``encoder_dim``, ``encoder_depth`` and ``w2v2_config``).
        label_rate: output frame rate in Hz (25: 4x subsampling of the 100 Hz mel frames; official
            ``label_rate``).
    """

    mel: MelConfig = field(default_factory=MelConfig)
    mel_mean: float = 0.0
    mel_std: float = 1.0
    conv_dim: int = 512
    conformer: ConformerConfig = field(default_factory=ConformerConfig)
    label_rate: int = 25

    def __post_init__(self) -> None:
        if not isinstance(self.mel, MelConfig):
            raise ValueError(f"MuQConfig.mel must be a MelConfig, got {type(self.mel).__name__}")
        if not isinstance(self.conformer, ConformerConfig):
            raise ValueError(f"MuQConfig.conformer must be a ConformerConfig, got {type(self.conformer).__name__}")
        check_number(self, "mel_mean")
        check_number(self, "mel_std", low=0.0, low_open=True)
        check_int(self, "conv_dim", "label_rate")
        mel_rate = self.mel.frame_rate
        if self.label_rate not in (mel_rate / 4, mel_rate / 2):
            raise ValueError(
                f"MuQConfig.label_rate must be a quarter or a half of the mel rate {mel_rate:g} Hz "
                f"({mel_rate / 4:g} or {mel_rate / 2:g}), got {self.label_rate}"
            )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MuQConfig:
        """Build from a dict: nested (``{"mel": {...}, "conformer": {...}, ...}``, as :func:`asdict` gives)
        or flat (``sample_rate``, ``encoder_dim``, ``num_heads``, ... as older files hold); flat fields win
        over nested ones. Unknown keys raise ``ValueError``."""
        data = dict(data)
        mel = nest(data, "mel", MelConfig, MEL_FIELDS, "MuQConfig")
        conformer = nest(data, "conformer", ConformerConfig, CONFORMER_FIELDS, "MuQConfig")
        return build(cls, {**data, "mel": mel, "conformer": conformer}, "MuQConfig")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (nested), the inverse of :meth:`from_dict`."""
        return asdict(self)

    def replace(self, **changes: Any) -> MuQConfig:
        """A copy with fields changed, nested or flat (``replace(encoder_depth=4)``)."""
        return MuQConfig.from_dict({**self.to_dict(), **changes})

    # Flat views of the nested fields (one source of truth: ``mel`` and ``conformer``).
    @property
    def encoder_dim(self) -> int:
        return self.conformer.dim

    @property
    def encoder_depth(self) -> int:
        return self.conformer.depth

    @property
    def num_heads(self) -> int:
        return self.conformer.num_heads

    @property
    def ffn_dim(self) -> int:
        return self.conformer.ffn_dim

    @property
    def conv_kernel_size(self) -> int:
        return self.conformer.conv_kernel_size

    @property
    def rotary_base(self) -> int:
        return self.conformer.rotary_base

    @property
    def layer_norm_eps(self) -> float:
        return self.conformer.layer_norm_eps

    @property
    def dropout(self) -> float:
        return self.conformer.dropout

    @property
    def attention_dropout(self) -> float:
        return self.conformer.attention_dropout

    @property
    def frame_rate(self) -> float:
        """Output frames per second."""
        return float(self.label_rate)

    @property
    def stack_factor(self) -> int:
        """Mel frames per output frame (4 at 25 Hz)."""
        return round(self.sample_rate / self.hop_length / self.label_rate)

    @classmethod
    def from_pretrained(
        cls, id_or_folder: str | os.PathLike[str], *, revision: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> MuQConfig:
        """The config of a MuQ checkpoint folder or Hub id (only its ``config.json`` is read)."""
        from muqkit.hub.loaders import load_muq_config

        return load_muq_config(id_or_folder, revision=revision, cache_dir=cache_dir)


# Mel statistics of the official MuQ checkpoints (corpus mean / std of the dB mel); random-weight
# presets use them so that their inputs are on the scale the released models see.
OFFICIAL_MEL_MEAN = 6.768444971712967
OFFICIAL_MEL_STD = 18.417922652295623

MUQ_PRESETS: dict[str, MuQConfig] = {
    # The official MuQ-large architecture (about 330M parameters with its prediction head).
    "large": MuQConfig(conv_dim=512, conformer=ConformerConfig(dim=1024, depth=12, num_heads=16, ffn_dim=4096)),
    "base": MuQConfig(conv_dim=512, conformer=ConformerConfig(dim=768, depth=12, num_heads=12, ffn_dim=3072)),
    "small": MuQConfig(conv_dim=128, conformer=ConformerConfig(dim=512, depth=8, num_heads=8, ffn_dim=2048)),
    # For tests and CPU demos.
    "tiny": MuQConfig(conv_dim=16, conformer=ConformerConfig(dim=64, depth=2, num_heads=4, ffn_dim=128)),
}
# Official checkpoints whose architecture is a preset (checks that need it, such as a MuQ-MuLan tower's
# layer, then work without reading the checkpoint).
OFFICIAL_ARCHITECTURES: dict[str, str] = {"OpenMuQ/MuQ-large-msd-iter": "large"}


def muq_preset(name: str, **overrides: Any) -> MuQConfig:
    """The MuQConfig of preset ``name`` (one of :data:`MUQ_PRESETS`, with the official mel statistics),
    with field overrides, nested or flat (``muq_preset("tiny", dropout=0.0)``)."""
    if name not in MUQ_PRESETS:
        raise ValueError(f"unknown MuQ preset {name!r}; choose one of {sorted(MUQ_PRESETS)}")
    return MUQ_PRESETS[name].replace(**{"mel_mean": OFFICIAL_MEL_MEAN, "mel_std": OFFICIAL_MEL_STD, **overrides})


@dataclass(frozen=True)
class MuQOutput:
    """Output of :class:`MuQ`.

    Attributes:
        last_hidden_state: (batch, frames, dim) at ``frame_rate``; zero past ``lengths``.
        hidden_states: the conv front-end output and each Conformer layer's output (the last one after
            the final LayerNorm), each (batch, frames, dim); ``None`` unless requested.
        lengths: (batch,) valid frames of each item.
    """

    last_hidden_state: torch.Tensor
    lengths: torch.Tensor
    hidden_states: tuple[torch.Tensor, ...] | None = None

    def __getitem__(self, key: str) -> Any:  # dict-style access, like transformers' outputs
        return getattr(self, key)


class MuQ(nn.Module):
    """MuQ encoder for inference and feature extraction.

    Args:
        config: architecture and normalisation statistics.

    Example:
        >>> muq = MuQ.from_preset("tiny").eval()
        >>> out = muq(torch.randn(2, 24000), output_hidden_states=True)
        >>> out.last_hidden_state.shape, len(out.hidden_states)
        (torch.Size([2, 25, 64]), 3)
    """

    def __init__(self, config: MuQConfig) -> None:
        super().__init__()
        self.config = config
        self.frontend = MelFrontend.from_config(config.mel, mean=config.mel_mean, std=config.mel_std)
        strides = (2, 2) if config.stack_factor == 4 else (2, 1)
        self.conv = ConvSubsampling(config.n_mels, config.conv_dim, config.encoder_dim, strides)
        self.conformer = Conformer(config.conformer)
        self.name_or_path: str | None = None
        self.revision: str | None = None

    # ----------------------------------------------------------------------------------------------
    # Construction and checkpoints
    # ----------------------------------------------------------------------------------------------
    @classmethod
    def from_preset(cls, name: str, *, seed: int | None = 0, **overrides: Any) -> MuQ:
        """A randomly initialised model of a named preset (``tiny``, ``small``, ``base``, ``large``)."""
        if seed is not None:
            torch.manual_seed(seed)
        model = cls(muq_preset(name, **overrides))
        model.name_or_path = f"preset:{name}"
        return model

    @classmethod
    def from_pretrained(
        cls,
        id_or_folder: str | os.PathLike[str],
        *,
        revision: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        map_location: str | torch.device = "cpu",
    ) -> MuQ:
        """Load a checkpoint in the official format (``config.json`` + ``model.safetensors`` or
        ``pytorch_model.bin``) from a folder or a Hub id such as ``OpenMuQ/MuQ-large-msd-iter``, in eval
        mode (see :func:`muqkit.hub.loaders.load_muq`).

        Raises:
            muqkit.hub.weights.CheckpointError: the folder is missing files or its weights do not fit
                (one message lists missing keys, unexpected keys and shape mismatches).
        """
        from muqkit.hub.loaders import load_muq

        return load_muq(id_or_folder, revision=revision, cache_dir=cache_dir).eval().to(map_location)

    def save_pretrained(self, folder: str | os.PathLike[str]) -> Path:
        """Write ``config.json`` and ``model.safetensors`` in the official format (atomically), with the
        official extras it was loaded with (see :func:`muqkit.hub.loaders.save_muq`)."""
        from muqkit.hub.loaders import save_muq

        return save_muq(self, folder)

    # ----------------------------------------------------------------------------------------------
    # Shapes
    # ----------------------------------------------------------------------------------------------
    @property
    def min_samples(self) -> int:
        """Fewest input samples that make one whole output frame (960, 40 ms at 24 kHz)."""
        return self.config.hop_length * self.config.stack_factor

    def num_frames(self, num_samples: torch.Tensor | int) -> torch.Tensor:
        """Output frames for inputs of ``num_samples`` samples."""
        samples = torch.as_tensor(num_samples)
        return self.conv.output_lengths(self.frontend.num_frames(samples))

    @property
    def dtype(self) -> torch.dtype:
        return self.conv.proj.weight.dtype

    # ----------------------------------------------------------------------------------------------
    # Forward
    # ----------------------------------------------------------------------------------------------
    def embed_mel(
        self, mel: torch.Tensor, mel_lengths: torch.Tensor, *, num_layers: int | None = None
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Encode a normalised log-mel.

        Args:
            mel: (batch, n_mels, frames), zero past ``mel_lengths``.
            mel_lengths: (batch,) valid mel frames.
            num_layers: stop after this many Conformer layers.

        Returns:
            ``(hidden_states, lengths)``: list of (batch, T, dim) and (batch,) valid output frames.
        """
        x, lengths = self.conv(mel.to(self.dtype), mel_lengths)  # (batch, T, dim)
        states = self.conformer(x, lengths, num_layers=num_layers)
        return states, lengths

    def forward(
        self,
        wavs: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_hidden_states: bool = True,
        *,
        lengths: torch.Tensor | None = None,
        num_layers: int | None = None,
    ) -> MuQOutput:
        """Embed a batch of waveforms.

        Args:
            wavs: (batch, samples) or (samples,) mono waveforms at ``config.sample_rate``: a tensor or numpy
                array, float in [-1, 1] or int8/int16/int32 PCM (scaled to [-1, 1)).
            attention_mask: (batch, samples), nonzero for valid samples (each item's valid samples come
                first; a mask with gaps is refused). An alternative to ``lengths``.
            output_hidden_states: also return every hidden state.
            lengths: (batch,) valid samples of each item; ``None`` means every item fills the batch.
            num_layers: run only the first Conformer layers (for probing early layers cheaply); the last
                state is then that layer's output, without the final LayerNorm.

        Returns:
            MuQOutput with frames at ``config.frame_rate``; padded frames are zero.

        Raises:
            TypeError: a list, or an ambiguous dtype (uint8, int64, bool).
            ValueError: an empty batch, NaN or infinite samples, a mask that is not a prefix, lengths that do
                not fit, or audio shorter than one frame.
        """
        wavs = as_waveforms(wavs)  # (batch, samples) float; int PCM scaled; NaN, empty, lists refused
        if attention_mask is not None:
            if lengths is not None:
                raise ValueError("give attention_mask or lengths, not both")
            lengths = lengths_from_mask(attention_mask, wavs.shape, device=wavs.device)
        if lengths is not None:
            lengths = torch.as_tensor(lengths, device=wavs.device).long()
            if lengths.shape != (wavs.shape[0],) or bool((lengths > wavs.shape[1]).any()):
                raise ValueError(f"lengths {lengths.tolist()} do not fit wavs of shape {tuple(wavs.shape)}")
        shortest = wavs.shape[1] if lengths is None else int(lengths.min())
        if shortest < self.min_samples:
            raise ValueError(
                f"audio too short: {shortest} samples; one frame needs {self.min_samples} "
                f"({1000 * self.min_samples / self.config.sample_rate:g} ms)"
            )
        with torch.autocast(wavs.device.type, enabled=False):
            mel = self.frontend(wavs, lengths)  # (batch, n_mels, frames), fp32 (fp64 for fp64 input)
        states, out_lengths = self.embed_mel(mel.mel, mel.lengths, num_layers=num_layers)
        return MuQOutput(
            last_hidden_state=states[-1],
            lengths=out_lengths,
            hidden_states=tuple(states) if output_hidden_states else None,
        )
