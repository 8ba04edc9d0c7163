"""Shared fixtures: the GLFT 2013 figure parameters and the AS 2008 experiment."""

from __future__ import annotations

import os

import pytest

from mmray.params import MarketParams, ProblemParams

os.environ.setdefault("RAY_AUTH_MODE", "token")


@pytest.fixture
def glft_market() -> MarketParams:
    """GLFT 2013 figure parameters: sigma=0.3, A=0.9, k=0.3 (Delta=1)."""
    return MarketParams(sigma=0.3, A=0.9, k=0.3)


@pytest.fixture
def glft_problem() -> ProblemParams:
    """GLFT 2013 figure parameters: gamma=0.01, T=600, Q=30, objective A."""
    return ProblemParams(gamma=0.01, T=600.0, q_max=30, objective="A")


@pytest.fixture
def as_market() -> MarketParams:
    """AS 2008 §3.3: s=100, sigma=2, A=140, k=1.5."""
    return MarketParams(sigma=2.0, A=140.0, k=1.5, s0=100.0)


@pytest.fixture(scope="module")
def ray_session():
    """One quiet local Ray session per test module (2 CPUs, no dashboard; Ray Data without progress
    bars), shut down after the module; yields the ``ray`` module."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()
