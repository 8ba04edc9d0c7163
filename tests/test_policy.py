"""Policies: table interpolation and masks, closed-form strategies against their formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mmray import ClosedFormPolicy, TablePolicy, make_strategy
from mmray.params import ProblemParams


@pytest.fixture
def table():
    times = np.array([0.0, 1.0, 3.0])
    q = np.array([-1.0, 0.0, 1.0])
    bid = np.array([[1.0, 2.0, np.nan], [3.0, 4.0, np.nan], [5.0, 6.0, np.nan]])
    ask = np.array([[np.nan, 2.5, 1.5], [np.nan, 4.5, 3.5], [np.nan, 6.5, 5.5]])
    return TablePolicy.from_offsets(times, q, bid, ask)


def test_linear_interpolation_in_time_and_masks(table):
    bid, ask = table.quotes(2.0, np.array([-1.0, 0.0, 1.0]), np.zeros(3))
    np.testing.assert_allclose(bid[:2], [4.0, 5.0])  # halfway between t=1 and t=3
    np.testing.assert_allclose(ask[1:], [5.5, 4.5])
    assert bid[2] == np.inf and ask[0] == np.inf  # no bid at q = Q, no ask at q = -Q
    # before the first / after the last grid time: clamped to the end rows
    np.testing.assert_allclose(table.quotes(-5.0, np.array([0.0]), np.zeros(1))[0], [2.0])
    np.testing.assert_allclose(table.quotes(9.0, np.array([0.0]), np.zeros(1))[0], [6.0])


def test_previous_interpolation_holds_each_row_until_the_next_grid_time(table):
    """Tick-grid tables hold decisions: row j on [t_j, t_j+1), offsets exactly as tabulated."""
    held = TablePolicy(table.times, table.q_grid, table.bid, table.ask, table.bid_on, table.ask_on,
                       interpolation="previous")
    q = np.array([-1.0, 0.0, 1.0])
    for t, row in ((0.0, 0), (0.999, 0), (1.0, 1), (1.0 - 1e-12, 1), (2.9, 1), (3.0, 2), (7.0, 2), (-1.0, 0)):
        bid, ask = held.quotes(t, q, np.zeros(3))
        np.testing.assert_array_equal(bid[:2], table.bid[row, :2])
        np.testing.assert_array_equal(ask[1:], table.ask[row, 1:])
        rb, _ = held.rows(np.array([t]))
        np.testing.assert_array_equal(rb[0, :2], table.bid[row, :2])
    bid, _ = held.quotes(np.array([0.5, 2.0]), np.array([0.0, 0.0]), np.zeros(2))
    np.testing.assert_array_equal(bid, [2.0, 4.0])
    with pytest.raises(ValueError, match=r"TablePolicy\.interpolation must be one of linear, previous; got 'spline'"):
        TablePolicy(table.times, table.q_grid, table.bid, table.ask, table.bid_on, table.ask_on,
                    interpolation="spline")


def test_tick_grid_solutions_stay_on_the_tick_between_decision_times(glft_market):
    from mmray.solvers import solve

    market = glft_market.replace(tick=0.5)
    sol = solve(market, ProblemParams(gamma=0.01, T=10.0, q_max=3, objective="B"), method="pi", n_steps=10)
    policy = sol.policy()
    assert policy.interpolation == "previous"
    q = sol.q_grid
    for t in (0.0, 0.25, 0.75, 3.5, 9.99):
        bid, _ = policy.quotes(t, q, np.zeros(q.size))
        j = int(np.floor(t + 1e-9))  # decision times 0, 1, ..., 9
        on = np.isfinite(bid)
        np.testing.assert_array_equal(bid[on], sol.bid[j][on])
        assert np.allclose(bid[on] / 0.5, np.round(bid[on] / 0.5), atol=1e-12, rtol=0)


def test_array_times_match_scalar_calls(table):
    t = np.array([0.0, 0.25, 1.0, 2.9, 3.0])
    q = np.array([0.0, -1.0, 1.0, 0.0, -1.0])
    bid, ask = table.quotes(t, q, np.zeros(5))
    for i in range(t.size):
        b, a = table.quotes(float(t[i]), q[i : i + 1], np.zeros(1))
        assert bid[i] == b[0] and ask[i] == a[0]
    rows_b, rows_a = table.rows(t)
    for i in range(t.size):
        rb, ra = table.row(float(t[i]))
        np.testing.assert_array_equal(rows_b[i], rb)
        np.testing.assert_array_equal(rows_a[i], ra)


def test_inventory_off_grid_is_clipped_and_rounded(table):
    bid, _ = table.quotes(0.0, np.array([-7.0, 0.4, 0.6]), np.zeros(3))
    np.testing.assert_allclose(bid[:2], [1.0, 2.0])
    assert bid[2] == np.inf  # 0.6 rounds to q = 1


def test_table_validation():
    with pytest.raises(ValueError, match="strictly increasing"):
        TablePolicy.from_offsets(np.array([0.0, 0.0]), np.array([0.0]), np.ones((2, 1)), np.ones((2, 1)))
    with pytest.raises(ValueError, match=r"TablePolicy\.bid has shape \(1, 2\), expected \(1, 1\)"):
        TablePolicy.from_offsets(np.array([0.0]), np.array([0.0]), np.ones((1, 2)), np.ones((1, 1)))
    with pytest.raises(ValueError, match="equally spaced"):
        TablePolicy.from_offsets(np.array([0.0]), np.array([0.0, 1.0, 3.0]), np.ones((1, 3)), np.ones((1, 3)))


@pytest.mark.parametrize("trade_size", [1.0, 2.0])
def test_closed_forms_follow_their_formulas(glft_market, trade_size):
    """Oracles typed from the papers, not from mmray.model: AS 2008 eqs. (29)-(30) and the
    Guéant 2017 asymptotic quotes (eqs. 4.6-4.7, objective A), with trade size 1 and 2."""
    market = glft_market.replace(trade_size=trade_size)
    sigma, A, k, d = market.sigma, market.A, market.k, trade_size
    gamma, T, t, s = 0.02, 100.0, 40.0, 100.0
    problem = ProblemParams(gamma=gamma, T=T, q_max=None, objective="A")
    q = np.array([-3.0, 0.0, 2.0]) * d
    bid, ask = make_strategy("as", market, problem).quotes(t, q, np.full(3, s))
    r = s - q * gamma * sigma**2 * (T - t)
    half = (gamma * sigma**2 * (T - t) + 2.0 / gamma * math.log(1.0 + gamma / k)) / 2.0
    np.testing.assert_allclose(s - bid, r - half, rtol=1e-14)
    np.testing.assert_allclose(s + ask, r + half, rtol=1e-14)
    bid, ask = make_strategy("symmetric", market, problem).quotes(t, q, None)
    mean_spread = gamma * sigma**2 * T / 2.0 + 2.0 / gamma * math.log(1.0 + gamma / k)  # time average on [0, T]
    np.testing.assert_allclose(bid, mean_spread / 2.0, rtol=1e-14)
    np.testing.assert_allclose(ask, mean_spread / 2.0, rtol=1e-14)
    bid, ask = make_strategy("inventory", market, problem).quotes(t, q, None)
    xi_d = gamma * d
    dtilde = math.log(1.0 + xi_d / k) / xi_d
    c = math.sqrt(gamma * sigma**2 / (2.0 * A * d * k) * (1.0 + xi_d / k) ** (k / xi_d + 1.0))
    np.testing.assert_allclose(bid, dtilde + (2.0 * q + d) / 2.0 * c, rtol=1e-13)
    np.testing.assert_allclose(ask, dtilde - (2.0 * q - d) / 2.0 * c, rtol=1e-13)
    bid, ask = ClosedFormPolicy("constant", market, problem, half_spread=0.7).quotes(t, q, None)
    np.testing.assert_array_equal(bid, 0.7)
    with pytest.raises(ValueError, match="unknown closed-form strategy 'magic'"):
        ClosedFormPolicy("magic", market, problem)
    with pytest.raises(ValueError, match="unknown strategy 'magic'"):
        make_strategy("magic", market, problem)
