"""``rl`` sweeps: RLlib PPO under Ray Tune, several seeds per configuration (docs/tuning.md, kind ``rl``).

A trial is one training run of :func:`mmray.tuning.rl.train` (RLlib's env runner and learner in the
trial's own process: ``num_env_runners=0``, ``num_learners=0``, torch on ``torch_threads`` threads),
with the trial's PPO hyperparameters and RLlib seed, in the one environment of the sweep's
``market``, ``problem``, ``sim`` and ``env`` sections. Every iteration the trial reports to Tune the
figures of its best agent so far (:mod:`mmray.tuning.rl_eval`: ``gap_closed``, ``optimality_ratio``
and their standard errors, ``agent_value``), the iteration's own ``gap_closed_iter``, ``env_steps``,
``wall_s`` and ``budget_fraction`` (how much of the per-trial budget is used); a report whose best
agent improved carries a Tune checkpoint holding that agent (``policy/``, an mmray ``mlp``
checkpoint), and the last report (``rl_done``) also the learning curves. The optimality benchmark
is built once per sweep in the driver (:func:`sweep_benchmark`, saved as ``benchmark/`` in the run
directory) and shared with every trial through the object store.

* Seeds are a grid dimension: grid and random search train every configuration with each seed of
  :attr:`~mmray.tuning.spec.RLSpec.seeds` (random search draws a configuration once and keeps it
  for all its seeds: ``constant_grid_search``); Optuna suggests configurations and Tune's
  ``Repeater`` trains each once per seed and hands Optuna their mean.
* ASHA (``search.asha``) stops the worse trials at fractions of the budget: a trial's budget is
  split into ``rungs`` equal parts (``budget_rungs`` = rungs x budget fraction) and trials are
  compared at ``grace_period x reduction_factor^k`` parts.
* Results (:func:`write_artefacts`): one row per trial (``results.csv``), one row per configuration
  with the mean and standard error of the metric over its seeds (``configs.csv``); the best
  configuration is the one with the highest mean, and the best agent among its seeds is exported to
  ``best_policy/`` (an mmray checkpoint that ``mmray backtest --policy`` and :func:`mmray.load_policy`
  read; the report prints the command).

A trial's settings are :class:`~mmray.tuning.rl.PPOTrainConfig`'s fields (with ``clip_param`` and
``lr_end``, a linear learning-rate decay from ``lr`` over ``lr_decay_steps`` env steps, default the
``timesteps`` budget), so a trial's run directory reads back like any training run's.

Importing this module imports neither Ray nor torch.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mmray.envs.config import EnvConfig
from mmray.io import atomic_write
from mmray.tuning.rl import BEST_FILE, POLICY_DIR, RESULT_FILE, STOP_FIELDS, PPOTrainConfig, training_env
from mmray.tuning.rl_curves import CURVES_CSV, CURVES_PNG, QUOTES_PNG
from mmray.tuning.spec import RL_INTEGER_PARAMS, RL_PARAMS, RL_SIM_FIELDS, SweepSpec

#: the parameter Repeater (Optuna) sets in a trial's config: the index of its seed in ``RLSpec.seeds``
TRIAL_INDEX = "__trial_index__"
#: :class:`mmray.envs.EnvConfig` fields set by the sweep's market, problem and sim sections; the others
#: (the agent's interface: actions, offsets, reward, features) are ``sweep.env``
ENV_MODEL_FIELDS = ("market", "problem", *RL_SIM_FIELDS)
#: :class:`PPOTrainConfig` fields an ``rl`` sweep sets itself (``sweep.rl`` may not)
SET_BY_SWEEP = ("env", "seed")
#: figures of the best agent reported by every trial (:class:`mmray.tuning.rl_eval.OptimalityFigures`)
FIGURES = ("gap_closed", "gap_closed_se", "optimality_ratio", "optimality_ratio_se", "agent_value", "agent_value_se",
           "reference_value", "baseline_value", "exact_policy_value")
#: per-trial columns of the results table after the parameters, ``seed`` and ``status``
TRIAL_COLUMNS = (*FIGURES, "eval_method", "best_iteration", "iterations", "env_steps", "wall_s")
#: set (to 1) in a trial's last report only: the trial trained its whole budget (its status is then ``ok``)
DONE_KEY = "rl_done"
CONFIGS_FILES = ("configs.parquet", "configs.csv")
BENCHMARK_DIR = "benchmark"


def env_fields() -> tuple[str, ...]:
    """The :class:`~mmray.envs.EnvConfig` fields of ``sweep.env`` (all but the model's)."""
    return tuple(f.name for f in fields(EnvConfig) if f.name not in ENV_MODEL_FIELDS)


# --------------------------------------------------------------------------- a trial's run


def env_config(spec: SweepSpec) -> EnvConfig:
    """The environment every trial of ``spec`` trains in: training's reward variant
    (:func:`mmray.tuning.rl.training_env`) unless ``sweep.env`` gives ``reward``."""
    assert spec.rl is not None, "env_config needs an rl sweep"
    sim = spec.sim
    env = dict(spec.rl.env)
    if isinstance(env.get("features"), list):
        env["features"] = tuple(env["features"])
    return training_env(market=spec.market, problem=spec.problem, dt=sim.dt, fill_model=sim.fill_model,
                        price_model=sim.price_model, q0=sim.q0, **env)


def trial_seed(spec: SweepSpec, params: Mapping[str, Any]) -> int:
    """The RLlib seed of the trial with ``params`` (its ``seed``, or Optuna's repeat index into the seeds)."""
    assert spec.rl is not None, "trial_seed needs an rl sweep"
    if "seed" in params:
        return int(params["seed"])
    return int(spec.rl.seeds[int(params.get(TRIAL_INDEX, 0))])


def _fixed(spec: SweepSpec) -> dict[str, Any]:
    """``sweep.rl`` as keyword arguments of :class:`PPOTrainConfig` (lists as the tuples it takes)."""
    assert spec.rl is not None, "_fixed needs an rl sweep"
    out = dict(spec.rl.train)
    if isinstance(out.get("hidden"), list):
        out["hidden"] = tuple(out["hidden"])
    if isinstance(out.get("lr_schedule"), list):
        out["lr_schedule"] = tuple(tuple(p) for p in out["lr_schedule"])
    return out


def trial_config(spec: SweepSpec, params: Mapping[str, Any], env: EnvConfig | None = None) -> PPOTrainConfig:
    """The training config of the trial with ``params`` (a Tune config): ``sweep.rl``, the swept
    hyperparameters over it, the trial's seed and the sweep's env. Raises ``ValueError`` naming the field."""
    values = _fixed(spec)
    for name, value in params.items():
        if name in RL_PARAMS:
            values[name] = int(value) if name in RL_INTEGER_PARAMS and isinstance(value, float) \
                and value.is_integer() else value
    return PPOTrainConfig(env=env if env is not None else env_config(spec), seed=trial_seed(spec, params), **values)


def trial_problem(spec: SweepSpec, params: Mapping[str, Any]) -> str | None:
    """Why the trial of ``spec`` with ``params`` would fail before training, or ``None``."""
    try:
        trial_config(spec, params)
    except (ValueError, TypeError) as exc:
        return str(exc)
    return None


def budget_fraction(config: PPOTrainConfig, iteration: int, env_steps: int, wall_s: float) -> float:
    """How much of the trial's budget is used, in [0, 1]: the largest of ``iteration / iterations``,
    ``env_steps / timesteps`` and ``wall_s / time_budget`` (the first stopping rule to hold ends the run)."""
    used = [n / d for n, d in ((iteration, config.iterations), (env_steps, config.timesteps),
                               (wall_s, config.time_budget)) if d is not None]
    return float(min(1.0, max(used, default=0.0)))


# --------------------------------------------------------------------------- Tune side


def param_space(spec: SweepSpec) -> dict[str, Any]:
    """Tune ``param_space``: the swept hyperparameters, and (grid and random search) the seeds as a grid axis."""
    from ray import tune

    from mmray.tuning.sweeps import range_domain

    assert spec.rl is not None, "param_space needs an rl sweep"
    grid = spec.search.algorithm == "grid"
    space: dict[str, Any] = {}
    for name, values in spec.grid.items():
        space[name] = tune.grid_search(list(values)) if grid else (
            tune.choice(list(values)) if len(values) > 1 else values[0])
    for name in spec.space:
        space[name] = range_domain(spec.space[name])
    if spec.search.algorithm != "optuna":  # Optuna: Repeater sets TRIAL_INDEX
        space["seed"] = tune.grid_search(list(spec.rl.seeds))
    return space


def n_configurations(spec: SweepSpec) -> int:
    """Configurations the sweep trains (each once per seed): the grid's size, or ``num_samples``."""
    if spec.search.algorithm != "grid":
        return spec.search.num_samples
    return math.prod(len(v) for v in spec.grid.values())


def n_trials(spec: SweepSpec) -> int:
    """Trials of the sweep when nothing stops it: configurations x seeds."""
    assert spec.rl is not None, "n_trials needs an rl sweep"
    return n_configurations(spec) * len(spec.rl.seeds)


def tune_num_samples(spec: SweepSpec) -> int:
    """Tune's ``num_samples``: random search samples configurations (each expanded over the seed grid),
    Optuna's Repeater counts trials (configurations x seeds), grid search 1."""
    assert spec.rl is not None, "tune_num_samples needs an rl sweep"
    if spec.search.algorithm == "optuna":
        return spec.search.num_samples * len(spec.rl.seeds)
    return spec.search.num_samples


def search_algorithm(spec: SweepSpec) -> Any:
    """Grid/random: a seeded variant generator that keeps a sampled configuration for all its seeds;
    Optuna: TPE in a ``ConcurrencyLimiter`` of configurations, repeated once per seed by ``Repeater``."""
    from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter, Repeater

    assert spec.rl is not None, "search_algorithm needs an rl sweep"
    s = spec.search
    if s.algorithm == "optuna":
        import optuna
        from ray.tune.search.optuna import OptunaSearch

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        sampler = optuna.samplers.TPESampler(seed=spec.seed, n_startup_trials=max(2, min(8, s.num_samples // 2)))
        configs_at_once = max(1, s.concurrency // len(spec.rl.seeds))
        inner = ConcurrencyLimiter(OptunaSearch(metric=s.metric, mode=s.mode, sampler=sampler),
                                   max_concurrent=configs_at_once)
        return Repeater(inner, repeat=len(spec.rl.seeds), set_index=True)
    random_state = spec.seed if s.algorithm == "random" else None
    return BasicVariantGenerator(random_state=random_state, max_concurrent=s.max_concurrent,
                                 constant_grid_search=True)


def scheduler(spec: SweepSpec) -> Any:
    """``ASHAScheduler`` over fractions of the per-trial budget (``budget_rungs``), else ``None``."""
    a = spec.search.asha
    if a is None:
        return None
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(time_attr="budget_rungs", max_t=a.rungs, grace_period=a.grace_period,
                         reduction_factor=a.reduction_factor)


def resource_bundles(spec: SweepSpec) -> list[dict[str, float]]:
    """The placement-group bundles of one trial: RLlib's own request for the trial's algorithm config
    (``Algorithm.default_resource_request``: the main process, then one bundle per remote env runner and
    learner), with the main process's CPUs set to ``resources.cpus_per_trial``."""
    config = trial_config(spec, _base_params(spec))
    algo_config = config.algorithm_config()
    factory = algo_config.algo_class.default_resource_request(algo_config)
    bundles = [{k: float(v) for k, v in b.items() if v} for b in factory.bundles]
    bundles[0]["CPU"] = float(spec.resources.cpus_per_trial)
    return bundles


def _base_params(spec: SweepSpec) -> dict[str, Any]:
    """A trial's parameters at the base point: the first grid value and the low end of each range."""
    assert spec.rl is not None, "_base_params needs an rl sweep"
    params: dict[str, Any] = {name: values[0] for name, values in spec.grid.items()}
    params.update({name: (int(r.low) if r.integer else r.low) for name, r in spec.space.items()})
    params["seed"] = spec.rl.seeds[0]
    return params


def trial_resources(spec: SweepSpec) -> Any:
    """Per-trial resources: a placement group of :func:`resource_bundles` (RLlib's remote env runners and
    learners, when there are any, then run in the trial's bundles, never waiting on CPUs held by trials)."""
    from ray import tune

    return tune.PlacementGroupFactory(resource_bundles(spec), strategy="PACK")


def sweep_benchmark(spec: SweepSpec, run_dir: str | None = None, say: Any = None) -> Any:
    """The sweep's :class:`~mmray.tuning.rl_eval.OptimalityBenchmark`: loaded from ``<run_dir>/benchmark``
    (a resumed sweep), else built (seconds on a small env, ~1 minute at the default one) and saved there
    when ``run_dir`` is a local directory."""
    from mmray.tuning.rl_eval import BENCHMARK_FILE, OptimalityBenchmark

    env = env_config(spec)
    local = run_dir is not None and "://" not in run_dir
    saved = Path(run_dir) / BENCHMARK_DIR if local else None
    if saved is not None and (saved / BENCHMARK_FILE).is_file():
        return OptimalityBenchmark.load(saved, env)
    say = say or (lambda line: print(line, file=sys.stderr, flush=True))
    say("mmray tune: building the optimality benchmark of the sweep's env (pi on a fine quote grid, the best "
        "constant half-spread, the continuous exact policy)...")
    bench = OptimalityBenchmark.build(env)
    say(f"mmray tune:   reference {bench.reference_value:.3f}, exact policy {bench.exact_value:.3f}, best constant "
        f"{bench.baseline_value:.3f} [{bench.seconds:.1f} s]")
    if saved is not None:
        bench.save(saved)
    return bench


def trainable(spec: SweepSpec, run_dir: str | None = None) -> Any:
    """The Tune trainable of an ``rl`` sweep: :func:`run_trial` with the sweep's benchmark, in a placement
    group of :func:`resource_bundles`."""
    from ray import tune

    bench = sweep_benchmark(spec, run_dir)
    return tune.with_resources(tune.with_parameters(run_trial, spec=spec, benchmark=bench), trial_resources(spec))


class _Reporter:
    """Reports each training iteration of :func:`~mmray.tuning.rl.train` to Tune (its ``on_iteration``
    hook): the row with the best agent's figures; a row whose agent became the best (``train`` has
    exported it to ``policy/`` by then) carries a checkpoint of it."""

    def __init__(self, spec: SweepSpec, config: PPOTrainConfig, run_dir: Path, info: dict[str, Any]) -> None:
        self.spec, self.config, self.run_dir, self.info = spec, config, run_dir, info
        self.best: dict[str, Any] | None = None
        self.last: dict[str, Any] = {}

    def metrics(self, row: Mapping[str, Any], final: bool = False) -> dict[str, Any]:
        """What a report holds: the best agent's figures, this iteration's gap closed and the budget used."""
        best = self.best or {}
        fraction = budget_fraction(self.config, int(row["iteration"]), int(row["env_steps"]), float(row["wall_s"]))
        out: dict[str, Any] = {k: float(best.get(k, math.nan)) for k in FIGURES}
        metric = self.spec.search.metric
        out = {metric: out[metric], **out}
        out.update({
            "gap_closed_iter": float(row.get("gap_closed", math.nan)), "eval_method": best.get("eval_method"),
            "best_iteration": int(best.get("iteration", 0)), "iterations": int(row["iteration"]),
            "env_steps": int(row["env_steps"]), "wall_s": float(row["wall_s"]), "budget_fraction": fraction,
            **self.info,
        })
        asha = self.spec.search.asha
        if asha is not None:  # the last rung (= max_t, where ASHA stops a trial) only with the final report
            out["budget_rungs"] = asha.rungs * (fraction if final else min(fraction, 0.999))
        return out

    def iteration(self, row: dict[str, Any], best: dict[str, Any] | None) -> None:
        """``train``'s ``on_iteration`` hook."""
        from ray import tune

        improved = bool(row.get("best"))
        if improved:
            self.best = dict(row)
        self.last = row
        if self.best is None:  # no evaluated agent yet: nothing to rank
            return
        if not improved:
            tune.report(self.metrics(row))
            return
        with tempfile.TemporaryDirectory(prefix="mmray-rl-best-") as d:
            shutil.copytree(self.run_dir / POLICY_DIR, Path(d) / POLICY_DIR)
            tune.report(self.metrics(row), checkpoint=tune.Checkpoint.from_directory(d))


def run_trial(config: dict[str, Any], spec: SweepSpec, benchmark: Any) -> None:
    """Ray Tune function trainable: one PPO run of ``spec`` with hyperparameters and seed ``config``.

    Reports every iteration (:class:`_Reporter`); the final report carries a checkpoint with the best
    agent (``policy/``), ``best.json``, ``result.json``, the learning curves and ``quotes.png``, and
    the final metrics (``mmray-final.json``: a trial restored from it after a driver crash reports them
    without training again). The run's own directory (RLlib checkpoints) is removed afterwards.
    """
    import ray
    from ray import tune

    from mmray.tuning.rl import train
    from mmray.tuning.trainables import FINAL_FILE, attempt_number, inject_faults, restored_final

    final = restored_final()
    if final is not None:  # finished before a driver crash: nothing to recompute
        tune.report(final)
        return
    attempt = attempt_number()
    train_config = trial_config(spec, config, env=benchmark.env)
    inject_faults(spec, {**config, "seed": train_config.seed}, attempt)
    info = {"seed": train_config.seed, "attempt": attempt, "node_id": ray.get_runtime_context().get_node_id()}
    run_dir = Path(tempfile.mkdtemp(prefix=f"rl-run-{attempt}-", dir=os.getcwd()))
    try:
        reporter = _Reporter(spec, train_config, run_dir, info)
        result = train(train_config, run_dir, benchmark=benchmark, progress=False, on_iteration=reporter.iteration)
        row = {**reporter.last, "iteration": result.iterations, "env_steps": result.env_steps, "wall_s": result.wall_s}
        reporter.best = {**result.figures.to_dict(), "eval_method": result.figures.method,
                         "iteration": result.best_iteration}
        metrics = {**reporter.metrics(row, final=True), DONE_KEY: 1}
        with tempfile.TemporaryDirectory(prefix="mmray-rl-final-") as d:
            shutil.copytree(result.policy, Path(d) / POLICY_DIR)
            for name in (BEST_FILE, RESULT_FILE, CURVES_CSV, CURVES_PNG, QUOTES_PNG):
                if (run_dir / name).is_file():
                    shutil.copy2(run_dir / name, Path(d) / name)
            with open(Path(d) / FINAL_FILE, "w") as fh:
                json.dump(metrics, fh, allow_nan=True)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


# --------------------------------------------------------------------------- results


def results_table(spec: SweepSpec, records: Sequence[Any]) -> tuple[pd.DataFrame, list[Any]]:
    """One row per trial, sorted by configuration then seed: ``trial``, ``config`` (the configuration's
    number), the swept hyperparameters, ``seed``, ``status`` (ok: trained its whole budget; stopped: by
    ASHA; error; unfinished), the best agent's figures, ``eval_method``, ``best_iteration``,
    ``iterations``, ``env_steps``, ``wall_s``, ``attempt``, ``error``, and the configuration's mean of
    the metric over its seeds (``config_<metric>_mean``, ``_se``, ``config_n``)."""
    from mmray.tuning.results import FINAL_STATES, _rank

    assert spec.rl is not None, "results_table needs an rl sweep"
    names = spec.param_names
    rows = []
    for rec in records:
        m, cfg = rec.metrics, rec.config
        row: dict[str, Any] = {name: cfg.get(name) for name in names}
        if rec.error is not None:
            status = "error"
        elif m.get(DONE_KEY):
            status = "ok"
        elif rec.tune_status in FINAL_STATES and m.get(spec.search.metric) is not None:
            status = "stopped"
        else:
            status = "unfinished"
        row["seed"] = trial_seed(spec, cfg)
        row["status"] = status
        for c in TRIAL_COLUMNS:
            v = m.get(c)
            if c == "eval_method":
                row[c] = v if isinstance(v, str) else ""
            else:
                row[c] = float(v) if isinstance(v, int | float) and not isinstance(v, bool) else np.nan
        row["attempt"] = int(m.get("attempt", 0) or 0)
        row["error"] = rec.error or ""
        key = tuple(_rank(spec.grid[n], row[n]) if n in spec.grid else (0, float(row[n]) if row[n] is not None
                                                                         else math.inf) for n in names)
        rows.append((key, _rank(spec.rl.seeds, row["seed"]), row, rec))
    rows.sort(key=lambda t: (t[0], t[1]))
    ordered = [r for *_, r in rows]
    df = pd.DataFrame([row for _, _, row, _ in rows])
    if df.empty:
        df = pd.DataFrame(columns=[*names, "seed", "status", *TRIAL_COLUMNS, "attempt", "error"])
    configs: dict[tuple[Any, ...], int] = {}
    for key, *_ in rows:
        configs.setdefault(key, len(configs))
    df.insert(0, "config", [configs[key] for key, *_ in rows])
    df.insert(0, "trial", range(len(df)))
    for c in ("iterations", "best_iteration", "env_steps"):
        df[c] = pd.array([None if pd.isna(v) else int(v) for v in df[c]], dtype="Int64")
    df["seed"] = pd.array(df["seed"], dtype="Int64")
    metric = spec.search.metric
    summary = config_table(spec, df)
    by_config = summary.set_index("config")
    for col in (f"{metric}_mean", f"{metric}_se", "n"):
        df[f"config_{col}"] = df["config"].map(by_config[col]) if len(df) else pd.Series(dtype=float)
    return df.reset_index(drop=True), ordered


def config_table(spec: SweepSpec, df: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration: its hyperparameters, ``n`` (trials that reported the metric: finished or
    stopped by ASHA, each its best agent), ``n_ok`` (trained their whole budget), the mean of the metric
    over those seeds and its standard error (sample s.d. / sqrt(n); NaN with one seed), the same for
    ``optimality_ratio``, and the trial and seed of the configuration's best agent."""
    metric = spec.search.metric
    names = list(spec.param_names)
    cols = ["config", *names, "n", "n_ok", f"{metric}_mean", f"{metric}_se", "optimality_ratio_mean",
            "optimality_ratio_se", "best_trial", "best_seed", f"best_{metric}"]
    out = []
    for config, group in df.groupby("config", sort=True):
        reported = group[group["status"].isin(["ok", "stopped"]) & group[metric].notna()]
        row: dict[str, Any] = {"config": int(config), **{n: group[n].iloc[0] for n in names}}
        row["n"], row["n_ok"] = len(reported), int((group["status"] == "ok").sum())
        for col in dict.fromkeys([metric, "optimality_ratio"]):
            vals = reported[col].to_numpy(dtype=float)
            row[f"{col}_mean"] = float(vals.mean()) if len(vals) else np.nan
            row[f"{col}_se"] = float(vals.std(ddof=1) / math.sqrt(len(vals))) if len(vals) > 1 else np.nan
        if len(reported):
            best = reported.loc[reported[metric].idxmax()]
            row.update(best_trial=int(best["trial"]), best_seed=int(best["seed"]), **{f"best_{metric}": best[metric]})
        else:
            row.update(best_trial=pd.NA, best_seed=pd.NA, **{f"best_{metric}": np.nan})
        out.append(row)
    table = pd.DataFrame(out, columns=cols)
    for c in ("best_trial", "best_seed"):
        table[c] = pd.array(table[c], dtype="Int64")
    return table


def best_config(spec: SweepSpec, df: pd.DataFrame) -> int | None:
    """The configuration with the best mean of the metric over its seeds (``None`` if none reported)."""
    table = config_table(spec, df)
    means = table[f"{spec.search.metric}_mean"]
    if means.isna().all():
        return None
    return int(table["config"].iat[int(means.idxmax() if spec.search.mode == "max" else means.idxmin())])


def picks(spec: SweepSpec, df: pd.DataFrame) -> list[Any]:
    """One pick: the best agent (trial) of the best configuration (:func:`best_config`)."""
    from mmray.tuning.results import Pick

    config = best_config(spec, df)
    if config is None:
        return []
    table = config_table(spec, df)
    trial = table.loc[table["config"] == config, "best_trial"].iat[0]
    return [Pick({}, int(df.index[df["trial"] == trial][0]))]


def picks_heading(spec: SweepSpec) -> str:
    """What "best" means for an ``rl`` sweep."""
    assert spec.rl is not None, "picks_heading needs an rl sweep"
    metric = spec.search.metric
    return (f"Best configuration: the highest mean {metric} of its best agents over its seeds "
            f"({len(spec.rl.seeds)} per configuration); its best agent is exported:")


def pick_line(spec: SweepSpec, df: pd.DataFrame, pick: Any) -> str:
    """The best configuration's mean with its standard error, and the exported agent."""
    from mmray.tuning.results import _fmt

    metric = spec.search.metric
    row = df.iloc[pick.row]
    params = ", ".join(f"{n}={_fmt(row[n])}" for n in spec.param_names) or "the fixed settings"
    se = row[f"config_{metric}_se"]
    mean = f"{metric} = {_fmt(row[f'config_{metric}_mean'])}" + (f" ± {_fmt(se)}" if pd.notna(se) else "")
    agent_se = row.get(f"{metric}_se")
    exact = row.get("eval_method") == "exact"
    agent = f"{_fmt(row[metric])}" + (" (exact)" if exact else f" ± {_fmt(agent_se)}" if pd.notna(agent_se) else "")
    return (f"config {int(row['config'])} ({params}): mean {mean} over {int(row['config_n'])} seeds; "
            f"exported agent: trial {int(row['trial'])} (seed {int(row['seed'])}, iteration "
            f"{int(row['best_iteration'])}), {metric} {agent}")


def summary_columns(spec: SweepSpec) -> list[str]:
    """Columns of the per-trial table on the console and in the report."""
    metric = spec.search.metric
    cols = ["trial", "config", *spec.param_names, "seed", "status", metric]
    cols += [c for c in ("gap_closed", "optimality_ratio", "best_iteration", "iterations", "env_steps", "wall_s")
             if c not in cols]
    return cols


def config_columns(spec: SweepSpec) -> list[str]:
    """Columns of the per-configuration table on the console and in the report."""
    metric = spec.search.metric
    return ["config", *spec.param_names, "n", "n_ok", f"{metric}_mean", f"{metric}_se", "optimality_ratio_mean",
            "optimality_ratio_se", "best_seed", f"best_{metric}"]


def reproducibility(spec: SweepSpec) -> tuple[bool, str] | None:
    """Why an ``rl`` sweep's table cannot be reproduced beyond what :func:`mmray.tuning.results.reproducibility`
    says: a time budget (``None`` when it has none)."""
    assert spec.rl is not None, "reproducibility needs an rl sweep"
    if spec.rl.train.get("time_budget") is not None:
        return False, ("a time budget ends each trial after as many iterations as the machine manages in it; set "
                       "iterations or timesteps instead for a reproducible table")
    return None


def backtest_command(policy_dir: str, benchmark_dir: str, config: PPOTrainConfig) -> str:
    """``mmray backtest --policy`` of the exported agent: its optimality figures against the sweep's benchmark
    (exactly, or by Monte Carlo on the trial's evaluation paths and seed)."""
    import shlex

    return shlex.join(["mmray", "backtest", "--policy", policy_dir, "--benchmark", benchmark_dir,
                       "--paths", str(config.eval_paths), "--seed", str(config.eval_seed)])


def _export(spec: SweepSpec, df: pd.DataFrame, records: Sequence[Any], run_dir: Path, pick: Any) -> Path:
    """Copy the picked trial's best agent from its Tune checkpoint to ``best_policy/`` with the sweep's provenance."""
    from mmray.checkpoint import load_policy, save_policy
    from mmray.tuning.results import _clean, pick_policy_dir

    rec = records[pick.row]
    if rec.checkpoint is None:
        raise ValueError(f"trial {pick.row} reported no checkpoint of its best agent")
    row = df.iloc[pick.row]
    metric = spec.search.metric
    with rec.checkpoint.as_directory() as d:
        policy = load_policy(Path(d) / POLICY_DIR)
    provenance = {
        "sweep": {"name": spec.name, "kind": spec.kind, "source": spec.source, "seed": spec.seed,
                  "metric": metric, "mode": spec.search.mode, "ranked_by": f"config_{metric}_mean",
                  "group": {}},
        # the Tune config (the swept hyperparameters); "config" stays the PPO config the agent was trained with
        "params": {k: v for k, v in rec.config.items() if k != TRIAL_INDEX}, "seed": int(row["seed"]),
        "trial": int(row["trial"]), "configuration": int(row["config"]),
        "metrics": {c: _clean(row[c]) for c in (*TRIAL_COLUMNS, f"config_{metric}_mean", f"config_{metric}_se",
                                                 "config_n") if c in row},
    }
    target = run_dir / pick_policy_dir(pick)
    target.parent.mkdir(parents=True, exist_ok=True)
    return save_policy(policy, target, provenance=provenance)


def plot_configs(spec: SweepSpec, df: pd.DataFrame, configs: pd.DataFrame, path: Path) -> Path | None:
    """``configs.png``: each configuration's seeds (dots: each trial's best agent; hollow: stopped by ASHA) and
    their mean ± standard error, with the best constant spread (0), the optimum (1) and, for ``gap_closed``,
    the continuous exact policy as lines. ``None`` when no trial reported the metric."""
    from matplotlib.figure import Figure

    metric = spec.search.metric
    reported = df[df["status"].isin(["ok", "stopped"]) & df[metric].notna()]
    if reported.empty:
        return None
    fig = Figure(figsize=(max(6.0, 1.2 * len(configs) + 3), 4.5), layout="constrained")
    ax = fig.subplots()
    for i, c in enumerate(configs["config"]):
        rows = reported[reported["config"] == c]
        for status, face in (("ok", "tab:blue"), ("stopped", "none")):
            pts = rows[rows["status"] == status][metric]
            ax.scatter(np.full(len(pts), i) + 0.08, pts, s=18, facecolors=face, edgecolors="tab:blue", zorder=3)
        mean, se = configs[f"{metric}_mean"].iat[i], configs[f"{metric}_se"].iat[i]
        if pd.notna(mean):
            ax.errorbar(i - 0.08, mean, yerr=0.0 if pd.isna(se) else se, fmt="s", color="k", capsize=4, zorder=4)
    if metric == "gap_closed":
        row = reported.iloc[0]
        exact = (row["exact_policy_value"] - row["baseline_value"]) / (row["reference_value"] - row["baseline_value"])
        for y, label, style in ((1.0, "optimum of the env", "-"), (exact, "continuous exact policy", "--"),
                                (0.0, "best constant spread", ":")):
            ax.axhline(y, color="gray", linestyle=style, linewidth=1, label=label)
        ax.legend(loc="lower right", fontsize=8)
    names = list(spec.param_names)
    labels = [f"{int(c)}\n" + "\n".join(f"{n}={configs[n].iat[i]:.3g}" for n in names if pd.notna(configs[n].iat[i]))
              for i, c in enumerate(configs["config"])]
    ax.set_xticks(range(len(configs)), labels, fontsize=7)
    ax.set_xlabel("configuration")
    ax.set_ylabel(f"{metric} of each seed's best agent; mean ± SE")
    ax.set_title(f"{spec.name}: {metric} by configuration ({len(spec.rl.seeds) if spec.rl else 0} seeds each)",
                 fontsize=10)
    return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))


def write_report(spec: SweepSpec, df: pd.DataFrame, configs: pd.DataFrame, run_dir: Path, found: Sequence[Any],
                 reproduce: Mapping[int, Sequence[str]], seconds: float | None, display_dir: str | None,
                 n_expected: int | None) -> Path:
    """``report.md`` of an ``rl`` sweep: the sweep, what "best" means and the best configuration with the
    command that measures its agent, the configurations (mean and SE over seeds), the trials, errors."""
    from mmray.tuning.results import finish_report, markdown_table
    from mmray.tuning.results import reproducibility as same_table

    assert spec.rl is not None, "write_report needs an rl sweep"
    counts = df["status"].value_counts().to_dict()
    metric = spec.search.metric
    same, why = same_table(spec)
    env = env_config(spec)
    budget = ", ".join(f"{k} {spec.rl.train[k]}" for k in STOP_FIELDS if spec.rl.train.get(k) is not None)
    lines = [
        f"# Sweep `{spec.name}` (rl)", "",
        f"- source: `{spec.source}`; PPO (RLlib), seeds {list(spec.rl.seeds)} per configuration; per-trial budget: "
        f"{budget}",
        f"- env: sigma={env.market.sigma:g}, A={env.market.A:g}, k={env.market.k:g}, gamma={env.problem.gamma:g}, "
        f"T={env.problem.T:g}, q_max={env.problem.q_max:g}, dt={env.dt:g}, fill model {env.fill_model}, "
        f"{env.action_mode} actions on [{env.offset_low:g}, {env.offset_high:g}]",
        f"- search: {spec.search.algorithm}, metric `{metric}` ({spec.search.mode}) of each trial's best agent"
        + (f", ASHA over {spec.search.asha.rungs} parts of the budget" if spec.search.asha else ""),
        f"- trials: {len(df)} (" + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + ")"
        + (f"; wall time {seconds:.1f} s" if seconds is not None else ""),
        f"- same seed, same table: {'yes' if same else 'no'} ({why})", "",
        "gap_closed = (agent - best constant spread) / (optimum - best constant spread) in the env's own dynamics "
        "(0: the best inventory-blind constant spread, 1: the optimum); see docs/rl.md.", "",
    ]
    if found:
        lines += ["## Best configuration", "", picks_heading(spec), ""]
        lines += [f"- {pick_line(spec, df, p)}" for p in found] + [""]
        for p in found:
            if p.row in reproduce:
                lines += ["Its optimality figures, measured again from the checkpoint against the sweep's benchmark:",
                          "", "```bash", *reproduce[p.row], "```", ""]
    shown = configs.sort_values(f"{metric}_mean", ascending=spec.search.mode == "min", kind="mergesort",
                                na_position="last")
    lines += ["## Configurations", "", f"Mean and standard error of `{metric}` over each configuration's seeds "
              "(`configs.csv`), best first.", "", markdown_table(shown.head(30), config_columns(spec)), "",
              "## Trials", "", f"Full table: `results.csv` / `results.parquet` ({len(df)} rows).", "",
              markdown_table(df.head(60), summary_columns(spec)), ""]
    if (run_dir / "configs.png").is_file():
        lines += ["![configs](configs.png)", ""]
    return finish_report(lines, df, run_dir, display_dir, n_expected,
                         lambda r: f"config {int(r['config'])}, seed {int(r['seed'])}")


def write_artefacts(spec: SweepSpec, records: Sequence[Any], run_dir: Path, seconds: float | None = None,
                    display_dir: str | None = None, n_expected: int | None = None) -> Any:
    """Every artefact of a finished (or interrupted) ``rl`` sweep in ``run_dir``: ``results.parquet/.csv``
    (trials), ``configs.parquet/.csv`` (configurations), ``trials.json``, ``best_policy/``, ``report.md``
    (``benchmark/`` is written when the sweep starts)."""
    from mmray.tuning.results import Artefacts, pending_trials, pick_policy_dir, write_manifest, write_table

    run_dir.mkdir(parents=True, exist_ok=True)
    df, ordered = results_table(spec, records)
    configs = config_table(spec, df)
    files: dict[str, Path] = {}
    pq, csv = write_table(df, run_dir)
    files.update({"results.parquet": pq, "results.csv": csv})
    files["configs.parquet"] = atomic_write(run_dir / CONFIGS_FILES[0], lambda p: configs.to_parquet(p, index=False))
    files["configs.csv"] = atomic_write(run_dir / CONFIGS_FILES[1], lambda p: configs.to_csv(p, index=False))
    files["trials.json"] = write_manifest(spec, df, ordered, run_dir)
    figure = plot_configs(spec, df, configs, run_dir / "configs.png")
    if figure is not None:
        files["configs.png"] = figure
    if not (run_dir / BENCHMARK_DIR).is_dir():  # a remote run directory: the benchmark is uploaded with the rest
        sweep_benchmark(spec, str(run_dir))
    files[BENCHMARK_DIR] = run_dir / BENCHMARK_DIR
    found = picks(spec, df)
    reproduce: dict[int, list[str]] = {}
    shown = display_dir or str(run_dir)
    for pick in found:
        files[pick_policy_dir(pick)] = _export(spec, df, ordered, run_dir, pick)
        config = trial_config(spec, ordered[pick.row].config)
        policy_dir, bench_dir = f"{shown}/{pick_policy_dir(pick)}", f"{shown}/{BENCHMARK_DIR}"
        if "://" in shown:  # mmray backtest reads local directories: copy both first
            from mmray.tuning.results import copy_command

            reproduce[pick.row] = [copy_command(policy_dir, pick_policy_dir(pick)),
                                   copy_command(bench_dir, BENCHMARK_DIR),
                                   backtest_command(pick_policy_dir(pick), BENCHMARK_DIR, config)]
        else:
            reproduce[pick.row] = [backtest_command(policy_dir, bench_dir, config)]
    best = found[0].row if found else None
    files["report.md"] = write_report(spec, df, configs, run_dir, found, reproduce, seconds, display_dir, n_expected)
    return Artefacts(df, files, best, reproduce.get(best, []) if best is not None else [],
                     pending_trials(df, n_expected), found, reproduce)
