r"""Calibration of the market model (σ, A, k) from limit-order-book events, with intervals.

The model (GLFT 2013, Guéant 2017): the mid follows :math:`dS = \mu\,dt + \sigma\,dW`, and a quote
at distance :math:`\delta` from the mid is filled at rate :math:`\Lambda(\delta) = A e^{-k\delta}` on
each side. Units: prices in the venue's quote currency, time in **seconds** — σ in price/√s,
A in fills/s (per side), k per price unit (``k_per_tick`` = k·tick per tick), μ in price/s.
A parameter file written here is in those units, so use ``T`` in seconds with it.

**σ (volatility).** The mid ``(bid+ask)/2`` is sampled every ``interval`` seconds on a clock grid
(previous-tick: the last quote at or before each grid time, in exchange time ``ts``). With
increments :math:`r_i`, the estimator is the realised variance with ``lags`` autocovariance
corrections (Zhou 1996; a flat realised kernel, Barndorff-Nielsen et al. 2008):

.. math::  \hat\sigma^2 = \frac{1}{n\,\Delta}\sum_i z_i,\qquad
           z_i = r_i^2 + 2\sum_{h=1}^{L} r_i r_{i-h}.

Under i.i.d. microstructure noise of variance ω² in the sampled mid, :math:`E[r_i^2] =
\sigma^2\Delta + 2\omega^2` and :math:`E[r_i r_{i-1}] = -\omega^2`, so :math:`E[z_i] = \sigma^2\Delta`
for every ``L >= 1``: the estimator is unbiased at the chosen interval whatever the noise level (plain
realised variance, ``lags=0``, is biased up by 2ω²/Δ). The result's ``signature`` lists plain
realised σ at several intervals (a volatility signature plot): a curve that changes with the
interval shows noise or lead-lag. Interval: a t-interval (B−1 degrees of freedom) from the means
of B contiguous batches of the :math:`z_i` (batch means: valid for dependent, non-Gaussian
:math:`z_i`; with an intraday volatility pattern it is conservative), mapped to σ by the square
root. Drift (optional): :math:`\hat\mu = \sum r_i/(n\Delta)`, batch-means interval; its
standard error is σ/√T, hopelessly wide over a day.

**A and k.** A market order is the group of trade prints (``execute``, ``trade``; with ``hidden=True``
also ``execute_hidden``) sharing a timestamp and aggressor side. Its *reach* is how far it went
from the mid, in price: :math:`D = \text{side}\,(\text{worst price} - m^-)`, :math:`m^-` the mid of
the last quote strictly before the order's exchange time (not after it; not in half-ticks). A quote
at distance δ is filled when an order reaches at least δ, so the empirical intensity is
:math:`\hat\Lambda(\delta) = \#\{D \ge \delta\}/E`, with exposure E = 2 × the active seconds (both
sides pooled; halts excluded). The fit uses reaches in ``[lo, hi)`` counted in buckets of width
``w`` (default half a tick, the lattice reaches live on; without a tick (hi−lo)/30) plus the open
cell ``[hi, ∞)``: the counts are independent Poisson variables with means
:math:`E A (e^{-k a_j} - e^{-k a_{j+1}})`, which is exactly the model for :math:`\Lambda` on
``[lo, hi]`` (orders below ``lo`` do not enter it; orders beyond ``hi`` enter only through
:math:`\Lambda(hi)`). With :math:`x = e^{-kw}` the maximum-likelihood estimate is closed-form:

.. math::  \hat x = \frac{S}{S + N'},\quad \hat k = -\ln\hat x / w,\quad
           \hat A = \frac{N}{E}\,e^{\hat k\,lo},

N the orders in the fit, N' those below ``hi``, S = Σ (cell index) × count (the tail cell
counting m). Default range: ``lo`` = the median half-spread before the orders (the touch,
floored to the bucket grid), ``hi`` = the 99th percentile of the reaches (ceiled). Intervals are
profile-likelihood intervals (likelihood-ratio, χ²₁ quantile at ``level``), for k from the
conditional likelihood and for A maximising over k at each A. Goodness of fit: the Poisson
deviance G² over the cells, adjacent cells merged until each expects ≥ 5 orders, with
(cells − 2) degrees of freedom (approximate). The non-parametric :math:`\hat\Lambda` per bucket
(``intensity``) covers every reach, inside the fit range or not.

**Per day, per window, pooled.** Each venue/symbol/day shard is reduced by its own consumer
(:func:`calibrate_shard`, a Ray task with a fractional CPU through
:func:`mmray.data.datasets.map_shards`) to the day's estimates, rolling-window estimates
(``window="30min"``, windows aligned to the UTC clock, ``step`` apart) and the arrays the pooled
estimate needs; the top level of the result pools every day (sums of :math:`z_i`, bucket counts
and exposures).

References
----------
Zhou, B. (1996), "High-frequency data and volatility in foreign-exchange rates", JBES 14(1).
Barndorff-Nielsen, Hansen, Lunde, Shephard (2008), "Designing realized kernels", Econometrica 76.
Guéant, O. (2017), "Optimal market making", Appl. Math. Finance 24, arXiv:1605.01862.
Avellaneda, M., Stoikov, S. (2008), "High-frequency trading in a limit order book", Quant. Finance 8.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy import optimize, stats

from mmray.data.datasets import Shard, list_shards, map_shards, worker_info
from mmray.data.errors import DataError
from mmray.data.schema import KINDS, event_batch, kind_codes
from mmray.params import load_params_file  # re-exported: the reader of the files written here

__all__ = ["PARAM_UNITS", "Calibration", "Fit", "GoodnessOfFit", "Intensity", "Settings", "calibrate",
           "calibrate_shard", "load_params_file", "simulate_events", "write_params_file"]

#: Units of every estimate (time in seconds, prices in the venue's quote currency).
PARAM_UNITS: dict[str, str] = {
    "sigma": "price/sqrt(s)", "drift": "price/s", "A": "fills/s per side", "k": "1/price",
    "k_per_tick": "1/tick", "delta": "price from the mid", "intensity": "orders/s per side",
    "tick": "price", "s0": "price", "seconds": "s",
}
#: Intervals (s) of the volatility signature (plain realised σ) reported per day.
SIGNATURE_INTERVALS: tuple[float, ...] = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0)

_COLUMNS = ("ts", "ts_local", "kind", "side", "price", "bid_px", "ask_px")
_BOOK = kind_codes(["add", "cancel", "delete", "execute", "execute_hidden", "cross", "depth", "snapshot"])
_TICKER = kind_codes(["ticker"])
_TRADES = kind_codes(["execute", "trade"])
_TRADES_HIDDEN = kind_codes(["execute", "execute_hidden", "trade"])
_HALT = kind_codes("halt")
#: Venues whose bookTicker rows carry no exchange time (their ``ts`` is borrowed): use the book.
_TICKER_WITHOUT_EXCHANGE_TIME = frozenset({"binance-spot"})
_NS = 1_000_000_000
_NS_PER_DAY = 86_400 * _NS
_EPS = 1e-6  # bucket-edge tolerance, in bucket widths (reaches are differences of floats)
_MAX_DISPLAY_BUCKETS = 120
_MIN_EXPECTED = 5.0  # goodness of fit: merge cells until each expects this many orders


def _seconds(label: str, value: Any) -> float | None:
    """Seconds from a number, a ``datetime.timedelta`` or a pandas-style string (``"30min"``)."""
    if value is None:
        return None
    if isinstance(value, dt.timedelta):
        value = value.total_seconds()
    elif isinstance(value, str):
        import pandas as pd

        try:
            value = pd.Timedelta(value).total_seconds()
        except ValueError:
            raise ValueError(f"{label} must be a duration such as '30min', '1h' or '90s', got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating) \
            or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{label} must be a positive duration, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Settings:
    """How to calibrate (validated when built; durations in seconds or strings like ``"30min"``).

    Parameters
    ----------
    interval : float
        σ sampling interval Δ, seconds (default 1 s).
    lags : int
        Autocovariance lags L of the σ estimator (1: Zhou 1996; 0: plain realised variance).
    batches : int
        Number B of batches for the σ and drift intervals (default 20; fewer when there are
        fewer than 5 increments per batch).
    level : float
        Confidence level of every interval (default 0.95).
    fit_range : (float or None, float or None) or None
        ``(lo, hi)`` of the intensity fit, price from the mid; ``None`` parts take the defaults
        (median half-spread before the orders; 99th percentile of the reaches).
    bucket : float or None
        Bucket width w, price (default: half a tick; without a tick, (hi − lo)/30).
    tick : float or None
        Tick size (default: inferred from the quotes; 0 when the prices are on no grid).
    upper_quantile : float
        Quantile of the reaches that sets the default ``hi`` (0.99).
    hidden : bool
        Count LOBSTER hidden executions as market orders (default ``False``: they print inside
        the spread against hidden orders a visible quote would not be).
    quotes : {"auto", "book", "ticker"}
        Where the mid comes from: book-changing rows (LOBSTER, Binance depth) or bookTicker rows.
        ``auto``: ticker rows when present and carrying an exchange time (not Binance spot), else
        the book.
    drift : bool
        Estimate the drift μ (default ``False``: μ = 0 in the parameter file).
    window, step : float, str or None
        Rolling windows (length and spacing; ``step`` defaults to ``window``), aligned to
        multiples of ``step`` since the epoch (UTC). ``None``: no windows.
    """

    interval: float = 1.0
    lags: int = 1
    batches: int = 20
    level: float = 0.95
    fit_range: tuple[float | None, float | None] | None = None
    bucket: float | None = None
    tick: float | None = None
    upper_quantile: float = 0.99
    hidden: bool = False
    quotes: str = "auto"
    drift: bool = False
    window: float | None = None
    step: float | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "interval", _seconds("interval", self.interval))
        set_(self, "window", _seconds("window", self.window))
        set_(self, "step", _seconds("step", self.step) if self.step is not None else self.window)
        if self.step is not None and self.window is None:
            raise ValueError("step needs a window")
        if self.window is not None and self.window < self.interval:
            raise ValueError(f"window ({self.window:g} s) must be at least the σ interval ({self.interval:g} s)")
        for name, low in (("lags", 0), ("batches", 2)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")
        for name in ("level", "upper_quantile"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v < 1:
                raise ValueError(f"{name} must be a number in (0, 1), got {v!r}")
        for name in ("bucket", "tick"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v)
                                  or v < 0 or (name == "bucket" and v == 0)):
                raise ValueError(f"{name} must be a finite number {'> 0' if name == 'bucket' else '>= 0'}, got {v!r}")
        if self.fit_range is not None:
            fr = tuple(self.fit_range)
            ok = len(fr) == 2 and all(v is None or (not isinstance(v, bool) and isinstance(v, int | float)
                                                    and math.isfinite(v) and v >= 0) for v in fr)
            if not ok or (fr[0] is not None and fr[1] is not None and fr[1] <= fr[0]):
                raise ValueError("fit_range must be (lo, hi) with 0 <= lo < hi (None for a default), "
                                 f"got {self.fit_range!r}")
            set_(self, "fit_range", fr)
        if self.quotes not in ("auto", "book", "ticker"):
            raise ValueError(f"quotes must be one of auto, book, ticker; got {self.quotes!r}")
        for name in ("hidden", "drift"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")


# ---------------------------------------------------------------------------------------------
# Reducing a shard's rows to quotes, market orders and halts (streaming, order-robust)
# ---------------------------------------------------------------------------------------------

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
        tick = _infer_tick(np.concatenate([q_bid, q_ask]))
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


def _infer_tick(prices: np.ndarray) -> float:
    """The price grid step: the smallest gap between distinct quotes, if every quote is on it; else 0."""
    u = np.unique(prices[np.isfinite(prices)])
    if u.size < 2:
        return 0.0
    gaps = np.diff(u)
    g = float(gaps[gaps > 1e-12 * max(1.0, float(np.abs(u).max()))].min(initial=np.inf))
    if not math.isfinite(g):
        return 0.0
    g = float(f"{g:.8g}")  # differences of float prices carry ~1e-12 relative error
    on_grid = np.abs(u / g - np.round(u / g)) < 1e-6
    return g if on_grid.all() else 0.0


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


# ---------------------------------------------------------------------------------------------
# σ: increments on a clock grid, the lag-corrected estimator, batch-means intervals
# ---------------------------------------------------------------------------------------------

def _increments(day: _Day, interval: float, lags: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grid start times (ns), increments r_i and z_i (NaN where unusable), in time order."""
    d = round(interval * _NS)
    first = max(day.start, int(day.q_ts[0]))
    g = np.arange(-(-first // d) * d, day.end // d * d + 1, d, dtype=np.int64)
    if g.size < 2:
        return np.empty(0, np.int64), np.empty(0), np.empty(0)
    mids = day.q_mid[np.searchsorted(day.q_ts, g, side="right") - 1]
    r = np.diff(mids)
    t0 = g[:-1]
    for h0, h1 in day.halts:  # increments overlapping a halt are not price moves
        r[(t0 < h1) & (t0 + d > h0)] = np.nan
    z = r * r
    for h in range(1, lags + 1):
        cross = np.full(r.size, np.nan)
        cross[h:] = r[h:] * r[:-h]
        z = z + 2 * cross
    return t0, r, z


def _batch_interval(x: np.ndarray, batches: int, level: float) -> tuple[float, float, float]:
    r"""Mean of `x` and its t-interval from the means of contiguous batches (at least 5 per batch).

    The variance of the batch means is the mean square successive difference (von Neumann 1941),
    :math:`\sum_j (m_{j+1} - m_j)^2 / (2(B-1))`: unbiased for dependent data within batches like
    the classic batch-means variance, but a slow change of level over the day (intraday
    volatility pattern) barely inflates it. Quantile: Student t with the effective degrees of
    freedom of that estimator for normal batch means, :math:`2(B-1)^2/(3B-4)` (13 for B = 20).
    """
    n = x.size
    if n == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    b = min(batches, n // 5)
    if b < 2:
        return mean, math.nan, math.nan
    m = np.array([c.mean() for c in np.array_split(x, b)])
    var_m = float(np.sum(np.diff(m) ** 2)) / (2 * (b - 1))
    df = 2 * (b - 1) ** 2 / (3 * b - 4)
    half = stats.t.ppf((1 + level) / 2, df) * math.sqrt(var_m / b)
    return mean, mean - half, mean + half


def _sigma(z: np.ndarray, r: np.ndarray, s: Settings) -> dict[str, Any]:
    z = z[np.isfinite(z)]
    var, lo, hi = _batch_interval(z, s.batches, s.level)
    var, lo, hi = var / s.interval, lo / s.interval, hi / s.interval
    out: dict[str, Any] = {
        "sigma": math.sqrt(var) if var > 0 else math.nan,
        "sigma_ci": (math.sqrt(max(lo, 0.0)) if math.isfinite(lo) else math.nan,
                     math.sqrt(hi) if hi > 0 else math.nan),
        "n_increments": int(z.size),
    }
    if s.drift:
        rr = r[np.isfinite(r)]
        mu, mlo, mhi = _batch_interval(rr, s.batches, s.level)
        out["drift"], out["drift_ci"] = mu / s.interval, (mlo / s.interval, mhi / s.interval)
    return out


def _signature(day: _Day) -> tuple[tuple[float, float], ...]:
    """Plain realised σ (price/√s) at each of ``SIGNATURE_INTERVALS`` with ≥ 10 increments."""
    out = []
    span = (day.end - max(day.start, int(day.q_ts[0]))) / _NS
    for iv in SIGNATURE_INTERVALS:
        if span / iv < 10:
            continue
        _, r, _ = _increments(day, iv, 0)
        r = r[np.isfinite(r)]
        if r.size:
            out.append((iv, math.sqrt(float(np.mean(r * r)) / iv)))
    return tuple(out)


# ---------------------------------------------------------------------------------------------
# A, k: bucketed Poisson likelihood on [lo, hi) + [hi, inf), closed-form MLE, profile intervals
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GoodnessOfFit:
    """Poisson deviance of the fitted intensity over the fit cells (merged to ≥ 5 expected).

    ``statistic`` G² = 2 Σ n log(n/μ); ``df`` = cells − 2; ``pvalue`` from χ²(df) (approximate;
    NaN when df < 1). Small p-values say the exponential does not fit Λ on the range.
    """

    statistic: float
    df: int
    pvalue: float
    cells: int


@dataclass(frozen=True)
class Intensity:
    """The non-parametric intensity Λ̂(δ) per distance bucket, next to the fitted one.

    ``delta``: bucket left edges (price from the mid); ``count``: market orders whose reach is in
    ``[delta_i, delta_{i+1})``; ``intensity``: Λ̂(delta_i) = orders reaching ≥ delta_i per second
    and side; ``stderr``: its Poisson standard error; ``fitted``: A e^(−k delta_i); ``in_fit``:
    the edge lies in the fit range; ``width``: bucket width (a multiple of the fit's bucket).
    """

    delta: tuple[float, ...]
    count: tuple[int, ...]
    intensity: tuple[float, ...]
    stderr: tuple[float, ...]
    fitted: tuple[float, ...]
    in_fit: tuple[bool, ...]
    width: float


class _Cells:
    """Reach counts on the fit grid: m cells ``[lo + j w, lo + (j+1) w)`` and the tail ``[hi, ∞)``."""

    def __init__(self, reach: np.ndarray, lo: float, w: float, m: int) -> None:
        r = reach[np.isfinite(reach)]
        j = np.floor((r - lo) / w + _EPS).astype(np.int64)
        j = j[j >= 0]
        self.lo, self.w, self.m = lo, w, m
        self.counts = np.bincount(np.minimum(j, m), minlength=m + 1).astype(np.float64)  # last = tail
        self.N = float(self.counts.sum())
        self.N_below = float(self.counts[:m].sum())  # N'
        self.S = float(np.dot(np.arange(m + 1), self.counts))

    def probs(self, x: float) -> np.ndarray:
        j = np.arange(self.m + 1, dtype=np.float64)
        p = x ** j * (1 - x)
        p[-1] = x ** self.m
        return p


def _loglik(A: float, k: float, c: _Cells, E: float) -> float:
    """ℓ(A, k) = N ln(EA) − N k lo − E A e^(−k lo) − S w k + N' ln(1 − e^(−kw)) (constants dropped)."""
    return (c.N * math.log(E * A) - c.N * k * c.lo - E * A * math.exp(-k * c.lo) - c.S * c.w * k
            + c.N_below * math.log(-math.expm1(-k * c.w)))


def _lr_bounds(f, theta: float, drop: float) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Roots of f(θ) = f(θ̂) − drop either side of θ̂ (f concave-unimodal, → −∞ both ways)."""
    target = f(theta) - drop
    out = []
    for sign in (-1.0, 1.0):
        step = 0.05
        inner, outer = theta, theta + sign * step
        for _ in range(11):  # out to e^±51 times the estimate, then the bound is reported as NaN
            if f(outer) < target:
                break
            inner, step = outer, step * 2
            outer = theta + sign * step
        else:
            out.append(math.nan)
            continue
        out.append(optimize.brentq(lambda t: f(t) - target, min(inner, outer), max(inner, outer), xtol=1e-12))
    return out[0], out[1]


def _fit_cells(c: _Cells, E: float, level: float) -> dict[str, Any]:
    """MLE of A and k on the cells, profile-likelihood intervals, goodness of fit."""
    nan2 = (math.nan, math.nan)
    out: dict[str, Any] = {"A": math.nan, "A_ci": nan2, "k": math.nan, "k_ci": nan2, "gof": None, "note": ""}
    if c.N == 0 or E <= 0:
        out["note"] = "no market orders in the fit range"
        return out
    if c.N_below == 0:
        out["note"] = "every order in the fit reaches beyond hi: k is not identified (raise hi)"
        return out
    if c.S == 0:
        out["note"] = "every order in the fit is in the first bucket: k is not identified (smaller bucket or lo)"
        return out
    x = c.S / (c.S + c.N_below)
    k = -math.log(x) / c.w
    A = c.N / E * math.exp(k * c.lo)
    q = stats.chi2.ppf(level, 1) / 2

    def cond(logk: float) -> float:  # conditional (multinomial) log-likelihood of k
        kk = math.exp(logk)
        return -c.S * c.w * kk + c.N_below * math.log(-math.expm1(-kk * c.w))

    klo, khi = _lr_bounds(cond, math.log(k), q)

    def best_k(a: float) -> float:  # argmax_k ℓ(a, k): root of a decreasing score
        if c.lo == 0:
            return k

        def score(logk: float) -> float:
            kk = math.exp(logk)
            with np.errstate(over="ignore"):
                tail = c.N_below * c.w / np.expm1(kk * c.w)
            return float(-c.N * c.lo - c.S * c.w + E * a * c.lo * math.exp(-kk * c.lo) + tail)

        lo_, hi_ = math.log(k) - 0.5, math.log(k) + 0.5
        while score(lo_) < 0:
            lo_ -= 1.0
        while score(hi_) > 0:
            hi_ += 1.0
        return math.exp(optimize.brentq(score, lo_, hi_, xtol=1e-13))

    def profile_A(logA: float) -> float:
        a = math.exp(logA)
        return _loglik(a, best_k(a), c, E)

    alo, ahi = _lr_bounds(profile_A, math.log(A), q)
    p = c.probs(x)
    out.update(A=A, A_ci=(math.exp(alo), math.exp(ahi)), k=k, k_ci=(math.exp(klo), math.exp(khi)),
               gof=_deviance(c.counts, c.N * p))
    return out


def _deviance(n: np.ndarray, mu: np.ndarray) -> GoodnessOfFit:
    """G² over cells merged left to right until each expects ≥ 5 (the remainder joins the last)."""
    groups_n, groups_mu, acc_n, acc_mu = [], [], 0.0, 0.0
    for ni, mi in zip(n, mu, strict=True):
        acc_n, acc_mu = acc_n + ni, acc_mu + mi
        if acc_mu >= _MIN_EXPECTED:
            groups_n.append(acc_n)
            groups_mu.append(acc_mu)
            acc_n = acc_mu = 0.0
    if acc_mu > 0 or acc_n > 0:
        if groups_n:
            groups_n[-1] += acc_n
            groups_mu[-1] += acc_mu
        else:
            groups_n, groups_mu = [acc_n], [acc_mu]
    gn, gm = np.array(groups_n), np.array(groups_mu)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(gn > 0, gn * np.log(gn / gm), 0.0) - (gn - gm)
    g2 = float(2 * terms.sum())
    df = gn.size - 2
    return GoodnessOfFit(statistic=g2, df=int(df), pvalue=float(stats.chi2.sf(g2, df)) if df >= 1 else math.nan,
                         cells=int(gn.size))


def _grid(reach: np.ndarray, half: np.ndarray, tick: float, s: Settings) -> tuple[float, float, float, str]:
    """``(lo, hi, w, note)`` of the intensity fit: settings first, data-driven defaults for the rest."""
    req_lo, req_hi = s.fit_range if s.fit_range is not None else (None, None)
    r = reach[np.isfinite(reach)]
    h = half[np.isfinite(half)]
    lo = req_lo if req_lo is not None else (float(np.median(h)) if h.size else 0.0)
    lo = max(lo, 0.0)
    above = r[r >= lo - 1e-12]
    hi = req_hi if req_hi is not None else (float(np.quantile(above, s.upper_quantile)) if above.size else math.nan)
    w = s.bucket if s.bucket is not None else (tick / 2 if tick > 0 else None)
    if w is not None:
        if req_lo is None:
            lo = math.floor(lo / w + _EPS) * w
        if not math.isfinite(hi):
            return lo, lo + 2 * w, w, "no market orders"
        cells = max(2, math.ceil((hi - lo) / w - _EPS))
        return round(lo, 12), round(lo + cells * w, 12), w, ""  # on the grid, without float dust
    if not math.isfinite(hi) or hi <= lo:
        return lo, math.nan, math.nan, "no spread of reaches to fit (give fit_range and bucket)"
    return lo, hi, (hi - lo) / 30, ""


def _intensity_table(reach: np.ndarray, E: float, lo: float, hi: float, w: float, A: float, k: float) -> Intensity:
    r = np.sort(reach[np.isfinite(reach) & (reach >= -_EPS * w)])
    top = max(float(r[-1]) if r.size else hi, hi)
    wd = w * max(1, math.ceil(top / (w * _MAX_DISPLAY_BUCKETS)))
    start = lo - math.floor(lo / wd + _EPS) * wd
    edges = start + wd * np.arange(math.floor((top - start) / wd + _EPS) + 2)
    tol = _EPS * w
    ge = (r.size - np.searchsorted(r, edges - tol, side="left")).astype(np.int64)
    counts = ge - np.append(ge[1:], 0)
    fitted = A * np.exp(-k * edges) if math.isfinite(A) and math.isfinite(k) else np.full(edges.size, np.nan)
    return Intensity(delta=tuple(float(e) for e in edges), count=tuple(int(x) for x in counts),
                     intensity=tuple(float(x) for x in ge / E), stderr=tuple(float(x) for x in np.sqrt(ge) / E),
                     fitted=tuple(float(x) for x in fitted),
                     in_fit=tuple(bool(lo - tol <= e <= hi + tol) for e in edges), width=float(wd))


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------

def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _iso(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class Fit:
    """Estimates over one span: a day, a rolling window, or every day pooled.

    Attributes (units in :data:`PARAM_UNITS`): ``sigma`` and ``sigma_ci`` (price/√s, from
    ``n_increments`` increments of ``interval`` s); ``drift``/``drift_ci`` (price/s; ``None``
    unless asked); ``A``/``A_ci`` (fills/s per side), ``k``/``k_ci`` (per price unit),
    ``k_per_tick``/``k_per_tick_ci`` (per tick; ``None`` without a tick); ``seconds`` (active time,
    halts excluded; the exposure is twice that, both sides), ``n_orders`` (market orders),
    ``n_fit`` (orders in the fit range, tail included), ``n_below`` (orders reaching less than
    ``lo``), ``n_stale`` (orders on the wrong side of the prior mid: stale quotes), ``fit_range``
    and ``bucket`` (price), ``gof``, ``intensity`` (days and pooled only), ``signature`` ((interval,
    plain realised σ) pairs; days and pooled only), ``note`` (why a value is NaN).
    """

    venue: str
    symbol: str
    date: str | None
    start: int
    end: int
    seconds: float
    interval: float
    sigma: float
    sigma_ci: tuple[float, float]
    n_increments: int
    A: float
    A_ci: tuple[float, float]
    k: float
    k_ci: tuple[float, float]
    k_per_tick: float | None
    k_per_tick_ci: tuple[float, float] | None
    tick: float
    n_orders: int
    n_fit: int
    n_below: int
    n_stale: int
    fit_range: tuple[float, float]
    bucket: float
    gof: GoodnessOfFit | None
    drift: float | None = None
    drift_ci: tuple[float, float] | None = None
    intensity: Intensity | None = None
    signature: tuple[tuple[float, float], ...] | None = None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN → ``None``; times also as ISO strings)."""
        d = asdict(self)
        d["start_utc"], d["end_utc"] = _iso(self.start), _iso(self.end)
        if self.signature is not None:
            d["signature"] = [{"interval": i, "sigma_rv": v} for i, v in self.signature]
        return _jsonable(d)


def _fit(venue: str, symbol: str, date: str | None, start: int, end: int, seconds: float, z: np.ndarray,
         r: np.ndarray, reach: np.ndarray, tick: float, grid: tuple[float, float, float, str], s: Settings,
         table: bool, signature: tuple[tuple[float, float], ...] | None) -> Fit:
    sig = _sigma(z, r, s)
    lo, hi, w, note = grid
    E = 2 * seconds
    finite = reach[np.isfinite(reach)]
    if math.isfinite(hi) and math.isfinite(w):
        cells = _Cells(finite, lo, w, round((hi - lo) / w))
        est = _fit_cells(cells, E, s.level)
        n_fit = int(cells.N)
    else:
        est = {"A": math.nan, "A_ci": (math.nan, math.nan), "k": math.nan, "k_ci": (math.nan, math.nan),
               "gof": None, "note": note}
        n_fit = 0
    notes = [n for n in (note, est["note"]) if n]
    if not math.isfinite(sig["sigma"]):
        notes.append("sigma: too few usable increments or a non-positive estimate (noise-corrected)")
    intensity = None
    if table and math.isfinite(w) and finite.size and E > 0:
        intensity = _intensity_table(finite, E, lo, hi, w, est["A"], est["k"])
    return Fit(venue=venue, symbol=symbol, date=date, start=int(start), end=int(end), seconds=float(seconds),
               interval=s.interval, sigma=sig["sigma"], sigma_ci=sig["sigma_ci"], n_increments=sig["n_increments"],
               drift=sig.get("drift"), drift_ci=sig.get("drift_ci"), A=est["A"], A_ci=est["A_ci"], k=est["k"],
               k_ci=est["k_ci"], k_per_tick=est["k"] * tick if tick > 0 else None,
               k_per_tick_ci=(est["k_ci"][0] * tick, est["k_ci"][1] * tick) if tick > 0 else None,
               tick=float(tick), n_orders=int(reach.size), n_fit=n_fit,
               n_below=int((finite < lo - _EPS * (w if math.isfinite(w) else 1e-12)).sum()),
               n_stale=int((finite < -_EPS * (w if math.isfinite(w) else 0.0)).sum()),
               fit_range=(float(lo), float(hi)), bucket=float(w), gof=est["gof"],
               intensity=intensity, signature=signature, note="; ".join(notes))


@dataclass
class _DayStats:
    """What pooling needs from one day (small arrays; travels back from the worker)."""

    z: np.ndarray
    r: np.ndarray
    reach: np.ndarray
    half: np.ndarray
    seconds: float
    tick: float
    last_mid: float
    quotes: str
    signature: tuple[tuple[float, float], ...]


@dataclass
class _ShardResult:
    day: Fit
    windows: list[Fit]
    stats: _DayStats
    run: dict[str, Any]


def _analyse(day: _Day, s: Settings, run: dict[str, Any]) -> _ShardResult:
    tick = s.tick if s.tick is not None else day.tick
    t0, r, z = _increments(day, s.interval, s.lags)
    seconds = _active_seconds(day.start, day.end, day.start, day.end, day.halts)
    grid = _grid(day.o_reach, day.o_half, tick, s)
    signature = _signature(day)
    fit = _fit(day.venue, day.symbol, day.date, day.start, day.end, seconds, z, r, day.o_reach, tick, grid, s,
               True, signature)
    windows = []
    if s.window is not None:
        W, S, d = round(s.window * _NS), round(s.step * _NS), round(s.interval * _NS)  # type: ignore[operator]
        first = (day.start - W) // S + 1
        for j in range(first, day.end // S + 1):
            a, b = j * S, j * S + W
            if b <= day.start or a > day.end:
                continue
            inc = (t0 >= a) & (t0 + d <= b)
            orders = (day.o_ts >= a) & (day.o_ts < b)
            sec = _active_seconds(a, b, day.start, day.end, day.halts)
            windows.append(_fit(day.venue, day.symbol, day.date, a, b, sec, z[inc], r[inc], day.o_reach[orders],
                                tick, grid, s, False, None))
    finite_mid = day.q_mid[np.isfinite(day.q_mid)]
    stats_ = _DayStats(z=z[np.isfinite(z)], r=r[np.isfinite(r)], reach=day.o_reach, half=day.o_half, seconds=seconds,
                       tick=tick, last_mid=float(finite_mid[-1]) if finite_mid.size else math.nan, quotes=day.quotes,
                       signature=signature)
    run = {**run, "rows": day.rows, "prints": day.prints, "quotes": day.quotes}
    return _ShardResult(fit, windows, stats_, run)


def calibrate_shard(shard: Shard, settings: Settings, engine: str = "arrow") -> _ShardResult:
    """Calibrate one venue/symbol/day: the per-shard consumer :func:`calibrate` runs as a Ray task.

    Streams the shard's columns ``ts, ts_local, kind, side, price, bid_px, ask_px`` batch by batch
    (`engine` as in :meth:`Shard.batches`) and returns the day's fit, its windows, the arrays the
    pooled fit needs, and where it ran (``run``: pid, Ray worker and node ids, seconds, rows).
    """
    started = time.perf_counter()
    col = _Collector(settings.hidden)
    for b in shard.batches(_COLUMNS, engine=engine):
        col.add(b)
    if col.rows == 0:
        raise DataError(shard.root, None, f"{shard.name} has no rows")
    day = col.finish(shard.venue, shard.symbol, shard.date, settings.quotes)
    result = _analyse(day, settings, {"shard": shard.name})
    result.run.update(worker_info(started))
    return result


@dataclass(frozen=True)
class Calibration:
    """A calibration: every day pooled (``overall``), each day, each rolling window.

    ``sigma``, ``A``, ``k`` (and ``*_ci``, ``drift``, ``k_per_tick``) are the pooled estimates;
    :meth:`params` gives them as :class:`mmray.params.MarketParams` fields, :meth:`to_dict` as one
    JSON-ready object whose top level holds them. ``runs`` records where each shard was reduced
    (process and Ray worker ids, seconds) and is left out of comparisons.
    """

    overall: Fit
    days: tuple[Fit, ...]
    windows: tuple[Fit, ...]
    settings: Settings
    quotes: str
    s0: float
    runs: tuple[dict[str, Any], ...] = field(default=(), compare=False)

    sigma = property(lambda self: self.overall.sigma)
    sigma_ci = property(lambda self: self.overall.sigma_ci)
    A = property(lambda self: self.overall.A)
    A_ci = property(lambda self: self.overall.A_ci)
    k = property(lambda self: self.overall.k)
    k_ci = property(lambda self: self.overall.k_ci)
    k_per_tick = property(lambda self: self.overall.k_per_tick)
    tick = property(lambda self: self.overall.tick)

    def params(self) -> dict[str, float]:
        """:class:`mmray.params.MarketParams` fields: ``sigma``, ``A``, ``k``, ``drift``, ``tick``, ``s0``.

        Raises
        ------
        ValueError
            σ, A or k is not a finite positive number (the note says why).
        """
        out = {"sigma": self.overall.sigma, "A": self.overall.A, "k": self.overall.k}
        bad = [n for n, v in out.items() if not (math.isfinite(v) and v > 0)]
        if bad:
            raise ValueError(f"calibration has no usable {', '.join(bad)} ({self.overall.note or 'no data'})")
        out["drift"] = float(self.overall.drift) if self.overall.drift is not None else 0.0
        out["tick"] = float(self.overall.tick)
        out["s0"] = float(self.s0)
        return out

    def to_dict(self) -> dict[str, Any]:
        """One JSON-ready object: the pooled fit's fields at the top, then ``params`` (or ``None``),
        ``units``, ``methods`` (the estimators in words), ``settings``, ``quotes``, ``days``,
        ``windows`` and ``runs``."""
        try:
            params: dict[str, float] | None = self.params()
        except ValueError:
            params = None
        s = self.settings
        rv = "realised variance" + (f" + {s.lags} autocovariance lag(s) (Zhou 1996)" if s.lags else "")
        methods = {
            "sigma": f"{rv} of the mid sampled every {s.interval:g} s (clock grid, previous tick, exchange time); "
                     f"t-interval from {s.batches} batch means (successive differences)",
            "intensity": "market-order reach from the mid just before the order; Poisson MLE on buckets of the "
                         "fit range plus the tail beyond it; profile-likelihood intervals; G2 goodness of fit",
        }
        return {**self.overall.to_dict(), "params": params, "units": dict(PARAM_UNITS), "methods": methods,
                "settings": _jsonable(asdict(self.settings)), "quotes": self.quotes, "s0": _jsonable(self.s0),
                "days": [d.to_dict() for d in self.days], "windows": [w.to_dict() for w in self.windows],
                "runs": _jsonable(list(self.runs))}


def _pool(results: Sequence[_ShardResult], s: Settings) -> Calibration:
    if not results:
        raise DataError(None, None, "nothing to calibrate: no shard matched")
    results = sorted(results, key=lambda x: (x.day.venue, x.day.symbol, x.day.date or ""))
    pairs = sorted({(x.day.venue, x.day.symbol) for x in results})
    if len(pairs) > 1:
        raise ValueError(f"calibrate one venue/symbol at a time; found {[f'{v}/{s_}' for v, s_ in pairs]} "
                         "(pass venue= and symbol=)")
    st = [x.stats for x in results]
    days = tuple(x.day for x in results)
    if len(results) == 1:
        overall = days[0]
    else:
        ticks = [t.tick for t in st if t.tick > 0]
        tick = min(ticks) if ticks else 0.0
        reach = np.concatenate([t.reach for t in st])
        half = np.concatenate([t.half for t in st])
        seconds = sum(t.seconds for t in st)
        sig = _pooled_signature(st)
        overall = _fit(days[0].venue, days[0].symbol, None, min(d.start for d in days), max(d.end for d in days),
                       seconds, np.concatenate([t.z for t in st]), np.concatenate([t.r for t in st]), reach, tick,
                       _grid(reach, half, tick, s), s, True, sig)
    quotes = "/".join(sorted({t.quotes for t in st}))
    return Calibration(overall=overall, days=days, windows=tuple(w for x in results for w in x.windows), settings=s,
                       quotes=quotes, s0=st[-1].last_mid, runs=tuple(x.run for x in results))


def _pooled_signature(st: Sequence[_DayStats]) -> tuple[tuple[float, float], ...]:
    common = set.intersection(*(set(i for i, _ in t.signature) for t in st)) if st else set()
    out = []
    for iv in sorted(common):
        num = sum(dict(t.signature)[iv] ** 2 * t.seconds for t in st)
        out.append((iv, math.sqrt(num / sum(t.seconds for t in st))))
    return tuple(out)


def _day_of(ts: int) -> str:
    return (dt.date(1970, 1, 1) + dt.timedelta(days=ts // _NS_PER_DAY)).isoformat()


def _from_batches(batches: Iterable[pa.RecordBatch], s: Settings, venue: Any, symbol: Any,
                  date: Any) -> list[_ShardResult]:
    """In-process path: group rows by venue/symbol/day (``date`` column, else the UTC day of ``ts``)."""
    from mmray.data.datasets import _matcher

    keep = [_matcher(n, spec) for n, spec in (("venue", venue), ("symbol", symbol), ("date", date))]
    collectors: dict[tuple[str, str, str], _Collector] = {}
    for b in batches:
        if not b.num_rows:
            continue
        names = b.schema.names
        missing = [c for c in (*_COLUMNS, "venue", "symbol") if c not in names]
        if missing:
            raise DataError(None, None, f"event data lacks columns {missing}")
        ts = b.column("ts").to_numpy(zero_copy_only=False).astype(np.int64)
        if "date" in names:
            dates = b.column("date").cast(pa.string()).to_numpy(zero_copy_only=False).astype(object)
        else:
            days, inv = np.unique(ts // _NS_PER_DAY, return_inverse=True)
            dates = np.array([_day_of(int(x) * _NS_PER_DAY) for x in days], dtype=object)[inv]
        ven = b.column("venue").cast(pa.string()).to_numpy(zero_copy_only=False).astype(object)
        sym = b.column("symbol").cast(pa.string()).to_numpy(zero_copy_only=False).astype(object)
        key = ven + "\x1f" + sym + "\x1f" + dates
        uniq, inverse = np.unique(key, return_inverse=True)
        for i, k in enumerate(uniq):
            v, sy, d = k.split("\x1f")
            if not all(ok(x) for ok, x in zip(keep, (v, sy, d), strict=True)):
                continue
            part = b if uniq.size == 1 else b.filter(pa.array(inverse == i))
            collectors.setdefault((v, sy, d), _Collector(s.hidden)).add(part)
    out = []
    for (v, sy, d), col in sorted(collectors.items()):
        started = time.perf_counter()
        res = _analyse(col.finish(v, sy, d, s.quotes), s, {"shard": f"venue={v}/symbol={sy}/date={d}"})
        res.run.update(worker_info(started))
        out.append(res)
    return out


def calibrate(data: Any, window: Any = None, *, venue: Any = None, symbol: Any = None, date: Any = None,
              step: Any = None, interval: Any = 1.0, lags: int = 1, level: float = 0.95,
              fit_range: tuple[float | None, float | None] | None = None, bucket: float | None = None,
              tick: float | None = None, hidden: bool = False, quotes: str = "auto", drift: bool = False,
              batches: int = 20, upper_quantile: float = 0.99, use_ray: bool = True, num_cpus: float = 0.5,
              engine: str = "arrow", settings: Settings | None = None) -> Calibration:
    """Calibrate σ, A and k (with intervals) per day, per rolling window and pooled.

    Parameters
    ----------
    data : path, URI, pyarrow.Table, ray.data.Dataset or iterable of record batches
        An event dataset (``mmray.data.ingest`` layout; local directory or ``s3://…``): each
        venue/symbol/day shard is reduced by its own consumer, a Ray task with `num_cpus` CPUs
        (:func:`mmray.data.datasets.map_shards`), or in this process with ``use_ray=False``.
        In-memory event tables and Ray datasets are grouped by venue/symbol/day here (a
        ``date`` column, else the UTC day of ``ts``).
    window : str, float or None
        Rolling windows, e.g. ``"30min"`` (see :class:`Settings`, also for `step`, `interval`,
        `lags`, `level`, `fit_range`, `bucket`, `tick`, `hidden`, `quotes`, `drift`, `batches`,
        `upper_quantile`); `settings` replaces all of them.
    venue, symbol, date : str, collection of str, callable or None
        Which partitions to use (pruned before reading). One venue and symbol must remain.
    engine : {"arrow", "ray"}
        How each consumer reads its shard: pyarrow in the task (default), or Ray Data
        (``ray.data.read_parquet``; one CPU is then kept free for its read tasks).

    Returns
    -------
    Calibration

    Raises
    ------
    DataError
        No shard matched, a shard without quotes, or unreadable data.
    ValueError
        Bad settings, or several venues/symbols left after the filters.
    """
    s = settings or Settings(interval=interval, lags=lags, batches=batches, level=level, fit_range=fit_range,
                             bucket=bucket, tick=tick, upper_quantile=upper_quantile, hidden=hidden, quotes=quotes,
                             drift=drift, window=window, step=step)
    if isinstance(data, str | os.PathLike):
        shards = list_shards(data, venue=venue, symbol=symbol, date=date)
        if not shards:
            raise DataError(os.fspath(data), None,
                            f"no partition matches venue={venue!r} symbol={symbol!r} date={date!r}")
        pairs = sorted({(sh.venue, sh.symbol) for sh in shards})
        if len(pairs) > 1:
            raise ValueError(f"calibrate one venue/symbol at a time; found {[f'{v}/{sy}' for v, sy in pairs]} "
                             "(pass venue= and symbol=)")
        results = map_shards(calibrate_shard, shards, num_cpus=num_cpus, use_ray=use_ray,
                             reserve_cpus=1.0 if engine == "ray" else 0.0, settings=s, engine=engine)
        return _pool(results, s)
    if isinstance(data, pa.Table):
        batches_in: Iterable[pa.RecordBatch] = data.to_batches()
    elif isinstance(data, pa.RecordBatch):
        batches_in = [data]
    elif hasattr(data, "iter_batches") and hasattr(data, "materialize"):  # ray.data.Dataset
        data.context.execution_options.preserve_order = True
        batches_in = (b for t in data.iter_batches(batch_format="pyarrow", batch_size=None)
                      for b in (t.to_batches() if isinstance(t, pa.Table) else [t]))
    else:
        batches_in = data
    return _pool(_from_batches(batches_in, s, venue, symbol, date), s)


# ---------------------------------------------------------------------------------------------
# Parameter files
# ---------------------------------------------------------------------------------------------

def write_params_file(calibration: Calibration, path: str | os.PathLike[str]) -> Path:
    """Write the pooled estimates as a JSON parameter file (keys: MarketParams field names).

    The file holds ``sigma``, ``A``, ``k``, ``drift`` (0 unless estimated), ``tick`` (inferred
    or given; simulations then round quotes to it) and ``s0`` (the last mid seen); time unit:
    seconds. Written atomically; :func:`load_params_file` reads it back.
    """
    from mmray.io import atomic_write_text

    return atomic_write_text(path, json.dumps(calibration.params(), indent=2) + "\n")


# ---------------------------------------------------------------------------------------------
# Simulated events with known parameters (the oracle of the tests)
# ---------------------------------------------------------------------------------------------

def simulate_events(sigma: float, A: float, k: float, *, duration: float = 3600.0,
                    seed: int | np.random.SeedSequence | None = None, quote_rate: float = 2.0, s0: float = 100.0,
                    half_spread: float = 0.0, tick: float = 0.0, start: str = "2024-01-02T00:00:00",
                    venue: str = "sim", symbol: str = "SIM",
                    sigma_shape: Callable[[np.ndarray], np.ndarray] | None = None) -> pa.Table:
    """Events (:data:`mmray.data.EVENT_SCHEMA`) of a market with known σ, A and k.

    The mid is a Brownian motion with volatility `sigma` (price/√s) observed at Poisson times
    (rate `quote_rate` per second) as ``ticker`` rows with bid/ask = mid ∓ `half_spread`. On each
    side, market orders arrive as a Poisson process of rate A·e^(−k·half_spread) and reach
    D = half_spread + Exp(k) from the mid in force just before them (then Λ(δ) = A e^(−kδ) for
    δ ≥ half_spread); with `tick` > 0 the reach is floored to the half-tick lattice above the
    half-spread (which keeps Λ exact at the lattice points). Trades are ``trade`` rows, price
    = mid ± D, no quotes. Rows are sorted by time (ns, from `start`, UTC).

    `sigma_shape` (a function of the fraction u ∈ [0, 1] of the duration) makes the volatility
    σ·shape(u)/‖shape‖ (an intraday pattern), normalised so that the mean of σ² over the
    duration stays σ² (the integrated variance a daily estimate targets).
    """
    rng = np.random.default_rng(seed)
    t0 = int(np.datetime64(start, "ns").astype(np.int64))
    nq = rng.poisson(quote_rate * duration)
    tq = np.sort(rng.uniform(0, duration, nq))
    tq_ns = np.concatenate([[t0], t0 + np.round(tq * 1e9).astype(np.int64)])
    dtq = np.diff(tq_ns) / 1e9
    vol = np.full(nq, sigma)
    if sigma_shape is not None:
        norm = math.sqrt(float(np.mean(np.asarray(sigma_shape(np.linspace(0, 1, 100_001)), float) ** 2)))
        centre = ((tq_ns[1:] + tq_ns[:-1]) / 2 - t0) / 1e9 / duration
        vol = sigma * np.asarray(sigma_shape(centre), float) / norm
    mid = s0 + np.concatenate([[0.0], np.cumsum(vol * np.sqrt(dtq) * rng.standard_normal(nq))])
    rate = A * math.exp(-k * half_spread)
    n_buy, n_sell = rng.poisson(rate * duration, 2)
    side = np.concatenate([np.ones(n_buy, np.int8), -np.ones(n_sell, np.int8)])
    tt_ns = t0 + np.round(rng.uniform(0, duration, side.size) * 1e9).astype(np.int64)
    reach = rng.exponential(1 / k, side.size)
    if tick > 0:
        w = tick / 2
        reach = np.floor(reach / w) * w
    reach = half_spread + reach
    before = np.searchsorted(tq_ns, tt_ns, side="left") - 1
    before = np.maximum(before, 0)
    price = mid[before] + side * reach
    n = tq_ns.size + side.size
    ts = np.concatenate([tq_ns, tt_ns])
    is_trade = np.concatenate([np.zeros(tq_ns.size, bool), np.ones(side.size, bool)])
    order = np.argsort(ts, kind="stable")
    kind = np.where(is_trade, kind_codes("trade"), kind_codes("ticker")).astype(np.int8)[order]
    bid = pa.array(np.concatenate([mid - half_spread, np.zeros(side.size)])[order], mask=is_trade[order])
    ask = pa.array(np.concatenate([mid + half_spread, np.zeros(side.size)])[order], mask=is_trade[order])
    px = pa.array(np.concatenate([np.zeros(tq_ns.size), price])[order], mask=~is_trade[order])
    sides = np.concatenate([np.zeros(tq_ns.size, np.int8), side])[order]
    size = pa.array(np.ones(n), mask=~is_trade[order])
    batch = event_batch(n, {"ts": ts[order], "venue": venue, "symbol": symbol, "kind": kind, "side": sides,
                            "price": px, "size": size, "bid_px": bid, "ask_px": ask})
    return pa.Table.from_batches([batch])
