"""Vectorised Monte Carlo market simulator (paths x steps in numpy): the one market step.

The market dynamics live in one function, :func:`market_step`, which advances the state of N
paths (:class:`PathState`) by one step of a :class:`StepModel`, given the quotes chosen on each
path. :func:`simulate_chunk` is "ask the policy, then step" in a loop; the Gymnasium
environments call the same function with their agents' actions, so a vectorised environment over
N paths is this simulator. At each step ``t_j = j dt``:

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
are computed once per (step, inventory level), in blocks of :data:`ROWS_BLOCK` steps, and one
fused numba kernel (:func:`mmray._kernels.table_step`, the compiled twin of :func:`market_step`)
updates all paths; the draws and the order of floating-point operations are those of
:func:`market_step`, so both give the same numbers (tested).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mmray._kernels import quote_step, table_step
from mmray.features import SIM_FEATURES, check_features, policy_features
from mmray.params import MarketParams, ProblemParams, SimConfig
from mmray.policy import Policy, TablePolicy, ask_quotes, simulation_market


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


@dataclass(frozen=True)
class StepModel:
    """The constants of one simulator step: market, step length and models.

    Attributes
    ----------
    k : float
        Intensity decay per price unit.
    d : float
        Trade size ``Delta``.
    adt, log_adt : float
        ``A dt`` and its log.
    sq : float
        ``sigma sqrt(dt)``, the mid's step scale.
    mu_dt : float
        Drift per step.
    q_max : float or None
        Inventory bound ``Q`` (``None``: unbounded).
    tick : float
        Tick the quoted prices are rounded to (outward), 0 = none.
    linear, gaussian : bool
        ``fill_model == "linear"`` (else poisson), ``price_model == "gaussian"`` (else binomial).
    """

    k: float
    d: float
    adt: float
    log_adt: float
    sq: float
    mu_dt: float
    q_max: float | None
    tick: float
    linear: bool
    gaussian: bool

    @classmethod
    def of(cls, market: MarketParams, problem: ProblemParams, config: SimConfig) -> StepModel:
        """The step of ``config.dt`` in ``market`` with ``problem``'s inventory bound."""
        adt = market.A * config.dt
        return cls(market.k, market.trade_size, adt, math.log(adt), market.sigma * math.sqrt(config.dt),
                   market.drift * config.dt, problem.q_max, market.tick, config.fill_model == "linear",
                   config.price_model == "gaussian")


class PathState:
    """The state of ``n`` paths, advanced in place by :func:`market_step`.

    Attributes (arrays of length ``n``)
    -----------------------------------
    s, q : mid price and inventory.
    mtm : mark-to-market PnL ``W = X + q S - (X_0 + q_0 S_0)``.
    trades : fills so far; ``q2`` : sum over steps of the inventory after each step squared
        (times ``dt``: ``int q^2 dt``); ``peak``, ``mdd`` : running maximum of ``mtm`` and the
        largest fall from it (maximum drawdown).
    ds : the last step's mid change (0 before the first step).
    bid_offset, ask_offset : the offsets applied at the last step, after the inventory bounds and
        tick rounding (``inf`` where a side was not quoted).
    bid_filled, ask_filled : bool, whether each side was filled at the last step.

    The offsets and the fill flags are written by :func:`market_step` only: the fused table
    kernel, which :func:`simulate_chunk` uses for tables that read no feature, leaves them.
    e_bid, e_ask : the fill variates (standard exponentials) of the next step, once drawn
        (:meth:`draw_fill_variates`).
    """

    def __init__(self, n: int, s0: float, q0: float) -> None:
        self.s = np.full(n, s0)
        self.q = np.full(n, q0)
        self.mtm = np.zeros(n)
        self.trades = np.zeros(n)
        self.peak = np.zeros(n)
        self.mdd = np.zeros(n)
        self.q2 = np.zeros(n)
        self.ds = np.zeros(n)
        self.bid_offset = np.full(n, np.inf)
        self.ask_offset = np.full(n, np.inf)
        self.e_bid, self.e_ask, self.tmp, self.dq = (np.empty(n) for _ in range(4))
        self.bid_filled = np.zeros(n, dtype=bool)
        self.ask_filled = np.zeros(n, dtype=bool)

    @property
    def n(self) -> int:
        return int(self.s.size)

    def restart(self, where: np.ndarray, s0: float, q0: float) -> None:
        """Start the paths selected by ``where`` (a boolean mask or indices) afresh: mid ``s0``,
        inventory ``q0``, everything else as a new :class:`PathState` has it."""
        fresh = PathState(1, s0, q0)
        for name, value in vars(fresh).items():
            getattr(self, name)[where] = value[0]

    def draw_fill_variates(self, rng: np.random.Generator) -> None:
        """Draw the next step's fill variates: ``n`` exponentials for the bids, then ``n`` for the asks."""
        rng.standard_exponential(out=self.e_bid)
        rng.standard_exponential(out=self.e_ask)

    def features(self, names: tuple[str, ...], m: StepModel) -> dict[str, np.ndarray]:
        """The simulator's features (:data:`mmray.features.SIM_FEATURES`) named in ``names``."""
        out: dict[str, np.ndarray] = {}
        for name in names:
            if name == "mid_return":
                out[name] = self.ds / m.sq
            elif name in ("bid_offset_prev", "ask_offset_prev"):
                off = self.bid_offset if name == "bid_offset_prev" else self.ask_offset
                out[name] = np.where(np.isfinite(off), off, 0.0)
        return out


def market_step(
    p: PathState, bid: np.ndarray | float, ask: np.ndarray | float, m: StepModel, rng: np.random.Generator,
    fills_drawn: bool = False,
) -> tuple[float, int]:
    """Advance every path of ``p`` by one step, given the offsets quoted on each path.

    In order: a side is not quoted where the inventory bound forbids it (no bid where
    ``q + Delta > Q``, no ask where ``q - Delta < -Q``) or its offset is ``inf``; with a tick, the
    prices are rounded outward to the tick grid (:func:`tick_offsets`); each side fills by
    comparing its exponential variate with the fill probability of its offset; fills trade
    ``Delta`` at the quoted prices; the mid moves; ``mtm``, its peak and drawdown, ``q2`` and
    the fill counts are updated.

    Draw order (fixed, so that a path's numbers depend only on the seed): ``n`` bid exponentials,
    ``n`` ask exponentials, then ``n`` price variates. A driver whose policy draws from the same
    generator draws the exponentials first (:meth:`PathState.draw_fill_variates`), asks the policy,
    and passes ``fills_drawn=True``: that is what :func:`simulate_chunk` does.

    ``bid``/``ask``: a scalar or one offset per path (``inf`` = not quoted). Returns the sum and
    the count of quoted spreads over the paths where both sides were quoted.

    One compiled pass over the paths (:func:`mmray._kernels.quote_step`); its plain twin is
    :func:`market_step_numpy`, and :func:`mmray._kernels.table_step` is the fused twin for table
    policies (the simulator's fast path). All three are tested equal.
    """
    if not fills_drawn:
        p.draw_fill_variates(rng)
    db = _offsets(bid, p.s.size, "bid")
    da = _offsets(ask, p.s.size, "ask")
    if m.gaussian:
        rng.standard_normal(out=p.ds)
    else:
        rng.random(out=p.ds)
    quote_step(
        p.q, p.s, p.mtm, p.trades, p.q2, p.peak, p.mdd, p.ds, p.bid_offset, p.ask_offset,
        p.bid_filled, p.ask_filled, p.e_bid, p.e_ask, db, da, p.tmp, m.q_max is not None,
        0.0 if m.q_max is None else float(m.q_max), m.tick, m.k, m.log_adt, m.adt, m.linear, m.gaussian,
        m.d, m.sq, m.mu_dt,
    )
    both = np.isfinite(p.tmp)
    return float(p.tmp[both].sum()), int(both.sum())


def _offsets(value: np.ndarray | float, n: int, side: str) -> np.ndarray:
    """Quoted offsets as a contiguous float array of length ``n``, or 1 for one offset on every path."""
    arr = np.asarray(value, dtype=float)
    if arr.size == 1 and arr.ndim <= 1:
        return arr.reshape(1)
    if arr.shape != (n,):
        raise ValueError(f"market_step: {side} offsets have shape {arr.shape}, expected ({n},) or a scalar")
    return np.ascontiguousarray(arr)


def market_step_numpy(
    p: PathState, bid: np.ndarray | float, ask: np.ndarray | float, m: StepModel, rng: np.random.Generator,
    fills_drawn: bool = False,
) -> tuple[float, int]:
    """The plain numpy twin of :func:`market_step` (same draws, same arithmetic, whole-array
    operations). Tests compare the two; the simulator and the environments call :func:`market_step`."""
    if not fills_drawn:
        p.draw_fill_variates(rng)
    n = p.s.size
    db = np.array(np.broadcast_to(bid, (n,)), dtype=float)
    da = np.array(np.broadcast_to(ask, (n,)), dtype=float)
    if m.q_max is not None:
        db[p.q + m.d > m.q_max + 1e-9] = np.inf
        da[p.q - m.d < -m.q_max - 1e-9] = np.inf
    if m.tick > 0:
        db, da = tick_offsets(p.s, db, da, m.tick)
    p.bid_offset, p.ask_offset = db, da
    if m.linear:
        np.greater(p.e_bid, m.k * db - m.log_adt, out=p.bid_filled)
        np.greater(p.e_ask, m.k * da - m.log_adt, out=p.ask_filled)
    else:
        np.less(p.e_bid, np.exp(-m.k * db) * m.adt, out=p.bid_filled)
        np.less(p.e_ask, np.exp(-m.k * da) * m.adt, out=p.ask_filled)
    np.add(db, da, out=p.tmp)
    both = np.isfinite(p.tmp)
    spread_total, spread_steps = float(p.tmp[both].sum()), int(both.sum())
    income = np.where(p.bid_filled, db, 0.0)
    income += np.where(p.ask_filled, da, 0.0)
    # trades at the quoted prices: d(X + qS) = Delta (fills x offsets) + q_after dS
    np.subtract(p.bid_filled, p.ask_filled, out=p.dq, dtype=float)
    if m.d != 1.0:
        p.dq *= m.d
        income *= m.d
    p.q += p.dq
    p.trades += p.bid_filled
    p.trades += p.ask_filled
    p.q2 += p.q * p.q
    p.mtm += income
    # the mid moves
    z = p.ds
    if m.gaussian:
        rng.standard_normal(out=z)
        z *= m.sq
    else:
        rng.random(out=z)
        np.copyto(z, np.where(z < 0.5, -m.sq, m.sq))
    if m.mu_dt:
        z += m.mu_dt
    p.s += z
    np.multiply(z, p.q, out=p.tmp)
    p.mtm += p.tmp
    np.maximum(p.peak, p.mtm, out=p.peak)
    np.subtract(p.peak, p.mtm, out=p.tmp)
    np.maximum(p.mdd, p.tmp, out=p.mdd)
    return spread_total, spread_steps


ROWS_BLOCK = 2048  # time steps of table rows precomputed at once: memory ~ ROWS_BLOCK x levels, not steps x levels


class _TableRows:
    """A table policy's rows on its inventory grid, turned into fill thresholds and offsets
    (everything that depends only on ``(t, q)``: a few dozen numbers per step, gathered by index),
    computed for ``ROWS_BLOCK`` steps at a time so that memory does not grow with the step count."""

    def __init__(self, table: TablePolicy, times: np.ndarray, m: StepModel) -> None:
        self.table, self.times, self.m = table, times, m
        self._block(0)

    def at(self, j: int) -> tuple[np.ndarray, ...]:
        """Thresholds, offsets and spreads of step ``j``: ``(thr_b, thr_a, off_b, off_a, spread)``."""
        if not self.start <= j < self.start + ROWS_BLOCK:
            self._block(j - j % ROWS_BLOCK)
        i = j - self.start
        return self.thr_b[i], self.thr_a[i], self.off_b[i], self.off_a[i], self.spread[i]

    def _block(self, start: int) -> None:
        m, table = self.m, self.table
        self.start = start
        bid_rows, ask_rows = table.rows(self.times[start:start + ROWS_BLOCK])
        bid_rows[:, table.q_grid + m.d > m.q_max + 1e-9] = np.inf  # no bid at q = Q
        ask_rows[:, table.q_grid - m.d < -m.q_max - 1e-9] = np.inf  # no ask at q = -Q
        # P(fill) = p  <=>  E > -ln p (linear) or E < L dt (poisson), with E ~ Exp(1)
        with np.errstate(over="ignore"):
            self.thr_b = m.k * bid_rows - m.log_adt if m.linear else np.exp(-m.k * bid_rows) * m.adt
            self.thr_a = m.k * ask_rows - m.log_adt if m.linear else np.exp(-m.k * ask_rows) * m.adt
        self.spread = bid_rows + ask_rows
        self.spread[~np.isfinite(self.spread)] = np.nan
        self.off_b = np.where(np.isfinite(bid_rows), bid_rows, 0.0)
        self.off_a = np.where(np.isfinite(ask_rows), ask_rows, 0.0)


def _table_step(p: PathState, qi: np.ndarray, rows: _TableRows, j: int, m: StepModel,
                rng: np.random.Generator) -> tuple[float, int]:
    """One step of the fused kernel (same draws and arithmetic as :func:`market_step`)."""
    if m.gaussian:
        rng.standard_normal(out=p.ds)
    else:
        rng.random(out=p.ds)
    thr_b, thr_a, off_b, off_a, spread = rows.at(j)
    return table_step(
        qi, p.q, p.s, p.mtm, p.trades, p.q2, p.peak, p.mdd, p.e_bid, p.e_ask, p.ds,
        thr_b, thr_a, off_b, off_a, spread, m.linear, m.gaussian, m.d, m.sq, m.mu_dt,
    )


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
        Quoting policy (may be specified for other parameters than ``market``: robustness). Asked
        for quotes through :func:`mmray.policy.ask_quotes` with the simulator's features
        (:data:`mmray.features.SIM_FEATURES`); a policy reading other features is refused. A policy
        whose offsets are already on its own tick grid (:func:`mmray.policy.quotes_on_tick_grid`)
        is simulated without a second rounding to ``market.tick``.
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
    n_steps, dt = config.check(market, problem), config.dt
    check_features(policy, SIM_FEATURES, "the Monte Carlo simulator")
    names = policy_features(policy)
    m = StepModel.of(simulation_market(policy, market), problem, config)
    p = PathState(n_paths, market.s0, config.q0)
    record = min(record, n_paths)
    spread_total, spread_steps = 0.0, 0

    fast = None
    if m.q_max is not None and m.tick == 0 and not names:
        fast = _table_fast_path(policy, config.q0, m.d, m.q_max)
    if fast is not None:
        table, qi0 = fast
        qi = np.full(n_paths, qi0, dtype=np.intp)
        rows = _TableRows(table, np.arange(n_steps) * dt, m)
    if record:
        rec_s, rec_q, rec_p = (np.empty((record, n_steps + 1)) for _ in range(3))
        rec_s[:, 0], rec_q[:, 0], rec_p[:, 0] = p.s[:record], p.q[:record], 0.0

    report_every = max(1, n_steps // 100)
    for j in range(n_steps):
        if on_steps is not None and j % report_every == 0 and j:
            on_steps(report_every * n_paths)
        p.draw_fill_variates(rng)
        if fast is not None:
            total, count = _table_step(p, qi, rows, j, m, rng)
        else:  # ask the policy, then step
            bid, ask = ask_quotes(policy, j * dt, p.q, p.s, rng, p.features(names, m) if names else None)
            total, count = market_step(p, bid, ask, m, rng, fills_drawn=True)
        spread_total += total
        spread_steps += count
        if record:
            rec_s[:, j + 1], rec_q[:, j + 1], rec_p[:, j + 1] = p.s[:record], p.q[:record], p.mtm[:record]

    if on_steps is not None:
        on_steps((n_steps - (n_steps - 1) // report_every * report_every) * n_paths)
    pnl = p.mtm - problem.terminal(p.q)
    paths = None
    if record:
        rec_p[:, -1] = pnl[:record]
        paths = {"t": np.arange(n_steps + 1) * dt, "s": rec_s, "q": rec_q, "pnl": rec_p}
    return ChunkResult(pnl, p.q, p.trades, p.mdd, p.q2 * dt, spread_total, spread_steps, paths)
