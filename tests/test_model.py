"""Closed forms: AS 2008 formulas, Guéant 2017 constants, inventory risk metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.integrate import quad

from mmray import model
from mmray.params import MarketParams, ProblemParams


def test_as_spread_matches_published_averages(as_market):
    # AS 2008 table: average spread 1.49 (gamma=0.1), 1.35 (0.01), 3.02 (1); the paper rounds to 2 decimals
    for gamma, published in ((0.1, 1.49), (0.01, 1.35), (1.0, 3.02)):
        problem = ProblemParams(gamma=gamma, T=1.0, q_max=None)
        assert model.as_mean_spread(as_market, problem) == pytest.approx(published, abs=0.006)
        # the mean spread is the time average of the spread
        avg, _ = quad(lambda t, p=problem: float(model.as_spread(t, as_market, p)), 0.0, 1.0)
        assert model.as_mean_spread(as_market, problem) == pytest.approx(avg, rel=1e-10)


def test_as_quotes_are_reservation_price_plus_half_spread(as_market):
    problem = ProblemParams(gamma=0.1, T=1.0, q_max=None)
    t, q, s = 0.3, np.array([-2.0, 0.0, 3.0]), 100.0
    bid, ask = model.as_quotes(t, q, as_market, problem)
    r = model.as_reservation_price(t, q, s, as_market, problem)
    half = model.as_spread(t, as_market, problem) / 2
    np.testing.assert_allclose(s - bid, r - half, rtol=1e-14)
    np.testing.assert_allclose(s + ask, r + half, rtol=1e-14)


def test_hamiltonian_constant_is_the_sup(glft_market):
    """C_xi and dtilde come from sup_d A e^{-k d}(1 - e^{-xi D (d - p)})/(xi D): check by brute force."""
    for obj in ("A", "B"):
        problem = ProblemParams(gamma=0.05, objective=obj)
        xi = model.xi(problem)
        d = np.linspace(-5, 30, 400001)
        if xi > 0:
            h = glft_market.A * np.exp(-glft_market.k * d) * (1 - np.exp(-xi * d)) / xi
        else:
            h = glft_market.A * np.exp(-glft_market.k * d) * d
        i = int(np.argmax(h))
        # grid step 8.75e-5: argmax within one step, sup value within (step)^2 relative
        assert d[i] == pytest.approx(model.delta_tilde(glft_market, problem), abs=1e-4)
        assert h[i] == pytest.approx(glft_market.A / glft_market.k * model.c_xi(glft_market, problem), rel=1e-7)


@pytest.mark.parametrize("objective", ["A", "B"])
@pytest.mark.parametrize("size", [0.5, 1.0, 2.0])
def test_asymptotic_quotes_approximate_the_ground_state(objective, size):
    """Independent oracle: Guéant's closed form is the continuous-q approximation of the ground state
    ``f`` of ``M`` (docs/math.md §3.4, §4.1), quotes ``dtilde + ln(f_q / f_{q +- Delta}) / k``. ``M``
    and ``f`` are built here from the model (dense ``eigh``), ``dtilde`` from the first-order condition
    ``e^(-xi Delta y) = k / (k + xi Delta)``. With Delta != 1 this fails if the slope loses its Delta."""
    market = MarketParams(sigma=0.3, A=0.9, k=0.3, trade_size=size)
    problem = ProblemParams(gamma=0.01, q_max=int(30 * size) if size >= 1 else 15, objective=objective)
    k, g = market.k, problem.gamma
    x = g * size if objective == "A" else 0.0
    c_xi = math.exp(-1.0) if x == 0 else math.exp((-k / x - 1.0) * math.log1p(x / k))
    n = round(problem.q_max / size)
    q = size * np.arange(-n, n + 1)
    m = np.diag(k / size * 0.5 * g * market.sigma**2 * q**2) - market.A * c_xi * (np.eye(q.size, k=1)
                                                                               + np.eye(q.size, k=-1))
    log_f = np.log(np.abs(np.linalg.eigh(m)[1][:, 0]))
    dtilde = 1.0 / k if x == 0 else -math.log(k / (k + x)) / x
    bid, ask = model.asymptotic_quotes(q, market, problem)
    near = np.abs(q[:-1]) <= 5
    # continuous-q approximation error near q = 0: measured 3e-4 (Delta 0.5, 1) and 6.4e-4 (Delta 2);
    # 1e-3 keeps a margin (a slope missing sqrt(Delta) is off by 3% at q = 5)
    exact_bid = dtilde + (log_f[:-1] - log_f[1:]) / k
    exact_ask = dtilde + (log_f[1:] - log_f[:-1]) / k
    np.testing.assert_allclose(bid[:-1][near], exact_bid[near], rtol=1e-3)
    np.testing.assert_allclose(ask[1:][near[::-1]], exact_ask[near[::-1]], rtol=1e-3)
    assert model.delta_tilde(market, problem) == pytest.approx(dtilde, rel=1e-14)  # closed forms: rounding only


def test_inventory_risk_matches_monte_carlo():
    market = MarketParams(sigma=2.0, drift=0.5)
    risk = model.inventory_risk(q=5.0, horizon=0.25, market=market, alpha=0.95)
    pnl = 5.0 * (0.5 * 0.25 + 2.0 * math.sqrt(0.25) * np.random.default_rng(0).standard_normal(2_000_000))
    losses = -pnl
    var = np.quantile(losses, 0.95)
    cvar = losses[losses >= var].mean()
    # 2e6 samples: quantile SE ~ 0.01, tail-mean SE ~ 0.01 on values ~ 8-10
    assert risk.var == pytest.approx(var, abs=0.05)
    assert risk.cvar == pytest.approx(cvar, abs=0.05)
    assert risk.cvar > risk.var > 0
    with pytest.raises(ValueError, match="alpha must be in"):
        model.inventory_risk(1.0, 1.0, market, alpha=1.5)


def test_c_xi_keeps_full_precision_for_small_risk_aversion():
    """Oracle: ln C_xi = -(1/u + 1) ln(1 + u), u = xi Delta / k, = -1 - u/2 + u^2/6 - u^3/12 + O(u^4).
    At u ~ 3e-11 the series is exact to double precision; the naive power lost ~1e-7 there."""
    from mmray.params import MarketParams, ProblemParams

    market = MarketParams()
    for gamma in (1e-14, 1e-10, 1e-6):
        u = gamma / market.k
        series = math.exp(-1.0 - u / 2 + u * u / 6 - u**3 / 12)
        assert model.c_xi(market, ProblemParams(gamma=gamma)) == pytest.approx(series, rel=1e-15)
