"""The one market step: drivers built on it reproduce the simulator, its fused twin equals it,
objective-B rewards add up to the per-path value, features reach the policies that read them."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mmray import SimConfig, backtest, make_strategy
from mmray.objectives import certainty_equivalent, step_reward_b, value_b
from mmray.params import ProblemParams
from mmray.policy import ClosedFormPolicy, TablePolicy
from mmray.sim import (
    ROWS_BLOCK,
    PathState,
    StepModel,
    market_step,
    market_step_numpy,
    simulate_chunk,
    tick_offsets,
)
from mmray.solvers import solve


def _drive(policy, market, problem, config, n, seed):
    """An environment-like driver: quotes chosen outside, one market_step per step, rewards summed."""
    rng = np.random.default_rng(seed)
    m = StepModel.of(market, problem, config)
    state = PathState(n, market.s0, config.q0)
    n_steps = config.check(market, problem)
    rewards = np.zeros(n)
    for j in range(n_steps):
        before = state.mtm.copy()
        state.draw_fill_variates(rng)
        bid, ask = policy.quotes(j * config.dt, state.q, state.s)
        market_step(state, bid, ask, m, rng, fills_drawn=True)
        last = state.q if j == n_steps - 1 else None
        rewards += step_reward_b(state.mtm - before, state.q, config.dt, market, problem, terminal_q=last)
    return state, rewards


@pytest.mark.parametrize("tick", [0.0, 0.1])
def test_a_driver_of_market_step_reproduces_the_simulator(glft_market, tick):
    """Oracle: simulate_chunk with the same seed (bit for bit: same draws, same arithmetic). With
    tick 0 the simulator takes its fused kernel for the table, so this also checks the twin."""
    market = glft_market.replace(tick=tick)
    problem = ProblemParams(gamma=0.01, T=30.0, q_max=5, objective="B", terminal_penalty=0.05)
    config = SimConfig(dt=0.5)
    policy = make_strategy("optimal", market, problem)
    ref = simulate_chunk(policy, market, problem, config, 400, np.random.SeedSequence(11))
    state, rewards = _drive(policy, market, problem, config, 400, np.random.SeedSequence(11))
    np.testing.assert_array_equal(state.q, ref.q_final)
    np.testing.assert_array_equal(state.mtm - problem.terminal(state.q), ref.pnl)
    np.testing.assert_array_equal(state.q2 * config.dt, ref.q2_integral)
    # the rewards of an episode add up to its objective-B value (float tolerance: sums in another order)
    np.testing.assert_allclose(rewards, value_b(ref.pnl, ref.q2_integral, market, problem), rtol=0, atol=1e-9)


def test_the_fused_kernel_equals_market_step_across_row_blocks(glft_market):
    """More steps than one block of precomputed table rows: the fused path (table) and the generic
    path (the same table seen through quotes()) give identical numbers on every path."""
    problem = ProblemParams(gamma=0.01, T=float(ROWS_BLOCK + 300) * 0.01, q_max=4)
    table = make_strategy("optimal", glft_market, problem)

    class Wrapped:
        kind = "wrapped"

        def quotes(self, t, q, s, rng=None):
            return table.quotes(t, q, s)

    config = SimConfig(dt=0.01)
    fast = simulate_chunk(table, glft_market, problem, config, 64, np.random.SeedSequence(4))
    slow = simulate_chunk(Wrapped(), glft_market, problem, config, 64, np.random.SeedSequence(4))
    for name in ("pnl", "q_final", "trades", "max_drawdown", "q2_integral"):
        np.testing.assert_array_equal(getattr(fast, name), getattr(slow, name))
    assert fast.spread_steps == slow.spread_steps and fast.spread_total == pytest.approx(slow.spread_total, rel=1e-12)


def test_certainty_equivalent_against_a_direct_formula():
    """Oracle: -(1/g) ln mean exp(-g W) computed naively where it does not overflow, and the
    delta-method SE from its definition; the log-domain version stays finite where the naive one does not."""
    rng = np.random.default_rng(1)
    pnl = rng.normal(2.0, 3.0, 5000)
    g = 0.3
    ce, se = certainty_equivalent(pnl, g)
    w = np.exp(-g * pnl)
    assert ce == pytest.approx(-math.log(w.mean()) / g, rel=1e-12)
    assert se == pytest.approx(np.std(w / w.mean(), ddof=1) / math.sqrt(pnl.size) / g, rel=1e-12)
    big, _ = certainty_equivalent(pnl * 1e3, g)  # exp(-g W) overflows a double here
    assert math.isfinite(big)
    assert math.isnan(certainty_equivalent(pnl[:1], g)[1])


class _Recorder:
    """A policy reading the simulator's features: quotes a constant, records what it was given."""

    kind = "recorder"
    features = ("mid_return", "bid_offset_prev", "ask_offset_prev")

    def __init__(self) -> None:
        self.seen: list[dict[str, np.ndarray]] = []

    def quotes(self, t, q, s, rng=None, features=None):
        self.seen.append({k: v.copy() for k, v in features.items()})
        return np.full(q.shape, 1.23), np.full(q.shape, 2.5)


def test_the_simulator_passes_the_features_a_policy_reads(glft_market):
    """Oracles: the recorded mid path (its increments over sigma sqrt(dt); +/-1 in the binomial
    model) and the previous step's quotes rounded outward to the tick from the recorded mid
    (:func:`tick_offsets`), 0 where the inventory bound kept a side off."""
    market = glft_market.replace(tick=0.1)
    problem = ProblemParams(gamma=0.01, T=5.0, q_max=3)
    config = SimConfig(dt=0.5, price_model="binomial")
    pol = _Recorder()
    res = simulate_chunk(pol, market, problem, config, 50, np.random.SeedSequence(2), record=50)
    assert len(pol.seen) == 10
    sq = market.sigma * math.sqrt(config.dt)
    ds = np.diff(res.paths["s"], axis=1) / sq
    np.testing.assert_array_equal(pol.seen[0]["mid_return"], 0.0)
    for j in range(1, 10):
        np.testing.assert_allclose(pol.seen[j]["mid_return"], ds[:, j - 1], rtol=0, atol=1e-9)
        np.testing.assert_allclose(np.abs(pol.seen[j]["mid_return"]), 1.0, rtol=0, atol=1e-9)  # binomial: +/-1
    s_prev = res.paths["s"][:, 3]
    q_prev = res.paths["q"][:, 3]
    db, da = tick_offsets(s_prev, np.full(50, 1.23), np.full(50, 2.5), 0.1)
    expected_b = np.where(q_prev + 1 > 3, 0.0, db)  # not quoted at the bound: reported as 0
    np.testing.assert_allclose(pol.seen[4]["bid_offset_prev"], expected_b, rtol=0, atol=1e-12)
    np.testing.assert_allclose(pol.seen[4]["ask_offset_prev"], np.where(q_prev - 1 < -3, 0.0, da), rtol=0, atol=1e-12)


def test_a_policy_reading_features_the_simulator_lacks_is_refused(glft_market):
    class BookReader:
        kind = "book_reader"
        features = ("spread", "imbalance")

        def quotes(self, t, q, s, rng=None, features=None):
            raise AssertionError("never called")

    class Typo:
        kind = "typo"
        features = ("mid_retrun",)

        def quotes(self, t, q, s, rng=None, features=None):
            raise AssertionError("never called")

    problem = ProblemParams(T=5.0, q_max=3)
    with pytest.raises(ValueError, match=r"reads feature\(s\) \['spread', 'imbalance'\] that the Monte Carlo "
                                         r"simulator does not provide \(it provides \['ask_offset_prev'"):
        simulate_chunk(BookReader(), glft_market, problem, SimConfig(dt=0.5), 10, 0)
    with pytest.raises(ValueError, match=r"unknown feature\(s\) \['mid_retrun'\]"):
        simulate_chunk(Typo(), glft_market, problem, SimConfig(dt=0.5), 10, 0)


def test_backtest_does_not_round_a_tick_grid_policy_twice(glft_market):
    """The rule lives in the simulator: backtesting a pi policy in a market with a tick gives the
    numbers of the same market without one, and reports the market it simulated; a continuous-time
    policy is still rounded."""
    market = glft_market.replace(tick=0.5)
    problem = ProblemParams(gamma=0.01, T=20.0, q_max=4, objective="B")
    pi = solve(market, problem, method="pi", n_steps=40).policy()
    assert pi.solved_for is not None and pi.solved_for["dt"] == 0.5
    config = SimConfig(dt=0.5, n_paths=2000, seed=3)
    with_tick = backtest(pi, market, problem, config)
    without = backtest(pi, market.replace(tick=0.0), problem, config)
    assert with_tick.metrics == without.metrics and with_tick.market.tick == 0.0
    cont = ClosedFormPolicy("constant", market, problem, half_spread=1.23)
    assert backtest(cont, market, problem, config).metrics["spread_mean"] > 2 * 1.23  # rounded outward


def test_a_table_knows_whether_it_is_on_a_tick_grid(glft_market):
    """The field, not the solver's name, decides; it survives a save and load."""
    problem = ProblemParams(gamma=0.01, T=20.0, q_max=4, objective="B")
    exact = make_strategy("optimal", glft_market, problem)
    assert exact.solved_for is None and exact.interpolation == "linear"
    renamed = TablePolicy(exact.times, exact.q_grid, exact.bid, exact.ask, exact.bid_on, exact.ask_on,
                          exact.market, exact.problem, {"solver": "pi"}, "linear", None)
    assert renamed.solved_for is None  # provenance is not read
    with pytest.raises(ValueError, match=r"TablePolicy\.solved_for must be a dict or None"):
        TablePolicy(exact.times, exact.q_grid, exact.bid, exact.ask, exact.bid_on, exact.ask_on, solved_for=[1])


def test_simulator_memory_does_not_grow_with_steps_times_levels(glft_market, glft_problem):
    """60,000 steps x 61 inventory levels: precomputing every row at once held ~8 arrays of
    60,000 x 61 doubles (~230 MB, the 2.2 GB of ``--dt 0.001`` in the hardening issue); rows built
    in blocks of ROWS_BLOCK steps keep the simulator's own allocations to a few MB (bound: 30 MB,
    ~1/8 of the old footprint, far above the blocked one). tracemalloc sees numpy's buffers."""
    import tracemalloc

    table = make_strategy("optimal", glft_market, glft_problem)
    tracemalloc.start()
    try:
        simulate_chunk(table, glft_market, glft_problem, SimConfig(dt=0.01), 10, np.random.SeedSequence(0))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 30e6, f"simulator peak {peak / 1e6:.0f} MB"


@pytest.mark.parametrize(("tick", "fill_model", "price_model", "drift", "trade_size"), [
    (0.0, "poisson", "gaussian", 0.0, 1.0), (0.1, "linear", "binomial", 0.02, 1.0),
    (0.05, "poisson", "binomial", 0.0, 2.0), (0.0, "linear", "gaussian", -0.01, 2.0),
])
def test_the_compiled_market_step_equals_its_numpy_twin(glft_market, tick, fill_model, price_model, drift,
                                                        trade_size):
    """Oracle: market_step_numpy, the whole-array version of the same step. 30 steps of 500 paths
    from random states near the inventory bounds, with per-path quotes (some inf) and scalar quotes:
    every state array bit for bit, spreads too."""
    market = glft_market.replace(tick=tick, drift=drift, trade_size=trade_size)
    problem = ProblemParams(T=30.0, q_max=3 * trade_size)
    m = StepModel.of(market, problem, SimConfig(dt=1.0, fill_model=fill_model, price_model=price_model))
    states = [PathState(500, 100.0, 0.0) for _ in range(2)]
    rngs = [np.random.default_rng(3), np.random.default_rng(3)]
    quotes = np.random.default_rng(9)
    for j in range(30):
        bid = quotes.uniform(0.0, 6.0, 500)
        bid[quotes.random(500) < 0.1] = np.inf
        ask = 2.5 if j % 3 == 0 else quotes.uniform(0.0, 6.0, 500)
        a = market_step(states[0], bid, ask, m, rngs[0])
        b = market_step_numpy(states[1], bid, ask, m, rngs[1])
        assert a == b
    for name in ("s", "q", "mtm", "trades", "peak", "mdd", "q2", "ds", "bid_offset", "ask_offset",
                 "bid_filled", "ask_filled"):
        np.testing.assert_array_equal(getattr(states[0], name), getattr(states[1], name), err_msg=name)
    assert np.abs(states[0].q).max() == 3 * trade_size  # the bounds were reached
    with pytest.raises(ValueError, match=r"market_step: bid offsets have shape \(3,\), expected \(500,\)"):
        market_step(states[0], np.ones(3), 1.0, m, rngs[0])
