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
the checks of :mod:`mmray.checks`, each field's type read from its dataclass). ``kind: rl`` raises
:class:`NotAvailableError`: RLlib training does not exist yet. A key given twice in one mapping
is an error. Beyond each field, every trial the sweep can run is checked without solving or
simulating (:mod:`mmray.tuning.validate`): each grid value and range bound, for every strategy,
then every combination (up to ``MAX_COMBINATIONS``), so that a value that would fail every
trial (and each of its retries on a cluster) fails here, naming the field and the value.

Swept parameter names: see :mod:`mmray.tuning.spec`, where the spec types live. This module reads
each section (:mod:`mmray.tuning.documents` reads the file); :func:`mmray.tuning.validate.check_spec`
checks the sections together.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, get_args

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
    RL_NOT_AVAILABLE,
    AshaSpec,
    FailureSpec,
    FaultSpec,
    NotAvailableError,
    Range,
    ResourceSpec,
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
    NotAvailableError
        For ``kind: rl``.
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
    rd.keys(raw, "sweep", _TOP)
    if "kind" not in raw:
        raise error("sweep.kind", f"missing; expected one of {', '.join(KINDS)}")
    kind = rd.choice(raw["kind"], "sweep.kind", KINDS)
    if kind == "rl":
        raise NotAvailableError(f"{source}: {RL_NOT_AVAILABLE}")
    name = raw.get("name", kind)
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise error("sweep.name", f"expected a name of letters, digits, '-', '_' or '.', got {rd.show(name)}")
    seed = rd.integer(raw.get("seed", 0), "sweep.seed", ge=0)
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
        r = rd.mapping(value, path)
        rd.keys(r, path, ("low", "high", "log", "int"))
        for key in ("low", "high"):
            if key not in r:
                raise error(f"{path}.{key}", "missing")
        integer = rd.flag(r.get("int", name in INTEGER_PARAMS), f"{path}.int")
        if name in INTEGER_PARAMS and not integer:
            raise error(f"{path}.int", f"{name} is an integer parameter: expected true")
        read = rd.integer if integer else rd.number
        low, high = read(r["low"], f"{path}.low"), read(r["high"], f"{path}.high")
        if not low < high:
            raise error(path, f"expected low < high, got low={low!r}, high={high!r}")
        log = rd.flag(r.get("log", False), f"{path}.log")
        if log and low <= 0:
            raise error(f"{path}.low", f"a log range needs low > 0, got {low!r}")
        if param_kind(name) != "solver":
            _value(name, low, f"{path}.low", base)
            _value(name, high, f"{path}.high", base)
        out[name] = Range(float(low), float(high), log, integer)
    return out


def _search(raw: dict[str, Any], kind: str, problem: ProblemParams) -> SearchSpec:
    data = rd.mapping(raw.get("search"), "sweep.search")
    rd.keys(data, "sweep.search", tuple(f.name for f in fields(SearchSpec)))
    optimised = "ce_A" if problem.objective == "A" else "value_B"  # what the optimal policy maximises
    algorithm = rd.choice(data.get("algorithm", "grid"), "sweep.search.algorithm", ALGORITHMS)
    # a frontier and a robustness sweep measure policies by the objective; a frontier at the reference gamma
    default = optimised if kind in ("robustness", "risk-aversion") else "sharpe"
    metric = rd.choice(data.get("metric", default), "sweep.search.metric", tuple(METRIC_MODES))
    mode = rd.choice(data.get("mode", METRIC_MODES[metric]), "sweep.search.mode", ("max", "min"))
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


def _failure(raw: dict[str, Any], grid: dict[str, Any], space: dict[str, Any]) -> FailureSpec:
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
            if key not in ("strategy", *grid, *space):
                raise error(f"{path}.match.{key}", "expected a swept parameter or 'strategy'")
        inject.append(FaultSpec(match=match, times=rd.integer(fault.get("times", 1), f"{path}.times", ge=1),
                                how=rd.choice(fault.get("how", "raise"), f"{path}.how", FAULT_MODES)))
    return FailureSpec(max_failures, tuple(inject))


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
