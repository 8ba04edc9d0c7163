"""Distributed Monte Carlo: identical numbers without Ray, on 1 Ray worker, on 2."""

from __future__ import annotations

import numpy as np
import pytest

from mmray import SimConfig, backtest, make_strategy
from mmray.distributed import chunk_plan

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def ray_session():
    import ray
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


def test_chunk_plan_covers_paths_with_independent_seeds():
    plan = chunk_plan(1000, 300, seed=9)
    assert [n for n, _ in plan] == [300, 300, 300, 100]
    states = {tuple(s.generate_state(4)) for _, s in plan}
    assert len(states) == 4  # distinct streams
    assert [tuple(s.generate_state(4)) for _, s in chunk_plan(1000, 300, seed=9)] == [
        tuple(s.generate_state(4)) for _, s in plan
    ]


def test_results_identical_local_one_worker_two_workers(ray_session, glft_market, glft_problem):
    problem = glft_problem.replace(T=60.0)
    policy = make_strategy("optimal", glft_market, problem)
    config = SimConfig(dt=0.5, n_paths=6000, chunk_size=1000, seed=123)
    local = backtest(policy, glft_market, problem, config, use_ray=False)
    one = backtest(policy, glft_market, problem, config, use_ray=True, task_cpus=2.0)  # one task at a time
    two = backtest(policy, glft_market, problem, config, use_ray=True, task_cpus=1.0)  # two at a time
    for other in (one, two):
        assert other.metrics == local.metrics  # bit for bit, not approximately
        for key, arr in local.per_path.items():
            np.testing.assert_array_equal(other.per_path[key], arr)
    assert two.info["n_chunks"] == 6 and two.info["ray"]
