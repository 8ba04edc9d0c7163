"""Streaming CSV reading shared by the loaders: pyarrow's streaming reader, clear errors.

pyarrow's own conversion errors do not say which line is wrong; when one happens, the file is
scanned again in plain Python up to the first bad line, so the :class:`DataError` names it.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO

import pyarrow as pa
import pyarrow.csv as pacsv

from mmray.data.errors import DataError

__all__ = ["Source", "open_source", "stream_csv"]


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
    convert = pacsv.ConvertOptions(column_types=types, null_values=[], strings_can_be_null=False,
                                   true_values=["true", "True"], false_values=["false", "False"])
    with open_source(src) as fh:
        try:
            parse = pacsv.ParseOptions(ignore_empty_lines=False)  # keeps row k on line k (+skip_rows)
            reader = pacsv.open_csv(fh, read_options=read, parse_options=parse, convert_options=convert)
            for batch in reader:
                if batch.num_rows:
                    yield batch
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise _locate(src, len(columns), skip_rows, check_line, exc) from None


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
