"""Solvers of the market-making problem; each returns a :class:`Solution`.

``solve(market, problem, method="exact", **options)`` dispatches to:

* ``exact`` - matrix exponential (:mod:`mmray.solvers.exact`), exponential intensities.
"""

from __future__ import annotations

from typing import Any

from mmray.solvers.exact import solve_exact, stationary_quotes
from mmray.solvers.result import Solution

from mmray.params import MarketParams, ProblemParams

METHODS = ("exact",)


def solve(market: MarketParams, problem: ProblemParams, method: str = "exact", **options: Any) -> Solution:
    """Solve the problem with ``method`` (one of :data:`METHODS`)."""
    if method == "exact":
        return solve_exact(market, problem, **options)
    raise ValueError(f"unknown solver method {method!r}; choose from {', '.join(METHODS)}")


__all__ = ["METHODS", "Solution", "solve", "solve_exact", "stationary_quotes"]
