"""What one trial does: build a policy with the plain solver functions, backtest it, report.

:func:`evaluate_trial` is plain Python (no Ray): parameters in, metrics out. :func:`run_trial`
is the Ray Tune function trainable around it; it adds ``tune.report`` (once, or once per
Monte Carlo rung for ASHA), attempt counting and the fault-injection testing hook.

Strategy names are those of :func:`mmray.make_strategy` plus ``discrete_optimal``, which only a sweep
builds: the optimum of the simulator's own discrete-time problem (the ``pi`` solver at the trial's
``dt``, fill and price models, on a quote grid chosen from the model,
:func:`discrete_optimal_options`). ``optimal`` is the continuous-time optimum of the model; in a
simulator that steps in ``dt`` with at most one fill per side per step it is a proxy, and
``discrete_optimal`` beside it shows what the proxy costs (:data:`STRATEGY_LABELS`).

For ``ce_A`` and ``value_B``, which are measured with the trial's own ``gamma``, a risk-aversion trial also
reports the metric at the sweep's reference risk aversion ``problem.gamma`` (``<metric>_ref``), the one
yardstick that ranks the points of a frontier (:func:`reference_metrics`).

Robustness trials build the policy for the base ("believed") market, simulate it in the
perturbed ("true") market, and compare with the policy that is optimal for the true market on
the same paths (common random numbers): ``loss = metric(true optimum) - metric(policy)``
(sign flipped for metrics that are minimised) with a paired standard error.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from mmray.backtest import METRIC_KEYS, backtest, compute_metrics
from mmray.objectives import influence
from mmray.params import MarketParams, ProblemParams, SimConfig
from mmray.policy import Policy
from mmray.tuning.seeds import trial_seed
from mmray.tuning.spec import INTEGER_PARAMS, SweepSpec, param_kind

#: metrics every trial reports (and every results table holds), after the sweep's own metric
KEY_METRICS = ("pnl_mean", "pnl_std", "q_final_std", "sharpe", "ce_A", "value_B")
#: metrics that depend on the trial's own ``gamma`` (the objectives): a risk-aversion sweep ranks its
#: points by them at one reference ``gamma`` (:func:`reference_metrics`)
GAMMA_METRICS = ("ce_A", "value_B")
#: how tables, reports and plots name the strategies whose short names could mislead
STRATEGY_LABELS = {"optimal": "optimal (continuous-time)", "discrete_optimal": "optimal (discrete-time)"}
#: most quote levels of the ``discrete_optimal`` strategy's grid (a coarser round tick beyond: the
#: policy-iteration step costs levels squared per inventory and time step)
DISCRETE_MAX_LEVELS = 36


def strategy_label(name: str) -> str:
    """The strategy's name as tables and reports show it (``optimal (continuous-time)``)."""
    return STRATEGY_LABELS.get(name, name)


@dataclass(frozen=True)
class TrialSetup:
    """Everything one trial needs, resolved from the sweep spec and the trial's parameters.

    Attributes
    ----------
    strategy : str
        Strategy name (:data:`mmray.strategies.STRATEGIES`).
    market : MarketParams
        The market the policy is built for.
    problem : ProblemParams
    sim : SimConfig
        Backtest configuration with the trial's seed.
    method : str
        Solver method of the ``optimal`` strategy.
    strategy_options : dict
        ``half_spread``, ``skew``, ``n_times`` for :func:`mmray.make_strategy`.
    solver_options : dict
        Keyword options for :func:`mmray.solvers.solve`.
    true_market : MarketParams or None
        Robustness: the market that is simulated (``None``: ``market``).
    """

    strategy: str
    market: MarketParams
    problem: ProblemParams
    sim: SimConfig
    method: str = "exact"
    strategy_options: dict[str, Any] = field(default_factory=dict)
    solver_options: dict[str, Any] = field(default_factory=dict)
    true_market: MarketParams | None = None

    @property
    def simulated_market(self) -> MarketParams:
        return self.market if self.true_market is None else self.true_market


def trial_setup(spec: SweepSpec, params: Mapping[str, Any]) -> TrialSetup:
    """Resolve a trial's parameters (a Tune config) against the sweep's base point."""
    market, problem, sim = spec.market.to_dict(), spec.problem.to_dict(), spec.sim.to_dict()
    strategy_options: dict[str, Any] = {}
    solver_options: dict[str, Any] = {k: v for k, v in spec.solver.options.items() if k != "constraints"}
    constraints: dict[str, Any] = dict(spec.solver.options.get("constraints") or {})
    method = spec.solver.method
    for name, value in params.items():
        if name in ("strategy", "scenario"):
            continue
        kind = param_kind(name)
        if kind == "market":
            market[name] = value
        elif kind == "problem":
            problem[name] = value
        elif kind == "sim":
            sim[name] = value
        elif kind == "strategy":
            strategy_options[name] = value
        elif kind == "method":
            method = value
        else:
            option = name.removeprefix("solver.")
            if option.startswith("constraints."):
                constraints[option.removeprefix("constraints.")] = value
            else:
                solver_options[option] = value
    for d in (problem, sim, strategy_options):  # integer parameters may arrive as integral floats
        for name in INTEGER_PARAMS:
            if isinstance(d.get(name), float) and d[name].is_integer():
                d[name] = int(d[name])
    if constraints:
        solver_options["constraints"] = _constraints(constraints)
    sim["seed"] = trial_seed(spec.seed, params, spec.common_random_numbers)
    m = MarketParams.from_dict(market)
    true_market = None
    if "scenario" in params:
        factors = params["scenario"]
        true_market = m.replace(**{k: getattr(m, k) * float(f) for k, f in factors.items()})
    return TrialSetup(
        strategy=str(params.get("strategy", spec.strategies[0])), market=m,
        problem=ProblemParams.from_dict(problem), sim=SimConfig.from_dict(sim), method=method,
        strategy_options=strategy_options, solver_options=solver_options, true_market=true_market,
    )


def _constraints(fields: Mapping[str, Any]) -> Any:
    """The ``constraints`` solver option (obligations, risk limits) from its fields."""
    from mmray.solvers import Constraints

    return Constraints.from_dict(dict(fields))


def discrete_optimal_options(setup: TrialSetup) -> dict[str, Any]:
    """Options of the ``pi`` solve that builds the ``discrete_optimal`` strategy: the trial's ``dt``, fill and
    price models, and a quote grid from the model (:func:`mmray.solvers.grids.model_grid`): the market's
    tick if it has one, else a fine round tick, over the offsets the optimum can want."""
    from mmray.solvers.grids import model_grid

    sim = setup.sim
    tick, levels = model_grid(setup.market, setup.problem, tick=setup.market.tick or None,
                              max_levels=DISCRETE_MAX_LEVELS, dt=sim.dt, fill_model=sim.fill_model)
    return {"dt": sim.dt, "fill_model": sim.fill_model, "price_model": sim.price_model, "tick": tick,
            "levels": [int(v) for v in levels]}


def build_policy(setup: TrialSetup) -> Policy:
    """The trial's policy, from :func:`mmray.make_strategy` or :func:`mmray.solvers.solve`."""
    from mmray.strategies import make_strategy

    opts = setup.strategy_options
    if setup.strategy == "discrete_optimal":
        from mmray.solvers import solve

        return solve(setup.market, setup.problem, method="pi", **discrete_optimal_options(setup)).policy()
    if setup.strategy == "optimal":
        if setup.method != "exact" or setup.solver_options:
            from mmray.solvers import solve

            options = dict(setup.solver_options)
            if setup.method == "exact" and opts.get("n_times") is not None:  # also with other exact options
                options.setdefault("n_times", opts["n_times"])
            return solve(setup.market, setup.problem, method=setup.method, **options).policy()
        return make_strategy("optimal", setup.market, setup.problem, n_times=opts.get("n_times"))
    return make_strategy(setup.strategy, setup.market, setup.problem,
                         half_spread=opts.get("half_spread"), skew=opts.get("skew"))


def rung_plan(sim: SimConfig, rungs: int) -> list[list[tuple[int, np.random.SeedSequence]]]:
    """The Monte Carlo chunks of ``backtest(..., sim)`` split into ``rungs`` consecutive groups
    (as equal as whole chunks allow; the sweep file is refused when there are fewer chunks than rungs).

    Each ASHA rung simulates one group, so a trial that runs every rung has simulated exactly the
    paths of one plain backtest with the trial's seed, and reports the same numbers.
    """
    from mmray.distributed import chunk_plan

    plan = chunk_plan(sim.n_paths, sim.chunk_size, sim.seed)
    if rungs > len(plan):
        raise ValueError(f"{rungs} ASHA rungs need at least {rungs} Monte Carlo chunks; n_paths={sim.n_paths} with "
                         f"chunk_size={sim.chunk_size} makes {len(plan)}")
    cuts = [r * len(plan) // rungs for r in range(rungs + 1)]
    return [plan[a:b] for a, b in itertools.pairwise(cuts)]


def _run_batches(
    policy: Policy, setup: TrialSetup, rungs: int, use_ray: bool,
    on_rung: Callable[[dict[str, float], int], None] | None,
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Backtest in ``rungs`` groups of whole chunks; ``on_rung(metrics_so_far, paths_so_far)`` after each.

    One rung is :func:`mmray.backtest` itself; with more, the chunks of the same plain backtest run
    group by group and the metrics are computed over every chunk so far, so after the last group
    they are those of ``backtest(policy, market, problem, setup.sim)`` bit for bit (the simulator
    itself keeps a policy on its own tick grid from being rounded twice).
    """
    market = setup.simulated_market
    problem, sim = setup.problem, setup.sim
    if rungs == 1:
        res = backtest(policy, market, problem, sim, use_ray=use_ray)
        if on_rung is not None:
            on_rung(res.metrics, sim.n_paths)
        return res.metrics, res.per_path
    from mmray.backtest import merge_chunks
    from mmray.distributed import map_chunks
    from mmray.sim import ChunkResult, simulate_chunk

    sim.check(market, problem)
    chunks: list[ChunkResult] = []
    metrics: dict[str, float] = {}
    per_path: dict[str, np.ndarray] = {}
    for group in rung_plan(sim, rungs):
        chunks += map_chunks(simulate_chunk, [(size, seq, 0) for size, seq in group],
                             shared=(policy, market, problem, sim), use_ray=use_ray)
        metrics, per_path, _ = merge_chunks(chunks, market, problem)
        if on_rung is not None:
            on_rung(metrics, int(per_path["pnl"].size))
    return metrics, per_path


def ordered(spec: SweepSpec, metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Metrics with the sweep's metric (and robustness loss) first: Tune's table shows the first 4."""
    metric = spec.search.metric
    first = ["loss", "loss_rel", metric] if spec.kind == "robustness" else [metric, f"{metric}_ref"]
    keys = [*first, *KEY_METRICS, *METRIC_KEYS]
    keys += [f"{k}_se" for k in keys] + list(metrics)
    out: dict[str, Any] = {}
    for k in keys:
        if k in metrics and k not in out:
            out[k] = metrics[k]
    return out


def evaluate_trial(
    spec: SweepSpec,
    params: Mapping[str, Any],
    use_ray: bool | None = None,
    on_rung: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Solve and backtest one trial; plain Python (Ray only if ``use_ray``).

    Parameters
    ----------
    spec : SweepSpec
    params : mapping
        The trial's swept parameters (its Tune config).
    use_ray : bool, optional
        Monte Carlo chunks as Ray tasks; default ``spec.resources.mc_ray``.
    on_rung : callable, optional
        Called with the metrics so far after each ASHA rung (all but the last).

    Returns
    -------
    dict
        Ordered metrics (see :func:`ordered`), plus ``seed`` and ``n_paths_done``.
    """
    setup = trial_setup(spec, params)
    use_ray = spec.resources.mc_ray if use_ray is None else use_ray
    rungs = spec.search.asha.rungs if spec.search.asha is not None else 1
    policy = build_policy(setup)
    extra = {"seed": setup.sim.seed}

    def rung(metrics: dict[str, float], done: int) -> None:
        if on_rung is not None and done < setup.sim.n_paths:
            on_rung({**ordered(spec, metrics), **extra, "n_paths_done": done})

    metrics, per_path = _run_batches(policy, setup, rungs, use_ray, rung)
    out = dict(metrics)
    out.update(reference_metrics(spec, setup, per_path))
    if setup.true_market is not None:
        out.update(_robustness_loss(spec, setup, policy, metrics, per_path, use_ray))
    return {**ordered(spec, out), **extra, "n_paths_done": setup.sim.n_paths}


def reference_metrics(spec: SweepSpec, setup: TrialSetup, per_path: Mapping[str, np.ndarray]) -> dict[str, float]:
    """``<metric>_ref`` and its SE: a risk-aversion trial's ``ce_A`` or ``value_B`` measured at the sweep's
    reference ``gamma`` (``spec.problem.gamma``) instead of the trial's own; empty for other sweeps and metrics.

    Each trial's ``ce_A`` is the certainty equivalent of a maker with the trial's ``gamma``: across a frontier
    it grows as ``gamma`` shrinks, whatever the policy. Measured for one maker, it says which ``gamma`` of
    each strategy serves that maker best (for ``optimal``, the reference ``gamma`` itself, up to noise and
    the continuous-time proxy's error).
    """
    metric = spec.search.metric
    if spec.kind != "risk-aversion" or metric not in GAMMA_METRICS:
        return {}
    reference = setup.problem.replace(gamma=spec.problem.gamma)
    m = compute_metrics(dict(per_path), setup.simulated_market, reference)
    return {f"{metric}_ref": m[metric], f"{metric}_ref_se": m[f"{metric}_se"]}


def _robustness_loss(
    spec: SweepSpec, setup: TrialSetup, policy: Policy, metrics: Mapping[str, float],
    per_path: Mapping[str, np.ndarray], use_ray: bool,
) -> dict[str, float]:
    metric = spec.search.metric
    truth_setup = replace(setup, strategy="optimal", market=setup.simulated_market, strategy_options={})
    if truth_setup == replace(setup, strategy_options={}):  # already the optimum of the simulated market
        t_metrics, t_paths = metrics, per_path
    else:
        t_metrics, t_paths = _run_batches(build_policy(truth_setup), truth_setup, 1, use_ray, None)
    sign = 1.0 if spec.search.mode == "max" else -1.0
    truth, value = t_metrics[metric], metrics[metric]
    loss = sign * (truth - value)
    a = influence(metric, t_paths, setup.simulated_market, setup.problem)
    b = influence(metric, per_path, setup.simulated_market, setup.problem)
    n = per_path["pnl"].size
    se = float(np.std(a - b, ddof=1) / math.sqrt(n)) if a is not None and b is not None and n > 1 else float("nan")
    return {
        "loss": float(loss), "loss_se": se,
        "loss_rel": float(loss / abs(truth)) if truth else float("nan"),
        f"truth_{metric}": float(truth),
    }


# --------------------------------------------------------------------------- Tune side


def attempt_number() -> int:
    """This trial's attempt number (1 outside Tune), counted with marker files.

    The markers live under the trial's working directory (Tune's cwd for the trial, stable
    across retries in new or reused actors, unlike ``get_trial_dir()``), keyed by trial id.
    """
    try:
        from ray import tune

        trial_id = tune.get_context().get_trial_id()
    except Exception:  # not inside a Tune trial
        return 1
    if not trial_id:
        return 1
    marker_dir = os.path.join(os.getcwd(), ".mmray-attempts", str(trial_id))
    os.makedirs(marker_dir, exist_ok=True)
    n = 1 + len(os.listdir(marker_dir))
    with open(os.path.join(marker_dir, str(n)), "w") as fh:
        fh.write(str(os.getpid()))
    return n


def _matches(match: Mapping[str, Any], params: Mapping[str, Any]) -> bool:
    for key, want in match.items():
        got = params.get(key)
        if isinstance(want, int | float) and isinstance(got, int | float) and not isinstance(want, bool):
            if not math.isclose(float(got), float(want), rel_tol=1e-12, abs_tol=0.0):
                return False
        elif got != want:
            return False
    return True


def inject_faults(spec: SweepSpec, params: Mapping[str, Any], attempt: int) -> None:
    """The ``failure.inject`` testing hook: fail (raise, or kill the worker) on a matching trial's first attempts."""
    for fault in spec.failure.inject:
        if _matches(fault.match, params) and attempt <= fault.times:
            if fault.how == "exit":
                os._exit(17)
            described = ", ".join(f"{k}={v}" for k, v in fault.match.items())
            raise RuntimeError(f"injected failure for trial {described} (attempt {attempt})")


FINAL_FILE = "mmray-final.json"


def restored_final() -> dict[str, Any] | None:
    """The final metrics of this trial if Tune restored it from its completion checkpoint."""
    import json

    from ray import tune

    ckpt = tune.get_checkpoint()
    if ckpt is None:
        return None
    with ckpt.as_directory() as d:
        path = os.path.join(d, FINAL_FILE)
        if not os.path.exists(path):
            return None
        with open(path) as fh:
            return json.load(fh)


def _report_final(result: dict[str, Any]) -> None:
    """Report the final metrics with a small checkpoint holding them.

    The checkpoint makes Tune save its experiment state right away (``CheckpointConfig``
    ``num_to_keep=1``), and a trial restored from it after a driver crash reports these metrics
    without running again.
    """
    import json
    import tempfile

    from ray import tune

    with tempfile.TemporaryDirectory(prefix="mmray-trial-") as d:
        with open(os.path.join(d, FINAL_FILE), "w") as fh:
            json.dump(result, fh, allow_nan=True)
        tune.report(result, checkpoint=tune.Checkpoint.from_directory(d))


def run_trial(config: dict[str, Any], spec: SweepSpec) -> None:
    """Ray Tune function trainable: one trial of ``spec`` with parameters ``config``.

    Reports the ordered metrics (once per ASHA rung when the sweep uses ASHA), the seed,
    the attempt number and the node it ran on; the final report carries a checkpoint with the
    metrics. Wrapped by :func:`tune.with_parameters`.
    """
    import ray
    from ray import tune

    final = restored_final()
    if final is not None:  # finished before a driver crash: nothing to recompute
        tune.report(final)
        return
    attempt = attempt_number()
    inject_faults(spec, config, attempt)
    info = {"attempt": attempt, "node_id": ray.get_runtime_context().get_node_id()}
    result = evaluate_trial(spec, config, on_rung=lambda m: tune.report({**m, **info}))
    _report_final({**result, **info})
