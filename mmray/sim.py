"""Vectorised Monte Carlo market simulator (paths x steps in numpy).

One chunk of paths is simulated step by step, all paths at once. At each step ``t_j = j dt``:

1. the policy quotes ``(delta_b, delta_a)`` for every path; a side is not quoted where the
   inventory bound forbids it (no bid at ``q + Delta > Q``, no ask at ``q - Delta < -Q``) or the
   policy returns ``inf``; with a tick, quotes are rounded outward to the tick grid
   (bid down, ask up);
2. each side is filled independently with probability ``min(Lambda(delta) dt, 1)``
   (``fill_model="linear"``, AS 2008) or ``1 - exp(-Lambda(delta) dt)`` (``"poisson"``: the
   probability of at least one Poisson arrival), ``Lambda(delta) = A exp(-k delta)``;
   a bid fill buys ``Delta`` at ``S - delta_b``, an ask fill sells ``Delta`` at ``S + delta_a``;
3. the mid moves by ``mu dt + sigma sqrt(dt) Z`` (``"gaussian"``) or ``+/- sigma sqrt(dt)``
   with probability 1/2 (``"binomial"``, AS 2008).

Fills are decided with exponential draws ``E``: ``U < p`` with ``U`` uniform is the same event
as ``E > -ln p``, which spares the ``exp`` in the linear model. Draws per step: one price
variate and two exponentials per path, always in the same order, so a chunk's numbers depend
only on its seed.

Tracked per path: inventory ``q``, mid ``S``, mark-to-market PnL ``W = X + q S - (X_0 + q_0 S_0)``
updated as ``dW = Delta (1_b delta_b + 1_a delta_a) + q_after dS`` and its maximum drawdown,
number of fills, ``int q^2 dt``; per chunk, the sum and count of quoted spreads. At ``T`` the
PnL is ``W_T - ell(q_T)``.

Table policies on the simulator's inventory grid take a fast path: fill thresholds and offsets
are computed once per (step, inventory level) and one fused numba kernel
(:func:`mmray._kernels.table_step`) updates all paths; the draws and the order of floating-point
operations are those of the generic numpy path, so both give the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mmray._kernels import table_step
from mmray.params import MarketParams, ProblemParams, SimConfig
from mmray.policy import Policy, TablePolicy


@dataclass(frozen=True)
class ChunkResult:
    """Per-path outcomes of one chunk (arrays of length ``n_paths``) and recorded paths.

    ``spread_total`` / ``spread_steps``: sum of quoted spreads over the (path, step) pairs where
    both sides were quoted, and the number of such pairs.
    ``paths`` (if recorded): ``{"t": (steps+1,), "s"|"q"|"pnl": (K, steps+1)}``.
    """

    pnl: np.ndarray
    q_final: np.ndarray
    trades: np.ndarray
    max_drawdown: np.ndarray
    q2_integral: np.ndarray
    spread_total: float
    spread_steps: int
    paths: dict[str, np.ndarray] | None = None

    FIELDS = ("pnl", "q_final", "trades", "max_drawdown", "q2_integral")


def tick_offsets(s: np.ndarray, db: np.ndarray, da: np.ndarray, tick: float) -> tuple[np.ndarray, np.ndarray]:
    """Offsets after rounding the quoted prices outward to the tick grid (bid down, ask up).

    A price already on the grid up to 1e-9 tick stays there: ``(100 - 0.2) / 0.1`` is 997.9999999999999
    in floating point, and a plain ``floor`` would quote 99.7 instead of 99.8.
    """
    bid = np.floor((s - db) / tick + 1e-9) * tick
    ask = np.ceil((s + da) / tick - 1e-9) * tick
    return s - bid, ask - s


def _table_fast_path(policy: Policy, q0: float, step: float, q_max: float) -> tuple[TablePolicy, int] | None:
    """If ``policy`` is a table whose inventory grid has the trade size as step, contains ``q0`` and
    covers every reachable inventory ``[-q_max, q_max]``, return it and the index of ``q0`` (the
    simulator then indexes rows directly; a narrower table goes through ``quotes``, which holds
    the edge rows beyond the grid)."""
    if not isinstance(policy, TablePolicy) or policy.q_grid.size < 2:
        return None
    if abs(policy.q_step - step) > 1e-12 * step:
        return None
    tol = 1e-9 * max(1.0, q_max)
    if policy.q_grid[0] > -q_max + tol or policy.q_grid[-1] < q_max - tol:
        return None
    pos = (q0 - policy.q_grid[0]) / step
    if abs(pos - round(pos)) > 1e-9 or not 0 <= round(pos) < policy.q_grid.size:
        return None
    return policy, round(pos)


def simulate_chunk(
    policy: Policy,
    market: MarketParams,
    problem: ProblemParams,
    config: SimConfig,
    n_paths: int,
    seed: np.random.SeedSequence | int,
    record: int = 0,
    on_steps: Callable[[int], None] | None = None,
) -> ChunkResult:
    """Simulate ``n_paths`` paths of the market under ``policy``.

    Parameters
    ----------
    policy : Policy
        Quoting policy (may be specified for other parameters than ``market``: robustness).
    market, problem : MarketParams, ProblemParams
        The true market, and the horizon, inventory bound, terminal penalty.
    config : SimConfig
        Time step, price and fill models, initial inventory.
    n_paths : int
        Paths in this chunk.
    seed : SeedSequence or int
        All randomness of the chunk comes from ``np.random.default_rng(seed)``.
    record : int
        Number of paths whose full trajectories (s, q, pnl) are kept.
    on_steps : callable, optional
        Progress callback, called with a number of path-steps done (about 100 times a chunk).
    """
    rng = np.random.default_rng(seed)
    n_steps = config.n_steps(problem.T)
    dt = config.dt
    k, d = market.k, market.trade_size
    adt = market.A * dt
    log_adt = math.log(adt)
    sq = market.sigma * math.sqrt(dt)
    mu_dt = market.drift * dt
    q_max = problem.q_max
    tick = market.tick
    linear = config.fill_model == "linear"
    gaussian = config.price_model == "gaussian"
    record = min(record, n_paths)

    s = np.full(n_paths, market.s0)
    q = np.full(n_paths, config.q0)
    mtm = np.zeros(n_paths)  # X + q S - (X_0 + q_0 S_0)
    trades = np.zeros(n_paths)
    peak = np.zeros(n_paths)
    mdd = np.zeros(n_paths)
    q2 = np.zeros(n_paths)
    e_bid, e_ask, z, tmp, dq = (np.empty(n_paths) for _ in range(5))
    fb = np.empty(n_paths, dtype=bool)
    fa = np.empty(n_paths, dtype=bool)
    spread_total = 0.0
    spread_steps = 0

    # Table policies on the simulator's inventory grid: everything that depends only on (t, q) is
    # computed once per step on the grid (a few dozen numbers) and gathered by inventory index.
    fast = _table_fast_path(policy, config.q0, d, q_max) if (q_max is not None and tick == 0) else None
    if fast is not None:
        table, qi0 = fast
        qi = np.full(n_paths, qi0, dtype=np.intp)
        bid_rows, ask_rows = table.rows(np.arange(n_steps) * dt)
        bid_rows[:, table.q_grid + d > q_max + 1e-9] = np.inf  # no bid at q = Q
        ask_rows[:, table.q_grid - d < -q_max - 1e-9] = np.inf  # no ask at q = -Q
        # P(fill) = p  <=>  E > -ln p (linear) or E < L dt (poisson), with E ~ Exp(1)
        with np.errstate(over="ignore"):
            thr_b = k * bid_rows - log_adt if linear else np.exp(-k * bid_rows) * adt
            thr_a = k * ask_rows - log_adt if linear else np.exp(-k * ask_rows) * adt
        spread_rows = bid_rows + ask_rows
        spread_rows[~np.isfinite(spread_rows)] = np.nan
        off_b = np.where(np.isfinite(bid_rows), bid_rows, 0.0)
        off_a = np.where(np.isfinite(ask_rows), ask_rows, 0.0)

    if record:
        rec_s, rec_q, rec_p = (np.empty((record, n_steps + 1)) for _ in range(3))
        rec_s[:, 0], rec_q[:, 0], rec_p[:, 0] = s[:record], q[:record], 0.0

    report_every = max(1, n_steps // 100)
    for j in range(n_steps):
        t = j * dt
        if on_steps is not None and j % report_every == 0 and j:
            on_steps(report_every * n_paths)
        rng.standard_exponential(out=e_bid)
        rng.standard_exponential(out=e_ask)
        if fast is not None:
            if gaussian:
                rng.standard_normal(out=z)
            else:
                rng.random(out=z)
            total, count = table_step(
                qi, q, s, mtm, trades, q2, peak, mdd, e_bid, e_ask, z,
                thr_b[j], thr_a[j], off_b[j], off_a[j], spread_rows[j], linear, gaussian, d, sq, mu_dt,
            )
            spread_total += total
            spread_steps += count
            if record:
                rec_s[:, j + 1], rec_q[:, j + 1], rec_p[:, j + 1] = s[:record], q[:record], mtm[:record]
            continue
        # generic policy: numpy over paths
        db, da = policy.quotes(t, q, s, rng)
        db = np.array(np.broadcast_to(db, (n_paths,)), dtype=float)
        da = np.array(np.broadcast_to(da, (n_paths,)), dtype=float)
        if q_max is not None:
            db[q + d > q_max + 1e-9] = np.inf
            da[q - d < -q_max - 1e-9] = np.inf
        if tick > 0:
            db, da = tick_offsets(s, db, da, tick)
        if linear:
            np.greater(e_bid, k * db - log_adt, out=fb)
            np.greater(e_ask, k * da - log_adt, out=fa)
        else:
            np.less(e_bid, np.exp(-k * db) * adt, out=fb)
            np.less(e_ask, np.exp(-k * da) * adt, out=fa)
        np.add(db, da, out=tmp)
        both = np.isfinite(tmp)
        spread_total += float(tmp[both].sum())
        spread_steps += int(both.sum())
        income = np.where(fb, db, 0.0)
        income += np.where(fa, da, 0.0)
        # trades at the quoted prices: d(X + qS) = Delta (fills x offsets) + q_after dS
        np.subtract(fb, fa, out=dq, dtype=float)
        if d != 1.0:
            dq *= d
            income *= d
        q += dq
        trades += fb
        trades += fa
        q2 += q * q
        mtm += income
        # the mid moves
        if gaussian:
            rng.standard_normal(out=z)
            z *= sq
        else:
            rng.random(out=z)
            np.copyto(z, np.where(z < 0.5, -sq, sq))
        if mu_dt:
            z += mu_dt
        s += z
        z *= q
        mtm += z
        np.maximum(peak, mtm, out=peak)
        np.subtract(peak, mtm, out=tmp)
        np.maximum(mdd, tmp, out=mdd)
        if record:
            rec_s[:, j + 1], rec_q[:, j + 1], rec_p[:, j + 1] = s[:record], q[:record], mtm[:record]

    if on_steps is not None:
        on_steps((n_steps - (n_steps - 1) // report_every * report_every) * n_paths)
    pnl = mtm - problem.terminal(q)
    paths = None
    if record:
        rec_p[:, -1] = pnl[:record]
        paths = {"t": np.arange(n_steps + 1) * dt, "s": rec_s, "q": rec_q, "pnl": rec_p}
    return ChunkResult(pnl, q, trades, mdd, q2 * dt, spread_total, spread_steps, paths)
