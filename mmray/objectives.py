"""The two objectives of the model, in one place: per-path values, per-step rewards, estimates.

With terminal PnL ``W = X_T + q_T S_T - ell(q_T) - (X_0 + q_0 S_0)`` (price units x inventory
units, i.e. currency) and ``I = int_0^T q_t^2 dt`` (inventory^2 x time):

* **Objective A** (GLFT 2013, CARA utility): maximise ``E[-exp(-gamma W)]``; reported as the
  certainty equivalent ``CE = -(1/gamma) ln E[exp(-gamma W)]`` (currency), estimated by
  ``-(1/gamma) ln mean(exp(-gamma W_i))`` with its standard error by the delta method:
  ``se(CE) = sd(exp(-gamma W) / m) / (gamma sqrt(n))``, ``m = mean(exp(-gamma W))``.
* **Objective B** (Cartea-Jaimungal running penalty; Guéant 2017 model B): maximise
  ``E[W - (gamma sigma^2 / 2) I]`` (currency), estimated by the sample mean of the per-path value
  with standard error ``sd / sqrt(n)``.

Per-step rewards for objective B (environments): a step of length ``dt`` ending with inventory
``q'`` and mark-to-market change ``dW`` earns ``dW - (gamma sigma^2 / 2) q'^2 dt``, and the last
step also ``-ell(q_T)``; the rewards of an episode add up to its per-path value exactly as the
simulator accumulates ``I`` (a left-closed Riemann sum over the inventory after each step).

Variance reduction (:func:`step_noise_b`): two parts of ``dW`` have conditional mean zero given the
state and the quotes of the step: the mid move's ``q' (dS - mu dt)`` and the fills' ``Delta (delta_b
(1_b - p_b) + delta_a (1_a - p_a))``, with ``p`` the fill probability of the applied offsets. Subtracting
them from a reward leaves every policy's expected return, hence the optimum and the optimality figures,
unchanged, and removes most of the per-step variance (a control variate; the rewards of an episode then
add up to its value only in expectation).

Every user calls these functions: :func:`mmray.backtest.compute_metrics`, the sweeps' paired
robustness loss (:mod:`mmray.tuning.trainables`) and the environments' rewards.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from scipy.special import logsumexp

from mmray.model import fill_probability
from mmray.params import MarketParams, ProblemParams

OBJECTIVE_METRICS = {"A": "ce_A", "B": "value_B"}
"""The metric that estimates each objective (higher is better)."""


def penalty_rate(market: MarketParams, problem: ProblemParams) -> float:
    """``gamma sigma^2 / 2``: objective B's running penalty per unit of ``q^2`` and time."""
    return 0.5 * problem.gamma * market.sigma**2


def value_b(pnl: np.ndarray, q2_integral: np.ndarray, market: MarketParams, problem: ProblemParams) -> np.ndarray:
    """Objective B's value of each path: ``W - (gamma sigma^2 / 2) int q^2 dt`` (currency)."""
    return pnl - penalty_rate(market, problem) * q2_integral


def step_reward_b(
    mtm_change: np.ndarray, q_after: np.ndarray, dt: float, market: MarketParams, problem: ProblemParams,
    terminal_q: np.ndarray | None = None,
) -> np.ndarray:
    """Objective B's reward of one step: ``dW - (gamma sigma^2 / 2) q'^2 dt``, and ``- ell(q_T)`` when
    ``terminal_q`` (the inventory at ``T``) is given (the last step)."""
    reward = mtm_change - penalty_rate(market, problem) * (q_after * q_after) * dt
    if terminal_q is not None:
        reward = reward - problem.terminal(terminal_q)
    return reward


REWARD_NOISE = ("realised", "mid_expected", "expected")
"""Reward variants of objective B (:func:`step_noise_b`): the realised increment; with the mid move's
zero-mean part removed; with the fills' zero-mean part removed as well."""


def step_noise_b(
    variant: str, q_after: np.ndarray, mid_change: np.ndarray, mu_dt: float, *,
    bid_offset: np.ndarray | None = None, ask_offset: np.ndarray | None = None,
    bid_filled: np.ndarray | None = None, ask_filled: np.ndarray | None = None,
    market: MarketParams | None = None, dt: float = 0.0, fill_model: str = "poisson",
) -> np.ndarray | float:
    """The zero-mean part of one step's ``dW`` that reward ``variant`` leaves out (subtract it from
    :func:`step_reward_b`'s reward).

    * ``"realised"``: 0.
    * ``"mid_expected"``: ``q' (dS - mu dt)``, the mid move's martingale part (``q'`` the inventory
      after the step's trades, which the mid move marks to market).
    * ``"expected"``: that plus ``Delta (delta_b (1_b - p_b) + delta_a (1_a - p_a))``: each side's income
      minus its conditional mean, ``p`` = :func:`mmray.model.fill_probability` of the applied offsets
      (``inf``, a side not quoted, earns and expects 0), ``Delta`` the trade size.

    Each term has mean zero given the state and the quotes, so subtracting it changes no policy's
    expected return (units: currency, as ``dW``).
    """
    if variant == "realised":
        return 0.0
    if variant not in REWARD_NOISE:
        raise ValueError(f"reward variant must be one of {REWARD_NOISE}, got {variant!r}")
    noise = q_after * (mid_change - mu_dt)
    if variant == "expected":
        if market is None or bid_offset is None or ask_offset is None or bid_filled is None or ask_filled is None:
            raise ValueError("the 'expected' reward needs the applied offsets, the fills and the market")
        realised = np.where(bid_filled, _income(bid_offset), 0.0) + np.where(ask_filled, _income(ask_offset), 0.0)
        pb = fill_probability(bid_offset, market, dt, fill_model)
        pa = fill_probability(ask_offset, market, dt, fill_model)
        noise = noise + market.trade_size * realised - expected_spread_income(bid_offset, ask_offset, pb, pa,
                                                                              market.trade_size)
    return noise


def _income(offset: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(offset), offset, 0.0)  # a side not quoted earns nothing


def expected_spread_income(bid: np.ndarray, ask: np.ndarray, pb: np.ndarray, pa: np.ndarray,
                           trade_size: float) -> np.ndarray:
    """Expected spread income of one step with offsets ``bid``, ``ask`` (``inf``: not quoted) filled with
    probabilities ``pb``, ``pa`` (:func:`mmray.model.fill_probability`, which the caller also needs):
    ``Delta (delta_b p_b + delta_a p_a)`` (currency)."""
    return trade_size * (pb * _income(bid) + pa * _income(ask))


def certainty_equivalent(pnl: np.ndarray, gamma: float) -> tuple[float, float]:
    """Objective A's certainty equivalent ``-(1/gamma) ln mean(exp(-gamma W))`` and its delta-method
    standard error (NaN with one path); computed in the log domain (no overflow for large ``gamma W``)."""
    n = pnl.size
    log_m = float(logsumexp(-gamma * pnl) - math.log(n))
    ce = -log_m / gamma
    if n < 2:
        return ce, float("nan")
    rel = np.exp(-gamma * pnl - log_m)  # exp(-gamma W) / m, mean 1
    return ce, float(rel.std(ddof=1)) / math.sqrt(n) / gamma


def influence(metric: str, per_path: Mapping[str, np.ndarray], market: MarketParams,
              problem: ProblemParams) -> np.ndarray | None:
    """Per-path influence function of ``metric`` (its first-order contribution per path), so that the
    difference of two estimates on common random numbers has the paired standard error
    ``sd(infl_a - infl_b) / sqrt(n)``; ``None`` for a metric that is not linearisable here.

    ``pnl_mean`` -> ``W``; ``value_B`` -> the per-path value; ``ce_A`` -> ``-(w / mean(w)) / gamma``
    with ``w = exp(-gamma W)`` (the derivative of ``-(1/gamma) ln m`` in ``m``, up to a constant)."""
    pnl = per_path["pnl"]
    if metric == "pnl_mean":
        return pnl
    if metric == "value_B":
        return value_b(pnl, per_path["q2_integral"], market, problem)
    if metric == "ce_A":
        g = problem.gamma
        z = -g * pnl
        w = np.exp(z - z.max())
        return -(w / w.mean()) / g
    return None
