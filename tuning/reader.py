"""Reading the fields of a sweep file: :mod:`mmray.checks` in the words of a sweep file.

Each function takes a value and the field's path (``sweep.grid.gamma[2]``) and returns the value
converted, or raises :class:`~mmray.tuning.spec.SweepConfigError` ``<path>: expected <what>, got
<value>``, with values named as a YAML or JSON author wrote them (``the string 'abc'``, ``null``,
``a list``). Scalars are checked by :mod:`mmray.checks`; a dataclass field's type annotation picks
the check (:func:`typed`). Errors carry no source: :func:`~mmray.tuning.config.spec_from_dict` adds it.
"""

from __future__ import annotations

import difflib
import math
import re
import types
from collections.abc import Callable, Mapping
from dataclasses import fields
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from mmray import checks
from mmray.tuning.spec import SweepConfigError

T = TypeVar("T")

_FLOAT_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")

error = SweepConfigError.at


def show(value: Any) -> str:
    """A value as the author of a YAML or JSON file wrote it."""
    if isinstance(value, str):
        return f"the string {value!r}"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return repr(value)


def _checked(check: Callable[..., T], value: Any, path: str, *args: Any, **bounds: Any) -> T:
    try:
        return check(path, value, *args, **bounds)
    except checks.CheckError as exc:
        raise error(path, f"expected {exc.within or exc.expected}, got {show(value)}") from None


def number(value: Any, path: str, *, gt: float | None = None, ge: float | None = None) -> float:
    """A finite number; YAML 1.1 reads ``1e-3`` as a string, so numeric strings are accepted."""
    if isinstance(value, str) and _FLOAT_RE.match(value.strip()):
        value = float(value)
    return _checked(checks.real, value, path, gt=gt, ge=ge)


def integer(value: Any, path: str, *, ge: int | None = None) -> int:
    """An integer (``10.0`` too)."""
    return _checked(checks.integer, value, path, ge=ge, integral_floats=True)


def flag(value: Any, path: str) -> bool:
    return _checked(checks.flag, value, path)


def choice(value: Any, path: str, allowed: tuple[str, ...]) -> str:
    return _checked(checks.choice, value, path, allowed)


def typed(hint: Any, value: Any, path: str, *, ge: int | None = None, gt: float | None = None) -> Any:
    """``value`` checked against a dataclass field's type annotation ``hint``: ``float``, ``int``,
    ``bool``, ``str`` or a ``Literal`` of strings (its values are the dataclass's to check), or one
    of them ``| None``. ``ge``/``gt`` bound a number."""
    kinds = get_args(hint) if get_origin(hint) in (Union, types.UnionType) else (hint,)
    if value is None and type(None) in kinds:
        return None
    (kind,) = (k for k in kinds if k is not type(None))
    if kind is float:
        return number(value, path, gt=gt, ge=ge)
    if kind is int:
        return integer(value, path, ge=ge)
    if kind is bool:
        return flag(value, path)
    if kind is str or get_origin(kind) is Literal:
        return _checked(checks.string, value, path)
    raise TypeError(f"{path}: no sweep-file reading of type {hint!r}")


def fields_of(cls: type[T], data: Mapping[str, Any], path: str, **bounds: Mapping[str, Any]) -> T:
    """An instance of dataclass ``cls`` from ``data``: every key a field, every value read by its
    field's type (:func:`typed`, with ``bounds[name]``), missing fields at their defaults."""
    hints = get_type_hints(cls)
    keys(data, path, tuple(f.name for f in fields(cls)))  # type: ignore[arg-type]
    return cls(**{name: typed(hints[name], v, f"{path}.{name}", **bounds.get(name, {})) for name, v in data.items()})


def mapping(value: Any, path: str) -> dict[str, Any]:
    """A mapping with string keys; an absent one (``None``) is empty."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise error(path, f"expected a mapping (key: value), got {show(value)}")
    for key in value:
        if not isinstance(key, str):
            raise error(path, f"keys must be strings, got {key!r}")
    return dict(value)


def items(value: Any, path: str) -> list[Any]:
    """A non-empty list."""
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise error(path, f"expected a non-empty list, got {show(value)}")
    if not value:
        raise error(path, "expected a non-empty list, got an empty one")
    return list(value)


def did_you_mean(name: str, allowed: tuple[str, ...]) -> str:
    """`` (did you mean 'gamma'?)`` for a close match in ``allowed``, else ``""``."""
    hint = difflib.get_close_matches(name, allowed, n=1)
    return f" (did you mean {hint[0]!r}?)" if hint else ""


def keys(value: Mapping[str, Any], path: str, allowed: tuple[str, ...]) -> None:
    """Every key of ``value`` is one of ``allowed``."""
    for key in value:
        if key not in allowed:
            raise error(f"{path}.{key}",
                        f"unknown key{did_you_mean(key, allowed)}; expected one of {', '.join(allowed)}")


def free_form(value: Any) -> bool:
    """Whether ``value`` is a JSON scalar (finite) or a list of them: what a solver option may be."""
    if value is None or isinstance(value, bool | int | float | str):
        return not (isinstance(value, float) and not math.isfinite(value))
    if isinstance(value, list | tuple):
        return all(free_form(v) for v in value)
    return False
