"""Sweep files: YAML/JSON loaded and validated into a :class:`~mmray.tuning.spec.SweepSpec`.

A sweep file holds one top-level mapping ``sweep``::

    sweep:
      kind: risk-aversion            # risk-aversion | hparams | robustness | rl
      name: frontier                 # run directory prefix (default: the kind)
      seed: 0                        # root of every trial seed
      common_random_numbers: true    # every trial simulates the same paths (paired comparison)
      market:  {sigma: 0.3, A: 0.9, k: 0.3}        # MarketParams fields (the base point)
      problem: {T: 600, q_max: 30, objective: A}   # ProblemParams fields
      sim:     {n_paths: 5000, dt: 1.0}            # SimConfig fields except seed
      solver:  {method: exact, options: {}}        # solver of the optimal strategy, fixed options
      strategies: [optimal, as, constant]
      grid:  {gamma: [0.001, 0.01, 0.1]}           # explicit values per swept parameter
      space: {q_max: {low: 5, high: 40, int: true}}  # ranges (random / optuna only)
      perturb: {sigma: [0.5, 1, 2]}                # robustness: factors on the base market
      combine: one-at-a-time                       # robustness: or grid
      search:    {algorithm: grid, metric: sharpe, mode: max, num_samples: 1,
                  max_concurrent: 0, asha: {rungs: 4, grace_period: 1, reduction_factor: 2}}
      resources: {cpus_per_trial: 0.5, mc_ray: false, mc_workers: 1, reuse_actors: true}
      failure:   {max_failures: 2}

Every error raised while loading is a :class:`SweepConfigError` whose message names the file,
the field as a path (``sweep.grid.gamma[2]``) and what was expected (:mod:`mmray.tuning.reader`:
the checks of :mod:`mmray.checks`, each field's type read from its dataclass). A key given twice in
one mapping is an error. Beyond each field, every trial the sweep can run is checked without solving or
simulating (:mod:`mmray.tuning.validate`): each grid value and range bound, for every strategy,
then every combination (up to ``MAX_COMBINATIONS``), so that a value that would fail every
trial (and each of its retries on a cluster) fails here, naming the field and the value.

An ``rl`` sweep (:func:`_parse_rl`) has no strategies, solver or Monte Carlo settings; it takes::

      seeds: 2                     # RLlib seeds per configuration: a count (seed, seed+1, ...) or a list
      market: {...}; problem: {gamma: 0.05, T: 30, q_max: 5}   # objective B: the env's reward
      sim:   {dt: 0.5, fill_model: poisson}                    # the env's step and models only
      env:   {offset_high: 10, reward_scale: 10}               # EnvConfig's other fields
      rl:    {time_budget: 20, hidden: [32, 32], minibatch_size: 480}   # PPOTrainConfig fields
      grid / space: PPO hyperparameters (lr, lr_end, initial_log_std, entropy_coeff, clip_param, ...)
      search: {algorithm: random, metric: gap_closed, num_samples: 4, asha: {rungs: 4}}
      resources: {cpus_per_trial: 1, reuse_actors: true}

Swept parameter names: see :mod:`mmray.tuning.spec`, where the spec types live. This module reads
each section (:mod:`mmray.tuning.documents` reads the file); :func:`mmray.tuning.validate.check_spec`
checks the sections together.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, get_args, get_type_hints

from mmray.params import MarketParams, ProblemParams, SimConfig
from mmray.strategies import STRATEGIES
from mmray.tuning import reader as rd
from mmray.tuning.documents import read_sweep_file
from mmray.tuning.reader import error
from mmray.tuning.spec import (
    ALGORITHMS,
    COMBINE,
    FAULT_MODES,
    INTEGER_PARAMS,
    KINDS,
    METRIC_MODES,
    PARAM_TYPES,
    PERTURBABLE,
    RL_INTEGER_PARAMS,
    RL_METRIC_MODES,
    RL_PARAM_TYPES,
    RL_PARAMS,
    RL_SIM_FIELDS,
    AshaSpec,
    FailureSpec,
    FaultSpec,
    Range,
    ResourceSpec,
    RLSpec,
    RobustnessSpec,
    SearchSpec,
    SolverSpec,
    SweepConfigError,
    SweepSpec,
    param_kind,
)
from mmray.tuning.validate import SWEEP_STRATEGIES, check_spec

ALLOWED_PARAMS = (*PARAM_TYPES, "solver.<option>")
_TOP = ("kind", "name", "seed", "common_random_numbers", "market", "problem", "sim", "solver", "strategies",
        "grid", "space", "perturb", "combine", "search", "resources", "failure")
#: the keys of an ``rl`` sweep
_RL_TOP = ("kind", "name", "seed", "seeds", "market", "problem", "sim", "env", "rl", "grid", "space", "search",
           "resources", "failure")
_DEFAULT_STRATEGIES = {
    "risk-aversion": ("optimal", "as", "constant"), "hparams": ("optimal",), "robustness": ("optimal", "as"),
}
_DEFAULT_PERTURB = {"sigma": (0.5, 2.0), "A": (0.5, 2.0), "k": (0.5, 2.0)}


def spec_from_dict(data: Any, source: str = "<dict>") -> SweepSpec:
    """Validate a parsed sweep document (``{"sweep": {...}}``) and build a :class:`SweepSpec`.

    Raises
    ------
    SweepConfigError
        With ``source``, the field path and what was expected.
    """
    try:
        spec = _parse(data, source)
        check_spec(spec)
    except SweepConfigError as exc:
        if exc.source is not None or exc.path is None:
            raise
        raise SweepConfigError.at(exc.path, exc.detail or "", source) from None
    return spec


# --------------------------------------------------------------------------- sections


def _parse(data: Any, source: str) -> SweepSpec:
    """Each section read and checked on its own; :func:`~mmray.tuning.validate.check_spec` checks them together."""
    top = rd.mapping(data, "top level")
    if "sweep" not in top:
        raise error("sweep", "missing: a sweep file holds one top-level mapping 'sweep'")
    for key in top:
        if key != "sweep":
            raise error(key, "unknown top-level key; a sweep file holds one top-level mapping 'sweep'")
    raw = rd.mapping(top["sweep"], "sweep")
    kind = raw.get("kind")
    if kind == "rl":
        for key in raw:
            if key in _TOP and key not in _RL_TOP:
                raise error(f"sweep.{key}", "not used by kind: rl (it trains RLlib PPO agents in the env of "
                            f"sweep.market, problem, sim and env); expected one of {', '.join(_RL_TOP)}")
    else:
        for key in raw:
            if key in _RL_TOP and key not in _TOP:
                raise error(f"sweep.{key}", "only used by kind: rl")
    rd.keys(raw, "sweep", _RL_TOP if kind == "rl" else _TOP)
    if "kind" not in raw:
        raise error("sweep.kind", f"missing; expected one of {', '.join(KINDS)}")
    kind = rd.choice(raw["kind"], "sweep.kind", KINDS)
    name = raw.get("name", kind)
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise error("sweep.name", f"expected a name of letters, digits, '-', '_' or '.', got {rd.show(name)}")
    seed = rd.integer(raw.get("seed", 0), "sweep.seed", ge=0)
    if kind == "rl":
        return _parse_rl(raw, name, seed, source)
    crn = rd.flag(raw.get("common_random_numbers", True), "sweep.common_random_numbers")
    base = _Base(_section(raw, "market", MarketParams), _section(raw, "problem", ProblemParams),
                 _section(raw, "sim", SimConfig))
    strategies = tuple(rd.items(raw.get("strategies", list(_DEFAULT_STRATEGIES[kind])), "sweep.strategies"))
    for i, s in enumerate(strategies):
        rd.choice(s, f"sweep.strategies[{i}]", (*STRATEGIES, *SWEEP_STRATEGIES))
    if len(set(strategies)) != len(strategies):
        raise error("sweep.strategies", f"duplicate strategy in {list(strategies)}")
    search = _search(raw, kind, base.problem)
    grid, space = _grid(raw, base), _space(raw, base)
    if kind != "robustness":
        for key in ("perturb", "combine"):
            if key in raw:
                raise error(f"sweep.{key}", "only used by kind: robustness")
    resources = rd.fields_of(ResourceSpec, rd.mapping(raw.get("resources"), "sweep.resources"), "sweep.resources",
                             cpus_per_trial={"gt": 0}, mc_workers={"ge": 1})
    return SweepSpec(
        kind=kind, name=name, seed=seed, market=base.market, problem=base.problem, sim=base.sim,
        strategies=strategies, grid=grid, space=space,
        robustness=_robustness(raw) if kind == "robustness" else None, search=search, resources=resources,
        failure=_failure(raw, grid, space), common_random_numbers=crn, solver=_solver(raw), source=source,
    )


@dataclass(frozen=True)
class _Base:
    """The sweep's base point, which checks a swept value by building its parameter object."""

    market: MarketParams
    problem: ProblemParams
    sim: SimConfig

    def check(self, name: str, value: Any, path: str) -> None:
        kind = param_kind(name)
        try:
            if kind in ("market", "problem", "sim"):
                replace(getattr(self, kind), **{name: value})
        except ValueError as exc:
            raise error(path, str(exc)) from None


def _typed(name: str, value: Any, path: str) -> Any:
    """A value of swept parameter ``name`` checked against its type (integer parameters are counts, >= 1)."""
    return rd.typed(PARAM_TYPES[name], value, path, ge=1 if name in INTEGER_PARAMS else None)


def _section(raw: dict[str, Any], key: str, cls: type) -> Any:
    """``sweep.market``, ``sweep.problem`` or ``sweep.sim``: the parameter object of the base point."""
    path = f"sweep.{key}"
    data = rd.mapping(raw.get(key), path)
    rd.keys(data, path, tuple(f.name for f in fields(cls) if f.name in PARAM_TYPES))
    data = {name: _typed(name, value, f"{path}.{name}") for name, value in data.items()}
    try:
        return cls(**data)
    except ValueError as exc:
        field_name = next((n for n in data if f".{n} " in str(exc)), None)
        raise error(path + (f".{field_name}" if field_name else ""), str(exc)) from None


def _solver_methods() -> tuple[str, ...]:
    from mmray.solvers import METHODS

    return tuple(METHODS)


def _value(name: str, value: Any, path: str, base: _Base) -> Any:
    """One value of swept parameter ``name``, checked on its own at the base point."""
    kind = param_kind(name)
    if kind == "solver":
        if not rd.free_form(value):
            raise error(path, f"expected a number, string, boolean or list of them, got {rd.show(value)}")
        return value
    if kind == "method":
        return rd.choice(value, path, _solver_methods())
    value = _typed(name, value, path)
    base.check(name, value, path)
    return value


def _known_param(name: str, path: str) -> None:
    try:
        param_kind(name)
    except KeyError:
        raise error(path, f"unknown parameter{rd.did_you_mean(name, ALLOWED_PARAMS)}; expected one of "
                    f"{', '.join(ALLOWED_PARAMS)}") from None
    if name == "seed":
        raise error(path, "trial seeds derive from sweep.seed; set sweep.seed instead")


def _grid(raw: dict[str, Any], base: _Base) -> dict[str, tuple[Any, ...]]:
    out: dict[str, tuple[Any, ...]] = {}
    for name, values in rd.mapping(raw.get("grid"), "sweep.grid").items():
        path = f"sweep.grid.{name}"
        _known_param(name, path)
        checked = [_value(name, v, f"{path}[{i}]", base) for i, v in enumerate(rd.items(values, path))]
        for i, v in enumerate(checked):
            if v in checked[:i]:
                raise error(f"{path}[{i}]", f"duplicate value {v!r}")
        out[name] = tuple(checked)
    return out


def _numeric(name: str) -> bool:
    """Whether swept parameter ``name`` takes numbers (``solver.<option>`` ranges: the solver checks them)."""
    hint = PARAM_TYPES.get(name, float)
    return any(t in (int, float) for t in (hint, *get_args(hint)))


def _space(raw: dict[str, Any], base: _Base) -> dict[str, Range]:
    out: dict[str, Range] = {}
    for name, value in rd.mapping(raw.get("space"), "sweep.space").items():
        path = f"sweep.space.{name}"
        _known_param(name, path)
        if not _numeric(name):
            raise error(path, "a string parameter cannot be a range; list its values in sweep.grid")
        r = _range_fields(value, path)
        integer = rd.flag(r.get("int", name in INTEGER_PARAMS), f"{path}.int")
        if name in INTEGER_PARAMS and not integer:
            raise error(f"{path}.int", f"{name} is an integer parameter: expected true")
        read = rd.integer if integer else rd.number
        low, high = read(r["low"], f"{path}.low"), read(r["high"], f"{path}.high")
        out[name] = _range(r, path, low, high, integer)
        if param_kind(name) != "solver":
            _value(name, low, f"{path}.low", base)
            _value(name, high, f"{path}.high", base)
    return out


def _range_fields(value: Any, path: str) -> dict[str, Any]:
    """A ``sweep.space`` entry's mapping: keys among low, high, log, int; low and high present."""
    r = rd.mapping(value, path)
    rd.keys(r, path, ("low", "high", "log", "int"))
    for key in ("low", "high"):
        if key not in r:
            raise error(f"{path}.{key}", "missing")
    return r


def _range(r: dict[str, Any], path: str, low: float, high: float, integer: bool) -> Range:
    """The :class:`Range` of a ``sweep.space`` entry whose bounds were read: low < high, and low > 0 on a log scale."""
    if not low < high:
        raise error(path, f"expected low < high, got low={low!r}, high={high!r}")
    log = rd.flag(r.get("log", False), f"{path}.log")
    if log and low <= 0:
        raise error(f"{path}.low", f"a log range needs low > 0, got {low!r}")
    return Range(float(low), float(high), log, integer)


def _search(raw: dict[str, Any], kind: str, problem: ProblemParams) -> SearchSpec:
    data = rd.mapping(raw.get("search"), "sweep.search")
    rd.keys(data, "sweep.search", tuple(f.name for f in fields(SearchSpec)))
    optimised = "ce_A" if problem.objective == "A" else "value_B"  # what the optimal policy maximises
    algorithm = rd.choice(data.get("algorithm", "grid"), "sweep.search.algorithm", ALGORITHMS)
    # a frontier and a robustness sweep measure policies by the objective; a frontier at the reference gamma;
    # an rl sweep its agents by their optimality figures
    default = {"robustness": optimised, "risk-aversion": optimised, "rl": "gap_closed"}.get(kind, "sharpe")
    modes = RL_METRIC_MODES if kind == "rl" else METRIC_MODES
    metric = rd.choice(data.get("metric", default), "sweep.search.metric", tuple(modes))
    mode = rd.choice(data.get("mode", modes[metric]), "sweep.search.mode", ("max", "min"))
    num_samples = rd.integer(data.get("num_samples", 1), "sweep.search.num_samples", ge=1)
    max_concurrent = rd.integer(data.get("max_concurrent", 0), "sweep.search.max_concurrent", ge=0)
    raw_asha, asha = data.get("asha"), None
    if raw_asha is True:
        asha = AshaSpec()
    elif raw_asha not in (None, False):
        path = "sweep.search.asha"
        asha = rd.fields_of(AshaSpec, rd.mapping(raw_asha, path), path, rungs={"ge": 2}, grace_period={"ge": 1},
                            reduction_factor={"ge": 2})
    return SearchSpec(algorithm, metric, mode, num_samples, max_concurrent, asha)


def _robustness(raw: dict[str, Any]) -> RobustnessSpec:
    if "perturb" in raw:
        data = rd.mapping(raw["perturb"], "sweep.perturb")
        if not data:
            raise error("sweep.perturb", "expected at least one of sigma, A, k with a list of factors; omit "
                        "perturb for the default (sigma, A and k each x0.5 and x2)")
    else:
        data = {k: list(v) for k, v in _DEFAULT_PERTURB.items()}
    perturb = []
    for name, values in data.items():
        path = f"sweep.perturb.{name}"
        if name not in PERTURBABLE:
            raise error(path, f"unknown parameter; expected one of {', '.join(PERTURBABLE)}")
        perturb.append((name, tuple(rd.number(v, f"{path}[{i}]", gt=0) for i, v in enumerate(rd.items(values, path)))))
    return RobustnessSpec(tuple(perturb), rd.choice(raw.get("combine", "one-at-a-time"), "sweep.combine", COMBINE))


def _solver(raw: dict[str, Any]) -> SolverSpec:
    data = rd.mapping(raw.get("solver"), "sweep.solver")
    rd.keys(data, "sweep.solver", ("method", "options"))
    method = rd.choice(data.get("method", "exact"), "sweep.solver.method", _solver_methods())
    options = rd.mapping(data.get("options"), "sweep.solver.options")
    for name, value in options.items():
        path = f"sweep.solver.options.{name}"
        if name == "constraints":
            for key, v in rd.mapping(value, path).items():
                if not rd.free_form(v):
                    raise error(f"{path}.{key}", f"expected a number, string, boolean or null, got {rd.show(v)}")
        elif not rd.free_form(value):
            raise error(path, f"expected a number, string, boolean or list of them, got {rd.show(value)}")
    return SolverSpec(method, options)


def _failure(raw: dict[str, Any], grid: dict[str, Any], space: dict[str, Any], matched: str = "strategy"
             ) -> FailureSpec:
    data = rd.mapping(raw.get("failure"), "sweep.failure")
    rd.keys(data, "sweep.failure", ("max_failures", "inject"))
    max_failures = rd.integer(data.get("max_failures", 2), "sweep.failure.max_failures", ge=0)
    raw_inject = data.get("inject")
    example = "[{match: {strategy: optimal}, times: 1, how: raise}]"
    if isinstance(raw_inject, Mapping):
        raise error("sweep.failure.inject", f"expected a list of faults, e.g. {example}; got a single mapping "
                    "(put it in a list: inject: [{match: ...}])")
    if raw_inject is not None and (isinstance(raw_inject, str) or not isinstance(raw_inject, list | tuple)):
        raise error("sweep.failure.inject", f"expected a list of faults, e.g. {example}; got {rd.show(raw_inject)}")
    inject = []
    for i, item in enumerate(raw_inject or []):
        path = f"sweep.failure.inject[{i}]"
        fault = rd.mapping(item, path)
        rd.keys(fault, path, ("match", "times", "how"))
        match = rd.mapping(fault.get("match"), f"{path}.match")
        for key in match:
            if key not in (matched, *grid, *space):
                raise error(f"{path}.match.{key}", f"expected a swept parameter or {matched!r}")
        inject.append(FaultSpec(match=match, times=rd.integer(fault.get("times", 1), f"{path}.times", ge=1),
                                how=rd.choice(fault.get("how", "raise"), f"{path}.how", FAULT_MODES)))
    return FailureSpec(max_failures, tuple(inject))


# --------------------------------------------------------------------------- rl sweeps


def _parse_rl(raw: dict[str, Any], name: str, seed: int, source: str) -> SweepSpec:
    """The sections of an ``rl`` sweep (see the module docstring); :func:`~mmray.tuning.validate.check_spec`
    then builds every trial's training config."""
    market = _section(raw, "market", MarketParams)
    problem_data = rd.mapping(raw.get("problem"), "sweep.problem")
    if problem_data.get("objective", "B") != "B":
        raise error("sweep.problem.objective", "an rl sweep's agents earn objective B's per-step increments "
                    f"(mmray.envs): expected B, got {rd.show(problem_data['objective'])}")
    problem = _section({"problem": {"objective": "B", **problem_data}}, "problem", ProblemParams)
    sim_data = rd.mapping(raw.get("sim"), "sweep.sim")
    rd.keys(sim_data, "sweep.sim", RL_SIM_FIELDS)
    sim = _section({"sim": sim_data}, "sim", SimConfig)
    rl = _rl_section(raw, seed)
    grid, space = _rl_grid(raw), _rl_space(raw)
    search = _search(raw, "rl", problem)
    res = rd.mapping(raw.get("resources"), "sweep.resources")
    rd.keys(res, "sweep.resources", ("cpus_per_trial", "reuse_actors"))
    # an RL trial holds RLlib's env runner and learner in its process: one CPU (actors reused: a new trial in a
    # reused actor skips importing torch and RLlib again, measured 31 s instead of 76 s for the 4 trials of
    # tests/test_rl_sweep.py, the same table)
    resources = rd.fields_of(ResourceSpec, {"cpus_per_trial": 1.0, **res}, "sweep.resources",
                             cpus_per_trial={"gt": 0})
    return SweepSpec(kind="rl", name=name, seed=seed, market=market, problem=problem, sim=sim, strategies=(),
                     grid=grid, space=space, search=search, resources=resources,
                     failure=_failure(raw, grid, space, matched="seed"), rl=rl, source=source)


def _rl_section(raw: dict[str, Any], seed: int) -> RLSpec:
    """``sweep.seeds``, ``sweep.env`` and ``sweep.rl`` (values typed here; the env and the training config
    are built, and their own checks run, by :func:`~mmray.tuning.validate.check_spec`)."""
    from mmray.tuning.rl import PPOTrainConfig
    from mmray.tuning.rl_sweep import SET_BY_SWEEP, env_fields

    raw_seeds = raw.get("seeds", 2)
    if isinstance(raw_seeds, list | tuple):
        seeds = tuple(rd.integer(s, f"sweep.seeds[{i}]", ge=0) for i, s in enumerate(rd.items(raw_seeds,
                                                                                              "sweep.seeds")))
        for i, s in enumerate(seeds):
            if s in seeds[:i]:
                raise error(f"sweep.seeds[{i}]", f"duplicate seed {s}")
    else:
        try:
            n = rd.integer(raw_seeds, "sweep.seeds", ge=1)
        except SweepConfigError:
            raise error("sweep.seeds", f"expected a number of seeds (an integer >= 1) or a list of seeds, got "
                        f"{rd.show(raw_seeds)}") from None
        seeds = tuple(seed + i for i in range(n))
    derived = not isinstance(raw_seeds, list | tuple)
    env = rd.mapping(raw.get("env"), "sweep.env")
    rd.keys(env, "sweep.env", env_fields())
    train = rd.mapping(raw.get("rl"), "sweep.rl")
    algorithm = rd.choice(train.pop("algorithm", "ppo"), "sweep.rl.algorithm", ("ppo",))
    cls_fields = {f.name: f for f in fields(PPOTrainConfig) if f.name not in SET_BY_SWEEP}
    for key, why in (("seed", "RLlib seeds are sweep.seeds"),
                     ("env", "the env is sweep.market, sweep.problem, sweep.sim and sweep.env")):
        if key in train:
            raise error(f"sweep.rl.{key}", f"set by the sweep: {why}")
    rd.keys(train, "sweep.rl", ("algorithm", *cls_fields))
    hints = get_type_hints(PPOTrainConfig)
    for key, value in list(train.items()):
        path = f"sweep.rl.{key}"
        if key == "hidden":
            train[key] = [rd.integer(v, f"{path}[{i}]", ge=1) for i, v in enumerate(rd.items(value, path))]
        elif key == "lr_schedule":
            if value is not None:
                pairs = rd.items(value, path)
                train[key] = [[rd.integer(p[0], f"{path}[{i}][0]", ge=0), rd.number(p[1], f"{path}[{i}][1]", gt=0)]
                              if isinstance(p, list | tuple) and len(p) == 2 else _pair_error(f"{path}[{i}]", p)
                              for i, p in enumerate(pairs)]
        else:
            try:
                train[key] = rd.typed(hints[key], value, path, ge=1 if key in RL_INTEGER_PARAMS else None)
            except TypeError:  # a field type with no sweep-file reading: the config checks the value itself
                pass
    if all(train.get(k) is None for k in ("iterations", "timesteps", "time_budget")):
        raise error("sweep.rl", "missing a per-trial budget: set iterations, timesteps or time_budget (seconds of "
                    "wall time per trial, evaluations included)")
    return RLSpec(train=train, env=env, seeds=seeds, algorithm=algorithm, seeds_from_sweep_seed=derived)


def _pair_error(path: str, value: Any) -> Any:
    raise error(path, f"expected a pair [env step, learning rate], got {rd.show(value)}")


def _rl_param(name: str, path: str) -> None:
    """A swept parameter of an ``rl`` sweep must be a PPO hyperparameter."""
    if name in RL_PARAMS:
        return
    if name == "seed":
        raise error(path, "an rl sweep trains every configuration with each of sweep.seeds; set sweep.seeds")
    try:
        kind = param_kind(name)
    except KeyError:
        kind = None
    if kind in ("market", "problem", "sim"):
        raise error(path, f"an rl sweep trains in one environment (its optimum is computed once): set {name} in "
                    f"sweep.{kind}; swept parameters are PPO hyperparameters: {', '.join(RL_PARAMS)}")
    raise error(path, f"unknown parameter{rd.did_you_mean(name, RL_PARAMS)}; an rl sweep varies PPO "
                f"hyperparameters: {', '.join(RL_PARAMS)} (fixed settings go in sweep.rl)")


def _rl_value(name: str, value: Any, path: str) -> Any:
    return rd.typed(RL_PARAM_TYPES[name], value, path, ge=1 if name in RL_INTEGER_PARAMS else None)


def _rl_grid(raw: dict[str, Any]) -> dict[str, tuple[Any, ...]]:
    out: dict[str, tuple[Any, ...]] = {}
    for name, values in rd.mapping(raw.get("grid"), "sweep.grid").items():
        path = f"sweep.grid.{name}"
        _rl_param(name, path)
        checked = [_rl_value(name, v, f"{path}[{i}]") for i, v in enumerate(rd.items(values, path))]
        for i, v in enumerate(checked):
            if v in checked[:i]:
                raise error(f"{path}[{i}]", f"duplicate value {v!r}")
        out[name] = tuple(checked)
    return out


def _rl_space(raw: dict[str, Any]) -> dict[str, Range]:
    out: dict[str, Range] = {}
    for name, value in rd.mapping(raw.get("space"), "sweep.space").items():
        path = f"sweep.space.{name}"
        _rl_param(name, path)
        r = _range_fields(value, path)
        integer = rd.flag(r.get("int", name in RL_INTEGER_PARAMS), f"{path}.int")
        if (name in RL_INTEGER_PARAMS) != integer:
            raise error(f"{path}.int", f"{name} is {'an integer' if name in RL_INTEGER_PARAMS else 'a real'} "
                        f"parameter: expected {str(name in RL_INTEGER_PARAMS).lower()}")
        low, high = (_rl_value(name, r[k], f"{path}.{k}") for k in ("low", "high"))
        out[name] = _range(r, path, low, high, integer)
    return out


def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate a YAML (``.yaml``/``.yml``) or JSON sweep file.

    Raises
    ------
    SweepConfigError
        Missing or unreadable file, syntax error (with line and column) or invalid content.
    """
    data = read_sweep_file(Path(path))
    if data is None:
        raise SweepConfigError(f"{path}: empty file; expected a top-level mapping 'sweep'")
    return spec_from_dict(data, source=str(path))
