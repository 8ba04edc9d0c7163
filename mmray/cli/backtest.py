"""``mmray backtest``: Monte Carlo backtest of strategies or a saved policy, with metrics and plots.

:func:`setup` (policies, model and simulation settings from the flags) and :func:`add_flags`
serve ``mmray simulate`` too.
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
WRITES = "results.json, pnl_distribution.png, comparison.png and paths_<strategy>.png per strategy"

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
    add_flags(p, multiple=True, paths=10000, writes=WRITES)
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

    policies, market, problem, config = setup(args)
    if config.n_paths < 2:
        raise ValueError(f"--paths {config.n_paths}: a backtest's statistics (standard deviations, standard errors, "
                         "Sharpe) need at least 2 paths; `mmray simulate` runs single paths")
    warn_regime(args, market, problem, config)
    for policy in policies.values():
        _warn_discrete_mismatch(policy, market, config)
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
