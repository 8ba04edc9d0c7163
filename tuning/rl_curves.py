"""Learning curves of an RL run: the per-iteration table (CSV) and its figure (PNG).

One row per training iteration (:data:`COLUMNS`): env steps, wall time, RLlib's episode return, and,
at evaluated iterations, the optimality figures of the agent at that iteration
(:class:`mmray.tuning.rl_eval.OptimalityFigures`). The figure draws, against env steps (left) and
wall time (right): the episode return and the agent's value (currency; the return times the env's
``reward_scale``) with the reference optimum, the best constant half-spread and the continuous exact
policy as horizontal lines; the optimality ratio; and the gap closed, with 95% bands (±1.96 paired
SE) where the evaluation is Monte Carlo.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmray.io import atomic_write, atomic_write_text

CURVES_CSV = "learning_curves.csv"
CURVES_PNG = "learning_curves.png"
FIGURE_KEYS = ("agent_value", "agent_value_se", "reference_value", "baseline_value", "exact_policy_value",
               "optimality_ratio", "optimality_ratio_se", "gap_closed", "gap_closed_se")
COLUMNS = ("iteration", "env_steps", "wall_s", "episode_return_mean", *FIGURE_KEYS, "eval_method", "best")
"""Columns of the CSV, in order. Figures are empty (NaN) at iterations that were not evaluated;
``best`` is 1 on the iterations whose agent became the best so far."""


def write_csv(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Write ``rows`` (dicts with keys from :data:`COLUMNS`; missing ones are empty) atomically."""
    def fmt(v: Any) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return ""
        if isinstance(v, bool):
            return str(int(v))
        return repr(v) if isinstance(v, float) else str(v)

    lines = [",".join(COLUMNS)]
    lines += [",".join(fmt(row.get(c)) for c in COLUMNS) for row in rows]
    return atomic_write_text(path, "\n".join(lines) + "\n")


def read_csv(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The rows of a curves CSV (numbers as int/float, empty cells as NaN, ``eval_method`` a string)."""
    out: list[dict[str, Any]] = []
    with open(path, newline="") as fh:
        for raw in csv.DictReader(fh):
            row: dict[str, Any] = {}
            for key, value in raw.items():
                if key == "eval_method":
                    row[key] = value or None
                elif key in ("iteration", "best"):
                    row[key] = int(value) if value else 0
                else:
                    row[key] = float(value) if value else math.nan
            out.append(row)
    return out


def curves_figure(rows: Sequence[Mapping[str, Any]], reward_scale: float = 1.0, title: str = "") -> Any:
    """The learning-curve figure of ``rows`` (see the module docstring); returns the matplotlib Figure."""
    from matplotlib.figure import Figure

    col = {c: np.array([float(r.get(c, math.nan) if r.get(c) is not None else math.nan) for r in rows])
           for c in COLUMNS if c != "eval_method"}
    fig = Figure(figsize=(12, 10), layout="constrained")
    axes = fig.subplots(3, 2, sharex="col")
    evaluated = np.isfinite(col["agent_value"])
    mc = np.array([r.get("eval_method") == "monte_carlo" for r in rows])
    lines = [("reference_value", "reference optimum (pi)", "k", "-"),
             ("exact_policy_value", "continuous exact policy", "tab:green", "--"),
             ("baseline_value", "best constant half-spread", "tab:red", ":")]
    for j, (xkey, xlabel) in enumerate((("env_steps", "env steps"), ("wall_s", "wall time (s)"))):
        x = col[xkey]
        ax = axes[0, j]
        ret = col["episode_return_mean"] * reward_scale
        ok = np.isfinite(ret)
        ax.plot(x[ok], ret[ok], ".", color="0.6", ms=3, label="episode return x reward_scale (RLlib, sampled)")
        ax.plot(x[evaluated], col["agent_value"][evaluated], "o-", color="tab:blue", ms=3,
                label="agent value_B (deterministic)")
        for key, label, color, style in lines:
            vals = col[key][evaluated]
            if vals.size:
                ax.axhline(float(vals[-1]), color=color, ls=style, lw=1, label=label)
        if evaluated.any():
            lo = float(np.nanmin(col["baseline_value"][evaluated]))
            hi = float(np.nanmax(col["reference_value"][evaluated]))
            span = hi - lo
            ax.set_ylim(_lower(col["agent_value"][evaluated], lo - 1.5 * span, lo - 10 * span, span), hi + 0.5 * span)
        ax.set_ylabel("objective B value (currency)")
        for row, key, label in ((1, "optimality_ratio", "optimality ratio (agent / reference)"),
                                (2, "gap_closed", "gap closed (agent - const) / (ref - const)")):
            ax = axes[row, j]
            y, se = col[key], col[f"{key}_se"]
            ax.plot(x[evaluated], y[evaluated], "o-", color="tab:blue", ms=3, label=label)
            band = evaluated & mc & np.isfinite(se)
            if band.any():
                ax.fill_between(x[band], (y - 1.96 * se)[band], (y + 1.96 * se)[band], color="tab:blue", alpha=0.2,
                                label="95% CI (±1.96 paired SE)")
            ax.axhline(1.0, color="k", lw=1)
            if key == "gap_closed":
                ax.axhline(0.0, color="tab:red", ls=":", lw=1)
                for level in (0.5, 0.8, 0.9, 0.95):
                    ax.axhline(level, color="0.8", lw=0.6)
                ax.set_ylim(_lower(y[evaluated], -0.5, -10.0, 1.0), 1.1)
            else:
                base = col["baseline_value"][evaluated] / col["reference_value"][evaluated]
                if base.size:
                    b, gap = float(base[-1]), 1.0 - float(base[-1])
                    ax.axhline(b, color="tab:red", ls=":", lw=1, label="best constant")
                    ax.set_ylim(_lower(y[evaluated], b - 2 * gap, b - 10 * gap, gap), 1.0 + 0.5 * gap)
            ax.set_ylabel(label)
        axes[2, j].set_xlabel(xlabel)
    for ax in axes.ravel():
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7, loc="best")
    axes[2, 0].legend(fontsize=7, loc="best")
    fig.suptitle(title or "learning curves", fontsize=10)
    return fig


MILESTONES = (0.5, 0.8, 0.9, 0.95)


def milestones(rows: Sequence[Mapping[str, Any]], levels: Sequence[float] = MILESTONES) -> dict[str, dict[str, Any]]:
    """For each gap-closed level, the first evaluated row reaching it: ``{"0.5": {"iteration", "env_steps",
    "wall_s"}, ...}`` (``None`` for a level never reached)."""
    out: dict[str, dict[str, Any]] = {}
    for level in levels:
        hit = next((r for r in rows if math.isfinite(float(r.get("gap_closed", math.nan) or math.nan))
                    and float(r["gap_closed"]) >= level), None)
        out[f"{level:g}"] = None if hit is None else {k: hit[k] for k in ("iteration", "env_steps", "wall_s")}
    return out


def _lower(values: np.ndarray, default: float, floor: float, span: float) -> float:
    """Lower y limit: ``default``, or lower to show ``values``, but not below ``floor`` (a diverged agent
    would squash the scale)."""
    finite = values[np.isfinite(values)]
    low = float(finite.min()) - 0.05 * span if finite.size else default
    return max(min(default, low), floor)


def plot_curves(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike[str], reward_scale: float = 1.0,
                title: str = "") -> Path:
    """Save :func:`curves_figure` as PNG atomically; returns the path."""
    fig = curves_figure(rows, reward_scale, title)
    return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))


QUOTES_PNG = "quotes.png"


def quotes_figure(policies: Mapping[str, Any], env: Any, fractions: Sequence[float] = (0.0, 0.5, 0.9),
                  title: str = "") -> Any:
    """Bid and ask offsets against inventory of each policy in ``policies`` (label -> policy; e.g. the
    agent, the reference and the continuous exact policy) at the times ``fraction x T`` of ``env`` (an
    :class:`mmray.envs.EnvConfig`), one panel per time; sides the inventory bound forbids are not drawn.
    A policy reading features is asked with each feature at 0 (said in its label)."""
    from matplotlib.figure import Figure

    from mmray.features import policy_features
    from mmray.params import inventory_grid
    from mmray.policy import ask_quotes

    q = inventory_grid(env.problem, env.market)
    d, q_max = env.market.trade_size, float(env.problem.q_max)
    fig = Figure(figsize=(5 * len(fractions), 4.5), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(fractions), sharey=True))
    colors = ("tab:blue", "k", "tab:green", "tab:red", "tab:purple")
    for ax, frac in zip(axes, fractions, strict=True):
        t = frac * env.problem.T
        for i, (label, policy) in enumerate(policies.items()):
            names = policy_features(policy)
            feats = {n: np.zeros(q.size) for n in names} if names else None
            bid, ask = (np.array(np.broadcast_to(x, q.shape), dtype=float)
                        for x in ask_quotes(policy, t, q, np.full(q.size, env.market.s0), None, feats))
            bid[q + d > q_max + 1e-9], ask[q - d < -q_max - 1e-9] = np.nan, np.nan
            bid[~np.isfinite(bid)], ask[~np.isfinite(ask)] = np.nan, np.nan
            tag = label + (" (features at 0)" if names else "")
            style = {"color": colors[i % len(colors)], "lw": 2.2 if i == 0 else 1.2}
            ax.plot(q, bid, "-", label=f"{tag}: bid", **style)
            ax.plot(q, ask, "--", label=f"{tag}: ask", **style)
        ax.set_title(f"t = {t:g} ({frac:g} T)", fontsize=9)
        ax.set_xlabel("inventory q (shares)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("offset from the mid (price)")
    axes[-1].legend(fontsize=7, loc="best")
    fig.suptitle(title or "quotes", fontsize=10)
    return fig


def plot_quotes(policies: Mapping[str, Any], env: Any, path: str | os.PathLike[str], title: str = "") -> Path:
    """Save :func:`quotes_figure` as PNG atomically; returns the path."""
    fig = quotes_figure(policies, env, title=title)
    return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
