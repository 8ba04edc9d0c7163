"""Parameter validation: every bad value raises ValueError naming the field and the value."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mmray.params import MarketParams, ProblemParams, SimConfig, inventory_grid


@pytest.mark.parametrize(
    ("cls", "field", "value", "pattern"),
    [
        (MarketParams, "sigma", -0.1, r"MarketParams\.sigma must be a finite number > 0, got -0\.1"),
        (MarketParams, "A", 0.0, r"MarketParams\.A must be a finite number > 0, got 0\.0"),
        (MarketParams, "k", math.nan, r"MarketParams\.k must be a finite number > 0, got nan"),
        (MarketParams, "tick", -1.0, r"MarketParams\.tick must be a finite number >= 0, got -1\.0"),
        (MarketParams, "trade_size", "1", r"MarketParams\.trade_size must be a finite number > 0, got '1'"),
        (ProblemParams, "gamma", 0.0, r"ProblemParams\.gamma must be a finite number > 0, got 0\.0"),
        (ProblemParams, "T", math.inf, r"ProblemParams\.T must be a finite number > 0, got inf"),
        (ProblemParams, "q_max", 2.5, r"ProblemParams\.q_max must be a positive integer or None, got 2\.5"),
        (ProblemParams, "q_max", 0, r"ProblemParams\.q_max must be a positive integer"),
        (ProblemParams, "objective", "C", r"ProblemParams\.objective must be one of A, B; got 'C'"),
        (ProblemParams, "terminal_penalty", -1.0,
         r"ProblemParams\.terminal_penalty must be a finite number >= 0, got -1\.0"),
        (SimConfig, "dt", 0.0, r"SimConfig\.dt must be a finite number > 0, got 0\.0"),
        (SimConfig, "n_paths", 0, r"SimConfig\.n_paths must be an integer >= 1, got 0"),
        (SimConfig, "price_model", "levy", r"SimConfig\.price_model must be one of gaussian, binomial"),
        (SimConfig, "fill_model", "x", r"SimConfig\.fill_model must be one of linear, poisson"),
        (SimConfig, "seed", True, r"SimConfig\.seed must be an integer >= 0, got True"),
        (SimConfig, "chunk_size", 2.0, r"SimConfig\.chunk_size must be an integer >= 1, got 2\.0"),
        (SimConfig, "seed", -3, r"SimConfig\.seed must be an integer >= 0, got -3"),
    ],
)
def test_invalid_values_name_field_and_value(cls, field, value, pattern):
    with pytest.raises(ValueError, match=pattern):
        cls(**{field: value})


def test_params_are_frozen_and_round_trip():
    m = MarketParams(sigma=2, A=140, k=1.5)
    assert isinstance(m.sigma, float)
    with pytest.raises(AttributeError):
        m.sigma = 1.0  # type: ignore[misc]
    assert MarketParams.from_dict(m.to_dict()) == m
    p = ProblemParams(q_max=None, objective="B")
    assert ProblemParams.from_dict(p.to_dict()) == p
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['sigmaa'\]"):
        MarketParams.from_dict({"sigmaa": 1.0})


def test_dt_must_divide_horizon():
    assert SimConfig(dt=0.005).n_steps(1.0) == 200
    with pytest.raises(ValueError, match=r"SimConfig\.dt=0\.3 must divide the horizon T=1\.0"):
        SimConfig(dt=0.3).n_steps(1.0)


def test_inventory_grid_needs_multiple_of_trade_size():
    grid = inventory_grid(ProblemParams(q_max=4), MarketParams(trade_size=2.0))
    assert grid.tolist() == [-4.0, -2.0, 0.0, 2.0, 4.0]
    with pytest.raises(ValueError, match=r"multiple of MarketParams\.trade_size=3\.0"):
        inventory_grid(ProblemParams(q_max=4), MarketParams(trade_size=3.0))
    with pytest.raises(ValueError, match="q_max is None"):
        inventory_grid(ProblemParams(q_max=None), MarketParams())


def test_numpy_scalars_are_accepted_like_python_ones():
    assert ProblemParams(q_max=np.int64(5)).q_max == 5 and type(ProblemParams(q_max=np.int64(5)).q_max) is int
    assert ProblemParams(q_max=np.float64(5.0)).q_max == 5
    with pytest.raises(ValueError, match=r"ProblemParams\.q_max must be a positive integer or None, got np\.True_"):
        ProblemParams(q_max=np.bool_(True))
    assert SimConfig(n_paths=np.int64(10)).n_paths == 10


def test_initial_inventory_must_be_reachable_under_a_bound():
    market, problem = MarketParams(trade_size=2.0), ProblemParams(q_max=4)
    assert SimConfig(q0=-4.0, dt=0.5).check(market, ProblemParams(q_max=4, T=10.0)) == 20  # the step count
    with pytest.raises(ValueError, match=r"SimConfig\.q0=6\.0 is outside the inventory bound \[-4, 4\]"):
        SimConfig(q0=6.0).check(market, problem)
    with pytest.raises(ValueError, match=r"SimConfig\.q0=1\.0 must be a multiple of MarketParams\.trade_size=2\.0"):
        SimConfig(q0=1.0).check(market, problem)
    SimConfig(q0=0.5).check(market, ProblemParams(q_max=None))  # unbounded: any start
