"""Validation of scalar options, with one wording for every error.

Each check returns the value converted to its Python type, or raises :class:`CheckError` (a
``ValueError``) that starts with ``label`` (what the user wrote: ``"MarketParams.sigma"``,
``"csp option q0"``) and ends with the offending value, e.g.
``MarketParams.sigma must be a finite number > 0, got -1``.
Booleans are never accepted as numbers (``True`` is an ``int`` to Python, not to a user).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


class CheckError(ValueError):
    """A value a check refused: ``<label> must be <expected>, got <value>``.

    The parts are kept for callers that address another reader (a sweep file names the field by
    its path: ``sweep.sim.n_paths: expected an integer >= 1, got 0``): ``label``, ``value``,
    ``expected`` (``"a finite number > 0"``) and ``within``, set when the value is of the right kind
    and only out of bounds (``"a number > 0"``).
    """

    def __init__(self, label: str, value: Any, expected: str, *, within: str | None = None,
                 sep: str = ",") -> None:
        super().__init__(f"{label} must be {expected}{sep} got {value!r}")
        self.label, self.value, self.expected, self.within = label, value, expected, within


def _bounds(gt: float | None = None, ge: float | None = None, lt: float | None = None) -> str:
    if gt is not None and lt is not None:
        return f" in ({gt:g}, {lt:g})"
    return "".join(f" {op} {b:g}" for op, b in ((">", gt), (">=", ge), ("<", lt)) if b is not None)


def real(label: str, value: Any, *, gt: float | None = None, ge: float | None = None,
         lt: float | None = None) -> float:
    """A finite real number, optionally bounded: ``gt < value``, ``ge <= value``, ``value < lt``."""
    kind = isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool | np.bool_)
    kind = kind and math.isfinite(value)
    if not (kind and (gt is None or value > gt) and (ge is None or value >= ge) and (lt is None or value < lt)):
        bound = _bounds(gt, ge, lt)
        raise CheckError(label, value, f"a finite number{bound}", within=f"a number{bound}" if kind else None)
    return float(value)


def integer(label: str, value: Any, *, ge: int | None = None, integral_floats: bool = False) -> int:
    """An integer (Python or numpy; not a bool, not a float), optionally ``>= ge``.

    ``integral_floats`` also accepts a float with an integer value (``10.0``: JSON and YAML write them).
    """
    kind = isinstance(value, int | np.integer) and not isinstance(value, bool)
    kind = kind or (integral_floats and isinstance(value, float) and value.is_integer())
    if not kind or (ge is not None and value < ge):
        expected = "an integer" + _bounds(ge=ge)
        raise CheckError(label, value, expected, within=expected if kind else None)
    return int(value)


def flag(label: str, value: Any) -> bool:
    """``True`` or ``False`` (not a truthy value)."""
    if not isinstance(value, bool | np.bool_):
        raise CheckError(label, value, "True or False")
    return bool(value)


def choice(label: str, value: Any, allowed: tuple[str, ...]) -> str:
    """One of the strings in ``allowed``."""
    if not isinstance(value, str) or value not in allowed:
        raise CheckError(label, value, f"one of {', '.join(allowed)}", sep=";")
    return value


def string(label: str, value: Any) -> str:
    """A string."""
    if not isinstance(value, str):
        raise CheckError(label, value, "a string")
    return value
