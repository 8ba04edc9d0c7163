"""Quote grids chosen from the model (mmray.solvers.grids) and what `mmray solve` does with them."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

from mmray.cli import main
from mmray.params import MarketParams, ProblemParams
from mmray.solvers import solve
from mmray.solvers.grids import discrete_myopic_quote, fine_tick, model_grid, round_tick

MARKET = MarketParams(sigma=0.3, A=0.9, k=0.3)


def test_round_ticks() -> None:
    assert [round_tick(x) for x in (0.22, 0.25, 0.3, 0.999, 7.0)] == [0.2, 0.25, 0.25, 0.5, 5.0]
    assert [round_tick(x, up=True) for x in (0.22, 0.25, 0.3, 1.01)] == [0.25, 0.25, 0.5, 2.0]
    assert fine_tick(MARKET, ProblemParams(gamma=0.01, q_max=30)) == 0.2  # delta~ = 3.31, /15 = 0.22
    with pytest.raises(ValueError, match="a tick size must be a finite number > 0"):
        round_tick(0.0)


def test_discrete_myopic_quote() -> None:
    """argmax delta * p(delta): 1/k where fills do not saturate (linear fills: exactly 1/k while
    A dt e^(-k/k) < 1; Poisson fills as A dt -> 0), wider when the fill probability saturates."""
    assert discrete_myopic_quote(MARKET, 1.0, "linear") == pytest.approx(1 / MARKET.k, rel=1e-6)
    assert discrete_myopic_quote(MARKET, 1e-4, "poisson") == pytest.approx(1 / MARKET.k, rel=1e-3)
    # Poisson, A dt = 0.9: d/dd [d (1 - exp(-c e^(-k d)))] = 0 solved independently by bisection
    c, k = MARKET.A * 1.0, MARKET.k

    def slope(d: float) -> float:
        r = c * math.exp(-k * d)
        return (1 - math.exp(-r)) - d * k * r * math.exp(-r)

    lo, hi = 1.0, 20.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if slope(mid) > 0 else (lo, mid)
    assert discrete_myopic_quote(MARKET, 1.0, "poisson") == pytest.approx(lo, abs=1e-6) and lo > 3.8


@pytest.mark.parametrize("gamma", [0.001, 0.01, 0.1])
def test_model_grid_covers_the_optimum(gamma: float) -> None:
    """The grid spans every quote of the continuous-time optimum; policy iteration on it (at dt = 1)
    puts few quotes at its edges, where the 15-level default grid around delta~ clips most of them."""
    problem = ProblemParams(gamma=gamma, T=60.0, q_max=10)
    tick, levels = model_grid(MARKET, problem, tick=0.1, dt=1.0)
    assert tick == 0.1 and np.all(np.diff(levels) == 1)
    exact = solve(MARKET, problem, "exact")
    quoted = np.concatenate([exact.bid[np.isfinite(exact.bid)], exact.ask[np.isfinite(exact.ask)]])
    assert levels[0] * tick < quoted.min() and quoted.max() < levels[-1] * tick
    wide = solve(MARKET, problem, "pi", dt=1.0, tick=tick, levels=levels)
    assert wide.info["grid_edge_share"] < 0.1
    narrow = solve(MARKET, problem, "pi", dt=1.0, tick=tick, n_levels=15)
    assert narrow.info["grid_edge_share"] > 0.3
    assert wide.info["value_q0"] > narrow.info["value_q0"]  # the wider grid contains the narrow one's quotes
    coarse_tick, coarse = model_grid(MARKET, problem, max_levels=20)  # no tick given: a round one, <= 20 levels
    assert coarse.size <= 20 and coarse_tick == round_tick(coarse_tick)


@pytest.mark.parametrize("method", ["pi", "csp"])
def test_solve_chooses_the_grid_from_the_model_and_warns_at_the_edge(
        method: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`mmray solve --method pi --solver-tick 0.1 --dt 1` (the README's command, smaller; csp too): the quote
    levels come from the model unless --n-levels/--min-level are given, and a grid that clips the optimum
    is named on the console."""
    from mmray.cli.solve import GRID_EDGE_WARNING

    base = ["solve", "--method", method, "--objective", "B", "--T", "60", "--q-max", "10", "--solver-tick", "0.1",
            "--dt", "1", "--json"] + (["--no-constraint-costs"] if method == "csp" else [])
    assert main(base) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert "quote grid from the model: tick 0.1, offsets" in captured.err and "warning" not in captured.err
    levels = out["info"]["grid"]["levels"]
    assert len(levels) > 15 and levels == list(range(levels[0], levels[-1] + 1))
    if method == "pi":
        assert out["info"]["grid_edge_share"] < GRID_EDGE_WARNING
    assert main([*base, "--n-levels", "15"]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert len(out["info"]["grid"]["levels"]) == 15 and "quote grid from the model" not in captured.err
    found = re.search(r"warning: (\d+)% of the quoted sides are at the first or last level of the quote grid "
                      r"\(grid_edge_share ([0-9.]+)\): the grid truncates the optimum", captured.err)
    assert found and float(found.group(2)) > 0.3, captured.err
    if method == "pi":
        assert float(found.group(2)) == pytest.approx(out["info"]["grid_edge_share"], abs=0.005)


def test_grid_edge_share_read_off_the_tables_agrees_with_pi() -> None:
    from mmray.cli.solve import grid_edge_share

    problem = ProblemParams(gamma=0.01, T=60.0, q_max=10)
    sol = solve(MARKET, problem, "pi", dt=1.0, tick=0.1, n_levels=15)
    own = sol.info.pop("grid_edge_share")
    assert grid_edge_share(sol) == pytest.approx(own, rel=1e-12) and own > 0.3
