"""The LOBSTER kernel (parse + convert in one pass) agrees with its plain twin (the same source run by
the interpreter); the fast line grammar declines what it does not parse, and declined lines are read
as pyarrow reads them, with errors naming the line."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from numba import njit

import mmray.data.lobster as lobster
from mmray.data import EVENT_SCHEMA, DataError
from mmray.data._csv import LineBlocks, prefetch
from mmray.data._lobster import lobster_pass, lobster_pass_plain
from mmray.data._parse import parse_line

FIX = Path(__file__).parent / "fixtures" / "data" / "lobster"
AAPL = "AAPL_2012-06-21_34200000_57600000_{}_1.csv"
AMZN_ZIP = FIX / "LOBSTER_SampleFile_AMZN_2012-06-21_5.zip"

# the plain twin's int64 overflows (silently wrapping when compiled) on lines with too many digits,
# which both decline
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")

LINES = [
    b"1,2\n-3,40\n", b"1.5,2\n", b"1,2\n3\n", b"1,2\n\n", b"1,-\n", b"0.000000001,5\n", b"007,-0\n", b"1,2,3\n",
    b"5.,1\n", b"-.5,1\n", b"1e3,1\n", b"99999999999999999999,1\n", b"12345.123456789,1\n", b"123456789,1\n",
    b"1234567890,1\n", b"1,2\r\n", b"1,2\n1.2.3,4\n", b"1,2.\n", b"1,--2\n", b"1,2-\n", b"1,999999999999999999\n",
    b"1,9999999999999999999\n", b"+1,2\n", b" 1,2\n", b"1.1234567891,2\n", b"nan,1\n", b"1,2\n3,4\nx,5\n6,7\n",
    b"/,1\n", b":,1\n",
]


def _lines(parse, text: bytes, scales: list[int]) -> tuple[list[list[int]], int]:
    """Parse lines until one is declined: the rows and the offset where parsing stopped."""
    buf = np.frombuffer(text, np.uint8)
    out, rows, i = np.zeros(len(scales), np.int64), [], 0
    while i < buf.size:
        end = parse(buf, i, len(scales), np.array(scales, np.int64), out)
        if end < 0:
            break
        rows.append(out.tolist())
        i = end
    return rows, i


_parse_compiled = njit(lambda buf, i, n, scales, out: parse_line(buf, i, n, scales, out))


@pytest.mark.parametrize("text", LINES)
def test_line_grammar_compiled_equals_plain(text):
    assert _lines(_parse_compiled, text, [9, 0]) == _lines(parse_line, text, [9, 0])


def test_line_grammar_values():
    assert _lines(parse_line, b"34200.004241176,1,16113575,18,5853300,1\n", [9, 0, 0, 0, 0, 0])[0] == [
        [34200004241176, 1, 16113575, 18, 5853300, 1]]
    assert _lines(parse_line, b"1,2\n-3,40\n007,-0\n0.000000001,5\n", [9, 0]) == (
        [[1_000_000_000, 2], [-3_000_000_000, 40], [7_000_000_000, 0], [1, 5]], 31)
    for declined in (b"1.5,2\n", b"1,2\r\n", b"1e3,1\n", b"+1,2\n", b"1,2,3\n", b"\n", b"99999999999999999999,1\n",
                     b"1.1234567891,2\n"):
        assert _lines(parse_line, declined, [9, 0] if declined != b"1.5,2\n" else [0, 0]) == ([], 0)


def _read(monkeypatch, kernel, path, **kw) -> pa.Table:
    monkeypatch.setattr(lobster, "_PASS", kernel)
    return pa.Table.from_batches(list(lobster.read_lobster(path, **kw)), schema=EVENT_SCHEMA)


def _pair(tmp_path: Path, msg: bytes, book: bytes, name: str = AAPL) -> Path:
    (tmp_path / name.format("message")).write_bytes(msg)
    (tmp_path / name.format("orderbook")).write_bytes(book)
    return tmp_path / name.format("message")


@pytest.mark.parametrize("kw", [{}, {"block_size": 97, "batch_rows": 7}])
def test_lobster_kernel_equals_plain_twin(monkeypatch, tmp_path, kw):
    for path in (FIX / AAPL.format("message"), AMZN_ZIP):
        compiled = _read(monkeypatch, lobster_pass, path, **kw)
        plain = _read(monkeypatch, lobster_pass_plain, path, **kw)
        assert compiled.equals(plain) and compiled.num_rows == 300
    # halts, empty levels (level 5: shorter lists) and declined lines, both kernels
    with zipfile.ZipFile(AMZN_ZIP) as zf:
        msg = zf.read("AMZN_2012-06-21_34200000_57600000_message_5.csv").splitlines()[:50]
        book = zf.read("AMZN_2012-06-21_34200000_57600000_orderbook_5.csv").splitlines()[:50]
    msg[10], book[10] = msg[9].split(b",")[0] + b",7,0,0,-1,-1", book[9]
    book[20] = b",".join([*book[20].split(b",")[:16], b"9999999999", b"0", b"-9999999999", b"0"])
    msg[30] = b"+" + msg[30]  # declined: read by pyarrow
    book[31] += b"\r"
    path = _pair(tmp_path, b"\n".join(msg) + b"\n", b"\n".join(book) + b"\n",
                 "AMZN_2012-06-21_34200000_57600000_{}_5.csv")
    compiled = _read(monkeypatch, lobster_pass, path, block_size=256, batch_rows=16)
    assert compiled.equals(_read(monkeypatch, lobster_pass_plain, path, block_size=256, batch_rows=16))
    assert compiled["kind"][10].as_py() == "halt" and compiled["price"][10].as_py() == -1.0
    assert len(compiled["ask_pxs"][20].as_py()) == 4 and len(compiled["bid_pxs"][20].as_py()) == 4
    clean = _read(monkeypatch, lobster_pass, AMZN_ZIP).slice(30, 2)
    assert compiled.slice(30, 2).equals(clean)


@pytest.mark.parametrize("kernel", [lobster_pass, lobster_pass_plain])
@pytest.mark.parametrize(("row", "file", "edit", "what"), [
    (7, "message", lambda line: line.rsplit(b",", 1)[0] + b",0", "direction"),
    (12, "orderbook", lambda line: b"5859400,-1,5853300,18", "negative size in the book"),
    (20, "message", lambda line: b",".join([line.split(b",")[0], b"9", *line.split(b",")[2:]]), "unknown type"),
])
def test_kernel_errors_name_file_and_line(monkeypatch, tmp_path, kernel, row, file, edit, what):
    lines = {f: (FIX / AAPL.format(f)).read_bytes().splitlines()[:40] for f in ("message", "orderbook")}
    lines[file][row] = edit(lines[file][row])
    path = _pair(tmp_path, *(b"\n".join(lines[f]) + b"\n" for f in ("message", "orderbook")))
    with pytest.raises(DataError, match=what) as err:
        _read(monkeypatch, kernel, path, batch_rows=8, block_size=64)
    assert err.value.line == row + 1 and err.value.path.endswith(AAPL.format(file))


def test_declined_lines_read_as_pyarrow_reads_them(tmp_path):
    msg = (FIX / AAPL.format("message")).read_bytes()
    book = (FIX / AAPL.format("orderbook")).read_bytes()
    clean = pa.Table.from_batches(list(lobster.read_lobster(_pair(tmp_path, msg, book))))
    lines = msg.splitlines()
    lines[0] = b"34200.0042411760000,1,16113575,18,5853300,1"    # more decimals than ns
    lines[1] = b"3.4200025551909e4,1,16120456,18,5859100,-1"      # an exponent
    lines[2] = b"+34200.201743336,3,16120456,18,5859100,-1"       # a plus sign
    edited = pa.Table.from_batches(list(lobster.read_lobster(_pair(tmp_path, b"\n".join(lines) + b"\n", book))))
    assert edited.equals(clean)
    # every line declined (CRLF): after 64 in a batch the rest of a block goes to pyarrow at once
    crlf = lobster.read_lobster(_pair(tmp_path, msg.replace(b"\n", b"\r\n"), book.replace(b"\n", b"\r\n")),
                                batch_rows=200)
    assert pa.Table.from_batches(list(crlf)).equals(clean)
    # a last line without its newline is still a row
    no_newline = lobster.read_lobster(_pair(tmp_path, msg[:-1], book[:-1]), block_size=100)
    assert pa.Table.from_batches(list(no_newline)).equals(clean)


@pytest.mark.parametrize(("edit", "line", "what"), [
    (lambda m: m.__setitem__(2, b"34200.2,3,x,18,5859100,-1"), 3, "column 3: expected a number, got 'x'"),
    (lambda m: m.__setitem__(4, b"nan,3,1,18,5859100,-1"), 5, "column 1 \\(time\\): expected a finite number"),
    (lambda m: m.__setitem__(6, b""), 7, "empty line"),
])
def test_declined_line_errors_name_the_line(tmp_path, edit, line, what):
    msg = (FIX / AAPL.format("message")).read_bytes().splitlines()
    edit(msg)
    path = _pair(tmp_path, b"\n".join(msg) + b"\n", (FIX / AAPL.format("orderbook")).read_bytes())
    with pytest.raises(DataError, match=what) as err:
        list(lobster.read_lobster(path, block_size=64))
    assert err.value.line == line


def test_line_blocks_grow_for_long_lines():
    text = b"a" * 50 + b"\n" + b"b\n" + b"c" * 300 + b"\nd"
    blocks = LineBlocks(io.BytesIO(text), 16)
    got, block = [], blocks.next(0)
    while block.size:
        got.append(block.tobytes())
        block = blocks.next(block.size)
    assert b"".join(got) == text + b"\n" and all(g.endswith(b"\n") for g in got)


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
