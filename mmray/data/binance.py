"""Raw Binance WebSocket captures (``<receive time> <json>`` lines) as event batches.

One capture is a list of consecutive files of one symbol on one market (spot, USD-M, COIN-M),
each plain or ``.gz``. The files hold diff-depth events, a REST depth snapshot (in the first
file), bookTicker and trade lines. The book is rebuilt following Binance's official rules:

* depth events that arrive before the snapshot are buffered (the event that joins onto the
  snapshot is received *before* the snapshot line);
* spot: drop events with ``u <= lastUpdateId``; the first applied has ``U <= lastUpdateId+1 <= u``;
  then every event has ``U == previous u + 1``;
* futures: drop events with ``u < lastUpdateId``; the first applied has ``U <= lastUpdateId <= u``;
  then every event has ``pu == previous u``.

A break in that chain is a sequence gap: a :class:`DataError` naming file and line by default,
or with ``skip_gaps=True`` the gap is recorded in :class:`CaptureStats`, the book is dropped and
depth events are skipped (and counted) until a new snapshot arrives. The book carries over from
one file to the next, so a day whose file has no snapshot continues from the previous day's
files given before it. Receive times are ns or µs since the epoch (both occur); exchange times
(``E``) are ms. Both clocks are stored as they are: ``ts`` = ``E``, ``ts_local`` = receive time.
"""

from __future__ import annotations

import json
import os
from collections import Counter, OrderedDict, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import numpy as np
import orjson
import pyarrow as pa

from mmray.data._book import LevelBook
from mmray.data._csv import Source, open_source
from mmray.data.errors import DataError
from mmray.data.schema import EVENT_SCHEMA, LEVEL_COLUMNS, EventValidator, event_batch, kind_codes, levels_array

__all__ = ["MARKETS", "CaptureStats", "read_capture"]

MARKETS = ("spot", "usdm", "cm")
_DEPTH, _SNAPSHOT, _TRADE, _TICKER = (kind_codes(k) for k in ("depth", "snapshot", "trade", "ticker"))
_MATCH_WINDOW = 8192  # update ids remembered for the bookTicker comparison
_NO_TOP = (None, None, None, None)


@dataclass
class CaptureStats:
    """What reading a capture found; fill one by passing it to :func:`read_capture`."""

    market: str | None = None
    symbol: str | None = None
    files: list[str] = field(default_factory=list)
    lines: int = 0
    rows: Counter = field(default_factory=Counter)            # rows by kind
    skipped_streams: Counter = field(default_factory=Counter)  # lines of streams not stored (markPrice...)
    non_market_trades: int = 0       # futures trades with X != MARKET (insurance fund, ADL): not stored
    snapshots: int = 0               # snapshots the book was built from
    snapshots_ignored: int = 0       # snapshots received while the book was already in sync
    dropped_before_snapshot: int = 0  # buffered depth events older than the snapshot (the rules drop them)
    gaps: list[dict[str, Any]] = field(default_factory=list)
    skipped_depth_events: int = 0    # depth events not applied because the book was out of sync
    ticker_compared: int = 0         # bookTickers whose update id matched a rebuilt book state
    ticker_mismatches: int = 0
    mismatch_examples: list[str] = field(default_factory=list)
    receive_resolution: dict[str, str] = field(default_factory=dict)  # file → "ns" or "us"
    latency_ns: dict[str, float] = field(default_factory=dict)  # ts_local - ts: min / mean / max

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready copy."""
        d = {k: (dict(v) if isinstance(v, Counter) else v) for k, v in self.__dict__.items()
             if not k.startswith("_")}
        return json.loads(json.dumps(d))


def read_capture(files: Iterable[str | os.PathLike[str]], *, market: str | None = None, skip_gaps: bool = False,
                 levels: int = 10, batch_rows: int = 65_536, stats: CaptureStats | None = None,
                 buffer_events: int = 10_000) -> Iterator[pa.RecordBatch]:
    """Stream a Binance capture as :data:`~mmray.data.schema.EVENT_SCHEMA` record batches.

    Parameters
    ----------
    files : iterable of path
        Consecutive files of one capture, oldest first (plain or ``.gz``).
    market : {"spot", "usdm", "cm"} or None
        The market; inferred from the lines when ``None`` (a contradiction is an error).
    skip_gaps : bool
        Record sequence gaps (and a missing snapshot) in `stats` and go on, instead of raising.
    levels : int
        Book levels per side written to the list columns, on the last row of each depth event.
    batch_rows : int
        Rows per record batch (memory bound).
    stats : CaptureStats or None
        Filled in while reading: gaps, skips, bookTicker comparison, clocks.
    buffer_events : int
        Depth events kept while waiting for a snapshot (older ones are counted as skipped).

    Yields
    ------
    pyarrow.RecordBatch
        Rows of kind ``depth`` (one per level change: ``size`` is the new absolute quantity,
        ``seq`` the event's final update id ``u``), ``snapshot`` (one per snapshot level),
        ``ticker`` (L1 columns from bookTicker, ``seq`` its ``u``) and ``trade`` (aggressor side,
        ``seq`` the trade id, ``order_id`` the resting order's id where the feed gives it).

    Raises
    ------
    DataError
        Naming file and line: invalid JSON or line layout, a receive time that is not ns/µs or
        goes backwards, a symbol or market change, a sequence gap, a capture with depth events
        but no snapshot (unless `skip_gaps`), non-numeric, NaN or negative values, crossed book.
    """
    if market is not None and market not in MARKETS:
        raise ValueError(f"market must be one of {MARKETS}, got {market!r}")
    reader = _Capture(market, skip_gaps, levels, batch_rows, stats or CaptureStats(), buffer_events)
    for path in files:
        yield from reader.read_file(Source(os.fspath(path)))
    reader.finish()


def _lines(fh: IO[bytes], block_size: int = 1 << 22) -> Iterator[bytes]:
    """The lines of `fh` without their newlines, read in blocks (faster than gzip's readline)."""
    carry = b""
    while chunk := fh.read(block_size):
        lines = (carry + chunk).split(b"\n")
        carry = lines.pop()
        yield from lines
    if carry:
        yield carry


def _ns(local: int) -> tuple[int, str]:
    if local >= 10**17:
        return local, "ns"
    if local >= 10**14:
        return local * 1000, "us"
    raise ValueError(local)


def _market_of(obj: dict[str, Any], what: str) -> str | None:
    if what == "depthUpdate":
        return ("cm" if "ps" in obj else "usdm") if "pu" in obj else "spot"
    if what == "bookTicker":
        return "spot" if "e" not in obj else ("cm" if "ps" in obj else "usdm")
    if what == "trade":
        return "spot" if "M" in obj else None
    if what == "snapshot":
        return "cm" if "pair" in obj else ("usdm" if "E" in obj else "spot")
    return None


class _Rows:
    """The rows of one batch, kept per source line (a group of rows sharing times, kind, update
    id and top of book: one tuple) plus per-row side, price and size; expanded to columns on flush."""

    shared = ("ts", "ts_local", "kind", "order_id", "seq", "bid_px", "bid_sz", "ask_px", "ask_sz", "line", "count")

    def __init__(self) -> None:
        self.groups: list[tuple] = []
        self.side: list[int] = []
        self.price: list[float | None] = []
        self.size: list[float | None] = []
        self.deep: list[tuple[int, tuple]] = []  # (row, levels) of the rows that carry the book's levels
        self.rows = 0

    def add(self, line: int, ts: int | None, ts_local: int, kind: int, sides: list[int],
            prices: list[float | None], sizes: list[float | None], order_id: int | None, seq: int | None,
            top: tuple, deep: tuple | None = None) -> None:
        """The rows of one source line: `sides`, `prices`, `sizes` per row, the rest shared;
        `deep` (the book's levels) goes on the last row."""
        n = len(sides)
        self.groups.append((ts, ts_local, kind, order_id, seq, *top, line, n))
        self.side += sides
        self.price += prices
        self.size += sizes
        self.rows += n
        if deep is not None:
            self.deep.append((self.rows - 1, deep))

    def __len__(self) -> int:
        return self.rows

    def flush(self, venue: str, symbol: str) -> tuple[pa.RecordBatch, np.ndarray]:
        groups = dict(zip(self.shared, map(list, zip(*self.groups, strict=True)), strict=True))
        counts, lines = groups.pop("count"), groups.pop("line")
        ts = groups["ts"]
        nxt = None  # lines without an exchange time take the next one seen (then the last one)
        for i in range(len(ts) - 1, -1, -1):
            if ts[i] is None:
                ts[i] = nxt
            else:
                nxt = ts[i]
        prev = next((t for t in ts if t is not None), None)
        for i, t in enumerate(ts):
            if t is None:
                ts[i] = prev if prev is not None else groups["ts_local"][i]
            prev = ts[i]
        group = pa.array(np.repeat(np.arange(len(counts)), counts))
        cols: dict[str, Any] = {name: pa.array(values, EVENT_SCHEMA.field(name).type).take(group)
                                for name, values in groups.items() if name != "kind"}
        cols.update(venue=venue, symbol=symbol, side=np.array(self.side, np.int8),
                    kind=np.repeat(np.array(groups["kind"], np.int8), counts),
                    price=pa.array(self.price, pa.float64()), size=pa.array(self.size, pa.float64()))
        if self.deep:
            rows = np.array([r for r, _ in self.deep])
            valid = np.zeros(self.rows, dtype=bool)
            valid[rows] = True
            for k, name in enumerate(LEVEL_COLUMNS):
                lengths = np.zeros(self.rows, dtype=np.int64)
                lengths[rows] = [len(levels[k]) for _, levels in self.deep]
                values = [x for _, levels in self.deep for x in levels[k]]
                cols[name] = levels_array(np.concatenate([[0], np.cumsum(lengths)]), np.array(values, np.float64),
                                          valid)
        batch = event_batch(self.rows, cols)
        self.__init__()
        return batch, np.repeat(np.array(lines), counts)


class _Capture:
    def __init__(self, market: str | None, skip_gaps: bool, levels: int, batch_rows: int, stats: CaptureStats,
                 buffer_events: int) -> None:
        self.market, self.skip_gaps, self.levels, self.batch_rows = market, skip_gaps, levels, batch_rows
        self.stats = stats
        stats.market = market
        self.book = LevelBook()
        self.synced = False
        self.join_at: int | None = None  # snapshot lastUpdateId awaiting its joining event
        self.last_u: int | None = None
        self.buffer: deque = deque(maxlen=buffer_events)
        self.last_local = 0
        self.tops: OrderedDict[int, tuple] = OrderedDict()
        self.waiting: OrderedDict[int, tuple] = OrderedDict()
        self.rows = _Rows()
        self.src: Source | None = None
        self.line = 0

    # --- errors and bookkeeping -------------------------------------------------------------
    def fail(self, message: str, line: int | None = None) -> DataError:
        return DataError(self.src.label if self.src else None, self.line if line is None else line, message)

    def _check_market(self, found: str | None) -> None:
        if found is None:
            return
        if self.market is None:
            self.market = self.stats.market = found
        elif found != self.market and not (found == "usdm" and self.market == "cm"):
            raise self.fail(f"a {found} line in a {self.market} capture; expected one market per capture")

    def _check_symbol(self, symbol: str | None) -> None:
        if symbol is None:
            return
        if self.stats.symbol is None:
            self.stats.symbol = symbol
        elif symbol != self.stats.symbol:
            raise self.fail(f"symbol {symbol} in a capture of {self.stats.symbol}; expected one symbol")

    # --- reading ----------------------------------------------------------------------------
    def read_file(self, src: Source) -> Iterator[pa.RecordBatch]:
        self.src, self.line = src, 0
        self.stats.files.append(src.label)
        validator = EventValidator(src.label, monotonic=None)
        lat = [np.inf, 0.0, -np.inf, 0]  # min, sum, max, count of ts_local - ts
        with open_source(src) as fh:
            for raw in _lines(fh):
                self.line += 1
                self._line(raw, lat)
                if self.rows.rows >= self.batch_rows:
                    yield self._flush(validator)
        if len(self.rows):
            yield self._flush(validator)
        self.stats.lines += self.line
        if lat[3]:
            self.stats.latency_ns[src.label] = {"min": lat[0], "mean": lat[1] / lat[3], "max": lat[2]}

    def _flush(self, validator: EventValidator) -> pa.RecordBatch:
        batch, lines = self.rows.flush(f"binance-{self.market}", self.stats.symbol or "")
        validator.check(batch, lines)
        return batch

    def _line(self, raw: bytes, lat: list) -> None:
        head, _, payload = raw.partition(b" ")
        try:
            local, resolution = _ns(int(head))
        except ValueError:
            raise self.fail(f"expected '<receive time in ns or µs> <json>', got {raw[:40]!r}") from None
        if local < self.last_local:
            raise self.fail(f"receive time going backwards ({local} ns after {self.last_local} ns)")
        self.last_local = local
        self.stats.receive_resolution.setdefault(self.src.label, resolution)
        try:
            obj = orjson.loads(payload)
        except ValueError:
            raise self.fail("truncated or invalid JSON after the receive time") from None
        if not isinstance(obj, dict):
            raise self.fail("expected a JSON object")
        try:
            self._dispatch(obj, local, lat)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            if isinstance(exc, DataError):
                raise
            raise self.fail(f"malformed message: {type(exc).__name__} {exc}; expected Binance's fields") from None

    def _dispatch(self, obj: dict[str, Any], local: int, lat: list) -> None:
        if "lastUpdateId" in obj:
            self._check_market(_market_of(obj, "snapshot"))
            self._check_symbol(obj.get("symbol"))
            self._snapshot(obj, local)
            return
        data = obj.get("data")
        stream = obj.get("stream", "")
        if not isinstance(data, dict):
            raise self.fail("expected a combined-stream line {'stream': ..., 'data': {...}} or a REST snapshot")
        what = "bookTicker" if stream.endswith("@bookTicker") else data.get("e")
        if what not in ("depthUpdate", "bookTicker", "trade"):
            self.stats.skipped_streams[stream.split("@", 1)[-1]] += 1
            return
        self._check_market(_market_of(data, what))
        self._check_symbol(data["s"])
        ts = data["E"] * 1_000_000 if "E" in data else None
        if ts is not None:
            d = local - ts
            lat[0], lat[1], lat[2], lat[3] = min(lat[0], d), lat[1] + d, max(lat[2], d), lat[3] + 1
        if what == "depthUpdate":
            self._depth(data, ts, local)
        elif what == "bookTicker":
            self._ticker(data, ts, local)
        else:
            self._trade(data, ts, local)

    # --- streams ----------------------------------------------------------------------------
    def _trade(self, d: dict[str, Any], ts: int, local: int) -> None:
        if d.get("X", "MARKET") != "MARKET":
            self.stats.non_market_trades += 1
            return
        maker = d.get("b") if d["m"] else d.get("a")  # buyer is maker → the resting order was the buy
        self.rows.add(self.line, ts, local, _TRADE, [-1 if d["m"] else 1], [float(d["p"])], [float(d["q"])], maker,
                      d["t"], _NO_TOP)
        self.stats.rows["trade"] += 1

    def _ticker(self, d: dict[str, Any], ts: int | None, local: int) -> None:
        top = (float(d["b"]), float(d["B"]), float(d["a"]), float(d["A"]))
        u = d["u"]
        self.rows.add(self.line, ts, local, _TICKER, [0], [None], [None], None, u, top)
        self.stats.rows["ticker"] += 1
        if u in self.tops:
            self._compare(u, top, self.tops[u], self.line)
        elif self.synced and (self.last_u is None or u > self.last_u):
            self.waiting[u] = (top, self.src.label, self.line)
            if len(self.waiting) > _MATCH_WINDOW:
                self.waiting.popitem(last=False)

    def _compare(self, u: int, ticker: tuple, book: tuple, line: int, label: str | None = None) -> None:
        self.stats.ticker_compared += 1
        if ticker != book:
            self.stats.ticker_mismatches += 1
            if len(self.stats.mismatch_examples) < 5:
                self.stats.mismatch_examples.append(
                    f"{label or self.src.label}:{line}: u={u} bookTicker {ticker} vs rebuilt book {book}")

    def _snapshot(self, obj: dict[str, Any], local: int) -> None:
        if self.synced:
            self.stats.snapshots_ignored += 1
            return
        last = obj["lastUpdateId"]
        self.book.clear()
        ts = obj["E"] * 1_000_000 if "E" in obj else None
        for bid, key in ((True, "bids"), (False, "asks")):
            self.book.update(bid, [float(p) for p, _ in obj[key]], [float(q) for _, q in obj[key]])
        deep = self.book.levels(self.levels) if self.levels else None
        top = self.book.top()
        levels = obj["bids"] + obj["asks"]
        self.rows.add(self.line, ts, local, _SNAPSHOT, [1] * len(obj["bids"]) + [-1] * len(obj["asks"]),
                      [float(p) for p, _ in levels], [float(q) for _, q in levels], None, last, top, deep)
        self.stats.rows["snapshot"] += len(levels)
        self.stats.snapshots += 1
        self.synced, self.join_at, self.last_u = True, last, None
        buffered, self.buffer = list(self.buffer), deque(maxlen=self.buffer.maxlen)
        for d, e_ts, e_local, e_line in buffered:
            self._sequenced(d, e_ts, e_local, e_line)

    def _depth(self, d: dict[str, Any], ts: int, local: int) -> None:
        if not self.synced:
            if len(self.buffer) == self.buffer.maxlen:
                self.stats.skipped_depth_events += 1
            self.buffer.append((d, ts, local, self.line))
            return
        self._sequenced(d, ts, local, self.line)

    def _sequenced(self, d: dict[str, Any], ts: int, local: int, line: int) -> None:
        U, u = d["U"], d["u"]
        futures = self.market != "spot"
        if self.join_at is not None:  # waiting for the event that joins onto the snapshot
            last = self.join_at
            if (u < last) if futures else (u <= last):
                self.stats.dropped_before_snapshot += 1
                return
            joins = (U <= last <= u) if futures else (U <= last + 1 <= u)
            if not joins:
                self._gap(line, f"depth event U={U} u={u} does not join the snapshot lastUpdateId={last}; "
                          f"expected U <= {last + (0 if futures else 1)} <= u")
                return
            self.join_at = None
        elif futures and d["pu"] != self.last_u:
            self._gap(line, f"sequence gap: pu={d['pu']}, expected the previous event's u={self.last_u}")
            return
        elif not futures and U != self.last_u + 1:
            self._gap(line, f"sequence gap: U={U}, expected the previous event's u+1={self.last_u + 1}")
            return
        self._apply(d, ts, local, line)

    def _gap(self, line: int, message: str) -> None:
        if not self.skip_gaps:
            raise self.fail(message, line)
        self.stats.gaps.append({"file": self.src.label, "line": line, "message": message})
        self.synced, self.join_at = False, None
        self.book.clear()
        self.stats.skipped_depth_events += 1

    def _apply(self, d: dict[str, Any], ts: int, local: int, line: int) -> None:
        bids, asks = d["b"], d["a"]
        bid_px, bid_sz = [float(p) for p, _ in bids], [float(q) for _, q in bids]
        ask_px, ask_sz = [float(p) for p, _ in asks], [float(q) for _, q in asks]
        self.book.update(True, bid_px, bid_sz)
        self.book.update(False, ask_px, ask_sz)
        prices, sizes = bid_px + ask_px, bid_sz + ask_sz
        u = d["u"]
        self.last_u = u
        top = self.book.top()
        self.tops[u] = top
        if len(self.tops) > _MATCH_WINDOW:
            self.tops.popitem(last=False)
        if u in self.waiting:
            ticker, label, t_line = self.waiting.pop(u)
            self._compare(u, ticker, top, t_line, label)
        deep = self.book.levels(self.levels) if self.levels and prices else None
        self.rows.add(line, ts, local, _DEPTH, [1] * len(bids) + [-1] * len(asks), prices, sizes, None, u, top, deep)
        self.stats.rows["depth"] += len(prices)

    def finish(self) -> None:
        if self.buffer and not self.synced:
            n = len(self.buffer)
            self.stats.skipped_depth_events += n
            if self.stats.snapshots:  # out of sync after a gap (skip_gaps): already recorded
                return
            message = (f"{n} depth events but no REST depth snapshot to build the book from; give the previous "
                       "day's files first (or skip_gaps=True to keep only trades and tickers)")
            if not self.skip_gaps:
                raise self.fail(message, self.buffer[0][3])
            self.stats.gaps.append({"file": self.src.label if self.src else None, "line": self.buffer[0][3],
                                    "message": message})
