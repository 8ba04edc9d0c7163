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
"""

from __future__ import annotations

import math
from typing import Any

from mmray.tuning.spec import Range, SweepSpec


def _domain(r: Range) -> Any:
    from ray import tune

    if r.integer:
        low, high = int(r.low), int(r.high) + 1  # randint's upper bound is exclusive
        return tune.lograndint(low, high) if r.log else tune.randint(low, high)
    return tune.loguniform(r.low, r.high) if r.log else tune.uniform(r.low, r.high)


def param_space(spec: SweepSpec) -> dict[str, Any]:
    """Tune ``param_space``: the swept parameters only (the base point travels with the trainable)."""
    from ray import tune

    grid = spec.search.algorithm == "grid"

    def values(v: list[Any]) -> Any:
        if grid:
            return tune.grid_search(list(v))
        return tune.choice(list(v)) if len(v) > 1 else v[0]

    space: dict[str, Any] = {"strategy": values(list(spec.strategies))}
    for name, vals in spec.grid.items():
        space[name] = values(list(vals))
    for name, r in spec.space.items():
        space[name] = _domain(r)
    if spec.robustness is not None:
        space["scenario"] = tune.grid_search(spec.robustness.scenarios())
    return space


def n_trials(spec: SweepSpec) -> int:
    """How many trials the sweep runs when nothing stops it: the grid size (strategies x grid values
    x robustness scenarios), or ``num_samples`` for random and Optuna search."""
    if spec.search.algorithm != "grid":
        return spec.search.num_samples
    n = len(spec.strategies) * math.prod(len(v) for v in spec.grid.values())
    if spec.robustness is not None:
        n *= len(spec.robustness.scenarios())
    return n


def search_algorithm(spec: SweepSpec) -> Any:
    """Seeded search algorithm, or ``None`` for Tune's default grid generator."""
    from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter

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
    a = spec.search.asha
    if a is None:
        return None
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(time_attr="training_iteration", max_t=a.rungs, grace_period=a.grace_period,
                         reduction_factor=a.reduction_factor)


def trial_resources(spec: SweepSpec) -> Any:
    """Per-trial resources: ``{"cpu": x}`` or, with ``mc_ray``, a placement group factory."""
    from ray import tune

    r = spec.resources
    if r.mc_ray:
        return tune.PlacementGroupFactory([{}] + [{"CPU": 1.0}] * r.mc_workers, strategy="PACK")
    return {"cpu": r.cpus_per_trial}


def trainable(spec: SweepSpec) -> Any:
    """The Tune trainable of ``spec`` (also what ``Tuner.restore`` needs again on resume)."""
    from ray import tune

    from mmray.tuning.trainables import run_trial

    return tune.with_resources(tune.with_parameters(run_trial, spec=spec), trial_resources(spec))
