"""Parquet datasets: streaming atomic ingest, appending days, refusing a day twice, info."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from mmray.data import EVENT_SCHEMA, DataError
from mmray.data.binance import read_capture
from mmray.data.ingest import SOURCES, auto_rows_per_group, info, ingest, open_dataset, writer_options
from mmray.data.lobster import read_lobster

FIX = Path(__file__).parent / "fixtures" / "data"
AAPL = FIX / "lobster" / "AAPL_2012-06-21_34200000_57600000_{}_1.csv"
AMZN_ZIP = FIX / "lobster" / "LOBSTER_SampleFile_AMZN_2012-06-21_5.zip"
USDM = FIX / "binance" / "usdm_btcusdt_20240808_head.gz"
DEPTH = FIX / "vision" / "BTCUSDT-bookDepth-2023-10-16.csv"


def _tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def _aapl() -> list[Path]:
    return [Path(str(AAPL).format("message")), Path(str(AAPL).format("orderbook"))]


def test_ingest_roundtrip_and_partitions(tmp_path):
    out = tmp_path / "ds"
    rec = ingest("lobster", _aapl(), out, progress=False)
    assert rec["rows"] == 300 and rec["partitions"] == {"venue=nasdaq/symbol=AAPL/date=2012-06-21": 300}
    back = open_dataset(out).to_table().select(EVENT_SCHEMA.names)
    direct = pa.Table.from_batches(list(read_lobster(_aapl()[0])))
    assert back.num_rows == direct.num_rows
    for name in EVENT_SCHEMA.names:
        assert back[name].cast(direct[name].type).to_pylist() == direct[name].to_pylist(), name
    assert not list(tmp_path.glob(".ds.staging-*"))


def test_append_days_refuse_same_day_and_info(tmp_path):
    out = tmp_path / "ds"
    ingest("lobster", _aapl(), out, progress=False)
    ingest("lobster", [AMZN_ZIP], out, progress=False)
    cap = ingest("binance", [USDM], out, progress=False)
    assert cap["capture"]["ticker_mismatches"] == 0
    ingest("binance-vision", [DEPTH], out, progress=False)
    before = _tree(out)
    with pytest.raises(DataError, match="venue=nasdaq/symbol=AAPL/date=2012-06-21 is already in the dataset"):
        ingest("lobster", _aapl(), out, progress=False)
    assert _tree(out) == before and not list(tmp_path.glob(".ds.staging-*"))
    summary = info(out)
    assert summary["venues"] == ["binance-usdm", "nasdaq"]
    assert summary["symbols"]["nasdaq"] == ["AAPL", "AMZN"]
    assert summary["rows"] == 300 + 300 + cap["rows"] + 120
    assert summary["rows_by_kind"]["depth_band"] == 120 and summary["rows_by_kind"]["snapshot"] == 2000
    assert summary["tick"]["nasdaq/AAPL"] == 0.01 and summary["tick"]["binance-usdm/BTCUSDT"] == 0.1
    assert summary["consistency"]["ticker_compared"] > 0 and summary["consistency"]["ticker_mismatches"] == 0
    assert summary["ingests"] == 4 and summary["gaps"] == [] and summary["halts"] == []
    assert {d["date"] for d in summary["days"]} == {"2012-06-21", "2024-08-08", "2023-10-16"}
    # partition pruning by venue/symbol/date
    one = open_dataset(out).to_table(filter=(ds.field("symbol") == "AMZN") & (ds.field("date") == "2012-06-21"))
    assert one.num_rows == 300


def test_failed_ingest_leaves_nothing(tmp_path):
    msg, book = _aapl()
    bad = tmp_path / "in"
    bad.mkdir()
    lines = msg.read_text().splitlines()
    fields = lines[99].split(",")
    fields[1] = "9"  # unknown event type on line 100
    lines[99] = ",".join(fields)
    (bad / msg.name).write_text("\n".join(lines) + "\n")
    shutil.copy(book, bad / book.name)
    out = tmp_path / "ds"
    with pytest.raises(DataError, match=r":100: column 2 \(event type\)"):
        ingest("lobster", [bad / msg.name, bad / book.name], out, progress=False)
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["in"]
    ingest("binance-vision", [DEPTH], out, progress=False)
    before = _tree(out)
    with pytest.raises(DataError):
        ingest("lobster", [bad / msg.name, bad / book.name], out, progress=False)
    assert _tree(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["ds", "in"]


def test_info_reports_halts_and_gaps(tmp_path):
    msg, book = _aapl()
    m = [*msg.read_text().splitlines()[:5], "36023,7,0,0,-1,-1", "36723,7,0,0,1,-1"]
    b = book.read_text().splitlines()[:5]
    b += [b[-1]] * 2
    (tmp_path / msg.name).write_text("\n".join(m) + "\n")
    (tmp_path / book.name).write_text("\n".join(b) + "\n")
    out = tmp_path / "ds"
    ingest("lobster", [tmp_path / msg.name, tmp_path / book.name], out, progress=False)
    lines = gzip.open(USDM, "rt").read().splitlines()
    depth = [i for i, ln in enumerate(lines) if "depthUpdate" in ln and i > 100]
    del lines[depth[0]]
    gapped = tmp_path / "cap.txt"
    gapped.write_text("\n".join(lines) + "\n")
    ingest("binance", [gapped], out, skip_gaps=True, progress=False)
    summary = info(out)
    assert [h["code"] for h in summary["halts"]] == [-1.0, 1.0]
    assert len(summary["gaps"]) == 1 and summary["gaps"][0]["line"] == depth[1]


def test_streams_through_a_reader_not_the_whole_input(tmp_path):
    # the writer pulls batches one by one: a generator that fails late leaves nothing behind
    out = tmp_path / "ds"
    batches = list(read_capture([USDM], batch_rows=1000))
    assert len(batches) > 5 and all(b.num_rows <= 1000 + 2000 for b in batches)  # + one line (a snapshot)
    with pytest.raises(ValueError, match="source must be one of"):
        ingest("csv", [DEPTH], out, progress=False)
    assert not out.exists()


def _late_error_input(tmp_path: Path) -> list[Path]:
    """The AAPL fixture with an unknown event type on line 250 of its 300."""
    msg, book = _aapl()
    bad = tmp_path / "in"
    bad.mkdir()
    lines = msg.read_text().splitlines()
    fields = lines[249].split(",")
    fields[1] = "9"
    lines[249] = ",".join(fields)
    (bad / msg.name).write_text("\n".join(lines) + "\n")
    shutil.copy(book, bad / book.name)
    return [bad / msg.name, bad / book.name]


def test_an_error_in_a_later_batch_leaves_nothing(tmp_path, monkeypatch):
    # 64-row batches and row groups: three row groups are in the staging file when batch 4 fails
    import mmray.data.ingest as ingest_module
    monkeypatch.setattr(ingest_module, "read_lobster", lambda pair, batch_rows: read_lobster(pair, batch_rows=64))
    flushed = []
    flush = ingest_module._Writer._flush
    monkeypatch.setattr(ingest_module._Writer, "_flush", lambda self, key: (flushed.append(key), flush(self, key)))
    files = _late_error_input(tmp_path)
    out = tmp_path / "ds"
    with pytest.raises(DataError, match=r":250: column 2 \(event type\)"):
        ingest("lobster", files, out, progress=False, rows_per_group=64)
    assert len(flushed) == 3 and not out.exists() and [p.name for p in tmp_path.iterdir()] == ["in"]
    ingest("binance-vision", [DEPTH], out, progress=False)
    before = _tree(out)
    with pytest.raises(DataError, match=":250:"):
        ingest("lobster", files, out, progress=False, rows_per_group=64)
    assert _tree(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["ds", "in"]
    ingest("lobster", _aapl(), out, progress=False, rows_per_group=64)  # the good file goes in, 5 row groups
    part = out / "venue=nasdaq/symbol=AAPL/date=2012-06-21/part-0.parquet"
    assert pq.ParquetFile(part).metadata.num_row_groups == 5


@pytest.mark.parametrize("compression", ["snappy", "none"])
@pytest.mark.parametrize("files", [_aapl(), [AMZN_ZIP]], ids=["AAPL-level-1", "AMZN-level-5"])
def test_lobster_dataset_holds_the_loaders_rows_with_cheaper_encodings(tmp_path, files, compression):
    out = tmp_path / "ds"
    ingest("lobster", files, out, progress=False, compression=compression)
    back = open_dataset(out).to_table().select(EVENT_SCHEMA.names)
    direct = pa.Table.from_batches(list(read_lobster(files[0])))
    assert back.num_rows == direct.num_rows == 300
    for name in EVENT_SCHEMA.names:  # row by row, the level lists included
        assert back[name].cast(direct[name].type).to_pylist() == direct[name].to_pylist(), name
    part = next(out.glob("venue=*/symbol=*/date=*/part-0.parquet"))
    meta = pq.ParquetFile(part).metadata.row_group(0)
    cols = {meta.column(i).path_in_schema: meta.column(i) for i in range(meta.num_columns)}
    for name in ("ts", "order_id"):
        assert "DELTA_BINARY_PACKED" in cols[name].encodings and cols[name].compression == "UNCOMPRESSED"
    codec = "UNCOMPRESSED" if compression == "none" else "SNAPPY"
    assert cols["price"].compression == cols["bid_sz"].compression == cols["bid_pxs.list.element"].compression == codec
    assert cols["ts"].statistics is not None and cols["price"].statistics is None


def test_writer_options_and_row_groups(tmp_path):
    for source in SOURCES:
        for compression in ("zstd", "none"):
            codecs = writer_options(source, compression)["compression"]
            used = set(codecs.values()) if isinstance(codecs, dict) else {codecs}
            assert used <= {compression, "none"}, (source, compression)
    assert writer_options("binance")["compression"] == "snappy"
    with pytest.raises(ValueError, match="compression must be one of"):
        ingest("lobster", _aapl(), tmp_path / "ds", progress=False, compression="lzma")
    with pytest.raises(ValueError, match="rows_per_group must be at least 1"):
        ingest("lobster", _aapl(), tmp_path / "ds", progress=False, rows_per_group=0)
    assert not (tmp_path / "ds").exists()
    # at least 8 groups per LOBSTER day, within 16-64 Ki rows: a day estimated from its message file's size
    assert auto_rows_per_group("lobster", _aapl()) == auto_rows_per_group("lobster", [AMZN_ZIP]) == 1 << 14  # 300 rows
    assert auto_rows_per_group("binance", [USDM]) == 1 << 16
    msg, book = _aapl()
    for rows, group in ((120_000, 1 << 14), (300_000, 1 << 15), (600_000, 1 << 16), (5_000_000, 1 << 16)):
        big = tmp_path / f"{rows}" / msg.name
        big.parent.mkdir()
        with open(big, "wb") as f:
            f.truncate(rows * 40)  # a sparse file: only its size is looked at
        shutil.copy(book, big.parent / book.name)
        assert auto_rows_per_group("lobster", [big, big.parent / book.name]) == group, rows


def test_ingest_runs_on_jemalloc_and_puts_the_pool_back(tmp_path, monkeypatch):
    import mmray.data.ingest as ingest_module
    monkeypatch.delenv("ARROW_DEFAULT_MEMORY_POOL", raising=False)
    try:
        jemalloc = pa.jemalloc_memory_pool()
    except NotImplementedError:
        pytest.skip("pyarrow without jemalloc")
    before = pa.default_memory_pool().backend_name
    seen = []
    partitions = ingest_module._partitions

    def spy(*args):
        seen.append(pa.default_memory_pool().backend_name)
        yield from partitions(*args)
    monkeypatch.setattr(ingest_module, "_partitions", spy)
    ingest("lobster", _aapl(), tmp_path / "ds", progress=False)
    with pytest.raises(DataError):
        ingest("lobster", _late_error_input(tmp_path), tmp_path / "ds2", progress=False)
    assert seen == [jemalloc.backend_name] * 2 and pa.default_memory_pool().backend_name == before
