"""Turn a :class:`~mmray.tuning.config.SweepSpec` into Ray Tune objects.

* :func:`param_space` - ``tune.grid_search`` for grid sweeps; ``tune.choice`` and
  ``tune.uniform``/``loguniform``/``randint``/``lograndint`` for random and Optuna search;
  robustness sweeps grid over the perturbation scenarios;
* :func:`search_algorithm` - seeded ``BasicVariantGenerator`` (grid, random) or
  ``OptunaSearch`` (TPE, seeded) inside a ``ConcurrencyLimiter``;
* :func:`scheduler` - ``ASHAScheduler`` over Monte Carlo rungs, else FIFO;
* :func:`trainable` - :func:`~mmray.tuning.trainables.run_trial` with the spec bound by
  ``tune.with_parameters`` and its resources by ``tune.with_resources``: fractional CPUs, or
  with ``mc_ray`` a placement group of an empty head bundle plus ``mc_workers`` 1-CPU bundles
  that the trial's nested Monte Carlo tasks run in (Tune captures child tasks in the trial's
  placement group, so they can never wait on CPUs held by other trials).

An ``rl`` sweep's versions of each are in :mod:`mmray.tuning.rl_sweep` (seeds as a grid axis, Optuna
repeated per seed, ASHA over fractions of the training budget, RLlib's placement group); the functions
here dispatch to them.
"""

from __future__ import annotations

import math
from typing import Any

from mmray.tuning.spec import Range, SweepSpec


def range_domain(r: Range) -> Any:
    """The Tune sampler of a :class:`~mmray.tuning.spec.Range`."""
    from ray import tune

    if r.integer:
        low, high = int(r.low), int(r.high) + 1  # randint's upper bound is exclusive
        return tune.lograndint(low, high) if r.log else tune.randint(low, high)
    return tune.loguniform(r.low, r.high) if r.log else tune.uniform(r.low, r.high)


def param_space(spec: SweepSpec) -> dict[str, Any]:
    """Tune ``param_space``: the swept parameters only (the base point travels with the trainable)."""
    from ray import tune

    if spec.kind == "rl":
        from mmray.tuning.rl_sweep import param_space as rl_param_space

        return rl_param_space(spec)

    grid = spec.search.algorithm == "grid"

    def values(v: list[Any]) -> Any:
        if grid:
            return tune.grid_search(list(v))
        return tune.choice(list(v)) if len(v) > 1 else v[0]

    space: dict[str, Any] = {"strategy": values(list(spec.strategies))}
    for name, vals in spec.grid.items():
        space[name] = values(list(vals))
    for name, r in spec.space.items():
        space[name] = range_domain(r)
    if spec.robustness is not None:
        space["scenario"] = tune.grid_search(spec.robustness.scenarios())
    return space


def n_trials(spec: SweepSpec) -> int:
    """How many trials the sweep runs when nothing stops it: the grid size (strategies x grid values
    x robustness scenarios), or ``num_samples`` for random and Optuna search; an ``rl`` sweep: configurations
    x seeds."""
    if spec.kind == "rl":
        from mmray.tuning.rl_sweep import n_trials as rl_trials

        return rl_trials(spec)
    if spec.search.algorithm != "grid":
        return spec.search.num_samples
    n = len(spec.strategies) * math.prod(len(v) for v in spec.grid.values())
    if spec.robustness is not None:
        n *= len(spec.robustness.scenarios())
    return n


def search_algorithm(spec: SweepSpec) -> Any:
    """Seeded search algorithm, or ``None`` for Tune's default grid generator."""
    from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter

    if spec.kind == "rl":
        from mmray.tuning.rl_sweep import search_algorithm as rl_search

        return rl_search(spec)

    s = spec.search
    if s.algorithm == "optuna":
        import optuna
        from ray.tune.search.optuna import OptunaSearch

        sampler = optuna.samplers.TPESampler(seed=spec.seed, n_startup_trials=max(2, min(8, s.num_samples // 2)))
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        alg = OptunaSearch(metric=s.metric, mode=s.mode, sampler=sampler)
        return ConcurrencyLimiter(alg, max_concurrent=s.concurrency)
    if s.algorithm == "random":
        return BasicVariantGenerator(random_state=spec.seed, max_concurrent=s.max_concurrent)
    return BasicVariantGenerator(max_concurrent=s.max_concurrent)


def scheduler(spec: SweepSpec) -> Any:
    """``ASHAScheduler`` over Monte Carlo rungs when the sweep asks for it, else ``None`` (FIFO)."""
    if spec.kind == "rl":
        from mmray.tuning.rl_sweep import scheduler as rl_scheduler

        return rl_scheduler(spec)
    a = spec.search.asha
    if a is None:
        return None
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(time_attr="training_iteration", max_t=a.rungs, grace_period=a.grace_period,
                         reduction_factor=a.reduction_factor)


def trial_resources(spec: SweepSpec) -> Any:
    """Per-trial resources: ``{"cpu": x}`` or, with ``mc_ray``, a placement group factory; an ``rl`` sweep: the
    placement group RLlib asks for (:func:`mmray.tuning.rl_sweep.trial_resources`)."""
    from ray import tune

    if spec.kind == "rl":
        from mmray.tuning.rl_sweep import trial_resources as rl_resources

        return rl_resources(spec)

    r = spec.resources
    if r.mc_ray:
        return tune.PlacementGroupFactory([{}] + [{"CPU": 1.0}] * r.mc_workers, strategy="PACK")
    return {"cpu": r.cpus_per_trial}


def num_samples(spec: SweepSpec) -> int:
    """Tune's ``num_samples`` of the sweep (an ``rl`` sweep with Optuna counts its seeds too)."""
    if spec.kind == "rl":
        from mmray.tuning.rl_sweep import tune_num_samples

        return tune_num_samples(spec)
    return spec.search.num_samples


def trainable(spec: SweepSpec, run_dir: str | None = None) -> Any:
    """The Tune trainable of ``spec`` (also what ``Tuner.restore`` needs again on resume); an ``rl`` sweep's
    carries the optimality benchmark of its env (built once, or loaded from ``<run_dir>/benchmark``)."""
    from ray import tune

    if spec.kind == "rl":
        from mmray.tuning.rl_sweep import trainable as rl_trainable

        return rl_trainable(spec, run_dir)

    from mmray.tuning.trainables import run_trial

    return tune.with_resources(tune.with_parameters(run_trial, spec=spec), trial_resources(spec))
