"""The official MuQ-MuLan checkpoint format (``MuQMuLan.save_pretrained`` of the ``muq`` package).

``config.json`` has five sections: ``mulan`` (sr, clip_secs, dim_latent, loss switches), ``audio_model``
and ``text_model`` (backbone ``name``, ``model_dim``, ``use_layer_idx``), ``audio_transformer`` and
``text_transformer`` (dim, tf_depth, heads, dim_head, ff_mult, dropouts). The weights sit under ``mulan.``
and include both backbones (``mulan.audio.model.*`` in the official MuQ naming, translated by
:mod:`muqkit.hub.official.muq`; ``mulan.text.model.*`` in the ``transformers`` naming, kept as is), so
the backbones are built from their configs and tokenizer only.

This module is the one place that knows those names: a config translator and one two-way key table.
:func:`from_official` returns ``(config, state, extras)`` (the extras are the audio backbone's, see
:mod:`muqkit.hub.official.muq`); :func:`to_official` goes back. :mod:`muqkit.hub.loaders` builds the model.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from muqkit.hub.official import muq as official_muq
from muqkit.hub.official.muq import OfficialExtras
from muqkit.hub.weights import CheckpointError
from muqkit.mulan.config import AudioTowerConfig, MuQMuLanConfig, TextTowerConfig, TransformerConfig

if TYPE_CHECKING:
    from muqkit.mulan.model import MuQMuLan
    from muqkit.ssl.muq import MuQConfig

AUDIO_BACKBONE_PREFIX = "mulan.audio.model."
# The official MuQ wraps its network as ``.model``: its weights are "model.*" inside the MuQ checkpoint.
MUQ_PREFIX = AUDIO_BACKBONE_PREFIX + "model."
# Unused by the official forward pass (a Conv1d over 25 channels that nothing calls); dropped on import,
# written back as zeros on export.
UNUSED_OFFICIAL = {"mulan.audio.aggregator.weight": (1, 25, 1), "mulan.audio.aggregator.bias": (1,)}

# The one key table, both ways, for everything under ``mulan.`` but the audio backbone: (official, muqkit)
# templates, where ``{tower}`` is ``audio`` or ``text``, ``{i}`` a layer number and a final ``*`` the rest of
# the key. A key is renamed by the first template it matches (the same order serves both directions).
KEY_TABLE: tuple[tuple[str, str], ...] = (
    ("mulan.text.model.*", "text.backbone.*"),
    ("mulan.{tower}.proj.*", "{tower}.proj.*"),
    ("mulan.{tower}.transformer.layers.{i}.0.norm.learned_gamma", "{tower}.transformer.layers.{i}.attn.norm.weight"),
    ("mulan.{tower}.transformer.layers.{i}.0.to_out.0.*", "{tower}.transformer.layers.{i}.attn.to_out.*"),
    ("mulan.{tower}.transformer.layers.{i}.0.*", "{tower}.transformer.layers.{i}.attn.*"),
    ("mulan.{tower}.transformer.layers.{i}.1.0.learned_gamma", "{tower}.transformer.layers.{i}.ff.norm.weight"),
    ("mulan.{tower}.transformer.layers.{i}.1.1.*", "{tower}.transformer.layers.{i}.ff.proj_in.*"),
    ("mulan.{tower}.transformer.layers.{i}.1.4.*", "{tower}.transformer.layers.{i}.ff.proj_out.*"),
    ("mulan.{tower}_to_latents.*", "{tower}_to_latents.*"),
)
TEMPERATURE_KEY = "mulan.contrast.temperatures"
AUDIO_PREFIX = "audio.backbone."  # muqkit's name of the audio backbone


def _compile(template: str) -> re.Pattern[str]:
    pattern = re.escape(template).replace(r"\{tower\}", "(?P<tower>audio|text)").replace(r"\{i\}", r"(?P<i>\d+)")
    return re.compile(pattern.replace(r"\*", "(?P<rest>.*)"))


_FROM_OFFICIAL = tuple((_compile(official), ours) for official, ours in KEY_TABLE)
_TO_OFFICIAL = tuple((_compile(ours), official) for official, ours in KEY_TABLE)


def _rename(key: str, table: tuple[tuple[re.Pattern[str], str], ...]) -> str | None:
    for pattern, template in table:
        match = pattern.fullmatch(key)
        if match:
            groups = match.groupdict()
            return template.replace("*", groups.pop("rest", "") or "").format(**groups)
    return None


def key_from_official(key: str) -> str | None:
    """muqkit's name of an official MuQ-MuLan key outside the audio backbone, or ``None``."""
    return _rename(key, _FROM_OFFICIAL)


def key_to_official(key: str) -> str | None:
    """The official name of a muqkit MuQ-MuLan key outside the audio backbone, or ``None``."""
    return _rename(key, _TO_OFFICIAL)


def _transformer_config(section: dict[str, Any], where: str) -> TransformerConfig:
    try:
        return TransformerConfig(
            dim=int(section["dim"]),
            depth=int(section["tf_depth"]),
            heads=int(section["heads"]),
            dim_head=int(section["dim_head"]),
            ff_mult=section.get("ff_mult", 4),
            attn_dropout=float(section.get("attn_dropout", 0.0)),
            ff_dropout=float(section.get("ff_dropout", 0.0)),
        )
    except KeyError as exc:
        raise CheckpointError(f"official config: {where} lacks {exc}") from None


def is_official_config(raw: dict[str, Any]) -> bool:
    """Whether a ``config.json`` is in the official MuQ-MuLan layout."""
    return all(
        k in raw for k in ("mulan", "audio_model", "text_model", "audio_transformer", "text_transformer")
    )


def config_from_official(
    raw: dict[str, Any], *, search: tuple[Path, ...] = (), cache_dir: str | os.PathLike[str] | None = None
) -> MuQMuLanConfig:
    """Translate an official ``config.json`` into a :class:`MuQMuLanConfig`.

    The audio backbone's official MuQ config is read from its folder (or the Hub; only ``config.json``
    is fetched) and stored in the result, so that the model can be rebuilt without it.

    Raises:
        CheckpointError: a section is missing, or the checkpoint uses an option muqkit does not implement
            (hierarchical or sigmoid contrastive loss heads).
    """
    from muqkit.hub.weights import read_config, resolve_folder

    if not is_official_config(raw):
        raise CheckpointError(
            "not an official MuQ-MuLan config: expected the sections mulan, audio_model, text_model, "
            f"audio_transformer, text_transformer; got {sorted(raw)}"
        )
    mulan = raw["mulan"]
    if mulan.get("hierarchical_contrastive_loss"):
        raise CheckpointError(
            "official config: hierarchical_contrastive_loss=true is not supported by muqkit"
        )
    if mulan.get("sigmoid_contrastive_loss"):
        raise CheckpointError("official config: sigmoid_contrastive_loss=true is not supported by muqkit")

    audio_name = str(raw["audio_model"]["name"])
    audio_folder = resolve_folder(
        _find(audio_name, search), cache_dir=cache_dir, allow_patterns=["config.json"]
    )
    muq_config = official_muq.config_from_official(read_config(audio_folder))
    if raw["audio_model"].get("model_dim") not in (None, muq_config.encoder_dim):
        raise CheckpointError(
            f"official config: audio_model.model_dim {raw['audio_model']['model_dim']} differs from the "
            f"backbone's encoder_dim {muq_config.encoder_dim}"
        )
    text_section = raw["text_transformer"]
    return MuQMuLanConfig(
        audio=AudioTowerConfig(
            backbone=audio_name,
            backbone_config=muq_config,
            layer=int(raw["audio_model"].get("use_layer_idx", -1)),
            transformer=_transformer_config(raw["audio_transformer"], "audio_transformer"),
        ),
        text=TextTowerConfig(
            backbone=str(raw["text_model"]["name"]),
            max_length=None,
            transformer=_transformer_config(text_section, "text_transformer"),
        ),
        dim_latent=int(mulan.get("dim_latent", 128)),
        sample_rate=int(mulan.get("sr", 24000)),
        clip_secs=float(mulan.get("clip_secs", 10)),
    )


def _find(name: str, search: tuple[Path, ...]) -> str:
    """A backbone name as a folder: relative names are tried against ``search`` (the official code
    resolves them against its working directory)."""
    path = Path(name).expanduser()
    if not path.is_absolute():
        for base in search:
            if (base / path).is_dir():
                return str(base / path)
    return name


def state_from_official(
    state: dict[str, torch.Tensor], muq_config: MuQConfig
) -> tuple[dict[str, torch.Tensor], OfficialExtras]:
    """The official weights under muqkit's names (audio backbone included, as ``audio.backbone.*``) and
    the audio backbone's extras.

    Official keys that match nothing stay under their official name, so that the check against the model
    lists them with every other problem.

    Raises:
        CheckpointError: the checkpoint has multi-layer temperatures (a hierarchical loss).
    """
    backbone, tensors = official_muq.state_from_official(state, muq_config, prefix=MUQ_PREFIX)
    ours = {k if k.startswith(MUQ_PREFIX) else AUDIO_PREFIX + k: v for k, v in backbone.items()}
    for key, tensor in state.items():
        if key.startswith(AUDIO_BACKBONE_PREFIX) or key in UNUSED_OFFICIAL:
            continue
        if key == TEMPERATURE_KEY:
            if tensor.numel() != 1:
                raise CheckpointError(f"{key}: shape {tuple(tensor.shape)}, multi-layer temperatures")
            ours["log_scale"] = tensor.reshape(())
            continue
        ours[key_from_official(key) or key] = tensor
    return ours, OfficialExtras(tensors=tensors)


def from_official(
    official_config: dict[str, Any], official_state: dict[str, torch.Tensor], *, search: tuple[Path, ...] = (),
    cache_dir: str | os.PathLike[str] | None = None,
) -> tuple[MuQMuLanConfig, dict[str, torch.Tensor], OfficialExtras]:
    """An official MuQ-MuLan checkpoint as ``(config, state, extras)``; ``search``: folders against which
    relative backbone names are resolved (see :func:`config_from_official`)."""
    config = config_from_official(official_config, search=search, cache_dir=cache_dir)
    assert config.audio.backbone_config is not None  # config_from_official reads it
    state, extras = state_from_official(official_state, config.audio.backbone_config)
    return config, state, extras


def state_to_official(model: MuQMuLan, extras: OfficialExtras | None = None) -> dict[str, torch.Tensor]:
    """``model``'s weights under the official names (audio backbone included, with its ``extras``)."""
    state = model.state_dict()
    backbone = {k[len(AUDIO_PREFIX):]: v for k, v in state.items() if k.startswith(AUDIO_PREFIX)}
    extra_tensors = None if extras is None else extras.tensors
    out = official_muq.state_to_official(backbone, model.audio.backbone.config, extra_tensors, prefix=MUQ_PREFIX)
    for key, tensor in state.items():
        if key.startswith(AUDIO_PREFIX):
            continue
        if key == "log_scale":
            out[TEMPERATURE_KEY] = tensor.reshape(1, 1, 1)
            continue
        official = key_to_official(key)
        if official is None:
            raise CheckpointError(f"no official name for {key}")
        out[official] = tensor
    for key, shape in UNUSED_OFFICIAL.items():
        out[key] = torch.zeros(shape)
    return out


def config_to_official(model: MuQMuLan, *, audio_name: str, text_name: str) -> dict[str, Any]:
    """The official ``config.json`` of ``model`` with backbones named ``audio_name`` / ``text_name``."""
    config = model.config

    def section(t: TransformerConfig) -> dict[str, Any]:
        return {
            "dim": t.dim,
            "tf_depth": t.depth,
            "heads": t.heads,
            "dim_head": t.dim_head,
            "ff_mult": t.ff_mult,
            "attn_dropout": t.attn_dropout,
            "ff_dropout": t.ff_dropout,
        }

    text = section(config.text.transformer)
    text["max_seq_len"] = model.text.max_length
    return {
        "mulan": {
            "sr": config.sample_rate,
            "clip_secs": config.clip_secs,
            "dim_latent": config.dim_latent,
            "decoupled_contrastive_learning": True,
            "hierarchical_contrastive_loss": False,
            "hierarchical_contrastive_loss_layers": None,
            "sigmoid_contrastive_loss": False,
            "rank_contrast": True,
        },
        "audio_model": {
            "name": audio_name,
            "model_dim": model.audio.backbone_dim,
            "use_layer_idx": config.audio.layer,
        },
        "text_model": {"name": text_name, "model_dim": model.text.backbone_dim},
        "audio_transformer": section(config.audio.transformer),
        "text_transformer": text,
        "hf_hub_cache_dir": None,
    }


def check_exportable(model: MuQMuLan) -> None:
    """Fail unless the official format can hold ``model``.

    Raises:
        CheckpointError: the text backbone is not XLM-R (the official loader accepts no other), or the
            clip length is not a whole number of seconds (the official clip cutting needs one), or the
            audio tower has lag pooling (a muqkit extension the official model lacks).
    """
    if model.config.audio.lag_pooling:
        raise CheckpointError("the official format has no lag pooling (audio.lag_pooling); save in muqkit's format")
    text_backbone: Any = model.text.backbone  # a transformers PreTrainedModel
    if text_backbone.config.model_type != "xlm-roberta":
        raise CheckpointError(
            "the official format needs an XLM-R text backbone, this model has "
            f"{text_backbone.config.model_type}"
        )
    if float(model.config.clip_secs) != int(model.config.clip_secs):
        raise CheckpointError(f"the official format needs whole-second clips, got {model.config.clip_secs}")


def to_official(
    model: MuQMuLan, extras: OfficialExtras | None = None, *, audio_name: str, text_name: str
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Inverse of :func:`from_official`: the official ``config.json`` dict and state dict of ``model``,
    whose backbones are saved as ``audio_name`` and ``text_name``."""
    check_exportable(model)
    config = config_to_official(model, audio_name=audio_name, text_name=text_name)
    config["mulan"]["clip_secs"] = int(model.config.clip_secs)
    return config, state_to_official(model, extras)
