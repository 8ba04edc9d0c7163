"""The strict numeric CSV line grammar of the fast LOBSTER path (:mod:`mmray.data._lobster`).

Every line ends with ``\\n`` and has exactly ``ncols`` comma-separated fields, each
``-?[0-9]+(\\.[0-9]*)?``. Column ``j`` is read as a fixed point number with ``scales[j]``
decimals (``scales[j] == 0``: an integer, no ``.`` allowed), so ``"34200.5"`` with scale 9
becomes ``34200500000000``. A field with more decimals than its scale, more than 18 digits
before the point plus the scale (the int64 bound), or anything else (``+``, exponents, spaces,
``\\r``, empty fields or lines, ``nan``) is not parsed: :func:`parse_line` declines the line, and
the caller hands it to a general CSV reader, which either reads it or names it in an error. So
the fast path never decides what is an error; it only declines.

:func:`parse_line` is ``register_jitable``: compiled inside the kernels that call it, a plain
Python function when they run interpreted (their plain twins).
"""

from __future__ import annotations

import numpy as np
from numba.extending import register_jitable

__all__ = ["MAX_DIGITS", "parse_line"]

MAX_DIGITS = 18  # digits of a scaled value that always fit in an int64
_NL, _COMMA, _MINUS, _DOT, _ZERO = 10, 44, 45, 46, 48


_POW10 = np.array([10**k for k in range(MAX_DIGITS + 1)], dtype=np.int64)


@register_jitable
def parse_line(buf: np.ndarray, i: int, ncols: int, scales: np.ndarray, out: np.ndarray) -> int:
    """Parse the line starting at ``buf[i]`` into ``out[:ncols]`` (int64).

    `buf` (uint8) must end with a newline (it bounds every scan). Returns the offset of the next
    line, or -1 when the line does not follow the grammar (`out` is then partly written).
    """
    for col in range(ncols):
        neg = buf[i] == _MINUS
        if neg:
            i += 1
        first = i
        value = 0
        # digit test as one unsigned comparison (a byte below '0' wraps to a large number)
        d = np.uint64(np.int64(buf[i]) - _ZERO)
        while d <= 9:
            value = value * 10 + np.int64(d)
            i += 1
            d = np.uint64(np.int64(buf[i]) - _ZERO)
        scale = scales[col]
        whole = i - first
        if whole == 0 or whole + scale > MAX_DIGITS:
            return -1
        c = buf[i]
        if scale:
            dec = 0
            if c == _DOT:
                i += 1
                first = i
                d = np.uint64(np.int64(buf[i]) - _ZERO)
                while d <= 9:
                    value = value * 10 + np.int64(d)
                    i += 1
                    d = np.uint64(np.int64(buf[i]) - _ZERO)
                dec = i - first
                if dec > scale:
                    return -1
                c = buf[i]
            value *= _POW10[scale - dec]
        if c != (_NL if col == ncols - 1 else _COMMA):
            return -1
        i += 1
        out[col] = -value if neg else value
    return i
