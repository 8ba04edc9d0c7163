"""Parquet datasets of events: ``ingest`` (streaming, atomic, partitioned) and ``info``.

A dataset is a directory ``venue=<venue>/symbol=<symbol>/date=<YYYY-MM-DD>/part-*.parquet``
(the UTC date of ``ts``) plus ``_mmray/ingest-*.json`` records of what each ingest read and
found (capture gaps, bookTicker comparison, files). Everything is written into a staging
directory next to the target first: a failed ingest removes it and leaves an existing dataset
untouched. A new dataset appears with one rename; appending moves each new day's directory in
with one rename per day. Ingesting a day that the dataset already holds (same venue, symbol and
date) is refused: remove that ``date=`` directory first to replace it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from tqdm import tqdm

from mmray.data._csv import prefetch
from mmray.data.binance import CaptureStats, read_capture
from mmray.data.datasets import dataset_root, resolve, storage_error
from mmray.data.errors import DataError
from mmray.data.lobster import BATCH_ROWS, find_pairs, read_lobster
from mmray.data.schema import EVENT_SCHEMA, NS_PER_DAY, infer_tick, utc_date
from mmray.data.vision import read_vision

__all__ = ["COMPRESSIONS", "PARTITIONING", "SOURCES", "auto_rows_per_group", "info", "ingest", "open_dataset",
           "writer_options"]

SOURCES = ("lobster", "binance", "binance-vision")
PARTITIONING = ds.partitioning(pa.schema([("venue", pa.string()), ("symbol", pa.string()), ("date", pa.string())]),
                               flavor="hive")
_FILE_SCHEMA = pa.schema([f for f in EVENT_SCHEMA if f.name not in ("venue", "symbol")])
# Parquet settings, chosen by the encoding cost measured per column (docs/data.md, "Throughput"):
# dictionary pages only where values repeat by design (trying them on every float column costs
# more time than the files save); min/max statistics only on the clocks and sequence numbers,
# the columns a reader filters row groups on (on the level lists and prices they cost encoding
# time and prune nothing); values handed to the encoder 64 Ki at a time, not 1 Ki.
_WRITER_OPTIONS: dict[str, Any] = {"use_dictionary": ["kind", "side"], "write_statistics": ["ts", "ts_local", "seq"],
                                   "write_batch_size": 1 << 16, "compression": "snappy"}
# LOBSTER: `ts` never decreases and order ids are clustered, so delta encoding (uncompressed) is
# cheaper to write than plain + Snappy and smaller; `kind` (run-length dictionary codes) skips
# Snappy too. On a Binance capture (`ts` of interleaved streams) delta encoding is larger and slower.
_DELTA = ("ts", "order_id")
#: Parquet compression of an ingest: one codec for every column that is not already compact by its
#: encoding (LOBSTER's delta-encoded ``ts``/``order_id`` and dictionary-coded ``kind`` stay uncompressed).
COMPRESSIONS = ("snappy", "zstd", "none")


def _leaf(field: pa.Field) -> str:
    """The Parquet column path of a field (a list's values: ``name.list.element``)."""
    return f"{field.name}.list.element" if pa.types.is_list(field.type) else field.name


def writer_options(source: str, compression: str = "snappy") -> dict[str, Any]:
    """The ``pyarrow.parquet.ParquetWriter`` options of an ingest from `source`.

    ``"snappy"`` (the default) is the measured balance; ``"zstd"`` gives smaller files (archives,
    object stores) for more CPU; ``"none"`` the fastest writing and the largest files. Measured on
    the samples (docs/data.md, "Files"): the AAPL level-1 day is 1.85 MB with Snappy and 6.56 MB
    uncompressed, the AMZN level-5 day 4.51 and 34.0 MB; uncompressed ingests take 10-20 % less time.
    """
    if compression not in COMPRESSIONS:
        raise ValueError(f"compression must be one of {COMPRESSIONS}, got {compression!r}")
    options = {**_WRITER_OPTIONS, "compression": compression}
    if source == "lobster":
        options["column_encoding"] = dict.fromkeys(_DELTA, "DELTA_BINARY_PACKED")
        options["compression"] = {_leaf(f): "none" if f.name in (*_DELTA, "kind") else compression
                                  for f in _FILE_SCHEMA}
    return options


_META = "_mmray"


def open_dataset(path: str | os.PathLike[str]) -> ds.Dataset:
    """The dataset at `path` (directory or URI, :func:`mmray.data.datasets.resolve`) as a
    :class:`pyarrow.dataset.Dataset` (partition columns as strings)."""
    fs, base = resolve(path)
    return ds.dataset(base, filesystem=fs, format="parquet", partitioning=PARTITIONING,
                      schema=pa.unify_schemas([_FILE_SCHEMA, PARTITIONING.schema]))


def _batches(source: str, files: Sequence[str], stats: dict[str, Any], market: str | None,
             skip_gaps: bool, batch_rows: int) -> Iterator[pa.RecordBatch]:
    if source == "lobster":
        for pair in find_pairs(files):
            yield from read_lobster(pair, batch_rows=batch_rows)
    elif source == "binance":
        capture = CaptureStats()
        stats["capture"] = capture
        yield from read_capture(files, market=market, skip_gaps=skip_gaps, stats=capture)
    elif source == "binance-vision":
        for f in files:
            yield from read_vision(f, **({"market": market} if market else {}))
    else:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")


_MIN_GROUP, _MAX_GROUP = 1 << 14, 1 << 16
_LOBSTER_BYTES_PER_ROW = 40  # a message line: 40.8 bytes in the AAPL sample, 41.4 in AMZN's


def auto_rows_per_group(source: str, files: Sequence[str]) -> int:
    """The row-group size an ingest uses unless told: the largest power of two that splits a
    LOBSTER day (its rows estimated from the message file's size) into at least 8 row groups,
    within 16–64 Ki rows; 64 Ki for other sources.

    A row group is written once its rows have been read, so the writer (on the main thread)
    overlaps the reader (on another) only from the first group on and finishes with the last one
    alone: a short day in 64 Ki groups (the AAPL sample: two) leaves most of the writing after
    the reading. Groups below 16 Ki rows make whole-file reads slower (+25 % at 16 Ki against
    64 Ki on 1.2 M rows); a long day keeps 64 Ki.
    """
    if source != "lobster":
        return _MAX_GROUP
    pairs = find_pairs(files)
    sizes = [s for s in (p.message.size() for p in pairs) if s is not None]
    rows = sum(sizes) / max(len(sizes), 1) / _LOBSTER_BYTES_PER_ROW if sizes else float("inf")
    group = _MAX_GROUP
    while group > _MIN_GROUP and group * 8 > rows:
        group //= 2
    return group


def _partitions(batches: Iterable[pa.RecordBatch], out: Path,
                seen: Counter) -> Iterator[tuple[str, pa.RecordBatch]]:
    """Split batches by partition key (``venue=…/symbol=…/date=…``, the UTC date of ``ts``) into
    file-schema batches; refuse a day the dataset already holds, as soon as it shows up."""
    for b in batches:
        days = b.column("ts").to_numpy() // NS_PER_DAY
        venue, symbol = b.column("venue")[0].as_py(), b.column("symbol")[0].as_py()
        rows = b.select(_FILE_SCHEMA.names)
        first, last = days[0], days[-1]
        uniq = [first] if first == last and (days == first).all() else np.unique(days)
        for day in uniq:
            name = utc_date(day)
            key = f"venue={venue}/symbol={symbol}/date={name}"
            if key not in seen and (out / key).exists():
                raise DataError(out, None, f"{key} is already in the dataset; ingesting the same day twice is "
                                "refused (remove that directory first to replace the day)")
            part = rows if len(uniq) == 1 else rows.filter(pa.array(days == day))
            seen[key] += part.num_rows
            yield key, part


class _Writer:
    """One Parquet file (``part-0.parquet``) per partition directory under `root`, written as
    batches arrive; a partition's rows are held back until a row group of `rows_per_group` rows
    can be written (the last one with what is left at :meth:`close`)."""

    def __init__(self, root: Path, rows_per_group: int, options: dict[str, Any] = _WRITER_OPTIONS) -> None:
        self.root, self.rows_per_group, self.options = root, rows_per_group, options
        self.files: dict[str, pq.ParquetWriter] = {}
        self.pending: dict[str, list[pa.RecordBatch]] = {}

    def write(self, key: str, batch: pa.RecordBatch) -> None:
        pending = self.pending.setdefault(key, [])
        pending.append(batch)
        if sum(b.num_rows for b in pending) >= self.rows_per_group:
            self._flush(key)

    def _flush(self, key: str) -> None:
        batches, self.pending[key] = self.pending[key], []
        if not batches:
            return
        if key not in self.files:
            (self.root / key).mkdir(parents=True)
            self.files[key] = pq.ParquetWriter(self.root / key / "part-0.parquet", _FILE_SCHEMA, **self.options)
        self.files[key].write_table(pa.Table.from_batches(batches, _FILE_SCHEMA), row_group_size=self.rows_per_group)

    def close(self) -> None:
        """Write what is held back and close every file."""
        for key in list(self.pending):
            self._flush(key)
        self.abort()

    def abort(self) -> None:
        """Close every file without writing what is held back (idempotent)."""
        files, self.files, self.pending = self.files, {}, {}
        for f in files.values():
            f.close()


_POOL_LOCK = threading.Lock()
_POOL_USERS = [0, None]  # ingests running with jemalloc as Arrow's default pool, the pool they replaced


@contextlib.contextmanager
def _arrow_pool() -> Iterator[None]:
    """jemalloc as pyarrow's default memory pool while ingests run (then the previous one again).

    The loader allocates each batch on its thread and the writer frees it on another; with
    Arrow's default pool, mimalloc, the RSS crept up with the file's length (+32 MB at 1x, +51 MB
    at 10x the AAPL sample, still rising). With jemalloc for the batches it levels off (+23 / +31 /
    +35 / +35 MB at 1x / 10x / 20x / 50x; docs/data.md, "Throughput"). What still grows from 1x
    to 10x is Parquet's encoder, which allocates from Arrow's C++ default pool, fixed when pyarrow
    loads: ``ARROW_DEFAULT_MEMORY_POOL=jemalloc`` set before that (``mmray data ingest`` does) makes
    the peak flat (+14 / +15 / +15 / +15 MB; nothing is changed here then, nor when pyarrow lacks
    jemalloc). Buffers remember their pool, so those that outlive the ingest are freed correctly.
    """
    if os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        yield
        return
    try:
        pool = pa.jemalloc_memory_pool()
    except NotImplementedError:
        yield
        return
    with _POOL_LOCK:
        if _POOL_USERS[0] == 0:
            _POOL_USERS[1] = pa.default_memory_pool()
            pa.set_memory_pool(pool)
        _POOL_USERS[0] += 1
    try:
        yield
    finally:
        with _POOL_LOCK:
            _POOL_USERS[0] -= 1
            if _POOL_USERS[0] == 0:
                pa.set_memory_pool(_POOL_USERS[1])
                _POOL_USERS[1] = None


def ingest(source: str, files: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str], *,
           market: str | None = None, skip_gaps: bool = False, progress: bool | None = None,
           rows_per_group: int | None = None, compression: str = "snappy") -> dict[str, Any]:
    """Read `files` with the loader for `source` and write them into the dataset `out`.

    Parameters
    ----------
    source : {"lobster", "binance", "binance-vision"}
        The loader: LOBSTER pairs (CSV or zip), one Binance capture (consecutive files, oldest
        first), or data.binance.vision files.
    files : sequence of path
        Input files.
    out : path
        Dataset directory; created, or appended to with new days.
    market : str or None
        Binance market (``spot``, ``usdm``, ``cm``); inferred when ``None``.
    skip_gaps : bool
        Binance captures: record sequence gaps and go on instead of failing.
    progress : bool or None
        Show a progress bar (rows); ``None``: when stderr is a terminal.
    rows_per_group : int or None
        Parquet row-group size in rows (and the writer's memory bound); ``None``:
        :func:`auto_rows_per_group` (16–64 Ki).
    compression : {"snappy", "zstd", "none"}
        Parquet compression (:func:`writer_options`).

    Returns
    -------
    dict
        What was written: ``rows``, ``partitions`` (rows per venue/symbol/date), ``files`` and,
        for captures, ``capture`` (:meth:`CaptureStats.as_dict`).

    Raises
    ------
    DataError
        Bad input (naming file and line) or a day that is already in the dataset; nothing is
        written then.
    """
    files = [os.fspath(f) for f in files]
    if not files:
        raise ValueError("no input files")
    options = writer_options(source, compression)
    if rows_per_group is None:
        rows_per_group = auto_rows_per_group(source, files)
    elif rows_per_group < 1:
        raise ValueError(f"rows_per_group must be at least 1, got {rows_per_group}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = out.parent / f".{out.name}.staging-{uuid.uuid4().hex[:8]}"
    stats: dict[str, Any] = {}
    seen: Counter = Counter()
    show = sys.stderr.isatty() if progress is None else progress
    try:
        with tqdm(unit=" rows", unit_scale=True, disable=not show, desc=f"ingest {source}") as bar, _arrow_pool():
            writer = _Writer(stage, rows_per_group, options)
            try:
                # the loader (and the split into partitions) runs up to two batches ahead on another
                # thread while this one writes Parquet, the slower of the two
                # LOBSTER batches: read_lobster's size, at most one row group
                batches = _batches(source, files, stats, market, skip_gaps, min(rows_per_group, BATCH_ROWS))
                for key, batch in prefetch(_partitions(batches, out, seen), depth=2):
                    writer.write(key, batch)
                    bar.update(batch.num_rows)
                writer.close()
            finally:
                writer.abort()
        if not seen:
            raise DataError(files[0], None, "no events in the input")
        record = {"source": source, "files": files, "rows": sum(seen.values()), "partitions": dict(seen),
                  "written": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
        if "capture" in stats:
            record["capture"] = stats["capture"].as_dict()
        (stage / _META).mkdir()
        (stage / _META / f"ingest-{uuid.uuid4().hex[:12]}.json").write_text(json.dumps(record, indent=1))
        _commit(stage, out, seen)
        return record
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _commit(stage: Path, out: Path, seen: Counter) -> None:
    if not out.exists():
        os.rename(stage, out)
        return
    if not (out / _META).is_dir():
        raise DataError(out, None, "exists and is not an mmray dataset (no _mmray directory)")
    clash = [k for k in seen if (out / k).exists()]
    if clash:
        raise DataError(out, None, f"{clash[0]} is already in the dataset; ingesting the same day twice is refused")
    for key in seen:
        (out / key).parent.mkdir(parents=True, exist_ok=True)
        os.rename(stage / key, out / key)
    for meta in (stage / _META).iterdir():
        os.rename(meta, out / _META / meta.name)


# kinds whose price lies on the tick grid (hidden executions and crosses can print between ticks)
_PRICED = ("add", "cancel", "delete", "execute", "depth", "snapshot", "trade", "ticker")


def info(dataset: str | os.PathLike[str]) -> dict[str, Any]:
    """Summarise a dataset: venues, symbols, days, rows by kind, span, tick, gaps, halts, checks.

    Streams the ``ts``, ``kind`` and price columns one record batch at a time.

    Returns
    -------
    dict
        JSON-ready: ``venues``, ``symbols`` (per venue), ``days`` (per venue/symbol/date: rows,
        first and last ``ts``), ``rows``, ``rows_by_kind``, ``span`` (ISO UTC), ``tick`` (inferred
        per venue/symbol by :func:`mmray.data.schema.infer_tick`; null when the prices are on no
        grid), ``halts`` (LOBSTER type 7), ``gaps`` and ``consistency`` (bookTicker vs rebuilt
        book) from the ingest records.
    """
    text = os.fspath(dataset)
    fs, base = resolve(text)
    meta = f"{base}/{_META}"
    try:
        is_dataset = fs.get_file_info(meta).type == pafs.FileType.Directory
    except OSError as exc:
        raise storage_error(text, exc) from None
    if not is_dataset:
        if "://" in text:
            dataset_root(text)  # a missing bucket or prefix, or an unreachable store, by name
        raise DataError(text, None, "not an mmray dataset (no _mmray directory)")
    days: dict[str, dict[str, Any]] = {}
    kinds: Counter = Counter()
    prices: dict[str, set[float]] = {}
    halts: list[dict[str, Any]] = []
    cols = ["ts", "kind", "price", "bid_px", "ask_px", "venue", "symbol", "date"]
    for b in open_dataset(text).to_batches(columns=cols):
        if not b.num_rows:
            continue
        venue, symbol, date = (b.column(c)[0].as_py() for c in ("venue", "symbol", "date"))
        key = f"{venue}/{symbol}/{date}"
        ts = b.column("ts").to_numpy()
        d = days.setdefault(key, {"venue": venue, "symbol": symbol, "date": date, "rows": 0,
                                  "first_ts": int(ts.min()), "last_ts": int(ts.max())})
        d["rows"] += b.num_rows
        d["first_ts"], d["last_ts"] = min(d["first_ts"], int(ts.min())), max(d["last_ts"], int(ts.max()))
        kind = b.column("kind").cast(pa.string())
        kinds.update(dict(zip(*np.unique(kind.to_numpy(zero_copy_only=False), return_counts=True), strict=True)))
        priced = pc.is_in(kind, pa.array(_PRICED)).to_numpy(zero_copy_only=False)
        vals = [b.column(c).to_numpy(zero_copy_only=False).astype(np.float64) for c in ("price", "bid_px", "ask_px")]
        prices.setdefault(f"{venue}/{symbol}", set()).update(np.unique(np.concatenate([v[priced] for v in vals])))
        for i in np.flatnonzero(pc.equal(kind, "halt").to_numpy(zero_copy_only=False)):
            halts.append({"venue": venue, "symbol": symbol, "ts": int(ts[i]), "code": b.column("price")[i].as_py()})
    names = sorted(f.path for f in fs.get_file_info(pafs.FileSelector(meta))
                   if f.base_name.startswith("ingest-") and f.base_name.endswith(".json"))
    records = [json.loads(fs.open_input_stream(n).read()) for n in names]
    captures = [r["capture"] for r in records if "capture" in r]

    def iso(ns: int) -> str:
        return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).isoformat()

    return {
        "path": text if "://" in text else str(Path(text)),
        "venues": sorted({d["venue"] for d in days.values()}),
        "symbols": {v: sorted({d["symbol"] for d in days.values() if d["venue"] == v}) for v in
                    sorted({d["venue"] for d in days.values()})},
        "days": sorted(days.values(), key=lambda d: (d["venue"], d["symbol"], d["date"])),
        "rows": sum(d["rows"] for d in days.values()),
        "rows_by_kind": {k: int(v) for k, v in sorted(kinds.items())},
        "span": ({"start": iso(min(d["first_ts"] for d in days.values())),
                  "end": iso(max(d["last_ts"] for d in days.values()))} if days else None),
        "tick": {k: infer_tick(np.fromiter(v, float)) or None for k, v in sorted(prices.items())},
        "halts": halts,
        "gaps": [g for c in captures for g in c["gaps"]],
        "consistency": {"ticker_compared": sum(c["ticker_compared"] for c in captures),
                        "ticker_mismatches": sum(c["ticker_mismatches"] for c in captures),
                        "examples": [e for c in captures for e in c["mismatch_examples"]][:5]},
        "ingests": len(records),
    }
