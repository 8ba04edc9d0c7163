"""Exact solver: paper check values, limits, independent matrix-exponential cross-checks."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.linalg import expm

from mmray import model
from mmray.params import MarketParams, ProblemParams
from mmray.solvers import solve
from mmray.solvers.exact import generator, solve_exact, stationary_quotes


def _index(q_grid, q):
    return int(np.flatnonzero(q_grid == q)[0])


def test_glft_2013_check_values(glft_market, glft_problem):
    # ARCHITECTURE.md check values (GLFT 2013 figures), quoted to 4 decimals: tolerance 1e-4
    sol = solve_exact(glft_market, glft_problem, n_times=601)
    i0, i10 = _index(sol.q_grid, 0), _index(sol.q_grid, 10)
    assert sol.bid[0, i0] == pytest.approx(3.3130, abs=1e-4)
    assert sol.ask[0, i0] == pytest.approx(3.3130, abs=1e-4)
    assert sol.bid[0, i10] == pytest.approx(3.9929, abs=1e-4)
    assert sol.ask[0, i10] == pytest.approx(2.6328, abs=1e-4)
    assert sol.bid[-1, i0] + sol.ask[-1, i0] == pytest.approx(6.5580, abs=1e-4)
    # no bid at Q, no ask at -Q
    assert np.isnan(sol.bid[:, -1]).all() and np.isnan(sol.ask[:, 0]).all()
    assert sol.info["path"] == "eigen"


def test_matches_per_step_expm(glft_market):
    """Independent oracle: v(t) = expm(-M (T - t)) v(T) with scipy's Padé expm at each time."""
    problem = ProblemParams(gamma=0.05, T=50.0, q_max=8, terminal_penalty=0.02)
    market = glft_market.replace(drift=0.01)
    times = np.sort(np.concatenate([[0.0, 50.0], np.random.default_rng(1).uniform(0, 50, 30)]))  # irregular grid
    sol = solve_exact(market, problem, times=times)
    diag, off, q = generator(market, problem)
    M = np.diag(diag) + np.diag(off, 1) + np.diag(off, -1)
    v_T = np.exp(-market.k * problem.terminal(q))
    for i, t in enumerate(times):
        v = expm(-M * (problem.T - t)) @ v_T
        theta = np.log(v) / market.k
        # both are double-precision evaluations of the same matrix function: agree to ~1e-9 in theta
        np.testing.assert_allclose(sol.theta[i], theta, rtol=1e-9, atol=1e-9)


def test_converges_to_stationary_ground_state_and_closed_form(glft_market, glft_problem):
    q, bid_inf, ask_inf = stationary_quotes(glft_market, glft_problem)
    errors = []
    for T in (10.0, 50.0, 200.0, 1000.0, 5000.0):
        sol = solve_exact(glft_market, glft_problem.replace(T=T), n_times=2)
        errors.append(np.nanmax(np.abs(sol.bid[0] - bid_inf)))
    assert all(b < a for a, b in itertools.pairwise(errors))  # monotone convergence in T
    assert errors[-1] < 1e-8  # spectral gap ~ 0.013/s here: e^{-0.013 * 5000} is below 1e-20
    # Guéant's closed form approximates the ground state (continuous-q approximation of M): its error
    # grows with |q| and stays below 0.1% of the quote near q = 0 and 0.5% up to |q| = 10 here
    cf_bid, cf_ask = model.asymptotic_quotes(q, glft_market, glft_problem)
    near = np.abs(q) <= 2
    mid = np.abs(q) <= 10
    assert np.nanmax(np.abs(bid_inf - cf_bid)[near] / cf_bid[near]) < 1e-3
    assert np.nanmax(np.abs(bid_inf - cf_bid)[mid] / cf_bid[mid]) < 5e-3
    assert np.nanmax(np.abs(ask_inf - cf_ask)[mid] / cf_ask[mid]) < 5e-3


def test_objective_b_exact_vs_its_closed_form(glft_market):
    problem = ProblemParams(gamma=0.01, T=3000.0, q_max=30, objective="B")
    sol = solve(glft_market, problem, method="exact", n_times=3)
    q = sol.q_grid
    cf_bid, cf_ask = model.asymptotic_quotes(q, glft_market, problem)
    mid = np.abs(q) <= 10
    assert sol.bid[-1, 30] == pytest.approx(1 / glft_market.k, rel=1e-12)  # dtilde = 1/k at T
    # as for objective A: within 0.5% of the quote for |q| <= 10 (continuous-q approximation error)
    assert np.nanmax(np.abs(sol.bid[0] - cf_bid)[mid] / cf_bid[mid]) < 5e-3
    assert np.nanmax(np.abs(sol.ask[0] - cf_ask)[mid] / cf_ask[mid]) < 5e-3
    # objective B is objective A's xi -> 0 limit of the Hamiltonian: quotes approach B's as gamma_H -> 0
    # (here the same gamma in the penalty; A and B differ by O(gamma/k) = 3% at most)
    sol_a = solve_exact(glft_market, problem.replace(objective="A"), n_times=3)
    assert np.nanmax(np.abs(sol_a.bid[0] - sol.bid[0])[mid]) < 0.05 * np.nanmax(sol.bid[0][mid])


def test_symmetry_and_drift(glft_market, glft_problem):
    sol = solve_exact(glft_market, glft_problem, n_times=11)
    np.testing.assert_allclose(sol.bid[:, :-1], sol.ask[:, 1:][:, ::-1], rtol=1e-10)  # delta_b(q) = delta_a(-q)
    up = solve_exact(glft_market.replace(drift=0.01), glft_problem, n_times=11)
    i0 = _index(up.q_grid, 0)
    # positive drift: the maker wants to be long, so bids tighten and asks widen
    assert up.bid[0, i0] < sol.bid[0, i0] and up.ask[0, i0] > sol.ask[0, i0]


def test_terminal_penalty_sets_terminal_quotes(glft_market):
    ell = 0.1
    problem = ProblemParams(gamma=0.01, T=100.0, q_max=5, terminal_penalty=ell)
    sol = solve_exact(glft_market, problem, n_times=5)
    q = sol.q_grid
    # at T: delta_b = dtilde + (ell((q+1)^2) - ell(q^2)) = dtilde + ell (2q + 1)
    dtilde = model.delta_tilde(glft_market, problem)
    np.testing.assert_allclose(sol.bid[-1, :-1], dtilde + ell * (2 * q[:-1] + 1), rtol=1e-12)
    np.testing.assert_allclose(sol.theta[-1], -ell * q**2, atol=1e-12)


def test_accuracy_guard_switches_to_positive_stepping():
    """Strong risk aversion: far inventories are ~1e-50 of q=0; the eigen-expansion cannot
    resolve them, the positive stepping path must, and both agree where eigen is accurate."""
    market = MarketParams(sigma=2.0, A=140.0, k=1.5)
    problem = ProblemParams(gamma=1.0, T=1.0, q_max=25)
    sol = solve_exact(market, problem, n_times=201)
    assert sol.info["path"] == "positive-stepping"
    assert np.all(np.isfinite(sol.theta))
    eig = solve_exact(market, problem, n_times=201, rtol=np.inf)  # force the eigen path
    near = np.abs(sol.q_grid) <= 5
    np.testing.assert_allclose(sol.bid[:, near], eig.bid[:, near], rtol=1e-8)
    # the stepping path against scipy's expm, whose componentwise accuracy is fine at modest |q|
    diag, off, _ = generator(market, problem)
    M = np.diag(diag) + np.diag(off, 1) + np.diag(off, -1)
    theta0 = np.log(expm(-M * problem.T) @ np.ones(diag.size)) / market.k
    np.testing.assert_allclose(sol.theta[0, near], theta0[near], rtol=1e-8)
    # quotes stay monotone in q all the way to the bound (no cancellation noise)
    assert np.all(np.diff(sol.bid[0, :-1]) > 0)


def test_bad_time_grids_are_rejected(glft_market, glft_problem):
    with pytest.raises(ValueError, match="strictly within"):
        solve_exact(glft_market, glft_problem, times=np.array([0.0, 700.0]))
    with pytest.raises(ValueError, match="strictly within"):
        solve_exact(glft_market, glft_problem, times=np.array([0.0, 5.0, 5.0]))
    with pytest.raises(ValueError, match="q_max is None"):
        solve_exact(glft_market, glft_problem.replace(q_max=None))
    with pytest.raises(ValueError, match="unknown solver method 'magic'"):
        solve(glft_market, glft_problem, method="magic")
