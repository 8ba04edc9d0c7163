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

How it runs: lines are read in blocks of decompressed bytes; each block is parsed (orjson, one
pass of Python per line) into flat record and value arrays, then one pass of a compiled kernel
(:mod:`mmray.data._capture`) applies the depth events by the rules above, compares bookTickers
and writes the rows into fixed-size buffers, which become record batches.
"""

from __future__ import annotations

import json
import os
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import chain
from typing import IO, Any

import numpy as np
import orjson
import pyarrow as pa

from mmray.data import _capture as K
from mmray.data._csv import Source, open_source, prefetch
from mmray.data.errors import DataError
from mmray.data.schema import LEVEL_COLUMNS, EventValidator, event_batch, kind_codes, levels_array

__all__ = ["MARKETS", "CaptureStats", "read_capture"]

MARKETS = ("spot", "usdm", "cm")
_KINDS = kind_codes(["depth", "snapshot", "ticker", "trade"])  # in the order of the kernel's record kinds
#: The book kernel the loader runs (tests swap in :func:`mmray.data._capture.capture_pass_plain`).
_PASS: Callable[..., tuple[int, int]] = K.capture_pass
_BAD_FIELD = (KeyError, TypeError, ValueError, IndexError, AttributeError)


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


def _blocks(fh: IO[bytes], block_size: int = 1 << 22) -> Iterator[list[bytes]]:
    """The lines of `fh` without their newlines, a list per block of bytes read (faster than
    gzip's readline)."""
    carry = b""
    while chunk := fh.read(block_size):
        lines = (carry + chunk).split(b"\n")
        carry = lines.pop()
        yield lines
    if carry:
        yield [carry]


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


@dataclass
class _Block:
    """One block of parsed lines: kernel records, the offsets of their values, the values, and
    the first bad line's error (the records stop before it)."""

    rec: np.ndarray
    voff: np.ndarray
    vals: np.ndarray
    error: DataError | None


class _Capture:
    def __init__(self, market: str | None, skip_gaps: bool, levels: int, batch_rows: int, stats: CaptureStats,
                 buffer_events: int) -> None:
        self.market, self.skip_gaps, self.levels = market, skip_gaps, levels
        self.stats = stats
        stats.market = market
        self.kernel: K.KernelState | None = None  # made once the market is known
        self.batch_rows = batch_rows
        self.buffer: deque = deque(maxlen=buffer_events)  # (record, values, file label) before a snapshot
        self.last_local = 0
        self.labels: list[str] = []
        self.src: Source | None = None
        self.line = 0
        self.validator: EventValidator | None = None

    # --- errors and bookkeeping -------------------------------------------------------------
    def fail(self, message: str, line: int | None = None, label: str | None = None) -> DataError:
        src = label or (self.src.label if self.src else None)
        return DataError(src, self.line if line is None else line, message)

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
        self.labels.append(src.label)
        self.stats.files.append(src.label)
        self.validator = EventValidator(src.label, monotonic=None)
        lat = [np.inf, 0, -np.inf, 0]  # min, sum, max, count of ts_local - ts
        with open_source(src) as fh:
            # lines are decoded (Python, orjson: the GIL) one block ahead on another thread while the
            # book kernel (which releases the GIL) runs over the previous block here
            for block in prefetch(self._parse(lines, lat) for lines in _blocks(fh)):
                if len(block.rec):
                    yield from self._run(block.rec, block.voff, block.vals, len(self.labels) - 1)
                if block.error is not None:
                    raise block.error
        if self.kernel is not None and self.kernel.st[K.S_ROWS]:
            yield self._flush()
        self.stats.lines += self.line
        if lat[3]:
            self.stats.latency_ns[src.label] = {"min": int(lat[0]), "mean": lat[1] / lat[3], "max": int(lat[2])}
        self._sync_stats()

    def _parse(self, lines: list[bytes], lat: list) -> _Block:
        """Records and values of `lines` (one Python pass per line), up to the first bad line."""
        recs: list = []  # flat: REC_COLUMNS values per record (np.array converts a flat list twice as fast)
        vals: list = []
        add, extend, flat, loads = recs.extend, vals.extend, chain.from_iterable, orjson.loads
        line, last_local = self.line, self.last_local
        market, symbol = self.market, self.stats.symbol
        resolutions = self.stats.receive_resolution
        skipped = self.stats.skipped_streams
        error = None
        for raw in lines:
            line += 1
            head, _, payload = raw.partition(b" ")
            try:
                local = int(head)
                if local < 10**17:
                    if local < 10**14:
                        raise ValueError(local)
                    local *= 1000
            except ValueError:
                error = self.fail(f"expected '<receive time in ns or µs> <json>', got {raw[:40]!r}", line)
                break
            if local < last_local:
                error = self.fail(f"receive time going backwards ({local} ns after {last_local} ns)", line)
                break
            last_local = local
            if line == 1:
                resolutions.setdefault(self.src.label, "ns" if local == int(head) else "us")
            try:
                obj = loads(payload)
            except ValueError:
                error = self.fail("truncated or invalid JSON after the receive time", line)
                break
            if type(obj) is not dict:
                error = self.fail("expected a JSON object", line)
                break
            try:
                if "lastUpdateId" in obj:
                    self.line = line  # named by the market and symbol checks
                    found = _market_of(obj, "snapshot")
                    if found != market:
                        self._check_market(found)
                        market = self.market
                    self._check_symbol(obj.get("symbol"))
                    symbol = self.stats.symbol
                    bids, asks = obj["bids"], obj["asks"]
                    k = len(vals)
                    extend(flat(bids))
                    extend(flat(asks))
                    if len(vals) - k != 2 * (len(bids) + len(asks)):
                        raise ValueError("expected [price, quantity] pairs")
                    add((K.R_SNAPSHOT, line, obj.get("E", -1), local, obj["lastUpdateId"], 0, 0, len(bids), len(asks)))
                    continue
                data = obj.get("data")
                stream = obj.get("stream", "")
                if not isinstance(data, dict):
                    error = self.fail("expected a combined-stream line {'stream': ..., 'data': {...}} or a REST "
                                      "snapshot", line)
                    break
                what = "bookTicker" if stream.endswith("@bookTicker") else data.get("e")
                if what == "depthUpdate":
                    found = ("cm" if "ps" in data else "usdm") if "pu" in data else "spot"
                elif what == "bookTicker":
                    found = "spot" if "e" not in data else ("cm" if "ps" in data else "usdm")
                elif what == "trade":
                    found = "spot" if "M" in data else None
                else:
                    skipped[stream.split("@", 1)[-1]] += 1
                    continue
                if found != market and found is not None:
                    self.line = line
                    self._check_market(found)
                    market = self.market
                if data["s"] != symbol:
                    self.line = line
                    self._check_symbol(data["s"])
                    symbol = self.stats.symbol
                e_ms = data.get("E", -1)
                if what == "depthUpdate":
                    bids, asks = data["b"], data["a"]
                    k = len(vals)
                    extend(flat(bids))
                    extend(flat(asks))
                    if len(vals) - k != 2 * (len(bids) + len(asks)):
                        raise ValueError("expected [price, quantity] pairs")
                    add((K.R_DEPTH, line, e_ms, local, data["U"], data["u"], data.get("pu", 0), len(bids), len(asks)))
                elif what == "bookTicker":
                    extend((data["b"], data["B"], data["a"], data["A"]))
                    add((K.R_TICKER, line, e_ms, local, data["u"], 0, 0, 0, 0))
                elif data.get("X", "MARKET") != "MARKET":
                    self.stats.non_market_trades += 1
                    add((K.R_SKIP, line, e_ms, local, 0, 0, 0, 0, 0))  # kept for the latency figures
                else:
                    m = data["m"]
                    maker = data.get("b") if m else data.get("a")  # buyer is maker → the resting order was the buy
                    extend((data["p"], data["q"]))
                    add((K.R_TRADE, line, e_ms, local, data["t"], 0 if maker is None else maker, -1 if m else 1,
                         maker is not None, 0))
            except DataError as exc:
                error = exc
                break
            except _BAD_FIELD as exc:
                error = self._malformed(exc, line)
                break
        self.line, self.last_local = line, last_local
        return self._arrays(recs, vals, error, lat)

    def _malformed(self, exc: Exception, line: int) -> DataError:
        return self.fail(f"malformed message: {type(exc).__name__} {exc}; expected Binance's fields", line)

    def _arrays(self, recs: list, vals: list, error: DataError | None, lat: list) -> _Block:
        """The block's records (flat) and values as arrays; a value that is not a number (or an id
        that is not an integer) ends the block at its line with a 'malformed message' error."""
        width = K.REC_COLUMNS
        try:
            rec = np.array(recs, dtype=np.int64).reshape(-1, width)
        except (*_BAD_FIELD, OverflowError):
            bad = next(k for k in range(len(recs) // width)
                       if not all(type(x) in (int, bool) for x in recs[k * width:(k + 1) * width]))
            record = tuple(recs[bad * width:(bad + 1) * width])
            rec = np.array(recs[:bad * width], dtype=np.int64).reshape(-1, width)
            error = self._malformed(TypeError(f"expected integer ids and times, got {record}"), record[1])
        kind, nlev = rec[:, K.REC_KIND], rec[:, K.REC_NB] + rec[:, K.REC_NA]
        count = np.where(kind <= K.R_SNAPSHOT, 2 * nlev, np.where(kind == K.R_TICKER, 4, 2 * (kind == K.R_TRADE)))
        voff = np.cumsum(count) - count
        used = int(count.sum())
        try:
            values = _floats(vals, used)
        except _BAD_FIELD as exc:
            k = next(k for k, v in enumerate(vals) if not _is_float(v))
            bad = int(np.searchsorted(voff, k, side="right")) - 1
            used = int(voff[bad])
            rec, voff, kind = rec[:bad], voff[:bad], kind[:bad]
            values = np.fromiter(map(float, vals[:used]), np.float64, used)
            error = self._malformed(exc, int(recs[bad * width + 1]))
        e_ms = rec[:, K.REC_TS]
        timed = (e_ms != -1) & (kind != K.R_SNAPSHOT)
        rec[:, K.REC_TS] = np.where(e_ms == -1, K.NO_TS, e_ms * 1_000_000)
        if timed.any():
            d = rec[timed, K.REC_LOCAL] - rec[timed, K.REC_TS]
            lat[0], lat[1], lat[2], lat[3] = min(lat[0], d.min()), lat[1] + int(d.sum()), max(lat[2], d.max()), \
                lat[3] + len(d)
        return _Block(rec, voff, values, error)

    def _state(self) -> K.KernelState:
        if self.kernel is None:
            self.kernel = K.KernelState(self.market != "spot", self.batch_rows, self.levels)
        return self.kernel

    def _run(self, rec: np.ndarray, voff: np.ndarray, vals: np.ndarray, file: int, replay: bool = False,
             label: str | None = None) -> Iterator[pa.RecordBatch]:
        """Run the kernel over a block, doing what it stops for; yields full batches."""
        state = self._state()
        state.st[K.S_FUTURES] = self.market != "spot"
        i = 0
        while True:
            status, i = _PASS(rec, voff, vals, file, i, replay, self.levels, _KINDS, *state.arrays())
            if status == K.DONE:
                return
            if status == K.FLUSH:
                if state.st[K.S_ROWS]:
                    yield self._flush()
                else:  # one record larger than a batch: a batch of its own
                    state.alloc(int(rec[i, K.REC_NB] + rec[i, K.REC_NA]))
                continue
            if status == K.GROW_BOOK:
                state.grow_book()
                continue
            if status == K.BUFFER:
                if len(self.buffer) == self.buffer.maxlen:
                    state.st[K.S_SKIPPED] += 1
                o, m = int(voff[i]), 2 * int(rec[i, K.REC_NB] + rec[i, K.REC_NA])
                self.buffer.append((rec[i:i + 1].copy(), vals[o:o + m].copy(), self.src.label))
            elif status == K.SNAPSHOT:
                held, self.buffer = list(self.buffer), deque(maxlen=self.buffer.maxlen)
                for event, values, event_label in held:
                    yield from self._run(event, np.zeros(1, np.int64), values, file, True, event_label)
            elif status == K.GAP:
                self._gap(rec, i, label)
            elif status == K.MISMATCH:
                self._example(state)
            i += 1

    def _gap(self, rec: np.ndarray, i: int, label: str | None) -> None:
        st = self.kernel.st
        code, a, b, c = (int(x) for x in st[K.S_INFO:K.S_INFO + 4])
        U, u = int(rec[i, K.REC_X]), int(rec[i, K.REC_Y])
        if code == K.GAP_JOIN:
            message = (f"depth event U={U} u={u} does not join the snapshot lastUpdateId={c}; "
                       f"expected U <= {c + (0 if st[K.S_FUTURES] else 1)} <= u")
        elif code == K.GAP_PU:
            message = f"sequence gap: pu={a}, expected the previous event's u={c if b else None}"
        else:
            message = f"sequence gap: U={a}, expected the previous event's u+1={c + 1 if b else None}"
        line = int(rec[i, K.REC_LINE])
        if not self.skip_gaps:
            raise self.fail(message, line, label)
        self.stats.gaps.append({"file": label or self.src.label, "line": line, "message": message})

    def _example(self, state: K.KernelState) -> None:
        u, line, file = (int(x) for x in state.st[K.S_INFO:K.S_INFO + 3])

        def top(v: np.ndarray) -> tuple:
            return tuple(None if np.isnan(x) else float(x) for x in v)

        self.stats.mismatch_examples.append(f"{self.labels[file]}:{line}: u={u} bookTicker {top(state.fi[:4])} vs "
                                            f"rebuilt book {top(state.fi[4:])}")

    def _flush(self) -> pa.RecordBatch:
        """The rows in the kernel's buffers as a validated record batch (copied; buffers emptied)."""
        state = self.kernel
        n = int(state.st[K.S_ROWS])
        oi, of, ob = state.oi[:, :n].copy(), state.of[:, :n].copy(), state.ob[:, :n].copy()
        flags = ob[K.O_FLAGS]
        ts = oi[K.O_TS]
        missing = ts == K.NO_TS
        if missing.any():  # lines without an exchange time take the next one seen (then the last one)
            known = np.flatnonzero(~missing)
            if known.size:
                nxt = np.searchsorted(known, np.flatnonzero(missing))
                ts[missing] = ts[known[np.minimum(nxt, known.size - 1)]]
            else:
                ts[missing] = oi[K.O_LOCAL][missing]
        cols: dict[str, Any] = {
            "ts": ts, "ts_local": oi[K.O_LOCAL], "venue": f"binance-{self.market}", "symbol": self.stats.symbol or "",
            "kind": ob[K.O_KIND], "side": ob[K.O_SIDE], "seq": oi[K.O_SEQ],
            "order_id": pa.array(oi[K.O_ORDER], mask=(flags & K.F_ORDER) == 0),
        }
        for name, row, bit in (("price", K.O_PRICE, K.F_PRICE), ("size", K.O_SIZE, K.F_PRICE),
                               ("bid_px", K.O_BID_PX, K.F_BID), ("bid_sz", K.O_BID_SZ, K.F_BID),
                               ("ask_px", K.O_ASK_PX, K.F_ASK), ("ask_sz", K.O_ASK_SZ, K.F_ASK)):
            cols[name] = pa.array(of[row], mask=(flags & bit) == 0)
        deep = (flags & K.F_DEEP) != 0
        if deep.any():
            for k, name in enumerate(LEVEL_COLUMNS):
                offsets = state.doff[k // 2, :n + 1]
                cols[name] = levels_array(offsets.copy(), state.dv[k, :offsets[-1]].copy(), deep)
        batch = event_batch(n, cols)
        state.st[K.S_ROWS] = 0
        if state.oi.shape[1] != self.batch_rows:
            state.alloc(self.batch_rows)
        self.validator.check(batch, oi[K.O_LINE])
        return batch

    def _sync_stats(self) -> None:
        if self.kernel is None:
            return
        st, stats = self.kernel.st, self.stats
        for name, slot in (("depth", K.S_DEPTH_ROWS), ("snapshot", K.S_SNAPSHOT_ROWS), ("ticker", K.S_TICKER_ROWS),
                           ("trade", K.S_TRADE_ROWS)):
            if st[slot]:
                stats.rows[name] = int(st[slot])
        stats.snapshots, stats.snapshots_ignored = int(st[K.S_SNAPSHOTS]), int(st[K.S_IGNORED])
        stats.dropped_before_snapshot, stats.skipped_depth_events = int(st[K.S_DROPPED]), int(st[K.S_SKIPPED])
        stats.ticker_compared, stats.ticker_mismatches = int(st[K.S_COMPARED]), int(st[K.S_MISMATCHES])

    def finish(self) -> None:
        if self.buffer and (self.kernel is None or not self.kernel.st[K.S_SYNCED]):
            n = len(self.buffer)
            state = self._state()
            state.st[K.S_SKIPPED] += n
            self._sync_stats()
            if self.stats.snapshots:  # out of sync after a gap (skip_gaps): already recorded
                return
            event, _, label = self.buffer[0]
            line = int(event[0, K.REC_LINE])
            message = (f"{n} depth events but no REST depth snapshot to build the book from; give the previous "
                       "day's files first (or skip_gaps=True to keep only trades and tickers)")
            if not self.skip_gaps:
                raise self.fail(message, line, label)
            self.stats.gaps.append({"file": label, "line": line, "message": message})


def _floats(vals: list, used: int) -> np.ndarray:
    """``float()`` of ``vals[:used]`` as an array: the decimal strings by a compiled parser, the
    rest (numbers, exponents, ...) by ``float`` itself."""
    try:
        buf = ("\n".join(vals[:used]) + "\n").encode("ascii") if used else b""
        framed = buf.count(b"\n") == used
    except (TypeError, UnicodeEncodeError):
        framed = False
    if not framed:
        return np.fromiter(map(float, vals[:used]), np.float64, used)
    values, ok = np.empty(used), np.empty(used, np.bool_)
    K.parse_decimals(np.frombuffer(buf, np.uint8), values, ok)
    for k in np.flatnonzero(~ok):
        values[k] = float(vals[k])
    return values


def _is_float(value: Any) -> bool:
    try:
        float(value)
    except _BAD_FIELD:
        return False
    return True
