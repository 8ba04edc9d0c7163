"""benchmarks/env_throughput.py's parts that decide what its figures mean (timings are not tested): the
step counts of the vector envs, the ``--ppo`` variants, and the mbt_gym peer built at our model (when
mbt_gym is installed; it is an optional peer, not on PyPI)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mmray.envs import EnvConfig
from mmray.objectives import penalty_rate

ROOT = Path(__file__).resolve().parents[1]
SMALL = EnvConfig(problem={"T": 30.0, "q_max": 5, "objective": "B", "terminal_penalty": 0.01})


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("env_throughput", ROOT / "benchmarks" / "env_throughput.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_vector_env_steps_do_not_count_the_autoreset_step(bench):
    for batch in (bench.vector_env(SMALL, 4), bench.sync_vector_env(SMALL, 3)):
        counted = sum(batch() for _ in range(4))  # 40 step calls: 30 steps, the autoreset step, 9 steps
        n = 4 if counted % 4 == 0 else 3
        assert counted == 39 * n


def test_ppo_variants_parse_into_fields_and_config_sections(bench):
    import gymnasium as gym

    label, ppo, sections = bench.parse_variant(
        "wide:num_envs_per_env_runner=512,hidden=[32,32],env_runners.num_cpus_per_env_runner=0.5,"
        "env_runners.gym_env_vectorize_mode=sync,environment.normalize_actions=true")
    assert label == "wide"
    assert ppo == {"num_envs_per_env_runner": 512, "hidden": (32, 32)}
    assert sections == {"env_runners": {"num_cpus_per_env_runner": 0.5,
                                        "gym_env_vectorize_mode": gym.VectorizeMode.SYNC},
                        "environment": {"normalize_actions": True}}
    assert bench.parse_variant("minibatch_size=8192")[0] == "minibatch_size=8192"
    for text, match in (("bogus=1", "'bogus': not a PPOTrainConfig field"),
                        ("x:learner.lr=1", "'learner.lr': section must be one of"),
                        ("x:num_epochs", "'num_epochs': expected KEY=VALUE"),
                        ("env_runners.gym_env_vectorize_mode=fast", "not a gymnasium.VectorizeMode")):
        with pytest.raises(ValueError, match=match):
            bench.parse_variant(text)


def test_a_bad_ppo_variant_exits_2_naming_it():
    out = subprocess.run([sys.executable, "benchmarks/env_throughput.py", "--ppo", "x:bogus=1"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "--ppo: 'bogus': not a PPOTrainConfig field" in out.stderr


def test_mbt_gym_is_built_at_our_model_with_objective_b_rewards(bench):
    pytest.importorskip("mbt_gym", reason="optional benchmark peer (installed from its repository)")
    m, p = SMALL.market, SMALL.problem
    env = bench.mbt_gym_env(SMALL, 8)
    dyn = env.model_dynamics
    np.testing.assert_array_equal(dyn.arrival_model.intensity, [m.A, m.A])
    assert dyn.fill_probability_model.fill_exponent == m.k and dyn.midprice_model.volatility == m.sigma
    assert env.step_size == SMALL.dt and env.n_steps == SMALL.n_steps and env.max_inventory == p.q_max
    env.reset()
    total, q2, steps = np.zeros(8), np.zeros(8), 0
    start = env.state.copy()
    while True:
        _, reward, dones, _ = env.step(np.zeros((8, 2)))  # depth 5: the middle of [0, offset_high]
        total += reward
        q2 += env.state[:, 1] ** 2
        steps += 1
        if dones[0]:
            break
    end = env.state
    assert steps == SMALL.n_steps and np.any(end[:, 1] != 0)  # fills happened
    wealth = (end[:, 0] + end[:, 1] * end[:, 3]) - (start[:, 0] + start[:, 1] * start[:, 3])
    expected = wealth - penalty_rate(m, p) * q2 * SMALL.dt - p.terminal(end[:, 1])  # objective B, as our reward
    np.testing.assert_allclose(total, expected, rtol=1e-9, atol=1e-6)


def test_mbt_gym_refuses_a_model_it_cannot_represent(bench):
    pytest.importorskip("mbt_gym", reason="optional benchmark peer (installed from its repository)")
    with pytest.raises(ValueError, match="A dt <= 1"):
        bench.mbt_gym_env(SMALL.replace(dt=2.0), 2)
