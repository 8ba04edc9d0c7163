"""Parsing blocks of numeric CSV lines into int64 matrices: a numba kernel and its numpy twin.

Both parse the strict grammar the fast path accepts: every line ends with ``\\n`` and has exactly
``ncols`` comma-separated fields, each ``-?[0-9]+(\\.[0-9]*)?``. Column ``j`` is read as a fixed
point number with ``scales[j]`` decimals (``scales[j] == 0``: an integer, no ``.`` allowed), so
``"34200.5"`` with scale 9 becomes ``34200500000000``. A field with more decimals than its scale,
more than 18 digits before the point plus the scale (the int64 bound), or anything else (``+``, exponents, spaces,
``\\r``, empty fields or lines, ``nan``) is not parsed: parsing stops at the first such line and
says where, and the caller hands that line to a general CSV reader, which either reads it or
names it in an error. So the fast path never decides what is an error; it only declines.

:func:`parse_block` is the compiled kernel (one pass over the bytes); :func:`parse_block_numpy`
computes the same result with whole-array numpy operations (tests check they agree).
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["MAX_DIGITS", "parse_block", "parse_block_numpy"]

MAX_DIGITS = 18  # digits of a scaled value that always fit in an int64
_NL, _COMMA, _MINUS, _DOT, _ZERO, _NINE = 10, 44, 45, 46, 48, 57


@njit(cache=True, nogil=True)
def parse_block(buf: np.ndarray, ncols: int, scales: np.ndarray, out: np.ndarray) -> tuple[int, int]:
    """Parse the lines of `buf` (uint8, ends with a newline) into `out` (rows × `ncols` int64).

    Returns ``(rows, stop)``: the lines parsed (filled in ``out[:rows]``) and the byte offset
    where parsing stopped: ``buf.size``, or the start of the first line that does not follow
    the grammar. A `buf` that does not end with a newline is declined whole (``(0, 0)``).
    """
    n = buf.size
    if n == 0 or buf[n - 1] != _NL:  # the newline at the end bounds every scan below
        return 0, 0
    i = row = 0
    while i < n:
        start = i
        for col in range(ncols):
            neg = buf[i] == _MINUS
            i += neg
            first = i
            value = 0
            while _ZERO <= buf[i] <= _NINE:
                value = value * 10 + (buf[i] - _ZERO)
                i += 1
            scale = scales[col]
            whole = i - first
            if whole == 0 or whole + scale > MAX_DIGITS:
                return row, start
            dec = 0
            if scale and buf[i] == _DOT:
                i += 1
                first = i
                while _ZERO <= buf[i] <= _NINE:
                    value = value * 10 + (buf[i] - _ZERO)
                    i += 1
                dec = i - first
                if dec > scale:
                    return row, start
            for _ in range(scale - dec):
                value *= 10
            if buf[i] != (_NL if col == ncols - 1 else _COMMA):
                return row, start
            i += 1
            out[row, col] = -value if neg else value
        row += 1
    return row, n


def parse_block_numpy(buf: np.ndarray, ncols: int, scales: np.ndarray, out: np.ndarray) -> tuple[int, int]:
    """:func:`parse_block` with whole-array numpy operations (same result, same contract)."""
    buf = np.asarray(buf, dtype=np.uint8)
    if buf.size == 0 or buf[-1] != _NL:
        return 0, 0
    ends = np.flatnonzero(buf == _NL)
    n = ends.size
    starts = np.concatenate([[0], ends[:-1] + 1])
    is_sep = (buf == _COMMA) | (buf == _NL)
    is_digit = (buf >= _ZERO) & (buf <= _NINE)
    is_minus, is_dot = buf == _MINUS, buf == _DOT
    line_of = np.repeat(np.arange(n), ends - starts + 1)
    bad_line = np.zeros(n, dtype=bool)
    np.logical_or.at(bad_line, line_of, ~(is_sep | is_digit | is_minus | is_dot))
    seps = np.cumsum(is_sep)
    commas_per_line = (seps[ends] - seps[starts] + is_sep[starts]) - 1
    bad_line |= commas_per_line != ncols - 1
    sep_pos = np.flatnonzero(is_sep)  # field k ends at sep_pos[k]
    field_start = np.concatenate([[0], sep_pos[:-1] + 1])
    field_of = np.cumsum(is_sep) - is_sep  # field index of every byte (separators: their own field)
    field_line = line_of[sep_pos]
    # the column of each field (meaningful only on lines with the right comma count)
    col = np.arange(sep_pos.size) - np.searchsorted(sep_pos, starts[field_line])
    col = np.minimum(col, ncols - 1)
    scale = np.asarray(scales, dtype=np.int64)[col]
    cd = np.concatenate([[0], np.cumsum(is_digit)])
    ndig = cd[sep_pos] - cd[field_start]
    minus_first = is_minus[np.minimum(field_start, buf.size - 1)] & (sep_pos > field_start)
    minus_count = np.bincount(field_of[is_minus], minlength=sep_pos.size)
    dot_count = np.bincount(field_of[is_dot], minlength=sep_pos.size)
    # the dot must follow a digit: the digits before it in its field are the integer part
    dot_at = np.full(sep_pos.size, -1)
    dot_at[field_of[is_dot]] = np.flatnonzero(is_dot)
    int_digits = np.where(dot_at >= 0, cd[np.maximum(dot_at, 0)] - cd[field_start], ndig)
    dec = ndig - int_digits
    bad_field = ((ndig == 0) | (minus_count > (minus_first & (minus_count == 1))) | (dot_count > 1)
                 | ((dot_count == 1) & (int_digits == 0)) | (dec > scale) | ((dot_count == 1) & (scale == 0))
                 | (int_digits + scale > MAX_DIGITS))
    np.logical_or.at(bad_line, field_line, bad_field)
    good = int(np.argmax(bad_line)) if bad_line.any() else n
    stop = int(starts[good]) if good < n else buf.size
    if good == 0:
        return 0, stop
    # value of each field: its digits weighted by 10 ** (digits after them in the field + scale - dec)
    last = ends[good - 1] + 1
    d_mask = is_digit[:last]
    d_pos = np.flatnonzero(d_mask)
    d_field = field_of[d_pos]
    after = cd[sep_pos[d_field]] - cd[d_pos + 1]
    power = (10 ** np.minimum(after + scale[d_field] - dec[d_field], MAX_DIGITS)).astype(np.int64)
    values = np.zeros(sep_pos.size, dtype=np.int64)
    np.add.at(values, d_field, (buf[d_pos].astype(np.int64) - _ZERO) * power)
    values = np.where(minus_first, -values, values)
    out[:good] = values[: good * ncols].reshape(good, ncols)
    return good, stop
