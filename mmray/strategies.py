"""Build a policy by strategy name: the closed forms and ``optimal`` (the exact solution)."""

from __future__ import annotations

from mmray.params import MarketParams, ProblemParams
from mmray.policy import CLOSED_FORMS, ClosedFormPolicy, Policy

STRATEGIES = ("optimal", *CLOSED_FORMS)


def make_strategy(
    name: str,
    market: MarketParams,
    problem: ProblemParams,
    half_spread: float | None = None,
    skew: float | None = None,
    n_times: int | None = None,
) -> Policy:
    """Policy for strategy ``name``.

    ``optimal`` solves the model exactly (:func:`mmray.solvers.exact.solve_exact`) on
    ``n_times`` equally spaced time points (default: the solver's, 1001) and needs a bounded inventory. The
    others are :class:`mmray.policy.ClosedFormPolicy`; ``half_spread`` and ``skew`` apply to
    ``constant`` and ``inventory``.
    """
    if name == "optimal":
        from mmray.solvers.exact import solve_exact

        if problem.q_max is None:
            raise ValueError("strategy 'optimal' needs a bounded inventory: set q_max")
        grid = {"n_times": n_times} if n_times else {}  # else the solver's default
        return solve_exact(market, problem, **grid).policy()
    if name not in CLOSED_FORMS:
        raise ValueError(f"unknown strategy {name!r}; choose from {', '.join(STRATEGIES)}")
    return ClosedFormPolicy(name, market, problem, half_spread, skew, {"strategy": name})
