"""The one registry of named model presets. Each preset lives next to its config (MuQ's in
:mod:`muqkit.ssl.muq`, MuQ-MuLan's in :mod:`muqkit.mulan.config`); this module lists them all.

>>> from muqkit.hub.presets import list_presets, get_preset
>>> list_presets()["muq"]
['base', 'large', 'small', 'tiny']
>>> get_preset("muq", "tiny").encoder_dim
64
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from muqkit.mulan.config import MULAN_PRESETS, mulan_preset
from muqkit.ssl.muq import MUQ_PRESETS, OFFICIAL_MEL_MEAN, OFFICIAL_MEL_STD, muq_preset

# kind -> (preset names, builder(name, **overrides) -> config)
REGISTRY: dict[str, tuple[tuple[str, ...], Callable[..., Any]]] = {
    "muq": (tuple(sorted(MUQ_PRESETS)), muq_preset),
    "mulan": (tuple(sorted(MULAN_PRESETS)), mulan_preset),
}


def list_presets() -> dict[str, list[str]]:
    """Preset names by model kind (``muq``, ``mulan``)."""
    return {kind: list(names) for kind, (names, _) in REGISTRY.items()}


def get_preset(kind: str, name: str, **overrides: Any) -> Any:
    """The config of preset ``name`` of model ``kind``, with field overrides."""
    if kind not in REGISTRY:
        raise ValueError(f"unknown model kind {kind!r}; choose one of {sorted(REGISTRY)}")
    return REGISTRY[kind][1](name, **overrides)


__all__ = ["MUQ_PRESETS", "OFFICIAL_MEL_MEAN", "OFFICIAL_MEL_STD", "REGISTRY", "get_preset", "list_presets",
           "mulan_preset", "muq_preset"]
