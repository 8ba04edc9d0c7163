"""Tick-grid dynamic programming (``pi``): against the exact solver, the simulator, and itself.

Oracles: the exact continuous solution (limit tick, dt -> 0), its ground state (stationary limit),
the Monte Carlo simulator (the discrete problem is the simulator's, so values must agree within
Monte Carlo error), exact policy evaluation on the MDP, and value iteration vs policy iteration.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.linalg import eigh_tridiagonal

from mmray.backtest import backtest
from mmray.checkpoint import load_policy, save_policy
from mmray.params import MarketParams, ProblemParams, SimConfig
from mmray.policy import TablePolicy
from mmray.solvers import solve
from mmray.solvers.constraints import Constraints
from mmray.solvers.discrete import TickGrid
from mmray.solvers.exact import generator, solve_exact, stationary_quotes
from mmray.solvers.pi import solve_pi

MARKET = MarketParams(sigma=0.3, A=0.9, k=0.3, drift=0.005)


def problem(objective: str = "B", **kw: float) -> ProblemParams:
    base = {"gamma": 0.01, "T": 20.0, "q_max": 4, "objective": objective, "terminal_penalty": 0.01}
    base.update(kw)
    return ProblemParams(**base)


def quote_error(bid: np.ndarray, ask: np.ndarray, bid_ref: np.ndarray, ask_ref: np.ndarray) -> float:
    return float(max(np.nanmax(np.abs(bid - bid_ref)), np.nanmax(np.abs(ask - ask_ref))))


@pytest.mark.parametrize("objective", ["A", "B"])
def test_pi_approaches_exact_as_tick_and_dt_shrink(objective: str) -> None:
    # The discrete problem differs from the continuous one by O(dt) (at most one fill per side per
    # step, 1 - exp(-Lambda dt) instead of Lambda dt) and by the tick (grid optimum within one tick
    # of the continuous one). Halving both must shrink the value error by ~2 (first order; >= 1.8
    # asked) and the t=0 quote error by >= 1.4 (measured 1.7-2.1: the tick part is not smooth);
    # at the finest grid the quote error is below tick + dt (measured 0.09 < 0.175).
    pr = problem(objective)
    quote, value = [], []
    for tick, n in [(0.2, 40), (0.1, 80), (0.05, 160)]:
        sol = solve_pi(MARKET, pr, n_steps=n, tick=tick, levels=list(range(round(7 / tick))))
        ex = solve_exact(MARKET, pr, times=sol.times)
        quote.append(quote_error(sol.bid[0], sol.ask[0], ex.bid[0], ex.ask[0]))
        value.append(np.max(np.abs(sol.theta[0] - ex.theta[0])))
    assert all(value[i] / value[i + 1] > 1.8 for i in range(2))
    assert all(quote[i] / quote[i + 1] > 1.4 for i in range(2))
    assert quote[-1] < 0.05 + 20.0 / 160


@pytest.mark.parametrize("objective", ["A", "B"])
def test_pi_value_is_the_simulator_value(objective: str) -> None:
    # pi solves exactly the simulator's discrete problem, so its value at q0 = 0 must equal the
    # Monte Carlo estimate (value_B for B, certainty equivalent ce_A for A) within 4 standard
    # errors (a false alarm has probability 6e-5).
    pr = problem(objective, T=30.0)
    sol = solve_pi(MARKET, pr, n_steps=30, tick=0.5, n_levels=15, min_level=0)
    res = backtest(sol.policy(), MARKET, pr, SimConfig(dt=1.0, n_paths=40_000, seed=11))
    key = "value_B" if objective == "B" else "ce_A"
    est, se = res.metrics[key], res.metrics[f"{key}_se"]
    assert abs(sol.info["value_q0"] - est) < 4 * se, (sol.info["value_q0"], est, se)


def test_pi_beats_rounded_exact_policy_exactly_and_on_the_simulator() -> None:
    # Optimality on the MDP: the exact expected value of any other grid policy (here the exact
    # continuous policy rounded to the nearest tick) is <= pi's value in every state (1e-9 for
    # rounding). On the simulator, with common random numbers (both table policies consume the same
    # draws), the paired value_B difference must not be significantly negative (> -3 SE), and its
    # mean agrees with the exact difference within 4 SE.
    pr = problem("B", T=30.0, terminal_penalty=0.05)
    sol = solve_pi(MARKET, pr, n_steps=30, tick=0.5, n_levels=15, min_level=0)
    mdp = TickGrid(n_steps=30, tick=0.5, n_levels=15, min_level=0).mdp(MARKET, pr)
    ex = solve_exact(MARKET, pr, times=mdp.times)
    b_idx = mdp.nearest_levels(ex.bid[:-1], "bid")
    a_idx = mdp.nearest_levels(ex.ask[:-1], "ask")
    v_round = mdp.evaluate(b_idx, a_idx)
    assert np.all(sol.theta >= v_round - 1e-9)
    gap = float(sol.theta[0, 4] - v_round[0, 4])
    assert gap > 0.0
    bid, ask = mdp.offsets(b_idx, a_idx)
    rounded = TablePolicy.from_offsets(mdp.times, mdp.q, np.vstack([bid, bid[-1:]]), np.vstack([ask, ask[-1:]]))
    cfg = SimConfig(dt=1.0, n_paths=40_000, seed=5)
    r_pi = backtest(sol.policy(), MARKET, pr, cfg)
    r_rd = backtest(rounded, MARKET, pr, cfg)
    penalty = 0.5 * pr.gamma * MARKET.sigma**2

    def per_path(r) -> np.ndarray:
        return r.per_path["pnl"] - penalty * r.per_path["q2_integral"]

    diff = per_path(r_pi) - per_path(r_rd)
    mean, se = diff.mean(), diff.std(ddof=1) / np.sqrt(diff.size)
    assert mean > -3 * se
    assert abs(mean - gap) < 4 * se, (mean, gap, se)


def test_average_reward_policy_iteration_approaches_ground_state() -> None:
    # Long-run average with running penalty: the continuous limit is the ground state of M
    # (stationary_quotes) with gain -lambda_0 Delta / k. First-order convergence as above; the
    # finest grid's quote error is below tick + dt (measured 0.088 < 0.175) and the gain within 3%.
    pr = problem("B")
    _, bid_ex, ask_ex = stationary_quotes(MARKET, pr)
    diag, off, _ = generator(MARKET, pr)
    gain_ex = -eigh_tridiagonal(diag, off, eigvals_only=True)[0] * MARKET.trade_size / MARKET.k
    errs, gains = [], []
    for tick, dt in [(0.2, 0.5), (0.1, 0.25), (0.05, 0.125)]:
        sol = solve_pi(MARKET, pr, dt=dt, tick=tick, levels=list(range(round(7 / tick))), horizon="average")
        errs.append(quote_error(sol.bid[0], sol.ask[0], bid_ex, ask_ex))
        gains.append(abs(sol.info["gain_per_time"] / gain_ex - 1.0))
        hist = sol.info["history"]
        assert hist[-1]["changed"] == 0 and hist[-1]["bellman_residual"] <= 1e-9
        assert all(h["changed"] > 0 for h in hist[:-1])
        g = [h["gain_per_step"] for h in hist]
        assert all(b >= a - 1e-12 for a, b in itertools.pairwise(g))  # PI improves monotonically
    assert errs[0] / errs[1] > 1.4 and errs[1] / errs[2] > 1.4
    assert gains[0] / gains[1] > 1.8 and gains[1] / gains[2] > 1.8
    assert errs[-1] < 0.05 + 0.125 and gains[-1] < 0.03


def test_policy_iteration_agrees_with_value_iteration_and_discounting() -> None:
    # Second method: backward induction over a long horizon (value iteration) converges to the
    # stationary policy and V_j - V_{j+1} -> gain (geometric convergence: 1e-8 after 400 steps).
    # A small discount rate gives the same policy (Blackwell optimality) and (1 - beta) V -> gain.
    pr = problem("B", terminal_penalty=0.0)
    opts = {"dt": 0.5, "tick": 0.2, "levels": list(range(35))}
    avg = solve_pi(MARKET, pr, horizon="average", **opts)
    long = solve_pi(MARKET, pr.replace(T=200.0), **opts)
    np.testing.assert_array_equal(long.bid[0], avg.bid[0])
    np.testing.assert_array_equal(long.ask[0], avg.ask[0])
    drift = long.theta[0] - long.theta[1]
    np.testing.assert_allclose(drift, avg.info["gain_per_step"], rtol=0, atol=1e-8)
    disc = solve_pi(MARKET, pr, horizon="discounted", discount_rate=1e-5, **opts)
    np.testing.assert_array_equal(disc.bid[0], avg.bid[0])
    np.testing.assert_array_equal(disc.ask[0], avg.ask[0])
    beta = disc.info["beta"]
    # (1 - beta) V = g + O(1 - beta) h: 1 - beta = 5e-6 and |h| ~ 10, so agreement to 1e-3
    assert abs((1 - beta) * disc.info["value_q0"] - avg.info["gain_per_step"]) < 1e-3


def test_per_state_restrictions_in_pi() -> None:
    pr = problem("B")
    free = solve_pi(MARKET, pr, n_steps=40, tick=0.5, n_levels=15, min_level=0)
    cons = Constraints(max_spread=5.5, bid_min_ticks=3, ask_max_ticks=12)
    sol = solve_pi(MARKET, pr, n_steps=40, tick=0.5, n_levels=15, min_level=0, constraints=cons)
    both = np.isfinite(sol.bid) & np.isfinite(sol.ask)
    assert np.all((sol.bid + sol.ask)[both] <= 5.5 + 1e-12)
    assert np.all(sol.bid[np.isfinite(sol.bid)] >= 1.5 - 1e-12)
    assert np.all(sol.ask[np.isfinite(sol.ask)] <= 6.0 + 1e-12)
    assert np.all(sol.theta <= free.theta + 1e-12)  # restricting actions cannot help
    assert sol.info["value_q0"] < free.info["value_q0"]


def test_grid_edge_diagnostic() -> None:
    # A grid that contains the optimum (levels 0..14 of 0.5 around dtilde = 3.3) is never at its
    # edges; a 3-level grid truncates the optimum and most quotes sit at an edge.
    pr = problem("B")
    wide = solve_pi(MARKET, pr, n_steps=20, tick=0.5, n_levels=15, min_level=0)
    narrow = solve_pi(MARKET, pr, n_steps=20, tick=0.5, n_levels=3, min_level=6)
    assert wide.info["grid_edge_share"] == 0.0
    assert narrow.info["grid_edge_share"] > 0.5


def test_pi_options_are_validated() -> None:
    pr = problem("B")
    with pytest.raises(ValueError, match="need a tick"):
        solve_pi(MARKET, pr)
    with pytest.raises(ValueError, match="horizon must be one of"):
        solve_pi(MARKET, pr, tick=0.5, horizon="infinite")
    with pytest.raises(ValueError, match="needs objective B"):
        solve_pi(MARKET, problem("A"), tick=0.5, horizon="average")
    with pytest.raises(ValueError, match=r"discount_rate \(horizon=.discounted.\)"
                       r" must be a finite number > 0, got None"):
        solve_pi(MARKET, pr, tick=0.5, horizon="discounted")
    with pytest.raises(ValueError, match="use method='csp'"):
        solve_pi(MARKET, pr, tick=0.5, constraints=Constraints(min_two_sided=0.5))
    with pytest.raises(ValueError, match="fill_model must be one of"):
        solve_pi(MARKET, pr, tick=0.5, fill_model="exact")
    with pytest.raises(ValueError, match="no admissible quote pair"):
        solve_pi(MARKET, pr, tick=0.5, allow_no_quote=False, constraints=Constraints(bid_max_ticks=-1))


def test_tick_grid_object_and_keywords_are_one_problem() -> None:
    # A TickGrid passed as grid= and the same fields as keywords describe the same MDP; keywords
    # override the grid's fields; unknown names and a wrong grid type are refused by name.
    pr = problem("B")
    grid = TickGrid(n_steps=20, tick=0.5, n_levels=9, min_level=2)
    by_object = solve_pi(MARKET, pr, grid)
    by_keywords = solve(MARKET, pr, "pi", n_steps=20, tick=0.5, n_levels=9, min_level=2)
    np.testing.assert_array_equal(by_object.theta, by_keywords.theta)
    assert by_object.info["grid"] == by_keywords.info["grid"]
    overridden = solve_pi(MARKET, pr, grid, n_levels=5)
    assert overridden.info["grid"]["levels"] == [2, 3, 4, 5, 6]
    with pytest.raises(ValueError, match=r"does not take option\(s\) \['n_level'\].*'n_levels'"):
        solve(MARKET, pr, "pi", tick=0.5, n_level=9)
    with pytest.raises(ValueError, match=r"pi does not take option\(s\) \['tik'\]"):
        solve_pi(MARKET, pr, grid, tik=0.5)
    with pytest.raises(ValueError, match=r"grid must be an mmray\.solvers\.TickGrid"):
        solve_pi(MARKET, pr, {"tick": 0.5})


@pytest.mark.parametrize("horizon", ["finite", "average"])
def test_pi_solution_round_trips_through_checkpoint(tmp_path, horizon: str) -> None:
    pr = problem("B")
    sol = solve(MARKET.replace(tick=0.25), pr, "pi", n_steps=20, horizon=horizon, allow_no_quote=True)
    policy = sol.policy()
    loaded = load_policy(save_policy(policy, tmp_path / horizon))
    q = np.repeat(sol.q_grid, 3)
    for t in (0.0, 5.0, 19.0):
        for a, b in zip(policy.quotes(t, q, q), loaded.quotes(t, q, q), strict=True):
            np.testing.assert_array_equal(a, b)
    assert loaded.provenance["solver"] == "pi"
