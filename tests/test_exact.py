"""Exact solver: paper check values, limits, independent matrix-exponential cross-checks.

Oracles are built here from the model's equations (docs/math.md §2-3), never from the solver's own
``generator()`` or ``mmray.model``'s constants: ``reference_matrix`` types ``M`` and ``v(T)`` from
the formulas, ``expm`` (scipy's Padé) or a log-domain ODE integration (``log_v_by_ode``, Radau)
evaluate ``v``.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy.integrate import solve_ivp
from scipy.linalg import expm
from scipy.sparse import diags

from mmray import model
from mmray.limits import ENV_MAX_MEMORY
from mmray.params import MarketParams, ProblemParams
from mmray.solvers import check_options, solve
from mmray.solvers.exact import solve_exact, stationary_quotes


def _index(q_grid, q):
    return int(np.flatnonzero(q_grid == q)[0])


def reference_matrix(market: MarketParams, problem: ProblemParams) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """``(q, diag, log v(T), coupling)`` of the linear ODE ``dv/dtau = -M v`` typed from the model.

    ``v_q = exp(k theta_q / Delta)`` turns the HJB system into ``M_qq = (k/Delta)(gamma sigma^2 q^2/2 - mu q)``,
    ``M_{q,q+-Delta} = -A C_xi``, ``C_xi = (1 + xi Delta/k)^(-k/(xi Delta) - 1)`` (``e^-1`` for B) and
    ``v_q(T) = exp(-k ell q^2 / Delta)`` (GLFT 2013 Thm 3.1, Guéant 2017 §3).
    """
    size, k, g = market.trade_size, market.k, problem.gamma
    x = g * size if problem.objective == "A" else 0.0
    c_xi = math.exp(-1.0) if x == 0 else (1.0 + x / k) ** (-k / x - 1.0)
    n = round(problem.q_max / size)
    q = size * np.arange(-n, n + 1)
    diag = (k / size) * (0.5 * g * market.sigma**2 * q**2 - market.drift * q)
    log_v_T = -k * problem.terminal_penalty * q**2 / size
    return q, diag, log_v_T, market.A * c_xi


def dense(diag: np.ndarray, coupling: float) -> np.ndarray:
    return np.diag(diag) - coupling * (np.eye(diag.size, k=1) + np.eye(diag.size, k=-1))


def log_v_by_ode(market: MarketParams, problem: ProblemParams, tau: float) -> np.ndarray:
    """``log v`` at time-to-go ``tau`` by integrating ``u = log v``:
    ``du_q/dtau = -M_qq + A C_xi (e^(u_{q-1} - u_q) + e^(u_{q+1} - u_q))`` (Radau, rtol 1e-12).

    A second, independent method: a nonlinear ODE with no matrix exponential, finite however many
    orders of magnitude ``v`` spans."""
    _, diag, u0, c = reference_matrix(market, problem)

    def rhs(_t, u):
        du = -diag.copy()
        du[1:] += c * np.exp(u[:-1] - u[1:])
        du[:-1] += c * np.exp(u[1:] - u[:-1])
        return du

    def jac(_t, u):
        lower, upper = c * np.exp(u[:-1] - u[1:]), c * np.exp(u[1:] - u[:-1])
        main = np.zeros_like(u)
        main[1:] -= lower
        main[:-1] -= upper
        return diags([main, upper, lower], [0, 1, -1]).toarray()

    sol = solve_ivp(rhs, (0.0, tau), u0, method="Radau", jac=jac, rtol=1e-12, atol=1e-10, t_eval=[tau])
    assert sol.success
    return sol.y[:, -1]


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
    _, diag, log_v_T, c = reference_matrix(market, problem)
    M, v_T = dense(diag, c), np.exp(log_v_T)
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
    _, diag, _, c = reference_matrix(market, problem)
    theta0 = np.log(expm(-dense(diag, c) * problem.T) @ np.ones(diag.size)) / market.k
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


@pytest.mark.parametrize("objective", ["A", "B"])
@pytest.mark.parametrize("size", [0.5, 2.0])
@pytest.mark.parametrize("ell", [0.0, 0.03])
def test_trade_size_and_terminal_penalty_against_expm(objective, size, ell):
    """Delta != 1 with and without terminal penalty: theta and the quotes against expm of the matrix
    typed from the model (kills a terminal condition or generator missing its 1/Delta)."""
    market = MarketParams(sigma=0.3, A=0.9, k=0.3, trade_size=size, drift=0.004)
    problem = ProblemParams(gamma=0.02, T=40.0, q_max=int(8 * size), objective=objective, terminal_penalty=ell)
    times = np.array([0.0, 13.0, 31.0, 39.5, 40.0])
    sol = solve_exact(market, problem, times=times)
    q, diag, log_v_T, c = reference_matrix(market, problem)
    np.testing.assert_array_equal(sol.q_grid, q)
    for i, t in enumerate(times):
        log_v = np.log(expm(-dense(diag, c) * (problem.T - t)) @ np.exp(log_v_T))
        # two double-precision evaluations of the same matrix function (|log v| <= ~30 here):
        # 1e-9 in theta = (Delta/k) log v and in the quotes
        np.testing.assert_allclose(sol.theta[i], size / market.k * log_v, rtol=1e-9, atol=1e-9)
        dtilde = math.log1p(problem.gamma * size / market.k) / (problem.gamma * size) if objective == "A" \
            else 1 / market.k
        np.testing.assert_allclose(sol.bid[i, :-1], dtilde + (log_v[:-1] - log_v[1:]) / market.k, atol=1e-9)
        np.testing.assert_allclose(sol.ask[i, 1:], dtilde + (log_v[1:] - log_v[:-1]) / market.k, atol=1e-9)
    # at T the value is the terminal penalty itself, whatever Delta: theta(T, q) = -ell q^2 (exact up to rounding)
    np.testing.assert_allclose(sol.theta[-1], -ell * q**2, atol=1e-12)


@pytest.mark.parametrize(
    ("market", "problem"),
    [
        # gamma = 1e6: v spans ~e^-1370 (below the smallest double): was NaN everywhere
        (MarketParams(), ProblemParams(gamma=1e6, q_max=45, T=1.0)),
        # Delta = 2, drift, terminal penalty, objective B over 81 levels: v spans ~e^-107
        (MarketParams(trade_size=2.0, drift=0.01), ProblemParams(gamma=0.5, q_max=80, T=50.0, terminal_penalty=0.05,
                                                                objective="B")),
    ],
    ids=["gamma1e6", "delta2-B"],
)
def test_extreme_range_against_log_ode(market, problem):
    """Where v spans more than double precision the solver stays finite and exact: against the
    log-domain ODE of ``log_v_by_ode``."""
    sol = solve_exact(market, problem, times=np.array([0.0, problem.T]))
    assert sol.info["path"] == "positive-stepping"
    ref = log_v_by_ode(market, problem, problem.T)
    log_v = sol.theta[0] * market.k / market.trade_size
    # quotes are differences of log v over k: the ODE's rtol 1e-12 on each u_q (|u| <= ~1400) leaves
    # ~1e-9 in a difference; measured 3e-12 (gamma1e6) and 1e-13 (delta2-B)
    np.testing.assert_allclose(np.diff(log_v) / market.k, np.diff(ref) / market.k, rtol=0, atol=1e-9)
    # log v itself: stepping carries a common shift ~eps max(M_qq) T (uniformisation; 1.5e-8 measured at
    # gamma=1e6, where max M_qq = 2.7e7), which cancels in every quote
    np.testing.assert_allclose(log_v, ref, rtol=0, atol=1e-6)


def test_large_inventory_bound_has_finite_monotone_quotes():
    """``q_max = 400`` with the GLFT parameters: quotes were NaN for |q| >~ 320 (v_Q / v_0 < 1e-308)."""
    market, problem = MarketParams(), ProblemParams(q_max=400)
    sol = solve_exact(market, problem, n_times=11)
    assert np.all(np.isfinite(sol.bid[:, :-1])) and np.all(np.isfinite(sol.ask[:, 1:]))
    assert np.all(np.isfinite(sol.theta))
    # bid offset increases with q, ask offset decreases (Guéant 2017 Prop. 3) before T; at T (no
    # penalty) both are the myopic dtilde
    assert np.all(np.diff(sol.bid[:-1, :-1], axis=1) > 0) and np.all(np.diff(sol.ask[:-1, 1:], axis=1) < 0)
    np.testing.assert_allclose(sol.bid[-1, :-1], model.delta_tilde(market, problem), rtol=1e-14)
    # near q = 0 the same numbers as with the bound at 60: the bound's influence decays like the
    # ground state, exp(-a q^2 / 2) with a = C k = 0.020 (docs/math.md §4.1), ~e^-36 = 2e-16 at
    # |q| = 60; what remains is rounding and rtol: 1e-9
    small = solve_exact(market, problem.replace(q_max=60), n_times=11, rtol=0.0)
    i, j = _index(sol.q_grid, 0), _index(small.q_grid, 0)
    np.testing.assert_allclose(sol.bid[:, i - 5 : i + 6], small.bid[:, j - 5 : j + 6], rtol=0, atol=1e-9)


def test_refusals_name_the_option_and_the_memory():
    market = MarketParams()
    with pytest.raises(ValueError, match=r"exact solver: n_times=1001 .*q_max=100000.* would need about [0-9.e+]+ GiB"):
        solve_exact(market, ProblemParams(q_max=100000))
    with pytest.raises(ValueError, match=r"n_times=1000000000 .* GiB"):
        check_options(market, ProblemParams(), "exact", n_times=10**9)
    with pytest.raises(ValueError, match=r"out of double-precision range: .*sigma=1e\+300.* = inf"):
        solve_exact(MarketParams(sigma=1e300), ProblemParams())
    with pytest.raises(ValueError, match=r"sigma=1e\+300"):
        stationary_quotes(MarketParams(sigma=1e300), ProblemParams())


def test_memory_cap_from_environment(monkeypatch):
    """The cap is MMRAY_MAX_MEMORY_GB when set: Q = 30 with 1001 times needs ~5 MB (fits 1 GiB, not 1 MiB)."""
    monkeypatch.setenv(ENV_MAX_MEMORY, "1")
    check_options(MarketParams(), ProblemParams(), "exact")
    monkeypatch.setenv(ENV_MAX_MEMORY, str(2.0**-10))
    with pytest.raises(ValueError, match=r"above the cap of 0.000977 GiB \(set MMRAY_MAX_MEMORY_GB"):
        check_options(MarketParams(), ProblemParams(), "exact")
    monkeypatch.setenv(ENV_MAX_MEMORY, "lots")
    with pytest.raises(ValueError, match="MMRAY_MAX_MEMORY_GB must be a number of GiB > 0, got 'lots'"):
        check_options(MarketParams(), ProblemParams(), "exact")
