"""Matplotlib figures (PNG, headless): paths, PnL distributions, quote surfaces, comparisons.

Every function returns the path it wrote; files are written atomically.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from mmray.backtest import BacktestResult
from mmray.io import atomic_write

PathLike = str | os.PathLike[str]


def _save(fig: plt.Figure, path: PathLike) -> Path:
    out = atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png"))
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
