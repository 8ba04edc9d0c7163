"""The simulator's discrete market-making problem: a finite MDP on a tick grid.

This is the problem that :mod:`mmray.sim` actually plays, written as a Markov decision process
(the shared model of the ``pi`` and ``csp`` solvers):

* decision times ``t_j = j dt``, ``j = 0..N-1``, ``dt = T / N``; state: inventory ``q`` on the
  lattice ``-Q..Q`` (step ``Delta``);
* action: a bid choice ``b`` and an ask choice ``a`` among the tick levels
  ``delta = tick * level`` (``level`` in ``levels``, e.g. ``min_level .. min_level + L - 1``) and
  "no quote" (index ``L``); no bid at ``q = Q``, no ask at ``q = -Q``;
* each side fills independently with the simulator's per-step probability
  ``p(delta) = fill_probability(delta, market, dt, fill_model)`` (:func:`mmray.model.fill_probability`):
  ``min(Lambda dt, 1)`` or ``1 - exp(-Lambda dt)``; a bid fill buys ``Delta`` at ``S - delta_b``,
  an ask fill sells at ``S + delta_a``, then the mid moves by ``mu dt + sigma sqrt(dt) Z``;
* objective B collects, per step, with ``q'`` the post-trade inventory (as the simulator's
  ``q2_integral``)::

      r = Delta (1{bid fill} delta_b + 1{ask fill} delta_a) + mu dt q' - gamma sigma^2 dt q'^2 / 2

  and ``-ell(q_N)`` at the end, so ``E[sum r] - E[ell]`` is exactly the backtest's ``value_B``;
* objective A maximises ``E[-exp(-gamma W_T)]``; the certainty equivalent satisfies
  ``exp(-gamma theta_j(q)) = min_{b,a} E[exp(-gamma (cash gain + q' dS + theta_{j+1}(q')))]`` with
  ``E exp(-gamma q' dS) = exp(-gamma q' mu dt + gamma^2 sigma^2 q'^2 dt / 2)`` (gaussian mid) or
  ``exp(-gamma q' mu dt) cosh(gamma q' sigma sqrt(dt))`` (binomial mid).

Because both sides can fill in the same step, the one-step value is *not* separable in the two
choices: with ``U(q') = R(q') + V_{j+1}(q')``, ``p_b = p(delta_b)``, ``p_a = p(delta_a)``::

    Q(q, b, a) = U(q) + p_b (Delta delta_b + U(q+Delta) - U(q)) + p_a (Delta delta_a + U(q-Delta) - U(q))
                 + p_b p_a (2 U(q) - U(q+Delta) - U(q-Delta))

(objective B). The coupling term ``p_b p_a`` is ``O(dt^2)`` but present, so the maximisation is
over all pairs, vectorised as an ``(n_q, L+1, L+1)`` array per step.

Quotes on the tick grid are offsets from a continuous mid: backtest with ``MarketParams(tick=0)``
so that the simulator does not round the prices again (see ``docs/solvers.md``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from mmray.checks import choice, flag, integer, real
from mmray.limits import model_scales, require_finite_solution, require_grid_memory
from mmray.model import delta_tilde, fill_probability
from mmray.params import FILL_MODELS, PRICE_MODELS, MarketParams, ProblemParams, inventory_grid
from mmray.solvers.constraints import Constraints
from mmray.solvers.fd import resolve_steps, steps_option
from mmray.solvers.intensity import Intensity, resolve_intensity

TICK_TABLES = 8  # (time x inventory) arrays of a backward induction: values, choices, offsets and copies
TICK_PAIR_ARRAYS = 10  # (inventory x pair) float64 arrays of one step's maximisation


@dataclass(frozen=True)
class QuoteGrid:
    """Admissible quote offsets: ``tick * levels`` (price units) plus, optionally, "no quote".

    Attributes
    ----------
    tick : float
        Tick size (price units).
    levels : ndarray of int
        Strictly increasing offsets in ticks.
    allow_no_quote : bool
        Whether the maker may leave a side empty away from the inventory bounds (at ``|q| = Q``
        the forbidden side is never quoted).
    """

    tick: float
    levels: np.ndarray
    allow_no_quote: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "tick", real("QuoteGrid.tick", self.tick, gt=0))
        levels = np.asarray(self.levels)
        if levels.ndim != 1 or levels.size < 1 or not np.all(np.isfinite(levels)) or np.any(levels != np.round(levels)):
            raise ValueError(f"QuoteGrid.levels must be a non-empty 1-d array of integers, got {self.levels!r}")
        levels = levels.astype(np.int64)
        if np.any(np.diff(levels) <= 0):
            raise ValueError("QuoteGrid.levels must be strictly increasing")
        levels.setflags(write=False)
        object.__setattr__(self, "levels", levels)
        object.__setattr__(self, "allow_no_quote", flag("QuoteGrid.allow_no_quote", self.allow_no_quote))

    @property
    def offsets(self) -> np.ndarray:
        return self.tick * self.levels

    @property
    def n_levels(self) -> int:
        return int(self.levels.size)

    def describe(self) -> dict[str, object]:
        return {
            "tick": self.tick, "levels": [int(v) for v in self.levels], "allow_no_quote": self.allow_no_quote,
        }


def make_grid(
    market: MarketParams,
    problem: ProblemParams,
    tick: float | None = None,
    n_levels: int = 15,
    min_level: int | None = None,
    levels: np.ndarray | list[int] | None = None,
    allow_no_quote: bool = True,
) -> QuoteGrid:
    """Quote grid from solver options.

    ``tick`` defaults to ``market.tick`` (which must then be > 0). ``levels`` (explicit offsets in
    ticks) overrides ``n_levels``/``min_level``; otherwise the levels are
    ``min_level .. min_level + n_levels - 1`` with ``min_level`` defaulting to
    ``max(0, round(dtilde / tick) - n_levels // 2)``, centring the grid on the myopic quote.
    """
    if tick is None:
        if market.tick <= 0:
            raise ValueError(
                "the tick-grid solvers need a tick: set MarketParams.tick > 0 or pass tick=... "
                f"(got MarketParams.tick={market.tick!r})"
            )
        tick = market.tick
    tick = real("option tick", tick, gt=0)
    if levels is None:
        n_levels = integer("option n_levels", n_levels, ge=1)
        if min_level is None:
            min_level = max(0, round(delta_tilde(market, problem) / tick) - n_levels // 2)
        min_level = integer("option min_level (ticks)", min_level)
        levels = np.arange(min_level, min_level + n_levels)
    return QuoteGrid(tick, np.asarray(levels), allow_no_quote)


@dataclass(frozen=True)
class TickGrid:
    """The discrete problem's options, shared by the ``pi`` and ``csp`` solvers.

    Either solver takes a ``TickGrid`` as ``grid=`` and/or these fields as keyword options
    (``solve(market, problem, method="pi", tick=0.5, n_levels=9)``); keywords override ``grid``.

    Attributes
    ----------
    n_steps, dt : int or float, optional
        Decision step ``dt = T / n_steps`` (default 200 steps; ``dt`` must divide ``T``). Backtest a
        tick-grid policy with the same ``dt``.
    tick : float, optional
        Tick size (price units); default ``market.tick``.
    n_levels, min_level, levels : optional
        Quote levels in ticks: ``levels`` explicitly, else ``min_level .. min_level + n_levels - 1``
        (default centred on the myopic quote, see :func:`make_grid`).
    allow_no_quote : bool
        Allow leaving a side empty (the forbidden side at ``|q| = Q`` is never quoted).
    fill_model, price_model : str
        As in :class:`mmray.params.SimConfig`; ``price_model`` matters for objective A only.
    intensity : Intensity, str or dict, optional
        Fill rate (see :func:`mmray.solvers.intensity.resolve_intensity`); default the simulator's
        ``A exp(-k delta)`` through :func:`mmray.model.fill_probability`.
    """

    n_steps: int | None = None
    dt: float | None = None
    tick: float | None = None
    n_levels: int = 15
    min_level: int | None = None
    levels: Any = None
    allow_no_quote: bool = True
    fill_model: str = "poisson"
    price_model: str = "gaussian"
    intensity: Any = None

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def of(cls, grid: TickGrid | None, options: dict[str, Any], who: str) -> TickGrid:
        """``grid`` (default all defaults) with ``options`` applied; unknown names are an error."""
        if grid is not None and not isinstance(grid, TickGrid):
            raise ValueError(f"{who} option grid must be an mmray.solvers.TickGrid, got {grid!r}")
        unknown = sorted(set(options) - set(cls.field_names()))
        if unknown:
            raise ValueError(
                f"{who} does not take option(s) {unknown}; its tick-grid options are {list(cls.field_names())}"
            )
        return replace(grid if grid is not None else cls(), **options)

    def mdp(self, market: MarketParams, problem: ProblemParams, who: str = "pi") -> TickMDP:
        """The :class:`TickMDP` these options describe for ``market`` and ``problem``."""
        steps = resolve_steps(problem.T, self.n_steps, self.dt, 200, who)
        model_scales(market, problem)
        levels = np.size(self.levels) if self.levels is not None else integer(f"{who} option n_levels",
                                                                              self.n_levels, ge=1)
        pairs = float(levels + 1) ** 2  # (bid, ask) choices per inventory, "no quote" included
        require_grid_memory(f"{who} solver", steps + 1, steps_option(self.n_steps, self.dt, steps), market, problem,
                            tables=TICK_TABLES, per_level=TICK_PAIR_ARRAYS * pairs)
        intensity = resolve_intensity(self.intensity, market)
        if intensity is not None and not isinstance(intensity, Intensity):
            raise ValueError(
                f"{who} option intensity must be an mmray.solvers.intensity.Intensity, got {self.intensity!r}"
            )
        flag(f"{who} option allow_no_quote", self.allow_no_quote)
        grid = make_grid(market, problem, self.tick, self.n_levels, self.min_level, self.levels, self.allow_no_quote)
        return TickMDP(market, problem, grid, steps, self.fill_model, self.price_model, intensity)


class TickMDP:
    """The discrete problem of the simulator (see module docstring), vectorised over inventory.

    Parameters
    ----------
    market, problem : MarketParams, ProblemParams
        Model; ``problem.q_max`` must be set.
    grid : QuoteGrid
        Admissible offsets.
    n_steps : int
        Number of decision steps ``N`` (``dt = T / N``).
    fill_model : {"poisson", "linear"}
        Per-step fill probability, as in :class:`mmray.params.SimConfig`.
    price_model : {"gaussian", "binomial"}
        Mid-price increments (matters for objective A only).
    intensity : Intensity, optional
        Fill rate ``Lambda``; default (``None``) the simulator's ``A exp(-k delta)`` through
        :func:`mmray.model.fill_probability` itself.
    """

    def __init__(
        self,
        market: MarketParams,
        problem: ProblemParams,
        grid: QuoteGrid,
        n_steps: int,
        fill_model: str = "poisson",
        price_model: str = "gaussian",
        intensity: Intensity | None = None,
    ) -> None:
        self.market, self.problem, self.grid = market, problem, grid
        self.fill_model = choice("option fill_model", fill_model, FILL_MODELS)
        self.price_model = choice("option price_model", price_model, PRICE_MODELS)
        self.n_steps = int(n_steps)
        self.dt = problem.T / self.n_steps
        self.times = np.arange(self.n_steps + 1) * self.dt
        self.times[-1] = problem.T
        self.q = inventory_grid(problem, market)
        self.size = market.trade_size
        self.intensity = intensity
        L = grid.n_levels
        self.none = L  # index of "no quote"
        offsets = grid.offsets
        if intensity is None:
            p = fill_probability(offsets, market, self.dt, self.fill_model)
        else:
            rate_dt = intensity.rate(offsets) * self.dt
            p = np.minimum(rate_dt, 1.0) if self.fill_model == "linear" else -np.expm1(-rate_dt)
        self.delta = np.append(offsets, 0.0)  # placeholder offset for "no quote" (p = 0 there)
        self.quoted = np.append(np.ones(L, dtype=bool), False)
        self.p = np.append(np.asarray(p, dtype=float), 0.0)
        self.pp = np.outer(self.p, self.p)
        n = self.q.size
        self.bid_ok = np.ones((n, L + 1), dtype=bool)
        self.ask_ok = np.ones((n, L + 1), dtype=bool)
        self.bid_ok[-1, :L] = False  # no bid at q = Q
        self.ask_ok[0, :L] = False  # no ask at q = -Q
        if not grid.allow_no_quote:
            self.bid_ok[:-1, L] = False
            self.ask_ok[1:, L] = False
        # fill-outcome weights of objective A (per pair, in logs): neither side fills, bid only, ask only;
        # u0 = 1 - p, u1 = p exp(-gamma Delta delta); s0 = u0 u0' + u1 u1' > 0 (if p = 1 then u1 > 0)
        with np.errstate(divide="ignore"):
            lu0 = np.log1p(-self.p)
            lu1 = np.log(self.p) - problem.gamma * self.size * self.delta
        self._log_s0 = np.logaddexp(lu0[:, None] + lu0[None, :], lu1[:, None] + lu1[None, :])
        self._log_sp = lu1[:, None] + lu0[None, :]  # bid filled, ask not: q' = q + Delta
        self._log_sm = lu0[:, None] + lu1[None, :]  # ask filled, bid not: q' = q - Delta
        g, s2 = problem.gamma, market.sigma * market.sigma
        self.running = market.drift * self.dt * self.q - 0.5 * g * s2 * self.dt * self.q**2
        self.terminal = -problem.terminal(self.q)

    def describe(self) -> dict[str, Any]:
        """The discrete problem as JSON-ready data (``Solution.info`` of ``pi`` and ``csp``)."""
        return {
            "grid": self.grid.describe(),
            "n_steps": self.n_steps,
            "dt": self.dt,
            "fill_model": self.fill_model,
            "price_model": self.price_model,
            "intensity": None if self.intensity is None else self.intensity.describe(),
            "n_q": int(self.q.size),
        }

    # ------------------------------------------------------------------ actions
    @property
    def n_choices(self) -> int:
        return self.grid.n_levels + 1

    def violations(self, name: str, constraints: Constraints) -> np.ndarray:
        """``(L+1, L+1)`` bool: pairs (bid, ask) that violate the per-state restriction ``name``."""
        value = getattr(constraints, name)
        both = self.quoted[:, None] & self.quoted[None, :]
        lv = np.append(self.grid.levels, 0)
        if name == "max_spread":
            total = self.delta[:, None] + self.delta[None, :]
            return both & (total > value + 1e-12 * max(1.0, abs(value)))
        side, bound = name.split("_", 2)[:2]
        bad = self.quoted & ((lv < value) if bound == "min" else (lv > value))
        return np.broadcast_to(bad[:, None] if side == "bid" else bad[None, :], both.shape).copy()

    def pair_mask(self, constraints: Constraints | None = None) -> np.ndarray:
        """``(n_q, L+1, L+1)`` bool: admissible (bid, ask) pairs per inventory, honouring the
        inventory bounds, ``allow_no_quote`` and the per-state restrictions of ``constraints``."""
        mask = self.bid_ok[:, :, None] & self.ask_ok[:, None, :]
        if constraints is not None:
            for name in constraints.per_state_active():
                mask &= ~self.violations(name, constraints)[None]
        empty = ~mask.reshape(mask.shape[0], -1).any(axis=1)
        if np.any(empty):
            active = constraints.per_state_active() if constraints is not None else []
            what = ", ".join(constraints.describe(n) for n in active) if active else "no restriction"
            raise ValueError(
                f"no admissible quote pair at inventory q={self.q[np.flatnonzero(empty)[0]]:g}: the tick grid "
                f"(levels {self.grid.levels[0]}..{self.grid.levels[-1]}, tick {self.grid.tick:g}, "
                f"allow_no_quote={self.grid.allow_no_quote}) and {what} exclude every pair"
            )
        return mask

    # ------------------------------------------------------------------ one step
    def q_values(self, cont: np.ndarray) -> np.ndarray:
        """One-step values ``(n_q, L+1, L+1)`` of every (bid, ask) pair given the continuation.

        Objective B: ``cont`` is ``V_{j+1}`` (or any additive continuation ``U - R``); the result
        is the expected reward plus continuation. Objective A: ``cont`` is ``theta_{j+1}`` and the
        result is the certainty equivalent of each pair.
        """
        if self.problem.objective == "A":
            return self._q_values_cara(cont)
        return self.q_values_linear(self.running + cont)

    def q_values_linear(self, u: np.ndarray, cash_weight: float = 1.0) -> np.ndarray:
        """Objective-B one-step values for ``U(q') = R(q') + V(q')`` given on the inventory grid.

        ``cash_weight`` scales the spread income ``Delta delta`` (0 gives the expectation of ``U``
        alone, used for phase-1 pricing in :mod:`mmray.solvers.csp`).
        """
        up = np.append(u[1:], u[-1])
        um = np.insert(u[:-1], 0, u[0])
        gain = cash_weight * self.size * self.delta
        alpha = self.p[None, :] * (gain[None, :] + (up - u)[:, None])
        beta = self.p[None, :] * (gain[None, :] + (um - u)[:, None])
        c = 2.0 * u - up - um
        return (u[:, None, None] + alpha[:, :, None] + beta[:, None, :]) + c[:, None, None] * self.pp[None]

    def _log_mgf(self, q: np.ndarray) -> np.ndarray:
        """``log E exp(-gamma q dS)`` over one step for the post-trade inventory ``q``.

        Gaussian mid: ``-gamma q mu dt + gamma^2 sigma^2 q^2 dt / 2``; binomial mid:
        ``-gamma q mu dt + log cosh(gamma q sigma sqrt(dt))`` with
        ``log cosh x = |x| + log1p(e^(-2|x|)) - log 2`` (no overflow).
        """
        g, mu, sig, dt = self.problem.gamma, self.market.drift, self.market.sigma, self.dt
        if self.price_model == "gaussian":
            return -g * q * mu * dt + 0.5 * g * g * sig * sig * q * q * dt
        x = np.abs(g * q * sig * math.sqrt(dt))
        return -g * q * mu * dt + x + np.log1p(np.exp(-2.0 * x)) - math.log(2.0)

    def _q_values_cara(self, theta: np.ndarray) -> np.ndarray:
        """Certainty equivalents ``theta(q) - log(e) / gamma`` of every pair, computed in the log domain.

        ``e = m(q) s0 + m(q+Delta) e^(-gamma (theta(q+Delta) - theta(q))) s+ + m(q-Delta) e^(...) s-``
        (``m`` the mid's moment generating function, ``s0, s+, s-`` the fill-outcome weights of the
        pair); each term's logarithm is formed first and the three are combined by log-sum-exp, so
        neither strong risk aversion nor large inventories overflow ``exp``.
        """
        g = self.problem.gamma
        lm = self._log_mgf(self.q)
        rel_p = np.append(theta[1:] - theta[:-1], 0.0)
        rel_m = np.insert(theta[:-1] - theta[1:], 0, 0.0)
        l0 = lm[:, None, None] + self._log_s0[None]
        lp = (np.append(lm[1:], lm[-1]) - g * rel_p)[:, None, None] + self._log_sp[None]
        lmm = (np.insert(lm[:-1], 0, lm[0]) - g * rel_m)[:, None, None] + self._log_sm[None]
        top = np.maximum(np.maximum(l0, lp), lmm)  # finite: s0 > 0 always
        log_e = top + np.log(np.exp(l0 - top) + np.exp(lp - top) + np.exp(lmm - top))
        return theta[:, None, None] - log_e / g

    @staticmethod
    def best(values: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Maximise over admissible pairs: ``(value, bid_index, ask_index)`` per inventory."""
        n, nb, na = values.shape
        flat = np.where(mask, values, -np.inf).reshape(n, nb * na)
        k = np.argmax(flat, axis=1)
        return flat[np.arange(n), k], k // na, k % na

    @staticmethod
    def gather(values: np.ndarray, b: np.ndarray, a: np.ndarray) -> np.ndarray:
        """``values[i, b[i], a[i]]`` for every inventory ``i``."""
        return values[np.arange(values.shape[0]), b, a]

    # ------------------------------------------------------------------ finite horizon
    def backward(self, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Backward induction: ``(V (N+1, n), bid index (N, n), ask index (N, n))``."""
        n_t, n = self.n_steps, self.q.size
        value = np.empty((n_t + 1, n))
        b_idx = np.empty((n_t, n), dtype=np.intp)
        a_idx = np.empty((n_t, n), dtype=np.intp)
        value[-1] = self.terminal
        for j in range(n_t - 1, -1, -1):
            value[j], b_idx[j], a_idx[j] = self.best(self.q_values(value[j + 1]), mask)
        return value, b_idx, a_idx

    def evaluate(self, b_idx: np.ndarray, a_idx: np.ndarray) -> np.ndarray:
        """Exact value ``(N+1, n)`` of the deterministic policy choosing ``(b_idx[j, i], a_idx[j, i])``."""
        value = np.empty((self.n_steps + 1, self.q.size))
        value[-1] = self.terminal
        for j in range(self.n_steps - 1, -1, -1):
            value[j] = self.gather(self.q_values(value[j + 1]), b_idx[j], a_idx[j])
        return value

    # ------------------------------------------------------------------ conversions
    def offsets(self, b_idx: np.ndarray, a_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Offsets of choice indices, NaN for "no quote"."""
        off = np.append(self.grid.offsets, np.nan)
        return off[b_idx], off[a_idx]

    def require_finite(self, value: np.ndarray, bid: np.ndarray, ask: np.ndarray, who: str) -> None:
        """Refuse a non-finite value function or quote table (NaN in ``bid``/``ask`` means "no quote")."""
        require_finite_solution(who, value, bid, ask, "choose less extreme gamma, sigma, terminal_penalty or "
                                "q_max, or rescale the units (price, time)")

    def nearest_levels(self, offsets: np.ndarray, side: str) -> np.ndarray:
        """Index of the nearest grid level to each offset (clipped to the grid); NaN/inf -> no quote.

        The forbidden side at the inventory bound is set to "no quote" (as the simulator does).
        """
        offsets = np.asarray(offsets, dtype=float)
        grid = self.grid.offsets
        finite = np.isfinite(offsets)
        pos = np.searchsorted(grid, np.where(finite, offsets, 0.0))
        lo = np.clip(pos - 1, 0, grid.size - 1)
        hi = np.clip(pos, 0, grid.size - 1)
        x = np.where(finite, offsets, 0.0)
        idx = np.where(np.abs(grid[hi] - x) < np.abs(x - grid[lo]), hi, lo)
        idx = np.where(finite, idx, self.none)
        if side == "bid":
            idx[..., -1] = self.none
        else:
            idx[..., 0] = self.none
        return idx

    def step_transition(self, b: np.ndarray, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(P(q -> q+Delta), P(q -> q-Delta))`` per inventory for choices ``b``, ``a``."""
        pb, pa = self.p[b], self.p[a]
        return pb * (1.0 - pa), pa * (1.0 - pb)
