"""Build models from checkpoint folders and write them back (the loaders; models never import this).

Each loader reads a folder (local or a Hub id, see :func:`muqkit.hub.weights.resolve_folder`), has the
format's translator (:mod:`muqkit.hub.official`) turn it into ``(config, state, extras)``, builds the
model from the config, checks every weight's name and shape against it (one error lists everything that
does not fit) and loads the state. ``MuQ.from_pretrained``, ``MelRVQ.from_pretrained`` and
``MuQMuLan.from_pretrained`` (and their ``save_pretrained``) are thin delegators to these functions.

The extras of an official MuQ checkpoint (prediction head, class token, Mel-RVQ, target settings) have no
place in muqkit's encoder: the loader remembers them beside the model it built (:func:`official_extras`),
so that saving a loaded checkpoint writes it back whole.
"""

from __future__ import annotations

import json
import os
import weakref
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import nn

from muqkit.hub.official import mulan as official_mulan
from muqkit.hub.official import muq as official_muq
from muqkit.hub.official import rvq as official_rvq
from muqkit.hub.official.muq import OfficialExtras
from muqkit.hub.weights import (
    CheckpointError,
    atomic_write_bytes,
    check_state_dict,
    fuse_weight_norm,
    read_config,
    read_state_dict,
    resolve_folder,
    write_checkpoint,
)

if TYPE_CHECKING:
    from muqkit.mulan.model import MuQMuLan
    from muqkit.ssl.muq import MuQ, MuQConfig
    from muqkit.ssl.pretrain import MuQPretrainer
    from muqkit.tokenizer.base import TokenizerModule

# muqkit's own MuQ-MuLan layout: config.json {"model_type": MULAN_MODEL_TYPE, "config": {...}}, the
# weights, and the text tokenizer in a subfolder.
MULAN_MODEL_TYPE = "muqkit-mulan"
MULAN_TOKENIZER_FOLDER = "tokenizer"

_EXTRAS: weakref.WeakKeyDictionary[nn.Module, OfficialExtras] = weakref.WeakKeyDictionary()


def official_extras(model: nn.Module) -> OfficialExtras:
    """The extras of the official checkpoint ``model`` was loaded from (empty for a model built here)."""
    return _EXTRAS.get(model) or OfficialExtras()


def _load_checked(model: nn.Module, state: dict[str, torch.Tensor], name: str) -> None:
    """Load ``state`` into ``model`` after checking every name and shape (one error lists all problems)."""
    expected = model.state_dict()
    # BatchNorm's num_batches_tracked only counts training steps; absent in some exports.
    for key, tensor in expected.items():
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = torch.zeros_like(tensor)
    check_state_dict(name, expected, state)
    model.load_state_dict(state, strict=True)


def _provenance(model: Any, id_or_folder: str | os.PathLike[str], folder: Path, revision: str | None) -> None:
    model.name_or_path = str(id_or_folder)
    # A Hub snapshot folder is named by its commit: record it, so provenance pins the exact weights.
    model.revision = folder.name if folder.parent.name == "snapshots" else revision


# --------------------------------------------------------------------------------------------------
# MuQ (official format)
# --------------------------------------------------------------------------------------------------
def load_muq_config(
    id_or_folder: str | os.PathLike[str], *, revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> MuQConfig:
    """The MuQConfig of an official MuQ checkpoint (only its ``config.json`` is read or downloaded)."""
    folder = resolve_folder(id_or_folder, revision=revision, cache_dir=cache_dir, allow_patterns=["config.json"])
    return official_muq.config_from_official(read_config(folder))


def load_muq(
    id_or_folder: str | os.PathLike[str], *, revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None, raw_config: dict[str, Any] | None = None,
) -> MuQ:
    """Build and load a MuQ from an official checkpoint folder or Hub id (in training mode, on the CPU);
    ``raw_config``: its ``config.json`` when already read (:func:`identify_model`)."""
    from muqkit.ssl.muq import MuQ

    folder = resolve_folder(id_or_folder, revision=revision, cache_dir=cache_dir)
    raw = read_config(folder) if raw_config is None else raw_config
    config, state, extras = official_muq.from_official(raw, read_state_dict(folder))
    model = MuQ(config)
    _load_checked(model, state, str(folder))
    _EXTRAS[model] = extras
    _provenance(model, id_or_folder, folder, revision)
    return model


def save_muq(model: MuQ, folder: str | os.PathLike[str], *, extras: OfficialExtras | None = None) -> Path:
    """Write ``model`` as an official checkpoint folder, with ``extras`` (default: the ones it was loaded
    with, or fresh ones)."""
    folder = Path(folder)
    config, state = official_muq.to_official(
        model.config, model.state_dict(), official_extras(model) if extras is None else extras
    )
    write_checkpoint(folder, config, state)
    return folder


def load_pretrainer(folder: str | os.PathLike[str], targets: Any, **settings: Any) -> MuQPretrainer:
    """The inverse of :func:`save_pretrainer`: an official checkpoint's encoder wrapped for pretraining on
    ``targets``, with the checkpoint's ``model.linear`` as the prediction head (train mode).

    Args:
        folder: an official MuQ checkpoint folder (muqkit's snapshots and trained models are).
        targets: the target tokenizer (its codebooks must match the head's width).
        settings: more :class:`~muqkit.ssl.pretrain.PretrainConfig` fields (masking, recon_weight).

    Raises:
        CheckpointError: the checkpoint has no head of the targets' width.
    """
    from muqkit.ssl.muq import MuQ
    from muqkit.ssl.pretrain import MuQPretrainer, PretrainConfig

    model = MuQ.from_pretrained(folder).train()
    config = PretrainConfig(num_codebooks=int(targets.num_codebooks), codebook_size=int(targets.codebook_size),
                            **settings)  # fmt: skip
    pretrainer = MuQPretrainer(model, config, targets)
    head = official_extras(model).tensors
    width = config.num_codebooks * config.codebook_size
    if "linear.weight" not in head or head["linear.weight"].shape[0] != width:
        raise CheckpointError(f"{folder}: no prediction head of {width} outputs (model.linear) for these targets")
    with torch.no_grad():
        pretrainer.heads.proj.weight.copy_(head["linear.weight"])
        pretrainer.heads.proj.bias.copy_(head["linear.bias"])
    return pretrainer.train()


def save_pretrainer(pretrainer: MuQPretrainer, folder: str | os.PathLike[str]) -> Path:
    """Write a pretrainer's encoder as an official checkpoint whose ``model.linear`` is its prediction head
    (and whose ``model.rvq`` is its Mel-RVQ, when the official code can hold it)."""
    model = pretrainer.model
    return save_muq(model, folder, extras=official_muq.pretrainer_extras(pretrainer, official_extras(model)))


# --------------------------------------------------------------------------------------------------
# Tokenizers (muqkit's format, or the Mel-RVQ inside an official MuQ checkpoint)
# --------------------------------------------------------------------------------------------------
def load_tokenizer(
    folder_or_id: str | os.PathLike[str], *, expected: type[TokenizerModule] | None = None, **hub_kwargs: Any
) -> TokenizerModule:
    """Load any muqkit tokenizer folder, or the Mel-RVQ held in an official MuQ checkpoint, in eval mode.

    Args:
        folder_or_id: a local folder or a Hugging Face Hub id.
        expected: fail unless the folder holds this class (or a subclass).
        hub_kwargs: ``revision`` / ``cache_dir`` for :func:`muqkit.hub.weights.resolve_folder`.

    Raises:
        CheckpointError: the folder is not a tokenizer or its weights do not fit.
    """
    from muqkit.tokenizer.base import tokenizer_class
    from muqkit.tokenizer.mel_rvq import MelRVQ

    folder = resolve_folder(folder_or_id, **hub_kwargs)
    config = read_config(folder)
    state = read_state_dict(folder)
    model_type = config.get("model_type")
    model: TokenizerModule
    if model_type is not None:
        model = tokenizer_class(model_type).from_config_dict(config)
    elif official_rvq.has_official_rvq(state):
        rvq_config, state, _ = official_rvq.mel_rvq_from_official(config, state)
        model = MelRVQ(rvq_config)
    else:
        raise CheckpointError(
            f"{folder}: neither a muqkit tokenizer (model_type) nor an official MuQ with model.rvq.*"
        )
    if expected is not None and not isinstance(model, expected):
        raise CheckpointError(f"{folder}: holds a {type(model).__name__}, not a {expected.__name__}")
    check_state_dict(str(folder), model.state_dict(), state)
    model.load_state_dict(state)
    return model.eval()


def save_tokenizer(model: TokenizerModule, folder: str | os.PathLike[str]) -> Path:
    """Write ``config.json`` (``model_type`` and the config's fields) and ``model.safetensors``
    (codebooks and statistics together; weight-normed projections fused)."""
    state = dict(model.state_dict())
    for key in [k for k in state if k.endswith(".parametrizations.weight.original0")]:
        prefix = key.removesuffix(".parametrizations.weight.original0")
        state[f"{prefix}.weight"] = fuse_weight_norm(state, prefix)  # type: ignore[assignment]
    write_checkpoint(Path(folder), model.config_dict(), state)
    return Path(folder)


# --------------------------------------------------------------------------------------------------
# MuQ-MuLan (muqkit's format or the official one)
# --------------------------------------------------------------------------------------------------
def load_mulan(
    id_or_folder: str | os.PathLike[str], *, revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None, raw_config: dict[str, Any] | None = None,
) -> MuQMuLan:
    """Load a MuQ-MuLan checkpoint: the official format (``OpenMuQ/MuQ-MuLan-large`` or a folder written by
    the official ``save_pretrained``) or muqkit's (:func:`save_mulan`), in training mode on the CPU;
    ``raw_config``: its ``config.json`` when already read (:func:`identify_model`).

    The backbones are built from their configs and tokenizer only: the checkpoint's weights already hold
    them. Backbone names of an official checkpoint are resolved against its folder and that folder's
    parent (then as Hub ids).

    Raises:
        CheckpointError: missing files, or weights that do not fit.
    """
    from muqkit.mulan.config import MuQMuLanConfig
    from muqkit.mulan.model import MuQMuLan

    folder = resolve_folder(id_or_folder, revision=revision, cache_dir=cache_dir)
    raw = read_config(folder) if raw_config is None else raw_config
    search = (folder, folder.parent)
    if raw.get("model_type") == MULAN_MODEL_TYPE:
        tokenizer = next((f / MULAN_TOKENIZER_FOLDER for f in search if (f / MULAN_TOKENIZER_FOLDER).is_dir()), None)
        model = MuQMuLan.from_config(
            MuQMuLanConfig.from_dict(raw["config"]), search=search, cache_dir=cache_dir, text_tokenizer=tokenizer
        )
        state = read_state_dict(folder)
        check_state_dict(str(folder), model.state_dict(), state)
        model.load_state_dict(state, strict=True)
    else:
        config, state, extras = official_mulan.from_official(
            raw, read_state_dict(folder), search=search, cache_dir=cache_dir
        )
        model = MuQMuLan.from_config(config, search=search, cache_dir=cache_dir)
        text_dim = raw["text_model"].get("model_dim")
        if text_dim is not None and text_dim != model.text.backbone_dim:
            raise CheckpointError(
                f"official config: text_model.model_dim {text_dim} differs from the text backbone's hidden size "
                f"{model.text.backbone_dim}"
            )
        # transformers registers position_ids / token_type_ids buffers that some exports leave out.
        for key, tensor in model.state_dict().items():
            buffer = key.startswith("text.backbone.") and key.endswith(("position_ids", "token_type_ids"))
            if buffer and key not in state:
                state[key] = tensor
        _load_checked(model, state, str(folder))
        _EXTRAS[model.audio.backbone] = extras
    model.name_or_path = str(id_or_folder)
    return model


# --------------------------------------------------------------------------------------------------
# Any model: what a folder holds
# --------------------------------------------------------------------------------------------------
ModelKind = Literal["muq", "mulan", "onnx"]
MODEL_KIND_NAMES: dict[str, str] = {"muq": "MuQ", "mulan": "MuQ-MuLan", "onnx": "ONNX MuQ"}


@dataclass(frozen=True)
class ModelSource:
    """A checkpoint recognised by :func:`identify_model`.

    Attributes:
        kind: ``"muq"`` (official MuQ format), ``"mulan"`` (MuQ-MuLan, official or muqkit's format) or ``"onnx"``
            (a MuQ graph from ``muqkit export onnx``).
        name: the Hub id, folder or file as given.
        config: its ``config.json`` (empty for an ONNX graph).
    """

    kind: ModelKind
    name: str
    config: dict[str, Any]


def identify_model(
    id_or_folder: str | os.PathLike[str], *, revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> ModelSource:
    """What a Hub id, checkpoint folder or ``.onnx`` file holds; only ``config.json`` is read (downloaded for a
    Hub id), once.

    Raises:
        CheckpointError: no such folder or Hub id, or no readable ``config.json``.
    """
    name = os.fspath(id_or_folder)
    if name.endswith(".onnx"):
        return ModelSource("onnx", name, {})
    folder = resolve_folder(id_or_folder, revision=revision, cache_dir=cache_dir, allow_patterns=["config.json"])
    raw = read_config(folder)
    return ModelSource("mulan" if raw.get("model_type") == MULAN_MODEL_TYPE or "mulan" in raw else "muq", name, raw)


def load_model(
    model: str | os.PathLike[str] | ModelSource, *, kinds: Collection[str] = ("muq", "mulan", "onnx"),
    revision: str | None = None, cache_dir: str | os.PathLike[str] | None = None,
) -> Any:
    """The model of a checkpoint, in eval mode on the CPU: a MuQ, a MuQ-MuLan, or an ``OnnxMuQ`` for an
    ``.onnx`` file (:func:`identify_model` tells which; its ``config.json`` is not read again).

    Raises:
        CheckpointError: the checkpoint cannot be loaded, or is of a kind not in ``kinds``.
    """
    source = model if isinstance(model, ModelSource) else identify_model(model, revision=revision, cache_dir=cache_dir)
    if source.kind not in kinds:
        wanted = " or ".join(MODEL_KIND_NAMES[k] for k in kinds)
        raise CheckpointError(f"{source.name} is a {MODEL_KIND_NAMES[source.kind]} checkpoint; this needs a {wanted}")
    if source.kind == "onnx":
        from muqkit.export.onnx import OnnxMuQ

        return OnnxMuQ(source.name)
    load = load_mulan if source.kind == "mulan" else load_muq
    return load(source.name, revision=revision, cache_dir=cache_dir, raw_config=source.config).eval()


def save_mulan(model: MuQMuLan, folder: str | os.PathLike[str], *, official: bool = False) -> Path:
    """Write ``model``; returns the folder holding its ``config.json`` and ``model.safetensors``.

    Args:
        model: the model.
        folder: output folder.
        official: write the official layout instead (``folder/mulan``, ``folder/muq_audio`` and
            ``folder/xlm-roberta-text``, loadable by the official ``MuQMuLan.from_pretrained`` run from
            ``folder``); needs an XLM-R text backbone.

    Raises:
        CheckpointError: ``official`` and the model does not fit the official format (see
            :func:`muqkit.hub.official.mulan.check_exportable`).
    """
    folder = Path(folder)
    if official:
        return _save_official_mulan(model, folder)
    write_checkpoint(folder, {"model_type": MULAN_MODEL_TYPE, "config": model.config.to_dict()}, model.state_dict())
    tok_dir = folder / MULAN_TOKENIZER_FOLDER
    tok_dir.mkdir(parents=True, exist_ok=True)
    model.text.tokenizer.save_pretrained(str(tok_dir))
    card = (
        "# MuQ-MuLan (muqkit)\n\n"
        "Load with `muqkit.MuQMuLan.from_pretrained(folder)`.\n\n"
        f"```json\n{json.dumps(model.config.to_dict(), indent=2)}\n```\n"
    )
    atomic_write_bytes(folder / "README.md", card.encode())
    return folder


def _save_official_mulan(model: MuQMuLan, folder: Path) -> Path:
    """The official layout: ``mulan/`` (config + weights), ``muq_audio/`` (the MuQ backbone) and
    ``xlm-roberta-text/`` (text config, weights and tokenizer). The official loader resolves the backbone
    names ``./muq_audio`` and ``./xlm-roberta-text`` against its working directory: run it from
    ``folder``. Returns ``folder / "mulan"``."""
    official_mulan.check_exportable(model)
    audio_name, text_name = "./muq_audio", "./xlm-roberta-text"
    backbone = model.audio.backbone
    extras = official_extras(backbone)
    save_muq(backbone, folder / "muq_audio", extras=extras)
    text_dir = folder / "xlm-roberta-text"
    text_backbone: Any = model.text.backbone  # a transformers PreTrainedModel
    text_backbone.save_pretrained(str(text_dir), safe_serialization=True)
    model.text.tokenizer.save_pretrained(str(text_dir))
    config, state = official_mulan.to_official(model, extras, audio_name=audio_name, text_name=text_name)
    write_checkpoint(folder / "mulan", config, state)
    return folder / "mulan"


__all__ = [
    "MULAN_MODEL_TYPE",
    "ModelKind",
    "ModelSource",
    "identify_model",
    "load_model",
    "load_mulan",
    "load_muq",
    "load_muq_config",
    "load_pretrainer",
    "load_tokenizer",
    "official_extras",
    "save_mulan",
    "save_muq",
    "save_pretrainer",
    "save_tokenizer",
]
