"""Inventory scaling of RL runs (``TrainConfig.scale_inventory``): the env's observed inventory is divided
by the reference optimum's root mean square inventory (:func:`mmray.tuning.rl_eval.inventory_rms`)."""

from __future__ import annotations

import numpy as np
import pytest

from mmray.envs import EnvConfig
from mmray.model import fill_probability
from mmray.params import MarketParams, ProblemParams
from mmray.policy import ClosedFormPolicy
from mmray.tuning.rl import PPOTrainConfig, SACTrainConfig, scaled
from mmray.tuning.rl_eval import OptimalityBenchmark, inventory_rms, same_problem

SMALL = EnvConfig(problem=ProblemParams(gamma=0.05, T=30.0, q_max=5, objective="B"), dt=0.5, reward="expected")


@pytest.fixture(scope="module")
def bench():
    return OptimalityBenchmark.build(SMALL)


def test_inventory_rms_of_a_constant_spread_is_the_random_walk_closed_form():
    """Oracle: far from the bounds, a symmetric constant spread makes q a random walk with steps +-1 of
    probability p (1 - p) each (one side filled, not the other) per step, so E[q_j^2] = 2 j p (1 - p) and
    the RMS over j = 0..N is sqrt(2 p (1 - p) N / 2). Q = 200 puts the bounds 14 standard deviations away
    (their effect is below float precision); exact propagation, so the tolerance is rounding only."""
    market = MarketParams()
    env = EnvConfig(market=market, problem=ProblemParams(T=60.0, q_max=200, objective="B"), dt=1.0)
    h = 3.0
    policy = ClosedFormPolicy("constant", market, env.problem, half_spread=h)
    p = float(fill_probability(h, market, env.dt, env.fill_model))
    expected = np.sqrt(2 * p * (1 - p) * env.n_steps / 2)
    assert inventory_rms(policy, env) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("cls", [PPOTrainConfig, SACTrainConfig])
def test_scaling_sets_the_observed_inventory_scale_to_the_reference_rms(bench, cls):
    config = cls(env=SMALL, iterations=1)
    out = scaled(config, bench)
    assert out.env.inventory_scale == pytest.approx(inventory_rms(bench.reference, SMALL), rel=1e-15)
    assert 0.5 < out.env.inventory_scale < SMALL.problem.q_max  # a typical inventory, inside the bound
    assert out.env.replace(inventory_scale=None) == SMALL  # nothing else changes
    assert same_problem(out.env, SMALL)  # the benchmark and the figures are the same
    assert scaled(config.replace(scale_inventory=False), bench).env.inventory_scale is None
    own = config.replace(env=SMALL.replace(inventory_scale=2.0))
    assert scaled(own, bench).env.inventory_scale == 2.0  # a scale of the env's own is kept


def test_scale_inventory_must_be_a_flag():
    with pytest.raises(ValueError, match=r"PPOTrainConfig\.scale_inventory"):
        PPOTrainConfig(env=SMALL, iterations=1, scale_inventory=1.5)
