"""Constrained solver (``csp``): LP over occupation measures with OR-Tools.

Oracles: backward induction (``pi``) without constraints; the full occupation LP solved directly
(GLOP) against the Dantzig-Wolfe decomposition; ``pi`` with the same per-state restrictions;
finite differences of the optimal value for the shadow prices; exact forward propagation of the
extracted policy; and the Monte Carlo simulator for the constraints themselves.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

import numpy as np
import pytest

from mmray.backtest import backtest
from mmray.checkpoint import load_policy, save_policy
from mmray.cli.solver_flags import add_solver_flags, solver_options
from mmray.model import fill_probability
from mmray.params import MarketParams, ProblemParams, SimConfig
from mmray.policy import TablePolicy
from mmray.sim import simulate_chunk
from mmray.solvers import solve
from mmray.solvers.constraints import Constraints
from mmray.solvers.csp import ConstrainedSolution, InfeasibleConstraints, solve_csp
from mmray.solvers.discrete import TickGrid
from mmray.solvers.lp_direct import solve_direct
from mmray.solvers.occupation import OccupationModel
from mmray.solvers.pi import solve_pi
from mmray.solvers.random_policy import RandomTablePolicy

MARKET = MarketParams(sigma=0.3, A=0.9, k=0.3, drift=0.005)
SMALL = ProblemParams(gamma=0.01, T=12.0, q_max=3, objective="B", terminal_penalty=0.01)
SMALL_OPTS = {"n_steps": 12, "tick": 0.5, "n_levels": 6, "min_level": 4}
MEDIUM = ProblemParams(gamma=0.01, T=30.0, q_max=5, objective="B", terminal_penalty=0.01)
MEDIUM_OPTS = {"n_steps": 30, "tick": 0.5, "n_levels": 7, "min_level": 3}


def test_unconstrained_lp_equals_backward_induction() -> None:
    # Without constraints the LP over occupation measures is the dual of backward induction:
    # same optimum (asked: 1e-6 relative, the bound; measured 1e-15), the Lagrangian value
    # function is pi's value function, the policy is deterministic and is pi's policy.
    pi = solve_pi(MARKET, MEDIUM, **MEDIUM_OPTS)
    sols = {}
    for formulation in ("dw", "direct"):
        sol = sols[formulation] = solve_csp(MARKET, MEDIUM, None, formulation=formulation, **MEDIUM_OPTS)
        assert abs(sol.info["objective"] / pi.info["value_q0"] - 1.0) < 1e-6
        np.testing.assert_allclose(sol.theta, pi.theta, rtol=1e-10, atol=1e-10)
        assert isinstance(sol.policy(), TablePolicy) and sol.info["randomised_states"] == 0
        np.testing.assert_array_equal(sol.bid[:-1], pi.bid[:-1])
        np.testing.assert_array_equal(sol.ask[:-1], pi.ask[:-1])
    # sol.theta is the decomposition's value function in both formulations: the full LP's own
    # value is checked through its flow-row duals, the value function of that LP. Every state
    # reachable from q0 carries mass here, so they are unique and must be pi's theta (1e-10:
    # GLOP's simplex solves the dual to ~1e-12; measured 9e-14); by strong duality the one at
    # (t_0, q0) is the direct LP's objective.
    sol = sols["direct"]
    assert sol.flow_duals is not None and sols["dw"].flow_duals is None
    mdp = TickGrid(**MEDIUM_OPTS).mdp(MARKET, MEDIUM)
    reach = OccupationModel(mdp, Constraints(), 0.0).reach
    assert np.array_equal(np.isfinite(sol.flow_duals), reach)
    np.testing.assert_allclose(sol.flow_duals[reach], pi.theta[:-1][reach], rtol=1e-10, atol=1e-10)
    i0 = int(np.argmin(np.abs(sol.q_grid)))
    assert sol.flow_duals[0, i0] == pytest.approx(sol.info["objective"], rel=1e-12)


CASES = {
    "terminal_q2": Constraints(max_terminal_q2=0.8),
    "two_sided": Constraints(min_two_sided=0.97),
    "limit_prob": Constraints(max_limit_prob=0.02),
    "spread": Constraints(max_spread=5.0),
    "all": Constraints(max_spread=6.0, max_terminal_q2=1.5, min_two_sided=0.9, max_limit_prob=0.03),
}


@pytest.mark.parametrize("name", list(CASES))
def test_decomposition_equals_direct_lp(name: str) -> None:
    # Dantzig-Wolfe column generation must reach the optimum of the full LP written out column by
    # column; both are exact LP optima from GLOP (optimality tolerance ~1e-9), so objectives agree
    # to 1e-8 relative and the duals of the coupling rows (unique here: one binding row each, or
    # the binding set of 'all') to 1e-6 relative.
    c = CASES[name]
    dw = solve_csp(MARKET, SMALL, c, formulation="dw", **SMALL_OPTS)
    direct = solve_csp(MARKET, SMALL, c, formulation="direct", **SMALL_OPTS)
    assert abs(dw.info["objective"] / direct.info["objective"] - 1.0) < 1e-8
    for key, entry in dw.info["constraints"].items():
        other = direct.info["constraints"][key]
        assert entry["shadow_price"] == pytest.approx(other["shadow_price"], rel=1e-6, abs=1e-9)
        assert entry["cost"] == pytest.approx(other["cost"], rel=1e-6, abs=1e-9)
    for key, y in direct.info["direct"]["restriction_duals"].items():
        # the bisection finds the smallest multiplier that makes forbidden pairs unattractive;
        # the LP's dual is one of the optimal duals, so it is >= that (and equal here to 1e-6)
        assert y >= dw.info["constraints"][key]["shadow_price"] - 1e-8
        assert y == pytest.approx(dw.info["constraints"][key]["shadow_price"], rel=1e-6)
    unconstrained = solve_pi(MARKET, SMALL, **SMALL_OPTS).info["value_q0"]
    assert dw.info["objective"] < unconstrained  # every case binds something
    assert dw.info["binding"]


def test_per_state_restriction_equals_pi_with_the_same_restriction() -> None:
    # A per-state restriction removes pairs everywhere: pi with the restriction solves the same
    # problem by backward induction (1e-9 relative), and the reported cost is the drop in pi's value.
    c = Constraints(max_spread=5.0, ask_max_ticks=8)
    sol = solve_csp(MARKET, MEDIUM, c, **MEDIUM_OPTS)
    free = solve_pi(MARKET, MEDIUM, **MEDIUM_OPTS).info["value_q0"]
    both = solve_pi(MARKET, MEDIUM, constraints=c, **MEDIUM_OPTS).info["value_q0"]
    assert sol.info["objective"] == pytest.approx(both, rel=1e-9)
    for name in ("max_spread", "ask_max_ticks"):
        without = solve_pi(MARKET, MEDIUM, constraints=c.without(name), **MEDIUM_OPTS).info["value_q0"]
        assert sol.info["constraints"][name]["cost"] == pytest.approx(without - both, rel=1e-7, abs=1e-9)
    assert sol.info["constraints"]["max_spread"]["cost"] > 0
    assert free > both


@pytest.mark.parametrize(
    ("field", "value", "step"),
    [("max_terminal_q2", 0.8, 1e-4), ("min_two_sided", 0.97, 1e-5), ("max_limit_prob", 0.02, 1e-6)],
)
def test_shadow_price_is_the_derivative_of_the_optimum(field: str, value: float, step: float) -> None:
    # The LP optimum is piecewise linear in the bound; a step small enough to keep the optimal
    # basis gives the dual exactly (forward difference; 1e-4 relative allows for GLOP's 1e-9
    # optimality tolerance divided by the step).
    base = solve_csp(MARKET, SMALL, Constraints(**{field: value}), constraint_costs=False, **SMALL_OPTS)
    moved = solve_csp(MARKET, SMALL, Constraints(**{field: value + step}), constraint_costs=False, **SMALL_OPTS)
    slope = (moved.info["objective"] - base.info["objective"]) / step
    assert slope == pytest.approx(base.info["constraints"][field]["shadow_price"], rel=1e-4)


def test_costs_and_non_binding_constraints() -> None:
    # cost = optimum without the constraint (others kept) - optimum with all; checked against
    # independent solves. A slack constraint has zero dual, zero cost and binding False.
    c = Constraints(max_terminal_q2=1.5, min_two_sided=0.5)
    sol = solve_csp(MARKET, SMALL, c, **SMALL_OPTS)
    rep = sol.info["constraints"]
    assert rep["max_terminal_q2"]["binding"] and rep["max_terminal_q2"]["cost"] > 0
    alone = solve_csp(MARKET, SMALL, c.without("max_terminal_q2"), constraint_costs=False, **SMALL_OPTS)
    assert rep["max_terminal_q2"]["cost"] == pytest.approx(alone.info["objective"] - sol.info["objective"], rel=1e-9)
    assert not rep["min_two_sided"]["binding"]
    assert rep["min_two_sided"]["shadow_price"] == 0.0 and rep["min_two_sided"]["cost"] == 0.0
    assert rep["min_two_sided"]["activity"] > 0.5
    assert sol.info["binding"] == ["max_terminal_q2"]


def _exact_occupation(policy: RandomTablePolicy, problem: ProblemParams, dt: float, q0: float = 0.0
                      ) -> dict[str, float]:
    """Forward propagation of the randomised policy from ``q0`` with the simulator's fill probabilities:
    expected value_B, two-sided fraction, E[q_T^2] and max_{j >= 1} P(|q_j| = Q) (independent of the LP)."""
    n_steps = policy.times.size - 1
    q = policy.q_grid
    rho = np.zeros(q.size)
    rho[np.argmin(np.abs(q - q0))] = 1.0
    g, s2, mu = problem.gamma, MARKET.sigma**2, MARKET.drift

    def running(x: np.ndarray) -> np.ndarray:
        return mu * dt * x - 0.5 * g * s2 * dt * x * x

    value, two, limit = 0.0, 0.0, 0.0
    for j in range(n_steps):
        pb = np.where(policy.bid_on[j], fill_probability(policy.bid[j], MARKET, dt, "poisson"), 0.0)
        pa = np.where(policy.ask_on[j], fill_probability(policy.ask[j], MARKET, dt, "poisson"), 0.0)
        w = policy.prob[j]
        up = np.sum(w * pb * (1 - pa), axis=1)
        down = np.sum(w * pa * (1 - pb), axis=1)
        stay = 1 - up - down
        cash = np.sum(w * (pb * policy.bid[j] + pa * policy.ask[j]), axis=1) * MARKET.trade_size
        qp = np.append(q[1:], q[-1])
        qm = np.insert(q[:-1], 0, q[0])
        value += np.sum(rho * (cash + stay * running(q) + up * running(qp) + down * running(qm)))
        two += np.sum(rho * np.sum(w * (policy.bid_on[j] & policy.ask_on[j]), axis=1))
        nxt = rho * stay
        nxt[1:] += (rho * up)[:-1]
        nxt[:-1] += (rho * down)[1:]
        rho = nxt
        limit = max(limit, rho[0] + rho[-1])
    value -= np.sum(rho * problem.terminal(q))
    return {"value": value, "two_sided": two / n_steps, "q2": float(np.sum(rho * q * q)), "limit": limit}


CONSTRAINED = Constraints(max_terminal_q2=2.0, min_two_sided=0.985, max_limit_prob=0.01)


def test_extracted_policy_reproduces_the_lp_occupation() -> None:
    # The randomised policy x / sum x, propagated forward with the simulator's own fill
    # probabilities, must reproduce the LP's objective and constraint activities (1e-9: only
    # rounding), and it must randomise (the constraints bind).
    sol = solve_csp(MARKET, MEDIUM, CONSTRAINED, constraint_costs=False, **MEDIUM_OPTS)
    policy = sol.policy()
    assert isinstance(policy, RandomTablePolicy) and policy.is_randomised()
    occ = _exact_occupation(policy, MEDIUM, 1.0)
    act = sol.info["activities"]
    assert occ["value"] == pytest.approx(sol.info["objective"], rel=1e-9)
    assert occ["two_sided"] == pytest.approx(act["two_sided_fraction"], abs=1e-9)
    assert occ["q2"] == pytest.approx(act["terminal_q2"], abs=1e-9)
    assert occ["limit"] == pytest.approx(act["max_limit_prob"], abs=1e-9)
    assert occ["q2"] <= 2.0 + 1e-9 and occ["two_sided"] >= 0.985 - 1e-9 and occ["limit"] <= 0.01 + 1e-9


def test_constraints_hold_on_the_simulator(tmp_path) -> None:
    # Monte Carlo with the simulator (tick 0: offsets are already on the grid, see docs): the
    # sampled randomised policy must meet each constraint within 3 standard errors and reproduce
    # the LP's value and activities within 4 SE (false-alarm probability ~1e-4 per check).
    sol = solve_csp(MARKET, MEDIUM, CONSTRAINED, constraint_costs=False, **MEDIUM_OPTS)
    path = save_policy(sol.policy(), tmp_path / "csp")
    policy = load_policy(path)  # what a user would backtest
    # a fresh process that never imported mmray.solvers loads the randomised kind too
    check = ("import sys, mmray; p = mmray.load_policy(sys.argv[1]); "
             "assert p.kind == 'random_table' and p.is_randomised(); print('ok')")
    out = subprocess.run([sys.executable, "-c", check, str(path)], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "ok", out.stderr
    n = 60_000
    res = backtest(policy, MARKET, MEDIUM, SimConfig(dt=1.0, n_paths=n, seed=7), record=n)
    act = sol.info["activities"]
    q2 = res.per_path["q_final"] ** 2
    q2_mean, q2_se = q2.mean(), q2.std(ddof=1) / np.sqrt(n)
    assert q2_mean <= 2.0 + 3 * q2_se
    assert abs(q2_mean - act["terminal_q2"]) < 4 * q2_se
    at_bound = np.abs(res.paths["q"][:, 1:]) >= MEDIUM.q_max
    p_hat = at_bound.mean(axis=0)
    p_se = np.sqrt(np.maximum(p_hat * (1 - p_hat), 1e-12) / n)
    assert np.all(p_hat <= 0.01 + 4 * p_se)  # 30 times: 4 SE keeps the family-wise error ~1e-3
    v, v_se = res.metrics["value_B"], res.metrics["value_B_se"]
    assert abs(v - sol.info["objective"]) < 4 * v_se
    # two-sided fraction: batch means over 20 independent chunks (the simulator aggregates it per chunk)
    seeds = np.random.SeedSequence(99).spawn(20)
    cfg = SimConfig(dt=1.0, n_paths=3000, seed=0)
    fractions = np.array([simulate_chunk(policy, MARKET, MEDIUM, cfg, 3000, s).spread_steps / (3000 * 30)
                          for s in seeds])
    f_mean, f_se = fractions.mean(), fractions.std(ddof=1) / np.sqrt(fractions.size)
    assert f_mean >= 0.985 - 3 * f_se
    assert abs(f_mean - act["two_sided_fraction"]) < 4 * f_se


def test_infeasible_constraint_sets_name_the_conflict() -> None:
    # Quoting both sides 90% of the time moves the inventory with positive probability, so
    # E[q_T^2] = 0 cannot hold; each alone is feasible (checked on the direct LP, an independent
    # oracle). The loose max_spread must not be blamed.
    c = Constraints(min_two_sided=0.9, max_terminal_q2=0.0, max_spread=100.0)
    with pytest.raises(InfeasibleConstraints, match=r"min_two_sided=0\.9.*max_terminal_q2=0\.0.*conflict") as err:
        solve_csp(MARKET, SMALL, c, **SMALL_OPTS)
    assert err.value.conflict == ["min_two_sided", "max_terminal_q2"]
    mdp = TickGrid(**SMALL_OPTS).mdp(MARKET, SMALL)
    om = OccupationModel(mdp, c, 0.0)
    assert solve_direct(om, ["min_two_sided", "max_terminal_q2"], "GLOP").status == "infeasible"
    assert solve_direct(om, ["min_two_sided"], "GLOP").status == "optimal"
    assert solve_direct(om, ["max_terminal_q2"], "GLOP").status == "optimal"
    # a restriction that leaves no pair when quoting is mandatory is infeasible on its own
    with pytest.raises(InfeasibleConstraints, match=r"infeasible constraint: bid_max_ticks=2") as err:
        solve_csp(MARKET, SMALL, Constraints(bid_max_ticks=2, max_terminal_q2=5.0), allow_no_quote=False, **SMALL_OPTS)
    assert err.value.conflict == ["bid_max_ticks"]


AT_BOUND_OPTS = {"n_steps": 12, "tick": 0.5, "n_levels": 6, "min_level": 0}


@pytest.mark.parametrize("q0", [3.0, -3.0])
def test_start_at_the_inventory_bound(q0: float) -> None:
    # q0 = +-Q with max_limit_prob < 1 is a legitimate problem: the rows bound P(|q_j| = Q) for
    # j = 1..N only, and quoting the unwanted side aggressively leaves the bound in one step with
    # probability ~0.5 on this grid. eps = 0.9 does not bind (unconstrained optimum, pi's value at
    # q0; measured 16.5819 from q0 = 3), eps = 0.5 binds (16.4374 from q0 = 3). Oracles, as in
    # test_decomposition_equals_direct_lp: the full LP (objective 1e-8 relative, dual 1e-6) and
    # pi's value function (1e-9 relative: two exact optima of the same problem, rounding only);
    # the extracted policy, propagated exactly from q0, meets the bound (1e-9: rounding).
    i0 = -1 if q0 > 0 else 0
    free = solve_pi(MARKET, SMALL, **AT_BOUND_OPTS).theta[0, i0]
    for eps, binds in ((0.9, False), (0.5, True)):
        c = Constraints(max_limit_prob=eps)
        dw = solve_csp(MARKET, SMALL, c, q0=q0, formulation="dw", **AT_BOUND_OPTS)
        direct = solve_csp(MARKET, SMALL, c, q0=q0, formulation="direct", **AT_BOUND_OPTS)
        assert dw.info["objective"] == pytest.approx(direct.info["objective"], rel=1e-8)
        rep, other = dw.info["constraints"]["max_limit_prob"], direct.info["constraints"]["max_limit_prob"]
        assert rep["binding"] is binds and other["binding"] is binds
        assert rep["shadow_price"] == pytest.approx(other["shadow_price"], rel=1e-6, abs=1e-9)
        assert rep["cost"] == pytest.approx(other["cost"], rel=1e-6, abs=1e-9)
        if binds:
            assert dw.info["objective"] < free - 1e-3 and rep["shadow_price"] > 0
        else:
            assert dw.info["objective"] == pytest.approx(free, rel=1e-9)
        occ = _exact_occupation(dw.random_policy, SMALL, 1.0, q0)
        assert occ["value"] == pytest.approx(dw.info["objective"], rel=1e-9)
        assert occ["limit"] <= eps + 1e-9
        # the two-sided fraction is over all N steps, the one-sided steps at the bound included
        # (documented meaning of min_two_sided): step 0 is at the bound for sure, so <= 11/12
        frac = dw.info["activities"]["two_sided_fraction"]
        assert frac == pytest.approx(occ["two_sided"], abs=1e-9) and frac <= 1 - 1 / 12 + 1e-12
    # where no quote leaves the bound with probability >= 1 - eps the LP itself is infeasible:
    # phase 1 says so (the direct LP agrees) and names the constraint
    c = Constraints(max_limit_prob=0.5)
    with pytest.raises(InfeasibleConstraints, match=r"infeasible constraint: max_limit_prob=0\.5") as err:
        solve_csp(MARKET, SMALL, c, q0=q0, **SMALL_OPTS)
    assert err.value.conflict == ["max_limit_prob"]
    om = OccupationModel(TickGrid(**SMALL_OPTS).mdp(MARKET, SMALL), c, q0)
    assert solve_direct(om, ["max_limit_prob"], "GLOP").status == "infeasible"


def test_deterministic_policy_by_mixed_integer_programming() -> None:
    # Tiny problem (SCIP on all ~500 columns). Without constraints an optimal deterministic policy
    # exists, so the MILP optimum equals pi's value (SCIP's default relative gap 1e-4 bounds the
    # difference). With a binding constraint the best deterministic policy is worth at most the LP
    # optimum and its exact (re-evaluated) activity satisfies the constraint.
    pr = SMALL.replace(T=6.0, q_max=2)
    opts = {"n_steps": 6, "tick": 0.5, "n_levels": 3, "min_level": 5}
    free = solve_csp(MARKET, pr, None, deterministic=True, **opts)
    pi = solve_pi(MARKET, pr, **opts).info["value_q0"]
    assert free.info["milp"]["status"] == "optimal"
    assert free.info["objective"] == pytest.approx(pi, rel=1e-4)
    cons = solve_csp(MARKET, pr, Constraints(max_terminal_q2=0.4), deterministic=True, **opts)
    milp = cons.info["milp"]
    assert milp["exact_feasible"] and milp["activities"]["max_terminal_q2"] <= 0.4 + 1e-9
    assert cons.info["objective"] <= cons.info["objective_lp"] + 1e-9
    assert milp["cost_of_determinism"] >= -1e-9
    assert isinstance(cons.policy(), TablePolicy)


def test_random_table_policy_sampling_and_checkpoint(tmp_path) -> None:
    # Frequencies of the sampled pairs match the stored probabilities within 4 binomial SE.
    times, q = np.array([0.0, 1.0, 2.0]), np.array([-1.0, 0.0, 1.0])
    prob = np.zeros((3, 3, 2))
    prob[..., 0], prob[..., 1] = 0.3, 0.7
    bid = np.stack([np.full((3, 3), 1.0), np.full((3, 3), 2.0)], axis=-1)
    ask = bid + 0.5
    on = np.ones((3, 3, 2), dtype=bool)
    ask_on = on.copy()
    ask_on[..., 1] = False
    pol = RandomTablePolicy(times, q, prob, bid, ask, on, ask_on)
    n = 200_000
    b, a = pol.quotes(0.5, np.zeros(n), np.zeros(n), np.random.default_rng(1))
    share = np.mean(b == 1.0)
    assert abs(share - 0.3) < 4 * np.sqrt(0.3 * 0.7 / n)
    assert np.all(np.isinf(a[b == 2.0])) and np.all(a[b == 1.0] == 1.5)
    with pytest.raises(ValueError, match="needs rng"):
        pol.quotes(0.0, np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="sum to 1"):
        RandomTablePolicy(times, q, prob * 2, bid, ask, on, on)
    loaded = load_policy(save_policy(pol, tmp_path / "rand"))
    assert isinstance(loaded, RandomTablePolicy)
    for x, y in zip(pol.quotes(1.0, q, q, np.random.default_rng(3)), loaded.quotes(1.0, q, q, np.random.default_rng(3)),
                    strict=True):
        np.testing.assert_array_equal(x, y)


def test_csp_solution_round_trips_through_checkpoint(tmp_path) -> None:
    # Both policy kinds round-trip, and the checkpoint records the constraint set solved under
    # (names and bounds, enough to rebuild the Constraints) and the per-constraint report.
    c = Constraints(max_terminal_q2=0.8, min_two_sided=0.5, max_spread=6.0, ask_min_ticks=np.int64(1))
    sol = solve(MARKET, SMALL, "csp", constraints=c, **SMALL_OPTS)
    assert isinstance(sol, ConstrainedSolution)
    assert Constraints.from_dict(sol.info["constraint_set"]) == c
    assert isinstance(sol.policy(), RandomTablePolicy)
    for kind, policy in (("random", sol.policy()), ("table", ConstrainedSolution.__mro__[1].policy(sol))):
        loaded = load_policy(save_policy(policy, tmp_path / kind))
        assert type(loaded) is type(policy)
        info = loaded.provenance["info"]
        assert Constraints.from_dict(info["constraint_set"]) == c
        assert {n: e["bound"] for n, e in info["constraints"].items()} == c.to_dict()
        assert info["binding"] == sol.info["binding"] and "max_terminal_q2" in info["binding"]
        assert info["objective"] == sol.info["objective"]
        rng_a, rng_b = np.random.default_rng(0), np.random.default_rng(0)
        qs = np.repeat(sol.q_grid, 50)
        for t in (0.0, 6.0, 11.0):
            for x, y in zip(policy.quotes(t, qs, qs, rng_a), loaded.quotes(t, qs, qs, rng_b), strict=True):
                np.testing.assert_array_equal(x, y)
        assert loaded.provenance["solver"] == "csp"


def test_csp_options_and_constraints_are_validated() -> None:
    with pytest.raises(ValueError, match="needs objective B"):
        solve_csp(MARKET, SMALL.replace(objective="A"), None, **SMALL_OPTS)
    with pytest.raises(ValueError, match=r"q0=0\.5 must be an inventory level"):
        solve_csp(MARKET, SMALL, None, q0=0.5, **SMALL_OPTS)
    with pytest.raises(ValueError, match="lp_solver must be one of"):
        solve_csp(MARKET, SMALL, None, lp_solver="CLP", **SMALL_OPTS)
    with pytest.raises(ValueError, match=r"Constraints.min_two_sided must be a probability"):
        Constraints(min_two_sided=1.5)
    with pytest.raises(ValueError, match="bid_min_ticks=5 exceeds bid_max_ticks=3"):
        Constraints(bid_min_ticks=5, bid_max_ticks=3)
    # tick limits are integers as mmray.checks.integer has them: numpy integers too, not floats or bools
    c = Constraints(bid_min_ticks=np.int64(3), ask_max_ticks=np.int32(9))
    assert c.to_dict() == {"bid_min_ticks": 3, "ask_max_ticks": 9} and type(c.bid_min_ticks) is int
    for bad in (3.0, 3.5, True, "3"):
        with pytest.raises(ValueError, match=r"Constraints\.bid_min_ticks must be an integer, got"):
            Constraints(bid_min_ticks=bad)


def test_pdlp_backend_agrees_with_glop() -> None:
    # PDLP (first-order) with tightened tolerances on the small master LP: 1e-8 relative to GLOP.
    c = Constraints(max_terminal_q2=0.8)
    glop = solve_csp(MARKET, SMALL, c, constraint_costs=False, **SMALL_OPTS)
    pdlp = solve_csp(MARKET, SMALL, c, lp_solver="PDLP", constraint_costs=False, **SMALL_OPTS)
    assert pdlp.info["objective"] == pytest.approx(glop.info["objective"], rel=1e-8)


def test_cli_flags_reach_csp() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--q0", type=float, default=0.0)  # as the CLI's simulation flags define it
    add_solver_flags(parser)
    args = parser.parse_args(["--n-steps", "12", "--solver-tick", "0.5", "--n-levels", "6", "--min-level", "4",
                              "--max-terminal-q2", "0.8", "--min-two-sided", "0.5", "--no-constraint-costs"])
    opts = solver_options("csp", args)
    assert opts["constraints"] == Constraints(max_terminal_q2=0.8, min_two_sided=0.5)
    assert opts["constraint_costs"] is False and opts["q0"] == 0.0
    sol = solve(MARKET, SMALL, "csp", **opts)
    assert sol.info["active"] == ["min_two_sided", "max_terminal_q2"]
    with pytest.raises(ValueError, match="--no-constraint-costs does not apply to --method pi"):
        solver_options("pi", args)
    args.no_constraint_costs = None
    with pytest.raises(ValueError, match="use method='csp'"):  # global constraints: pi refuses them
        solve(MARKET, SMALL, "pi", **solver_options("pi", args))
