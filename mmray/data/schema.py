"""The one Arrow event schema every loader produces, its builder and its validator.

Every loader (:mod:`mmray.data.lobster`, :mod:`mmray.data.binance`, :mod:`mmray.data.vision`)
yields :class:`pyarrow.RecordBatch` objects built by :func:`event_batch` and checked by one
:class:`EventValidator`, so the checks that do not depend on the file format (NaN, negative
sizes, crossed books, time going backwards, closed set of kinds and sides) live here once.
The fields are documented field by field in ``docs/data.md``.
"""

from __future__ import annotations

import datetime as dt
import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mmray.data.errors import DataError

__all__ = ["EVENT_SCHEMA", "KINDS", "LEVEL_COLUMNS", "NS_PER_DAY", "EventValidator", "event_batch", "infer_tick",
           "kind_codes", "levels_array", "utc_date"]

#: The closed set of event kinds; a row's ``kind`` is one of these (dictionary-encoded, the
#: dictionary is always this tuple in this order so codes are stable across batches and files).
KINDS: tuple[str, ...] = (
    "add",             # LOBSTER 1: new limit order (side = the order's side)
    "cancel",          # LOBSTER 2: partial cancellation
    "delete",          # LOBSTER 3: full deletion
    "execute",         # LOBSTER 4: execution of a visible order (side = aggressor)
    "execute_hidden",  # LOBSTER 5: execution of a hidden order (book unchanged; side = aggressor)
    "cross",           # LOBSTER 6: cross/auction trade (side 0)
    "halt",            # LOBSTER 7: price -1 halt, 0 quoting resumes, 1 trading resumes
    "depth",           # Binance diff-depth level update: size = new absolute quantity at price (0 removes)
    "snapshot",        # one level of a REST depth snapshot the book was (re)built from
    "trade",           # a trade print (side = aggressor)
    "ticker",          # venue best bid/offer (bookTicker): only the L1 columns are set
    "depth_band",      # binance.vision bookDepth: cumulative size within `price` percent of mid
)
_KIND_INDEX = {k: i for i, k in enumerate(KINDS)}
_KIND_DICTIONARY = pa.array(KINDS, pa.string())
KIND_TYPE = pa.dictionary(pa.int8(), pa.string())

#: Columns holding the book's deeper levels (best first, occupied levels only).
LEVEL_COLUMNS: tuple[str, ...] = ("bid_pxs", "bid_szs", "ask_pxs", "ask_szs")

EVENT_SCHEMA = pa.schema([
    pa.field("ts", pa.int64(), nullable=False),   # venue event time, ns since epoch, UTC
    pa.field("ts_local", pa.int64()),             # receive time, ns since epoch (null: none)
    pa.field("venue", pa.string(), nullable=False),
    pa.field("symbol", pa.string(), nullable=False),
    pa.field("kind", KIND_TYPE, nullable=False),
    pa.field("side", pa.int8(), nullable=False),  # +1 bid/buy, -1 ask/sell, 0 not applicable
    pa.field("price", pa.float64()),
    pa.field("size", pa.float64()),
    pa.field("order_id", pa.int64()),             # venue order id (null: unknown)
    pa.field("seq", pa.int64()),                  # venue sequence: Binance update id / trade id
    pa.field("bid_px", pa.float64()),             # top of book after the event (null: empty/unknown)
    pa.field("bid_sz", pa.float64()),
    pa.field("ask_px", pa.float64()),
    pa.field("ask_sz", pa.float64()),
    *(pa.field(name, pa.list_(pa.float64())) for name in LEVEL_COLUMNS),
])

_FLOAT_COLUMNS = ("price", "size", "bid_px", "bid_sz", "ask_px", "ask_sz")

#: Nanoseconds in a day: ``ts // NS_PER_DAY`` is the UTC day number of an event time (days since 1970-01-01).
NS_PER_DAY = 86_400 * 10**9
_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()


def utc_date(day: int) -> str:
    """``YYYY-MM-DD`` of UTC day number `day` (``ts // NS_PER_DAY``): how a dataset's ``date``
    partition names the day of its rows' ``ts``."""
    return dt.date.fromordinal(_EPOCH_ORDINAL + int(day)).isoformat()


def infer_tick(prices: np.ndarray) -> float:
    """The price grid step of `prices`: the smallest gap between distinct finite prices, if every
    price lies on that grid; else 0 (also when fewer than two distinct prices).

    Gaps below 1e-12 of the largest price are float noise, not ticks; the gap is rounded to 8
    significant digits (differences of float prices carry ~1e-12 relative error).
    """
    u = np.unique(prices[np.isfinite(prices)])
    if u.size < 2:
        return 0.0
    gaps = np.diff(u)
    g = float(gaps[gaps > 1e-12 * max(1.0, float(np.abs(u).max()))].min(initial=np.inf))
    if not math.isfinite(g):
        return 0.0
    g = float(f"{g:.8g}")
    on_grid = np.abs(u / g - np.round(u / g)) < 1e-6
    return g if on_grid.all() else 0.0


def kind_codes(kinds: str | list[str]) -> np.ndarray | int:
    """Dictionary codes of kind names (one name → one int; a list → an int8 array)."""
    if isinstance(kinds, str):
        return _KIND_INDEX[kinds]
    return np.array([_KIND_INDEX[k] for k in kinds], dtype=np.int8)


def levels_array(offsets: np.ndarray, values: np.ndarray, valid: np.ndarray | None = None) -> pa.ListArray:
    """A ``list<float64>`` column from flat `values` and row `offsets` (length rows+1).

    `valid` (bool per row) marks null rows; without it every row is a (possibly empty) list.
    """
    mask = None if valid is None else pa.array(~np.asarray(valid, dtype=bool))
    return pa.ListArray.from_arrays(pa.array(np.asarray(offsets, dtype=np.int32)),
                                    pa.array(np.asarray(values, dtype=np.float64)), mask=mask)


_CONSTANTS: dict[tuple[str, str | None, int], pa.Array] = {}  # all-null and repeated-string columns, reused


def _constant(name: str, value: str | None, n: int) -> pa.Array:
    """An all-null column (`value` None) or `value` repeated: built once per name, value and length
    (arrays are immutable; loaders ask for the same few with every batch)."""
    key = (name, value, n)
    col = _CONSTANTS.get(key)
    if col is None:
        if len(_CONSTANTS) >= 256:
            _CONSTANTS.clear()
        typ = EVENT_SCHEMA.field(name).type
        col = _CONSTANTS[key] = pa.nulls(n, typ) if value is None else pa.repeat(pa.scalar(value, typ), n)
    return col


def _column(name: str, value: Any, n: int) -> pa.Array:
    field = EVENT_SCHEMA.field(name)
    if value is None:
        return _constant(name, None, n)
    if name == "kind":
        if isinstance(value, int | np.integer):
            value = np.full(n, value, dtype=np.int8)
        return pa.DictionaryArray.from_arrays(pa.array(np.asarray(value, dtype=np.int8)), _KIND_DICTIONARY)
    if isinstance(value, str):  # a constant, repeated in C++
        return _constant(name, value, n)
    if isinstance(value, pa.Array | pa.ChunkedArray):
        return value.cast(field.type) if value.type != field.type else value
    if isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool):
        value = np.full(n, value)
    return pa.array(value, type=field.type)


def event_batch(n: int, columns: Mapping[str, Any]) -> pa.RecordBatch:
    """Build one :data:`EVENT_SCHEMA` record batch of `n` rows.

    Parameters
    ----------
    n : int
        Number of rows.
    columns : mapping
        Column name → values: a pyarrow array, a numpy array or a list (a null is ``None`` or
        a masked pyarrow array; NaN stays NaN and fails validation), a scalar (repeated;
        ``venue``/``symbol`` are usually given this way) or ``None`` (all null). ``kind``
        takes codes from :func:`kind_codes`. Columns left out are null; a name outside the
        schema is an error.

    Returns
    -------
    pyarrow.RecordBatch
    """
    unknown = set(columns) - set(EVENT_SCHEMA.names)
    if unknown:
        raise KeyError(f"not event schema columns: {sorted(unknown)}")
    arrays = [_column(name, columns.get(name), n) for name in EVENT_SCHEMA.names]
    return pa.RecordBatch.from_arrays(arrays, schema=EVENT_SCHEMA)


class EventValidator:
    """Checks record batches of one source against the schema's invariants.

    One validator follows one stream of batches (it remembers the last timestamp so that time
    going backwards is caught across batch boundaries).

    Parameters
    ----------
    path : str or os.PathLike
        The source file, named in errors.
    monotonic : str or None
        Column that must never decrease (``"ts"`` for LOBSTER, ``"ts_local"`` for a capture
        whose exchange times interleave several streams), or ``None``.
    book_path : str or os.PathLike or None
        The file the book columns come from when it is not `path` (LOBSTER's orderbook file);
        errors about the book name it.
    """

    def __init__(self, path: str | os.PathLike[str], monotonic: str | None = "ts",
                 book_path: str | os.PathLike[str] | None = None) -> None:
        self.path = os.fspath(path)
        self.book_path = self.path if book_path is None else os.fspath(book_path)
        self.monotonic = monotonic
        self._last: int | None = None

    def check(self, batch: pa.RecordBatch, lines: np.ndarray | None = None) -> None:
        """Raise :class:`DataError` at the first bad row of `batch`.

        Parameters
        ----------
        batch : pyarrow.RecordBatch
            A batch from :func:`event_batch`.
        lines : numpy.ndarray or None
            1-based source line of each row, used to name the line in errors; without it the
            error names the row of the batch.
        """
        if batch.schema != EVENT_SCHEMA:
            raise DataError(self.path, None, f"batch does not have the event schema: {batch.schema}")
        if batch.num_rows == 0:
            return
        # (bad-row mask, what); book problems name book_path. A mask is only turned into a numpy
        # array when it has a bad row (the usual batch has none: one bitmap scan per check)
        problems: list[tuple[np.ndarray, str]] = []
        # each check first looks at the whole value buffer, null slots included (numpy, no
        # allocation of Arrow arrays); only a hit there is checked again on the valid rows
        raw = {name: _values(batch.column(name)) for name in _FLOAT_COLUMNS}
        for name in _FLOAT_COLUMNS:
            if np.isnan(raw[name]).any():
                _flag(problems, pc.is_nan(batch.column(name)), f"{name} is NaN")
        for name in ("size", "bid_sz", "ask_sz"):
            if (raw[name] < 0).any():
                _flag(problems, pc.less(batch.column(name), 0), f"negative {name}")
        side = batch.column("side").to_numpy()
        bad_side = np.abs(side) > 1
        if bad_side.any():
            problems.append((bad_side, "side must be -1, 0 or +1"))
        if (raw["bid_px"] > raw["ask_px"]).any():
            _flag(problems, pc.greater(batch.column("bid_px"), batch.column("ask_px")),
                  "crossed book: best bid above best ask")
        if self.monotonic is not None:
            t = batch.column(self.monotonic).to_numpy(zero_copy_only=False)
            if t.dtype.kind == "f":  # nulls present: ignore them
                t = np.where(np.isnan(t), -np.inf, t)
                t = np.maximum.accumulate(t)
            back = t[1:] < t[:-1]
            first_back = self._last is not None and t[0] < self._last
            if first_back or back.any():
                problems.append((np.concatenate([[first_back], back]), f"time going backwards ({self.monotonic})"))
        first = None
        for bad, what in problems:
            hit = np.flatnonzero(bad)
            if hit.size and (first is None or hit[0] < first[0]):
                first = (int(hit[0]), what)
        if first is not None:
            row, what = first
            line = int(lines[row]) if lines is not None else None
            detail = _describe(batch, row, what)
            on_book = what.startswith(("crossed", "negative bid", "negative ask", "bid_", "ask_"))
            path = self.book_path if on_book else self.path
            raise DataError(path, line, detail if line is not None else f"row {row} of a batch: {detail}")
        if self.monotonic is not None and np.isfinite(t[-1]):
            self._last = int(t[-1])

    def reset(self) -> None:
        """Forget the last timestamp (start of an independent stream)."""
        self._last = None


def _values(col: pa.Array) -> np.ndarray:
    """The float64 value buffer of `col` as numpy, null slots included (whatever they hold)."""
    data = col.buffers()[1]
    if data is None:  # all null, no value buffer
        return np.zeros(len(col))
    return np.frombuffer(data, np.float64, count=len(col), offset=col.offset * 8)


def _flag(problems: list[tuple[np.ndarray, str]], mask: pa.Array, what: str) -> None:
    """Add (`mask` as numpy, `what`) to `problems` when `mask` has a true value (nulls: false)."""
    if pc.any(mask).as_py():
        problems.append((pc.fill_null(mask, False).to_numpy(zero_copy_only=False), what))


def _describe(batch: pa.RecordBatch, row: int, what: str) -> str:
    def val(name: str) -> Any:
        return batch.column(name)[row].as_py()

    if what.startswith("crossed"):
        return f"{what} (bid {val('bid_px')} > ask {val('ask_px')}); expected bid < ask"
    if what.startswith("time"):
        return f"{what}: {val(what.split('(')[1].rstrip(')'))} after a later time; expected non-decreasing times"
    return f"{what}; expected a finite, non-negative value"
