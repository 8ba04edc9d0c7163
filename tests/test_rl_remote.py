"""RLlib across workers: PPO and SAC (its numpy replay, :class:`~mmray.tuning.rl_replay.FastReplaySAC`)
sampling on a remote env runner, a Ray actor in its own process, instead of the driver's local runner.
The weights go out to the runner after every update and the episodes come back to the driver: both
train, count the runner's steps, and the same seed gives the same learning curve and the same exported
policy, run after run."""

from __future__ import annotations

import numpy as np
import pytest

from mmray import ProblemParams, load_policy
from mmray.envs import EnvConfig
from mmray.tuning.rl import PPOTrainConfig, SACTrainConfig, train
from mmray.tuning.rl_eval import OptimalityBenchmark

pytestmark = pytest.mark.ray

ENV = EnvConfig(problem=ProblemParams(gamma=0.01, T=30.0, q_max=5, objective="B"), dt=0.5)
PPO = PPOTrainConfig(env=ENV, iterations=2, hidden=(16, 16), num_env_runners=1, num_envs_per_env_runner=16,
                     rollout_fragment_length=30, minibatch_size=240, num_epochs=1, seed=5)
SAC = SACTrainConfig(env=ENV, iterations=3, hidden=(16, 16), num_env_runners=1, num_envs_per_env_runner=8,
                     rollout_fragment_length=8, train_batch_size=64, learning_starts=64, replay_capacity=10_000,
                     seed=2)


@pytest.fixture(scope="module")
def bench():
    return OptimalityBenchmark.build(ENV)


def _learning(history: list[dict]) -> list[dict]:
    """The curve rows without their wall times."""
    return [{k: v for k, v in row.items() if k != "wall_s"} for row in history]


@pytest.mark.parametrize("config", [PPO, SAC], ids=["ppo", "sac-numpy-replay"])
def test_training_on_a_remote_env_runner_is_reproducible(ray_session, bench, tmp_path, config):
    a = train(config, tmp_path / "a", benchmark=bench, progress=False)
    b = train(config, tmp_path / "b", benchmark=bench, progress=False)
    # every step came from the one remote runner: iterations x envs x fragment (SAC: its replay ratio)
    per_iteration = config.num_envs_per_env_runner * config.rollout_fragment_length
    assert a.iterations == config.iterations and a.env_steps >= config.iterations * per_iteration
    assert np.isfinite(a.figures.gap_closed)
    assert _learning(a.history) == _learning(b.history) and a.env_steps == b.env_steps
    np.testing.assert_array_equal(load_policy(a.policy).weights, load_policy(b.policy).weights)
