"""``mmray backtest``: Monte Carlo backtest of strategies or a saved policy, with metrics and plots.

:func:`setup` (policies, model and simulation settings from the flags) and :func:`add_flags`
serve ``mmray simulate`` too.

A ``--policy`` that carries the env it was trained in (an RL agent, the ``mlp`` kind) is also measured
against the optimum of that env (issue 9): the optimality figures of
:meth:`mmray.tuning.rl_eval.OptimalityBenchmark.evaluate` are printed and written under ``"optimality"``,
and ``quotes.png`` draws its quotes beside the reference's and the continuous exact ones. The benchmark is
``--benchmark DIR``, else the one a ``mmray train`` run saved beside its ``policy/``, else it is built
(and saved under ``--out``). :mod:`mmray.envs` and :mod:`mmray.tuning` are imported only then.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from mmray.cli import policies as pol
from mmray.cli.common import format_table, log, run_with_output
from mmray.cli.flags import (
    RAY_CONFLICTS,
    add_model_flags,
    add_output_flags,
    add_ray_flags,
    add_sim_flags,
    add_strategy_flags,
    model_params,
    refuse_conflicts,
    sim_config,
    use_ray,
)
from mmray.params import MarketParams, ProblemParams, SimConfig

NAME = "backtest"
DESCRIPTION = ("Backtest strategies by name (--strategy, repeatable) or a saved policy (--policy) by Monte Carlo: "
               "PnL, Sharpe, drawdown, fills, spread and inventory statistics with standard errors. A checkpoint "
               "is run under the model it was saved with; flags override.")
WRITES = ("results.json, pnl_distribution.png, comparison.png and paths_<strategy>.png per strategy; for an RL "
          "policy also quotes.png and, when its benchmark was built, benchmark/")
#: ``--paths`` when not given (an RL policy's optimality figures by Monte Carlo have their own default)
DEFAULT_PATHS = 10000

# strategy flags -> the strategies that use them (given to none of those, a flag is an error)
STRATEGY_FLAGS = {"half_spread": ("constant", "inventory"), "skew": ("inventory",)}


def add_flags(p: argparse.ArgumentParser, multiple: bool, paths: int, writes: str) -> None:
    """The flags of ``backtest`` and ``simulate``."""
    add_strategy_flags(p, multiple=multiple)
    add_model_flags(p)
    add_sim_flags(p, paths)
    add_ray_flags(p)
    add_output_flags(p, writes)


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``mmray backtest`` on the sub-command action ``sub``."""
    p = sub.add_parser(NAME, help="Monte Carlo backtest with metrics", description=DESCRIPTION)
    add_flags(p, multiple=True, paths=DEFAULT_PATHS, writes=WRITES)
    paths = next(a for a in p._actions if a.dest == "paths")
    paths.default = None  # "not given": DEFAULT_PATHS for the backtest, 20,000 for an RL policy's Monte Carlo figures
    paths.help = (f"Monte Carlo paths (default: {DEFAULT_PATHS}; the optimality figures of an RL policy, when "
                  "evaluated by Monte Carlo: 20000, on the same paths for the agent and the benchmark policies)")
    g = p.add_argument_group("RL policy (a --policy that carries the env it was trained in: the mlp kind)")
    g.add_argument("--benchmark", type=Path, metavar="DIR",
                   help="the optimality benchmark of the agent's env to reuse: a directory holding benchmark.json "
                        "(RUN_DIR/benchmark of `mmray train`, or OUT/benchmark of an earlier `mmray backtest "
                        "--out OUT`) (default: RUN_DIR/benchmark beside a RUN_DIR/policy checkpoint, else built: "
                        "about a minute at the default env)")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``mmray backtest``; returns the exit status."""
    return run_with_output(args, backtest)


def strategy_names(args: argparse.Namespace) -> list[str]:
    """``--strategy`` values, default ``optimal``; none with ``--policy``."""
    if args.policy is not None:
        return []
    return list(args.strategy or []) or ["optimal"]


def setup(args: argparse.Namespace) -> tuple[dict[str, Any], MarketParams, ProblemParams, SimConfig]:
    """Policies, model and simulation settings of ``backtest``/``simulate``: a ``--policy``
    checkpoint brings its own model (and, for pi/csp, its dt and fill model), flags override.
    Conflicting flags are refused first."""
    refuse_conflicts(args, RAY_CONFLICTS)
    names = strategy_names(args)
    for flag, users in STRATEGY_FLAGS.items():
        if getattr(args, flag) is not None and not set(users) & set(names):
            raise ValueError(f"--{flag.replace('_', '-')} applies to --strategy {' or '.join(users)} only")
    if args.policy is not None:
        policy = pol.load(args.policy)
        saved_market = getattr(policy, "market", None)
        if saved_market is not None:
            market, problem = model_params(args, saved_market, getattr(policy, "problem", None),
                                           source="checkpoint")
        else:
            market, problem = model_params(args)
        return {args.policy.name: policy}, market, problem, sim_config(args, problem, pol.saved_sim(policy))
    market, problem = model_params(args)
    policies = {n: pol.strategy(n, market, problem, args.half_spread, args.skew) for n in names}
    return policies, market, problem, sim_config(args, problem)


def warn_regime(args: argparse.Namespace, market: MarketParams, problem: ProblemParams, config: SimConfig) -> None:
    """One line on stderr for each reason the simulation, though valid, measures little of the model
    (:func:`mmray.limits.simulation_warnings`)."""
    from mmray.limits import simulation_warnings

    for note in simulation_warnings(market, problem, config.dt):
        print(f"mmray {args.command}: warning: {note}", file=sys.stderr)


def _warn_discrete_mismatch(policy: Any, market: MarketParams, config: SimConfig) -> None:
    """A policy solved on its own discrete problem (``solved_for``: pi, csp) is optimal there: say when
    the backtest differs from it."""
    info = pol.discrete_info(policy)
    if info is None:
        return
    issues = []
    if info.get("dt") is not None and abs(float(info["dt"]) - config.dt) > 1e-12:
        issues.append(f"solved with dt={info['dt']}, simulated with dt={config.dt}")
    if info.get("fill_model") and info["fill_model"] != config.fill_model:
        issues.append(f"solved with fill model {info['fill_model']!r}, simulated with {config.fill_model!r}")
    objective = getattr(getattr(policy, "problem", None), "objective", "A")
    if info.get("price_model") and info["price_model"] != config.price_model and objective == "A":
        issues.append(f"solved with price model {info['price_model']!r}, simulated with {config.price_model!r}")
    intensity = info.get("intensity")
    if isinstance(intensity, dict) and intensity.get("name") != "exponential":
        issues.append(f"solved with a {intensity.get('name')} intensity, simulated with the market's "
                      f"exponential A exp(-k delta)")
    elif isinstance(intensity, dict) and (intensity.get("A"), intensity.get("k")) != (market.A, market.k):
        issues.append(f"solved with A={intensity.get('A')}, k={intensity.get('k')}, simulated with "
                      f"A={market.A}, k={market.k}")
    grid_tick = (info.get("grid") or {}).get("tick")
    if market.tick > 0 and grid_tick is not None and abs(float(grid_tick) - market.tick) > 1e-12 * market.tick:
        issues.append(f"its offsets lie on its own tick grid (tick {grid_tick}), not on the market's "
                      f"(tick {market.tick}); they are not rounded again")
    if issues:
        print(f"mmray backtest: warning: this tick-grid policy is optimal for its own discrete problem: "
              f"{'; '.join(issues)}", file=sys.stderr)


def backtest(args: argparse.Namespace, stage: Path | None) -> dict[str, Any]:
    """Backtest, print, and write the ``--out`` files into ``stage``; returns the ``--json`` object."""
    from mmray.backtest import METRIC_KEYS
    from mmray.backtest import backtest as run_backtest

    eval_paths = args.paths  # None: not given
    if args.paths is None:
        args.paths = DEFAULT_PATHS
    policies, market, problem, config = setup(args)
    agent = _rl_agent(args, policies)
    if config.n_paths < 2:
        raise ValueError(f"--paths {config.n_paths}: a backtest's statistics (standard deviations, standard errors, "
                         "Sharpe) need at least 2 paths; `mmray simulate` runs single paths")
    warn_regime(args, market, problem, config)
    for policy in policies.values():
        _warn_discrete_mismatch(policy, market, config)
    bench = None
    if agent is not None:
        _note_other_model(args, agent[2], market, problem, config)
        bench = _benchmark(args, agent[2], stage)  # before the backtest: a bad --benchmark fails first
    ray = use_ray(args, config)
    record = 20 if stage is not None else 0
    results = {name: run_backtest(policy, market, problem, config, use_ray=ray, record=record,
                                  progress=sys.stderr.isatty())
               for name, policy in policies.items()}
    metrics = {name: r.metrics for name, r in results.items()}
    log(args, f"{config.n_paths} paths x {config.n_steps(problem.T)} steps, seed {config.seed}, "
              f"{config.price_model} prices, {config.fill_model} fills" + (" (Ray)" if ray else ""))
    log(args, format_table(metrics, METRIC_KEYS))
    if len(results) == 1:
        name = next(iter(results))
        out: dict[str, Any] = {"strategy": name, **metrics[name]}
    else:
        out = {"strategies": metrics}
    simulated = next(iter(results.values())).market  # a tick-grid policy is simulated with tick 0
    out.update({"n_paths": config.n_paths, "seed": config.seed, "market": simulated.to_dict(),
                "problem": problem.to_dict(), "sim": config.to_dict()})
    if agent is not None and bench is not None:
        out["optimality"] = _optimality(args, stage, agent, bench, eval_paths)
    if stage is not None:
        _write(stage, results, metrics, out, plots_settings(market, problem, config))
        log(args, f"wrote results.json and plots to {args.out}")
    return out


def plots_settings(market: MarketParams, problem: ProblemParams, config: SimConfig) -> dict[str, Any]:
    """The run's settings for figure titles (:func:`mmray.plots.run_settings`)."""
    from mmray.plots import run_settings

    return run_settings(market, problem, config)


def _write(stage: Path, results: dict[str, Any], metrics: dict[str, Any], out: dict[str, Any],
           settings: dict[str, Any]) -> None:
    from mmray import plots
    from mmray.io import atomic_write_json

    for name, r in results.items():
        plots.plot_paths(r, stage / f"paths_{name}.png", title=f"strategy {name}")
    plots.plot_pnl_distribution(results, stage / "pnl_distribution.png")
    plots.plot_comparison_table(metrics, stage / "comparison.png",
                                ("pnl_mean", "pnl_std", "sharpe", "q_final_std", "spread_mean"), settings=settings)
    atomic_write_json(stage / "results.json", out)


# ----------------------------------------------------------------------------------------------- RL policies
def _rl_agent(args: argparse.Namespace, policies: dict[str, Any]) -> tuple[str, Any, Any] | None:
    """``(name, policy, env)`` of a ``--policy`` that carries its env (:func:`mmray.cli.policies.rl_env`),
    else ``None``; ``--benchmark`` is refused without one."""
    if args.policy is not None:
        ((name, policy),) = policies.items()
        env = pol.rl_env(policy)
        if env is not None:
            return name, policy, env
    if args.benchmark is not None:
        raise ValueError("--benchmark applies to --policy of an RL policy only (one that carries the env it was "
                         "trained in: the mlp kind)")
    return None


def _note_other_model(args: argparse.Namespace, env: Any, market: MarketParams, problem: ProblemParams,
                      config: SimConfig) -> None:
    """A note on stderr when the flags backtest the agent in another model or step than its env's: its
    optimality figures are those of its own env."""
    from mmray.tuning.rl_eval import DYNAMICS

    backtested = {"market": market, "problem": problem}
    differ = [name for name in DYNAMICS if backtested.get(name, getattr(config, name, None)) != getattr(env, name)]
    if differ:
        print(f"mmray {args.command}: note: the optimality figures are those of the agent's own env; the flags "
              f"backtest it with another {', '.join(differ)}", file=sys.stderr)


def _benchmark(args: argparse.Namespace, env: Any, stage: Path | None) -> tuple[Any, dict[str, Any]]:
    """The optimality benchmark of ``env`` and where it came from: ``--benchmark``, else the one saved beside a
    ``mmray train`` run's ``policy/`` checkpoint, else built (saved as ``benchmark/`` under ``--out``)."""
    from mmray.tuning.rl import BENCHMARK_DIR, POLICY_DIR
    from mmray.tuning.rl_eval import BENCHMARK_FILE, OptimalityBenchmark

    if args.benchmark is not None:
        try:
            return _load_benchmark(args.benchmark, env), {"source": "loaded", "dir": str(args.benchmark)}
        except ValueError as exc:
            raise ValueError(f"--benchmark {exc}") from exc
    checkpoint = pol.checkpoint_dir(args.policy)
    beside = checkpoint.parent / BENCHMARK_DIR
    if checkpoint.name == POLICY_DIR and (beside / BENCHMARK_FILE).is_file():
        try:
            return _load_benchmark(beside, env), {"source": "loaded", "dir": str(beside)}
        except ValueError as exc:
            print(f"mmray {args.command}: warning: {exc}: not used", file=sys.stderr)
    print(f"mmray {args.command}: building the optimality benchmark of the agent's env (pi on a fine quote grid, "
          "the best constant half-spread, the continuous exact policy; about a minute at the default env)...",
          file=sys.stderr)
    bench = OptimalityBenchmark.build(env)
    saved = None
    if stage is not None:
        bench.save(stage / BENCHMARK_DIR)
        saved = str(args.out / BENCHMARK_DIR)
    return bench, {"source": "built", "dir": saved}


def _load_benchmark(directory: Path, env: Any) -> Any:
    """:meth:`OptimalityBenchmark.load` of ``directory`` for ``env``; ``ValueError`` starting with the directory
    (naming the fields that differ when it was built for another env)."""
    from mmray.tuning.rl_eval import BENCHMARK_FILE, OptimalityBenchmark

    if not (directory / BENCHMARK_FILE).is_file():
        raise ValueError(f"{directory}: no {BENCHMARK_FILE} (a benchmark directory: RUN_DIR/benchmark of `mmray "
                         "train`, or OUT/benchmark of `mmray backtest --out OUT`)")
    try:
        return OptimalityBenchmark.load(directory, env)
    except (ValueError, KeyError, TypeError, OSError) as exc:
        why = _env_difference(directory / BENCHMARK_FILE, env)
        why = why or f"not a readable benchmark ({type(exc).__name__}: {exc})"
        raise ValueError(f"{directory}: {why}") from exc


def _env_difference(path: Path, env: Any) -> str | None:
    """Which fields of the env saved in the benchmark file ``path`` differ from ``env``'s (``None``: none,
    or the file holds no valid env)."""
    import json

    def flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in d.items():
            out |= flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v}
        return out

    try:
        saved = flat(type(env).from_dict(json.loads(path.read_text())["env"]).to_dict())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    mine = flat(env.to_dict())
    diff = [f"{k} {saved.get(k)!r} (the policy's: {mine.get(k)!r})" for k in sorted(set(saved) | set(mine))
            if saved.get(k) != mine.get(k)]
    return f"built for another env than the policy's: {', '.join(diff)}" if diff else None


def _optimality(args: argparse.Namespace, stage: Path | None, agent: tuple[str, Any, Any],
                bench: tuple[Any, dict[str, Any]], eval_paths: int | None) -> dict[str, Any]:
    """The agent's optimality figures (:meth:`OptimalityBenchmark.evaluate`: exact when it observes only
    ``(t, q)``, else Monte Carlo on ``--paths`` paths, default 20,000, from ``--seed``), logged; with
    ``--out``, its quotes beside the reference's and the continuous exact ones (``quotes.png``)."""
    from mmray.tuning.rl_curves import QUOTES_PNG, plot_quotes
    from mmray.tuning.rl_eval import DEFAULT_PATHS as EVAL_PATHS
    from mmray.tuning.rl_eval import exact_refusal

    name, policy, env = agent
    benchmark, source = bench
    figures = benchmark.evaluate(policy, "auto", EVAL_PATHS if eval_paths is None else eval_paths, args.seed)
    f = figures
    if f.method == "exact":
        how = "exact: the agent observes only (t, q), its inventory distribution is propagated; no sampling error"
    else:
        why = exact_refusal(policy, env) or "the policy is randomised or its quotes depend on the mid"
        how = (f"Monte Carlo: {f.n_paths} paths from seed {f.seed}, the same for the agent and the benchmark "
               f"policies, paired standard errors; not exact because {why}")
    if source["source"] == "loaded":
        origin = f"benchmark loaded from {source['dir']}"
    elif source["dir"] is not None:
        origin = (f"benchmark built in {benchmark.seconds:.1f} s, saved to {source['dir']}: reuse it with "
                  f"--benchmark {source['dir']}")
    else:
        origin = (f"benchmark built in {benchmark.seconds:.1f} s, not saved: with --out OUT it is saved to "
                  "OUT/benchmark, for --benchmark OUT/benchmark next time")
    log(args, f"optimality of {name} in its own env ({how}):\n"
              f"  optimality_ratio {f.optimality_ratio:.5f} +- {f.optimality_ratio_se:.5f}   "
              f"gap_closed {f.gap_closed:.4f} +- {f.gap_closed_se:.4f}\n"
              f"  agent {f.agent_value:.4f} +- {f.agent_value_se:.4f}   reference (pi) {f.reference_value:.4f}   "
              f"best constant {f.baseline_value:.4f} (h = {benchmark.baseline_half_spread:.4f})   "
              f"continuous exact {f.exact_policy_value:.4f}\n  {origin}")
    if stage is not None:
        plot_quotes({f"agent {name}": policy, "reference (pi)": benchmark.reference,
                     "continuous exact": benchmark.exact}, env, stage / QUOTES_PNG,
                    f"quotes of {name}, the reference optimum (pi) and the continuous exact policy")
    return {**figures.to_dict(), "benchmark": {**source, **benchmark.summary()}}
