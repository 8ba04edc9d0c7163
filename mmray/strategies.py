"""Build a policy by strategy name.

Names come from the strategy registry (:data:`mmray.registry.STRATEGIES`): the closed forms of
:class:`mmray.policy.ClosedFormPolicy` are registered here, and ``optimal`` (the continuous-time
exact solution of the model, from :mod:`mmray.solvers`) is declared as an entry point of the
``mmray.strategies`` group in pyproject.toml, so this core module imports no solver. Third-party
strategies register the same way (see :mod:`mmray.registry`).
"""

from __future__ import annotations

import inspect
from typing import Any

from mmray.params import MarketParams, ProblemParams
from mmray.policy import CLOSED_FORMS, ClosedFormPolicy, Policy
from mmray.registry import STRATEGIES as REGISTRY


def _closed_form(name: str) -> Any:
    def build(market: MarketParams, problem: ProblemParams, half_spread: float | None = None,
              skew: float | None = None) -> Policy:
        return ClosedFormPolicy(name, market, problem, half_spread, skew, {"strategy": name})

    build.__doc__ = f"The closed-form strategy {name!r} (:class:`mmray.policy.ClosedFormPolicy`)."
    return build


for _name in CLOSED_FORMS:
    REGISTRY.register(_name, _closed_form(_name))


def strategy_names() -> tuple[str, ...]:
    """Every strategy name known now (entry points first: ``optimal``; then the closed forms)."""
    return REGISTRY.names()


STRATEGIES = strategy_names()


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
    ``n_times`` equally spaced time points (default: the solver's, 1001) and needs a bounded
    inventory: the continuous-time optimum (in a simulator stepping in ``dt`` it is a proxy; see
    docs/math.md). The closed forms are :class:`mmray.policy.ClosedFormPolicy`; ``half_spread``
    and ``skew`` apply to ``constant`` and ``inventory``. Options left ``None`` are not passed.
    """
    if name not in REGISTRY:
        raise ValueError(f"unknown strategy {name!r}; choose from {', '.join(strategy_names())}")
    build = REGISTRY.get(name)
    options = {k: v for k, v in (("half_spread", half_spread), ("skew", skew), ("n_times", n_times))
               if v is not None}
    params = inspect.signature(build).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        foreign = sorted(set(options) - set(params))
        if foreign:
            raise ValueError(f"strategy {name!r} does not take {foreign}")
    return build(market, problem, **options)
