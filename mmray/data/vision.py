"""data.binance.vision CSV dumps (trades, aggTrades, bookTicker, bookDepth) as event batches.

File names are ``<SYMBOL>-<type>-<YYYY-MM-DD>.csv`` (or ``.zip`` holding that CSV). Files with
and without a header row are read alike (older archives have none); the column count tells spot
from futures layouts. Spot timestamps are µs from 2025 and ms before; both are recognised per
row (a 16-digit value is µs). ``bookDepth`` bands (both the ±1..±5 and the ±0.2, ±1..±5 layouts)
become rows of kind ``depth_band``: ``price`` is the signed band edge in percent from the mid
(negative: bid side), ``size`` the cumulative base quantity in the band (``notional`` is not kept).
"""

from __future__ import annotations

import os
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mmray.data._csv import Source, open_source, stream_csv
from mmray.data.errors import DataError
from mmray.data.schema import EventValidator, event_batch, kind_codes

__all__ = ["LAYOUTS", "VisionName", "parse_name", "read_vision"]

_NAME = re.compile(r"^(?P<symbol>[A-Z0-9_]+)-(?P<type>trades|aggTrades|bookTicker|bookDepth)-"
                   r"(?P<date>\d{4}-\d{2}(-\d{2})?)(-[A-Za-z0-9_]+)?\.(csv|zip)$")  # e.g. a -short slice
_I, _F, _B = pa.int64(), pa.float64(), pa.bool_()
#: (type, column count) → (market or None for futures, column names, types)
LAYOUTS: dict[tuple[str, int], tuple[str | None, tuple[str, ...], tuple[pa.DataType, ...]]] = {
    ("trades", 7): ("spot", ("id", "price", "qty", "quote_qty", "time", "is_buyer_maker", "is_best_match"),
                    (_I, _F, _F, _F, _I, _B, _B)),
    ("trades", 6): (None, ("id", "price", "qty", "quote_qty", "time", "is_buyer_maker"), (_I, _F, _F, _F, _I, _B)),
    ("aggTrades", 8): ("spot", ("agg_trade_id", "price", "quantity", "first_trade_id", "last_trade_id", "transact_time",
                                "is_buyer_maker", "is_best_match"), (_I, _F, _F, _I, _I, _I, _B, _B)),
    ("aggTrades", 7): (None, ("agg_trade_id", "price", "quantity", "first_trade_id", "last_trade_id", "transact_time",
                              "is_buyer_maker"), (_I, _F, _F, _I, _I, _I, _B)),
    ("bookTicker", 7): (None, ("update_id", "best_bid_price", "best_bid_qty", "best_ask_price", "best_ask_qty",
                               "transaction_time", "event_time"), (_I, _F, _F, _F, _F, _I, _I)),
    ("bookDepth", 4): (None, ("timestamp", "percentage", "depth", "notional"), (pa.timestamp("s"), _F, _F, _F)),
}


@dataclass(frozen=True)
class VisionName:
    """What a data.binance.vision file name says."""

    symbol: str
    type: str
    date: str


def parse_name(path: str | os.PathLike[str]) -> VisionName:
    """Parse ``BTCUSDT-aggTrades-2026-01-01.csv`` (or ``.zip``); a :class:`DataError` otherwise."""
    m = _NAME.match(os.path.basename(os.fspath(path)))
    if not m:
        raise DataError(path, None, "not a data.binance.vision file name; expected "
                        "<SYMBOL>-<trades|aggTrades|bookTicker|bookDepth>-<YYYY-MM-DD>.csv or .zip")
    return VisionName(m["symbol"], m["type"], m["date"])


def _source(path: str) -> Source:
    if not path.endswith(".zip"):
        return Source(path)
    try:
        with zipfile.ZipFile(path) as zf:
            members = [n for n in zf.namelist() if n.endswith(".csv")]
    except (OSError, zipfile.BadZipFile) as exc:
        raise DataError(path, None, f"cannot open zip archive: {exc}") from None
    if len(members) != 1:
        raise DataError(path, None, f"expected one CSV in the archive, found {len(members)}")
    return Source(path, members[0])


def _first_line(src: Source) -> list[str]:
    with open_source(src) as fh:
        first = fh.readline().decode("utf-8", "replace").strip()
    if not first:
        raise DataError(src.label, 1, "empty file; expected a CSV row or header")
    return first.split(",")


def read_vision(path: str | os.PathLike[str], *, market: str = "usdm", symbol: str | None = None,
                block_size: int = 1 << 22) -> Iterator[pa.RecordBatch]:
    """Stream one data.binance.vision file as :data:`~mmray.data.schema.EVENT_SCHEMA` batches.

    Parameters
    ----------
    path : path
        ``<SYMBOL>-<type>-<date>.csv`` or the ``.zip`` download.
    market : {"usdm", "cm"}
        The futures market for futures layouts (spot layouts are recognised by their columns;
        a trades header with ``base_qty`` means COIN-M).
    symbol : str or None
        Overrides the symbol from the file name.
    block_size : int
        Bytes parsed per block.

    Yields
    ------
    pyarrow.RecordBatch
        ``trade`` rows (trades and aggTrades: aggressor side, ``seq`` = trade or aggregate id),
        ``ticker`` rows (bookTicker: L1 columns, ``seq`` = update id, ``ts`` = event time) or
        ``depth_band`` rows (bookDepth). ``ts_local`` is null: the dumps have no receive time.

    Raises
    ------
    DataError
        Naming file and line: unknown layout or header, wrong column count, non-numeric or
        NaN fields, negative sizes, crossed ticker, time going backwards.
    """
    path = os.fspath(path)
    name = parse_name(path)
    src = _source(path)
    first = _first_line(src)
    header = not first[0].strip().lstrip("-").replace(".", "").isdigit()
    key = (name.type, len(first))
    if key not in LAYOUTS:
        counts = sorted(n for t, n in LAYOUTS if t == name.type)
        raise DataError(src.label, 1, f"{len(first)} columns; expected {' or '.join(map(str, counts))} "
                        f"for {name.type}")
    layout_market, columns, types = LAYOUTS[key]
    if header and name.type == "trades" and "base_qty" in first:
        market = "cm"
    venue = f"binance-{layout_market or market}"
    validator = EventValidator(src.label, monotonic="ts")
    line = 2 if header else 1
    for batch in stream_csv(src, columns, dict(zip(columns, types, strict=True)), skip_rows=int(header),
                            block_size=block_size):
        n = batch.num_rows
        out = event_batch(n, {"venue": venue, "symbol": symbol or name.symbol, **_convert(name.type, batch, n)})
        validator.check(out, np.arange(line, line + n))
        line += n
        yield out


def _epoch_ns(t: np.ndarray) -> np.ndarray:
    """ms (13 digits) or µs (16 digits, spot from 2025) epoch times → ns."""
    return np.where(t >= 10**15, t * 1_000, t * 1_000_000)


def _convert(kind: str, b: pa.RecordBatch, n: int) -> dict[str, object]:
    col = b.column
    if kind in ("trades", "aggTrades"):
        t = col("time" if kind == "trades" else "transact_time").to_numpy()
        maker_buys = col("is_buyer_maker").to_numpy(zero_copy_only=False)
        return {"ts": _epoch_ns(t), "kind": kind_codes("trade"), "side": np.where(maker_buys, -1, 1).astype(np.int8),
                "price": col("price"), "size": col(2), "seq": col(0)}
    if kind == "bookTicker":
        return {"ts": _epoch_ns(col("event_time").to_numpy()), "kind": kind_codes("ticker"),
                "side": np.zeros(n, np.int8), "seq": col("update_id"),
                "bid_px": col("best_bid_price"), "bid_sz": col("best_bid_qty"),
                "ask_px": col("best_ask_price"), "ask_sz": col("best_ask_qty")}
    pct = col("percentage")
    return {"ts": col("timestamp").cast(pa.int64()).to_numpy() * 1_000_000_000, "kind": kind_codes("depth_band"),
            "side": np.where(pc.less(pct, 0).to_numpy(zero_copy_only=False), 1, -1).astype(np.int8),
            "price": pct, "size": col("depth")}
