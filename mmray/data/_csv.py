"""Streaming CSV reading shared by the loaders: pyarrow's streaming reader, clear errors.

pyarrow's own conversion errors do not say which line is wrong; when one happens, the file is
scanned again in plain Python up to the first bad line, so the :class:`DataError` names it.

All-numeric headerless files (LOBSTER) have a faster path (:mod:`mmray.data._lobster`): blocks of
whole lines (:class:`LineBlocks`) are parsed by a compiled kernel; a line it declines goes
through pyarrow's reader alone (:func:`parse_general`), with the same errors.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import queue
import threading
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from mmray.data.errors import DataError

__all__ = ["LineBlocks", "Source", "open_source", "parse_general", "prefetch", "stream_csv"]

T = TypeVar("T")


@dataclass(frozen=True)
class Source:
    """A readable file: a plain path, a ``.gz`` file, or a member of a zip archive.

    ``label`` is what errors name: the path, or ``archive.zip!member.csv``.
    """

    path: str
    member: str | None = None

    @property
    def label(self) -> str:
        return self.path if self.member is None else f"{self.path}!{self.member}"

    @property
    def name(self) -> str:
        """Base name of the file (of the member for a zip member)."""
        return os.path.basename(self.member or self.path)

    def size(self) -> int | None:
        """Bytes of the file's content (a zip member's uncompressed size); ``None`` for a ``.gz``
        file (known only once read) or one that cannot be looked at (opening it reports why)."""
        try:
            if self.member is not None:
                with zipfile.ZipFile(self.path) as zf:
                    return zf.getinfo(self.member).file_size
            return None if self.path.endswith(".gz") else os.path.getsize(self.path)
        except (OSError, zipfile.BadZipFile, KeyError):
            return None


def open_source(src: Source) -> IO[bytes]:
    """Open `src` for binary streaming reading (zip members and gzip decompressed on the fly)."""
    try:
        if src.member is not None:
            archive = zipfile.ZipFile(src.path)
            return archive.open(src.member)
        if src.path.endswith(".gz"):
            return gzip.open(src.path, "rb")
        return open(src.path, "rb")
    except (OSError, zipfile.BadZipFile, KeyError) as exc:
        raise DataError(src.label, None, f"cannot open: {exc}") from exc


def stream_csv(src: Source, columns: Sequence[str], types: dict[str, pa.DataType], *,
               skip_rows: int = 0, block_size: int = 1 << 22,
               check_line: Callable[[list[str]], str | None] | None = None) -> Iterator[pa.RecordBatch]:
    """Stream a headerless CSV as record batches with exact column count and types.

    Parameters
    ----------
    src : Source
        The file.
    columns : sequence of str
        Names of the columns, in file order; a row with another count is an error.
    types : dict
        Column → Arrow type; empty fields and ``NA``-like words are errors, not nulls.
    skip_rows : int
        Lines to skip first (a header).
    block_size : int
        Bytes per parsed block (memory bound, about two blocks are alive at a time).
    check_line : callable or None
        Given a row's fields, a message saying what is wrong with it (or ``None``); used only to
        name the line after pyarrow refused the file. The default checks the count and that
        every field parses as a number.
    """
    read = pacsv.ReadOptions(column_names=list(columns), block_size=block_size, skip_rows=skip_rows)
    with open_source(src) as fh:
        try:
            reader = pacsv.open_csv(fh, read_options=read, parse_options=_PARSE, convert_options=_convert(types))
            for batch in reader:
                if batch.num_rows:
                    yield batch
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise _locate(src, len(columns), skip_rows, check_line, exc) from None


_PARSE = pacsv.ParseOptions(ignore_empty_lines=False)  # keeps row k on line k (+skip_rows)


def _convert(types: dict[str, pa.DataType]) -> pacsv.ConvertOptions:
    return pacsv.ConvertOptions(column_types=types, null_values=[], strings_can_be_null=False,
                                true_values=["true", "True"], false_values=["false", "False"])


class LineBlocks:
    """Blocks of whole lines of one file, read into one reused buffer (no allocation per block).

    ``data()`` is the current block: a uint8 view that ends with a newline (a last line without
    one gets it), or is empty at the end of the file. ``next(used)`` drops the first `used`
    bytes of the block and reads on, keeping a partial last line for the next block.

    Parameters
    ----------
    fh : binary file
        The open file (plain, gzip or zip member).
    block_size : int
        Bytes read at a time; the buffer grows only for a line longer than that.
    """

    def __init__(self, fh: IO[bytes], block_size: int) -> None:
        self.fh = fh
        self.buf = np.empty(block_size + 1, np.uint8)  # + 1: the newline a last line may need
        self.start = self.end = self.filled = 0  # block = buf[start:end], read so far: buf[:filled]
        self.eof = False

    def data(self) -> np.ndarray:
        """The current block (whole lines)."""
        return self.buf[self.start:self.end]

    def next(self, used: int) -> np.ndarray:
        """Drop `used` bytes of the current block and return the next block (empty at the end)."""
        self.start += used
        if self.start < self.end:
            return self.data()
        rest = self.filled - self.end  # a partial line after the block
        self.buf[:rest] = self.buf[self.end:self.filled]
        self.start = self.end = 0
        self.filled = rest
        while not self.eof:
            room = len(self.buf) - 1 - self.filled
            if room < len(self.buf) // 4:  # a line longer than the block: grow
                grown = np.empty(2 * len(self.buf), np.uint8)
                grown[:self.filled] = self.buf[:self.filled]
                self.buf = grown
                continue
            got = self.fh.readinto(memoryview(self.buf)[self.filled:self.filled + room])
            if not got:
                self.eof = True
                break
            self.filled += got
            last = _last_newline(self.buf, self.filled - got, self.filled)
            if last >= 0:
                self.end = last + 1
                return self.data()
        if self.filled and self.buf[self.filled - 1] != 10:
            self.buf[self.filled] = 10  # a last line without its newline is still a row
            self.filled += 1
        self.end = self.filled
        return self.data()

    def count_lines(self) -> int:
        """Lines left from the current block on (reads the rest of the file)."""
        n = 0
        block = self.data()
        while block.size:
            n += int(np.count_nonzero(block == 10))
            block = self.next(block.size)
        return n


def _last_newline(buf: np.ndarray, start: int, stop: int) -> int:
    """Offset of the last newline in ``buf[start:stop]``, or -1 (searched from the end in
    growing windows: lines are short, so the first window almost always has one)."""
    window = 4096
    hi = stop
    while hi > start:
        lo = max(start, hi - window)
        hits = np.flatnonzero(buf[lo:hi] == 10)
        if hits.size:
            return lo + int(hits[-1])
        hi, window = lo, 4 * window
    return -1


def parse_general(src: Source, data: bytes, columns: Sequence[str], scale: np.ndarray, line: int) -> np.ndarray:
    """Lines of a headerless numeric CSV read by pyarrow as :func:`stream_csv` reads them, as an
    int64 matrix with ``scale[j]`` decimals kept in column ``j`` (for lines a fast kernel declined).

    `line` is the 1-based line number of the first line (errors name the bad line).
    """
    types = {c: pa.float64() if s else pa.int64() for c, s in zip(columns, scale, strict=True)}
    try:
        table = pacsv.read_csv(pa.py_buffer(data), read_options=pacsv.ReadOptions(column_names=list(columns)),
                               parse_options=_PARSE, convert_options=_convert(types))
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise _locate(src, len(columns), 0, None, exc) from None
    out = np.empty((table.num_rows, len(columns)), dtype=np.int64)
    for j, (name, s) in enumerate(zip(columns, scale, strict=True)):
        col = table.column(j).to_numpy()
        if s:
            col = np.rint(col * 10.0 ** int(s))
            bad = np.flatnonzero(~(np.abs(col) < 2.0**63))  # NaN, inf, or too large for int64
            if bad.size:
                raise DataError(src.label, line + int(bad[0]), f"column {j + 1} ({name}): expected a finite "
                                f"number, got {table.column(j)[int(bad[0])].as_py()}")
        out[:, j] = col
    return out


def _default_check(ncols: int) -> Callable[[list[str]], str | None]:
    def check(fields: list[str]) -> str | None:
        if len(fields) != ncols:
            return f"expected {ncols} comma-separated columns, got {len(fields)}"
        for i, f in enumerate(fields, 1):
            try:
                float(f)
            except ValueError:
                if f not in ("true", "false", "True", "False"):
                    return f"column {i}: expected a number, got {f!r}"
        return None
    return check


def _locate(src: Source, ncols: int, skip_rows: int, check_line: Callable[[list[str]], str | None] | None,
            exc: Exception) -> DataError:
    check = check_line or _default_check(ncols)
    with open_source(src) as fh, contextlib.closing(io.TextIOWrapper(fh, encoding="utf-8", errors="replace")) as text:
        for lineno, line in enumerate(text, 1):
            if lineno <= skip_rows:
                continue
            stripped = line.rstrip("\r\n")
            if not stripped:
                return DataError(src.label, lineno, "empty line; expected a CSV row")
            problem = check(stripped.split(","))
            if problem:
                return DataError(src.label, lineno, problem)
    return DataError(src.label, None, f"unreadable CSV: {exc}")


def prefetch(items: Iterator[T], depth: int = 1) -> Iterator[T]:
    """Run `items` in a background thread, at most `depth` items ahead of the consumer.

    Worth it when producing an item releases the GIL (file reads, the nogil parse kernel): the
    producer then runs on another core. Exceptions are re-raised in the consumer, in order;
    closing the returned generator early stops the producer.
    """
    handoff: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                handoff.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((done, None))
        except BaseException as exc:  # handed to the consumer, re-raised there
            put((done, exc))

    worker = threading.Thread(target=produce, name="mmray-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item, exc = handoff.get()
            if exc is not None:
                raise exc
            if item is done:
                return
            yield item
    finally:
        stop.set()
        worker.join()
