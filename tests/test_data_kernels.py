"""The data loaders' numba kernels agree with their plain-numpy twins; the fast CSV path reads
what pyarrow reads (declined lines included) and words errors the same way."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from mmray.data import DataError
from mmray.data._csv import Source, prefetch, stream_numeric
from mmray.data._levels import book_columns, book_columns_numpy
from mmray.data._parse import parse_block, parse_block_numpy
from mmray.data.lobster import DUMMY

FIX = Path(__file__).parent / "fixtures" / "data" / "lobster"
AAPL = "AAPL_2012-06-21_34200000_57600000_{}_1.csv"
AMZN_ZIP = FIX / "LOBSTER_SampleFile_AMZN_2012-06-21_5.zip"
AMZN_BOOK = "AMZN_2012-06-21_34200000_57600000_orderbook_5.csv"

LINES = [
    b"1,2\n-3,40\n", b"1.5,2\n", b"1,2\n3\n", b"1,2\n\n", b"1,-\n", b"0.000000001,5\n", b"007,-0\n", b"1,2,3\n",
    b"5.,1\n", b"-.5,1\n", b"1e3,1\n", b"99999999999999999999,1\n", b"12345.123456789,1\n", b"123456789,1\n",
    b"1234567890,1\n", b"1,2\r\n", b"1,2\n1.2.3,4\n", b"1,2.\n", b"1,--2\n", b"1,2-\n", b"1,999999999999999999\n",
    b"1,9999999999999999999\n", b"+1,2\n", b" 1,2\n", b"1.1234567891,2\n", b"nan,1\n", b"1,2\n3,4\nx,5\n6,7\n",
    b"1,2\n3,4", b"",
]


def _both(text: bytes, scales: list[int]) -> tuple:
    buf = np.frombuffer(text, np.uint8)
    results = []
    for kernel in (parse_block, parse_block_numpy):
        out = np.zeros((text.count(b"\n"), len(scales)), np.int64)
        rows, stop = kernel(buf, len(scales), np.array(scales, np.int64), out)
        results.append((rows, stop, out[:rows].tolist()))
    return tuple(results)


@pytest.mark.parametrize("text", LINES)
def test_parse_kernel_equals_numpy_twin(text):
    compiled, twin = _both(text, [9, 0])
    assert compiled == twin


def test_parse_kernel_on_samples():
    for name, scales in ((AAPL.format("message"), [9, 0, 0, 0, 0, 0]), (AAPL.format("orderbook"), [0] * 4)):
        text = (FIX / name).read_bytes()
        compiled, twin = _both(text, scales)
        assert compiled == twin and compiled[0] == text.count(b"\n") == 300
    assert compiled[2][0] == [5859400, 200, 5853300, 18]
    assert _both(b"34200.004241176,1,16113575,18,5853300,1\n", [9, 0, 0, 0, 0, 0])[0][2] == [
        [34200004241176, 1, 16113575, 18, 5853300, 1]]


def _book_rows(tmp_path: Path) -> np.ndarray:
    with zipfile.ZipFile(AMZN_ZIP) as zf:
        zf.extract(AMZN_BOOK, tmp_path)
    return np.loadtxt(tmp_path / AMZN_BOOK, delimiter=",", dtype=np.int64, max_rows=400)


def _assert_book_equal(book: np.ndarray, level: int) -> None:
    a, b = book_columns(book, level, DUMMY), book_columns_numpy(book, level, DUMMY)
    for x, y in zip(a[:4], b[:4], strict=True):
        np.testing.assert_array_equal(x, y)
    offsets = a[3]
    for k in range(4):
        used = offsets[k // 2, -1]
        np.testing.assert_array_equal(a[4][k, :used], b[4][k, :used])


def test_book_kernel_equals_numpy_twin(tmp_path):
    book = _book_rows(tmp_path)
    _assert_book_equal(book, 5)
    _assert_book_equal(book[:, :4].copy(), 1)
    edited = book.copy()
    edited[10, 16:18] = (DUMMY, 0)          # last ask level empty: fine
    edited[20, 10:12] = (-DUMMY, 0)         # a bid level emptied with occupied ones below it
    edited[30, 1] = -5                      # negative size
    edited[40, 4] = edited[40, 0] - 100     # asks out of order
    edited[50, :] = (DUMMY, 0, -DUMMY, 0) * 5  # an empty book
    first_bad = book_columns(edited, 5, DUMMY)[0]
    assert first_bad.tolist() == [30, 20, 20]
    _assert_book_equal(edited, 5)


def _write(tmp_path: Path, text: bytes) -> Source:
    path = tmp_path / "x.csv"
    path.write_bytes(text)
    return Source(str(path))


def test_declined_lines_read_as_pyarrow_reads_them(tmp_path):
    lf = b"34200.1,1,2\n34200.123456789012,1,2\n+34200.2,3,2\n1e1,4,5\n"
    rows = np.concatenate(list(stream_numeric(_write(tmp_path, lf), ["t", "a", "b"], [9, 0, 0], block_size=16)))
    assert rows.tolist() == [[34200100000000, 1, 2], [34200123456789, 1, 2], [34200200000000, 3, 2],
                             [10000000000, 4, 5]]
    crlf = np.concatenate(list(stream_numeric(_write(tmp_path, lf.replace(b"\n", b"\r\n")), ["t", "a", "b"],
                                              [9, 0, 0])))
    np.testing.assert_array_equal(crlf, rows)
    last_without_newline = np.concatenate(list(stream_numeric(_write(tmp_path, lf[:-1]), ["t", "a", "b"],
                                                              [9, 0, 0], block_size=7)))
    np.testing.assert_array_equal(last_without_newline, rows)


@pytest.mark.parametrize(("text", "line", "what"), [
    (b"1,2\n3,4\n5\n", 3, "expected 2 comma-separated columns, got 1"),
    (b"1,2\n\n3,4\n", 2, "empty line"),
    (b"1,2\n3,x\n", 2, "column 2: expected a number, got 'x'"),
    (b"1,2\nnan,3\n", 2, "column 1 \\(t\\): expected a finite number"),
])
def test_fast_path_errors_name_the_line(tmp_path, text, line, what):
    with pytest.raises(DataError, match=what) as err:
        list(stream_numeric(_write(tmp_path, text), ["t", "a"], [9, 0], block_size=4))
    assert err.value.line == line


def test_prefetch_keeps_order_and_errors():
    def items():
        yield from range(5)
        raise DataError("f", 3, "boom")

    got = []
    with pytest.raises(DataError, match="boom"):
        for x in prefetch(items()):
            got.append(x)
    assert got == [0, 1, 2, 3, 4]
    early = prefetch(iter(range(100)))
    assert next(early) == 0
    early.close()  # stops the producer thread
