"""Official Mel-RVQ weight names <-> muqkit's :class:`~muqkit.tokenizer.quantizer.ResidualVectorQuantizer`.

Official (``muq.muq.modules.rvq.ResidualVectorQuantize`` inside ``MuQModel`` as ``model.rvq``), per
stage ``i``:

====================================================  ===========================================
official                                              muqkit
====================================================  ===========================================
``quantizers.{i}.in_proj.weight_g / weight_v``        ``stages.{i}.in_proj.weight`` (fused, 1x1 conv
(or ``parametrizations.weight.original0/1``),         kernel squeezed: (codebook_dim, input_dim))
``quantizers.{i}.in_proj.bias``                       ``stages.{i}.in_proj.bias``
``quantizers.{i}.out_proj.*``                         ``stages.{i}.out_proj.*`` (input_dim, codebook_dim)
``quantizers.{i}.codebook.weight``                    ``stages.{i}.codebook``
``quantizers.{i}.stale_counter`` (float)              ``stages.{i}.stale_steps`` (long)
====================================================  ===========================================
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from muqkit.hub.weights import CheckpointError, fuse_weight_norm, split_weight_norm
from muqkit.tokenizer.mel_rvq import MelRVQConfig

OFFICIAL_RVQ_PREFIX = "model.rvq."
_WN_G = "parametrizations.weight.original0"
_WN_V = "parametrizations.weight.original1"
_STAGE = re.compile(r"quantizers\.(\d+)\.")


def has_official_rvq(state: Mapping[str, torch.Tensor], prefix: str = OFFICIAL_RVQ_PREFIX) -> bool:
    """Whether a state dict holds an official RVQ under ``prefix``."""
    return f"{prefix}quantizers.0.codebook.weight" in state


def official_rvq_config(config: Mapping[str, Any], state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Mel-RVQ settings of an official MuQ ``config.json`` and its state dict.

    Returns:
        ``num_codebooks``, ``codebook_size``, ``codebook_dim``, ``stack`` and the mel statistics
        ``mean`` / ``std`` (from ``stat.melspec_2048_mean`` / ``_std``).
    """
    if int(config.get("rvq_multi_layer_num", 1)) != 1:
        raise CheckpointError(
            "official RVQ with multi-layer projections (rvq_multi_layer_num > 1) is not supported"
        )
    stat = config.get("stat") or {}
    if "melspec_2048_mean" not in stat or "melspec_2048_std" not in stat:
        raise CheckpointError("official config has no stat.melspec_2048_mean / melspec_2048_std")
    book = state[f"{OFFICIAL_RVQ_PREFIX}quantizers.0.codebook.weight"]
    stages = {
        int(m.group(1))
        for k in state
        if k.startswith(OFFICIAL_RVQ_PREFIX)
        for m in [_STAGE.match(k[len(OFFICIAL_RVQ_PREFIX) :])]
        if m
    }
    label_rate = int(config.get("label_rate", 25))
    if 100 % label_rate:
        raise CheckpointError(
            f"official label_rate must divide 100 (mel frames per second), got {label_rate}"
        )
    return {
        "num_codebooks": len(stages),
        "codebook_size": int(book.shape[0]),
        "codebook_dim": int(book.shape[1]),
        "stack": 100 // label_rate,
        "mean": float(stat["melspec_2048_mean"]),
        "std": float(stat["melspec_2048_std"]),
    }


def rvq_from_official(
    state: Mapping[str, torch.Tensor], *, prefix: str = OFFICIAL_RVQ_PREFIX, weight_norm: bool = False
) -> dict[str, torch.Tensor]:
    """Translate the official RVQ weights under ``prefix`` to muqkit names (``stages.{i}.*``).

    With ``weight_norm``, the projections keep the official ``weight_g`` / ``weight_v`` as
    ``stages.{i}.{proj}.parametrizations.weight.original0`` / ``original1`` (for a quantizer after
    ``set_weight_norm(True)``, to continue the official training exactly); else they are fused.

    Keys outside ``prefix`` are ignored. Raises:
        CheckpointError: a stage misses a weight or holds an unknown one.
    """
    sub = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    if not sub:
        raise CheckpointError(f"no official RVQ weights under '{prefix}'")
    stages = sorted({int(m.group(1)) for k in sub for m in [_STAGE.match(k)] if m})
    if stages != list(range(len(stages))):
        raise CheckpointError(f"official RVQ stages are not numbered 0..n-1: {stages}")
    out: dict[str, torch.Tensor] = {}
    for i in stages:
        src = f"quantizers.{i}"
        dst = f"stages.{i}"
        for proj in ("in_proj", "out_proj"):
            if weight_norm and f"{src}.{proj}.weight_g" in sub:
                out[f"{dst}.{proj}.{_WN_G}"] = _squeeze_kernel(sub.pop(f"{src}.{proj}.weight_g"), i, proj)
                out[f"{dst}.{proj}.{_WN_V}"] = _squeeze_kernel(sub.pop(f"{src}.{proj}.weight_v"), i, proj)
                out[f"{dst}.{proj}.bias"] = sub.pop(f"{src}.{proj}.bias")
                continue
            weight = fuse_weight_norm(sub, f"{src}.{proj}")
            if weight is None or f"{src}.{proj}.bias" not in sub:
                raise CheckpointError(f"official RVQ stage {i}: missing {proj} weight or bias")
            if weight.dim() == 3:
                if weight.shape[-1] != 1:
                    raise CheckpointError(
                        f"official RVQ stage {i}: {proj} kernel size {weight.shape[-1]} != 1"
                    )
                weight = weight.squeeze(-1)
            out[f"{dst}.{proj}.weight"] = weight
            out[f"{dst}.{proj}.bias"] = sub.pop(f"{src}.{proj}.bias")
        try:
            out[f"{dst}.codebook"] = sub.pop(f"{src}.codebook.weight")
        except KeyError as exc:
            raise CheckpointError(f"official RVQ stage {i}: missing codebook.weight") from exc
        counter = sub.pop(f"{src}.stale_counter", None)
        if counter is None:
            counter = torch.zeros(out[f"{dst}.codebook"].shape[0])
        out[f"{dst}.stale_steps"] = counter.round().long()
    if sub:
        raise CheckpointError(f"official RVQ: unexpected weights {sorted(sub)}")
    return out


_KEY_TABLE: tuple[tuple[str, str, str], ...] = (  # (official suffix, muqkit suffix, muqkit weight-normed suffix)
    ("in_proj.bias", "in_proj.bias", "in_proj.bias"),
    ("out_proj.bias", "out_proj.bias", "out_proj.bias"),
    ("in_proj.weight_g", "in_proj.weight", f"in_proj.{_WN_G}"),
    ("in_proj.weight_v", "in_proj.weight", f"in_proj.{_WN_V}"),
    ("out_proj.weight_g", "out_proj.weight", f"out_proj.{_WN_G}"),
    ("out_proj.weight_v", "out_proj.weight", f"out_proj.{_WN_V}"),
    ("codebook.weight", "codebook", "codebook"),
    ("stale_counter", "stale_steps", "stale_steps"),
)


def rvq_key_from_official(key: str, *, weight_norm: bool = False) -> str:
    """muqkit's name of one official RVQ key given without its prefix (``quantizers.0.in_proj.weight_g``
    -> ``stages.0.in_proj.weight``, or ``stages.0.in_proj.parametrizations.weight.original0`` with
    ``weight_norm``)."""
    match = _STAGE.match(key)
    if match:
        rest = key[match.end():]
        for official, plain, normed in _KEY_TABLE:
            if rest == official:
                return f"stages.{match.group(1)}.{normed if weight_norm else plain}"
    raise CheckpointError(f"official RVQ: unknown key '{key}'")


def _squeeze_kernel(weight: torch.Tensor, stage: int, proj: str) -> torch.Tensor:
    """(out, in, 1) 1x1-conv weight (or its (out, 1, 1) norm) -> the Linear's (out, in) / (out, 1)."""
    if weight.dim() == 3:
        if weight.shape[-1] != 1:
            raise CheckpointError(f"official RVQ stage {stage}: {proj} kernel size {weight.shape[-1]} != 1")
        return weight.squeeze(-1)
    return weight


def rvq_to_official(
    state: Mapping[str, torch.Tensor], *, prefix: str = OFFICIAL_RVQ_PREFIX
) -> dict[str, torch.Tensor]:
    """Inverse of :func:`rvq_from_official`: muqkit ``stages.{i}.*`` to official names under ``prefix``.

    Projections are written with the old weight-norm naming (``weight_g`` / ``weight_v``) and a
    1x1 conv kernel, as ``MuQ.save_pretrained`` does.
    """
    out: dict[str, torch.Tensor] = {}
    stages = sorted({int(k.split(".")[1]) for k in state if k.startswith("stages.")})
    for i in stages:
        src = f"stages.{i}"
        dst = f"{prefix}quantizers.{i}"
        for proj in ("in_proj", "out_proj"):
            g_key = f"{src}.{proj}.{_WN_G}"
            if g_key in state:  # weight-normed for training: g and v as they are
                g = state[g_key].unsqueeze(-1)
                v = state[f"{src}.{proj}.{_WN_V}"].unsqueeze(-1)
            else:
                g, v = split_weight_norm(state[f"{src}.{proj}.weight"].unsqueeze(-1))
            out[f"{dst}.{proj}.weight_g"] = g
            out[f"{dst}.{proj}.weight_v"] = v
            out[f"{dst}.{proj}.bias"] = state[f"{src}.{proj}.bias"]
        out[f"{dst}.codebook.weight"] = state[f"{src}.codebook"]
        out[f"{dst}.stale_counter"] = state[f"{src}.stale_steps"].float()
    return out


def mel_rvq_from_official(
    config: Mapping[str, Any], state: Mapping[str, torch.Tensor]
) -> tuple[MelRVQConfig, dict[str, torch.Tensor], dict[str, Any]]:
    """The Mel-RVQ of an official MuQ checkpoint as ``(config, state, extras)``: muqkit's
    :class:`~muqkit.tokenizer.mel_rvq.MelRVQConfig`, the state dict of a ``MelRVQ`` (codebooks and the
    mel statistics ``features.mean`` / ``features.std``) and no extras (the rest of the checkpoint is
    the encoder's)."""
    settings = official_rvq_config(config, state)
    rvq_config = MelRVQConfig(
        num_codebooks=settings["num_codebooks"],
        codebook_size=settings["codebook_size"],
        codebook_dim=settings["codebook_dim"],
        stack=settings["stack"],
    )
    ours = {f"rvq.{k}": v for k, v in rvq_from_official(state).items()}
    ours["features.mean"] = torch.tensor(float(settings["mean"]))
    ours["features.std"] = torch.tensor(float(settings["std"]))
    return rvq_config, ours, {}


def mel_rvq_to_official(
    state: Mapping[str, torch.Tensor], *, prefix: str = OFFICIAL_RVQ_PREFIX
) -> dict[str, torch.Tensor]:
    """A ``MelRVQ`` state dict's codebooks under the official names (``model.rvq.quantizers.*``); the
    mel statistics go in the official config's ``stat``, written with the encoder."""
    return rvq_to_official({k[len("rvq."):]: v for k, v in state.items() if k.startswith("rvq.")}, prefix=prefix)
