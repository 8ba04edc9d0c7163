"""``mmray data ingest|info`` end to end on the sample slices: JSON, refusals, one-line errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mmray.cli import main

FIXTURES = Path(__file__).parent / "fixtures" / "data"
LOBSTER = sorted(str(p) for p in (FIXTURES / "lobster").iterdir())


def test_ingest_then_info_as_json(tmp_path, capsys):
    out = tmp_path / "ds"
    assert main(["data", "ingest", "--source", "lobster", *LOBSTER, "--out", str(out), "--json"]) == 0
    written = json.loads(capsys.readouterr().out)
    assert written["rows"] == 600 and set(written["partitions"]) == {
        "venue=nasdaq/symbol=AAPL/date=2012-06-21", "venue=nasdaq/symbol=AMZN/date=2012-06-21"}
    assert main(["data", "info", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows"] == 600 and summary["symbols"] == {"nasdaq": ["AAPL", "AMZN"]}
    assert summary["tick"] == {"nasdaq/AAPL": 0.01, "nasdaq/AMZN": 0.01}
    assert sum(summary["rows_by_kind"].values()) == 600


def test_a_capture_reports_the_book_ticker_check(tmp_path, capsys):
    capture = FIXTURES / "binance" / "usdm_btcusdt_20240808_head.gz"
    assert main(["data", "ingest", "--source", "binance", str(capture), "--out", str(tmp_path / "b")]) == 0
    capsys.readouterr()
    assert main(["data", "info", str(tmp_path / "b")]) == 0
    text = capsys.readouterr().out
    assert "binance-usdm/BTCUSDT/2024-08-08" in text
    assert "bookTicker vs rebuilt book: 13 compared, 0 mismatches" in text


def _fails(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.strip().splitlines()) == 1 and "Traceback" not in captured.err
    return captured.err


def test_refusals_are_one_line_and_leave_the_dataset_as_it_was(tmp_path, capsys):
    out = tmp_path / "ds"
    assert main(["data", "ingest", "--source", "lobster", *LOBSTER, "--out", str(out)]) == 0
    capsys.readouterr()
    before = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    err = _fails(["data", "ingest", "--source", "lobster", *LOBSTER, "--out", str(out)], capsys)
    assert "mmray data ingest: error:" in err and "is already in the dataset" in err
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == before
    # a corrupted message line: the error names the file and its 1-based line
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in LOBSTER[:2]:
        shutil.copy(name, bad)
    msg = next(bad.glob("*message*"))
    lines = msg.read_text().splitlines()
    lines[41] = lines[41].replace(",", ";", 1)
    msg.write_text("\n".join(lines) + "\n")
    err = _fails(["data", "ingest", "--source", "lobster", *sorted(map(str, bad.iterdir())),
                  "--out", str(tmp_path / "new")], capsys)
    assert f"{msg}:42" in err
    assert not (tmp_path / "new").exists()
    err = _fails(["data", "info", str(tmp_path / "nowhere")], capsys)
    assert "not an mmray dataset" in err


def test_bare_data_prints_its_help_and_a_missing_source_is_refused(capsys):
    assert main(["data"]) == 2
    assert "ingest" in capsys.readouterr().out
    err = _fails(["data", "ingest", *LOBSTER, "--out", "x"], capsys)
    assert "--source" in err


def test_calibrate_writes_a_parameter_file_that_backtest_reads(tmp_path, capsys):
    """The estimates land in a MarketParams file; --params makes them the model, flags override."""
    out = tmp_path / "ds"
    assert main(["data", "ingest", "--source", "lobster", *LOBSTER[:2], "--out", str(out)]) == 0
    capsys.readouterr()
    params, png = tmp_path / "p" / "aapl.json", tmp_path / "aapl.png"
    assert main(["data", "calibrate", str(out), "--local", "--out", str(params), "--plot", str(png), "--json"]) == 0
    cal = json.loads(capsys.readouterr().out)
    assert cal["symbol"] == "AAPL" and cal["sigma"] > 0 and cal["A_ci"][0] < cal["A"] < cal["A_ci"][1]
    saved = json.loads(params.read_text())
    assert (saved["sigma"], saved["A"], saved["k"], saved["tick"]) == (cal["sigma"], cal["A"], cal["k"], 0.01)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["backtest", "--params", str(params), "--k", "30", "--T", "20", "--paths", "100", "--local",
                 "--json"]) == 0
    market = json.loads(capsys.readouterr().out)["market"]
    assert (market["sigma"], market["A"], market["tick"], market["k"]) == (saved["sigma"], saved["A"], 0.01, 30.0)


def test_a_bad_parameter_file_is_one_line_naming_it(tmp_path, capsys):
    bad = tmp_path / "p.json"
    bad.write_text('{"sigma": 0.3, "volatility": 2}')
    err = _fails(["backtest", "--params", str(bad), "--local"], capsys)
    assert f"{bad}: unknown key(s) ['volatility']" in err
    bad.write_text('{"sigma": -1}')
    assert "MarketParams.sigma" in _fails(["solve", "--params", str(bad)], capsys)
    err = _fails(["data", "calibrate", str(tmp_path / "nowhere"), "--local"], capsys)
    assert err.startswith("mmray data calibrate: error:")


def test_the_ingest_command_runs_on_jemalloc_unless_told_otherwise(tmp_path):
    """A fresh ``mmray data ingest`` process makes jemalloc Arrow's default pool before pyarrow loads (flat
    peak memory, docs/data.md); ``ARROW_DEFAULT_MEMORY_POOL`` set by the user wins."""
    import os
    import subprocess
    import sys

    import pyarrow as pa

    try:
        pa.jemalloc_memory_pool()
    except NotImplementedError:
        pytest.skip("this pyarrow build has no jemalloc")
    for setting, expected in ((None, "jemalloc"), ("system", "system")):
        env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
        if setting:
            env["ARROW_DEFAULT_MEMORY_POOL"] = setting
        out = tmp_path / f"ds-{expected}"
        done = subprocess.run([sys.executable, "-m", "mmray", "data", "ingest", "--source", "lobster", *LOBSTER,
                               "--out", str(out), "--json"], capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["arrow_memory_pool"] == expected


def test_ingest_compression_flag_and_choices_match_the_library(tmp_path, capsys):
    import pyarrow.parquet as pq

    from mmray.cli import data as cli_data
    from mmray.data import binance, ingest

    assert (cli_data.SOURCES, cli_data.COMPRESSIONS, cli_data.MARKETS) == (
        ingest.SOURCES, ingest.COMPRESSIONS, binance.MARKETS)
    out = tmp_path / "ds"
    aapl = [f for f in LOBSTER if "AAPL" in f and f.endswith(".csv")]
    assert main(["data", "ingest", "--source", "lobster", *aapl, "--out", str(out), "--compression", "zstd"]) == 0
    meta = pq.ParquetFile(next(out.glob("venue=*/symbol=*/date=*/part-0.parquet"))).metadata.row_group(0)
    codecs = {meta.column(i).path_in_schema: meta.column(i).compression for i in range(meta.num_columns)}
    assert codecs["price"] == codecs["bid_pxs.list.element"] == "ZSTD" and codecs["ts"] == "UNCOMPRESSED"
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(["data", "ingest", "--source", "lobster", *aapl, "--out", str(tmp_path / "x"), "--compression", "lzma"])
    assert exc.value.code == 2 and "--compression" in capsys.readouterr().err and not (tmp_path / "x").exists()
