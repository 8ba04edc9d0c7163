"""Load-time checks of a sweep as a whole and of every trial it will run: no Ray, no solving, no simulation.

A sweep file can be well formed field by field and still describe trials that can only fail:
``dt`` values that do not divide ``T``, a solver option value its solver refuses, an inventory
bound whose solve needs hundreds of gigabytes. On a cluster each such trial fails, is retried
``max_failures`` times and is reported as an error at the end. :func:`trial_problem` runs, for
one trial's parameters, everything a trial checks before its first Monte Carlo path: the
parameter objects (:func:`mmray.tuning.trainables.trial_setup`), the simulation's step count
and start inventory, the solver's option values, and the closed-form strategies' options.
:func:`check_trials` calls it for every grid value, every range bound and every grid
combination (up to :data:`MAX_COMBINATIONS`); :func:`check_spec`, which
:func:`mmray.tuning.config.spec_from_dict` runs on every sweep it reads, checks the sections of a
sweep against each other (kind, search, solver option names, what each swept parameter changes,
ranges), then its trials.

The solver checks are each solver's own (:func:`mmray.solvers.check_options`, the code its
solve starts with); they never run a solve.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from mmray.distributed import n_chunks
from mmray.params import MarketParams, ProblemParams, inventory_grid
from mmray.tuning.spec import MARKET_FIELDS, Range, SweepConfigError, SweepSpec, param_kind

#: most inventory levels ``2 q_max / trade_size + 1`` the ``optimal`` strategy may have in a sweep:
#: the exact solver works with dense (levels x levels) matrices (2001 levels: 32 MB each, ~20 s per
#: solve on one core; 200,001 levels would need ~320 GB each), the others with per-level tables
MAX_INVENTORY_LEVELS = 2001
#: grid combinations checked at load time (a larger grid has its values checked one at a time only)
MAX_COMBINATIONS = 5000
#: parameters of the simulated market (the environment every policy is measured in), not of a strategy:
#: the market's fields and the simulator's step and fill and price models. A search over them ranks whichever
#: market is easiest to make money in, so they may only be grid axes, compared side by side (the report then
#: ranks the trials within each market setting: :func:`mmray.tuning.results.group_columns`)
MARKET_MODEL_PARAMS = (*MARKET_FIELDS, "dt", "fill_model", "price_model")
#: strategies that only a sweep builds (from the trial's simulation settings): see
#: :func:`mmray.tuning.trainables.build_policy`
SWEEP_STRATEGIES = ("discrete_optimal",)


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


def trial_problem(spec: SweepSpec, params: Mapping[str, Any]) -> str | None:
    """Why the trial of ``spec`` with parameters ``params`` (a Tune config) would fail before
    simulating (an ``rl`` trial: before training), or ``None`` if it would not."""
    if spec.kind == "rl":
        from mmray.tuning.rl_sweep import trial_problem as rl_trial_problem

        return rl_trial_problem(spec, params)
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
        elif setup.strategy == "discrete_optimal":
            from mmray.tuning.trainables import discrete_optimal_options

            check_optimal(setup.market, problem, "pi", discrete_optimal_options(setup))
        else:
            build_policy(setup)  # a closed form: cheap, checks half_spread and skew
        if setup.true_market is not None:  # robustness: the true market's optimum is solved too
            check_optimal(setup.true_market, problem, setup.method, setup.solver_options)
    except (ValueError, TypeError) as exc:
        return str(exc)
    return None


# --------------------------------------------------------------------------- the sections together

error = SweepConfigError.at


def check_spec(spec: SweepSpec) -> None:
    """Check a sweep's sections against each other and every trial it can run (:func:`check_trials`).

    Raises :class:`~mmray.tuning.spec.SweepConfigError` naming the field (``sweep.grid.gamma[2]``)."""
    if spec.kind == "rl":
        check_rl_spec(spec)
        return
    try:
        spec.sim.n_steps(spec.problem.T)
    except ValueError as exc:
        raise error("sweep.sim.dt", str(exc)) from None
    overlap = sorted(set(spec.grid) & set(spec.space))
    if overlap:
        raise error(f"sweep.space.{overlap[0]}", "also in sweep.grid; give a parameter in one of them")
    if spec.robustness is not None and (spec.grid or spec.space):
        raise error("sweep.grid" if spec.grid else "sweep.space",
                    "robustness sweeps vary the market through 'perturb', not grid/space")
    _check_kind(spec)
    _check_search(spec)
    _check_market_axes(spec)
    if "optimal" in spec.strategies and spec.problem.q_max is None and "q_max" not in _swept(spec):
        raise error("sweep.problem.q_max", "strategy 'optimal' needs a bounded inventory: set q_max")
    if "optimal" in spec.strategies and spec.problem.q_max is not None:
        try:
            inventory_grid(spec.problem, spec.market)
        except ValueError as exc:
            raise error("sweep.problem.q_max", str(exc)) from None
    _check_solver_options(spec)
    _check_users(spec)
    _check_ranges(spec)
    check_trials(spec)


def check_rl_spec(spec: SweepSpec) -> None:
    """An ``rl`` sweep's sections together: its env, its search, and every trial's training config
    (:func:`check_trials`: each grid value and range bound, then every combination), built as a trial
    builds it (:func:`mmray.tuning.rl_sweep.trial_config`), so that a value PPO or the env refuses (a
    minibatch larger than the train batch, ``lr_end`` without a decay length) fails here, naming its field."""
    from mmray.tuning.rl_sweep import env_config, trial_config

    assert spec.rl is not None, "check_rl_spec needs an rl sweep"
    try:
        env_config(spec)
    except ValueError as exc:
        raise error(_rl_env_field(spec, str(exc)), str(exc)) from None
    overlap = sorted(set(spec.grid) & set(spec.space))
    if overlap:
        raise error(f"sweep.space.{overlap[0]}", "also in sweep.grid; give a parameter in one of them")
    for name, path in _swept(spec).items():
        if name in spec.rl.train:
            raise error(path, f"also fixed in sweep.rl.{name}; give it in one place")
    search, asha = spec.search, spec.search.asha
    _check_grid_search(spec, "trains each grid point once per seed")
    if asha is not None:
        if asha.grace_period > asha.rungs:
            raise error("sweep.search.asha.grace_period",
                        f"expected at most rungs={asha.rungs}, got {asha.grace_period}")
        if search.algorithm == "optuna":
            raise error("sweep.search.asha", "Optuna's configurations are each trained once per seed and ranked by "
                        "their mean (Tune's Repeater), which early stopping of single seeds would bias: use "
                        "search.algorithm random or grid with ASHA, or remove search.asha")
    try:  # the fixed settings, swept ones at their defaults: an error in a fixed one names it
        trial_config(spec, {"seed": spec.rl.seeds[0]})
    except ValueError as exc:
        path = _rl_train_field(str(exc))
        if path.removeprefix("sweep.rl.") not in _swept(spec):
            raise error(path, str(exc)) from None
    check_trials(spec)


def _rl_env_field(spec: SweepSpec, message: str) -> str:
    """The sweep-file field an env error names (``EnvConfig.offset_high ...`` -> ``sweep.env.offset_high``)."""
    import re

    m = re.match(r"(EnvConfig|SimConfig|ProblemParams|MarketParams)\.(\w+)(?:\.(\w+))?", message)
    if m is None:
        return "sweep.env"
    cls, name, sub = m.groups()
    if cls == "EnvConfig" and name in ("problem", "market") and sub:
        return f"sweep.{name}.{sub}"
    section = {"SimConfig": "sim", "ProblemParams": "problem", "MarketParams": "market"}.get(cls)
    if section is None:
        section = "sim" if name in ("dt", "fill_model", "price_model", "q0") else "env"
    return f"sweep.{section}.{name}"


def _rl_train_field(message: str) -> str:
    """The sweep-file field a training-config error names (``PPOTrainConfig.lr ...`` -> ``sweep.rl.lr``)."""
    import re

    m = re.match(r"\w*(?:TrainConfig|PPOConfig)\.(\w+)", message)
    return f"sweep.rl.{m.group(1)}" if m else "sweep.rl"


def _swept(spec: SweepSpec) -> dict[str, str]:
    """The field path of every swept parameter, grid then space."""
    return {**{n: f"sweep.grid.{n}" for n in spec.grid}, **{n: f"sweep.space.{n}" for n in spec.space}}


def _methods(spec: SweepSpec) -> tuple[str, ...]:
    """The solver methods the sweep's trials use (a swept method replaces the base one)."""
    return tuple(spec.grid["method"]) if "method" in spec.grid else (spec.solver.method,)


def _check_kind(spec: SweepSpec) -> None:
    """What each kind of sweep needs."""
    kind, grid = spec.kind, spec.grid
    if kind == "risk-aversion":
        if "gamma" not in grid:
            raise error("sweep.grid.gamma", "missing: a risk-aversion sweep needs a list of gamma values")
        if len(grid["gamma"]) < 2:
            raise error("sweep.grid.gamma", "expected at least 2 values to trace a frontier")
    if kind == "hparams" and not grid and not spec.space and len(spec.strategies) < 2:
        raise error("sweep.grid", "an hparams sweep needs at least one parameter in grid or space")
    if kind == "robustness" and "discrete_optimal" in spec.strategies:
        raise error(f"sweep.strategies[{spec.strategies.index('discrete_optimal')}]",
                    "a robustness sweep measures the loss against the continuous-time optimum of the true market, "
                    "which discrete_optimal (the simulator's discrete-time optimum) can beat: the loss would mean "
                    "nothing; compare it in a risk-aversion or hparams sweep")


def _check_market_axes(spec: SweepSpec) -> None:
    """A market parameter may be a grid axis (markets compared side by side), never a search target:
    random or Optuna search would pick whichever market is easiest, not the best strategy."""
    if spec.search.algorithm == "grid":
        return
    for name, path in _swept(spec).items():
        if name in MARKET_MODEL_PARAMS:
            metric = spec.search.metric
            raise error(path, f"{name} is a parameter of the simulated market, not of the strategy: a "
                        f"{spec.search.algorithm} search over it would find the market in which {metric} is "
                        f"{'highest' if spec.search.mode == 'max' else 'lowest'}, not "
                        f"the best strategy. Fix it in sweep.{'market' if name in MARKET_FIELDS else 'sim'}, or "
                        "compare markets side by side with search.algorithm: grid (the report then ranks the trials "
                        "within each market setting)")


def _check_search(spec: SweepSpec) -> None:
    """The search against the sweep's kind, objective, ranges and Monte Carlo chunks."""
    search, kind, sim = spec.search, spec.kind, spec.sim
    optimised = "ce_A" if spec.problem.objective == "A" else "value_B"  # what the optimal policy maximises
    if kind == "robustness":
        # the loss is measured against the policy that is optimal for the true market: only in the
        # metric that policy maximises is it a loss (>= 0 up to noise); in another it can be negative
        if search.metric != optimised:
            raise error("sweep.search.metric",
                        f"a robustness sweep's loss is measured against the optimal policy of the true market, "
                        f"which maximises {optimised} (objective {spec.problem.objective}); expected {optimised}, "
                        f"got {search.metric!r}")
        if search.mode != "max":
            raise error("sweep.search.mode", f"{optimised} is maximised: expected max, got {search.mode!r}")
    asha = search.asha
    if asha is not None and asha.grace_period > asha.rungs:
        raise error("sweep.search.asha.grace_period", f"expected at most rungs={asha.rungs}, got {asha.grace_period}")
    _check_grid_search(spec, "runs each grid point once")
    if kind in ("risk-aversion", "robustness") and search.algorithm != "grid":
        raise error("sweep.search.algorithm", f"a {kind} sweep is a grid: expected grid")
    if asha is not None:
        if kind == "robustness":
            raise error("sweep.search.asha", "not used by robustness sweeps (no search)")
        if kind == "risk-aversion":
            raise error("sweep.search.asha", "a risk-aversion sweep traces a frontier: every gamma is a point of it, "
                        "so none may be stopped early (ASHA would drop the points with the worst metric); remove "
                        "search.asha")
        chunks = n_chunks(sim.n_paths, sim.chunk_size)
        if not {"n_paths", "chunk_size"} & set(_swept(spec)) and chunks < asha.rungs:
            raise error(
                "sweep.search.asha.rungs",
                f"expected at most {chunks} rung{'s' if chunks > 1 else ''}, got {asha.rungs}: each rung is a "
                f"group of whole Monte Carlo chunks, and sim.n_paths={sim.n_paths} with sim.chunk_size="
                f"{sim.chunk_size} makes {chunks}; lower sim.chunk_size (at most {sim.n_paths // asha.rungs})")


def _check_solver_options(spec: SweepSpec) -> None:
    """Solver option and constraint names, given or swept (grid or space), must be taken by every
    method the sweep uses (a typo would otherwise fail every trial, and each trial's retries, on
    the cluster). Their values are checked with every trial (:func:`check_trials`)."""
    from mmray.solvers import Constraints, method_options

    options, methods, swept = spec.solver.options, _methods(spec), _swept(spec)
    named = [(name, f"sweep.solver.options.{name}") for name in options if name != "constraints"]
    named += [(n.removeprefix("solver."), path) for n, path in swept.items()
              if n.startswith("solver.") and not n.startswith("solver.constraints.")]
    for option, path in named:
        for method in methods:
            if option not in method_options(method):
                takes = [n for n in method_options(method) if n not in ("grid", "constraints")]
                raise error(path, f"solver {method!r} does not take option {option!r}; it takes {', '.join(takes)}")
    names = tuple(f.name for f in fields(Constraints))
    cons = [(k, f"sweep.solver.options.constraints.{k}") for k in options.get("constraints") or {}]
    cons += [(n.removeprefix("solver.constraints."), path) for n, path in swept.items()
             if n.startswith("solver.constraints.")]
    for name, path in cons:
        if name not in names:
            raise error(path, f"unknown constraint {name!r}; expected one of {', '.join(names)}")
    if cons and not all("constraints" in method_options(m) for m in methods):
        raise error(cons[0][1], f"constraints need solver method csp (or pi), not {', '.join(methods)}")
    try:
        Constraints.from_dict(options.get("constraints"))
    except ValueError as exc:
        raise error("sweep.solver.options.constraints", str(exc)) from None


#: swept strategy options -> the strategies that use them (sweeping one no strategy uses is an error,
#: as ``mmray backtest`` refuses ``--half-spread``/``--skew`` for strategies that ignore them)
STRATEGY_OPTION_USERS = {"half_spread": ("constant", "inventory"), "skew": ("inventory",), "n_times": ("optimal",)}


def _check_users(spec: SweepSpec) -> None:
    """Every swept parameter must change some trial: a strategy option needs a strategy that uses it,
    a solver parameter the ``optimal`` strategy (robustness sweeps also solve the true optimum)."""
    methods, strategies, options = _methods(spec), spec.strategies, spec.solver.options
    for name, path in _swept(spec).items():
        users = STRATEGY_OPTION_USERS.get(name)
        if users is None and param_kind(name) in ("method", "solver") and spec.kind != "robustness":
            users = ("optimal",)
        if users is not None and not set(users) & set(strategies):
            raise error(path, f"{name} applies to strategy {' or '.join(users)} only, and the sweep's strategies "
                        f"are {', '.join(strategies)}: every value would run the same trials")
        if name == "n_times":
            if any(m != "exact" for m in methods):
                raise error(path, f"n_times is the time grid of the exact solver, not of "
                            f"{', '.join(m for m in methods if m != 'exact')} (sweep solver.n_steps or solver.dt)")
            clash = [o for o in ("n_times", "times") if o in options or f"solver.{o}" in _swept(spec)]
            if clash:
                raise error(path, f"give the exact solver's time grid once: n_times or solver.{clash[0]}, not both")


def _divides_one(step: float) -> bool:
    """Whether every integer is a whole number of ``step``s."""
    n = 1.0 / step
    return abs(n - round(n)) <= 1e-9 * max(1.0, n)


def _check_ranges(spec: SweepSpec) -> None:
    """Refuse ranges whose sampled values would almost never make a valid trial (a step that must
    divide the horizon, a size that must divide the inventory bound); list such values in grid."""
    grid, swept = spec.grid, _swept(spec)
    bounded = spec.problem.q_max is not None or "q_max" in swept
    for name, r in spec.space.items():
        path = f"sweep.space.{name}"
        if name in ("dt", "solver.dt"):
            raise error(path, f"{name} must divide the horizon T: a sampled value almost never does; list its "
                        "values in sweep.grid")
        if name == "T":
            steps = [("sim.dt", spec.sim.dt)] + [(f"solver.{k}", v) for k, v in spec.solver.options.items()
                                                 if k == "dt" and isinstance(v, int | float)]
            steps += [("sweep.grid.dt", v) for v in grid.get("dt", ())]
            steps += [("sweep.grid.solver.dt", v) for v in grid.get("solver.dt", ())]
            _require_integer_range(path, r, steps, "a sampled T must be a whole number of time steps",
                                   "list T values in sweep.grid")
        if name == "trade_size" and bounded:
            raise error(path, "with a bounded inventory, q_max (and q0) must be multiples of the trade size: a "
                        "sampled trade size almost never divides them; list its values in sweep.grid")
        if name in ("q_max", "q0") and (bounded or "optimal" in spec.strategies):
            sizes = [("market.trade_size", spec.market.trade_size)]
            sizes += [("sweep.grid.trade_size", v) for v in grid.get("trade_size", ())]
            _require_integer_range(path, r, sizes, f"a sampled {name} must be a multiple of the trade size",
                                   "list its values in sweep.grid")


def _require_integer_range(path: str, r: Range, units: list[tuple[str, Any]], what: str, hint: str) -> None:
    """An integer range whose samples are whole multiples of every unit in ``units`` (each
    ``(field, value)`` must divide 1), else an error naming the offending unit."""
    bad = next(((w, v) for w, v in units if not _divides_one(float(v))), None)
    if not r.integer or bad is not None:
        why = f"{bad[0]}={bad[1]!r} does not divide every integer" if bad else "give int: true"
        raise error(path, f"{what} ({why}); {hint}")


def check_trials(spec: SweepSpec) -> None:
    """Run :func:`trial_problem` on every grid value and range bound (others at the base point),
    for every strategy, then on every combination of them (up to :data:`MAX_COMBINATIONS`)."""
    dims: list[tuple[str, list[tuple[str, Any]]]] = []
    for name, values in spec.grid.items():
        dims.append((name, [(f"sweep.grid.{name}[{i}]", v) for i, v in enumerate(values)]))
    for name, r in spec.space.items():
        low, high = (int(r.low), int(r.high)) if r.integer else (r.low, r.high)  # what the sampler returns
        dims.append((name, [(f"sweep.space.{name}.low", low), (f"sweep.space.{name}.high", high)]))
    scenarios: list[dict[str, float] | None] = [None]
    if spec.robustness is not None:
        scenarios = list(spec.robustness.scenarios())
    many = len(spec.strategies) > 1
    strategies: tuple[str | None, ...] = spec.strategies if spec.rl is None else (None,)  # rl: no strategies

    def problem(values: Mapping[str, Any]) -> str | None:
        for strategy in strategies:
            for scenario in scenarios:
                params: dict[str, Any] = {**values} if strategy is None else {"strategy": strategy, **values}
                if scenario is not None:
                    params["scenario"] = scenario
                why = trial_problem(spec, params)
                if why is not None:
                    where = [f"strategy {strategy}"] if many else []
                    if scenario is not None and any(f != 1.0 for f in scenario.values()):
                        where.append("true market " + ", ".join(f"{k} x{f:g}" for k, f in scenario.items()))
                    return why + (f" ({'; '.join(where)})" if where else "")
        return None

    if not dims:
        found = problem({})
        if found is not None:
            raise error("sweep", found)
        return
    for name, entries in dims:  # one value at a time: the error names its field and index
        for path, value in entries:
            found = problem({name: value})
            if found is not None:
                raise error(path, f"value {value!r}: {found}")
    if len(dims) < 2 or math.prod(len(entries) for _, entries in dims) > MAX_COMBINATIONS:
        return
    for combo in itertools.product(*(entries for _, entries in dims)):
        found = problem({name: value for (name, _), (_, value) in zip(dims, combo, strict=True)})
        if found is not None:
            shown = ", ".join(f"{n}={v!r} ({p})" for (n, _), (p, v) in zip(dims, combo, strict=True))
            raise error("sweep.grid" if spec.grid else "sweep.space", f"the combination {shown} is invalid: {found}")


def _check_grid_search(spec: SweepSpec, once: str) -> None:
    """A grid search takes no ranges and one sample (``once``: what it does with each grid point)."""
    if spec.search.algorithm != "grid":
        return
    if spec.space:
        raise error(f"sweep.space.{next(iter(spec.space))}",
                    "ranges need search.algorithm random or optuna (grid search takes lists in sweep.grid)")
    if spec.search.num_samples != 1:
        raise error("sweep.search.num_samples", f"grid search {once}: expected 1")
