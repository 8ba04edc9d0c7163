"""Matplotlib figures (PNG, headless) a quant can read without the console: sample paths, PnL
distributions, quote surfaces, strategy comparisons, and the figures of a Ray Tune sweep
(efficient frontier, metric against parameters, robustness).

Each figure has two functions: ``<name>_figure(...)`` builds and returns the
:class:`matplotlib.figure.Figure` (no pyplot state; tests inspect it) and ``plot_<name>(..., path)``
saves it atomically as PNG and returns the path written (the sweep figures return ``None`` when
the table holds nothing to draw).

Conventions, in every figure:

* the title says what is drawn, and a second line the run's settings (:func:`run_settings`,
  :func:`settings_text`): paths, seed, risk aversion γ and objective, the market model (σ, A, k,
  fill and price models, dt, ...) and, for solutions, the solver;
* every axis and colour bar states its unit, as in docs/math.md §0: ``price``, ``shares``,
  ``currency`` (price × shares) and ``time`` (the unit ``T`` is measured in);
* error bars are 95% confidence intervals, ±1.96 standard errors (the metrics' ``*_se``);
* series are told apart by colour, marker and line style; earlier series are drawn wider and
  underneath, so a series that coincides with another still shows as a band round the thin line,
  and curves that are identical at plot resolution are drawn once with a label naming all of them;
* quotes of a tick-grid policy (``solved_for`` set, or time interpolation ``"previous"``) are drawn
  as step functions and as cells on a discrete colour scale, never interpolated; cells and
  inventories where a side is not quoted are marked.
"""

from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import BoundaryNorm, Colormap, ListedColormap, Normalize
from matplotlib.container import ErrorbarContainer
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, NullLocator
from matplotlib.transforms import Bbox

from mmray.backtest import BacktestResult
from mmray.io import atomic_write
from mmray.params import MarketParams, ProblemParams, SimConfig
from mmray.policy import TablePolicy

PathLike = str | os.PathLike[str]

#: multiplier of a standard error for the 95% confidence intervals drawn as error bars
Z95 = 1.96
CI_LABEL = "bars: 95% CI (±1.96 SE)"
_CI_LINES = "bars: 95% CI\n(±1.96 SE)"

# units (docs/math.md §0)
PRICE, SHARES, CURRENCY, TIME = "price", "shares", "currency", "time"

#: metric name -> (what it is, unit)
METRICS: dict[str, tuple[str, str]] = {
    "pnl_mean": ("mean terminal PnL", CURRENCY),
    "pnl_std": ("terminal PnL std", CURRENCY),
    "sharpe": ("Sharpe ratio per episode", "dimensionless"),
    "max_drawdown": ("mean max drawdown", CURRENCY),
    "trades_mean": ("fills per path", "fills"),
    "spread_mean": ("mean quoted spread", PRICE),
    "q_final_mean": ("mean terminal inventory", SHARES),
    "q_final_std": ("terminal inventory std", SHARES),
    "ce_A": ("certainty equivalent, objective A", CURRENCY),
    "value_B": ("value, objective B", CURRENCY),
    "loss_rel": ("relative loss", "fraction"),
}

#: parameter / setting name -> (symbol, unit); "" for categories and identifiers
PARAMS: dict[str, tuple[str, str]] = {
    "method": ("solver", ""), "strategy": ("strategy", ""),
    "n_paths": ("paths", "paths"), "seed": ("seed", ""),
    "gamma": ("γ", "1/currency"), "objective": ("objective", ""),
    "sigma": ("σ", "price/√time"), "A": ("A", "fills/time"), "k": ("k", "1/price"),
    "drift": ("μ", "price/time"), "trade_size": ("Δ", SHARES), "tick": ("tick", PRICE), "s0": ("S₀", PRICE),
    "T": ("T", TIME), "q_max": ("Q", SHARES), "terminal_penalty": ("ℓ", "currency/share²"),
    "dt": ("dt", TIME), "fill_model": ("fills", ""), "price_model": ("prices", ""), "q0": ("q₀", SHARES),
    "chunk_size": ("chunk size", "paths"),
    "half_spread": ("half-spread", PRICE), "skew": ("skew", "price/share"), "n_times": ("time-grid points", "count"),
}

_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">")
_LINESTYLES = ("-", "--", "-.", ":")
_NO_QUOTE = "0.82"  # light grey: not a colour of viridis


# --------------------------------------------------------------------------- settings, labels, styles


#: settings :func:`run_settings` leaves out at these values
_NEUTRAL: dict[str, Any] = {"drift": 0.0, "trade_size": 1.0, "tick": 0.0, "terminal_penalty": 0.0, "q0": 0.0,
                            "chunk_size": SimConfig().chunk_size}


def run_settings(
    market: MarketParams | None = None,
    problem: ProblemParams | None = None,
    config: SimConfig | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The settings a figure's title shows, by parameter name, in reading order: ``extra`` first
    (e.g. ``method="exact"``), then paths, seed, γ, objective, the market, the problem and the
    simulator. Parameters at their neutral value (no drift, Δ = 1, no tick, no terminal penalty,
    q₀ = 0, the default chunk size) are left out."""
    out: dict[str, Any] = {}
    if config is not None:
        out.update(n_paths=config.n_paths, seed=config.seed)
    if problem is not None:
        out.update(gamma=problem.gamma, objective=problem.objective)
    if market is not None:
        out.update(sigma=market.sigma, A=market.A, k=market.k, drift=market.drift, trade_size=market.trade_size,
                   tick=market.tick)
    if problem is not None:
        out.update(T=problem.T, q_max=problem.q_max, terminal_penalty=problem.terminal_penalty)
    if config is not None:
        out.update(dt=config.dt, fill_model=config.fill_model, price_model=config.price_model, q0=config.q0,
                   chunk_size=config.chunk_size)
    return {**extra, **{k: v for k, v in out.items() if k not in extra and (k not in _NEUTRAL or v != _NEUTRAL[k])}}


def _fmt(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        return f"{float(value):g}"
    return str(value)


def settings_text(settings: Mapping[str, Any] | None, width: int = 120) -> str:
    """``settings`` as ``symbol=value`` items (``γ=0.01``, ``paths=1000``, ``Q=∞`` for an unbounded
    inventory), wrapped into lines of at most ``width`` characters between items."""
    if not settings:
        return ""
    items = []
    for name, value in settings.items():
        symbol = PARAMS.get(name, (name, ""))[0]
        items.append(f"{symbol}=∞" if name == "q_max" and value is None else f"{symbol}={_fmt(value)}")
    return "\n".join(textwrap.wrap(", ".join(items), width=width, break_long_words=False, break_on_hyphens=False))


def _title(fig: Figure, what: str, settings: Mapping[str, Any] | None) -> None:
    """Suptitle: ``what``, then the settings, both wrapped to the figure's width."""
    width = max(60, int(fig.get_figwidth() * 12.5))
    text = settings_text(settings, width)
    head = "\n".join(textwrap.wrap(what, width=width, break_long_words=False))
    fig.suptitle(head + (f"\n{text}" if text else ""), fontsize=10)


def metric_label(metric: str) -> str:
    """Axis label of a metric with its unit, e.g. ``ce_A: certainty equivalent, objective A [currency]``."""
    what, unit = METRICS.get(metric, ("", "as reported"))
    return f"{metric}: {what} [{unit}]" if what else f"{metric} [{unit}]"


def metric_unit(metric: str) -> str:
    """Unit of a metric (``currency``, ``shares``, ...)."""
    return METRICS.get(metric, ("", "as reported"))[1]


def param_label(name: str, categorical: bool = False) -> str:
    """Axis label of a swept parameter with its unit, e.g. ``gamma: γ [1/currency]``; categories
    (fill model, solver) are labelled ``[category]``."""
    symbol, unit = PARAMS.get(name, (name, "as in the sweep file"))
    unit = "category" if categorical or not unit else unit
    return f"{name}: {symbol} [{unit}]" if symbol != name else f"{name} [{unit}]"


def plus_minus(value: float, err: float | None) -> str:
    """``value ± err`` with ``err`` to two significant digits and ``value`` to the same decimal
    place (``1122.62 ± 0.97``); ``value`` alone to 4 significant digits without a finite ``err``."""
    if err is None or not math.isfinite(err) or not math.isfinite(value):
        return f"{value:.4g}"
    if err <= 0:
        return f"{value:.6g} ± 0"
    decimals = max(0, 1 - math.floor(math.log10(err)))
    return f"{value:.{decimals}f} ± {err:.{decimals}f}"


def _share(i: int, n: int) -> float:
    """1 for the first of ``n`` series, falling to 0 for the last (how much wider it is drawn)."""
    return (n - 1 - i) / (n - 1) if n > 1 else 0.0


def series_style(i: int, n: int) -> dict[str, Any]:
    """Matplotlib style of series ``i`` of ``n``: own colour, marker and line style; earlier series
    wider, with larger markers, and underneath (a series equal to a later one stays visible)."""
    w = _share(i, n)
    return {"color": f"C{i % 10}", "marker": _MARKERS[i % len(_MARKERS)], "ls": _LINESTYLES[i % len(_LINESTYLES)],
            "lw": 1.2 + 1.8 * w, "ms": 4.0 + 3.0 * w, "zorder": 2 + i}


def _same(a: np.ndarray, b: np.ndarray, span: float) -> bool:
    """Whether two curves are identical at plot resolution (NaN where the other is NaN)."""
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=0.0, atol=1e-3 * span + 1e-12, equal_nan=True))


def _merge(curves: Sequence[tuple[str, np.ndarray]], span: float) -> list[tuple[list[str], np.ndarray]]:
    """Group curves that are identical at plot resolution: each group is drawn once, labelled by all."""
    groups: list[tuple[list[str], np.ndarray]] = []
    for label, y in curves:
        for labels, first in groups:
            if _same(first, y, span):
                labels.append(label)
                break
        else:
            groups.append(([label], y))
    return groups


def _span(*arrays: np.ndarray) -> float:
    finite = np.concatenate([a[np.isfinite(a)].ravel() for a in arrays])
    return float(np.ptp(finite)) if finite.size else 1.0


def _save(fig: Figure, path: PathLike, dpi: int = 110) -> Path:
    return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png"))


# --------------------------------------------------------------------------- backtests


def _result_settings(results: Sequence[tuple[str, BacktestResult]], settings: Mapping[str, Any] | None
                     ) -> dict[str, Any]:
    """Settings of one or several backtests of the same run; a setting that differs between
    strategies (a tick-grid policy is simulated without a second tick) names who has which."""
    per = [(name, run_settings(r.market, r.problem, r.config)) for name, r in results]
    keys = list(dict.fromkeys(k for _, s in per for k in s))
    out: dict[str, Any] = dict(settings or {})
    for key in keys:
        if key in out:
            continue
        values = [(name, s.get(key, _NEUTRAL.get(key))) for name, s in per]
        distinct = list(dict.fromkeys(_fmt(v) for _, v in values))
        if len(distinct) == 1:
            out[key] = values[0][1]
        else:
            out[key] = "; ".join(f"{v} ({', '.join(n for n, w in values if _fmt(w) == v)})" for v in distinct)
    return out


def paths_figure(result: BacktestResult, title: str = "", n: int = 10,
                 settings: Mapping[str, Any] | None = None) -> Figure:
    """Mid price, inventory and mark-to-market PnL of the first ``n`` recorded paths (one colour per
    path, the same in every panel), with the inventory bound ±Q. The title shows ``title`` and
    the run's settings from ``result`` (its market, problem and simulator), updated by
    ``settings``."""
    if result.paths is None:
        raise ValueError("the backtest recorded no paths: run it with record > 0")
    p = result.paths
    k = min(n, p["q"].shape[0])
    fig = Figure(figsize=(10, 7.5), layout="constrained")
    axes = fig.subplots(3, 1, sharex=True)
    for i in range(k):
        lw = 0.7 + 1.3 * _share(i, k)  # earlier paths wider and underneath: overlapping inventories stay visible
        style = {"color": f"C{i % 10}", "lw": lw, "zorder": 2 + i}
        axes[0].plot(p["t"], p["s"][i], label=f"path {i}", **style)
        axes[1].step(p["t"], p["q"][i], where="post", label=f"path {i}", **style)
        axes[2].plot(p["t"], p["pnl"][i], label=f"path {i}", **style)
    q_max = result.problem.q_max
    if q_max is not None and k and float(np.max(np.abs(p["q"][:k]))) >= q_max / 2:
        for sign in (1, -1):
            axes[1].axhline(sign * q_max, color="k", ls=":", lw=1.0, zorder=1,
                            label=f"inventory bound ±Q = ±{q_max:g}" if sign == 1 else None)
    elif q_max is not None:  # far from the paths: named, not drawn (it would squash them)
        axes[1].plot([], [], color="k", ls=":", lw=1.0, label=f"inventory bound ±Q = ±{q_max:g} (beyond the axis)")
    axes[2].axhline(0.0, color="k", lw=0.6, zorder=1)
    axes[0].set_ylabel("mid price S [price]")
    axes[1].set_ylabel("inventory q [shares]")
    axes[2].set_ylabel("PnL marked to mid [currency]")
    axes[2].set_xlabel("time t [time]")
    for ax in axes:
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    h, lab = axes[1].get_legend_handles_labels()
    fig.legend(handles + h[k:], labels + lab[k:], loc="outside right center", fontsize=8,
               title="same colour =\nsame path in\nevery panel", title_fontsize=8)
    total = result.config.n_paths
    what = f"first {k} of {total} simulated paths"
    _title(fig, f"{title} ({what})" if title else what.capitalize(), _result_settings([("", result)], settings))
    return fig


def plot_paths(result: BacktestResult, path: PathLike, title: str = "", n: int = 10,
               settings: Mapping[str, Any] | None = None) -> Path:
    """Save :func:`paths_figure` as PNG at ``path``."""
    return _save(paths_figure(result, title, n, settings), path)


def pnl_distribution_figure(results: Mapping[str, BacktestResult],
                            settings: Mapping[str, Any] | None = None) -> Figure:
    """Distributions of terminal PnL (outlined histograms on common bins, one colour and line
    style per strategy, dotted line at each mean) and of terminal inventory (bars side by side per
    inventory level, as shares of paths)."""
    names = list(results)
    n = len(names)
    fig = Figure(figsize=(13, 4.8), layout="constrained")
    ax_w, ax_q = fig.subplots(1, 2)
    pooled = np.concatenate([results[m].per_path["pnl"] for m in names]) if names else np.zeros(1)
    finite = pooled[np.isfinite(pooled)]
    edges = np.histogram_bin_edges(finite if finite.size else np.zeros(1), bins=70)
    for i, name in enumerate(names):
        st = series_style(i, n)
        pnl = results[name].per_path["pnl"]
        mean = float(pnl.mean())
        se = float(pnl.std(ddof=1)) / math.sqrt(pnl.size) if pnl.size > 1 else float("nan")
        std = float(pnl.std(ddof=1)) if pnl.size > 1 else float("nan")
        ax_w.hist(pnl, bins=edges, density=True, histtype="step", color=st["color"], ls=st["ls"], lw=st["lw"],
                  zorder=st["zorder"], label=f"{name}: mean {plus_minus(mean, Z95 * se)} (95% CI), std {std:.4g}")
        ax_w.axvline(mean, color=st["color"], ls=":", lw=st["lw"], zorder=st["zorder"])
    ax_w.set_xlabel("terminal PnL W [currency]")
    ax_w.set_ylabel("density [1/currency]")
    ax_w.set_title("terminal PnL (outlines; dotted: means)", fontsize=9)

    step = float(next(iter(results.values())).market.trade_size) if names else 1.0
    levels = np.unique(np.concatenate([np.round(results[m].per_path["q_final"] / step) for m in names])) \
        if names else np.zeros(0)
    if levels.size and levels[-1] - levels[0] <= 400:
        width = 0.85 / max(n, 1)
        grid = np.arange(levels[0], levels[-1] + 1)
        for i, name in enumerate(names):
            qf = np.round(results[name].per_path["q_final"] / step)
            counts = np.bincount((qf - grid[0]).astype(np.int64), minlength=grid.size) / max(qf.size, 1)
            st = series_style(i, n)
            ax_q.bar((grid + (i - (n - 1) / 2) * width) * step, counts, width=width * step, color=st["color"],
                     label=f"{name}: std {float(np.std(qf * step, ddof=1)) if qf.size > 1 else float('nan'):.3g}")
        ax_q.set_ylabel("share of paths [fraction]")
        ax_q.set_title("terminal inventory (bars side by side per level)", fontsize=9)
    else:  # too many levels for bars: outlines
        for i, name in enumerate(names):
            st = series_style(i, n)
            ax_q.hist(results[name].per_path["q_final"], bins=70, density=True, histtype="step", color=st["color"],
                      ls=st["ls"], lw=st["lw"], zorder=st["zorder"], label=name)
        ax_q.set_ylabel("density [1/shares]")
        ax_q.set_title("terminal inventory (outlines)", fontsize=9)
    ax_q.set_xlabel("terminal inventory q_T [shares]")
    for ax in (ax_w, ax_q):
        ax.legend(fontsize=7, title="strategy", title_fontsize=7)
        ax.grid(alpha=0.3)
    n_paths = {results[m].per_path["pnl"].size for m in names}
    what = f"Terminal PnL and inventory of {', '.join(names)}" + \
        (f" over {n_paths.pop()} paths each" if len(n_paths) == 1 else "")
    _title(fig, what, _result_settings(list(results.items()), settings))
    return fig


def plot_pnl_distribution(results: Mapping[str, BacktestResult], path: PathLike,
                          settings: Mapping[str, Any] | None = None) -> Path:
    """Save :func:`pnl_distribution_figure` as PNG at ``path``."""
    return _save(pnl_distribution_figure(results, settings), path)


# --------------------------------------------------------------------------- quotes


def _edges(centres: np.ndarray, step: float = 1.0) -> np.ndarray:
    """Cell edges around equally or unequally spaced ``centres`` (half-way between neighbours)."""
    c = np.asarray(centres, dtype=float)
    if c.size == 1:
        return np.array([c[0] - step / 2, c[0] + step / 2])
    mid = (c[1:] + c[:-1]) / 2
    return np.concatenate([[2 * c[0] - mid[0]], mid, [2 * c[-1] - mid[-1]]])


def _discrete_scale(values: np.ndarray, tick: float | None) -> tuple[Colormap, Normalize, np.ndarray | None]:
    """Colour map and norm of offsets: one colour per tick level when the offsets sit on a tick grid
    (at most 24 levels), else a continuous scale."""
    finite = np.unique(values[np.isfinite(values)])
    if finite.size == 0:
        finite = np.array([0.0, 1.0])
    if tick is not None and 1 <= finite.size <= 24:
        gap = tick if finite.size == 1 else float(np.min(np.diff(finite)))
        bounds = np.concatenate([[finite[0] - gap / 2], (finite[1:] + finite[:-1]) / 2, [finite[-1] + gap / 2]])
        cmap = ListedColormap(colormaps["viridis"](np.linspace(0, 1, finite.size))).with_extremes(bad=_NO_QUOTE)
        return cmap, BoundaryNorm(bounds, finite.size), finite
    cmap = colormaps["viridis"].with_extremes(bad=_NO_QUOTE)
    lo, hi = float(finite[0]), float(finite[-1])
    return cmap, Normalize(lo, hi if hi > lo else lo + 1.0), None


def quote_surface_figure(
    times: np.ndarray,
    q_grid: np.ndarray,
    bid: np.ndarray,
    ask: np.ndarray,
    title: str = "",
    settings: Mapping[str, Any] | None = None,
    solved_for: Mapping[str, Any] | None = None,
    interpolation: str = "linear",
    bid_on: np.ndarray | None = None,
    ask_on: np.ndarray | None = None,
) -> Figure:
    """Bid and ask offsets ``δ(t, q)`` from the mid: two cell maps on one colour scale (t up, q
    across; grey cells: side not quoted), offsets against inventory at a few times, and against
    time at a few inventories.

    A continuous-time solution (``solved_for`` None, ``interpolation="linear"``) is drawn as lines
    through its grid points. A tick-grid policy (``solved_for`` set, e.g. a ``pi``/``csp``
    solution, or ``interpolation="previous"``: row ``j`` holds on ``[times[j], times[j+1])``) is
    drawn as step functions, its cells span their decision intervals, and the colour scale has one
    colour per offset level. Not quoted: where ``bid_on``/``ask_on`` is False if given, else where
    the offset is not finite; marked by grey cells and by crosses on the slice panels.
    """
    times, q_grid = np.asarray(times, dtype=float), np.asarray(q_grid, dtype=float)
    bid_on = np.isfinite(bid) if bid_on is None else np.asarray(bid_on, dtype=bool) & np.isfinite(bid)
    ask_on = np.isfinite(ask) if ask_on is None else np.asarray(ask_on, dtype=bool) & np.isfinite(ask)
    bid = np.where(bid_on, np.asarray(bid, dtype=float), np.nan)
    ask = np.where(ask_on, np.asarray(ask, dtype=float), np.nan)
    steps = solved_for is not None or interpolation == "previous"
    tick = None
    if solved_for is not None:
        tick = (solved_for.get("grid") or {}).get("tick", solved_for.get("tick"))
    dq = float(q_grid[1] - q_grid[0]) if q_grid.size > 1 else 1.0
    n_rows = times.size - 1 if steps and times.size > 1 else times.size  # "previous": the row at T holds nowhere
    t_edges = times if steps and times.size > 1 else _edges(times)

    fig = Figure(figsize=(13, 9), layout="constrained")
    (ax_b, ax_a), (ax_q, ax_t) = fig.subplots(2, 2)
    cmap, norm, levels = _discrete_scale(np.concatenate([bid[:n_rows].ravel(), ask[:n_rows].ravel()]),
                                         tick if steps else None)
    mesh = None
    for ax, data, on, name in ((ax_b, bid, bid_on, "bid offset δᵇ(t, q)"), (ax_a, ask, ask_on, "ask offset δᵃ(t, q)")):
        mesh = ax.pcolormesh(_edges(q_grid, dq), t_edges, np.ma.masked_invalid(data[:n_rows]), cmap=cmap, norm=norm,
                             shading="flat", rasterized=True)
        ax.set_xlabel("inventory q [shares]")
        ax.set_ylabel("time t [time]")
        cells = "one cell per decision interval" if steps else "one cell per grid point"
        ax.set_title(f"{name}: {cells}" + ("; grey: not quoted" if not on[:n_rows].all() else ""), fontsize=9)
    assert mesh is not None
    bar = fig.colorbar(mesh, ax=[ax_b, ax_a], label="offset from mid δ [price]" + (f" (tick {tick:g})" if tick else ""))
    if levels is not None:
        shown = levels if levels.size <= 12 else levels[:: math.ceil(levels.size / 12)]
        bar.set_ticks(shown)
        bar.set_ticklabels([f"{v:g}" for v in shown])

    span = _span(bid[:n_rows], ask[:n_rows])
    # offsets against inventory at a few times (identical rows merged); colour: time, style: side
    last = max(n_rows - 1, 0)
    rows = list(dict.fromkeys(min(round(f * last), last) for f in (0.0, 0.5, 0.9, 1.0)))
    groups = _merge([(f"t={times[i]:.4g}", np.concatenate([bid[i], ask[i]])) for i in rows], span)
    n_q = q_grid.size
    time_handles, unquoted = [], set()
    for g, (labels, both) in enumerate(groups):
        st = series_style(g, len(groups))
        common = {"color": st["color"], "lw": st["lw"], "zorder": st["zorder"]}
        label = "t=" + ", ".join(lab[2:] for lab in labels) + (" (identical)" if len(labels) > 1 else "")
        b, a = both[:n_q], both[n_q:]
        lines = [("bid", b, "-"), ("ask", a, "--")]
        both_on = np.isfinite(b) & np.isfinite(a)
        if both_on.any() and _same(b[both_on], a[both_on], span):  # bid = ask (e.g. at t = T): one solid line
            label += ", bid = ask"
            lines = [("bid = ask", np.where(np.isfinite(b), b, a), "-")]
        time_handles.append(Line2D([], [], color=st["color"], lw=st["lw"], label=label))
        for side, y, ls in lines:
            if steps:
                ax_q.step(q_grid, y, where="mid", ls=ls, label=f"{side}, {label}", **common)
            else:
                ax_q.plot(q_grid, y, ls=ls, marker="." if n_q <= 25 else "", ms=3, label=f"{side}, {label}", **common)
        for side, y, marker in (("bid", b, "x"), ("ask", a, "+")):
            off_q = q_grid[~np.isfinite(y)]
            if off_q.size:
                unquoted.add(side)
                ax_q.plot(off_q, np.full(off_q.size, 0.03 + 0.045 * g), marker=marker, ls="none", ms=7,
                          color=st["color"], transform=ax_q.get_xaxis_transform(), clip_on=False,
                          label=f"{side} not quoted, {label}")
    ax_q.add_artist(ax_q.legend(handles=time_handles, fontsize=7, loc="upper left", title="colour: time",
                                title_fontsize=7))
    side_handles = [Line2D([], [], color="k", ls="-", label="bid δᵇ"),
                    Line2D([], [], color="k", ls="--", label="ask δᵃ")]
    side_handles += [Line2D([], [], color="k", marker=mk, ls="none", label=f"{side} not quoted (at the axis foot)")
                     for side, mk in (("bid", "x"), ("ask", "+")) if side in unquoted]
    ax_q.legend(handles=side_handles, fontsize=7, loc="upper right", title="style: side", title_fontsize=7)
    ax_q.set_xlabel("inventory q [shares]")
    ax_q.set_ylabel("offset from mid δ [price]")
    ax_q.set_title("offsets vs inventory (solid: bid, dashed: ask" + ("; steps" if steps else "") + ")", fontsize=9)

    # offsets against time at a few inventories (identical curves merged, e.g. bid at q = ask at -q)
    q_top = float(q_grid[-1])
    picks = [0.0, round(q_top / 2 / dq) * dq, q_top - dq, -(q_top - dq)]
    cols = list(dict.fromkeys(int(np.argmin(np.abs(q_grid - v))) for v in picks))
    curves = [(f"{side} at q={q_grid[j]:g}", data[:, j]) for j in cols for side, data in (("bid", bid), ("ask", ask))]
    groups = _merge(curves, span)
    t_plot = times
    for g, (labels, y) in enumerate(groups):
        st = series_style(g, len(groups))
        common = {"color": st["color"], "lw": st["lw"], "zorder": st["zorder"],
                  "ls": "-" if labels[0].startswith("bid") else "--", "label": " = ".join(labels)}
        if steps:
            ax_t.step(t_plot, y, where="post", **common)
        else:
            ax_t.plot(t_plot, y, **common)
        gaps = ~np.isfinite(y)
        if gaps.any():
            ax_t.plot(t_plot[gaps], np.full(int(gaps.sum()), 0.03 + 0.04 * g), marker="x", ls="none", ms=5,
                      color=st["color"], transform=ax_t.get_xaxis_transform(), clip_on=False,
                      label=f"not quoted: {' = '.join(labels)}")
    ax_t.set_xlabel("time t [time]")
    ax_t.set_ylabel("offset from mid δ [price]")
    ax_t.set_title("offsets vs time (solid: bid, dashed: ask" + ("; steps" if steps else "") + ")", fontsize=9)
    for ax in (ax_q, ax_t):  # headroom above the curves for the legends
        ax.grid(alpha=0.3)
        lo, hi = ax.get_ylim()
        ax.set_ylim(lo, hi + 0.45 * (hi - lo))
    ax_t.legend(fontsize=7, loc="upper center", ncol=2,
                title="colour: curve; solid: bid, dashed: ask", title_fontsize=7)
    settings = dict(settings or {})
    for key in ("dt", "fill_model", "price_model"):  # the discrete problem the quotes were chosen for
        if solved_for is not None and key in solved_for and key not in settings:
            settings[key] = solved_for[key]
    kind = f"on a tick grid{f' of {tick:g}' if tick else ''} (step functions)" if steps else "(continuous time)"
    _title(fig, f"{title or 'Quotes'}: bid and ask offsets {kind}", settings)
    return fig


def plot_quote_surface(
    times: np.ndarray,
    q_grid: np.ndarray,
    bid: np.ndarray,
    ask: np.ndarray,
    path: PathLike,
    title: str = "",
    settings: Mapping[str, Any] | None = None,
    solved_for: Mapping[str, Any] | None = None,
    interpolation: str = "linear",
) -> Path:
    """Save :func:`quote_surface_figure` as PNG at ``path``."""
    return _save(quote_surface_figure(times, q_grid, bid, ask, title, settings, solved_for, interpolation), path)


def policy_figure(policy: TablePolicy, title: str = "", settings: Mapping[str, Any] | None = None) -> Figure:
    """:func:`quote_surface_figure` of a table policy: its quoting masks, its ``solved_for`` and
    interpolation, and settings from its market and problem (the solver from its provenance),
    updated by ``settings``."""
    solver = policy.provenance.get("solver")
    derived = run_settings(policy.market, policy.problem, **({"method": solver} if solver else {}))
    return quote_surface_figure(policy.times, policy.q_grid, policy.bid, policy.ask, title,
                                {**derived, **(settings or {})}, policy.solved_for, policy.interpolation,
                                policy.bid_on, policy.ask_on)


def plot_policy(policy: TablePolicy, path: PathLike, title: str = "",
                settings: Mapping[str, Any] | None = None) -> Path:
    """Save :func:`policy_figure` as PNG at ``path``."""
    return _save(policy_figure(policy, title, settings), path)


# --------------------------------------------------------------------------- comparison

#: the metrics drawn with error bars in the comparison figure
COMPARED = ("pnl_mean", "value_B", "ce_A")


def comparison_figure(metrics: Mapping[str, Mapping[str, float]], keys: Sequence[str] = (),
                      settings: Mapping[str, Any] | None = None) -> Figure:
    """Strategies side by side: mean PnL, value_B and ce_A with 95% confidence intervals from their
    ``*_se`` (one panel each, own scale, value written next to each point), above a table of
    ``keys`` (metric ± standard error, units in the header)."""
    names = list(metrics)
    n = len(names)
    top, bottom = 2.4 + 0.42 * n, (0.5 + 0.25 * (n + 1) if keys else 0.0)
    fig = Figure(figsize=(13, top + bottom), layout="constrained")
    grid = fig.add_gridspec(2 if keys else 1, 3, height_ratios=[top, bottom] if keys else [1])
    panels = [fig.add_subplot(grid[0, 0])]
    panels += [fig.add_subplot(grid[0, j], sharey=panels[0]) for j in (1, 2)]
    ys = np.arange(n)
    for ax, key in zip(panels, COMPARED, strict=True):
        for i, name in enumerate(names):
            st = series_style(i, n)
            value = metrics[name].get(key)
            se = metrics[name].get(f"{key}_se")
            if value is None or not math.isfinite(value):
                ax.annotate("n/a", (0.5, ys[i]), xycoords=("axes fraction", "data"), ha="center", va="center",
                            fontsize=8, color=st["color"])
                continue
            half = Z95 * se if se is not None and math.isfinite(se) else 0.0
            ax.errorbar([value], [ys[i]], xerr=[half], fmt=st["marker"], color=st["color"], ms=6, capsize=4,
                        lw=1.5, label=name)
            ax.annotate(plus_minus(value, half), (value, ys[i]), xytext=(0, 7), textcoords="offset points",
                        ha="center", fontsize=7, color=st["color"])
        ax.set_xlabel(metric_label(key), fontsize=9)
        ax.grid(alpha=0.3)
        ax.margins(x=0.25, y=0.6 / max(n, 1))
    panels[0].set_yticks(ys, names)
    panels[0].invert_yaxis()
    panels[0].legend(fontsize=7, loc="best", title="strategy: mean, bar: 95% CI", title_fontsize=7)
    for ax in panels[1:]:
        ax.tick_params(labelleft=False)
    if keys:
        ax_t = fig.add_subplot(grid[1, :])
        ax_t.axis("off")
        cells = []
        for name in names:
            row = []
            for key in keys:
                value, se = metrics[name].get(key), metrics[name].get(f"{key}_se")
                row.append("—" if value is None else plus_minus(value, se))
            cells.append(row)
        table = ax_t.table(cellText=cells, rowLabels=names, colLabels=[f"{k} [{metric_unit(k)}]" for k in keys],
                           loc="upper center", cellLoc="center")
        table.auto_set_font_size(False)
        table.set_fontsize(8)
        table.scale(1.0, 1.3)
        ax_t.set_title("table: metric ± 1 standard error (SE)", fontsize=9)
    settings = dict(settings or {})
    n_paths = {metrics[m].get("n_paths") for m in names} - {None}
    if "n_paths" not in settings and len(n_paths) == 1:
        settings = {"n_paths": n_paths.pop(), **settings}
    _title(fig, f"Strategy comparison: {', '.join(names)} (bars: 95% CI of each mean, ±1.96 SE; not a paired test)",
           settings)
    return fig


def plot_comparison_table(metrics: Mapping[str, Mapping[str, float]], path: PathLike, keys: tuple[str, ...],
                          settings: Mapping[str, Any] | None = None) -> Path:
    """Save :func:`comparison_figure` as PNG at ``path``."""
    return _save(comparison_figure(metrics, keys, settings), path)


# --------------------------------------------------------------------------- sweep results (mmray.tuning)
# Each takes a sweep's results table (mmray.tuning.results: one row per trial, a ``status`` and a
# ``strategy`` column, the swept parameters and the metrics with ``_se`` columns) and the sweep's
# base settings (run_settings(spec.market, spec.problem, spec.sim)); the title shows those that
# do not vary, with the paths and seed of the trials read from the table.


def _sweep_settings(settings: Mapping[str, Any] | None, rows: pd.DataFrame, swept: Collection[str]
                    ) -> dict[str, Any]:
    out = {k: v for k, v in (settings or {}).items() if k not in swept and k not in ("n_paths", "seed")}
    lead: dict[str, Any] = {}
    if "n_paths_done" in rows and len(rows):
        done = sorted({int(v) for v in rows["n_paths_done"]})
        lead["n_paths"] = f"{done[0]} per trial" if len(done) == 1 else f"{done[0]}–{done[-1]} per trial"
    if "seed" in rows and len(rows):
        seeds = {str(v) for v in rows["seed"].dropna()}
        if len(seeds) == 1:
            lead["seed"] = seeds.pop() + " (every trial)"
        elif seeds:
            lead["seed"] = "one per trial (results table)"
    return {**lead, **out}


def _figure_legend(fig: Figure, axes: Sequence[Axes], title: str) -> None:
    """One legend for all panels, right of them (never over the data), each label once."""
    uniq: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            uniq.setdefault(label, handle)
    # strategies (error bars) first, then reference lines and markers
    uniq = dict(sorted(uniq.items(), key=lambda kv: not isinstance(kv[1], ErrorbarContainer)))
    fig.legend(list(uniq.values()), list(uniq), loc="outside right center", fontsize=8, title=title,
               title_fontsize=8)


def frontier_figure(table: pd.DataFrame, strategies: Sequence[str], name: str,
                    settings: Mapping[str, Any] | None = None) -> Figure | None:
    """Efficient frontier: mean PnL against PnL std and against terminal inventory std, one line
    per strategy over the risk aversion γ (γ written next to the points where there is room, the
    lines' ends first); ``None`` without complete trials."""
    ok = table[table["status"] == "ok"]
    if ok.empty or "gamma" not in ok:
        return None
    fig = Figure(figsize=(12.5, 5.2), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    drawn = [s for s in strategies if not ok[ok["strategy"] == s].empty]
    labels: list[list[tuple[int, int, Axes, float, float, str, str]]] = [[], []]  # (priority, order, ...)
    for i, strategy in enumerate(drawn):
        d = ok[ok["strategy"] == strategy].sort_values("gamma")
        st = series_style(i, len(drawn))
        for ax, x in zip(axes, ("pnl_std", "q_final_std"), strict=True):
            xerr = Z95 * d[f"{x}_se"] if f"{x}_se" in d else None
            ax.errorbar(d[x], d["pnl_mean"], yerr=Z95 * d["pnl_mean_se"], xerr=xerr, capsize=2, label=strategy,
                        elinewidth=1.0, **st)
            for j in range(len(d)):
                r = d.iloc[j]
                labels[j not in (0, len(d) - 1)].append(
                    (i, j, ax, float(r[x]), float(r["pnl_mean"]), f"γ={r['gamma']:g}", st["color"]))
    axes[0].set_xlabel("pnl_std: terminal PnL std [currency]")
    axes[1].set_xlabel("q_final_std: terminal inventory std [shares]")
    axes[0].set_ylabel("pnl_mean: mean terminal PnL [currency]")
    for ax in axes:
        ax.grid(alpha=0.3)
    _figure_legend(fig, axes, "strategy\n" + _CI_LINES)
    _title(fig, f"Efficient frontier over risk aversion γ [1/currency] (sweep {name!r}): up and left is better",
           _sweep_settings(settings, ok, ("gamma",)))
    _label_points(fig, [(ax, x, y, text, color) for group in labels for _, _, ax, x, y, text, color in group])
    return fig


def _label_points(fig: Figure, points: Sequence[tuple[Axes, float, float, str, str]]) -> None:
    """Write each point's text next to it, in the first of four corners where it overlaps no text
    already written and no other point, in the order given (most important first); a text that
    finds no room is left out. Lays the figure out once to measure."""
    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    pad = 3.0 * fig.dpi / 72
    taken: dict[Axes, list[Bbox]] = {}
    for ax, x, y, _, _ in points:
        px, py = ax.transData.transform((x, y))
        taken.setdefault(ax, []).append(Bbox.from_extents(px - pad, py - pad, px + pad, py + pad))
    for ax, x, y, text, color in points:
        inside = ax.get_window_extent(renderer)
        for dx, dy, ha, va in ((5, 4, "left", "bottom"), (5, -4, "left", "top"), (-5, 4, "right", "bottom"),
                               (-5, -4, "right", "top")):
            ann = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", ha=ha, va=va, fontsize=7,
                              color=color, annotation_clip=True)
            ann.set_in_layout(False)
            box = ann.get_window_extent(renderer)
            own = Bbox.from_extents(*ax.transData.transform((x, y)), *ax.transData.transform((x, y)))
            clear = [b for b in taken[ax] if not (b.x0 <= own.x0 <= b.x1 and b.y0 <= own.y0 <= b.y1)]
            if inside.contains(box.x0, box.y0) and inside.contains(box.x1, box.y1) \
                    and not any(box.overlaps(b) for b in clear):
                taken[ax].append(box)
                break
            ann.remove()


def plot_frontier(table: pd.DataFrame, strategies: Sequence[str], name: str, path: PathLike,
                  settings: Mapping[str, Any] | None = None) -> Path | None:
    """Save :func:`frontier_figure` as PNG at ``path``; ``None`` (nothing written) without data."""
    fig = frontier_figure(table, strategies, name, settings)
    return None if fig is None else _save(fig, path, dpi=100)


def _positions(values: pd.Series, cats: Sequence[str], shift: float, log: bool, span: float) -> pd.Series:
    """x positions of one strategy's points, nudged sideways by ``shift`` (in units of a slot: the
    strategies side by side, so that equal points and error bars do not hide each other): on a
    category axis (``cats``) the category's index + ``shift``; on a log axis the value times
    ``exp(shift / 4)``; on a linear one the value + ``shift * span / 10``."""
    if cats:
        return values.astype(str).map(list(cats).index) + shift
    return values * math.exp(shift / 4) if log else values + shift * span / 10


def metric_vs_params_figure(table: pd.DataFrame, strategies: Sequence[str], params: Sequence[str], metric: str,
                            log_params: Collection[str], name: str,
                            settings: Mapping[str, Any] | None = None) -> Figure | None:
    """``metric`` against each swept parameter in ``params`` (numeric ones first; ``log_params``
    on a log axis; categories with strategies side by side), one colour and marker per strategy,
    trials stopped early by ASHA as grey crosses; ``None`` without trials to draw."""
    ok = table[table["status"].isin(["ok", "stopped"])]
    names = [n for n in params if n in ok and pd.api.types.is_numeric_dtype(ok[n])]
    names += [n for n in params if n in ok and n not in names]
    if ok.empty or not names:
        return None
    fig = Figure(figsize=(max(4.4 * len(names), 6.0) + 1.6, 4.6), layout="constrained")
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    drawn = [s for s in strategies if not ok[ok["strategy"] == s].empty]
    for ax, param in zip(axes, names, strict=True):
        numeric = pd.api.types.is_numeric_dtype(ok[param])
        cats = [] if numeric else list(dict.fromkeys(ok[param].astype(str)))
        log = numeric and param in log_params
        span = float(np.ptp(ok[param])) if numeric and len(ok) else 0.0
        for i, strategy in enumerate(drawn):
            d = ok[ok["strategy"] == strategy]
            st = series_style(i, len(drawn))
            shift = (i - (len(drawn) - 1) / 2) * 0.12
            full = d[d["status"] == "ok"]
            se = full.get(f"{metric}_se")
            ax.errorbar(_positions(full[param], cats, shift, log, span), full[metric],
                        yerr=None if se is None else Z95 * se, fmt=st["marker"], color=st["color"], ms=st["ms"],
                        zorder=st["zorder"], capsize=2, label=strategy)
            stopped = d[d["status"] == "stopped"]
            if not stopped.empty:
                ax.plot(_positions(stopped[param], cats, shift, log, span), stopped[metric], "x", color="grey", ms=6,
                        zorder=1, label="stopped early by ASHA (fewer paths)")
        if not numeric:
            ax.set_xticks(range(len(cats)), cats)
            ax.set_xlim(-0.5, len(cats) - 0.5)
        elif log:
            ax.set_xscale("log")
        ax.set_xlabel(param_label(param, categorical=not numeric))
        ax.set_ylabel(metric_label(metric))
        ax.grid(alpha=0.3)
    _figure_legend(fig, axes, ("strategy (points nudged\nsideways)\n" if len(drawn) > 1 else "strategy\n") + _CI_LINES)
    swept = ("gamma", *params) if "gamma" in ok else tuple(params)
    what = f"{metric} vs each swept parameter" if len(names) > 1 else f"{metric} vs {names[0]}"
    others = "; each panel mixes the values of the other parameters" if len(names) > 1 else ""
    _title(fig, f"{what} (sweep {name!r}{others})", _sweep_settings(settings, ok, swept))
    return fig


def plot_metric_vs_params(table: pd.DataFrame, strategies: Sequence[str], params: Sequence[str], metric: str,
                          log_params: Collection[str], name: str, path: PathLike,
                          settings: Mapping[str, Any] | None = None) -> Path | None:
    """Save :func:`metric_vs_params_figure` as PNG at ``path``; ``None`` (nothing written) without data."""
    fig = metric_vs_params_figure(table, strategies, params, metric, log_params, name, settings)
    return None if fig is None else _save(fig, path, dpi=100)


def robustness_figure(table: pd.DataFrame, strategies: Sequence[str], factors: Sequence[str], metric: str, name: str,
                      settings: Mapping[str, Any] | None = None) -> Figure | None:
    """Loss (``loss``, ``loss_se``) against the policy optimal for the true market, in ``metric``,
    against each perturbed parameter's factor (column ``<name>_factor``, the others at 1): one
    panel per parameter, each with its own y-scale; ``None`` without complete trials."""
    ok = table[table["status"] == "ok"]
    if ok.empty or not factors:
        return None
    fig = Figure(figsize=(4.6 * len(factors) + 0.6, 4.4), layout="constrained")
    axes = fig.subplots(1, len(factors), squeeze=False)[0]
    drawn = [s for s in strategies if not ok[ok["strategy"] == s].empty]
    unit = metric_unit(metric)
    for ax, param in zip(axes, factors, strict=True):
        others = [f"{n}_factor" for n in factors if n != param]
        d = ok[(ok[others] == 1.0).all(axis=1)] if others else ok
        for i, strategy in enumerate(drawn):
            s = d[d["strategy"] == strategy].sort_values(f"{param}_factor")
            nudge = math.exp((i - (len(drawn) - 1) / 2) * 0.025)  # side by side: error bars do not overlap
            ax.errorbar(s[f"{param}_factor"] * nudge, s["loss"], yerr=Z95 * s["loss_se"], capsize=2, label=strategy,
                        elinewidth=1.0, **series_style(i, len(drawn)))
        ax.set_xscale("log")
        values = sorted(set(d[f"{param}_factor"]))
        ax.xaxis.set_major_locator(FixedLocator(values))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticklabels([f"{v:g}" for v in values])
        ax.axhline(0.0, color="k", lw=0.8, zorder=1, label="no loss (the true optimum)")
        ax.axvline(1.0, color="0.5", lw=0.8, ls=":", zorder=1, label="model right (factor 1)")
        symbol = PARAMS.get(param, (param, ""))[0]
        ax.set_xlabel(f"true {symbol} / assumed {symbol} [ratio, log scale]")
        ax.set_ylabel(f"loss in {metric}: true optimum − strategy [{unit}]")
        ax.set_title(f"{param} misspecified (own y-scale)", fontsize=9)
        ax.grid(alpha=0.3)
    _figure_legend(fig, axes, "strategy (points nudged\nsideways)\n" + _CI_LINES)
    _title(fig, f"Model misspecification (sweep {name!r}): policies built for the assumed market, "
                f"loss against the policy optimal for the true one on the same paths",
           _sweep_settings(settings, ok, ()))
    return fig


def plot_robustness(table: pd.DataFrame, strategies: Sequence[str], factors: Sequence[str], metric: str, name: str,
                    path: PathLike, settings: Mapping[str, Any] | None = None) -> Path | None:
    """Save :func:`robustness_figure` as PNG at ``path``; ``None`` (nothing written) without data."""
    fig = robustness_figure(table, strategies, factors, metric, name, settings)
    return None if fig is None else _save(fig, path, dpi=100)

