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

from mmray.data import _lobster as _K
from mmray.data._csv import LineBlocks, Source, open_source, parse_general
from mmray.data.errors import DataError
from mmray.data.schema import EventValidator, event_batch, kind_codes

__all__ = ["BATCH_ROWS", "VENUE", "LobsterFiles", "LobsterName", "find_pairs", "parse_name", "read_lobster"]

VENUE = "nasdaq"
#: Rows per record batch of :func:`read_lobster` unless told (memory: a few batches are alive at a time).
BATCH_ROWS = 1 << 15
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
#: The kernel the reader runs (tests swap in :func:`mmray.data._lobster.lobster_pass_plain`).
_PASS = _K.lobster_pass


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


def read_lobster(files: LobsterFiles | str | os.PathLike[str], *, block_size: int = 1 << 20,
                 batch_rows: int = BATCH_ROWS) -> Iterator[pa.RecordBatch]:
    """Stream one LOBSTER day as :data:`~mmray.data.schema.EVENT_SCHEMA` record batches.

    Parameters
    ----------
    files : LobsterFiles or path
        A pair from :func:`find_pairs`, or a message file path (its orderbook file is found by
        name next to it) or a zip archive holding one pair.
    block_size : int
        Bytes of each file read at a time (into one reused buffer per file).
    batch_rows : int
        Rows per record batch. Memory is bounded by the two read buffers and the few batches
        alive at a time, whatever the file size.

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
    with open_source(files.message) as fm, open_source(files.orderbook) as fb:
        yield from _Reader(files, LineBlocks(fm, block_size), LineBlocks(fb, block_size * files.name.level),
                           batch_rows).batches()


class _Clock:
    """Seconds after New York midnight on `date` → UTC epoch ns (handles a DST change day)."""

    def __init__(self, date: dt.date) -> None:
        midnight = dt.datetime.combine(date, dt.time(), tzinfo=NEW_YORK)
        end = midnight + dt.timedelta(hours=23, minutes=59)
        self.midnight_naive_ns = int(dt.datetime.combine(date, dt.time(), tzinfo=dt.UTC).timestamp()) * 10**9
        self.offsets = {midnight.utcoffset(), end.utcoffset()}
        self.date = date

    @property
    def shift(self) -> int:
        """What to add to ns after midnight: the UTC time when the day has one offset, else the
        naive local time (then :meth:`localize` converts it)."""
        if len(self.offsets) == 1:
            return self.midnight_naive_ns - int(next(iter(self.offsets)).total_seconds()) * 10**9
        return self.midnight_naive_ns

    def localize(self, ts: np.ndarray) -> None:
        """Naive local ns (shifted by :attr:`shift`) → UTC ns in place, on a day with two offsets."""
        if len(self.offsets) == 1:
            return
        idx = pd.DatetimeIndex(ts.astype("datetime64[ns]")).tz_localize(NEW_YORK, ambiguous="NaT",
                                                                        nonexistent="NaT")
        ts[:] = idx.tz_convert("UTC").asi8  # NaT (inside the DST hour) fails validation downstream


_MESSAGE_SCALE = np.asarray(_MESSAGE_SCALES, dtype=np.int64)
_DECLINED_PER_BATCH = 64  # lines declined in a batch before a whole block goes to pyarrow at once


class _Reader:
    """Drives :func:`mmray.data._lobster.lobster_pass` over the two files' blocks."""

    def __init__(self, files: LobsterFiles, messages: LineBlocks, books: LineBlocks, batch_rows: int) -> None:
        self.files, self.messages, self.books = files, messages, books
        self.level = level = files.name.level
        self.batch_rows = batch_rows
        self.clock = _Clock(files.name.date)
        self.book_cols = [f"{s}{i}" for i in range(1, level + 1) for s in ("ap", "as", "bp", "bs")]
        self.book_scale = np.zeros(4 * level, np.int64)
        self.validator = EventValidator(files.message.label, monotonic="ts", book_path=files.orderbook.label)
        self.pos = np.zeros(_K.POS_SLOTS, np.int64)
        self.pos[_K.P_MLINE] = self.pos[_K.P_BLINE] = 1
        self.mrow, self.brow = np.zeros(len(_MESSAGE), np.int64), np.zeros(4 * level, np.int64)
        self.mpre, self.bpre = np.zeros((0, len(_MESSAGE)), np.int64), np.zeros((0, 4 * level), np.int64)

    def batches(self) -> Iterator[pa.RecordBatch]:
        first_line = 1  # line (in both files) of the batch's first row
        mbuf, bbuf = self.messages.next(0), self.books.next(0)
        pos = self.pos
        while True:
            cols = _K.Columns(self.batch_rows, self.level)
            bad = np.full(len(_K.CHECKS), -1, np.int64)
            declined = 0
            pos[_K.P_ROWS] = 0
            ended = False
            while True:
                status = _PASS(mbuf, bbuf, self.mpre, self.bpre, pos, self.level, DUMMY, self.clock.shift,
                               _KIND_OF_TYPE, _SIDE_SIGN, _MESSAGE_SCALE, self.book_scale, self.mrow, self.brow, bad,
                               *cols.arrays())
                if status == _K.FULL:
                    break
                if status == _K.NEED_MESSAGE:
                    mbuf, pos[_K.P_MSG] = self.messages.next(int(pos[_K.P_MSG])), 0
                    if not mbuf.size:  # checked after the last batch, whose rows may fail first
                        ended = True
                        break
                elif status == _K.NEED_BOOK:
                    bbuf, pos[_K.P_BOOK] = self.books.next(int(pos[_K.P_BOOK])), 0
                    if not bbuf.size:
                        self._books_ended(first_line + int(pos[_K.P_ROWS]))
                else:
                    declined += 1
                    if status == _K.DECLINED_MESSAGE:
                        mbuf, self.mpre = self._general(0, mbuf, declined)
                    else:
                        bbuf, self.bpre = self._general(1, bbuf, declined)
            n = int(pos[_K.P_ROWS])
            if n:
                yield self._batch(cols, n, bad, first_line)
                first_line += n
            if ended:
                self._check_books_end(first_line)
                return

    def _general(self, which: int, buf: np.ndarray, declined: int) -> tuple[np.ndarray, np.ndarray]:
        """Read the declined line at the block's position (or, after many, the rest of the block)
        with pyarrow; returns the block as left and the rows parsed."""
        slot = _K.P_MSG if which == 0 else _K.P_BOOK
        start = int(self.pos[slot])
        rest = buf[start:]
        end = rest.size if declined > _DECLINED_PER_BATCH else int(np.argmax(rest == 10)) + 1
        src = self.files.message if which == 0 else self.files.orderbook
        columns, scale = (_MESSAGE, _MESSAGE_SCALE) if which == 0 else (self.book_cols, self.book_scale)
        line = _K.P_MLINE if which == 0 else _K.P_BLINE
        rows = parse_general(src, rest[:end].tobytes(), columns, scale, int(self.pos[line]))
        self.pos[line] += len(rows)
        # the block from here on starts after the lines just read
        left = buf[start + end:]
        self.pos[slot] = 0
        self.pos[_K.P_MPRE if which == 0 else _K.P_BPRE] = 0
        if which == 0:
            self.messages.start += start + end
        else:
            self.books.start += start + end
        return left, rows

    def _books_ended(self, line: int) -> None:
        """The orderbook file ended at `line` while the message file has a row for it: an error."""
        book_rows = line - 1
        msg_left = self.mpre.shape[0] - int(self.pos[_K.P_MPRE])
        self.messages.start += int(self.pos[_K.P_MSG])
        msg_rows = book_rows + 1 + msg_left + self.messages.count_lines()
        raise DataError(self.files.orderbook.label, book_rows + 1, "orderbook file ends early: it has "
                        f"{book_rows} rows, the message file {msg_rows}; expected equal row counts")

    def _check_books_end(self, line: int) -> None:
        """The message file ended before `line`: the orderbook file must end there too."""
        msg_rows = line - 1
        extra = self.bpre.shape[0] - int(self.pos[_K.P_BPRE])
        self.books.start += int(self.pos[_K.P_BOOK])
        extra += self.books.count_lines()
        if extra:
            raise DataError(self.files.message.label, msg_rows + 1, f"message file ends early: it has {msg_rows} "
                            f"rows, the orderbook file {msg_rows + extra}; expected equal row counts")

    def _batch(self, cols: _K.Columns, n: int, bad: np.ndarray, first_line: int) -> pa.RecordBatch:
        for k in range(len(_K.CHECKS)):
            if bad[k] >= 0:
                which, what = _K.CHECKS[k]
                src = self.files.message if which == "message" else self.files.orderbook
                raise DataError(src.label, first_line + int(bad[k]), what)
        self.clock.localize(cols.ts[:n])
        b = cols.buffers
        f64 = pa.float64()

        def arr(name: str, typ: pa.DataType, valid: np.ndarray | None = None) -> pa.Array:
            bits = None if valid is None or valid.all() else pa.py_buffer(np.packbits(valid, bitorder="little"))
            return pa.Array.from_buffers(typ, n, [bits, b[name]])

        ok = cols.ok[:, :n]
        columns = {
            "ts": arr("ts", pa.int64()), "venue": VENUE, "symbol": self.files.name.ticker,
            "kind": cols.kind[:n], "side": arr("side", pa.int8()), "price": arr("price", f64),
            "size": arr("size", f64), "order_id": arr("order_id", pa.int64(), ok[0]),
            "bid_px": arr("bid_px", f64, ok[1]), "bid_sz": arr("bid_sz", f64),
            "ask_px": arr("ask_px", f64, ok[2]), "ask_sz": arr("ask_sz", f64),
        }
        if self.level > 1:
            for side, name in enumerate(("bid", "ask")):
                offsets = pa.Array.from_buffers(pa.int32(), n + 1, [None, b[f"{name}_offsets"]])
                used = int(cols.offsets[side][n])
                for what in ("pxs", "szs"):
                    values = pa.Array.from_buffers(f64, used, [None, b[f"{name}_{what}"]])
                    columns[f"{name}_{what}"] = pa.ListArray.from_arrays(offsets, values)
        batch = event_batch(n, columns)
        self.validator.check(batch, np.arange(first_line, first_line + n))
        return batch
