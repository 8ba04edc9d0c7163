"""The ``optimal`` strategy of :func:`mmray.make_strategy`: the exact solution as a table policy.

Registered through the ``mmray.strategies`` entry point group (pyproject.toml), so that
:mod:`mmray.strategies` does not import a solver.
"""

from __future__ import annotations

from mmray.params import MarketParams, ProblemParams
from mmray.policy import TablePolicy
from mmray.solvers.exact import solve_exact


def optimal_strategy(market: MarketParams, problem: ProblemParams, n_times: int | None = None) -> TablePolicy:
    """The continuous-time exact solution (:func:`solve_exact`) on ``n_times`` equally spaced times
    (default: the solver's, 1001); needs a bounded inventory."""
    if problem.q_max is None:
        raise ValueError("strategy 'optimal' needs a bounded inventory: set q_max")
    grid = {"n_times": n_times} if n_times else {}  # else the solver's default
    return solve_exact(market, problem, **grid).policy()
