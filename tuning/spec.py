"""Sweep specifications: typed, frozen dataclasses (what a sweep is).

:func:`mmray.tuning.config.spec_from_dict` and :func:`~mmray.tuning.config.load_spec` build them
from a sweep file and validate every field (see :mod:`mmray.tuning.config` for the file format);
:meth:`SweepSpec.to_dict` writes one back in that form.

Swept parameter names (keys of ``grid`` and ``space``, resolved by :func:`param_kind`):

* any field of :class:`~mmray.params.MarketParams`, :class:`~mmray.params.ProblemParams` or
  :class:`~mmray.params.SimConfig` (except ``seed``): ``gamma``, ``q_max``, ``tick``,
  ``fill_model``, ``n_paths`` ...;
* ``method``: the solver of the ``optimal`` strategy, one of :data:`mmray.solvers.METHODS`;
* strategy options ``half_spread``, ``skew`` (``constant``/``inventory``), ``n_times``
  (time-grid size of ``optimal``);
* ``solver.<option>``: passed as ``option=value`` to :func:`mmray.solvers.solve`;
  ``solver.constraints.<name>`` sets one field of the ``constraints`` option (obligations and
  risk limits of the ``csp`` solver, e.g. ``solver.constraints.min_two_sided``), which is
  passed as :class:`mmray.solvers.constraints.Constraints`.

An ``rl`` sweep (:class:`RLSpec`, :mod:`mmray.tuning.rl_sweep`) sweeps PPO hyperparameters instead
(:data:`RL_PARAMS`: ``lr``, ``lr_end``, ``initial_log_std``, ``entropy_coeff``, ``clip_param``,
``minibatch_size``, ``num_epochs``, ``lambda_``, ``vf_clip_param``), each configuration trained
once per seed of :attr:`RLSpec.seeds`, in the one environment of the sweep's market, problem, sim
and env sections.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar, TypedDict, get_args, get_type_hints

from mmray.params import MarketParams, ProblemParams, SimConfig

KINDS = ("risk-aversion", "hparams", "robustness", "rl")
ALGORITHMS = ("grid", "random", "optuna")
COMBINE = ("one-at-a-time", "grid")
FAULT_MODES = ("raise", "exit")
#: metrics a sweep can optimise, with their natural direction
METRIC_MODES = {
    "sharpe": "max", "ce_A": "max", "value_B": "max", "pnl_mean": "max", "pnl_std": "min",
    "q_final_std": "min", "max_drawdown": "min", "trades_mean": "max",
}
PERTURBABLE = ("sigma", "A", "k")
#: metrics an ``rl`` sweep can optimise (the best agent of a trial, :mod:`mmray.tuning.rl_eval`): all maximised
RL_METRIC_MODES = {"gap_closed": "max", "optimality_ratio": "max", "agent_value": "max"}


class StrategyOptions(TypedDict, total=False):
    """The strategy options a sweep can vary: keyword arguments of :func:`mmray.make_strategy`."""

    half_spread: float
    skew: float
    n_times: int


MARKET_FIELDS = tuple(f.name for f in fields(MarketParams))
PROBLEM_FIELDS = tuple(f.name for f in fields(ProblemParams))
SIM_FIELDS = tuple(f.name for f in fields(SimConfig) if f.name != "seed")
#: the ``sim`` fields an ``rl`` sweep takes: the env's step and models (no Monte Carlo settings)
RL_SIM_FIELDS = ("dt", "fill_model", "price_model", "q0")
STRATEGY_OPTIONS = tuple(get_type_hints(StrategyOptions))

#: the type of each swept parameter's values, read from the classes that hold them (``solver.<option>``
#: values are free-form: each solver checks its own)
PARAM_TYPES: dict[str, Any] = {
    **get_type_hints(MarketParams), **get_type_hints(ProblemParams),
    **{n: t for n, t in get_type_hints(SimConfig).items() if n in SIM_FIELDS},
    **get_type_hints(StrategyOptions), "method": str,
}
#: swept parameters whose values are integers (Tune's samplers may return them as integral floats)
INTEGER_PARAMS = tuple(n for n, t in PARAM_TYPES.items() if t is int or int in get_args(t))


class SweepConfigError(ValueError):
    """A sweep specification is invalid; the message names the file, the field and the fix.

    ``source``, ``path`` (the field, e.g. ``sweep.grid.gamma[2]``) and ``detail`` (what was
    expected) are kept separately when known, so that a caller can name a command-line flag
    instead of the sweep-file field.
    """

    def __init__(self, message: str, source: str | None = None, path: str | None = None,
                 detail: str | None = None) -> None:
        super().__init__(message)
        self.source, self.path, self.detail = source, path, detail

    @classmethod
    def at(cls, path: str, detail: str, source: str | None = None) -> SweepConfigError:
        """The error of field ``path``: ``<source>: <path>: <detail>`` (``<path>: <detail>`` until the
        source is known: :func:`~mmray.tuning.config.spec_from_dict` adds it)."""
        return cls(f"{path}: {detail}" if source is None else f"{source}: {path}: {detail}", source, path, detail)


class RLOptions(TypedDict, total=False):
    """The PPO hyperparameters an ``rl`` sweep can vary (fields of
    :class:`mmray.tuning.rl.PPOTrainConfig`: :class:`~mmray.tuning.rl.PPOTrainConfig`'s, plus
    ``clip_param`` and ``lr_end``, the end of a linear learning-rate decay)."""

    lr: float
    lr_end: float
    initial_log_std: float
    entropy_coeff: float
    clip_param: float
    minibatch_size: int
    num_epochs: int
    lambda_: float
    vf_clip_param: float


RL_PARAM_TYPES: dict[str, Any] = get_type_hints(RLOptions)
RL_PARAMS = tuple(RL_PARAM_TYPES)
RL_INTEGER_PARAMS = tuple(n for n, t in RL_PARAM_TYPES.items() if t is int)


@dataclass(frozen=True)
class Range:
    """A range searched by random or Optuna search.

    Attributes
    ----------
    low, high : float
        Bounds (both included).
    log : bool
        Sample uniformly in ``log`` space (needs ``low > 0``).
    integer : bool
        Integer values only (``int: true`` in a sweep file).
    """

    low: float
    high: float
    log: bool = False
    integer: bool = False


@dataclass(frozen=True)
class AshaSpec:
    """Asynchronous successive halving (``ASHAScheduler``) over Monte Carlo batches.

    A trial evaluates its paths in ``rungs`` equal batches and reports the metric on all paths
    so far after each; ASHA stops the worse trials early.
    """

    rungs: int = 4
    grace_period: int = 1
    reduction_factor: int = 2


@dataclass(frozen=True)
class SearchSpec:
    """How trials are chosen and what they are ranked by.

    Attributes
    ----------
    algorithm : {"grid", "random", "optuna"}
        Grid search over ``grid`` values; random or Optuna (TPE) search over ``grid`` (as
        choices) and ``space`` (ranges).
    metric : str
        Backtest metric to rank (and for Optuna/ASHA, to optimise): one of :data:`METRIC_MODES`.
    mode : {"max", "min"}
        Direction; default from :data:`METRIC_MODES`.
    num_samples : int
        Trials for random/Optuna search; must be 1 for grid search.
    max_concurrent : int
        Most trials at once (0: as many as the resources allow; Optuna: 2, see :attr:`concurrency`).
    asha : AshaSpec or None
        Early stopping with ASHA (needs ``rungs >= 2``).
    """

    algorithm: str = "grid"
    metric: str = "sharpe"
    mode: str = "max"
    num_samples: int = 1
    max_concurrent: int = 0
    asha: AshaSpec | None = None

    #: trials Optuna runs at once when ``max_concurrent`` is 0 (its ConcurrencyLimiter default here)
    OPTUNA_CONCURRENCY: ClassVar[int] = 2

    @property
    def concurrency(self) -> int:
        """The limit on trials at once that the search applies (0: none, the resources decide)."""
        if self.max_concurrent:
            return self.max_concurrent
        return self.OPTUNA_CONCURRENCY if self.algorithm == "optuna" else 0


@dataclass(frozen=True)
class ResourceSpec:
    """Resources of one trial.

    Attributes
    ----------
    cpus_per_trial : float
        CPUs a trial reserves (fractional: several short trials per core).
    mc_ray : bool
        Run the trial's Monte Carlo chunks as Ray tasks (:func:`mmray.distributed.map_chunks`).
        The trial then reserves a placement group of ``mc_workers`` 1-CPU bundles for those
        tasks and no CPU for itself, so nested tasks can never wait for CPUs held by trials.
    mc_workers : int
        1-CPU bundles reserved per trial when ``mc_ray`` is on.
    reuse_actors : bool
        Reuse trial actors between trials (cuts per-trial overhead).
    """

    cpus_per_trial: float = 0.5
    mc_ray: bool = False
    mc_workers: int = 1
    reuse_actors: bool = True


@dataclass(frozen=True)
class FaultSpec:
    """Testing hook: trials whose parameters match ``match`` fail on their first ``times`` attempts.

    ``how="raise"`` raises an exception; ``how="exit"`` kills the worker process (``os._exit``).
    """

    match: Mapping[str, Any]
    times: int = 1
    how: str = "raise"


@dataclass(frozen=True)
class FailureSpec:
    """Retries (Tune ``FailureConfig``) and injected faults (tests)."""

    max_failures: int = 2
    inject: tuple[FaultSpec, ...] = ()


@dataclass(frozen=True)
class RobustnessSpec:
    """Model misspecification: the true market is the base market with factors applied.

    Attributes
    ----------
    perturb : tuple of (name, factors)
        Multiplicative factors per parameter (``sigma``, ``A``, ``k``).
    combine : {"one-at-a-time", "grid"}
        One parameter perturbed at a time (plus the nominal point), or every combination.
    """

    perturb: tuple[tuple[str, tuple[float, ...]], ...]
    combine: str = "one-at-a-time"

    def scenarios(self) -> list[dict[str, float]]:
        """The factor combinations, nominal first, in a fixed order."""
        names = [n for n, _ in self.perturb]
        nominal = dict.fromkeys(names, 1.0)
        out = [nominal]
        if self.combine == "grid":
            import itertools

            for combo in itertools.product(*(f for _, f in self.perturb)):
                out.append(dict(zip(names, (float(c) for c in combo), strict=True)))
        else:
            for name, factors in self.perturb:
                for f in factors:
                    out.append({**nominal, name: float(f)})
        seen: list[dict[str, float]] = []
        for s in out:
            if s not in seen:
                seen.append(s)
        return seen


@dataclass(frozen=True)
class SolverSpec:
    """The solver of the ``optimal`` strategy.

    Attributes
    ----------
    method : str
        One of :data:`mmray.solvers.METHODS` (``exact`` by default); a ``method`` grid overrides it.
    options : mapping
        Fixed keyword options of :func:`mmray.solvers.solve` (``solver.<option>`` grid values
        override them); ``constraints`` is a mapping of constraint fields.
    """

    method: str = "exact"
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RLSpec:
    """What an ``rl`` sweep trains: RLlib PPO, each configuration once per seed (:mod:`mmray.tuning.rl_sweep`).

    Attributes
    ----------
    train : mapping
        Fixed fields of every trial's :class:`~mmray.tuning.rl.PPOTrainConfig` (``sweep.rl``):
        the per-trial budget (``iterations``, ``timesteps``, ``time_budget``: at least one), network,
        batch and evaluation settings; swept ones (``grid``/``space``) override them.
    env : mapping
        Fields of :class:`mmray.envs.EnvConfig` beyond the market, problem and step (``sweep.env``:
        ``action_mode``, ``offset_low``, ``offset_high``, ``reward_scale``, ``features`` ...).
    seeds : tuple of int
        RLlib seeds: every configuration is trained once with each (a grid dimension of the sweep).
    algorithm : str
        ``ppo``.
    seeds_from_sweep_seed : bool
        The seeds were given as a count (``seeds: 3``: the sweep's ``seed``, ``seed + 1``, ...), so a new
        sweep seed (``--seed``) moves them; ``False`` for an explicit list.
    """

    train: Mapping[str, Any] = field(default_factory=dict)
    env: Mapping[str, Any] = field(default_factory=dict)
    seeds: tuple[int, ...] = (0, 1)
    algorithm: str = "ppo"
    seeds_from_sweep_seed: bool = True


@dataclass(frozen=True)
class SweepSpec:
    """A complete, validated sweep.

    Attributes
    ----------
    kind : str
        ``risk-aversion``, ``hparams``, ``robustness`` or ``rl``.
    name : str
        Run name prefix.
    seed : int
        Root seed: every trial's Monte Carlo seed derives from it.
    market, problem, sim : MarketParams, ProblemParams, SimConfig
        The base point every trial starts from (``sim.seed`` is replaced per trial).
    strategies : tuple of str
        Strategies compared (a grid dimension of the sweep).
    grid : dict
        Explicit values per swept parameter.
    space : dict
        :class:`Range` per swept parameter (random / Optuna).
    robustness : RobustnessSpec or None
        Perturbations (``kind="robustness"`` only).
    search, resources, failure : SearchSpec, ResourceSpec, FailureSpec
    common_random_numbers : bool
        All trials use the same Monte Carlo seed (paired comparisons), else each trial's seed
        derives from its parameters.
    solver : SolverSpec
        Solver method and fixed options of the ``optimal`` strategy.
    rl : RLSpec or None
        What an ``rl`` sweep trains (``kind="rl"`` only; it has no strategies, solver or Monte Carlo).
    source : str
        Where the spec came from (file path or ``<builtin ...>``), for messages.
    """

    kind: str
    name: str
    seed: int = 0
    market: MarketParams = field(default_factory=MarketParams)
    problem: ProblemParams = field(default_factory=ProblemParams)
    sim: SimConfig = field(default_factory=SimConfig)
    strategies: tuple[str, ...] = ("optimal",)
    grid: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    space: Mapping[str, Range] = field(default_factory=dict)
    robustness: RobustnessSpec | None = None
    search: SearchSpec = field(default_factory=SearchSpec)
    resources: ResourceSpec = field(default_factory=ResourceSpec)
    failure: FailureSpec = field(default_factory=FailureSpec)
    common_random_numbers: bool = True
    solver: SolverSpec = field(default_factory=lambda: SolverSpec())
    rl: RLSpec | None = None
    source: str = "<builtin>"

    @property
    def param_names(self) -> tuple[str, ...]:
        """Swept parameter names in table order (``strategy`` first; an ``rl`` sweep: its hyperparameters)."""
        if self.rl is not None:
            return (*self.grid, *self.space)
        names = ["strategy", *self.grid, *self.space]
        if self.robustness is not None:
            names += [f"{n}_factor" for n, _ in self.robustness.perturb]
        return tuple(names)

    def to_dict(self) -> dict[str, Any]:
        """The spec in sweep-file form (``{"sweep": {...}}``); :func:`spec_from_dict` reads it back."""
        sim = self.sim.to_dict()
        sim.pop("seed")
        if self.rl is not None:
            return {"sweep": self._rl_dict({k: sim[k] for k in RL_SIM_FIELDS})}
        body: dict[str, Any] = {
            "kind": self.kind, "name": self.name, "seed": self.seed,
            "common_random_numbers": self.common_random_numbers,
            "market": self.market.to_dict(), "problem": self.problem.to_dict(), "sim": sim,
            "strategies": list(self.strategies),
            "solver": {"method": self.solver.method, "options": json.loads(json.dumps(dict(self.solver.options)))},
            **self._search_dict(),
            "resources": vars(self.resources).copy(),
            "failure": {
                "max_failures": self.failure.max_failures,
                "inject": [{"match": dict(f.match), "times": f.times, "how": f.how} for f in self.failure.inject],
            },
        }
        if self.robustness is not None:
            body["perturb"] = {n: list(f) for n, f in self.robustness.perturb}
            body["combine"] = self.robustness.combine
        return {"sweep": body}

    def _search_dict(self) -> dict[str, Any]:
        """The sweep-file sections of what varies and how it is searched: ``grid``, ``space``, ``search``."""
        search = self.search
        return {
            "grid": {k: list(v) for k, v in self.grid.items()},
            "space": {k: {"low": r.low, "high": r.high, "log": r.log, "int": r.integer} for k, r in self.space.items()},
            "search": {
                "algorithm": search.algorithm, "metric": search.metric, "mode": search.mode,
                "num_samples": search.num_samples, "max_concurrent": search.max_concurrent,
                "asha": None if search.asha is None else vars(search.asha).copy(),
            },
        }

    def _rl_dict(self, sim: dict[str, Any]) -> dict[str, Any]:
        """The sweep-file body of an ``rl`` sweep (no strategies, solver or Monte Carlo settings)."""
        rl = self.rl
        if rl is None:
            raise ValueError(f"{self.kind} sweep: no rl section")
        seeds: int | list[int] = len(rl.seeds) if rl.seeds_from_sweep_seed else list(rl.seeds)
        return {
            "kind": self.kind, "name": self.name, "seed": self.seed, "seeds": seeds,
            "market": self.market.to_dict(), "problem": self.problem.to_dict(), "sim": sim,
            "env": json.loads(json.dumps(dict(rl.env))),
            "rl": {"algorithm": rl.algorithm, **json.loads(json.dumps(dict(rl.train)))},
            **self._search_dict(),
            "resources": {"cpus_per_trial": self.resources.cpus_per_trial, "reuse_actors": self.resources.reuse_actors},
            "failure": {
                "max_failures": self.failure.max_failures,
                "inject": [{"match": dict(f.match), "times": f.times, "how": f.how} for f in self.failure.inject],
            },
        }

    def replace(self, **changes: Any) -> SweepSpec:
        """A copy with some fields changed (validated again through :func:`spec_from_dict`)."""
        from mmray.tuning.config import spec_from_dict  # the parser imports these types

        spec = replace(self, **changes)
        return spec_from_dict(spec.to_dict(), source=spec.source)


def param_kind(name: str) -> str:
    """Where a swept parameter goes: market | problem | sim | strategy | method | solver (every sweep but
    ``rl``, whose parameters are :data:`RL_PARAMS`)."""
    if name.startswith("solver.") and len(name) > len("solver."):
        return "solver"
    if name in MARKET_FIELDS:
        return "market"
    if name in PROBLEM_FIELDS:
        return "problem"
    if name in SIM_FIELDS:
        return "sim"
    if name in STRATEGY_OPTIONS:
        return "strategy"
    if name == "method":
        return "method"
    raise KeyError(name)
