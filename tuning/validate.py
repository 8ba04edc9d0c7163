"""Load-time checks of the trials a sweep will run: no Ray, no solving, no simulation.

A sweep file can be well formed field by field and still describe trials that can only fail:
``dt`` values that do not divide ``T``, a solver option value its solver refuses, an inventory
bound whose solve needs hundreds of gigabytes. On a cluster each such trial fails, is retried
``max_failures`` times and is reported as an error at the end. :func:`trial_problem` runs, for
one trial's parameters, everything a trial checks before its first Monte Carlo path: the
parameter objects (:func:`mmray.tuning.trainables.trial_setup`), the simulation's step count
and start inventory, the solver's option values, and the closed-form strategies' options.
:mod:`mmray.tuning.config` calls it for every grid value, every range bound and every grid
combination (up to :data:`MAX_COMBINATIONS`).

The solver checks mirror each solver's own argument checks (with the same messages); they
never run a solve.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from mmray.params import MarketParams, ProblemParams, inventory_grid

#: most inventory levels ``2 q_max / trade_size + 1`` the ``optimal`` strategy may have in a sweep:
#: the exact solver works with dense (levels x levels) matrices (2001 levels: 32 MB each, ~20 s per
#: solve on one core; 200,001 levels would need ~320 GB each), the others with per-level tables
MAX_INVENTORY_LEVELS = 2001
#: grid combinations checked at load time (a larger grid has its values checked one at a time only)
MAX_COMBINATIONS = 5000


def check_solver_options(method: str, options: Mapping[str, Any], market: MarketParams,
                         problem: ProblemParams) -> None:
    """Raise ``ValueError`` if ``solve(market, problem, method, **options)`` would refuse an option value.

    Option *names* are checked separately (:func:`mmray.solvers.method_options`).
    """
    from mmray.checks import choice, flag, integer, real

    opts = dict(options)
    if method == "exact":
        if opts.get("n_times") is not None:
            integer("exact option n_times", opts["n_times"], ge=2)
        if "rtol" in opts:
            real("exact option rtol", opts["rtol"], gt=0)
        if opts.get("times") is not None:
            _check_times(opts["times"], problem.T)
        return
    from mmray.solvers.discrete import TickGrid
    from mmray.solvers.fd import resolve_steps

    if method == "fd":
        from mmray.solvers.fd import ON_UNSTABLE, SCHEMES

        resolve_steps(problem.T, opts.get("n_steps"), opts.get("dt"), 1000, "fd")
        choice("fd option scheme", opts.get("scheme", "cn"), SCHEMES)
        choice("fd option on_unstable", opts.get("on_unstable", "raise"), ON_UNSTABLE)
        _check_intensity(opts.get("intensity"), market, "fd")
        real("fd option newton_tol", opts.get("newton_tol", 1e-12), gt=0, lt=1)
        integer("fd option max_newton", opts.get("max_newton", 50), ge=1)
        integer("fd option rannacher_steps", opts.get("rannacher_steps", 0), ge=0)
        return
    constraints = opts.get("constraints")
    if method == "pi":
        from mmray.solvers.pi import HORIZONS

        horizon = choice("pi option horizon", opts.get("horizon", "finite"), HORIZONS)
        if horizon != "finite" and problem.objective != "B":
            raise ValueError(f"pi horizon={horizon!r} needs objective B (risk-neutral with running penalty); "
                             f"got objective {problem.objective!r}")
        if horizon == "discounted":
            real("pi option discount_rate (horizon='discounted')", opts.get("discount_rate"), gt=0)
        elif opts.get("discount_rate") is not None:
            raise ValueError(f"pi option discount_rate applies to horizon='discounted' only (horizon={horizon!r})")
        integer("pi option max_iter", opts.get("max_iter", 100), ge=1)
        if constraints is not None and constraints.global_active():
            raise ValueError(f"pi handles per-state restrictions only; {', '.join(constraints.global_active())} "
                             "constrain the whole occupation measure: use method='csp'")
    elif method == "csp":
        from mmray.solvers.csp import FORMULATIONS, LP_SOLVERS, MILP_SOLVERS

        if problem.objective != "B":
            raise ValueError("csp needs objective B (risk-neutral with running penalty), which is linear in the "
                             f"occupation measure; got objective {problem.objective!r} (use method='pi' for "
                             "objective A)")
        choice("csp option formulation", opts.get("formulation", "dw"), FORMULATIONS)
        choice("csp option lp_solver", opts.get("lp_solver", "GLOP"), LP_SOLVERS)
        choice("csp option milp_solver", opts.get("milp_solver", "SCIP"), MILP_SOLVERS)
        flag("csp option constraint_costs", opts.get("constraint_costs", True))
        flag("csp option deterministic", opts.get("deterministic", False))
        integer("csp option max_cg_iter", opts.get("max_cg_iter", 2000), ge=1)
        real("csp option milp_time_limit", opts.get("milp_time_limit", 60.0), gt=0)
        real("csp option q0", opts.get("q0", 0.0))
    else:
        raise ValueError(f"unknown solver method {method!r}")
    grid = {k: v for k, v in opts.items() if k in TickGrid.field_names()}
    _check_intensity(grid.pop("intensity", None), market, method)
    TickGrid.of(None, grid, method).mdp(market, problem, method)  # steps, tick grid, fill/price models


def _check_times(times: Any, T: float) -> None:
    try:
        t = np.asarray(times, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"exact option times must be a list of numbers, got {times!r}") from None
    if t.ndim != 1 or t.size < 1 or not np.all(np.isfinite(t)):
        raise ValueError("exact option times must be a 1-d list of finite numbers")
    if np.any(np.diff(t) <= 0) or t[0] < 0 or t[-1] > T * (1 + 1e-12):
        raise ValueError(f"exact option times must increase strictly within [0, T={T}]")


def _check_intensity(spec: Any, market: MarketParams, who: str) -> None:
    from mmray.solvers.intensity import Intensity, resolve_intensity

    intensity = resolve_intensity(spec, market)
    if intensity is not None and not isinstance(intensity, Intensity):
        raise ValueError(f"{who} option intensity must be an mmray.solvers.intensity.Intensity, got {spec!r}")


def check_optimal(market: MarketParams, problem: ProblemParams, method: str, solver_options: Mapping[str, Any],
                  n_times: Any = None) -> None:
    """What building the ``optimal`` strategy checks, and a size limit, without solving."""
    if problem.q_max is None:
        raise ValueError("strategy 'optimal' needs a bounded inventory: set q_max")
    levels = inventory_grid(problem, market).size
    if levels > MAX_INVENTORY_LEVELS:
        raise ValueError(
            f"ProblemParams.q_max={problem.q_max} with trade size {market.trade_size:g} gives {levels} inventory "
            f"levels; strategy 'optimal' is limited to {MAX_INVENTORY_LEVELS} in a sweep (the exact solver works "
            f"with dense {levels}x{levels} matrices, {8 * levels**2 / 2**30:.3g} GiB each)")
    options = dict(solver_options)
    if method == "exact" and n_times is not None:
        options.setdefault("n_times", n_times)
    check_solver_options(method, options, market, problem)


def trial_problem(spec: Any, params: Mapping[str, Any]) -> str | None:
    """Why the trial of ``spec`` with parameters ``params`` (a Tune config) would fail before
    simulating, or ``None`` if it would not."""
    from mmray.distributed import n_chunks
    from mmray.tuning.trainables import build_policy, trial_setup

    try:
        setup = trial_setup(spec, params)
        sim, problem = setup.sim, setup.problem
        sim.n_steps(problem.T)
        sim.check_start(setup.simulated_market, problem)
        asha = spec.search.asha
        if asha is not None and n_chunks(sim.n_paths, sim.chunk_size) < asha.rungs:
            chunks = n_chunks(sim.n_paths, sim.chunk_size)
            raise ValueError(
                f"ASHA evaluates a trial in {asha.rungs} rungs of whole Monte Carlo chunks, but n_paths={sim.n_paths} "
                f"with chunk_size={sim.chunk_size} makes {chunks} chunk{'s' if chunks > 1 else ''}: lower "
                f"sim.chunk_size (at most {sim.n_paths // asha.rungs}) or search.asha.rungs")
        n_times = setup.strategy_options.get("n_times")
        if setup.strategy == "optimal":
            check_optimal(setup.market, problem, setup.method, setup.solver_options, n_times)
        else:
            build_policy(setup)  # a closed form: cheap, checks half_spread and skew
        if setup.true_market is not None:  # robustness: the true market's optimum is solved too
            check_optimal(setup.true_market, problem, setup.method, setup.solver_options)
    except (ValueError, TypeError) as exc:
        return str(exc)
    return None
