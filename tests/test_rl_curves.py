"""Learning curves: the CSV round trip, the milestones, and the figure (with Monte Carlo bands)."""

from __future__ import annotations

import math

import numpy as np

from mmray.tuning.rl_curves import COLUMNS, curves_figure, milestones, plot_curves, read_csv, write_csv


def _rows(method: str = "exact") -> list[dict]:
    rows = []
    for i, gap in enumerate([math.nan, -0.4, 0.3, 0.6, math.nan, 0.85, 0.93, 0.96], start=1):
        row = {"iteration": i, "env_steps": 1000 * i, "wall_s": 2.5 * i, "episode_return_mean": 100.0 + i}
        if math.isfinite(gap):
            row |= {"agent_value": 10.0 + 2.0 * gap, "agent_value_se": 0.0 if method == "exact" else 0.1,
                    "reference_value": 12.0, "baseline_value": 10.0, "exact_policy_value": 11.8,
                    "optimality_ratio": (10.0 + 2.0 * gap) / 12.0, "optimality_ratio_se": 0.0 if method == "exact"
                    else 0.004, "gap_closed": gap, "gap_closed_se": 0.0 if method == "exact" else 0.02,
                    "eval_method": method, "best": 1}
        rows.append(row)
    return rows


def test_csv_round_trip(tmp_path):
    rows = _rows("monte_carlo")
    write_csv(rows, tmp_path / "c.csv")
    back = read_csv(tmp_path / "c.csv")
    assert list(back[0]) == list(COLUMNS) and len(back) == len(rows)
    for a, b in zip(rows, back, strict=True):
        for key in COLUMNS:
            if key == "eval_method":
                assert b[key] == a.get(key)
            elif key in a:
                assert b[key] == a[key]
            else:
                assert (b[key] == 0) if key == "best" else math.isnan(b[key])


def test_milestones_are_the_first_evaluations_reaching_each_level():
    got = milestones(_rows())
    assert got["0.5"] == {"iteration": 4, "env_steps": 4000, "wall_s": 10.0}
    assert got["0.8"]["iteration"] == 6 and got["0.9"]["iteration"] == 7 and got["0.95"]["iteration"] == 8
    assert milestones(_rows(), (0.99,)) == {"0.99": None}


def test_the_figure_draws_every_series(tmp_path):
    fig = curves_figure(_rows("monte_carlo"), reward_scale=0.1, title="t")
    axes = fig.axes
    assert len(axes) == 6
    value_lines = axes[0].get_lines()
    agent = next(ln for ln in value_lines if ln.get_label() == "agent value_B (deterministic)")
    np.testing.assert_allclose(agent.get_ydata(), [10 + 2 * g for g in (-0.4, 0.3, 0.6, 0.85, 0.93, 0.96)])
    assert any(c.get_label().startswith("95% CI") for c in axes[4].collections)  # Monte Carlo band on the gap
    path = plot_curves(_rows(), tmp_path / "c.png")
    assert path.stat().st_size > 10_000


def test_the_quotes_figure_draws_each_policy_on_the_inventory_grid(tmp_path):
    from mmray import ClosedFormPolicy, ProblemParams
    from mmray.envs import EnvConfig
    from mmray.tuning.rl_curves import plot_quotes, quotes_figure

    env = EnvConfig(problem=ProblemParams(gamma=0.05, T=30.0, q_max=5, objective="B"), dt=0.5)
    skew = ClosedFormPolicy("inventory", env.market, env.problem)
    flat = ClosedFormPolicy("constant", env.market, env.problem, half_spread=3.0)
    fig = quotes_figure({"skew": skew, "flat": flat}, env)
    assert len(fig.axes) == 3
    lines = {ln.get_label(): ln for ln in fig.axes[0].get_lines()}
    bid = lines["skew: bid"].get_ydata()
    np.testing.assert_allclose(bid[:-1], skew.quotes(0.0, np.arange(-5.0, 5.0))[0])
    assert np.isnan(bid[-1]) and np.isnan(lines["flat: ask"].get_ydata()[0])  # sides the bound forbids
    assert plot_quotes({"flat": flat}, env, tmp_path / "q.png").stat().st_size > 5_000
