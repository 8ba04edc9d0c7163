"""data.binance.vision loader: sample slices, header or not, zip, and bad inputs derived from them."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from mmray.data import EVENT_SCHEMA, DataError
from mmray.data.vision import read_vision

FIX = Path(__file__).parent / "fixtures" / "data" / "vision"
AGG = FIX / "BTCUSDT-aggTrades-2026-01-01.csv"      # spot, no header, µs
TICKER = FIX / "BTCUSDT-bookTicker-2023-10-02.csv"  # USD-M, header
DEPTH_OLD = FIX / "BTCUSDT-bookDepth-2023-10-16.csv"
DEPTH_NEW = FIX / "BTCUSDT-bookDepth-2026-01-31.zip"


def _read(path, **kw) -> pa.Table:
    return pa.Table.from_batches(list(read_vision(path, **kw)), schema=EVENT_SCHEMA)


def _csv(path: Path, skip: int = 0) -> list[list[str]]:
    return [ln.split(",") for ln in path.read_text().splitlines()[skip:]]


def test_spot_aggtrades_microseconds():
    t = _read(AGG)
    rows = _csv(AGG)
    assert t.num_rows == len(rows) == 200
    assert t["ts"].to_pylist() == [int(r[5]) * 1000 for r in rows]  # µs → ns
    assert t["venue"][0].as_py() == "binance-spot" and t["symbol"][0].as_py() == "BTCUSDT"
    assert t["side"].to_pylist() == [-1 if r[6] == "True" else 1 for r in rows]
    assert t["seq"].to_pylist() == [int(r[0]) for r in rows]
    np.testing.assert_array_equal(t["price"].to_numpy(), [float(r[1]) for r in rows])


def test_bookticker_with_and_without_header(tmp_path):
    t = _read(TICKER)
    rows = _csv(TICKER, skip=1)
    assert t.num_rows == len(rows) and set(t["kind"].to_pylist()) == {"ticker"}
    assert t["ts"].to_pylist() == [int(r[6]) * 10**6 for r in rows]
    np.testing.assert_array_equal(t["ask_sz"].to_numpy(), [float(r[4]) for r in rows])
    bare = tmp_path / TICKER.name
    bare.write_text("\n".join(TICKER.read_text().splitlines()[1:]) + "\n")
    assert _read(bare).equals(t)


@pytest.mark.parametrize(("path", "bands"), [(DEPTH_OLD, 10), (DEPTH_NEW, 12)])
def test_bookdepth_layouts(path, bands):
    t = _read(path)
    assert set(t["kind"].to_pylist()) == {"depth_band"}
    ts = t["ts"].to_numpy()
    assert len(np.unique(ts)) * bands == t.num_rows
    pct = t["price"].to_numpy()
    np.testing.assert_array_equal(t["side"].to_numpy(), np.where(pct < 0, 1, -1))
    assert ts[0] % 10**9 == 0 and t["venue"][0].as_py() == "binance-usdm"


def test_trades_layouts_derived_from_aggtrades(tmp_path):
    rows = _csv(AGG)[:20]
    spot = tmp_path / "BTCUSDT-trades-2024-12-31.csv"  # spot before 2025: ms
    spot.write_text("".join(f"{r[0]},{r[1]},{r[2]},1.0,{int(r[5]) // 1000},{r[6]},True\n" for r in rows))
    t = _read(spot)
    assert t["venue"][0].as_py() == "binance-spot" and t["ts"][0].as_py() == int(rows[0][5]) // 1000 * 10**6
    cm = tmp_path / "BTCUSD_PERP-trades-2024-08-08.csv"
    cm.write_text("id,price,qty,base_qty,time,is_buyer_maker\n" + "".join(
        f"{r[0]},{r[1]},{r[2]},1.0,{int(r[5]) // 1000},{r[6].lower()}\n" for r in rows))
    t = _read(cm)
    assert t["venue"][0].as_py() == "binance-cm" and t["symbol"][0].as_py() == "BTCUSD_PERP"
    assert t["side"].to_pylist() == [-1 if r[6] == "True" else 1 for r in rows]


def _mutated(tmp_path, src: Path, line: int, fn) -> Path:
    lines = src.read_text().splitlines()
    fields = lines[line - 1].split(",")
    lines[line - 1] = ",".join(fn(fields))
    out = tmp_path / src.name
    out.write_text("\n".join(lines) + "\n")
    return out


def _set(i, v):
    def fn(fields):
        fields[i] = v
        return fields
    return fn


@pytest.mark.parametrize(("src", "line", "fn", "what"), [
    (AGG, 17, lambda f: f[:-1], "expected 8 comma-separated columns, got 7"),
    (AGG, 17, _set(1, "x1"), "column 2: expected a number, got 'x1'"),
    (AGG, 17, _set(1, "nan"), "price is NaN"),
    (AGG, 17, _set(2, "-0.5"), "negative size"),
    (AGG, 17, _set(5, "1767225600000000"), "time going backwards"),
    (TICKER, 9, _set(1, "99999.0"), "crossed book"),
    (TICKER, 1, lambda f: [*f, "extra"], "8 columns; expected 7 for bookTicker"),
])
def test_bad_input_names_file_and_line(tmp_path, src, line, fn, what):
    path = _mutated(tmp_path, src, line, fn)
    with pytest.raises(DataError, match=what) as err:
        _read(path)
    assert err.value.line == line and f"{path.name}:{line}: " in str(err.value)


def test_bad_names(tmp_path):
    other = tmp_path / "trades.csv"
    shutil.copy(AGG, other)
    with pytest.raises(DataError, match=r"not a data\.binance\.vision file name"):
        _read(other)
