"""Quote grids chosen from the model: tick levels that cover the quotes the optimum wants.

The tick-grid solvers (``pi``, ``csp``) optimise over a finite set of offsets ``tick * levels``.
A grid narrower than the quotes the optimum wants truncates it: the chosen quotes pile up at the
grid's first or last level (the solution's ``info["grid_edge_share"]``) and the policy is the best
*on that grid*, not the optimum. :func:`model_grid` spans the quotes of the continuous-time optimum
over every inventory at which a side is quoted: its stationary quotes (the limit ``T - t -> inf``,
:func:`mmray.solvers.exact.stationary_quotes`, towards which the skew grows with the time left) and
its quotes at the horizon (``delta~`` plus the terminal penalty's differences). The discrete-time
problem (one step of ``dt``, at most one fill per side) is solved for a simulator whose fill
probability per step saturates, and its optimum quotes differently (wider at zero inventory, further
skewed at the bounds): with ``dt`` and the fill model given, the range is widened on each side by the
difference between the discrete myopic quote (:func:`discrete_myopic_quote`) and ``1/k``, and a couple
of levels of margin are added. (Offsets may be negative: a quote through the mid, which the model
allows and a strongly risk-averse maker at a large inventory wants.)
"""

from __future__ import annotations

import math

import numpy as np

from mmray.model import delta_tilde, fill_probability
from mmray.params import MarketParams, ProblemParams

#: mantissas of "round" tick sizes (1, 2, 2.5, 5 times a power of ten)
ROUND_TICKS = (1.0, 2.0, 2.5, 5.0)
#: ticks per myopic quote ``delta~`` of :func:`fine_tick`
TICKS_PER_QUOTE = 15
#: grid levels added beyond the asymptotic quotes on each side
MARGIN_LEVELS = 2


def round_tick(x: float, up: bool = False) -> float:
    """The largest round tick (:data:`ROUND_TICKS` times a power of ten) ``<= x`` (``>= x`` if ``up``)."""
    if not (math.isfinite(x) and x > 0):
        raise ValueError(f"a tick size must be a finite number > 0, got {x!r}")
    e = math.floor(math.log10(x))
    candidates = sorted(m * 10.0**p for p in (e - 1, e, e + 1) for m in ROUND_TICKS)
    tol = 1e-12 * x
    if up:
        return next(c for c in candidates if c >= x - tol)
    return max(c for c in candidates if c <= x + tol)


def fine_tick(market: MarketParams, problem: ProblemParams) -> float:
    """A round tick of about 1/:data:`TICKS_PER_QUOTE` of the myopic quote ``delta~`` (0.2 for the GLFT 2013
    market, ``delta~`` = 3.3): fine enough that rounding to it costs little value."""
    return round_tick(delta_tilde(market, problem) / TICKS_PER_QUOTE)


def quote_range(market: MarketParams, problem: ProblemParams) -> tuple[float, float]:
    """Smallest and largest offset the continuous-time optimum quotes, over the inventories where each side is
    quoted (no bid at ``q = Q``, no ask at ``q = -Q``): its stationary quotes and its quotes at the horizon;
    needs a bounded inventory."""
    from mmray.solvers.exact import stationary_quotes

    q, bid, ask = stationary_quotes(market, problem)
    base, size = delta_tilde(market, problem), market.trade_size
    ell = problem.terminal(q)
    at_t = np.concatenate([base + (ell[1:] - ell[:-1]) / size, base + (ell[:-1] - ell[1:]) / size])
    quoted = np.concatenate([bid[np.isfinite(bid)], ask[np.isfinite(ask)], at_t, [base]])
    return float(quoted.min()), float(quoted.max())


def discrete_myopic_quote(market: MarketParams, dt: float, fill_model: str) -> float:
    """The offset maximising ``delta * p(delta)``, the expected spread income of one step with the
    simulator's fill probability ``p`` (:func:`mmray.model.fill_probability`): the discrete-time
    counterpart of ``1/k`` (equal to it as ``A dt -> 0``, wider when fills saturate)."""
    k = market.k
    delta = np.linspace(0.0, 20.0 / k, 4001)
    gain = delta * fill_probability(delta, market, dt, fill_model)
    i = int(np.argmax(gain))
    lo, hi = delta[max(i - 1, 0)], delta[min(i + 1, delta.size - 1)]
    for _ in range(60):  # golden section on the bracketing cell (the gain is unimodal there)
        a, b = lo + 0.382 * (hi - lo), hi - 0.382 * (hi - lo)
        if a * fill_probability(a, market, dt, fill_model) < b * fill_probability(b, market, dt, fill_model):
            lo = a
        else:
            hi = b
    return float(0.5 * (lo + hi))


def model_grid(market: MarketParams, problem: ProblemParams, tick: float | None = None,
               max_levels: int | None = None, dt: float | None = None,
               fill_model: str = "poisson") -> tuple[float, np.ndarray]:
    """``(tick, levels)`` covering :func:`quote_range` with :data:`MARGIN_LEVELS` levels to spare on each side;
    with the decision step ``dt`` (and the simulator's ``fill_model``) the range is widened on both sides
    by the discrete-time shift of the myopic quote, ``|discrete_myopic_quote - 1/k|``.

    ``tick`` (e.g. the market's) is kept as given; without one it is :func:`fine_tick`, made coarser (a
    round tick) when more than ``max_levels`` levels would be needed.
    """
    lo, hi = quote_range(market, problem)
    if dt is not None:
        shift = abs(discrete_myopic_quote(market, dt, fill_model) - 1.0 / market.k)
        lo, hi = lo - shift, hi + shift
    if tick is None:
        tick = fine_tick(market, problem)
        if max_levels is not None and (hi - lo) / tick + 1 + 2 * MARGIN_LEVELS > max_levels:
            tick = round_tick((hi - lo) / max(1, max_levels - 1 - 2 * MARGIN_LEVELS), up=True)
    first = math.floor(lo / tick + 1e-9) - MARGIN_LEVELS
    last = math.ceil(hi / tick - 1e-9) + MARGIN_LEVELS
    return float(tick), np.arange(first, last + 1, dtype=np.int64)
