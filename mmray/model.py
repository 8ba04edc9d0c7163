"""Closed forms of the market-making model and inventory risk metrics.

All functions are plain numpy, vectorised over ``t`` and ``q``; no solver, no Ray.

Avellaneda-Stoikov (AS 2008, eqs. (29)-(30)), no inventory bound::

    r(t, s, q)   = s - q gamma sigma^2 (T - t)                      (reservation price)
    spread(t)    = gamma sigma^2 (T - t) + (2 / gamma) ln(1 + gamma / k)
    bid offset   = s - (r - spread/2),  ask offset = (r + spread/2) - s

Guéant 2017 asymptotic closed form (eqs. (4.6)-(4.7) for model A, (4.8)-(4.9) for B),
trade size ``Delta``, ``xi = gamma`` (A) or ``0`` (B)::

    delta_b(q) ~ dtilde + (2q + Delta)/2 * C,     delta_a(q) ~ dtilde - (2q - Delta)/2 * C
    dtilde = ln(1 + xi Delta / k) / (xi Delta)    (A),    1/k    (B)
    C = sqrt( gamma sigma^2 / (2 A Delta k) * (1 + xi Delta / k)^(k/(xi Delta) + 1) )   (A)
    C = sqrt( gamma sigma^2 e / (2 A Delta k) )                                        (B)

References: see :mod:`mmray.params`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from mmray.params import MarketParams, ProblemParams, SimConfig

ArrayLike = float | np.ndarray


def xi(problem: ProblemParams) -> float:
    """Risk-aversion parameter in the Hamiltonian: ``gamma`` for objective A, 0 for B."""
    return problem.gamma if problem.objective == "A" else 0.0


def c_xi(market: MarketParams, problem: ProblemParams) -> float:
    """``C_xi = (1 + xi Delta / k)^(-k/(xi Delta) - 1)``; ``C_0 = e^-1`` (Guéant 2017 §3).

    With exponential intensities, ``sup_delta Lambda(delta) (1 - exp(-xi Delta (delta - p))) / xi
    = Delta (A / k) C_xi exp(-k p)`` (and ``sup_delta Lambda(delta) (delta - p) = (A/k) e^-1 e^(-k p)``
    for ``xi = 0``), attained at ``delta = p + dtilde``.
    """
    x = xi(problem) * market.trade_size
    if x == 0.0:
        return math.exp(-1.0)
    # exp(log1p) keeps full precision for small xi Delta / k, where (1 + x/k) ** (-k/x - 1) loses digits
    return math.exp((-market.k / x - 1.0) * math.log1p(x / market.k))


def delta_tilde(market: MarketParams, problem: ProblemParams) -> float:
    """Myopic offset ``dtilde``: ``ln(1 + xi Delta / k)/(xi Delta)`` (A) or ``1/k`` (B).

    It is the optimal quote when the value function is flat in inventory (e.g. at ``t = T``
    without terminal penalty). Price units.
    """
    x = xi(problem) * market.trade_size
    if x == 0.0:
        return 1.0 / market.k
    return math.log1p(x / market.k) / x


def asymptotic_slope(market: MarketParams, problem: ProblemParams) -> float:
    """Skew coefficient ``C`` of the Guéant 2017 asymptotic quotes (price units per share)."""
    gs2 = problem.gamma * market.sigma**2
    return math.sqrt(gs2 / (2.0 * market.A * market.trade_size * market.k * c_xi(market, problem)))


def asymptotic_quotes(
    q: ArrayLike, market: MarketParams, problem: ProblemParams
) -> tuple[np.ndarray, np.ndarray]:
    """Guéant 2017 asymptotic (``T -> infinity``) bid and ask offsets at inventory ``q``.

    Drift-free closed form: ``market.drift`` is ignored (see docs/math.md for the shifted form).

    Returns ``(delta_b, delta_a)`` in price units; the bid is ``S - delta_b``, the ask
    ``S + delta_a``. Valid for objectives A and B (see module docstring).
    """
    q = np.asarray(q, dtype=float)
    dt_ = delta_tilde(market, problem)
    c = asymptotic_slope(market, problem)
    d = market.trade_size
    return dt_ + (2.0 * q + d) / 2.0 * c, dt_ - (2.0 * q - d) / 2.0 * c


def as_reservation_price(
    t: ArrayLike, q: ArrayLike, s: ArrayLike, market: MarketParams, problem: ProblemParams
) -> np.ndarray:
    """AS 2008 reservation (indifference) price ``r = s - q gamma sigma^2 (T - t)``."""
    tau = np.maximum(problem.T - np.asarray(t, dtype=float), 0.0)
    return np.asarray(s, dtype=float) - np.asarray(q, dtype=float) * problem.gamma * market.sigma**2 * tau


def as_spread(t: ArrayLike, market: MarketParams, problem: ProblemParams) -> np.ndarray:
    """AS 2008 total optimal spread ``gamma sigma^2 (T-t) + (2/gamma) ln(1 + gamma/k)``."""
    tau = np.maximum(problem.T - np.asarray(t, dtype=float), 0.0)
    g = problem.gamma
    return g * market.sigma**2 * tau + (2.0 / g) * math.log1p(g / market.k)


def as_mean_spread(market: MarketParams, problem: ProblemParams) -> float:
    """Time average over ``[0, T]`` of :func:`as_spread` (AS 2008's "symmetric" strategy)."""
    g = problem.gamma
    return 0.5 * g * market.sigma**2 * problem.T + (2.0 / g) * math.log1p(g / market.k)


def as_quotes(
    t: ArrayLike, q: ArrayLike, market: MarketParams, problem: ProblemParams
) -> tuple[np.ndarray, np.ndarray]:
    """AS 2008 inventory-strategy offsets from the mid: ``(s - bid, ask - s)``.

    ``bid offset = q gamma sigma^2 (T-t) + spread/2``, ``ask offset = -q gamma sigma^2 (T-t) + spread/2``.
    """
    tau = np.maximum(problem.T - np.asarray(t, dtype=float), 0.0)
    skew = np.asarray(q, dtype=float) * problem.gamma * market.sigma**2 * tau
    half = 0.5 * as_spread(t, market, problem)
    return half + skew, half - skew


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


def inventory_transition(rho: np.ndarray, p_up: np.ndarray, p_down: np.ndarray) -> np.ndarray:
    """The inventory distribution after one step, from ``rho`` on the inventory grid (spacing the trade
    size): a level moves up one with probability ``p_up`` (only the bid filled: ``p_b (1 - p_a)``), down
    one with ``p_down`` (``p_a (1 - p_b)``), else stays (both or neither filled), as the simulator's
    step moves a path. ``p_up`` must be 0 on the top level and ``p_down`` on the bottom one (the
    inventory bound quotes no side that would leave the grid), so no mass is lost."""
    up, down = p_up * rho, p_down * rho
    nxt = rho - up - down
    nxt[1:] += up[:-1]
    nxt[:-1] += down[1:]
    return nxt


@dataclass(frozen=True)
class ConstantQuoteMoments:
    """Exact moments of the simulator's PnL for a constant quote (see :func:`constant_quote_moments`)."""

    half_spread: float
    fill_prob: float
    n_steps: int
    pnl_mean: float
    pnl_std: float
    q_final_std: float


def constant_quote_moments(
    market: MarketParams, half_spread: float, T: float, config: SimConfig
) -> ConstantQuoteMoments:
    """Exact mean and std of the PnL of quoting ``half_spread`` on both sides, unbounded inventory.

    This is the simulator's discrete model (:mod:`mmray.sim`, with ``config.dt``,
    ``config.fill_model`` and ``config.q0``) for a state-independent quote, e.g. AS 2008's
    "symmetric" strategy: at each of ``N = T / dt`` steps both sides fill independently with
    probability ``p = fill_probability(half_spread)``, then the mid moves by ``dS_j`` with
    ``E dS_j = 0`` and ``E dS_j^2 = sigma^2 dt`` (gaussian or binomial mid, no drift), independent
    of the fills. With ``b_j, a_j ~ Bernoulli(p)``, ``v = 2 p (1 - p)`` and
    ``q_{j+1} = q_0 + Delta sum_{i<=j} (b_i - a_i)``::

        PnL = Delta delta sum_j (b_j + a_j) + sum_j q_{j+1} dS_j
        E PnL     = 2 N Delta delta p
        Var PnL   = v Delta^2 N delta^2 + sigma^2 dt (N q_0^2 + v Delta^2 N (N + 1) / 2)
        Std q_N   = Delta sqrt(N v)

    (the two sums are uncorrelated because each ``dS_j`` is independent of all fills and has mean 0).
    Needs ``market.drift == 0`` and ``market.tick == 0`` (no rounding of the quote).
    """
    if market.drift != 0.0 or market.tick != 0.0:
        raise ValueError(
            f"constant_quote_moments needs MarketParams.drift == 0 and tick == 0, got drift={market.drift!r}, "
            f"tick={market.tick!r}"
        )
    steps = config.n_steps(T)
    p = float(fill_probability(half_spread, market, config.dt, config.fill_model))
    size, v = market.trade_size, 2.0 * p * (1.0 - p)
    inventory = steps * config.q0**2 + v * size**2 * steps * (steps + 1) / 2.0  # sum_j E q_{j+1}^2
    var = v * size**2 * steps * half_spread**2 + market.sigma**2 * config.dt * inventory
    return ConstantQuoteMoments(
        float(half_spread), p, steps, 2.0 * steps * size * half_spread * p, math.sqrt(var),
        size * math.sqrt(v * steps),
    )


@dataclass(frozen=True)
class InventoryRisk:
    """Risk of holding ``q`` shares for ``horizon`` time units under ``dS = mu dt + sigma dW``.

    The PnL of the position is Gaussian, mean ``q mu h``, std ``|q| sigma sqrt(h)``. Losses are
    reported as positive numbers (currency units).
    """

    q: float
    horizon: float
    alpha: float
    pnl_mean: float
    pnl_std: float
    var: float
    cvar: float


def inventory_risk(
    q: float, horizon: float, market: MarketParams, alpha: float = 0.95
) -> InventoryRisk:
    """Value at risk and conditional VaR (expected shortfall) of an inventory ``q``.

    ``VaR_alpha = z_alpha |q| sigma sqrt(h) - q mu h``,
    ``CVaR_alpha = |q| sigma sqrt(h) phi(z_alpha) / (1 - alpha) - q mu h``,
    with ``z_alpha`` the standard normal ``alpha`` quantile.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if not (math.isfinite(horizon) and horizon >= 0):
        raise ValueError(f"horizon must be finite and >= 0, got {horizon!r}")
    mean = q * market.drift * horizon
    std = abs(q) * market.sigma * math.sqrt(horizon)
    z = float(norm.ppf(alpha))
    var = z * std - mean
    cvar = std * float(norm.pdf(z)) / (1.0 - alpha) - mean
    return InventoryRisk(q, horizon, alpha, mean, std, var, cvar)
