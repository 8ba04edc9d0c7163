r"""Estimates per span: a day, its rolling windows, and every day pooled.

:func:`_analyse` turns one reduced day (:class:`~mmray.data.calibrate.events._Day`) into the
day's :class:`Fit`, its rolling-window fits (``window="30min"``, windows aligned to the UTC clock,
``step`` apart, on the day's fit range and buckets; a window's increments are those that start
and end in it) and the small arrays the pooled estimate needs (:class:`_DayStats`).
:func:`_pool` pools every day into a :class:`Calibration` (sums of :math:`z_i`, every reach,
total exposure).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mmray.data.calibrate.events import _NS, _active_seconds, _Day
from mmray.data.calibrate.intensity import _EPS, _Cells, _fit_cells, _grid, _intensity_table, _no_fit
from mmray.data.calibrate.results import Calibration, Fit
from mmray.data.calibrate.settings import Settings
from mmray.data.calibrate.volatility import _increments, _sigma, _signature
from mmray.data.errors import DataError


def _fit(venue: str, symbol: str, date: str | None, start: int, end: int, seconds: float, z: np.ndarray,
         r: np.ndarray, reach: np.ndarray, tick: float, grid: tuple[float, float, float, str], s: Settings,
         table: bool, signature: tuple[tuple[float, float], ...] | None) -> Fit:
    """The fit over one span: σ from its increments (`z`, `r`), A and k from its reaches on `grid`
    (``(lo, hi, w, note)`` of :func:`_grid`); `table`: with the intensity table."""
    sig = _sigma(z, r, s)
    lo, hi, w, note = grid
    E = 2 * seconds
    finite = reach[np.isfinite(reach)]
    if math.isfinite(hi) and math.isfinite(w):
        cells = _Cells(finite, lo, w, round((hi - lo) / w))
        est = _fit_cells(cells, E, s.level)
        n_fit = int(cells.N)
    else:  # no grid to fit on: the grid's note says why
        est = _no_fit("")
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
    """One day reduced (what :func:`~mmray.data.calibrate.sharding.calibrate_shard` returns): its fit,
    its window fits, what pooling needs and ``run`` (which shard, where it ran, for how long, rows)."""

    day: Fit
    windows: list[Fit]
    stats: _DayStats
    run: dict[str, Any]


def _analyse(day: _Day, s: Settings, run: dict[str, Any]) -> _ShardResult:
    """One day's fit, its rolling-window fits (the day's fit range and buckets) and its pooling stats."""
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


def _one_venue_symbol(pairs: Iterable[tuple[str, str]]) -> None:
    """Refuse data of several venue/symbol pairs (a calibration is of one market)."""
    found = sorted(set(pairs))
    if len(found) > 1:
        raise ValueError(f"calibrate one venue/symbol at a time; found {[f'{v}/{s}' for v, s in found]} "
                         "(pass venue= and symbol=)")


def _pool(results: Sequence[_ShardResult], s: Settings) -> Calibration:
    """Every day of one venue/symbol in one :class:`Calibration`; a lone day is its own pooled fit."""
    if not results:
        raise DataError(None, None, "nothing to calibrate: no shard matched")
    results = sorted(results, key=lambda x: (x.day.venue, x.day.symbol, x.day.date or ""))
    _one_venue_symbol((x.day.venue, x.day.symbol) for x in results)
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
    """Realised σ per signature interval that every day has, days weighted by their seconds."""
    common = set.intersection(*(set(i for i, _ in t.signature) for t in st)) if st else set()
    out = []
    for iv in sorted(common):
        num = sum(dict(t.signature)[iv] ** 2 * t.seconds for t in st)
        out.append((iv, math.sqrt(num / sum(t.seconds for t in st))))
    return tuple(out)

