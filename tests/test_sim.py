"""Simulator and backtests: published AS 2008 numbers, the value function, bounds, determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mmray import SimConfig, backtest, make_strategy, model
from mmray.backtest import compute_metrics
from mmray.model import fill_probability
from mmray.objectives import value_b
from mmray.params import MarketParams, ProblemParams
from mmray.policy import ClosedFormPolicy, TablePolicy
from mmray.sim import simulate_chunk, tick_offsets
from mmray.solvers import solve

# AS 2008 table (§3.3): (spread, profit, std(profit), final q, std(q)) for 1000 paths each
AS_TABLE = {
    (0.1, "as"): (1.49, 65.0, 6.6, 0.08, 2.9),
    (0.1, "symmetric"): (1.49, 68.4, 12.7, 0.26, 8.4),
    (1.0, "as"): (3.02, 31.4, 5.0, 0.02, 1.7),
    (1.0, "symmetric"): (3.02, 44.0, 11.0, 0.00, 5.1),
}
AS_CONFIG = SimConfig(dt=0.005, n_paths=20000, price_model="binomial", fill_model="linear", seed=2008)


@pytest.fixture(scope="module")
def as_results():
    market = MarketParams(sigma=2.0, A=140.0, k=1.5, s0=100.0)
    out = {}
    for gamma, name in AS_TABLE:
        problem = ProblemParams(gamma=gamma, T=1.0, q_max=None)
        out[gamma, name] = backtest(make_strategy(name, market, problem), market, problem, AS_CONFIG).metrics
    return out


@pytest.mark.parametrize(("gamma", "strategy"), list(AS_TABLE))
def test_as2008_reproduces_published_table(as_results, gamma, strategy):
    spread, profit, std, _, q_std = AS_TABLE[gamma, strategy]
    m = as_results[gamma, strategy]
    # The paper used 1000 paths, we use 20000: its SEs are ours times sqrt(20). Each comparison
    # allows 3 combined SEs plus 0.05 for the paper's rounding to 0.1. The SEs of the stds use the
    # sample kurtosis (PnL kurtosis is ~5.6 for the symmetric strategy; see mmray.backtest).
    scale = math.sqrt(AS_CONFIG.n_paths / 1000)
    assert abs(m["pnl_mean"] - profit) < 3 * math.hypot(scale, 1) * m["pnl_mean_se"] + 0.05
    assert abs(m["pnl_std"] - std) < 3 * math.hypot(scale, 1) * m["pnl_std_se"] + 0.05
    assert abs(m["q_final_std"] - q_std) < 3 * math.hypot(scale, 1) * m["q_final_std_se"] + 0.05
    assert m["spread_mean"] == pytest.approx(spread, abs=0.015)  # discrete time average vs published 2 decimals


@pytest.mark.parametrize(("price_model", "fill_model", "half_spread", "q0", "size"),
                         [("binomial", "linear", 0.745, 0.0, 1.0), ("gaussian", "poisson", 1.2, 5.0, 1.0),
                          ("gaussian", "linear", 1.0, 4.0, 2.0)])
def test_constant_quote_moments_match_the_closed_form(
    price_model: str, fill_model: str, half_spread: float, q0: float, size: float
) -> None:
    # Oracle: a state-independent quote has exact PnL moments (mmray.model.constant_quote_moments).
    # Tolerance 4 standard errors; the SE of the sample std uses the sample kurtosis
    # (Var s ~ (m4/s^4 - 1) s^2 / 4n) because the PnL (a sum of q dS with random q) is not normal.
    market = MarketParams(sigma=2.0, A=140.0, k=1.5, s0=100.0, trade_size=size)  # size 2: the simulator's Delta branch
    problem = ProblemParams(gamma=0.1, T=1.0, q_max=None)
    config = SimConfig(dt=0.005, n_paths=20000, price_model=price_model, fill_model=fill_model, seed=11, q0=q0)
    policy = ClosedFormPolicy("constant", market, problem, half_spread=half_spread)
    res = simulate_chunk(policy, market, problem, config, config.n_paths, config.seed)
    exact = model.constant_quote_moments(market, half_spread, problem.T, config)
    n, pnl = res.pnl.size, res.pnl
    std = pnl.std(ddof=1)
    kurt = np.mean((pnl - pnl.mean()) ** 4) / np.var(pnl) ** 2
    assert abs(pnl.mean() - exact.pnl_mean) < 4 * std / math.sqrt(n)
    assert abs(std - exact.pnl_std) < 4 * std * math.sqrt((kurt - 1) / (4 * n))
    q_std = res.q_final.std(ddof=1)
    assert abs(q_std - exact.q_final_std) < 4 * q_std * math.sqrt(2 / (4 * n)) * 1.1  # q_T nearly normal
    with pytest.raises(ValueError, match="drift == 0 and tick == 0"):
        model.constant_quote_moments(market.replace(tick=0.01), half_spread, 1.0, config)


@pytest.mark.parametrize("gamma", [0.1, 1.0])
def test_symmetric_strategy_is_riskier_than_inventory_strategy(as_results, gamma):
    inv, sym = as_results[gamma, "as"], as_results[gamma, "symmetric"]
    assert sym["pnl_std"] > 1.5 * inv["pnl_std"]
    assert sym["q_final_std"] > 2.0 * inv["q_final_std"]
    assert sym["pnl_mean"] > inv["pnl_mean"]  # the price of the lower risk, as in AS 2008
    published = AS_TABLE[gamma, "symmetric"]
    assert abs(sym["pnl_mean"] - published[1]) < 3 * math.hypot(published[2] / math.sqrt(1000), sym["pnl_mean_se"])


@pytest.mark.parametrize("objective", ["A", "B"])
def test_monte_carlo_value_of_exact_policy_equals_value_function(glft_market, objective):
    """The solver's theta(0, 0) is the value of its own policy: the simulated objective (B: mean of
    PnL minus running penalty; A: certainty equivalent) converges to it as dt -> 0. The per-step
    simulation has an O(dt) bias (at most one fill per side and step), removed by Richardson
    extrapolation from dt and dt/5; the tolerance is 4 standard errors of the extrapolated value."""
    problem = ProblemParams(gamma=0.01, T=60.0, q_max=30, objective=objective)
    sol = solve(glft_market, problem, method="exact", n_times=3001)
    theta = sol.theta[0, 30]
    key = "value_B" if objective == "B" else "ce_A"
    vals, ses = [], []
    for dt in (0.1, 0.02):
        m = backtest(sol.policy(), glft_market, problem, SimConfig(dt=dt, n_paths=12000, seed=11)).metrics
        vals.append(m[key])
        ses.append(m[f"{key}_se"])
    extrapolated = vals[1] + (vals[1] - vals[0]) * 0.02 / (0.1 - 0.02)
    se = math.hypot(1.25 * ses[1], 0.25 * ses[0])
    assert vals[0] < vals[1] < theta + 3 * ses[1]  # bias shrinks as dt falls
    assert abs(extrapolated - theta) < 4 * se


def test_optimal_policy_beats_other_strategies_on_its_objective(glft_market):
    """A paired comparison on common random numbers: each strategy runs on the same seed, so the
    per-path differences of value_B have the paired SE sd(d)/sqrt(n). gamma = 0.05 makes inventory
    risk matter: measured gaps are 1.0 (constant), 1.4 (symmetric), 0.66 (AS) with paired SEs of
    0.08-0.09 at 8000 paths, i.e. 7-16 SEs; the test asks for 4, so it fails if the exact policy
    is not better (the unpaired SE, ~0.35, could not tell)."""
    problem = ProblemParams(gamma=0.05, T=60.0, q_max=30, objective="B")
    config = SimConfig(dt=0.05, n_paths=8000, seed=5)
    per_path = {}
    for name in ("optimal", "constant", "symmetric", "as"):
        res = backtest(make_strategy(name, glft_market, problem), glft_market, problem, config)
        per_path[name] = value_b(res.per_path["pnl"], res.per_path["q2_integral"], glft_market, problem)
    for name in ("constant", "symmetric", "as"):
        d = per_path["optimal"] - per_path[name]
        paired_se = d.std(ddof=1) / math.sqrt(d.size)
        assert d.mean() > 4 * paired_se, (name, d.mean(), paired_se)


def test_tick_rounding_keeps_prices_on_the_grid_and_rounds_outward():
    s = np.full(39, 100.0)
    offsets = np.round(np.arange(1, 40) * 0.1, 10)  # 0.1 .. 3.9, all on a 0.1 grid from s = 100
    db, da = tick_offsets(s, offsets, offsets, 0.1)
    np.testing.assert_allclose(db, offsets, atol=1e-9)  # 100 - 0.2 stays 99.8 (plain floor: 99.7)
    np.testing.assert_allclose(da, offsets, atol=1e-9)
    db, da = tick_offsets(np.array([100.03]), np.array([0.05]), np.array([0.05]), 0.1)
    assert (100.03 - db[0], 100.03 + da[0]) == pytest.approx((99.9, 100.1))  # off-grid: bid down, ask up


def test_inventory_bounds_and_tick_rounding(glft_market):
    problem = ProblemParams(gamma=0.01, T=20.0, q_max=3)
    market = glft_market.replace(tick=0.5)
    policy = ClosedFormPolicy("constant", market, problem, half_spread=0.2)  # aggressive: hits the bounds
    res = simulate_chunk(policy, market, problem, SimConfig(dt=0.5), 500, np.random.SeedSequence(0), record=500)
    assert res.paths is not None
    assert np.abs(res.paths["q"]).max() == 3  # reached, never exceeded
    # tick: every fill happened at a price on the tick grid, so cash is a multiple of 0.5
    cash = res.pnl - res.q_final * res.paths["s"][:, -1]
    np.testing.assert_allclose(cash / 0.5, np.rint(cash / 0.5), atol=1e-6)
    # quoted 0.2 + 0.2 around a continuous mid, rounded outward to a 0.5 tick: every spread >= one tick
    assert res.spread_total / res.spread_steps >= 0.5 - 1e-12


def test_fill_frequency_matches_fill_probability(glft_market):
    """Constant quotes, no bound: the fill count per side is Binomial(steps, p)."""
    problem = ProblemParams(gamma=0.01, T=10.0, q_max=None)
    for fill_model in ("linear", "poisson"):
        config = SimConfig(dt=0.5, fill_model=fill_model)
        policy = ClosedFormPolicy("constant", glft_market, problem, half_spread=2.0)
        res = simulate_chunk(policy, glft_market, problem, config, 20000, np.random.SeedSequence(1))
        p = float(fill_probability(2.0, glft_market, 0.5, fill_model))
        n = 2 * 20 * 20000  # sides x steps x paths
        assert res.trades.sum() / n == pytest.approx(p, abs=4 * math.sqrt(p * (1 - p) / n))


def test_same_seed_same_numbers_and_chunking_invariance(glft_market, glft_problem):
    problem = glft_problem.replace(T=30.0)
    policy = make_strategy("optimal", glft_market, problem)
    base = SimConfig(dt=0.5, n_paths=1000, seed=42, chunk_size=256)
    a = backtest(policy, glft_market, problem, base)
    b = backtest(policy, glft_market, problem, base)
    assert a.metrics == b.metrics
    for key in a.per_path:
        np.testing.assert_array_equal(a.per_path[key], b.per_path[key])
    # more paths with the same chunk size: the full chunks (3 x 256 paths) are unchanged
    c = backtest(policy, glft_market, problem, base.replace(n_paths=1300))
    np.testing.assert_array_equal(c.per_path["pnl"][:768], a.per_path["pnl"][:768])
    assert c.per_path["pnl"][768] != a.per_path["pnl"][768]  # the partial chunk grew: new draws
    other = backtest(policy, glft_market, problem, base.replace(seed=43))
    assert other.metrics["pnl_mean"] != a.metrics["pnl_mean"]


def test_table_fast_path_equals_generic_path(glft_market, glft_problem):
    """The simulator's direct row lookup for tables must give the same paths as policy.quotes."""
    problem = glft_problem.replace(T=30.0)
    table = make_strategy("optimal", glft_market, problem)

    class Wrapped:  # same quotes through the generic protocol
        kind = "wrapped"

        def quotes(self, t, q, s, rng=None):
            return table.quotes(t, q, s)

    config = SimConfig(dt=0.25)
    fast = simulate_chunk(table, glft_market, problem, config, 300, np.random.SeedSequence(3))
    slow = simulate_chunk(Wrapped(), glft_market, problem, config, 300, np.random.SeedSequence(3))
    np.testing.assert_allclose(fast.pnl, slow.pnl, rtol=1e-12)
    np.testing.assert_array_equal(fast.q_final, slow.q_final)

    # a table narrower than the inventory bound (q in [-2, 2], Q = 30) must not take the direct
    # row lookup (its index would leave the table): same numbers as through quotes()
    narrow = TablePolicy(table.times, table.q_grid[28:33], table.bid[:, 28:33], table.ask[:, 28:33],
                         table.bid_on[:, 28:33], table.ask_on[:, 28:33])
    assert narrow.q_grid.tolist() == [-2.0, -1.0, 0.0, 1.0, 2.0]

    class WrappedNarrow:
        kind = "wrapped"

        def quotes(self, t, q, s, rng=None):
            return narrow.quotes(t, q, s)

    a = simulate_chunk(narrow, glft_market, problem, config, 300, np.random.SeedSequence(3))
    b = simulate_chunk(WrappedNarrow(), glft_market, problem, config, 300, np.random.SeedSequence(3))
    np.testing.assert_array_equal(a.q_final, b.q_final)
    assert np.abs(a.q_final).max() > 2  # paths do leave the table's range


def test_metrics_standard_errors():
    rng = np.random.default_rng(0)
    pnl = rng.normal(1.0, 2.0, 40000)
    per_path = {"pnl": pnl, "q_final": np.zeros_like(pnl), "trades": np.ones_like(pnl),
                "max_drawdown": np.zeros_like(pnl), "q2_integral": np.zeros_like(pnl)}
    problem = ProblemParams(gamma=0.1)
    m = compute_metrics(per_path, MarketParams(), problem)
    assert m["pnl_mean_se"] == pytest.approx(2.0 / 200, rel=0.02)
    assert m["sharpe"] == pytest.approx(0.5, abs=4 * m["sharpe_se"])
    # Gaussian PnL: CE_A = mu - gamma sigma^2 / 2 = 1 - 0.2 = 0.8
    assert m["ce_A"] == pytest.approx(0.8, abs=4 * m["ce_A_se"])
    assert m["value_B"] == m["pnl_mean"]


def test_one_path_has_no_standard_deviation_or_standard_errors():
    """A single path estimates means but no spread: std, Sharpe and every SE are NaN, not 0."""
    one = {"pnl": np.array([1.5]), "q_final": np.array([2.0]), "trades": np.array([3.0]),
           "max_drawdown": np.array([0.5]), "q2_integral": np.array([1.0])}
    m = compute_metrics(one, MarketParams(), ProblemParams())
    assert m["pnl_mean"] == 1.5 and m["q_final_mean"] == 2.0 and m["trades_mean"] == 3.0
    for key in ("pnl_std", "sharpe", "q_final_std", *(k for k in m if k.endswith("_se"))):
        assert np.isnan(m[key]), key


def test_standard_errors_of_std_and_sharpe_hold_for_non_normal_pnl():
    # Oracle: the spread of the estimates over 400 independent samples. The reported SEs use the
    # sample skewness and kurtosis; the normal-theory ones would be off by 1.58x (Laplace std) and
    # 1.5x (shifted exponential Sharpe). With 400 replicates the spread itself is known to ~4%
    # (1/sqrt(2 * 400)), so 15% is a 3.5-sigma bound.
    rng = np.random.default_rng(7)
    n, reps = 2000, 400

    def metrics(pnl: np.ndarray) -> dict[str, float]:
        zeros = np.zeros_like(pnl)
        per_path = {"pnl": pnl, "q_final": pnl, "trades": zeros, "max_drawdown": zeros, "q2_integral": zeros}
        return compute_metrics(per_path, MarketParams(), ProblemParams(gamma=0.1))

    laplace = [metrics(rng.laplace(0.0, 1.0, n)) for _ in range(reps)]  # kurtosis 6
    spread = np.std([m["pnl_std"] for m in laplace], ddof=1)
    assert np.mean([m["pnl_std_se"] for m in laplace]) == pytest.approx(spread, rel=0.15)
    assert np.mean([m["q_final_std_se"] for m in laplace]) == pytest.approx(spread, rel=0.15)
    skewed = [metrics(rng.exponential(1.0, n) - 0.5) for _ in range(reps)]  # S = 0.5, skew 2, kurtosis 9
    spread = np.std([m["sharpe"] for m in skewed], ddof=1)
    assert np.mean([m["sharpe_se"] for m in skewed]) == pytest.approx(spread, rel=0.15)
    # S = 2 (exponential + 1): Mertens' variance is (1 + 2 - 4 + 6)/n = 5/n with the excess kurtosis
    # 6; with the raw kurtosis 9 it would be 8/n (a 26% larger SE), normal theory 3/n (23% smaller).
    # Measured ratio to the replicate spread: 0.98, so 10% separates the formulas by > 3 sigma.
    sharp = [metrics(rng.exponential(1.0, n) + 1.0) for _ in range(reps)]
    spread = np.std([m["sharpe"] for m in sharp], ddof=1)
    assert np.mean([m["sharpe_se"] for m in sharp]) == pytest.approx(spread, rel=0.10)


@pytest.mark.parametrize("strategy", ["optimal", "as"])  # the fused table kernel and the generic numpy step
def test_per_path_drawdown_and_fills_agree_with_the_recorded_paths(glft_market, glft_problem, strategy):
    # Oracle: the recorded trajectories. Max drawdown is the largest fall of mark-to-market PnL from
    # its running peak (the peak starts at 0, the PnL at t = 0); every inventory change is a fill of
    # Delta, and a step with both sides filled adds two fills but no change, so the fill count is at
    # least sum |dq| / Delta and has the same parity.
    problem = glft_problem.replace(T=30.0)
    res = simulate_chunk(make_strategy(strategy, glft_market, problem), glft_market, problem, SimConfig(dt=0.5),
                         200, np.random.SeedSequence(9), record=200)
    pnl, q = res.paths["pnl"], res.paths["q"]
    np.testing.assert_allclose(res.max_drawdown, (np.maximum.accumulate(pnl, axis=1) - pnl).max(axis=1),
                               rtol=0, atol=1e-9)
    moves = np.abs(np.diff(q, axis=1)).sum(axis=1) / glft_market.trade_size
    assert np.all(res.trades >= moves) and np.all((res.trades - moves) % 2 == 0)
    assert res.max_drawdown.max() > 0 and res.trades.sum() > moves.sum()  # both situations occur
