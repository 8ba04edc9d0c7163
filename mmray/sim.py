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

Tracked per path: cash ``X``, inventory ``q``, mark-to-market PnL ``X + q S`` and its maximum
drawdown, number of fills, the sum of quoted spreads, ``int q^2 dt``. At ``T`` the PnL is
``X_T + q_T S_T - ell(q_T) - (X_0 + q_0 S_0)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mmray.params import MarketParams, ProblemParams, SimConfig
from mmray.policy import Policy, TablePolicy


@dataclass(frozen=True)
class ChunkResult:
    """Per-path outcomes of one chunk (arrays of length ``n_paths``) and recorded paths.

    ``spread_sum`` / ``spread_count``: sum and number of steps where both sides were quoted.
    ``paths`` (if recorded): ``{"t": (steps+1,), "s"|"q"|"pnl": (K, steps+1)}``.
    """

    pnl: np.ndarray
    q_final: np.ndarray
    trades: np.ndarray
    max_drawdown: np.ndarray
    spread_sum: np.ndarray
    spread_count: np.ndarray
    q2_integral: np.ndarray
    paths: dict[str, np.ndarray] | None = None

    FIELDS = ("pnl", "q_final", "trades", "max_drawdown", "spread_sum", "spread_count", "q2_integral")


def fill_probability(delta: np.ndarray | float, market: MarketParams, dt: float, fill_model: str) -> np.ndarray:
    """Probability that a quote at offset ``delta`` is hit within one step ``dt``.

    ``"linear"``: ``min(A exp(-k delta) dt, 1)`` (AS 2008); ``"poisson"``:
    ``1 - exp(-A exp(-k delta) dt)``. ``delta = inf`` (no quote) gives 0. This is the
    probability the simulator uses; solvers of the discrete problem (policy iteration, CSP)
    use it so that their policies are optimal for the simulator.
    """
    with np.errstate(over="ignore"):
        rate_dt = market.A * np.exp(-market.k * np.asarray(delta, dtype=float)) * dt
    if fill_model == "linear":
        return np.minimum(rate_dt, 1.0)
    if fill_model == "poisson":
        return -np.expm1(-rate_dt)
    raise ValueError(f"fill_model must be 'linear' or 'poisson', got {fill_model!r}")


def _table_fast_path(policy: Policy, q0: float, step: float) -> tuple[TablePolicy, int] | None:
    """If ``policy`` is a table whose inventory grid contains q0 with the trade size as step,
    return it and the index of ``q0`` (the simulator then indexes rows directly)."""
    if not isinstance(policy, TablePolicy) or policy.q_grid.size < 2:
        return None
    if abs(policy.q_step - step) > 1e-12 * step:
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
    """
    rng = np.random.default_rng(seed)
    n_steps = config.n_steps(problem.T)
    dt = config.dt
    A, k, d = market.A, market.k, market.trade_size
    sq = market.sigma * math.sqrt(dt)
    mu_dt = market.drift * dt
    log_adt = math.log(A * dt)
    q_max = problem.q_max
    tick = market.tick
    linear = config.fill_model == "linear"
    record = min(record, n_paths)

    s = np.full(n_paths, market.s0)
    q = np.full(n_paths, float(config.q0))
    cash = np.zeros(n_paths)
    trades = np.zeros(n_paths)
    peak = np.zeros(n_paths)
    mdd = np.zeros(n_paths)
    spread_sum = np.zeros(n_paths)
    spread_cnt = np.zeros(n_paths)
    q2 = np.zeros(n_paths)
    e_bid = np.empty(n_paths)
    e_ask = np.empty(n_paths)
    z = np.empty(n_paths)
    tmp = np.empty(n_paths)
    fb = np.empty(n_paths, dtype=bool)
    fa = np.empty(n_paths, dtype=bool)
    wealth0 = config.q0 * market.s0

    fast = _table_fast_path(policy, config.q0, d) if q_max is not None else None
    if fast is not None:
        table, qi0 = fast
        qi = np.full(n_paths, qi0, dtype=np.intp)
        no_bid = table.q_grid + d > q_max + 1e-9  # no bid at q = Q
        no_ask = table.q_grid - d < -q_max - 1e-9  # no ask at q = -Q

    if record:
        rec_s = np.empty((record, n_steps + 1))
        rec_q = np.empty((record, n_steps + 1))
        rec_p = np.empty((record, n_steps + 1))
        rec_s[:, 0], rec_q[:, 0], rec_p[:, 0] = s[:record], q[:record], 0.0

    for j in range(n_steps):
        t = j * dt
        # 1. quotes
        if fast is not None:
            bid_row, ask_row = table.row(t)
            db = np.where(no_bid, np.inf, bid_row)[qi]
            da = np.where(no_ask, np.inf, ask_row)[qi]
        else:
            db, da = policy.quotes(t, q, s, rng)
            db = np.array(db, dtype=float, copy=True).reshape(n_paths) if np.ndim(db) else np.full(n_paths, float(db))
            da = np.array(da, dtype=float, copy=True).reshape(n_paths) if np.ndim(da) else np.full(n_paths, float(da))
            if q_max is not None:
                db[q + d > q_max + 1e-9] = np.inf
                da[q - d < -q_max - 1e-9] = np.inf
        if tick > 0:
            db = s - np.floor((s - db) / tick) * tick
            da = np.ceil((s + da) / tick) * tick - s
        # 2. fills: P(fill) = p  <=>  E > -ln p with E ~ Exp(1)
        rng.standard_exponential(out=e_bid)
        rng.standard_exponential(out=e_ask)
        if linear:  # p = min(A dt e^{-k delta}, 1):  -ln p = k delta - ln(A dt)
            np.multiply(db, k, out=tmp)
            np.subtract(tmp, log_adt, out=tmp)
            np.greater(e_bid, tmp, out=fb)
            np.multiply(da, k, out=tmp)
            np.subtract(tmp, log_adt, out=tmp)
            np.greater(e_ask, tmp, out=fa)
        else:  # p = 1 - exp(-L dt):  fill  <=>  E' < L dt with E' ~ Exp(1)
            np.multiply(db, -k, out=tmp)
            np.exp(tmp, out=tmp)
            np.less(e_bid, tmp * (A * dt), out=fb)
            np.multiply(da, -k, out=tmp)
            np.exp(tmp, out=tmp)
            np.less(e_ask, tmp * (A * dt), out=fa)
        # spread statistics (before fills change anything)
        np.add(db, da, out=tmp)
        both = np.isfinite(tmp)
        spread_sum += np.where(both, tmp, 0.0)
        spread_cnt += both
        # 3. trades at the quoted prices
        cash += d * (np.where(fa, s + da, 0.0) - np.where(fb, s - db, 0.0))
        dq = fb.astype(np.intp) - fa
        q += d * dq
        trades += fb
        trades += fa
        if fast is not None:
            qi += dq
        q2 += q * q * dt
        # 4. mid moves
        if config.price_model == "gaussian":
            rng.standard_normal(out=z)
            s += mu_dt + sq * z
        else:
            s += mu_dt + sq * (2.0 * (rng.random(out=z) < 0.5) - 1.0)
        mtm = cash + q * s - wealth0
        np.maximum(peak, mtm, out=peak)
        np.maximum(mdd, peak - mtm, out=mdd)
        if record:
            rec_s[:, j + 1], rec_q[:, j + 1], rec_p[:, j + 1] = s[:record], q[:record], mtm[:record]

    pnl = cash + q * s - problem.terminal(q) - wealth0
    paths = None
    if record:
        rec_p[:, -1] = pnl[:record]
        paths = {"t": np.arange(n_steps + 1) * dt, "s": rec_s, "q": rec_q, "pnl": rec_p}
    return ChunkResult(pnl, q.copy(), trades, mdd, spread_sum, spread_cnt, q2, paths)
