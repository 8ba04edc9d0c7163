r"""A shard's event rows reduced to what calibration uses: the quote timeline, market orders, halts.

The reduction is streaming and order-robust (:class:`_Collector`): record batches may arrive in
any order and size. Where the mid comes from (``quotes``): book-changing rows (LOBSTER, Binance
depth) or bookTicker rows (``auto``: ticker rows when present and carrying an exchange time).

A market order is the group of trade prints (``execute``, ``trade``; with ``hidden=True`` also
``execute_hidden``) sharing a timestamp and aggressor side. Its *reach* is how far it went from
the mid, in price: :math:`D = \text{side}\,(\text{worst price} - m^-)`, :math:`m^-` the mid of the
last quote strictly before the order's exchange time (not after it; not in half-ticks). Trading
halts (LOBSTER type 7) are kept as ``[start, stop)`` intervals: they leave the σ increments and
the exposure (:func:`_active_seconds`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mmray.data.errors import DataError
from mmray.data.schema import KINDS, infer_tick, kind_codes

#: Columns a shard is read with.
_COLUMNS = ("ts", "ts_local", "kind", "side", "price", "bid_px", "ask_px")
_BOOK = kind_codes(["add", "cancel", "delete", "execute", "execute_hidden", "cross", "depth", "snapshot"])
_TICKER = kind_codes(["ticker"])
_TRADES = kind_codes(["execute", "trade"])
_TRADES_HIDDEN = kind_codes(["execute", "execute_hidden", "trade"])
_HALT = kind_codes("halt")
#: Venues whose bookTicker rows carry no exchange time (their ``ts`` is borrowed): use the book.
_TICKER_WITHOUT_EXCHANGE_TIME = frozenset({"binance-spot"})
_NS = 1_000_000_000


def _codes(col: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Kind codes (indices into ``KINDS``) of a ``kind`` column, dictionary or string."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if pa.types.is_dictionary(col.type):
        lut = np.array([KINDS.index(v) for v in col.dictionary.to_pylist()], dtype=np.int8)
        return lut[col.indices.to_numpy(zero_copy_only=False)]
    return pc.index_in(col, value_set=pa.array(KINDS)).to_numpy(zero_copy_only=False).astype(np.int8)


def _floats(batch: pa.RecordBatch, name: str) -> np.ndarray:
    return pc.fill_null(batch.column(name).cast(pa.float64()), np.nan).to_numpy(zero_copy_only=False)


def _same(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a == b) | (np.isnan(a) & np.isnan(b))


class _Collector:
    """Reduces one venue/symbol/day's record batches, in any batch order, to what calibration uses.

    Per batch it keeps the quote rows whose best bid or ask differs from the previous quote row
    of the same batch (book rows and ticker rows separately), the trade prints and the halts.
    Rows are ordered afterwards by exchange time, then receive time (stable), so batches may
    arrive in any order: dropping a row equal to its predecessor in the batch never changes the
    quote in force at any time.
    """

    def __init__(self, hidden: bool) -> None:
        self._trade_codes = _TRADES_HIDDEN if hidden else _TRADES
        self._quotes: dict[str, list[tuple[np.ndarray, ...]]] = {"book": [], "ticker": []}
        self._trades: list[tuple[np.ndarray, ...]] = []
        self._halts: list[tuple[np.ndarray, np.ndarray]] = []
        self.first: int | None = None
        self.last: int | None = None
        self.rows = 0

    def add(self, batch: pa.RecordBatch) -> None:
        n = batch.num_rows
        if not n:
            return
        self.rows += n
        ts = batch.column("ts").to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
        lo, hi = int(ts.min()), int(ts.max())
        self.first = lo if self.first is None else min(self.first, lo)
        self.last = hi if self.last is None else max(self.last, hi)
        kind = _codes(batch.column("kind"))
        local = pc.fill_null(batch.column("ts_local"), -1).to_numpy(zero_copy_only=False).astype(np.int64)
        bid, ask = _floats(batch, "bid_px"), _floats(batch, "ask_px")
        for name, codes in (("book", _BOOK), ("ticker", _TICKER)):
            sel = np.flatnonzero(np.isin(kind, codes))
            if not sel.size:
                continue
            b, a = bid[sel], ask[sel]
            keep = np.ones(sel.size, dtype=bool)
            keep[1:] = ~(_same(b[1:], b[:-1]) & _same(a[1:], a[:-1]))
            sel = sel[keep]
            self._quotes[name].append((ts[sel], local[sel], bid[sel], ask[sel]))
        side = batch.column("side").to_numpy(zero_copy_only=False).astype(np.int8)
        price = _floats(batch, "price")
        tr = np.isin(kind, self._trade_codes) & (side != 0) & np.isfinite(price)
        if tr.any():
            self._trades.append((ts[tr], local[tr], side[tr], price[tr]))
        halt = kind == _HALT
        if halt.any():
            self._halts.append((ts[halt], price[halt]))

    def finish(self, venue: str, symbol: str, date: str, quotes: str = "auto") -> _Day:
        """The day's quote timeline, market orders and halts (see :class:`_Day`)."""
        have = {k: bool(v) for k, v in self._quotes.items()}
        if quotes == "auto":
            use_ticker = have["ticker"] and (venue not in _TICKER_WITHOUT_EXCHANGE_TIME or not have["book"])
            quotes = "ticker" if use_ticker else "book"
        if not have[quotes]:
            raise DataError(None, None, f"{venue}/{symbol}/{date}: no {quotes} rows with quotes to take the mid from")
        q_ts, q_loc, q_bid, q_ask = (np.concatenate(c) for c in zip(*self._quotes[quotes], strict=True))
        order = np.lexsort((q_loc, q_ts))  # stable: ties keep their arrival order
        q_ts, q_bid, q_ask = q_ts[order], q_bid[order], q_ask[order]
        tick = infer_tick(np.concatenate([q_bid, q_ask]))
        mid, half = (q_bid + q_ask) / 2, (q_ask - q_bid) / 2
        if self._trades:
            t_ts, t_loc, t_side, t_px = (np.concatenate(c) for c in zip(*self._trades, strict=True))
        else:
            t_ts, t_loc, t_side, t_px = (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int8),
                                         np.empty(0))
        o_ts, o_side, o_reach, o_half = _market_orders(t_ts, t_loc, t_side, t_px, q_ts, mid, half)
        halts = _halt_intervals(self._halts, self.last)  # type: ignore[arg-type]
        return _Day(venue=venue, symbol=symbol, date=date, start=int(self.first), end=int(self.last),  # type: ignore[arg-type]
                    quotes=quotes, q_ts=q_ts, q_mid=mid, tick=tick, o_ts=o_ts, o_side=o_side, o_reach=o_reach,
                    o_half=o_half, halts=halts, rows=self.rows, prints=int(t_ts.size))


def _market_orders(t_ts: np.ndarray, t_loc: np.ndarray, t_side: np.ndarray, t_px: np.ndarray,
                   q_ts: np.ndarray, mid: np.ndarray, half: np.ndarray) -> tuple[np.ndarray, ...]:
    """Group prints into market orders (same ``ts`` and side); reach = side × (worst price − prior mid)."""
    if not t_ts.size:
        return np.empty(0, np.int64), np.empty(0, np.int8), np.empty(0), np.empty(0)
    order = np.lexsort((t_loc, t_side, t_ts))
    t_ts, t_side, t_px = t_ts[order], t_side[order], t_px[order]
    new = np.ones(t_ts.size, dtype=bool)
    new[1:] = (t_ts[1:] != t_ts[:-1]) | (t_side[1:] != t_side[:-1])
    starts = np.flatnonzero(new)
    o_ts, o_side = t_ts[starts], t_side[starts]
    before = np.searchsorted(q_ts, o_ts, side="left") - 1  # last quote strictly before the order
    known = before >= 0
    m = np.where(known, mid[np.maximum(before, 0)], np.nan)
    h = np.where(known, half[np.maximum(before, 0)], np.nan)
    signed = t_side.astype(np.float64) * t_px
    worst = np.maximum.reduceat(signed, starts)  # buys: highest price; sells: lowest
    reach = worst - o_side * m
    return o_ts, o_side, reach, h


def _halt_intervals(halts: list[tuple[np.ndarray, np.ndarray]], end: int) -> np.ndarray:
    """``[start, stop)`` ns of each trading halt (LOBSTER type 7: −1 starts, 1 resumes trading)."""
    if not halts:
        return np.empty((0, 2), np.int64)
    ts = np.concatenate([h[0] for h in halts])
    code = np.concatenate([h[1] for h in halts])
    order = np.argsort(ts, kind="stable")
    out, start = [], None
    for t, c in zip(ts[order], code[order], strict=True):
        if c == -1 and start is None:
            start = int(t)
        elif c == 1 and start is not None:
            out.append((start, int(t)))
            start = None
    if start is not None:
        out.append((start, int(end)))
    return np.array(out, dtype=np.int64).reshape(-1, 2)


@dataclass
class _Day:
    """One venue/symbol/day reduced: quote timeline (sorted), market orders, halts, span."""

    venue: str
    symbol: str
    date: str
    start: int
    end: int
    quotes: str
    q_ts: np.ndarray
    q_mid: np.ndarray
    tick: float
    o_ts: np.ndarray
    o_side: np.ndarray
    o_reach: np.ndarray
    o_half: np.ndarray
    halts: np.ndarray
    rows: int
    prints: int


def _active_seconds(a: int, b: int, start: int, end: int, halts: np.ndarray) -> float:
    """Seconds of ``[a, b)`` inside the data span ``[start, end]`` and outside halts."""
    lo, hi = max(a, start), min(b, end)
    if hi <= lo:
        return 0.0
    total = hi - lo
    for h0, h1 in halts:
        total -= max(0, min(hi, h1) - max(lo, h0))
    return total / _NS

