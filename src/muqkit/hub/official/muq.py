"""The official MuQ checkpoint format (``MuQ.save_pretrained`` of the ``muq`` package), translated.

The official ``config.json`` holds the fields of the official ``MuQConfig`` (``conv_dim``,
``encoder_dim``, ``encoder_depth``, ``hop_length``, ``n_mels``, ``label_rate``, ``stat`` and a
``w2v2_config`` for the wav2vec2-conformer encoder, plus target settings). Its weights live under
``model.``. This module is the one place that knows those names: a config translator and one two-way
key table. :func:`from_official` turns an official checkpoint into ``(config, state, extras)`` and
:func:`to_official` turns them back; building the model and checking the weights against it is
:mod:`muqkit.hub.loaders`' job.

The *extras* are the parts of an official checkpoint that do not change the features (prediction head
``linear.*``, ``cls_token``, the Mel-RVQ ``rvq.*``, the unused ``pos_conv_embed`` and the target
settings of the config): muqkit's encoder has no place for them, so they travel beside it, in
:class:`OfficialExtras`, and are written back unchanged.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from muqkit.hub.weights import CheckpointError

if TYPE_CHECKING:
    from muqkit.ssl.muq import MuQConfig

# The one key table, both ways: (official prefix, muqkit prefix), relative to the checkpoint's ``model.``
# prefix. A key is renamed by its first matching prefix; keys of neither side are not weights of the encoder.
KEY_TABLE: tuple[tuple[str, str], ...] = (
    ("conv.conv.", "conv.blocks."),
    ("conv.linear.", "conv.proj."),
    ("conformer.layers.", "conformer.layers."),
    ("conformer.layer_norm.", "conformer.layer_norm."),
)
# Official weights that cannot change the features: kept verbatim to write the checkpoint back.
PASSTHROUGH = re.compile(
    r"^(linear\.|cls_token$|rvq\.|recon_proj\.|quantizer_[^.]+\.|conformer\.pos_conv_embed\.)"
)
ROTARY_KEY = "conformer.embed_positions.inv_freq"

# Fields of the official MuQConfig that muqkit's MuQConfig does not hold (targets and heads).
OFFICIAL_TARGET_DEFAULTS: dict[str, Any] = {
    "num_codebooks": 1,
    "codebook_dim": 16,
    "codebook_size": 8192,
    "features": ["melspec_2048"],
    "mask_hop": 0.4,
    "mask_prob": 0.6,
    "is_flash": False,
    "use_rvq_target": True,
    "use_vq_target": False,
    "use_encodec_target": False,
    "rvq_ckpt_path": None,
    "recon_loss_ratio": None,
    "resume_checkpoint": None,
    "rvq_n_codebooks": 8,
    "rvq_multi_layer_num": 1,
}

# The wav2vec2-conformer settings an official checkpoint carries besides the architecture (the
# transformers defaults the released models were saved with; the official code reads a few of them).
W2V2_DEFAULTS: dict[str, Any] = {
    "model_type": "wav2vec2-conformer", "position_embeddings_type": "rotary", "hidden_act": "swish",
    "activation_dropout": 0.1, "attention_dropout": 0.1, "hidden_dropout": 0.1, "hidden_dropout_prob": 0.1,
    "conformer_conv_dropout": 0.1, "feat_proj_dropout": 0.1, "final_dropout": 0.1, "layerdrop": 0.0,
    "layer_norm_eps": 1e-5, "conv_depthwise_kernel_size": 31, "rotary_embedding_base": 10000,
    "num_conv_pos_embeddings": 128, "num_conv_pos_embedding_groups": 16, "max_source_positions": 5000,
    "do_stable_layer_norm": True, "feat_extract_norm": "layer", "feat_extract_activation": "gelu",
    "feat_extract_dropout": 0.0, "feat_quantizer_dropout": 0.0, "conv_bias": True,
    "conv_dim": [512] * 7, "conv_kernel": [10, 3, 3, 3, 3, 2, 2], "conv_stride": [5, 2, 2, 2, 2, 2, 2],
    "num_feat_extract_layers": 7, "apply_spec_augment": True, "mask_time_prob": 0.05, "mask_time_length": 10,
    "mask_time_min_masks": 2, "mask_feature_prob": 0.0, "mask_feature_length": 10, "mask_feature_min_masks": 0,
    "num_codevector_groups": 2, "num_codevectors_per_group": 320, "codevector_dim": 768,
    "proj_codevector_dim": 768, "contrastive_logits_temperature": 0.1, "num_negatives": 100,
    "diversity_loss_weight": 0.1, "ctc_loss_reduction": "sum", "ctc_zero_infinity": False,
    "use_weighted_layer_sum": False, "classifier_proj_size": 256, "tdnn_dim": [512, 512, 512, 512, 1500],
    "tdnn_kernel": [5, 3, 3, 1, 1], "tdnn_dilation": [1, 2, 3, 1, 1], "xvector_output_dim": 512,
    "add_adapter": False, "adapter_kernel_size": 3, "adapter_stride": 2, "num_adapter_layers": 3,
    "vocab_size": 32, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2, "initializer_range": 0.02,
    "gradient_checkpointing": False, "torch_dtype": "float32",
}


# --------------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------------
def config_from_official(official: dict[str, Any]) -> MuQConfig:
    """muqkit's MuQConfig from an official ``config.json`` dict.

    Raises:
        CheckpointError: a field is missing or names a variant muqkit does not implement.
    """
    from muqkit.audio.mel import MelConfig
    from muqkit.encoder.conformer import ConformerConfig
    from muqkit.ssl.muq import MuQConfig

    w2v2 = official.get("w2v2_config") or {}
    stat = official.get("stat") or {}
    feature = (official.get("features") or ["melspec_2048"])[0]
    problems = []
    if feature != "melspec_2048":
        problems.append(f"features {official.get('features')} (only melspec_2048 exists)")
    if w2v2.get("position_embeddings_type", "rotary") != "rotary":
        problems.append(f"w2v2_config.position_embeddings_type {w2v2.get('position_embeddings_type')!r} "
                        "(only 'rotary' is implemented)")
    if w2v2.get("hidden_act", "swish") not in ("swish", "silu"):
        problems.append(f"w2v2_config.hidden_act {w2v2.get('hidden_act')!r} (only swish)")
    for key in ("num_attention_heads", "intermediate_size"):
        if key not in w2v2:
            problems.append(f"w2v2_config.{key} is missing")
    for key in (f"{feature}_mean", f"{feature}_std"):
        if key not in stat:
            problems.append(f"stat.{key} is missing")
    if problems:
        raise CheckpointError("unsupported official MuQ config: " + "; ".join(problems))
    try:
        return MuQConfig(
            mel=MelConfig(hop_length=int(official.get("hop_length", 240)), n_mels=int(official.get("n_mels", 128))),
            mel_mean=float(stat[f"{feature}_mean"]),
            mel_std=float(stat[f"{feature}_std"]),
            conv_dim=int(official.get("conv_dim", 512)),
            conformer=ConformerConfig(
                dim=int(official.get("encoder_dim", 1024)),
                depth=int(official.get("encoder_depth", 12)),
                num_heads=int(w2v2["num_attention_heads"]),
                ffn_dim=int(w2v2["intermediate_size"]),
                conv_kernel_size=int(w2v2.get("conv_depthwise_kernel_size", 31)),
                rotary_base=int(w2v2.get("rotary_embedding_base", 10000)),
                layer_norm_eps=float(w2v2.get("layer_norm_eps", 1e-5)),
                dropout=float(w2v2.get("hidden_dropout", 0.1)),
                attention_dropout=float(w2v2.get("attention_dropout", 0.1)),
            ),
            label_rate=int(official.get("label_rate", 25)),
        )
    except ValueError as exc:
        raise CheckpointError(f"invalid official MuQ config: {exc}") from exc


def config_to_official(config: MuQConfig, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """An official ``config.json`` dict for ``config``; ``extra`` restores fields read from a checkpoint."""
    extra = copy.deepcopy(extra or {})
    w2v2 = {**W2V2_DEFAULTS, **extra.pop("w2v2_config", {})}
    w2v2.update(
        hidden_size=config.encoder_dim,
        num_hidden_layers=config.encoder_depth,
        num_attention_heads=config.num_heads,
        intermediate_size=config.ffn_dim,
        conv_depthwise_kernel_size=config.conv_kernel_size,
        rotary_embedding_base=config.rotary_base,
        layer_norm_eps=config.layer_norm_eps,
        hidden_dropout=config.dropout,
        attention_dropout=config.attention_dropout,
        output_hidden_size=config.encoder_dim,
    )
    stat = dict(extra.pop("stat", {}))
    stat.update(melspec_2048_mean=config.mel_mean, melspec_2048_std=config.mel_std)
    official = {**OFFICIAL_TARGET_DEFAULTS, **extra}
    official.update(
        label_rate=config.label_rate,
        hop_length=config.hop_length,
        n_mels=config.n_mels,
        conv_dim=config.conv_dim,
        encoder_dim=config.encoder_dim,
        encoder_depth=config.encoder_depth,
        stat=stat,
        w2v2_config=w2v2,
    )
    return official


@dataclass
class OfficialExtras:
    """Parts of an official checkpoint that do not change the features, kept to write it back whole.

    Attributes:
        config: the official config fields muqkit does not model (targets, heads, w2v2 leftovers).
        tensors: official weights outside the encoder (prediction head, class token, Mel-RVQ, the unused
            convolutional position embedding), under their official names (without ``model.``).
    """

    config: dict[str, Any] = field(default_factory=dict)
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)


# Official config fields that muqkit's MuQConfig holds (everything else is an extra).
MODELED_FIELDS = frozenset(
    {"label_rate", "hop_length", "n_mels", "conv_dim", "encoder_dim", "encoder_depth", "stat", "w2v2_config"}
)


# --------------------------------------------------------------------------------------------------
# Weights: one two-way table
# --------------------------------------------------------------------------------------------------
def key_from_official(key: str) -> str | None:
    """muqkit's name of an official encoder key (without ``model.``), or ``None`` if it is not one."""
    for official, ours in KEY_TABLE:
        if key.startswith(official):
            return ours + key[len(official):]
    return None


def key_to_official(key: str) -> str | None:
    """The official name (without ``model.``) of a muqkit encoder key, or ``None`` if it has none."""
    for official, ours in KEY_TABLE:
        if key.startswith(ours):
            return official + key[len(ours):]
    return None


def rotary_inv_freq(config: MuQConfig) -> torch.Tensor:
    """The rotary frequencies the official checkpoint stores (``conformer.embed_positions.inv_freq``)."""
    from muqkit.encoder.conformer import RotaryEmbedding

    return RotaryEmbedding(config.encoder_dim // config.num_heads, config.rotary_base).inv_freq


def state_from_official(
    state: dict[str, torch.Tensor], config: MuQConfig, *, prefix: str = "model."
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Split the official weights under ``prefix`` into muqkit's encoder state and the extras.

    Keys under ``prefix`` that are neither encoder weights nor known extras stay in the returned state
    under their full official name, so that the check against the model lists them with every other
    problem. Keys outside ``prefix`` are ignored.

    Returns:
        ``(state, extra_tensors)``: muqkit names -> tensors; official names (without ``prefix``) ->
        tensors that do not change the features.

    Raises:
        CheckpointError: the stored rotary frequencies differ from the ones ``config`` gives.
    """
    ours: dict[str, torch.Tensor] = {}
    extras: dict[str, torch.Tensor] = {}
    for full_key, tensor in state.items():
        if not full_key.startswith(prefix):
            continue
        key = full_key[len(prefix):]
        renamed = key_from_official(key)
        if renamed is not None:
            ours[renamed] = tensor
        elif key == ROTARY_KEY:
            expected = rotary_inv_freq(config)
            if tensor.shape != expected.shape or not torch.allclose(tensor.float(), expected):
                raise CheckpointError(f"{full_key}: rotary frequencies differ from the config's")
        elif PASSTHROUGH.match(key):
            extras[key] = tensor
        else:
            ours[full_key] = tensor  # unexpected: reported by the check against the model
    return ours, extras


def state_to_official(
    state: dict[str, torch.Tensor], config: MuQConfig, extra_tensors: dict[str, torch.Tensor] | None = None,
    *, prefix: str = "model.",
) -> dict[str, torch.Tensor]:
    """The encoder's weights (muqkit names) under official names, with the extras (or fresh ones)."""
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        official = key_to_official(key)
        if official is not None:
            out[prefix + official] = tensor
    extras = {**default_passthrough(config), **(extra_tensors or {})}
    extras[ROTARY_KEY] = rotary_inv_freq(config)
    for key, tensor in extras.items():
        out[prefix + key] = tensor
    return out


def default_passthrough(config: MuQConfig) -> dict[str, torch.Tensor]:
    """Freshly initialised official weights that muqkit's encoder does not use (head, class token and
    the convolutional position embedding), so that a muqkit-trained model saves as a complete
    official checkpoint."""
    dim = config.encoder_dim
    codebook_size = OFFICIAL_TARGET_DEFAULTS["codebook_size"]
    kernel = W2V2_DEFAULTS["num_conv_pos_embeddings"]
    groups = W2V2_DEFAULTS["num_conv_pos_embedding_groups"]
    generator = torch.Generator().manual_seed(0)
    return {
        "linear.weight": torch.randn(codebook_size, dim, generator=generator) * dim**-0.5,
        "linear.bias": torch.zeros(codebook_size),
        "cls_token": torch.randn(dim, generator=generator),
        "conformer.pos_conv_embed.conv.bias": torch.zeros(dim),
        "conformer.pos_conv_embed.conv.parametrizations.weight.original0": torch.ones(1, 1, kernel),
        "conformer.pos_conv_embed.conv.parametrizations.weight.original1":
            torch.randn(dim, dim // groups, kernel, generator=generator) * 0.02,
    }


# --------------------------------------------------------------------------------------------------
# Whole checkpoints
# --------------------------------------------------------------------------------------------------
def from_official(
    official_config: dict[str, Any], official_state: dict[str, torch.Tensor], *, prefix: str = "model."
) -> tuple[MuQConfig, dict[str, torch.Tensor], OfficialExtras]:
    """An official checkpoint (``config.json`` dict and state dict) as ``(config, state, extras)``.

    Raises:
        CheckpointError: the config names a variant muqkit does not implement, or the rotary frequencies
            do not fit it.
    """
    config = config_from_official(official_config)
    state, tensors = state_from_official(official_state, config, prefix=prefix)
    extra_config = {k: v for k, v in official_config.items() if k not in MODELED_FIELDS}
    extra_config["w2v2_config"] = official_config.get("w2v2_config", {})
    extra_config["stat"] = official_config.get("stat", {})
    return config, state, OfficialExtras(config=extra_config, tensors=tensors)


def to_official(
    config: MuQConfig, state: dict[str, torch.Tensor], extras: OfficialExtras | None = None,
    *, prefix: str = "model.",
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Inverse of :func:`from_official`: the official ``config.json`` dict and state dict."""
    extras = extras or OfficialExtras()
    official = config_to_official(config, extras.config)
    if not any(k.startswith("rvq.") for k in extras.tensors):
        # No Mel-RVQ travels with this model; the official loader then keeps its random RVQ.
        official["use_rvq_target"] = False
    return official, state_to_official(state, config, extras.tensors, prefix=prefix)


def pretrainer_extras(pretrainer: Any, base: OfficialExtras | None = None) -> OfficialExtras:
    """The extras that make a :class:`~muqkit.ssl.pretrain.MuQPretrainer`'s encoder a complete official
    checkpoint: its prediction head as ``linear.*`` (and ``recon_proj.*``), its target settings, and its
    Mel-RVQ as ``rvq.*`` when the official ``ResidualVectorQuantize`` can hold it (1024 x 16 on 4 x 128
    mels); ``base`` (the extras the encoder was loaded with) supplies the rest."""
    from muqkit.hub.official.rvq import mel_rvq_to_official
    from muqkit.tokenizer.mel_rvq import MelRVQ

    base = base or OfficialExtras()
    c = pretrainer.config

    def tensor(t: torch.Tensor) -> torch.Tensor:
        return t.detach().float().cpu().clone()

    tensors = dict(base.tensors)
    tensors["linear.weight"] = tensor(pretrainer.heads.proj.weight)
    tensors["linear.bias"] = tensor(pretrainer.heads.proj.bias)
    config = dict(base.config)
    config.update(
        codebook_size=c.num_codebooks * c.codebook_size,
        rvq_n_codebooks=c.num_codebooks,
        mask_hop=c.masking.span_seconds,
        mask_prob=c.masking.prob,
        recon_loss_ratio=c.recon_weight if pretrainer.recon is not None else None,
    )
    if pretrainer.recon is not None:
        tensors["recon_proj.weight"] = tensor(pretrainer.recon.proj.weight)
        tensors["recon_proj.bias"] = tensor(pretrainer.recon.proj.bias)
    targets = pretrainer.targets
    tensors = {k: v for k, v in tensors.items() if not k.startswith("rvq.")}
    if isinstance(targets, MelRVQ) and (c.codebook_size, targets.config.codebook_dim, targets.config.n_mels,
                                        targets.config.stack) == (1024, 16, 128, 4):
        for key, value in mel_rvq_to_official(targets.state_dict(), prefix="rvq.").items():
            tensors[key] = tensor(value)
    return OfficialExtras(config=config, tensors=tensors)
