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
the field as a path (``sweep.grid.gamma[2]``) and what was expected. ``kind: rl`` raises
:class:`NotAvailableError`: RLlib training does not exist yet. A key given twice in one mapping
is an error. Beyond each field, every trial the sweep can run is checked without solving or
simulating (:mod:`mmray.tuning.validate`): each grid value and range bound, for every strategy,
then every combination (up to ``MAX_COMBINATIONS``), so that a value that would fail every
trial (and each of its retries on a cluster) fails here, naming the field and the value.

Swept parameter names: see :mod:`mmray.tuning.spec`, where the spec types live; this module
parses and validates.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from mmray.distributed import n_chunks
from mmray.params import MarketParams, ProblemParams, SimConfig
from mmray.strategies import STRATEGIES
from mmray.tuning.spec import (
    ALGORITHMS,
    COMBINE,
    FAULT_MODES,
    KINDS,
    MARKET_FIELDS,
    METRIC_MODES,
    PERTURBABLE,
    PROBLEM_FIELDS,
    RL_NOT_AVAILABLE,
    SIM_FIELDS,
    STRATEGY_OPTIONS,
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

_NUMBER = {"sigma", "A", "k", "drift", "trade_size", "tick", "s0", "gamma", "T", "terminal_penalty",
           "dt", "q0", "half_spread", "skew"}
_INTEGER = {"n_paths", "chunk_size", "n_times", "q_max"}
_STRING = {"objective", "price_model", "fill_model", "method"}
_FLOAT_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


# --------------------------------------------------------------------------- parsing helpers


class _Ctx:
    """Builds error messages: ``<source>: <path>: <what>``."""

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, path: str, message: str) -> SweepConfigError:
        return SweepConfigError(f"{self.source}: {path}: {message}", self.source, path, message)

    def mapping(self, value: Any, path: str) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self.error(path, f"expected a mapping (key: value), got {_show(value)}")
        for key in value:
            if not isinstance(key, str):
                raise self.error(path, f"keys must be strings, got {key!r}")
        return dict(value)

    def keys(self, value: Mapping[str, Any], path: str, allowed: tuple[str, ...]) -> None:
        for key in value:
            if key not in allowed:
                hint = difflib.get_close_matches(key, allowed, n=1)
                did = f" (did you mean {hint[0]!r}?)" if hint else ""
                raise self.error(f"{path}.{key}", f"unknown key{did}; expected one of {', '.join(allowed)}")

    def integer(self, value: Any, path: str, minimum: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int | float) or (
            isinstance(value, float) and (not math.isfinite(value) or value != int(value))
        ):
            raise self.error(path, f"expected an integer, got {_show(value)}")
        if minimum is not None and value < minimum:
            raise self.error(path, f"expected an integer >= {minimum}, got {int(value)}")
        return int(value)

    def number(self, value: Any, path: str, positive: bool = False) -> float:
        value = _coerce_number(value)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise self.error(path, f"expected a finite number, got {_show(value)}")
        if positive and value <= 0:
            raise self.error(path, f"expected a number > 0, got {value!r}")
        return float(value)

    def boolean(self, value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            raise self.error(path, f"expected true or false, got {_show(value)}")
        return value

    def choice(self, value: Any, path: str, allowed: tuple[str, ...]) -> str:
        if not isinstance(value, str) or value not in allowed:
            raise self.error(path, f"expected one of {', '.join(allowed)}, got {_show(value)}")
        return value

    def values(self, value: Any, path: str) -> list[Any]:
        if isinstance(value, str) or not isinstance(value, list | tuple):
            raise self.error(path, f"expected a non-empty list, got {_show(value)}")
        if not value:
            raise self.error(path, "expected a non-empty list, got an empty one")
        return list(value)


def _show(value: Any) -> str:
    if isinstance(value, str):
        return f"the string {value!r}"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return repr(value)


def _coerce_number(value: Any) -> Any:
    """YAML 1.1 reads ``1e-3`` as a string; accept numeric strings for numeric fields."""
    if isinstance(value, str) and _FLOAT_RE.match(value.strip()):
        return float(value)
    return value


ALLOWED_PARAMS = (*MARKET_FIELDS, *PROBLEM_FIELDS, *SIM_FIELDS, *STRATEGY_OPTIONS, "method", "solver.<option>")


def _solver_methods() -> tuple[str, ...]:
    from mmray.solvers import METHODS

    return tuple(METHODS)


def _check_value(ctx: _Ctx, name: str, value: Any, path: str, base: _Base) -> Any:
    """Type-check one value of swept parameter ``name`` and validate it against the base point."""
    kind = param_kind(name)
    if kind == "solver":
        if not _jsonable_scalar_or_list(value):
            raise ctx.error(path, f"expected a number, string, boolean or list of them, got {_show(value)}")
        return value
    if name == "method":
        return ctx.choice(value, path, _solver_methods())
    if name in _STRING:
        if not isinstance(value, str):
            raise ctx.error(path, f"expected a string, got {_show(value)}")
    elif name in _INTEGER:
        if name == "q_max" and value is None:
            pass
        else:
            value = ctx.integer(value, path, minimum=1)
    elif name in _NUMBER:
        value = ctx.number(value, path)
    if kind == "strategy":
        if name == "n_times" and value < 2:
            raise ctx.error(path, f"expected an integer >= 2, got {value}")
        return value
    try:
        base.with_value(name, value)
    except ValueError as exc:
        raise ctx.error(path, f"{exc}") from None
    return value


def _jsonable_scalar_or_list(value: Any) -> bool:
    if value is None or isinstance(value, bool | int | float | str):
        return not (isinstance(value, float) and not math.isfinite(value))
    if isinstance(value, list | tuple):
        return all(_jsonable_scalar_or_list(v) for v in value)
    return False


@dataclass(frozen=True)
class _Base:
    market: MarketParams
    problem: ProblemParams
    sim: SimConfig

    def with_value(self, name: str, value: Any) -> _Base:
        kind = param_kind(name)
        if kind == "market":
            return replace(self, market=self.market.replace(**{name: value}))
        if kind == "problem":
            return replace(self, problem=self.problem.replace(**{name: value}))
        if kind == "sim":
            return replace(self, sim=self.sim.replace(**{name: value}))
        return self


def _section(ctx: _Ctx, raw: Mapping[str, Any], key: str, cls: type, path: str) -> Any:
    data = ctx.mapping(raw.get(key), f"{path}.{key}")
    allowed = tuple(f.name for f in fields(cls) if not (cls is SimConfig and f.name == "seed"))
    ctx.keys(data, f"{path}.{key}", allowed)
    for name, value in data.items():
        p = f"{path}.{key}.{name}"
        if name in _STRING:
            if not isinstance(value, str):
                raise ctx.error(p, f"expected a string, got {_show(value)}")
        elif name in _INTEGER:
            if not (name == "q_max" and value is None):
                data[name] = ctx.integer(value, p, minimum=1)
        elif name in _NUMBER:
            data[name] = ctx.number(value, p)
    try:
        return cls(**data)
    except ValueError as exc:
        field_name = next((n for n in data if f".{n} " in str(exc)), None)
        raise ctx.error(f"{path}.{key}" + (f".{field_name}" if field_name else ""), str(exc)) from None


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
    ctx = _Ctx(source)
    top = ctx.mapping(data, "top level")
    if "sweep" not in top:
        raise ctx.error("sweep", "missing: a sweep file holds one top-level mapping 'sweep'")
    for key in top:
        if key != "sweep":
            raise ctx.error(key, "unknown top-level key; a sweep file holds one top-level mapping 'sweep'")
    raw = ctx.mapping(top["sweep"], "sweep")
    ctx.keys(raw, "sweep", _TOP)
    if "kind" not in raw:
        raise ctx.error("sweep.kind", f"missing; expected one of {', '.join(KINDS)}")
    kind = ctx.choice(raw["kind"], "sweep.kind", KINDS)
    if kind == "rl":
        raise NotAvailableError(f"{source}: {RL_NOT_AVAILABLE}")
    name = raw.get("name", kind)
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise ctx.error("sweep.name", f"expected a name of letters, digits, '-', '_' or '.', got {_show(name)}")
    seed = ctx.integer(raw.get("seed", 0), "sweep.seed", minimum=0)
    crn = ctx.boolean(raw.get("common_random_numbers", True), "sweep.common_random_numbers")

    market = _section(ctx, raw, "market", MarketParams, "sweep")
    problem = _section(ctx, raw, "problem", ProblemParams, "sweep")
    sim = _section(ctx, raw, "sim", SimConfig, "sweep")
    base = _Base(market, problem, sim)
    try:
        sim.n_steps(problem.T)
    except ValueError as exc:
        raise ctx.error("sweep.sim.dt", str(exc)) from None

    strategies = tuple(ctx.values(raw.get("strategies", list(_DEFAULT_STRATEGIES[kind])), "sweep.strategies"))
    for i, s in enumerate(strategies):
        ctx.choice(s, f"sweep.strategies[{i}]", STRATEGIES)
    if len(set(strategies)) != len(strategies):
        raise ctx.error("sweep.strategies", f"duplicate strategy in {list(strategies)}")

    search = _search(ctx, raw, kind, problem)
    grid = _grid(ctx, raw, base)
    space = _space(ctx, raw, base)
    overlap = sorted(set(grid) & set(space))
    if overlap:
        raise ctx.error(f"sweep.space.{overlap[0]}", "also in sweep.grid; give a parameter in one of them")

    robustness = None
    if kind == "robustness":
        robustness = _robustness(ctx, raw)
        if grid or space:
            raise ctx.error("sweep.grid" if grid else "sweep.space",
                            "robustness sweeps vary the market through 'perturb', not grid/space")
    else:
        for key in ("perturb", "combine"):
            if key in raw:
                raise ctx.error(f"sweep.{key}", "only used by kind: robustness")

    if kind == "risk-aversion":
        if "gamma" not in grid:
            raise ctx.error("sweep.grid.gamma", "missing: a risk-aversion sweep needs a list of gamma values")
        if len(grid["gamma"]) < 2:
            raise ctx.error("sweep.grid.gamma", "expected at least 2 values to trace a frontier")
    if kind == "hparams" and not grid and not space and len(strategies) < 2:
        raise ctx.error("sweep.grid", "an hparams sweep needs at least one parameter in grid or space")
    if search.algorithm == "grid":
        if space:
            raise ctx.error(f"sweep.space.{next(iter(space))}",
                            "ranges need search.algorithm random or optuna (grid search takes lists in sweep.grid)")
        if search.num_samples != 1:
            raise ctx.error("sweep.search.num_samples", "grid search runs each grid point once: expected 1")
    if kind in ("risk-aversion", "robustness") and search.algorithm != "grid":
        raise ctx.error("sweep.search.algorithm", f"a {kind} sweep is a grid: expected grid")
    if search.asha is not None:
        if kind == "robustness":
            raise ctx.error("sweep.search.asha", "not used by robustness sweeps (no search)")
        swept = {"n_paths", "chunk_size"} & (set(grid) | set(space))
        chunks = n_chunks(sim.n_paths, sim.chunk_size)
        if not swept and chunks < search.asha.rungs:
            raise ctx.error(
                "sweep.search.asha.rungs",
                f"expected at most {chunks} rung{'s' if chunks > 1 else ''}, got {search.asha.rungs}: each rung is a "
                f"group of whole Monte Carlo chunks, and sim.n_paths={sim.n_paths} with sim.chunk_size="
                f"{sim.chunk_size} makes {chunks}; lower sim.chunk_size (at most {sim.n_paths // search.asha.rungs})")

    if "optimal" in strategies and problem.q_max is None and "q_max" not in grid and "q_max" not in space:
        raise ctx.error("sweep.problem.q_max", "strategy 'optimal' needs a bounded inventory: set q_max")
    if "optimal" in strategies and problem.q_max is not None:
        from mmray.params import inventory_grid

        try:
            inventory_grid(problem, market)
        except ValueError as exc:
            raise ctx.error("sweep.problem.q_max", str(exc)) from None

    resources = _resources(ctx, raw)
    failure = _failure(ctx, raw, strategies, grid, space)
    solver = _solver(ctx, raw)
    _check_solver_options(ctx, solver, grid, space)
    _check_users(ctx, kind, strategies, solver, grid, space)
    _check_ranges(ctx, strategies, base, solver, grid, space)
    spec = SweepSpec(
        kind=kind, name=name, seed=seed, market=market, problem=problem, sim=sim, strategies=strategies,
        grid=grid, space=space, robustness=robustness, search=search, resources=resources,
        failure=failure, common_random_numbers=crn, solver=solver, source=source,
    )
    _check_trials(ctx, spec)
    return spec


def _search(ctx: _Ctx, raw: Mapping[str, Any], kind: str, problem: ProblemParams) -> SearchSpec:
    data = ctx.mapping(raw.get("search"), "sweep.search")
    ctx.keys(data, "sweep.search", ("algorithm", "metric", "mode", "num_samples", "max_concurrent", "asha"))
    optimised = "ce_A" if problem.objective == "A" else "value_B"  # what the optimal policy maximises
    default_metric = optimised if kind == "robustness" else "sharpe"
    algorithm = ctx.choice(data.get("algorithm", "grid"), "sweep.search.algorithm", ALGORITHMS)
    metric = ctx.choice(data.get("metric", default_metric), "sweep.search.metric", tuple(METRIC_MODES))
    mode = ctx.choice(data.get("mode", METRIC_MODES[metric]), "sweep.search.mode", ("max", "min"))
    if kind == "robustness":
        # the loss is measured against the policy that is optimal for the true market: only in the
        # metric that policy maximises is it a loss (>= 0 up to noise); in another it can be negative
        if metric != optimised:
            raise ctx.error("sweep.search.metric",
                            f"a robustness sweep's loss is measured against the optimal policy of the true market, "
                            f"which maximises {optimised} (objective {problem.objective}); expected {optimised}, "
                            f"got {metric!r}")
        if mode != "max":
            raise ctx.error("sweep.search.mode", f"{optimised} is maximised: expected max, got {mode!r}")
    num_samples = ctx.integer(data.get("num_samples", 1), "sweep.search.num_samples", minimum=1)
    max_conc = ctx.integer(data.get("max_concurrent", 0), "sweep.search.max_concurrent", minimum=0)
    asha = None
    raw_asha = data.get("asha")
    if raw_asha is True:
        asha = AshaSpec()
    elif raw_asha not in (None, False):
        a = ctx.mapping(raw_asha, "sweep.search.asha")
        ctx.keys(a, "sweep.search.asha", ("rungs", "grace_period", "reduction_factor"))
        asha = AshaSpec(
            rungs=ctx.integer(a.get("rungs", 4), "sweep.search.asha.rungs", minimum=2),
            grace_period=ctx.integer(a.get("grace_period", 1), "sweep.search.asha.grace_period", minimum=1),
            reduction_factor=ctx.integer(a.get("reduction_factor", 2), "sweep.search.asha.reduction_factor",
                                         minimum=2),
        )
        if asha.grace_period > asha.rungs:
            raise ctx.error("sweep.search.asha.grace_period",
                            f"expected at most rungs={asha.rungs}, got {asha.grace_period}")
    return SearchSpec(algorithm, metric, mode, num_samples, max_conc, asha)


def _grid(ctx: _Ctx, raw: Mapping[str, Any], base: _Base) -> dict[str, tuple[Any, ...]]:
    data = ctx.mapping(raw.get("grid"), "sweep.grid")
    out: dict[str, tuple[Any, ...]] = {}
    for name, values in data.items():
        path = f"sweep.grid.{name}"
        _known_param(ctx, name, path)
        vals = ctx.values(values, path)
        checked = [_check_value(ctx, name, v, f"{path}[{i}]", base) for i, v in enumerate(vals)]
        for i, v in enumerate(checked):
            if v in checked[:i]:
                raise ctx.error(f"{path}[{i}]", f"duplicate value {v!r}")
        out[name] = tuple(checked)
    return out


def _known_param(ctx: _Ctx, name: str, path: str) -> None:
    try:
        param_kind(name)
    except KeyError:
        hint = difflib.get_close_matches(name, ALLOWED_PARAMS, n=1)
        did = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise ctx.error(path, f"unknown parameter{did}; expected one of {', '.join(ALLOWED_PARAMS)}") from None
    if name == "seed":
        raise ctx.error(path, "trial seeds derive from sweep.seed; set sweep.seed instead")


def _space(ctx: _Ctx, raw: Mapping[str, Any], base: _Base) -> dict[str, Range]:
    data = ctx.mapping(raw.get("space"), "sweep.space")
    out: dict[str, Range] = {}
    for name, value in data.items():
        path = f"sweep.space.{name}"
        _known_param(ctx, name, path)
        if name in _STRING:
            raise ctx.error(path, "a string parameter cannot be a range; list its values in sweep.grid")
        r = ctx.mapping(value, path)
        ctx.keys(r, path, ("low", "high", "log", "int"))
        for key in ("low", "high"):
            if key not in r:
                raise ctx.error(f"{path}.{key}", "missing")
        integer = ctx.boolean(r.get("int", name in _INTEGER), f"{path}.int")
        if name in _INTEGER and not integer:
            raise ctx.error(f"{path}.int", f"{name} is an integer parameter: expected true")
        low = ctx.integer(r["low"], f"{path}.low") if integer else ctx.number(r["low"], f"{path}.low")
        high = ctx.integer(r["high"], f"{path}.high") if integer else ctx.number(r["high"], f"{path}.high")
        if not low < high:
            raise ctx.error(path, f"expected low < high, got low={low!r}, high={high!r}")
        log = ctx.boolean(r.get("log", False), f"{path}.log")
        if log and low <= 0:
            raise ctx.error(f"{path}.low", f"a log range needs low > 0, got {low!r}")
        if param_kind(name) != "solver":
            _check_value(ctx, name, low, f"{path}.low", base)
            _check_value(ctx, name, high, f"{path}.high", base)
        out[name] = Range(float(low), float(high), log, integer)
    return out


def _robustness(ctx: _Ctx, raw: Mapping[str, Any]) -> RobustnessSpec:
    if "perturb" in raw:
        data = ctx.mapping(raw["perturb"], "sweep.perturb")
        if not data:
            raise ctx.error("sweep.perturb", "expected at least one of sigma, A, k with a list of factors; omit "
                            "perturb for the default (sigma, A and k each x0.5 and x2)")
    else:
        data = {k: list(v) for k, v in _DEFAULT_PERTURB.items()}
    perturb = []
    for name, values in data.items():
        path = f"sweep.perturb.{name}"
        if name not in PERTURBABLE:
            raise ctx.error(path, f"unknown parameter; expected one of {', '.join(PERTURBABLE)}")
        factors = tuple(ctx.number(v, f"{path}[{i}]", positive=True) for i, v in enumerate(ctx.values(values, path)))
        perturb.append((name, factors))
    combine = ctx.choice(raw.get("combine", "one-at-a-time"), "sweep.combine", COMBINE)
    return RobustnessSpec(tuple(perturb), combine)


def _solver(ctx: _Ctx, raw: Mapping[str, Any]) -> SolverSpec:
    data = ctx.mapping(raw.get("solver"), "sweep.solver")
    ctx.keys(data, "sweep.solver", ("method", "options"))
    method = ctx.choice(data.get("method", "exact"), "sweep.solver.method", _solver_methods())
    options = ctx.mapping(data.get("options"), "sweep.solver.options")
    for name, value in options.items():
        path = f"sweep.solver.options.{name}"
        if name == "constraints":
            for key, v in ctx.mapping(value, path).items():
                if not _jsonable_scalar_or_list(v):
                    raise ctx.error(f"{path}.{key}", f"expected a number, string, boolean or null, got {_show(v)}")
        elif not _jsonable_scalar_or_list(value):
            raise ctx.error(path, f"expected a number, string, boolean or list of them, got {_show(value)}")
    return SolverSpec(method, options)


def _sweep_methods(solver: SolverSpec, grid: Mapping[str, Any]) -> tuple[str, ...]:
    """The solver methods the sweep's trials use (a swept method replaces the base one)."""
    return tuple(grid["method"]) if "method" in grid else (solver.method,)


def _swept_paths(grid: Mapping[str, Any], space: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(name, field path)`` of every swept parameter, grid then space."""
    return [(n, f"sweep.grid.{n}") for n in grid] + [(n, f"sweep.space.{n}") for n in space]


def _check_solver_options(ctx: _Ctx, solver: SolverSpec, grid: Mapping[str, tuple[Any, ...]],
                          space: Mapping[str, Range]) -> None:
    """Solver option and constraint names, given or swept (grid or space), must be taken by every
    method the sweep uses (a typo would otherwise fail every trial, and each trial's retries, on
    the cluster). Their values are checked with every trial (:func:`_check_trials`)."""
    from mmray.solvers import Constraints, method_options

    methods, swept = _sweep_methods(solver, grid), _swept_paths(grid, space)
    named = [(name, f"sweep.solver.options.{name}") for name in solver.options if name != "constraints"]
    named += [(n.removeprefix("solver."), path) for n, path in swept
              if n.startswith("solver.") and not n.startswith("solver.constraints.")]
    for option, path in named:
        for method in methods:
            if option not in method_options(method):
                takes = [n for n in method_options(method) if n not in ("grid", "constraints")]
                raise ctx.error(path, f"solver {method!r} does not take option {option!r}; it takes {', '.join(takes)}")
    fields_ = tuple(f.name for f in fields(Constraints))
    cons = [(k, f"sweep.solver.options.constraints.{k}") for k in solver.options.get("constraints") or {}]
    cons += [(n.removeprefix("solver.constraints."), path) for n, path in swept if n.startswith("solver.constraints.")]
    for name, path in cons:
        if name not in fields_:
            raise ctx.error(path, f"unknown constraint {name!r}; expected one of {', '.join(fields_)}")
    if cons and not all("constraints" in method_options(m) for m in methods):
        raise ctx.error(cons[0][1], f"constraints need solver method csp (or pi), not {', '.join(methods)}")
    try:
        Constraints.from_dict(solver.options.get("constraints"))
    except ValueError as exc:
        raise ctx.error("sweep.solver.options.constraints", str(exc)) from None


#: swept strategy options -> the strategies that use them (sweeping one no strategy uses is an error,
#: as ``mmray backtest`` refuses ``--half-spread``/``--skew`` for strategies that ignore them)
STRATEGY_OPTION_USERS = {"half_spread": ("constant", "inventory"), "skew": ("inventory",), "n_times": ("optimal",)}


def _check_users(ctx: _Ctx, kind: str, strategies: tuple[str, ...], solver: SolverSpec,
                 grid: Mapping[str, Any], space: Mapping[str, Any]) -> None:
    """Every swept parameter must change some trial: a strategy option needs a strategy that uses it,
    a solver parameter the ``optimal`` strategy (robustness sweeps also solve the true optimum)."""
    methods, swept = _sweep_methods(solver, grid), _swept_paths(grid, space)
    for name, path in swept:
        users = STRATEGY_OPTION_USERS.get(name)
        if users is None and param_kind(name) in ("method", "solver") and kind != "robustness":
            users = ("optimal",)
        if users is not None and not set(users) & set(strategies):
            raise ctx.error(path, f"{name} applies to strategy {' or '.join(users)} only, and the sweep's strategies "
                            f"are {', '.join(strategies)}: every value would run the same trials")
        if name == "n_times":
            if any(m != "exact" for m in methods):
                raise ctx.error(path, f"n_times is the time grid of the exact solver, not of "
                                f"{', '.join(m for m in methods if m != 'exact')} (sweep solver.n_steps or solver.dt)")
            clash = [o for o in ("n_times", "times") if o in solver.options or f"solver.{o}" in grid
                     or f"solver.{o}" in space]
            if clash:
                raise ctx.error(path, f"give the exact solver's time grid once: n_times or solver.{clash[0]}, not both")


def _divides_one(step: float) -> bool:
    """Whether every integer is a whole number of ``step``s."""
    n = 1.0 / step
    return abs(n - round(n)) <= 1e-9 * max(1.0, n)


def _check_ranges(ctx: _Ctx, strategies: tuple[str, ...], base: _Base, solver: SolverSpec,
                  grid: Mapping[str, Any], space: Mapping[str, Range]) -> None:
    """Refuse ranges whose sampled values would almost never make a valid trial (a step that must
    divide the horizon, a size that must divide the inventory bound); list such values in grid."""
    bounded = base.problem.q_max is not None or "q_max" in grid or "q_max" in space
    optimal = "optimal" in strategies
    for name, r in space.items():
        path = f"sweep.space.{name}"
        if name in ("dt", "solver.dt"):
            raise ctx.error(path, f"{name} must divide the horizon T: a sampled value almost never does; list its "
                            "values in sweep.grid")
        if name == "T":
            steps = [("sim.dt", base.sim.dt)] + [(f"solver.{k}", v) for k, v in solver.options.items()
                                                 if k == "dt" and isinstance(v, int | float)]
            steps += [("sweep.grid.dt", v) for v in grid.get("dt", ())]
            steps += [("sweep.grid.solver.dt", v) for v in grid.get("solver.dt", ())]
            _require_integer_range(ctx, path, r, steps, "a sampled T must be a whole number of time steps",
                                   "list T values in sweep.grid")
        if name == "trade_size" and bounded:
            raise ctx.error(path, "with a bounded inventory, q_max (and q0) must be multiples of the trade size: a "
                            "sampled trade size almost never divides them; list its values in sweep.grid")
        if name in ("q_max", "q0") and (bounded or optimal):
            sizes = [("market.trade_size", base.market.trade_size)]
            sizes += [("sweep.grid.trade_size", v) for v in grid.get("trade_size", ())]
            _require_integer_range(ctx, path, r, sizes, f"a sampled {name} must be a multiple of the trade size",
                                   "list its values in sweep.grid")


def _require_integer_range(ctx: _Ctx, path: str, r: Range, units: list[tuple[str, Any]], what: str,
                           hint: str) -> None:
    """An integer range whose samples are whole multiples of every unit in ``units`` (each
    ``(field, value)`` must divide 1), else ``ctx.error`` naming the offending unit."""
    bad = next(((w, v) for w, v in units if not _divides_one(float(v))), None)
    if not r.integer or bad is not None:
        why = f"{bad[0]}={bad[1]!r} does not divide every integer" if bad else "give int: true"
        raise ctx.error(path, f"{what} ({why}); {hint}")


def _check_trials(ctx: _Ctx, spec: SweepSpec) -> None:
    """Run the load-time trial checks (:func:`mmray.tuning.validate.trial_problem`) on every grid
    value and range bound (others at the base point), for every strategy, then on every
    combination of them (up to :data:`~mmray.tuning.validate.MAX_COMBINATIONS`)."""
    import itertools

    from mmray.tuning.validate import MAX_COMBINATIONS, trial_problem

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

    def problem(values: Mapping[str, Any]) -> tuple[str, str] | None:
        for strategy in spec.strategies:
            for scenario in scenarios:
                params: dict[str, Any] = {"strategy": strategy, **values}
                if scenario is not None:
                    params["scenario"] = scenario
                why = trial_problem(spec, params)
                if why is not None:
                    where = [f"strategy {strategy}"] if many else []
                    if scenario is not None and any(f != 1.0 for f in scenario.values()):
                        where.append("true market " + ", ".join(f"{k} x{f:g}" for k, f in scenario.items()))
                    return why, (f" ({'; '.join(where)})" if where else "")
        return None

    if not dims:
        found = problem({})
        if found is not None:
            raise ctx.error("sweep", f"{found[0]}{found[1]}")
        return
    for name, entries in dims:  # one value at a time: the error names its field and index
        for path, value in entries:
            found = problem({name: value})
            if found is not None:
                raise ctx.error(path, f"value {value!r}: {found[0]}{found[1]}")
    if len(dims) < 2:
        return
    count = math.prod(len(entries) for _, entries in dims)
    if count > MAX_COMBINATIONS:
        return
    for combo in itertools.product(*(entries for _, entries in dims)):
        values = {name: value for (name, _), (_, value) in zip(dims, combo, strict=True)}
        found = problem(values)
        if found is not None:
            shown = ", ".join(f"{n}={v!r} ({p})" for (n, _), (p, v) in zip(dims, combo, strict=True))
            raise ctx.error("sweep.grid" if spec.grid else "sweep.space",
                            f"the combination {shown} is invalid: {found[0]}{found[1]}")


def _resources(ctx: _Ctx, raw: Mapping[str, Any]) -> ResourceSpec:
    data = ctx.mapping(raw.get("resources"), "sweep.resources")
    ctx.keys(data, "sweep.resources", ("cpus_per_trial", "mc_ray", "mc_workers", "reuse_actors"))
    return ResourceSpec(
        cpus_per_trial=ctx.number(data.get("cpus_per_trial", 0.5), "sweep.resources.cpus_per_trial", positive=True),
        mc_ray=ctx.boolean(data.get("mc_ray", False), "sweep.resources.mc_ray"),
        mc_workers=ctx.integer(data.get("mc_workers", 1), "sweep.resources.mc_workers", minimum=1),
        reuse_actors=ctx.boolean(data.get("reuse_actors", True), "sweep.resources.reuse_actors"),
    )


def _failure(
    ctx: _Ctx, raw: Mapping[str, Any], strategies: tuple[str, ...], grid: Mapping[str, Any], space: Mapping[str, Any]
) -> FailureSpec:
    data = ctx.mapping(raw.get("failure"), "sweep.failure")
    ctx.keys(data, "sweep.failure", ("max_failures", "inject"))
    max_failures = ctx.integer(data.get("max_failures", 2), "sweep.failure.max_failures", minimum=0)
    raw_inject = data.get("inject")
    example = "[{match: {strategy: optimal}, times: 1, how: raise}]"
    if isinstance(raw_inject, Mapping):
        raise ctx.error("sweep.failure.inject", f"expected a list of faults, e.g. {example}; got a single mapping "
                        "(put it in a list: inject: [{match: ...}])")
    if raw_inject is not None and (isinstance(raw_inject, str) or not isinstance(raw_inject, list | tuple)):
        raise ctx.error("sweep.failure.inject", f"expected a list of faults, e.g. {example}; got {_show(raw_inject)}")
    inject = []
    for i, item in enumerate(raw_inject or []):
        path = f"sweep.failure.inject[{i}]"
        f = ctx.mapping(item, path)
        ctx.keys(f, path, ("match", "times", "how"))
        match = ctx.mapping(f.get("match"), f"{path}.match")
        for key in match:
            if key not in ("strategy", *grid, *space):
                raise ctx.error(f"{path}.match.{key}", "expected a swept parameter or 'strategy'")
        inject.append(FaultSpec(
            match=match, times=ctx.integer(f.get("times", 1), f"{path}.times", minimum=1),
            how=ctx.choice(f.get("how", "raise"), f"{path}.how", FAULT_MODES),
        ))
    return FailureSpec(max_failures, tuple(inject))


# --------------------------------------------------------------------------- files


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json.loads`` object hook: a key given twice in one object is an error, not "last one wins"."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


_LOADER: Any = None


def _unique_key_loader() -> Any:
    """A ``yaml.SafeLoader`` that refuses a key given twice in one mapping (PyYAML keeps the last one
    silently); the error is a ``MarkedYAMLError`` with the line and column of the second one."""
    global _LOADER
    if _LOADER is not None:
        return _LOADER
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        pass

    def construct_mapping(loader: Any, node: Any, deep: bool = False) -> Any:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # '<<' merges may be overridden
                continue
            key = loader.construct_object(key_node, deep=deep)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: the default constructor reports it
                continue
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    f"duplicate key {key!r} (first given on line {first + 1})", key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)

    UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    _LOADER = UniqueKeyLoader
    return _LOADER


def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate a YAML (``.yaml``/``.yml``) or JSON sweep file.

    Raises
    ------
    SweepConfigError
        Missing or unreadable file, syntax error (with line and column) or invalid content.
    """
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SweepConfigError(f"{source}: no such sweep file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SweepConfigError(f"{source}: cannot read: {exc}") from None
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text, object_pairs_hook=_unique_keys)
        except json.JSONDecodeError as exc:
            raise SweepConfigError(f"{source}: line {exc.lineno} column {exc.colno}: invalid JSON: {exc.msg}") from None
        except _DuplicateKey as exc:
            raise SweepConfigError(f"{source}: invalid JSON: duplicate key {exc.key!r} in one object") from None
    else:
        import yaml

        try:
            data = yaml.load(text, Loader=_unique_key_loader())  # a SafeLoader subclass
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark
            where = f"line {mark.line + 1} column {mark.column + 1}: " if mark is not None else ""
            raise SweepConfigError(f"{source}: {where}invalid YAML: {exc.problem}") from None
        except yaml.YAMLError as exc:
            raise SweepConfigError(f"{source}: invalid YAML: {exc}") from None
    if data is None:
        raise SweepConfigError(f"{source}: empty file; expected a top-level mapping 'sweep'")
    return spec_from_dict(data, source=source)
