"""Figures of a calibration (PNG, headless): fitted vs empirical intensity, σ over the day, signature.

Same conventions as :mod:`mmray.plots` (whose writer it uses): a :class:`matplotlib.figure.Figure`
without pyplot state, every function returns the path it wrote, files are written atomically,
axes carry units, titles carry the settings.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import matplotlib.dates as mdates
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from mmray.data.calibrate import Calibration, Fit
from mmray.plots import PathLike, _save

__all__ = ["plot_calibration"]


def _ci(v: tuple[float, float], fmt: str = ".3g") -> str:
    return f"[{v[0]:{fmt}}, {v[1]:{fmt}}]"


def _utc(ns: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).replace(tzinfo=None)


def _time_of_day(ns: float) -> dt.datetime:
    """`ns` moved onto 2000-01-01 (UTC clock time), so that several days share one axis."""
    t = _utc(ns)
    return dt.datetime(2000, 1, 1, t.hour, t.minute, t.second, t.microsecond)


def plot_calibration(cal: Calibration, path: PathLike, *, day: str | None = None, title: str = "") -> Path:
    """Fitted vs empirical intensity, σ over the day (per window) and the volatility signature.

    Parameters
    ----------
    cal : Calibration
        From :func:`mmray.data.calibrate.calibrate`.
    path : path
        PNG to write.
    day : str or None
        ``YYYY-MM-DD``: show that day's intensity and signature; ``None``: the pooled fit.
    title : str
        Figure title (default: venue/symbol and the span).

    Returns
    -------
    pathlib.Path
    """
    fit: Fit = cal.overall
    if day is not None:
        match = [d for d in cal.days if d.date == day]
        if not match:
            raise ValueError(f"day {day!r} is not in the calibration; days: {[d.date for d in cal.days]}")
        fit = match[0]
    s = cal.settings
    level = round(100 * s.level)
    fig = Figure(figsize=(17, 4.8), layout="constrained")
    axes = fig.subplots(1, 3)
    _intensity_panel(axes[0], fit, level)
    _sigma_panel(axes[1], cal, level)
    _signature_panel(axes[2], fit, s.interval, s.lags)
    span = fit.date or f"{cal.days[0].date} to {cal.days[-1].date} ({len(cal.days)} days)"
    fig.suptitle(title or f"{fit.venue}/{fit.symbol} {span}: calibration (mid from {cal.quotes} quotes; "
                 f"tick {fit.tick:g}; time in s)")
    return _save(fig, path)


def _intensity_panel(ax: Axes, fit: Fit, level: int) -> None:
    lo, hi = fit.fit_range
    if fit.intensity is None:
        ax.text(0.5, 0.5, f"no intensity table\n{fit.note}", ha="center", va="center", transform=ax.transAxes)
        return
    it = fit.intensity
    d, lam, se = np.array(it.delta), np.array(it.intensity), np.array(it.stderr)
    z = 1.959963984540054  # normal 97.5% quantile: ±1.96 standard errors
    pos = lam > 0
    inside = np.array(it.in_fit) & pos
    ax.errorbar(d[inside], lam[inside], yerr=np.minimum(z * se[inside], lam[inside] * 0.999), fmt="o", ms=3.5,
                color="C0", lw=0.8, label=f"empirical Λ̂(δ), ±1.96 SE (bucket {it.width:.3g})")
    outside = ~np.array(it.in_fit) & pos
    if outside.any():
        ax.plot(d[outside], lam[outside], "o", ms=3.5, color="0.6", label="empirical, outside the fit range")
    if math.isfinite(fit.A) and math.isfinite(fit.k):
        grid = np.linspace(0.0, max(float(d.max()), hi), 300)
        line = fit.A * np.exp(-fit.k * grid)
        infit = (grid >= lo) & (grid <= hi)
        ax.plot(grid[infit], line[infit], "-", color="C3",
                label=f"fit A e^(−kδ): A={fit.A:.3g} {_ci(fit.A_ci)}/s, k={fit.k:.3g} {_ci(fit.k_ci)}/price")
        ax.plot(grid, np.where(infit, np.nan, line), "--", color="C3", lw=0.8, label="fit, extrapolated")
    ax.axvspan(lo, hi, color="C3", alpha=0.07, label=f"fit range [{lo:.4g}, {hi:.4g}]")
    ax.set_yscale("log")
    if pos.any():  # the data set the scale, not the extrapolated line
        ax.set_ylim(lam[pos].min() / 3, lam[pos].max() * 3)
    ax.set_xlabel("distance from the mid δ (price)")
    ax.set_ylabel("Λ(δ) (fills/s per side)")
    gof = fit.gof
    gtxt = f"G²={gof.statistic:.1f}, df={gof.df}, p={gof.pvalue:.2g}" if gof is not None else "no fit"
    kt = f", k·tick={fit.k_per_tick:.3g}" if fit.k_per_tick is not None else ""
    ax.set_title(f"Intensity: {fit.n_fit} of {fit.n_orders} market orders in the fit{kt}\n{gtxt} ({level}% CIs)",
                 fontsize=10)
    ax.legend(fontsize=7, loc="upper right")
    ax.grid(alpha=0.3, which="both")


def _sigma_panel(ax: Axes, cal: Calibration, level: int) -> None:
    s = cal.settings
    several = len({d.date for d in cal.days}) > 1
    overlay = (cal.days[-1].end - cal.days[0].start) / 3.6e12 > 36  # days far apart: time of day, one axis
    if cal.windows:
        for i, date in enumerate(sorted({w.date for w in cal.windows})):
            ws = [w for w in cal.windows if w.date == date and math.isfinite(w.sigma)]
            if not ws:
                continue
            x = [_time_of_day((w.start + w.end) / 2) if overlay else _utc((w.start + w.end) / 2) for w in ws]
            y = np.array([w.sigma for w in ws])
            err = np.array([[w.sigma - w.sigma_ci[0], w.sigma_ci[1] - w.sigma] for w in ws]).T
            ax.errorbar(x, y, yerr=np.nan_to_num(err), fmt="o-", ms=3.5, lw=0.8, capsize=2, color=f"C{i % 10}",
                        label=f"{date}: per {s.window / 60:g}-min window")
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))
        ax.set_xlabel(f"{'time of day' if overlay else 'time'} (UTC, window centre)")
    else:
        x = [_utc((d.start + d.end) / 2) for d in cal.days]
        y = np.array([d.sigma for d in cal.days])
        err = np.array([[d.sigma - d.sigma_ci[0], d.sigma_ci[1] - d.sigma] for d in cal.days]).T
        ax.errorbar(x, y, yerr=np.nan_to_num(err), fmt="o", capsize=3, label="per day")
        if len(x) == 1:  # one point: span that day's data (a lone date otherwise gets a years-wide axis)
            ax.set_xlim(_utc(cal.days[0].start), _utc(cal.days[0].end))
            ax.xaxis.set_major_locator(mdates.AutoDateLocator(maxticks=6))
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d %H:%M:%S" if len(x) == 1 else "%m-%d %H:%M"))
        ax.set_xlabel("time (UTC, day centre)")
    o = cal.overall
    if math.isfinite(o.sigma):
        who = "pooled" if several else "day"
        ax.axhline(o.sigma, color="k", lw=1, label=f"{who}: σ={o.sigma:.4g} {_ci(o.sigma_ci)}")
        if all(math.isfinite(v) for v in o.sigma_ci):
            ax.axhspan(*o.sigma_ci, color="k", alpha=0.08)
    est = "realised variance" if s.lags == 0 else f"RV + {s.lags} autocov. lag{'s' if s.lags > 1 else ''}"
    ax.set_title(f"σ over the day: Δ = {s.interval:g} s, {est}\n"
                 f"{level}% CI from {s.batches} batch means (successive differences)", fontsize=10)
    ax.set_ylabel("σ (price/√s)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    for label in ax.get_xticklabels():
        label.set_rotation(30)


def _signature_panel(ax: Axes, fit: Fit, interval: float, lags: int) -> None:
    if not fit.signature:
        ax.text(0.5, 0.5, "span too short for a signature", ha="center", va="center", transform=ax.transAxes)
        return
    iv, sg = np.array(fit.signature).T
    ax.plot(iv, sg, "o-", ms=4, label="plain realised σ at interval Δ")
    if math.isfinite(fit.sigma):
        ax.errorbar([interval], [fit.sigma], yerr=[[fit.sigma - fit.sigma_ci[0]], [fit.sigma_ci[1] - fit.sigma]],
                    fmt="s", color="C3", capsize=3, label=f"estimate (Δ={interval:g} s, {lags} lag correction)")
    ax.set_xscale("log")
    ax.set_xlabel("sampling interval Δ (s)")
    ax.set_ylabel("σ (price/√s)")
    ax.set_title("Volatility signature: flat = no noise at that Δ\n(rising/falling: lead-lag / bid-ask bounce)",
                 fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, which="both")
