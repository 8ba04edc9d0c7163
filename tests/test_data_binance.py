"""Binance capture loader: book rebuilt by the official sequence rules, checked against bookTicker."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pytest

from mmray.data import EVENT_SCHEMA, DataError
from mmray.data.binance import CaptureStats, read_capture

FIX = Path(__file__).parent / "fixtures" / "data" / "binance"
USDM = FIX / "usdm_btcusdt_20240808_head.gz"        # snapshot on line 55
USDM_2023 = FIX / "usdm_btcusdt_20230404_head.dat.gz"  # µs receive times, snapshot on line 17
SPOT = FIX / "spot_btcusdt_20240808_head.gz"        # snapshot on line 8
CM = FIX / "cm_btcusd_perp_20240808_head.gz"
SPOT_NO_SNAPSHOT = FIX / "spot_btcusdt_20230405_head.dat.gz"


def _read(files, **kw) -> tuple[pa.Table, CaptureStats]:
    stats = CaptureStats()
    batches = list(read_capture(files, stats=stats, **kw))
    return pa.Table.from_batches(batches, schema=EVENT_SCHEMA), stats


def _lines(path: Path) -> list[str]:
    with gzip.open(path, "rt") as fh:
        return fh.read().splitlines()


def _write(tmp_path: Path, lines: list[str], name: str = "cap_20240808.gz") -> Path:
    out = tmp_path / name
    with gzip.open(out, "wt") as fh:
        fh.write("\n".join(lines) + "\n")
    return out


@pytest.mark.parametrize(("path", "market"), [(USDM, "usdm"), (SPOT, "spot"), (CM, "cm"), (USDM_2023, "usdm")])
def test_book_agrees_with_bookticker(path, market):
    t, st = _read([path])
    lines = _lines(path)
    assert st.market == market and st.lines == len(lines)
    assert st.ticker_compared >= 10 and st.ticker_mismatches == 0
    assert st.rows["ticker"] == sum('@bookTicker"' in ln for ln in lines) == t["kind"].to_pylist().count("ticker")
    assert st.rows["trade"] == sum('@trade"' in ln for ln in lines)
    assert st.snapshots == 1 and st.rows["snapshot"] == 2000 and not st.gaps
    assert t.column("venue")[0].as_py() == f"binance-{market}"


def test_both_clocks_stored_as_they_are():
    t, st = _read([USDM_2023])
    first = _lines(USDM_2023)[0]
    local, payload = first.split(" ", 1)
    assert len(local) == 16 and set(st.receive_resolution.values()) == {"us"}
    assert t["ts_local"][0].as_py() == int(local) * 1000
    assert t["ts"][0].as_py() == json.loads(payload)["data"]["E"] * 10**6
    _, st24 = _read([USDM])
    assert set(st24.receive_resolution.values()) == {"ns"}
    lat = next(iter(st24.latency_ns.values()))
    assert -1.6e9 < lat["mean"] < -1.2e9  # the 2024 collector's clock runs ~1.3 s behind exchange time


def test_rows_and_top_of_book():
    t, _ = _read([SPOT])
    depth = t.filter(pa.compute.equal(t["kind"].cast(pa.string()), "depth"))
    assert depth["seq"].null_count == 0 and depth["bid_px"].null_count == 0
    last_rows = depth.filter(pa.compute.invert(pa.compute.is_null(depth["bid_pxs"])))
    assert len(last_rows) > 0
    assert all(len(x) == 10 for x in last_rows["bid_pxs"].to_pylist())
    assert last_rows["bid_pxs"].to_pylist()[0][0] == last_rows["bid_px"][0].as_py()
    trades = t.filter(pa.compute.equal(t["kind"].cast(pa.string()), "trade"))
    assert set(trades["side"].to_pylist()) <= {-1, 1}


def test_capture_continues_across_files(tmp_path):
    lines = _lines(USDM)
    a = _write(tmp_path, lines[:700], "a_20240808.gz")
    b = tmp_path / "b_20240808.txt"
    b.write_text("\n".join(lines[700:]) + "\n")  # plain text works too
    whole, st = _read([USDM])
    split, st2 = _read([a, b])
    assert split.drop_columns([]).equals(whole)
    assert st2.ticker_mismatches == 0 and st2.ticker_compared == st.ticker_compared


def _first_depth_after(lines: list[str], start: int) -> int:
    return next(i for i in range(start, len(lines)) if "depthUpdate" in lines[i])


def test_sequence_gap_error_and_skip(tmp_path):
    lines = _lines(USDM)
    i = _first_depth_after(lines, 100)
    j = _first_depth_after(lines, i + 1)
    del lines[i]
    path = _write(tmp_path, lines)
    with pytest.raises(DataError, match="sequence gap: pu=") as err:
        _read([path])
    assert err.value.line == j  # 1-based line of the next depth event (one line earlier after the deletion)
    _, st = _read([path], skip_gaps=True)
    assert len(st.gaps) == 1 and st.gaps[0]["line"] == j and st.skipped_depth_events > 0
    assert st.rows["trade"] == sum('@trade"' in ln for ln in lines)


def test_missing_snapshot(tmp_path):
    with pytest.raises(DataError, match="no REST depth snapshot") as err:
        _read([SPOT_NO_SNAPSHOT])
    assert err.value.path.endswith(SPOT_NO_SNAPSHOT.name) and err.value.line > 0
    t, st = _read([SPOT_NO_SNAPSHOT], skip_gaps=True)
    assert set(t["kind"].cast(pa.string()).to_pylist()) == {"trade", "ticker"}
    assert st.skipped_depth_events > 0 and len(st.gaps) == 1
    # spot 2023 trades carry order ids: the resting order's id is kept
    assert t.filter(pa.compute.equal(t["kind"].cast(pa.string()), "trade"))["order_id"].null_count == 0


def _edit(lines, i, fn):
    local, payload = lines[i].split(" ", 1)
    obj = json.loads(payload)
    fn(obj)
    lines[i] = f"{local} {json.dumps(obj)}"


@pytest.mark.parametrize(("mutate", "what"), [
    (lambda L, i: L.__setitem__(i, L[i][: len(L[i]) // 2]), "truncated or invalid JSON"),
    (lambda L, i: L.__setitem__(i, "1723161 " + L[i].split(" ", 1)[1]), "receive time in ns or µs"),
    (lambda L, i: L.__setitem__(i, "1723161000000000000 " + L[i].split(" ", 1)[1]), "receive time going backwards"),
    (lambda L, i: _edit(L, i, lambda o: o["data"]["a"].append(["99999.0", "-1.0"])), "negative size"),
    (lambda L, i: _edit(L, i, lambda o: o["data"]["b"].append(["99999.0", "1.0"])), "crossed book"),
    (lambda L, i: _edit(L, i, lambda o: o["data"]["b"].append(["abc", "1.0"])), "malformed message"),
    (lambda L, i: _edit(L, i, lambda o: o["data"].__setitem__("u", "u7")), "expected integer ids and times"),
    (lambda L, i: _edit(L, i, lambda o: o["data"]["b"].append(["61000.0", "NaN"])), "size is NaN"),
    (lambda L, i: _edit(L, i, lambda o: o["data"].__setitem__("s", "ETHUSDT")), "symbol ETHUSDT"),
])
def test_bad_lines_name_file_and_line(tmp_path, mutate, what):
    lines = _lines(USDM)
    i = _first_depth_after(lines, 200)
    mutate(lines, i)
    path = _write(tmp_path, lines)
    with pytest.raises(DataError, match=what) as err:
        _read([path])
    assert err.value.path == str(path) and err.value.line == i + 1
    assert f"{path.name}:{i + 1}: " in str(err.value)
