"""Monte Carlo backtests: run a policy on the simulator, compute metrics with standard errors.

Metrics (each with its standard error ``<name>_se`` where one applies):

* ``pnl_mean``, ``pnl_std`` - terminal PnL ``W = X_T + q_T S_T - ell(q_T) - W_0``;
* ``sharpe`` - ``pnl_mean / pnl_std`` per episode;
* ``max_drawdown`` - mean over paths of the largest peak-to-trough fall of mark-to-market PnL;
* ``trades_mean`` - fills per path; ``spread_mean`` - average quoted spread (steps where both
  sides are quoted);
* ``q_final_mean``, ``q_final_std`` - terminal inventory;
* ``ce_A`` - objective A certainty equivalent ``-(1/gamma) ln E[exp(-gamma W)]`` (SE by the
  delta method);
* ``value_B`` - objective B value ``E[W - (gamma sigma^2 / 2) int q^2 dt]``.

Both objectives are computed by :mod:`mmray.objectives`, their one home.

Standard errors of means are ``std / sqrt(n)``; with one path, standard deviations and standard
errors are NaN (``null`` in JSON), not 0. Those of a standard deviation and of the Sharpe
ratio use the sample skewness ``g3`` and kurtosis ``g4`` (not excess), because market-making PnL
is far from normal (a sum of ``q dS`` with a random ``q``: ``g4`` is about 5.6 for AS 2008's
symmetric strategy): ``se(std) = std sqrt((g4 - 1) / (4 n))`` (delta method; ``std / sqrt(2n)``
for normal data) and ``se(S) = sqrt((1 + S^2/2 - g3 S + (g4 - 3) S^2 / 4) / n)`` (Mertens 2002;
Lo 2002's ``sqrt((1 + S^2/2)/n)`` for normal data).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mmray.distributed import chunk_plan, map_chunks, path_step_progress
from mmray.objectives import certainty_equivalent, value_b
from mmray.params import MarketParams, ProblemParams, SimConfig
from mmray.policy import Policy, simulation_market
from mmray.sim import ChunkResult, simulate_chunk

NAN = float("nan")  # a statistic one path cannot estimate (std, standard errors)
METRIC_KEYS = (
    "pnl_mean", "pnl_std", "sharpe", "max_drawdown", "trades_mean", "spread_mean",
    "q_final_mean", "q_final_std", "ce_A", "value_B",
)


@dataclass(frozen=True)
class BacktestResult:
    """Metrics of one backtest, the per-path outcomes and a few recorded paths."""

    metrics: dict[str, float]
    per_path: dict[str, np.ndarray]
    paths: dict[str, np.ndarray] | None
    config: SimConfig
    market: MarketParams
    problem: ProblemParams
    info: dict[str, Any] = field(default_factory=dict)


def _shape(x: np.ndarray) -> tuple[float, float]:
    """Sample skewness and kurtosis (not excess) of ``x``; ``(0, 3)``, the normal values, if ``x`` is constant."""
    c = x - x.mean()
    m2 = float(np.mean(c * c))
    if m2 <= 0.0:
        return 0.0, 3.0
    return float(np.mean(c**3)) / m2**1.5, float(np.mean(c**4)) / m2**2


def compute_metrics(
    per_path: dict[str, np.ndarray], market: MarketParams, problem: ProblemParams, spread_mean: float = float("nan")
) -> dict[str, float]:
    """Metrics and standard errors from per-path arrays (see module docstring)."""
    pnl = per_path["pnl"]
    n = pnl.size
    root_n = math.sqrt(n)
    mean, std = float(pnl.mean()), float(pnl.std(ddof=1)) if n > 1 else NAN
    sharpe = mean / std if std > 0 else NAN
    skew, kurt = _shape(pnl)
    qf = per_path["q_final"]
    q_std = float(qf.std(ddof=1)) if n > 1 else NAN
    mdd = per_path["max_drawdown"]
    trades = per_path["trades"]
    ce, ce_se = certainty_equivalent(pnl, problem.gamma)
    vb = value_b(pnl, per_path["q2_integral"], market, problem)
    m = {
        "n_paths": n,
        "pnl_mean": mean, "pnl_mean_se": std / root_n, "pnl_std": std,
        "pnl_std_se": std * math.sqrt(max(kurt - 1.0, 0.0) / (4 * n)),
        "sharpe": sharpe,
        "sharpe_se": math.sqrt(max(1 + 0.5 * sharpe**2 - skew * sharpe + 0.25 * (kurt - 3) * sharpe**2, 0.0) / n)
        if std > 0 else NAN,
        "max_drawdown": float(mdd.mean()), "max_drawdown_se": float(mdd.std(ddof=1)) / root_n if n > 1 else NAN,
        "trades_mean": float(trades.mean()), "trades_mean_se": float(trades.std(ddof=1)) / root_n if n > 1 else NAN,
        "spread_mean": float(spread_mean),
        "q_final_mean": float(qf.mean()), "q_final_mean_se": float(qf.std(ddof=1)) / root_n if n > 1 else NAN,
        "q_final_std": q_std, "q_final_std_se": q_std * math.sqrt(max(_shape(qf)[1] - 1.0, 0.0) / (4 * n)),
        "ce_A": ce, "ce_A_se": ce_se,
        "value_B": float(vb.mean()), "value_B_se": float(vb.std(ddof=1)) / root_n if n > 1 else NAN,
    }
    return m


def merge_chunks(
    chunks: list[ChunkResult], market: MarketParams, problem: ProblemParams
) -> tuple[dict[str, float], dict[str, np.ndarray], tuple[float, int]]:
    """Metrics over the paths of ``chunks`` (in their order), the per-path arrays, and the sum and
    count of quoted two-sided spreads (``spread_mean`` is their ratio)."""
    per_path = {name: np.concatenate([getattr(c, name) for c in chunks]) for name in ChunkResult.FIELDS}
    total, steps = sum(c.spread_total for c in chunks), sum(c.spread_steps for c in chunks)
    return compute_metrics(per_path, market, problem, total / steps if steps else NAN), per_path, (total, steps)


def backtest(
    policy: Policy,
    market: MarketParams,
    problem: ProblemParams,
    config: SimConfig,
    use_ray: bool = False,
    record: int = 0,
    progress: bool = False,
    task_cpus: float = 1.0,
) -> BacktestResult:
    """Backtest ``policy`` on ``config.n_paths`` simulated paths.

    Parameters
    ----------
    policy : Policy
        Any policy (see :mod:`mmray.policy`).
    market, problem : MarketParams, ProblemParams
        The simulated market and the problem (horizon, inventory bound, terminal penalty,
        risk aversion used by the objective metrics). A policy whose offsets are already on its own
        tick grid is simulated with tick 0 (:func:`mmray.policy.simulation_market`); the result's
        ``market`` is the one simulated.
    config : SimConfig
        Paths, seed, chunk size, dt, price and fill models.
    use_ray : bool
        Run chunks as Ray tasks (starts an embedded Ray if none is running). The numbers do
        not depend on this.
    record : int
        Number of paths (from the first chunk) whose trajectories are kept for plots.
    progress : bool
        Show a progress bar over chunks on stderr.
    task_cpus : float
        CPUs reserved by each chunk's Ray task.
    """
    n_steps = config.check(market, problem)  # dt and q0, before spawning anything
    market = simulation_market(policy, market)
    start = time.perf_counter()
    plan = chunk_plan(config.n_paths, config.chunk_size, config.seed)
    args = [(size, seq, record if i == 0 else 0) for i, (size, seq) in enumerate(plan)]
    # progress: per finished chunk with Ray; in path-steps locally (long single-chunk runs too)
    with path_step_progress(config.n_paths * n_steps, "backtest", progress and not use_ray) as bar:
        chunks = map_chunks(
            simulate_chunk, args, shared=(policy, market, problem, config), use_ray=use_ray,
            progress=progress, desc="backtest", task_cpus=task_cpus, local_kwargs={"on_steps": bar.update},
        )
    metrics, per_path, (total, steps) = merge_chunks(chunks, market, problem)
    info = {"seconds": time.perf_counter() - start, "n_chunks": len(plan), "ray": use_ray,
            "spread_total": total, "spread_steps": steps}
    return BacktestResult(metrics, per_path, chunks[0].paths, config, market, problem, info)
