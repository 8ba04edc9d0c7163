"""Validation of scalar options, with one wording for every error.

Each check returns the value converted to its Python type, or raises ``ValueError`` that starts
with ``label`` (what the user wrote: ``"MarketParams.sigma"``, ``"csp option q0"``) and ends with
the offending value, e.g. ``MarketParams.sigma must be a finite number > 0, got -1``.
Booleans are never accepted as numbers (``True`` is an ``int`` to Python, not to a user).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def real(label: str, value: Any, *, gt: float | None = None, ge: float | None = None,
         lt: float | None = None) -> float:
    """A finite real number, optionally bounded: ``gt < value``, ``ge <= value``, ``value < lt``."""
    ok = isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool | np.bool_)
    ok = ok and math.isfinite(value)
    ok = ok and (gt is None or value > gt) and (ge is None or value >= ge) and (lt is None or value < lt)
    if not ok:
        if gt is not None and lt is not None:
            bound = f" in ({gt:g}, {lt:g})"
        else:
            bound = "".join(f" {op} {b:g}" for op, b in ((">", gt), (">=", ge), ("<", lt)) if b is not None)
        raise ValueError(f"{label} must be a finite number{bound}, got {value!r}")
    return float(value)


def integer(label: str, value: Any, *, ge: int | None = None) -> int:
    """An integer (Python or numpy; not a bool, not a float), optionally ``>= ge``."""
    ok = isinstance(value, int | np.integer) and not isinstance(value, bool) and (ge is None or value >= ge)
    if not ok:
        bound = "" if ge is None else f" >= {ge}"
        raise ValueError(f"{label} must be an integer{bound}, got {value!r}")
    return int(value)


def flag(label: str, value: Any) -> bool:
    """``True`` or ``False`` (not a truthy value)."""
    if not isinstance(value, bool | np.bool_):
        raise ValueError(f"{label} must be True or False, got {value!r}")
    return bool(value)


def choice(label: str, value: Any, allowed: tuple[str, ...]) -> str:
    """One of the strings in ``allowed``."""
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{label} must be one of {', '.join(allowed)}; got {value!r}")
    return value
