"""The Binance capture kernels (book rebuild + rows, decimal parsing) agree with their plain twins
(the same source run by the interpreter): same tables, statistics and errors on the sample captures."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import mmray.data.binance as binance
from mmray.data import EVENT_SCHEMA, DataError
from mmray.data._capture import capture_pass, capture_pass_plain, parse_decimals, parse_decimals_plain
from mmray.data.binance import CaptureStats, read_capture

FIX = Path(__file__).parent / "fixtures" / "data" / "binance"
CAPTURES = ["usdm_btcusdt_20240808_head.gz", "usdm_btcusdt_20230404_head.dat.gz", "spot_btcusdt_20240808_head.gz",
            "cm_btcusd_perp_20240808_head.gz", "spot_btcusdt_20230405_head.dat.gz"]


def _read(monkeypatch, kernel, files, **kw) -> tuple[pa.Table, dict]:
    monkeypatch.setattr(binance, "_PASS", kernel)
    stats = CaptureStats()
    table = pa.Table.from_batches(list(read_capture(files, stats=stats, **kw)), schema=EVENT_SCHEMA)
    return table, stats.as_dict()


@pytest.mark.parametrize("name", CAPTURES)
def test_capture_kernel_equals_plain_twin(monkeypatch, name):
    files = [FIX / name]
    compiled = _read(monkeypatch, capture_pass, files, skip_gaps=True, batch_rows=3000, levels=5)
    plain = _read(monkeypatch, capture_pass_plain, files, skip_gaps=True, batch_rows=3000, levels=5)
    assert compiled[0].equals(plain[0]) and compiled[0].num_rows > 200
    assert compiled[1] == plain[1]
    assert compiled[1]["ticker_mismatches"] == 0


def test_capture_kernel_twin_gaps_and_errors(monkeypatch, tmp_path):
    with gzip.open(FIX / CAPTURES[0], "rt") as fh:
        lines = fh.read().splitlines()
    depth = [i for i, ln in enumerate(lines) if "depthUpdate" in ln and i > 100]
    for i in depth[1:4]:
        lines[i] = lines[i].replace('"pu":', '"pu":1')  # breaks the chain three times
    path = tmp_path / "gaps_20240808.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("\n".join(lines) + "\n")
    compiled = _read(monkeypatch, capture_pass, [path], skip_gaps=True)
    plain = _read(monkeypatch, capture_pass_plain, [path], skip_gaps=True)
    assert compiled[0].equals(plain[0]) and compiled[1] == plain[1] and len(compiled[1]["gaps"]) >= 1
    messages = []
    for kernel in (capture_pass, capture_pass_plain):
        with pytest.raises(DataError, match="sequence gap: pu=") as err:
            _read(monkeypatch, kernel, [path])
        messages.append(str(err.value))
    assert messages[0] == messages[1] and f"{path.name}:{depth[1] + 1}: " in messages[0]


STRINGS = ["0", "-0", "1.5", "60712.10", "0.00000001", "123456789012345", "1234567890123456", "1.", ".5", "-",
           "", "1e3", "nan", "+1", "1.2.3", "99999.999", "0.1", "3.14159265358979", "-2467.10", "1_0"]


def test_decimal_parser_equals_twin_and_float():
    good = [s for s in STRINGS if s and "\n" not in s]
    buf = np.frombuffer(("\n".join(good) + "\n").encode(), np.uint8)
    results = []
    for kernel in (parse_decimals, parse_decimals_plain):
        out, ok = np.empty(len(good)), np.empty(len(good), np.bool_)
        kernel(buf, out, ok)
        results.append((out.tolist(), ok.tolist()))
    assert results[0] == results[1]
    for s, v, ok in zip(good, *results[0], strict=True):
        if ok:
            assert v == float(s) and np.signbit(v) == np.signbit(float(s)), s
    rng = np.random.default_rng(0)
    many = [f"{x:.{d}f}" for x, d in zip(rng.uniform(-1e5, 1e5, 2000), rng.integers(0, 9, 2000), strict=True)]
    out, ok = np.empty(len(many)), np.empty(len(many), np.bool_)
    parse_decimals(np.frombuffer(("\n".join(many) + "\n").encode(), np.uint8), out, ok)
    assert ok.all() and out.tolist() == [float(s) for s in many]
