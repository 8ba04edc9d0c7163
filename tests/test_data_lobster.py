"""LOBSTER loader: the samples (sliced into fixtures) and bad inputs derived from them."""

from __future__ import annotations

import datetime as dt
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from mmray.data import EVENT_SCHEMA, DataError
from mmray.data.lobster import find_pairs, parse_name, read_lobster

FIX = Path(__file__).parent / "fixtures" / "data" / "lobster"
AAPL = "AAPL_2012-06-21_34200000_57600000_{}_1.csv"
AMZN_ZIP = FIX / "LOBSTER_SampleFile_AMZN_2012-06-21_5.zip"


def _read(path) -> pa.Table:
    return pa.Table.from_batches(list(read_lobster(path)), schema=EVENT_SCHEMA)


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def _pair(tmp_path: Path, msg: list[str], book: list[str], name: str = AAPL) -> Path:
    (tmp_path / name.format("message")).write_text("\n".join(msg) + "\n")
    (tmp_path / name.format("orderbook")).write_text("\n".join(book) + "\n")
    return tmp_path / name.format("message")


def test_name_parsing():
    n = parse_name(AAPL.format("message"))
    assert (n.ticker, n.date, n.start_ms, n.end_ms, n.level, n.what) == (
        "AAPL", dt.date(2012, 6, 21), 34_200_000, 57_600_000, 1, "message")
    with pytest.raises(DataError, match="not a LOBSTER file name"):
        parse_name("AAPL_message.csv")


def test_level1_matches_orderbook_and_messages():
    t = _read(FIX / AAPL.format("message"))
    msg = np.loadtxt(FIX / AAPL.format("message"), delimiter=",")
    book = np.loadtxt(FIX / AAPL.format("orderbook"), delimiter=",")
    assert t.num_rows == len(msg) == 300  # wc -l of the slice
    np.testing.assert_array_equal(t["ask_px"].to_numpy(), book[:, 0] / 1e4)
    np.testing.assert_array_equal(t["ask_sz"].to_numpy(), book[:, 1])
    np.testing.assert_array_equal(t["bid_px"].to_numpy(), book[:, 2] / 1e4)
    np.testing.assert_array_equal(t["bid_sz"].to_numpy(), book[:, 3])
    # 34200.004241176 s after New York midnight on 2012-06-21 (EDT, UTC-4)
    assert t["ts"][0].as_py() == int(dt.datetime(2012, 6, 21, 13, 30, tzinfo=dt.UTC).timestamp()) * 10**9 + 4_241_176
    kinds = np.array(["add", "cancel", "delete", "execute", "execute_hidden"])[msg[:, 1].astype(int) - 1]
    assert t["kind"].to_pylist() == kinds.tolist()
    np.testing.assert_array_equal(t["price"].to_numpy(), msg[:, 4] / 1e4)
    exe = msg[:, 1] >= 4  # executions carry the aggressor: opposite of the resting order's side
    np.testing.assert_array_equal(t["side"].to_numpy(), np.where(exe, -msg[:, 5], msg[:, 5]))
    oid = t["order_id"].to_numpy(zero_copy_only=False)
    np.testing.assert_array_equal(np.nan_to_num(oid), msg[:, 2])
    assert t["bid_pxs"].null_count == t.num_rows  # level 1: no deeper levels


def test_level5_zip_lists_match_orderbook(tmp_path):
    t = _read(AMZN_ZIP)
    with zipfile.ZipFile(AMZN_ZIP) as zf:
        zf.extractall(tmp_path)
    book = np.loadtxt(tmp_path / "AMZN_2012-06-21_34200000_57600000_orderbook_5.csv", delimiter=",").reshape(-1, 5, 4)
    assert t.num_rows == len(book)
    np.testing.assert_array_equal(np.array(t["ask_pxs"].to_pylist()), book[:, :, 0] / 1e4)
    np.testing.assert_array_equal(np.array(t["bid_szs"].to_pylist()), book[:, :, 3])
    np.testing.assert_array_equal(t["bid_px"].to_numpy(), book[:, 0, 2] / 1e4)
    # the same pair unzipped, in small blocks (many batches, lockstep slicing) gives the same table
    pair = find_pairs(sorted(tmp_path.glob("AMZN*.csv")))
    small = pa.Table.from_batches(list(read_lobster(pair[0], block_size=2048)))
    assert small.equals(t)


def test_halts_and_empty_levels(tmp_path):
    msg = _lines(FIX / AAPL.format("message"))[:3]
    book = _lines(FIX / AAPL.format("orderbook"))[:3]
    msg += ["36023,7,0,0,-1,-1", "36323,7,0,0,0,-1", "36723,7,0,0,1,-1", "36800,3,16113575,18,5853300,1"]
    book += [book[-1]] * 3 + ["5859100,18,-9999999999,0"]  # bid side emptied
    t = _read(_pair(tmp_path, msg, book))
    assert t["kind"].to_pylist()[3:6] == ["halt"] * 3
    assert t["price"].to_pylist()[3:6] == [-1.0, 0.0, 1.0] and t["side"].to_pylist()[3:6] == [0, 0, 0]
    assert t["bid_px"][6].as_py() is None and t["ask_px"][6].as_py() == 585.91


def _bad(tmp_path, edit_msg=None, edit_book=None, n=40):
    msg = _lines(FIX / AAPL.format("message"))[:n]
    book = _lines(FIX / AAPL.format("orderbook"))[:n]
    if edit_msg:
        edit_msg(msg)
    if edit_book:
        edit_book(book)
    return _pair(tmp_path, msg, book)


def _set(rows, i, col, value):
    fields = rows[i].split(",")
    fields[col] = value
    rows[i] = ",".join(fields)


@pytest.mark.parametrize(("edit_msg", "edit_book", "file", "line", "what"), [
    (lambda m: m.__setitem__(16, m[16].rsplit(",", 1)[0]), None, "message", 17,
     "expected 6 comma-separated columns, got 5"),
    (lambda m: _set(m, 9, 3, "abc"), None, "message", 10, "column 4: expected a number, got 'abc'"),
    (lambda m: _set(m, 9, 0, "nan"), None, "message", 10, "column 1 \\(time\\)"),
    (lambda m: _set(m, 4, 3, "-5"), None, "message", 5, "negative size"),
    (lambda m: _set(m, 4, 1, "8"), None, "message", 5, "unknown type"),
    (lambda m: _set(m, 4, 5, "0"), None, "message", 5, "direction"),
    (lambda m: m.__setitem__(4, "36023,7,0,0,2,-1"), None, "message", 5, "halt"),
    (lambda m: _set(m, 20, 0, "34200.0"), None, "message", 21, "time going backwards"),
    (None, lambda b: _set(b, 7, 2, "9999999"), "orderbook", 8, "crossed book"),
    (None, lambda b: _set(b, 7, 1, "-3"), "orderbook", 8, "negative size in the book"),
    (None, lambda b: b.__setitem__(11, ""), "orderbook", 12, "empty line"),
    (None, lambda b: b.pop(), "orderbook", 40, "orderbook file ends early: it has 39 rows, the message file 40"),
    (lambda m: m.pop(), None, "message", 40, "message file ends early: it has 39 rows, the orderbook file 40"),
])
def test_bad_input_names_file_and_line(tmp_path, edit_msg, edit_book, file, line, what):
    path = _bad(tmp_path, edit_msg, edit_book)
    with pytest.raises(DataError, match=what) as err:
        _read(path)
    assert err.value.path.endswith(AAPL.format(file)) and err.value.line == line
    assert f"{AAPL.format(file)}:{line}: " in str(err.value)


def test_pairing_errors(tmp_path):
    shutil.copy(FIX / AAPL.format("message"), tmp_path)
    with pytest.raises(DataError, match="no matching orderbook file"):
        find_pairs([tmp_path / AAPL.format("message")])
    bad = tmp_path / "nothing.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("readme.txt", "x")
    with pytest.raises(DataError, match="no LOBSTER"):
        find_pairs([bad])


def test_winter_date_is_utc_minus_5(tmp_path):
    name = "AAPL_2012-12-21_34200000_57600000_{}_1.csv"
    path = _pair(tmp_path, ["34200.5,1,1,1,5853300,1"], ["5859100,18,5853300,18"], name)
    utc = dt.datetime(2012, 12, 21, 14, 30, tzinfo=dt.UTC)
    assert _read(path)["ts"][0].as_py() == int(utc.timestamp()) * 10**9 + 500_000_000


def test_dst_change_day_converts_each_row(tmp_path):
    name = "AAPL_2012-03-11_0_86400000_{}_1.csv"  # clocks go from 02:00 EST to 03:00 EDT
    path = _pair(tmp_path, ["3600.5,1,1,1,5853300,1", "10800.25,1,1,1,5853300,1"], ["5859100,18,5853300,18"] * 2,
                 name)
    day = dt.datetime(2012, 3, 11, tzinfo=dt.UTC)
    expected = [(day + dt.timedelta(hours=6, seconds=0.5)), (day + dt.timedelta(hours=7, seconds=0.25))]
    assert _read(path)["ts"].to_pylist() == [int(t.timestamp() * 1e3) * 10**6 for t in expected]
