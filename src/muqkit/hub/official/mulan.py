"""The official MuQ-MuLan checkpoint format (``MuQMuLan.save_pretrained`` of the ``muq`` package).

``config.json`` has five sections: ``mulan`` (sr, clip_secs, dim_latent, loss switches), ``audio_model``
and ``text_model`` (backbone ``name``, ``model_dim``, ``use_layer_idx``), ``audio_transformer`` and
``text_transformer`` (dim, tf_depth, heads, dim_head, ff_mult, dropouts). The weights sit under ``mulan.``
and include both backbones (``mulan.audio.model.*`` in the official MuQ naming, translated by
:mod:`muqkit.hub.official.muq`; ``mulan.text.model.*`` in the ``transformers`` naming, kept as is), so
the backbones are built from their configs and tokenizer only.

This module is the one place that knows those names.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from muqkit.hub.weights import CheckpointError, check_state_dict, read_state_dict, write_checkpoint
from muqkit.mulan.config import AudioTowerConfig, MuQMuLanConfig, TextTowerConfig, TransformerConfig

if TYPE_CHECKING:
    from muqkit.mulan.model import MuQMuLan

AUDIO_BACKBONE_PREFIX = "mulan.audio.model."
# The official MuQ wraps its network as ``.model``: its weights are "model.*" inside the MuQ checkpoint.
MUQ_PREFIX = AUDIO_BACKBONE_PREFIX + "model."
# Unused by the official forward pass (a Conv1d over 25 channels that nothing calls); dropped on import,
# written back as zeros on export.
UNUSED_OFFICIAL = {"mulan.audio.aggregator.weight": (1, 25, 1), "mulan.audio.aggregator.bias": (1,)}

# (official pattern, muqkit replacement) for everything under ``mulan.`` but the audio backbone.
KEY_MAP: tuple[tuple[str, str], ...] = (
    (r"^mulan\.text\.model\.", "text.backbone."),
    (r"^mulan\.(audio|text)\.proj\.", r"\1.proj."),
    (
        r"^mulan\.(audio|text)\.transformer\.layers\.(\d+)\.0\.norm\.learned_gamma$",
        r"\1.transformer.layers.\2.attn.norm.weight",
    ),
    (
        r"^mulan\.(audio|text)\.transformer\.layers\.(\d+)\.0\.to_out\.0\.",
        r"\1.transformer.layers.\2.attn.to_out.",
    ),
    (r"^mulan\.(audio|text)\.transformer\.layers\.(\d+)\.0\.", r"\1.transformer.layers.\2.attn."),
    (
        r"^mulan\.(audio|text)\.transformer\.layers\.(\d+)\.1\.0\.learned_gamma$",
        r"\1.transformer.layers.\2.ff.norm.weight",
    ),
    (r"^mulan\.(audio|text)\.transformer\.layers\.(\d+)\.1\.1\.", r"\1.transformer.layers.\2.ff.proj_in."),
    (r"^mulan\.(audio|text)\.transformer\.layers\.(\d+)\.1\.4\.", r"\1.transformer.layers.\2.ff.proj_out."),
    (r"^mulan\.(audio|text)_to_latents\.", r"\1_to_latents."),
)
TEMPERATURE_KEY = "mulan.contrast.temperatures"

# Inverse of KEY_MAP for export (muqkit pattern, official replacement).
INVERSE_KEY_MAP: tuple[tuple[str, str], ...] = (
    (r"^text\.backbone\.", "mulan.text.model."),
    (r"^(audio|text)\.proj\.", r"mulan.\1.proj."),
    (
        r"^(audio|text)\.transformer\.layers\.(\d+)\.attn\.norm\.weight$",
        r"mulan.\1.transformer.layers.\2.0.norm.learned_gamma",
    ),
    (
        r"^(audio|text)\.transformer\.layers\.(\d+)\.attn\.to_out\.",
        r"mulan.\1.transformer.layers.\2.0.to_out.0.",
    ),
    (r"^(audio|text)\.transformer\.layers\.(\d+)\.attn\.", r"mulan.\1.transformer.layers.\2.0."),
    (
        r"^(audio|text)\.transformer\.layers\.(\d+)\.ff\.norm\.weight$",
        r"mulan.\1.transformer.layers.\2.1.0.learned_gamma",
    ),
    (r"^(audio|text)\.transformer\.layers\.(\d+)\.ff\.proj_in\.", r"mulan.\1.transformer.layers.\2.1.1."),
    (r"^(audio|text)\.transformer\.layers\.(\d+)\.ff\.proj_out\.", r"mulan.\1.transformer.layers.\2.1.4."),
    (r"^(audio|text)_to_latents\.", r"mulan.\1_to_latents."),
)


def _rename(key: str, table: tuple[tuple[str, str], ...]) -> str | None:
    for pattern, replacement in table:
        if re.match(pattern, key):
            return re.sub(pattern, replacement, key)
    return None


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
    from muqkit.hub.official.muq import config_from_official as muq_config_from_official
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
    muq_config = muq_config_from_official(read_config(audio_folder))
    if raw["audio_model"].get("model_dim") not in (None, muq_config.encoder_dim):
        raise CheckpointError(
            f"official config: audio_model.model_dim {raw['audio_model']['model_dim']} differs from the "
            f"backbone's encoder_dim {muq_config.encoder_dim}"
        )
    text_section = raw["text_transformer"]
    return MuQMuLanConfig(
        audio=AudioTowerConfig(
            backbone=audio_name,
            backbone_config=asdict(muq_config),
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


def mulan_state_from_official(
    model: MuQMuLan, state: dict[str, torch.Tensor], *, name: str
) -> dict[str, torch.Tensor]:
    """Translate the official weights to ``model``'s names (the audio backbone loaded separately) and
    check them; one :class:`CheckpointError` lists every missing, unexpected or misshapen weight."""
    ours: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    for key, tensor in state.items():
        if key.startswith(AUDIO_BACKBONE_PREFIX) or key in UNUSED_OFFICIAL:
            continue
        if key == TEMPERATURE_KEY:
            if tensor.numel() != 1:
                unexpected.append(f"{key} (shape {tuple(tensor.shape)}: multi-layer temperatures)")
            ours["log_scale"] = tensor.reshape(())
            continue
        renamed = _rename(key, KEY_MAP)
        if renamed is None:
            unexpected.append(key)
        else:
            ours[renamed] = tensor
    expected = {k: v for k, v in model.state_dict().items() if not k.startswith("audio.backbone.")}
    # transformers registers position_ids / token_type_ids buffers that some exports leave out.
    for key, tensor in expected.items():
        if (
            key not in ours
            and key.startswith("text.backbone.")
            and key.endswith(("position_ids", "token_type_ids"))
        ):
            ours[key] = tensor
    try:
        check_state_dict(name, expected, ours)
    except CheckpointError as exc:
        if unexpected:
            raise CheckpointError(f"{exc}\nunexpected official keys: {', '.join(unexpected)}") from None
        raise
    if unexpected:
        raise CheckpointError(f"{name}: unexpected official keys: {', '.join(unexpected)}")
    return ours


def load_official_mulan(
    cls: type[MuQMuLan],
    folder: Path,
    raw: dict[str, Any],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
) -> MuQMuLan:
    """Build a model from an official checkpoint folder and load its weights.

    Backbone names are resolved against the checkpoint folder and its parent (then as Hub ids).
    """
    from muqkit.hub.official.muq import load_muq_weights

    search = (folder, folder.parent)
    config = config_from_official(raw, search=search, cache_dir=cache_dir)
    model = cls.from_config(config, search=search, cache_dir=cache_dir)
    text_dim = raw["text_model"].get("model_dim")
    if text_dim is not None and text_dim != model.text.backbone_dim:
        raise CheckpointError(
            f"official config: text_model.model_dim {text_dim} differs from the text backbone's hidden size "
            f"{model.text.backbone_dim}"
        )
    state = read_state_dict(folder)
    load_muq_weights(model.audio.backbone, state, name=f"{folder} (audio backbone)", prefix=MUQ_PREFIX)
    ours = mulan_state_from_official(model, state, name=str(folder))
    missing, unexpected = model.load_state_dict(ours, strict=False)
    leftover = [k for k in missing if not k.startswith("audio.backbone.")]
    if leftover or unexpected:  # pragma: no cover - check_state_dict has caught these
        raise CheckpointError(f"{folder}: missing {leftover}, unexpected {unexpected}")
    return model


def mulan_state_to_official(model: MuQMuLan) -> dict[str, torch.Tensor]:
    """``model``'s weights under the official names (audio backbone included)."""
    from muqkit.hub.official.muq import muq_state_to_official

    out = dict(muq_state_to_official(model.audio.backbone, prefix=MUQ_PREFIX))
    for key, tensor in model.state_dict().items():
        if key.startswith("audio.backbone."):
            continue
        if key == "log_scale":
            out[TEMPERATURE_KEY] = tensor.reshape(1, 1, 1)
            continue
        official = _rename(key, INVERSE_KEY_MAP)
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


def save_official_mulan(model: MuQMuLan, folder: Path) -> Path:
    """Write ``model`` in the official layout under ``folder``: ``mulan/`` (config + weights),
    ``muq_audio/`` (the MuQ backbone) and ``xlm-roberta-text/`` (text config, weights and tokenizer).

    The official loader resolves the backbone names ``./muq_audio`` and ``./xlm-roberta-text`` against its
    working directory: run it from ``folder``. Returns ``folder / "mulan"``.

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
    audio_name, text_name = "./muq_audio", "./xlm-roberta-text"
    model.audio.backbone.save_pretrained(folder / "muq_audio")
    text_dir = folder / "xlm-roberta-text"
    text_backbone.save_pretrained(str(text_dir), safe_serialization=True)
    model.text.tokenizer.save_pretrained(str(text_dir))
    config = config_to_official(model, audio_name=audio_name, text_name=text_name)
    config["mulan"]["clip_secs"] = int(model.config.clip_secs)
    write_checkpoint(folder / "mulan", config, mulan_state_to_official(model))
    return folder / "mulan"
