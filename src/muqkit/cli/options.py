"""Command-line options bound to config dataclass fields, so that a default cannot drift from its field's.

Building the parser must stay cheap (no torch), so an option names its field as ``"module:Class.field"``
and carries its default literally; :func:`field_option` records the field on the argparse action
(``action.config_field``) and ``tests/cli/test_options.py`` walks every command and fails when an
option's default differs from the dataclass field's. Old spellings of an option stay accepted as hidden
aliases (:func:`hidden_alias`), so scripts written against them keep working.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
from typing import Any, TypeVar

C = TypeVar("C")

# `--dtype` of every command that runs a model (muqkit.embed.precision.PrecisionOption).
DTYPE_CHOICES = ("float32", "bfloat16", "int8", "auto")


def resolve_field(spec: str) -> tuple[type, str]:
    """``"muqkit.train.tokenizer:TokenizerTrainingConfig.max_steps"`` -> (the class, ``"max_steps"``)."""
    module, _, rest = spec.partition(":")
    cls_name, _, name = rest.rpartition(".")
    return getattr(importlib.import_module(module), cls_name), name


def field_default(config: type, name: str) -> Any:
    """The default of field ``name`` of the dataclass ``config``.

    Raises:
        KeyError: ``config`` has no such field, or the field has no default.
    """
    for f in dataclasses.fields(config):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
            raise KeyError(f"{config.__name__}.{name} has no default")
    raise KeyError(f"{config.__name__} has no field {name!r}")


def field_option(
    parser: argparse.ArgumentParser, flag: str, field: str, default: Any, **kwargs: Any
) -> argparse.Action:
    """Add ``flag`` for the config field ``field`` (``"module:Class.name"``); ``dest`` is the field's name and
    ``default`` must equal the field's default (checked by the test suite, not at run time)."""
    name = field.rpartition(".")[2]
    text = kwargs.pop("help", "")
    kwargs.setdefault("dest", name)
    action = parser.add_argument(flag, default=default, help=f"{text} (default: {default})".lstrip(), **kwargs)
    action.config_field = field  # type: ignore[attr-defined]
    return action


def config_from_args(config: type[C], args: argparse.Namespace, **values: Any) -> C:
    """``config`` built from ``values`` and, for its other fields, the parsed options of the same name (the
    ``dest`` of a :func:`field_option` is its field's name); fields neither gives keep their defaults.

    Raises:
        TypeError: ``values`` names a field ``config`` does not have.
    """
    names = [f.name for f in dataclasses.fields(config) if f.init]  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise TypeError(f"{config.__name__} has no fields {unknown}")
    parsed = {name: getattr(args, name) for name in names if name not in values and hasattr(args, name)}
    return config(**parsed, **values)


def hidden_alias(parser: argparse.ArgumentParser, flag: str, dest: str, **kwargs: Any) -> argparse.Action:
    """Accept ``flag`` as another spelling of the option stored in ``dest``, without showing it in ``--help``."""
    return parser.add_argument(flag, dest=dest, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **kwargs)


def comma_list(text: str) -> tuple[str, ...]:
    """``"attention, ffn,"`` -> ``("attention", "ffn")``: an option holding a comma-separated list."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


def device_count(text: str) -> int | str:
    """``--devices``: a count (``"2"``) or a Lightning spelling (``"auto"``, ``"0,1"``)."""
    return int(text) if text.isdigit() else text


__all__ = ["device_count", "field_default", "field_option", "hidden_alias", "resolve_field"]


def layer_list(text: str) -> str | list[int]:
    """``--layers``: ``all`` or comma-separated hidden-state indices."""
    if text.strip() == "all":
        return "all"
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'all' or comma-separated integers, got {text!r}") from None
