"""LOBSTER message + orderbook files (any level, plain or zipped) as event batches.

File names are ``TICKER_YYYY-MM-DD_StartMs_EndMs_{message|orderbook}_LEVEL.csv``. Row *k* of
the orderbook file is the book after message *k*, so both files are streamed in lockstep. Times
are seconds after midnight in New York on the file's date and become UTC nanoseconds; prices
are ×10⁻⁴ integers except halts (type 7), whose price −1/0/1 is kept as the halt code; the
empty-level dummy prices ±9999999999 become nulls (L1) or shorter level lists.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pyarrow as pa

from mmray.data._csv import Source, prefetch, stream_numeric
from mmray.data._levels import book_columns
from mmray.data.errors import DataError
from mmray.data.schema import EventValidator, event_batch, kind_codes, levels_array

__all__ = ["VENUE", "LobsterFiles", "LobsterName", "find_pairs", "parse_name", "read_lobster"]

VENUE = "nasdaq"
NEW_YORK = ZoneInfo("America/New_York")
DUMMY = 9_999_999_999
_NAME = re.compile(r"^(?P<ticker>[A-Za-z0-9.\-]+)_(?P<date>\d{4}-\d{2}-\d{2})_(?P<start>\d+)_(?P<end>\d+)_"
                   r"(?P<what>message|orderbook)_(?P<level>\d+)\.csv$")
_MESSAGE = ("time", "type", "order_id", "size", "price", "direction")
_MESSAGE_SCALES = (9, 0, 0, 0, 0, 0)  # time is read as ns after midnight, the rest as integers
# event type → kind code; sides: 1-3 the order's side, 4-5 the aggressor (−direction), 6-7 none
_KIND_OF_TYPE = np.array([-1, *kind_codes(["add", "cancel", "delete", "execute", "execute_hidden", "cross", "halt"])],
                         dtype=np.int8)
_SIDE_SIGN = np.array([0, 1, 1, 1, -1, -1, 0, 0], dtype=np.int8)
# what book_columns' first_bad entries mean, in the order they are reported
_BOOK_PROBLEMS = ("negative size in the book; expected >= 0",
                  "an occupied level after an empty (dummy) one; expected empty levels last",
                  "book levels out of order; expected asks rising and bids falling")


@dataclass(frozen=True)
class LobsterName:
    """What a LOBSTER file name says: ticker, trading date, window (ms after midnight), level."""

    ticker: str
    date: dt.date
    start_ms: int
    end_ms: int
    level: int
    what: str  # "message" or "orderbook"


def parse_name(name: str) -> LobsterName:
    """Parse a LOBSTER file name (``AAPL_2012-06-21_34200000_57600000_message_1.csv``).

    Raises
    ------
    DataError
        If `name` does not follow the LOBSTER naming scheme.
    """
    m = _NAME.match(os.path.basename(name))
    if not m:
        raise DataError(name, None, "not a LOBSTER file name; expected "
                        "TICKER_YYYY-MM-DD_StartMs_EndMs_{message|orderbook}_LEVEL.csv")
    try:
        date = dt.date.fromisoformat(m["date"])
    except ValueError:
        raise DataError(name, None, f"bad date {m['date']!r} in the file name") from None
    level = int(m["level"])
    if level < 1:
        raise DataError(name, None, "level in the file name must be at least 1")
    return LobsterName(m["ticker"], date, int(m["start"]), int(m["end"]), level, m["what"])


@dataclass(frozen=True)
class LobsterFiles:
    """One day of one ticker: its message and orderbook files (each plain or a zip member)."""

    message: Source
    orderbook: Source
    name: LobsterName


def find_pairs(paths: Iterable[str | os.PathLike[str]]) -> list[LobsterFiles]:
    """Pair message and orderbook files given as CSV paths and/or zip archives.

    Raises
    ------
    DataError
        A file with a name that is not LOBSTER's, or a message file without its orderbook
        file (or the reverse).
    """
    found: dict[str, dict[str, Source]] = {}
    for path in map(os.fspath, paths):
        if path.endswith(".zip"):
            try:
                with zipfile.ZipFile(path) as zf:
                    members = [Source(path, m) for m in zf.namelist() if _NAME.match(os.path.basename(m))]
            except (OSError, zipfile.BadZipFile) as exc:
                raise DataError(path, None, f"cannot open zip archive: {exc}") from None
            if not members:
                raise DataError(path, None, "zip archive holds no LOBSTER message/orderbook file")
        else:
            members = [Source(path)]
        for src in members:
            found.setdefault(src.name.replace("_orderbook_", "_message_"), {})[parse_name(src.name).what] = src
    pairs = []
    for message_name, both in sorted(found.items()):
        missing = {"message", "orderbook"} - set(both)
        if missing:
            have = next(iter(both.values()))
            raise DataError(have.label, None, f"no matching {missing.pop()} file given for it")
        pairs.append(LobsterFiles(both["message"], both["orderbook"], parse_name(message_name)))
    return pairs


def read_lobster(files: LobsterFiles | str | os.PathLike[str], *,
                 block_size: int = 1 << 21) -> Iterator[pa.RecordBatch]:
    """Stream one LOBSTER day as :data:`~mmray.data.schema.EVENT_SCHEMA` record batches.

    Parameters
    ----------
    files : LobsterFiles or path
        A pair from :func:`find_pairs`, or a message file path (its orderbook file is found by
        name next to it) or a zip archive holding one pair.
    block_size : int
        Bytes of message file parsed per block (the orderbook file: `block_size` × level);
        memory stays bounded by a few blocks.

    Yields
    ------
    pyarrow.RecordBatch
        One row per message: ``ts`` (UTC ns), ``kind``, ``side`` (order side for add/cancel/
        delete, aggressor for executions, 0 for cross/halt), ``price`` (dollars; halt code
        −1/0/1 for halts), ``size``, ``order_id`` (null when 0), the book after the event (L1
        columns, and all levels in the list columns when the file has more than one level).

    Raises
    ------
    DataError
        Naming the file and line: wrong column count, non-numeric or NaN field, unknown event
        type, bad direction or halt code, negative size, crossed or disordered book, time
        going backwards, or message/orderbook row-count mismatch.
    """
    if not isinstance(files, LobsterFiles):
        path = os.fspath(files)
        given = [path]
        if not path.endswith(".zip"):
            book = os.path.basename(path).replace("_message_", "_orderbook_")
            given.append(os.path.join(os.path.dirname(path), book))
        pairs = find_pairs(given)
        if len(pairs) != 1:
            raise DataError(os.fspath(files), None, f"expected one message/orderbook pair, found {len(pairs)}")
        files = pairs[0]
    level = files.name.level
    book_cols = [f"{s}{i}" for i in range(1, level + 1) for s in ("ap", "as", "bp", "bs")]
    messages = stream_numeric(files.message, _MESSAGE, _MESSAGE_SCALES, block_size=block_size)
    # the orderbook file (the larger) is read and parsed on another core, one block ahead
    books = prefetch(stream_numeric(files.orderbook, book_cols, (0,) * len(book_cols), block_size=block_size * level))
    clock = _Clock(files.name.date)
    validator = EventValidator(files.message.label, monotonic="ts", book_path=files.orderbook.label)
    first_line = 1
    for msg, book in _lockstep(messages, books, files):
        batch = _convert(msg, book, level, clock, files, first_line, files.name.ticker)
        validator.check(batch, np.arange(first_line, first_line + batch.num_rows))
        first_line += batch.num_rows
        yield batch


class _Clock:
    """Seconds after New York midnight on `date` → UTC epoch ns (handles a DST change day)."""

    def __init__(self, date: dt.date) -> None:
        midnight = dt.datetime.combine(date, dt.time(), tzinfo=NEW_YORK)
        end = midnight + dt.timedelta(hours=23, minutes=59)
        self.midnight_naive_ns = int(dt.datetime.combine(date, dt.time(), tzinfo=dt.UTC).timestamp()) * 10**9
        self.offsets = {midnight.utcoffset(), end.utcoffset()}
        self.date = date

    def to_utc(self, ns_after_midnight: np.ndarray) -> np.ndarray:
        local = self.midnight_naive_ns + ns_after_midnight
        if len(self.offsets) == 1:
            return local - int(next(iter(self.offsets)).total_seconds()) * 10**9
        idx = pd.DatetimeIndex(local.astype("datetime64[ns]")).tz_localize(NEW_YORK, ambiguous="NaT",
                                                                           nonexistent="NaT")
        return idx.tz_convert("UTC").asi8  # NaT (inside the DST hour) fails validation downstream


def _lockstep(messages: Iterator[np.ndarray], books: Iterator[np.ndarray],
              files: LobsterFiles) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Equal-length row blocks of the two streams; a row-count mismatch is an error at the end."""
    msg_rows = book_rows = 0
    pending = None  # leftover orderbook rows
    for msg in messages:
        need = len(msg)
        parts = []
        while need:
            if pending is None or len(pending) == 0:
                pending = next(books, None)
                if pending is None:
                    break
            take = min(need, len(pending))
            parts.append(pending[:take])
            pending = pending[take:]
            need -= take
        got = sum(len(p) for p in parts)
        if got < len(msg):
            msg_rows += len(msg) + sum(len(b) for b in messages)
            book_rows += got
            raise DataError(files.orderbook.label, book_rows + 1, "orderbook file ends early: it has "
                            f"{book_rows} rows, the message file {msg_rows}; expected equal row counts")
        msg_rows += len(msg)
        book_rows += got
        yield msg, (np.concatenate(parts) if len(parts) > 1 else parts[0])
    extra = (len(pending) if pending is not None else 0) + sum(len(b) for b in books)
    if extra:
        raise DataError(files.message.label, msg_rows + 1, f"message file ends early: it has {msg_rows} rows, "
                        f"the orderbook file {book_rows + extra}; expected equal row counts")


def _fail(files: LobsterFiles, first_line: int, bad: np.ndarray, what: str) -> None:
    hit = np.flatnonzero(bad)
    if hit.size:
        raise DataError(files.message.label, first_line + int(hit[0]), what)


def _convert(msg: np.ndarray, book: np.ndarray, level: int, clock: _Clock, files: LobsterFiles,
             first_line: int, symbol: str) -> pa.RecordBatch:
    """One event batch from message rows (time in ns after midnight) and their orderbook rows."""
    t, typ, oid, size, px, direction = msg.T
    n = len(t)
    _fail(files, first_line, t < 0, "column 1 (time): expected finite seconds after midnight")
    _fail(files, first_line, (typ < 1) | (typ > 7), "column 2 (event type): unknown type; expected 1-7")
    _fail(files, first_line, size < 0, "column 4 (size): negative size; expected >= 0")
    _fail(files, first_line, (direction != 1) & (direction != -1), "column 6 (direction): expected -1 or 1")
    halt = typ == 7
    _fail(files, first_line, halt & ((px < -1) | (px > 1)), "type-7 halt: price must be -1 (halt), 0 (quoting "
          "resumes) or 1 (trading resumes)")
    _fail(files, first_line, ~halt & (np.abs(px) >= DUMMY), "column 5 (price): dummy price in a message")
    first_bad, top, empty, offsets, values = book_columns(book, level, DUMMY)
    for row, what in zip(first_bad, _BOOK_PROBLEMS, strict=True):
        if row >= 0:
            raise DataError(files.orderbook.label, first_line + int(row), what)
    columns = {
        "ts": clock.to_utc(t), "venue": VENUE, "symbol": symbol, "kind": _KIND_OF_TYPE[typ],
        "side": (_SIDE_SIGN[typ] * direction).astype(np.int8),
        "price": np.where(halt, px, px / 1e4), "size": size.astype(np.float64),
        "order_id": pa.array(oid, mask=oid == 0),
        "bid_px": pa.array(top[0], mask=empty[0]), "bid_sz": top[1],
        "ask_px": pa.array(top[2], mask=empty[1]), "ask_sz": top[3],
    }
    if level > 1:
        for side, name in enumerate(("bid", "ask")):
            used = offsets[side, -1]
            columns[f"{name}_pxs"] = levels_array(offsets[side], values[2 * side, :used])
            columns[f"{name}_szs"] = levels_array(offsets[side], values[2 * side + 1, :used])
    return event_batch(n, columns)
