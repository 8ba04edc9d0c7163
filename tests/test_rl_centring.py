"""Reward centring of RL runs (``TrainConfig.centre_rewards``): the env's reward offset becomes the
benchmark's best-constant value per step, which moves every return by the same amount."""

from __future__ import annotations

import numpy as np
import pytest

from mmray.envs import EnvConfig, MarketMakingVectorEnv
from mmray.params import ProblemParams
from mmray.tuning.rl import PPOTrainConfig, SACTrainConfig, centred
from mmray.tuning.rl_eval import OptimalityBenchmark

SMALL = EnvConfig(problem=ProblemParams(gamma=0.05, T=30.0, q_max=5, objective="B"), dt=0.5, reward="expected")


@pytest.fixture(scope="module")
def bench():
    return OptimalityBenchmark.build(SMALL)


@pytest.mark.parametrize("cls", [PPOTrainConfig, SACTrainConfig])
def test_centring_sets_the_offset_to_the_best_constant_value_per_step(bench, cls):
    config = cls(env=SMALL, iterations=1)
    out = centred(config, bench)
    assert out.env.reward_offset == pytest.approx(bench.baseline_value / SMALL.n_steps, rel=1e-15)
    assert out.env.replace(reward_offset=0.0) == SMALL  # nothing else changes
    assert centred(config.replace(centre_rewards=False), bench) is not None
    assert centred(config.replace(centre_rewards=False), bench).env.reward_offset == 0.0
    own = config.replace(env=SMALL.replace(reward_offset=0.5))
    assert centred(own, bench).env.reward_offset == 0.5  # an offset of the env's own is kept


def test_under_the_best_constant_the_centred_return_is_zero_on_average(bench):
    """Oracle: the best constant's exact value (the benchmark's baseline_value). Its centred return,
    averaged over 2,000 paths of the 'expected' reward (standard deviation of order 1 here), is 0 within
    4 standard errors."""
    env_config = centred(PPOTrainConfig(env=SMALL, iterations=1), bench).env
    env = MarketMakingVectorEnv(2000, env_config)
    env.reset(seed=1)
    h = bench.baseline_half_spread
    act = np.tile(env_config.action_spec().action_of(h, h), (2000, 1))
    total = sum(env.step(act)[1] for _ in range(SMALL.n_steps)) * SMALL.reward_scale
    assert abs(total.mean()) < 4 * total.std(ddof=1) / np.sqrt(total.size) + 1e-5  # + float32 action rounding


def test_centre_rewards_must_be_a_flag():
    with pytest.raises(ValueError, match=r"PPOTrainConfig\.centre_rewards"):
        PPOTrainConfig(env=SMALL, iterations=1, centre_rewards="yes")
