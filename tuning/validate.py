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

The solver checks are each solver's own (:func:`mmray.solvers.check_options`, the code its
solve starts with); they never run a solve.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mmray.params import MarketParams, ProblemParams, inventory_grid

#: most inventory levels ``2 q_max / trade_size + 1`` the ``optimal`` strategy may have in a sweep:
#: the exact solver works with dense (levels x levels) matrices (2001 levels: 32 MB each, ~20 s per
#: solve on one core; 200,001 levels would need ~320 GB each), the others with per-level tables
MAX_INVENTORY_LEVELS = 2001
#: grid combinations checked at load time (a larger grid has its values checked one at a time only)
MAX_COMBINATIONS = 5000


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
    from mmray.solvers import check_options

    options = dict(solver_options)
    if method == "exact" and n_times is not None:
        options.setdefault("n_times", n_times)
    check_options(market, problem, method, **options)


def trial_problem(spec: Any, params: Mapping[str, Any]) -> str | None:
    """Why the trial of ``spec`` with parameters ``params`` (a Tune config) would fail before
    simulating, or ``None`` if it would not."""
    from mmray.distributed import n_chunks
    from mmray.tuning.trainables import build_policy, trial_setup

    try:
        setup = trial_setup(spec, params)
        sim, problem = setup.sim, setup.problem
        sim.check(setup.simulated_market, problem)
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
