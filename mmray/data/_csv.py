"""Streaming CSV reading shared by the loaders: pyarrow's streaming reader, clear errors.

pyarrow's own conversion errors do not say which line is wrong; when one happens, the file is
scanned again in plain Python up to the first bad line, so the :class:`DataError` names it.

All-numeric headerless files (LOBSTER) have a faster path, :func:`stream_numeric`: blocks of
whole lines are parsed by a compiled kernel (:mod:`mmray.data._parse`) into int64 matrices;
a line the kernel declines goes through pyarrow's reader alone, with the same errors.
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

from mmray.data._parse import parse_block
from mmray.data.errors import DataError

__all__ = ["Source", "open_source", "prefetch", "stream_csv", "stream_numeric"]

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
_DECLINED_PER_BLOCK = 64  # lines the kernel declines before the rest of a block goes to pyarrow


def _convert(types: dict[str, pa.DataType]) -> pacsv.ConvertOptions:
    return pacsv.ConvertOptions(column_types=types, null_values=[], strings_can_be_null=False,
                                true_values=["true", "True"], false_values=["false", "False"])


def stream_numeric(src: Source, columns: Sequence[str], scales: Sequence[int], *,
                   block_size: int = 1 << 23) -> Iterator[np.ndarray]:
    """Stream a headerless all-numeric CSV as int64 matrices, one row per line, in file order.

    Column ``j`` holds fixed-point numbers with ``scales[j]`` decimals (0: integers), stored
    as ``round(value * 10**scales[j])``. Lines in the plain layout (``-?digits[.digits]``,
    ``\\n``-terminated) are parsed by :func:`mmray.data._parse.parse_block`; any other line is
    read by pyarrow's CSV reader on its own (so exponents, ``\\r\\n`` or more decimals than
    the scale still read as :func:`stream_csv` reads them), and a line neither accepts is a
    :class:`DataError` naming it, worded as :func:`stream_csv` words it. A non-finite value in a
    scaled column is an error naming the column.

    Parameters
    ----------
    src : Source
        The file.
    columns : sequence of str
        Column names (for errors); a row with another count is an error.
    scales : sequence of int
        Decimals kept per column.
    block_size : int
        Bytes read per block: memory is bounded by a few blocks and their matrices.
    """
    scale = np.asarray(scales, dtype=np.int64)
    line = 1  # 1-based line number of the next block's first line
    carry = b""
    with open_source(src) as fh:
        while True:
            chunk = fh.read(block_size)
            data = carry + chunk if carry else chunk
            if chunk:
                cut = data.rfind(b"\n") + 1
                data, carry = data[:cut], data[cut:]
            elif data and not data.endswith(b"\n"):
                data += b"\n"  # a last line without its newline is still a row
            if data:
                rows = _parse_lines(src, data, columns, scale, line)
                line += len(rows)
                yield rows
            if not chunk:
                return


def _parse_lines(src: Source, data: bytes, columns: Sequence[str], scale: np.ndarray, line: int) -> np.ndarray:
    buf = np.frombuffer(data, dtype=np.uint8)
    # a row has at least two bytes per column ("0," ... "0\n"): a bound that is cheaper than
    # counting newlines; np.empty only commits the pages the rows are written to
    out = np.empty((len(data) // (2 * len(columns)) + 1, len(columns)), dtype=np.int64)
    row = pos = declined = 0
    while pos < len(data):
        done, stop = parse_block(buf[pos:], len(columns), scale, out[row:])
        row, pos = row + done, pos + stop
        if pos == len(data):
            break
        declined += 1  # the line at `pos`, or the rest of the block after many declined lines
        end = len(data) if declined > _DECLINED_PER_BLOCK else data.index(b"\n", pos) + 1
        general = _general(src, data[pos:end], columns, scale, line + row)
        out[row:row + len(general)] = general
        row, pos = row + len(general), end
    return out[:row]


def _general(src: Source, data: bytes, columns: Sequence[str], scale: np.ndarray, line: int) -> np.ndarray:
    """Lines the kernel declined, read by pyarrow as :func:`stream_csv` reads them."""
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
