"""Small helpers shared by the config dataclasses: field checks whose errors name the field and what is
allowed, and the building of nested configs from dicts (with the flat field names older files used).

Every architecture config validates each of its fields in ``__post_init__`` with these checks, so that
``ConformerConfig(dropout=2.0)`` fails with ``ConformerConfig.dropout must be in [0, 1), got 2.0``.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


def _fail(owner: object, name: str, allowed: str) -> None:
    raise ValueError(f"{type(owner).__name__}.{name} must be {allowed}, got {getattr(owner, name)!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_int(owner: object, *names: str, minimum: int | None = 1) -> None:
    """Each field in ``names`` is an integer ``>= minimum`` (any integer with ``minimum=None``)."""
    for name in names:
        value = getattr(owner, name)
        if not _is_int(value) or (minimum is not None and value < minimum):
            _fail(owner, name, "an integer" if minimum is None else f"an integer >= {minimum}")


def check_number(
    owner: object, name: str, *, low: float | None = None, high: float | None = None,
    low_open: bool = False, high_open: bool = False,
) -> None:
    """Field ``name`` is a real number in the interval given (``None``: unbounded on that side)."""
    value = getattr(owner, name)
    ok = _is_number(value) and value == value  # not NaN
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        if low is not None and high is not None:
            allowed = f"in {left}{low:g}, {high:g}{right}"
        elif low is not None:
            allowed = f"{'>' if low_open else '>='} {low:g}"
        elif high is not None:
            allowed = f"{'<' if high_open else '<='} {high:g}"
        else:
            allowed = "a number"
        _fail(owner, name, allowed)


def check_probability(owner: object, *names: str) -> None:
    """Each field in ``names`` is a dropout-like rate in [0, 1)."""
    for name in names:
        check_number(owner, name, low=0.0, high=1.0, high_open=True)


def check_choice(owner: object, name: str, choices: tuple[Any, ...]) -> None:
    """Field ``name`` is one of ``choices``."""
    if getattr(owner, name) not in choices:
        _fail(owner, name, f"one of {list(choices)}")


def build(cls: type[T], data: Mapping[str, Any], where: str) -> T:
    """``cls(**data)``, with unknown keys reported by name (``where`` says which section)."""
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{where}: unknown config keys {unknown}; allowed: {sorted(known)}")
    return cls(**data)


def nest(data: dict[str, Any], key: str, cls: type[T], aliases: Mapping[str, str], where: str) -> T:
    """Pop a nested config from ``data``: ``data[key]`` (a ``cls``, a dict or absent) updated with the flat
    fields of ``aliases`` (flat name -> field of ``cls``) found in ``data``, as older config files and
    keyword overrides give them. An invalid flat field is reported under its flat name."""
    nested = data.pop(key, None)
    fields = dataclasses.asdict(nested) if dataclasses.is_dataclass(nested) else dict(nested or {})  # type: ignore[arg-type]
    given = {flat: data.pop(flat) for flat in list(aliases) if flat in data}
    fields.update({aliases[flat]: value for flat, value in given.items()})
    try:
        return build(cls, fields, f"{where}.{key}")
    except ValueError as exc:
        named = [f"{where}.{flat}" for flat, field in aliases.items() if flat in given and f".{field} " in str(exc)]
        if named:
            raise ValueError(f"{exc} (given as {', '.join(named)})") from None
        raise


__all__ = ["build", "check_choice", "check_int", "check_number", "check_probability", "nest"]
