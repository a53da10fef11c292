"""LoRA on MuQ through ``peft``, targeting the modules MuQ really has.

MuQ's Conformer layers name their projections ``self_attn.linear_q`` / ``linear_k`` / ``linear_v`` /
``linear_out``, their feed-forward modules ``ffn1`` / ``ffn2`` ``.intermediate_dense`` / ``.output_dense``, and
their convolution module's pointwise convolutions ``conv_module.pointwise_conv1`` / ``pointwise_conv2``
(MARBLE's LoRA mode asks for ``q_proj`` / ``v_proj``, which MuQ does not have). Targets are given as these
leaf names or as groups (:data:`TARGET_GROUPS`); an unknown name is an error that lists the available ones.

An adapter is saved alone (``adapter_config.json`` + ``adapter_model.safetensors``, peft's format) and can be
merged into the backbone, which is then a plain MuQ checkpoint that :meth:`muqkit.MuQ.from_pretrained` loads.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

#: Named groups of MuQ modules.
TARGET_GROUPS: dict[str, tuple[str, ...]] = {
    "attention": ("linear_q", "linear_k", "linear_v", "linear_out"),
    "ffn": ("intermediate_dense", "output_dense"),
    "conv": ("pointwise_conv1", "pointwise_conv2"),
}


@dataclass(frozen=True)
class LoRAConfig:
    """Low-rank adapters on MuQ's Conformer.

    Attributes:
        rank: rank ``r`` of each adapter.
        alpha: scale numerator (``alpha / rank`` multiplies the update; peft's ``lora_alpha``).
        dropout: dropout on the adapter's input.
        targets: leaf module names or groups of :data:`TARGET_GROUPS` (``"attention"``, ``"ffn"``, ``"conv"``).
        layers: Conformer layer indices to adapt (``None``: all).
    """

    rank: int = 8
    alpha: int = 16
    dropout: float = 0.0
    targets: tuple[str, ...] = ("attention",)
    layers: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.rank < 1 or self.alpha <= 0 or not 0 <= self.dropout < 1:
            raise ValueError(f"LoRAConfig: rank >= 1, alpha > 0 and dropout in [0, 1) required, got {self}")
        if not self.targets:
            raise ValueError("LoRAConfig.targets must name at least one module or group")


def available_targets(model: nn.Module) -> list[str]:
    """Leaf names of the Linear and 1-d convolution modules inside MuQ's Conformer layers."""
    names = set()
    for name, module in model.named_modules():
        if ".layers." in name and isinstance(module, nn.Linear | nn.Conv1d):
            if isinstance(module, nn.Conv1d) and module.kernel_size != (1,):
                continue  # depthwise convolutions are not adapted
            names.add(name.rsplit(".", 1)[-1])
    return sorted(names)


def resolve_targets(model: nn.Module, config: LoRAConfig) -> list[str]:
    """Full module names the adapters go on.

    Raises:
        ValueError: a target is neither a group nor a module of the model (the message lists both), or a
            layer index is out of range.
    """
    available = available_targets(model)
    leaves: list[str] = []
    for target in config.targets:
        if target in TARGET_GROUPS:
            leaves.extend(TARGET_GROUPS[target])
        elif target in available:
            leaves.append(target)
        else:
            groups = ", ".join(f"{k} ({'/'.join(v)})" for k, v in TARGET_GROUPS.items())
            raise ValueError(
                f"unknown LoRA target {target!r}: MuQ's modules are {', '.join(available)}; groups are {groups}"
            )
    pattern = re.compile(r"(?:^|\.)layers\.(\d+)\.")
    depth = 1 + max((int(m.group(1)) for n, _ in model.named_modules() if (m := pattern.search(n))), default=-1)
    if config.layers is not None and any(not 0 <= i < depth for i in config.layers):
        raise ValueError(f"LoRA layers {list(config.layers)} out of range for a Conformer of {depth} layers")
    out = []
    for name, module in model.named_modules():
        match = pattern.search(name)
        if match is None or name.rsplit(".", 1)[-1] not in leaves:
            continue
        if not isinstance(module, nn.Linear | nn.Conv1d):
            continue
        if config.layers is None or int(match.group(1)) in config.layers:
            out.append(name)
    return out


def add_lora(model: nn.Module, config: LoRAConfig) -> Any:
    """Wrap ``model`` (a MuQ) in a ``peft`` model with adapters on the resolved targets; the rest is frozen."""
    try:
        import peft
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("LoRA needs peft: pip install 'muqkit[finetune]' (or peft)") from exc
    targets = resolve_targets(model, config)
    lora = peft.LoraConfig(
        r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout, target_modules=targets, bias="none"
    )
    return peft.get_peft_model(model, lora)


def save_adapter(peft_model: Any, folder: str | os.PathLike[str]) -> Path:
    """Write the adapter alone (peft's ``adapter_config.json`` and ``adapter_model.safetensors``)."""
    folder = Path(folder)
    peft_model.save_pretrained(str(folder))
    return folder


def load_adapter(model: nn.Module, folder: str | os.PathLike[str]) -> Any:
    """Put a saved adapter on a MuQ (the same architecture it was trained on)."""
    import peft

    folder = Path(folder)
    if not (folder / "adapter_config.json").is_file():
        raise FileNotFoundError(f"{folder}: no adapter_config.json (not a saved LoRA adapter)")
    return peft.PeftModel.from_pretrained(model, str(folder))


def merge_lora(peft_model: Any) -> nn.Module:
    """The backbone with the adapters merged into its weights (a plain MuQ again)."""
    return peft_model.merge_and_unload()


def trainable_parameters(model: nn.Module) -> int:
    """Number of parameters that require gradients."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__all__ = [
    "LoRAConfig",
    "TARGET_GROUPS",
    "add_lora",
    "available_targets",
    "load_adapter",
    "merge_lora",
    "resolve_targets",
    "save_adapter",
    "trainable_parameters",
]
