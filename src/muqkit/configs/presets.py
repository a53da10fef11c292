"""The pretraining presets shipped in the package (``muqkit/configs/pretrain/NAME.yaml``) and the settings of a run
built from one: a preset, then ``--set KEY=VALUE`` items, then command-line overrides."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def _preset_files() -> dict[str, Any]:
    """The YAML presets shipped in the package (``muqkit/configs/pretrain/NAME.yaml``), by name."""
    from importlib.resources import files

    folder = files("muqkit.configs") / "pretrain"
    return {entry.name[: -len(".yaml")]: entry for entry in folder.iterdir() if entry.name.endswith(".yaml")}


def preset_names() -> list[str]:
    """Names of the pretraining presets shipped in the package (``muqkit/configs/pretrain``)."""
    return sorted(_preset_files())


def load_preset(name_or_path: str | os.PathLike[str]) -> dict[str, Any]:
    """Settings of a preset name (``muqkit/configs/pretrain/NAME.yaml``, package data) or a YAML file."""
    import yaml

    path = Path(name_or_path)
    if path.suffix:
        if not path.is_file():
            raise ValueError(f"no pretraining preset {str(name_or_path)!r}; known: {preset_names()}")
        text = path.read_text()
    else:
        presets = _preset_files()
        if str(name_or_path) not in presets:
            raise ValueError(f"no pretraining preset {str(name_or_path)!r}; known: {sorted(presets)}")
        text = presets[str(name_or_path)].read_text()
    data = yaml.safe_load(text) or {}
    data.pop("description", None)
    return data


def preset_settings(
    preset: str | os.PathLike[str],
    *,
    set_items: Sequence[str] = (),
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The settings of a run: a preset (:func:`load_preset`), then ``KEY=VALUE`` items (JSON values, plain
    strings otherwise), then ``overrides`` (``None`` values ignored).

    When ``overrides`` sets ``max_steps`` at or below the preset's warm-up and no item sets
    ``warmup_steps``, the warm-up becomes ``max_steps // 10`` (with a warning naming the choice).

    Raises:
        ValueError: an item is not ``KEY=VALUE``.
    """
    settings = load_preset(preset)
    explicit = set()
    for item in set_items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            settings[key] = json.loads(value)
        except json.JSONDecodeError:
            settings[key] = value
        explicit.add(key)
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    settings.update(given)
    steps, warmup = int(settings.get("max_steps") or 0), int(settings.get("warmup_steps") or 0)
    if "max_steps" in given and "warmup_steps" not in explicit and warmup >= steps:
        settings["warmup_steps"] = steps // 10
        log.warning("--max-steps %d is not above the preset's warm-up (%d steps): warm-up set to %d steps "
                    "(--set warmup_steps=N to choose)", steps, warmup, steps // 10)  # fmt: skip
    return settings


__all__ = ["load_preset", "preset_names", "preset_settings"]
