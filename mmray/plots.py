"""Matplotlib figures (PNG, headless): paths, PnL distributions, quote surfaces, comparisons, and
the figures of a Ray Tune sweep (efficient frontier, metric against parameters, robustness).

Every function returns the path it wrote; files are written atomically.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from mmray.backtest import BacktestResult
from mmray.io import atomic_write

PathLike = str | os.PathLike[str]


def _save(fig: plt.Figure, path: PathLike, dpi: int = 110) -> Path:
    out = atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png"))
    plt.close(fig)
    return out


def plot_paths(result: BacktestResult, path: PathLike, title: str = "", n: int = 10) -> Path:
    """Mid price, inventory and mark-to-market PnL of the first ``n`` recorded paths."""
    if result.paths is None:
        raise ValueError("the backtest recorded no paths: run it with record > 0")
    p = result.paths
    k = min(n, p["q"].shape[0])
    fig, axes = plt.subplots(3, 1, figsize=(8, 7), sharex=True)
    for i in range(k):
        axes[0].plot(p["t"], p["s"][i], lw=0.8)
        axes[1].step(p["t"], p["q"][i], lw=0.8, where="post")
        axes[2].plot(p["t"], p["pnl"][i], lw=0.8)
    axes[0].set_ylabel("mid price")
    axes[1].set_ylabel("inventory q")
    axes[2].set_ylabel("PnL (mark to market)")
    axes[2].set_xlabel("time")
    axes[0].set_title(title or f"{k} simulated paths")
    for ax in axes:
        ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_pnl_distribution(results: Mapping[str, BacktestResult], path: PathLike) -> Path:
    """Histograms of terminal PnL and terminal inventory, one colour per strategy."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, res in results.items():
        pnl, qf = res.per_path["pnl"], res.per_path["q_final"]
        axes[0].hist(pnl, bins=60, alpha=0.45, density=True,
                     label=f"{name}: mean {pnl.mean():.2f}, std {pnl.std(ddof=1):.2f}")
        lo, hi = qf.min(), qf.max()
        axes[1].hist(qf, bins=np.arange(lo - 0.5, hi + 1.5), alpha=0.45, density=True, label=name)
    axes[0].set_xlabel("terminal PnL")
    axes[0].set_ylabel("density")
    axes[1].set_xlabel("terminal inventory")
    for ax in axes:
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_quote_surface(
    times: np.ndarray, q_grid: np.ndarray, bid: np.ndarray, ask: np.ndarray, path: PathLike, title: str = ""
) -> Path:
    """Heatmaps of the bid and ask offsets ``delta(t, q)`` and slices at a few times."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4), layout="constrained")  # room for the suptitle
    extent = (q_grid[0], q_grid[-1], times[-1], times[0])
    for ax, data, name in ((axes[0], bid, "bid offset δᵇ(t,q)"), (axes[1], ask, "ask offset δᵃ(t,q)")):
        im = ax.imshow(np.ma.masked_invalid(data), aspect="auto", extent=extent, cmap="viridis")
        ax.set_xlabel("inventory q")
        ax.set_ylabel("time t")
        ax.set_title(name)
        fig.colorbar(im, ax=ax)
    for frac in (0.0, 0.5, 0.9, 1.0):
        i = min(round(frac * (times.size - 1)), times.size - 1)
        line = axes[2].plot(q_grid, bid[i], label=f"bid, t={times[i]:.3g}")
        axes[2].plot(q_grid, ask[i], ls="--", color=line[0].get_color(), label=f"ask, t={times[i]:.3g}")
    axes[2].set_xlabel("inventory q")
    axes[2].set_ylabel("offset from mid")
    axes[2].legend(fontsize=7)
    axes[2].grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_comparison_table(metrics: Mapping[str, Mapping[str, float]], path: PathLike, keys: tuple[str, ...]) -> Path:
    """A figure holding the strategy comparison table (metric ± standard error)."""
    names = list(metrics)
    cells = []
    for name in names:
        row = []
        for key in keys:
            value, se = metrics[name].get(key), metrics[name].get(f"{key}_se")
            row.append("—" if value is None else (f"{value:.4g} ± {se:.2g}" if se is not None else f"{value:.4g}"))
        cells.append(row)
    fig, ax = plt.subplots(figsize=(min(2.0 + 1.7 * len(keys), 20), 0.6 + 0.45 * len(names)))
    ax.axis("off")
    table = ax.table(cellText=cells, rowLabels=names, colLabels=list(keys), loc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.scale(1.0, 1.3)
    return _save(fig, path)


# --------------------------------------------------------------------------- sweep results (mmray.tuning)
# Each takes a sweep's results table (mmray.tuning.results: one row per trial, a ``status`` and a
# ``strategy`` column, the swept parameters and the metrics with ``_se`` columns) and returns the
# path it wrote, or None when the table holds nothing to draw.


def plot_frontier(table: pd.DataFrame, strategies: Sequence[str], name: str, path: PathLike) -> Path | None:
    """Efficient frontier: mean PnL vs PnL std and vs terminal inventory std, one line per strategy
    over the risk aversion ``gamma`` (the first strategy's line labelled with its ``gamma`` values)."""
    ok = table[table["status"] == "ok"]
    if ok.empty or "gamma" not in ok:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for strategy in strategies:
        d = ok[ok["strategy"] == strategy].sort_values("gamma")
        if d.empty:
            continue
        for ax, x in zip(axes, ("pnl_std", "q_final_std"), strict=True):
            ax.errorbar(d[x], d["pnl_mean"], yerr=d["pnl_mean_se"], marker="o", ms=4, capsize=2, label=strategy)
        if strategy == strategies[0]:
            ends = d.iloc[sorted({0, len(d) // 2, len(d) - 1})]
            for _, r in ends.iterrows():
                axes[0].annotate(f"γ={r['gamma']:g}", (r["pnl_std"], r["pnl_mean"]), fontsize=7,
                                 xytext=(3, 3), textcoords="offset points")
    axes[0].set_xlabel("PnL std")
    axes[1].set_xlabel("terminal inventory std")
    axes[0].set_ylabel("mean PnL")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Efficient frontier over risk aversion γ ({name}, {int(ok['n_paths_done'].max())} paths/trial)",
                 fontsize=10)
    return _save(fig, path, dpi=90)


def plot_metric_vs_params(table: pd.DataFrame, strategies: Sequence[str], params: Sequence[str], metric: str,
                          log_params: Collection[str], name: str, path: PathLike) -> Path | None:
    """``metric`` against each swept parameter in ``params`` (numeric ones first; ``log_params`` on a
    log axis), one colour per strategy; trials stopped early by ASHA as grey crosses."""
    ok = table[table["status"].isin(["ok", "stopped"])]
    names = [n for n in params if n in ok and pd.api.types.is_numeric_dtype(ok[n])]
    names += [n for n in params if n in ok and n not in names]
    if ok.empty or not names:
        return None
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.5), squeeze=False)
    for ax, param in zip(axes[0], names, strict=True):
        numeric = pd.api.types.is_numeric_dtype(ok[param])
        for strategy in strategies:
            d = ok[ok["strategy"] == strategy]
            if d.empty:
                continue
            full = d[d["status"] == "ok"]
            x = full[param] if numeric else full[param].astype(str)
            ax.errorbar(x, full[metric], yerr=full.get(f"{metric}_se"), fmt="o", ms=4, capsize=2, label=strategy)
            stopped = d[d["status"] == "stopped"]
            if not stopped.empty:
                xs = stopped[param] if numeric else stopped[param].astype(str)
                ax.plot(xs, stopped[metric], "x", color="grey", label="stopped by ASHA")
        if param in log_params:
            ax.set_xscale("log")
        ax.set_xlabel(param)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    uniq = dict(zip(labels, handles, strict=True))
    axes[0][0].legend(uniq.values(), uniq.keys(), fontsize=8)
    fig.suptitle(f"{metric} vs parameters ({name})", fontsize=10)
    fig.tight_layout()
    return _save(fig, path, dpi=90)


def plot_robustness(table: pd.DataFrame, strategies: Sequence[str], factors: Sequence[str], metric: str, name: str,
                    path: PathLike) -> Path | None:
    """Loss (``loss``, ``loss_se``) against the truly optimal policy, in ``metric``, against each
    perturbed parameter's factor (column ``<name>_factor``, the others at 1)."""
    ok = table[table["status"] == "ok"]
    if ok.empty:
        return None
    fig, axes = plt.subplots(1, len(factors), figsize=(4 * len(factors), 3.5), squeeze=False, sharey=True)
    for ax, param in zip(axes[0], factors, strict=True):
        others = [f"{n}_factor" for n in factors if n != param]
        d = ok[(ok[others] == 1.0).all(axis=1)] if others else ok
        for strategy in strategies:
            s = d[d["strategy"] == strategy].sort_values(f"{param}_factor")
            ax.errorbar(s[f"{param}_factor"], s["loss"], yerr=s["loss_se"], marker="o", ms=4, capsize=2,
                        label=strategy)
        ax.set_xscale("log")
        ax.axhline(0.0, color="k", lw=0.5)
        ax.set_xlabel(f"true {param} / assumed {param}")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"loss in {metric} vs true optimum")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"Model misspecification ({name})", fontsize=10)
    fig.tight_layout()
    return _save(fig, path, dpi=90)
