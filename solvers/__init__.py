"""Solvers of the market-making problem; each returns a :class:`Solution`.

``solve(market, problem, method="exact", **options)`` dispatches to:

* ``exact`` - matrix exponential (:mod:`mmray.solvers.exact`), exponential intensities;
* ``fd`` - finite differences of the HJB system for any intensity (:mod:`mmray.solvers.fd`);
* ``pi`` - backward induction / policy iteration of the simulator's tick-grid problem
  (:mod:`mmray.solvers.pi`);
* ``csp`` - constrained problem as an occupation-measure LP with OR-Tools (:mod:`mmray.solvers.csp`).

See ``docs/solvers.md`` for when to use which.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from mmray.params import MarketParams, ProblemParams
from mmray.solvers.constraints import Constraints
from mmray.solvers.csp import ConstrainedSolution, InfeasibleConstraints, csp_settings, solve_csp
from mmray.solvers.discrete import TickGrid
from mmray.solvers.exact import exact_settings, solve_exact, stationary_quotes
from mmray.solvers.fd import fd_settings, solve_fd
from mmray.solvers.intensity import CustomIntensity, Exponential, Intensity, Logistic, PowerLaw
from mmray.solvers.pi import pi_settings, solve_pi
from mmray.solvers.random_policy import RandomTablePolicy
from mmray.solvers.result import Solution

METHODS = ("exact", "fd", "pi", "csp")

_SOLVERS: dict[str, Callable[..., Solution]] = {
    "exact": solve_exact, "fd": solve_fd, "pi": solve_pi, "csp": solve_csp,
}


def method_options(method: str) -> tuple[str, ...]:
    """Names of the keyword options that solver ``method`` takes (``ValueError`` for an unknown method)."""
    if method not in _SOLVERS:
        raise ValueError(f"unknown solver method {method!r}; choose from {', '.join(METHODS)}")
    params = inspect.signature(_SOLVERS[method]).parameters.values()
    names = [p.name for p in params if p.name not in ("market", "problem") and p.kind != p.VAR_KEYWORD]
    if any(p.kind == p.VAR_KEYWORD for p in params):  # pi, csp: the TickGrid fields as keywords
        names += TickGrid.field_names()
    return tuple(names)


def _check_names(method: str, options: dict[str, Any]) -> None:
    accepted = method_options(method)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"solver {method!r} does not take option(s) {unknown}; it takes {list(accepted)}")


def solve(market: MarketParams, problem: ProblemParams, method: str = "exact", **options: Any) -> Solution:
    """Solve the problem with ``method`` (one of :data:`METHODS`); ``options`` go to that solver.

    Raises ``ValueError`` for an unknown method or an option the method does not take.
    """
    _check_names(method, options)
    return _SOLVERS[method](market, problem, **options)


def check_options(market: MarketParams, problem: ProblemParams, method: str = "exact", **options: Any) -> None:
    """Raise the ``ValueError`` that ``solve(market, problem, method, **options)`` would raise for an
    option (its name or value), without solving: the solver's own checks, with its defaults."""
    _check_names(method, options)
    bound = inspect.signature(_SOLVERS[method]).bind(market, problem, **options)
    bound.apply_defaults()
    _SETTINGS[method](**bound.arguments)


_SETTINGS: dict[str, Callable[..., Any]] = {
    "exact": exact_settings, "fd": fd_settings, "pi": pi_settings, "csp": csp_settings,
}


__all__ = [
    "METHODS", "ConstrainedSolution", "Constraints", "CustomIntensity", "Exponential", "InfeasibleConstraints",
    "Intensity", "Logistic", "PowerLaw", "RandomTablePolicy", "Solution", "TickGrid", "check_options",
    "method_options", "solve",
    "solve_csp", "solve_exact", "solve_fd", "solve_pi", "stationary_quotes",
]
