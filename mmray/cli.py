"""The ``mmray`` command line (also ``python -m mmray``).

Subcommands::

    mmray solve     --method exact [model flags] [--out DIR] [--json]
    mmray backtest  --strategy optimal --strategy as ... | --policy DIR  [model/sim flags] [--out DIR] [--json]
    mmray simulate  --strategy optimal [--paths 1] [--out DIR] [--json]
    mmray tune      ...   (same as ``python -m mmray.tune``)

Model flags are named after the parameters (``--sigma --A --k --drift --trade-size --tick
--s0 --gamma --T --q-max --objective --terminal-penalty``); simulation flags ``--dt --paths
--seed --price-model --fill-model --chunk-size --q0``. ``--q-max none`` means unbounded
(closed-form strategies only). ``--json`` prints exactly one JSON object on stdout (progress
and tables go to stderr then).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmray.io import atomic_write_json, to_jsonable
from mmray.params import FILL_MODELS, OBJECTIVES, PRICE_MODELS, MarketParams, ProblemParams, SimConfig
from mmray.policy import discrete_problem, simulation_market

UNBOUNDED = "none"  # what --q-max none parses to (None means the flag was not given)
MARKET_FLAGS = ("sigma", "A", "k", "drift", "trade_size", "tick", "s0")
PROBLEM_FLAGS = ("gamma", "T", "q_max", "objective", "terminal_penalty")


def _q_max(text: str) -> int | str:
    if text.lower() in ("none", "inf", "unbounded"):
        return UNBOUNDED
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'none', got {text!r}") from None
    if not math.isfinite(value) or value != int(value) or value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'none', got {text!r}")
    return int(value)


def _add_model_flags(p: argparse.ArgumentParser) -> None:
    """Model flags; each defaults to None ("not given") so that a checkpoint's model can fill it."""
    m, pr = MarketParams(), ProblemParams()
    g = p.add_argument_group("model (defaults: a --policy checkpoint's model, else the GLFT 2013 figure parameters)")
    g.add_argument("--sigma", type=float, help=f"mid volatility per sqrt(time) [{m.sigma:g}]")
    g.add_argument("--A", type=float, help=f"fill intensity at the mid, per time [{m.A:g}]")
    g.add_argument("--k", type=float, help=f"intensity decay per price unit [{m.k:g}]")
    g.add_argument("--drift", type=float, help=f"mid drift per time [{m.drift:g}]")
    g.add_argument("--trade-size", type=float, help=f"fill size Delta [{m.trade_size:g}]")
    g.add_argument("--tick", type=float, help=f"tick for quote rounding, 0 = none [{m.tick:g}]")
    g.add_argument("--s0", type=float, help=f"initial mid [{m.s0:g}]")
    g.add_argument("--gamma", type=float, help=f"risk aversion [{pr.gamma:g}]")
    g.add_argument("--T", type=float, help=f"horizon [{pr.T:g}]")
    g.add_argument("--q-max", type=_q_max, help=f"inventory bound Q or 'none' [{pr.q_max}]")
    g.add_argument("--objective", choices=OBJECTIVES, help=f"A = CARA, B = running penalty [{pr.objective}]")
    g.add_argument("--terminal-penalty", type=float, help=f"ell in ell(q) = ell q^2 at T [{pr.terminal_penalty:g}]")


def _add_sim_flags(p: argparse.ArgumentParser, paths: int) -> None:
    """Simulation flags; those a checkpoint can supply default to None ("not given")."""
    c = SimConfig()
    g = p.add_argument_group("simulation (defaults: a --policy checkpoint's own settings where it has them)")
    g.add_argument("--dt", type=float, default=None,
                   help="time step [the checkpoint's dt, else T/600]")
    g.add_argument("--paths", type=int, default=paths, help="Monte Carlo paths [%(default)s]")
    g.add_argument("--seed", type=int, default=0, help="root seed [%(default)s]")
    g.add_argument("--price-model", choices=PRICE_MODELS, default=None, help=f"[{c.price_model}]")
    g.add_argument("--fill-model", choices=FILL_MODELS, default=None, help=f"[{c.fill_model}]")
    g.add_argument("--chunk-size", type=int, default=None, help=f"paths per chunk [{c.chunk_size}]")
    g.add_argument("--q0", type=float, default=None, help=f"initial inventory [{c.q0:g}]")
    g.add_argument("--local", action="store_true", help="do not use Ray (same numbers, one process)")
    g.add_argument("--workers", type=int, default=None, help="CPUs of the embedded Ray (default: all)")
    g.add_argument("--address", default=None, help="attach to a running Ray cluster, e.g. 'auto'")


def _add_strategy_flags(p: argparse.ArgumentParser, multiple: bool) -> None:
    from mmray.strategies import STRATEGIES

    g = p.add_argument_group("strategy")
    src = g.add_mutually_exclusive_group()
    src.add_argument("--strategy", choices=STRATEGIES, action="append" if multiple else "store",
                     help="strategy by name" + (" (repeatable)" if multiple else ""))
    src.add_argument("--policy", type=Path, help="a saved policy checkpoint directory")
    g.add_argument("--half-spread", type=float, default=None, help="half-spread for constant/inventory")
    g.add_argument("--skew", type=float, default=None, help="inventory skew for the inventory strategy")


def _given(args: argparse.Namespace, names: Sequence[str]) -> dict[str, Any]:
    """The model flags the user gave, as field values (``--q-max none`` -> ``None``)."""
    out = {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}
    if out.get("q_max") == UNBOUNDED:
        out["q_max"] = None
    return out


def _params(args: argparse.Namespace, policy: Any = None) -> tuple[MarketParams, ProblemParams]:
    """The model: the flags given, over ``policy``'s saved model if it has one, else over the defaults.

    A pi/csp policy is simulated with tick 0 (:func:`mmray.policy.simulation_market`) unless
    ``--tick`` is given. Flags that change a checkpoint's value are reported.
    """
    market = getattr(policy, "market", None) or MarketParams()
    problem = getattr(policy, "problem", None) or ProblemParams()
    m_given, p_given = _given(args, MARKET_FLAGS), _given(args, PROBLEM_FLAGS)
    if getattr(policy, "market", None) is not None:
        market = simulation_market(policy, market)
        changed = [f"--{n.replace('_', '-')} {v} (checkpoint: {getattr(base, n)})"
                   for base, given in ((market, m_given), (problem, p_given))
                   for n, v in given.items() if v != getattr(base, n)]
        if changed:
            print(f"mmray {args.command}: note: flags override the checkpoint's model: {', '.join(changed)}",
                  file=sys.stderr)
    return market.replace(**m_given), problem.replace(**p_given)


# simulation settings a checkpoint can bring (SimConfig fields); --paths and --seed are always the flags'
CHECKPOINT_SIM_FIELDS = ("dt", "price_model", "fill_model", "chunk_size", "q0")


def checkpoint_sim(policy: Any) -> dict[str, Any]:
    """Simulation settings saved with ``policy``: its provenance ``sim`` (a sweep's SimConfig) and, for
    pi/csp, the dt, fill and price models of the discrete problem it was solved on."""
    prov = getattr(policy, "provenance", None) or {}
    saved = prov.get("sim") if isinstance(prov.get("sim"), dict) else {}
    out = {k: saved[k] for k in CHECKPOINT_SIM_FIELDS if saved.get(k) is not None}
    info = discrete_problem(policy) or {}
    for k in ("dt", "fill_model", "price_model"):
        if info.get(k) is not None:
            out.setdefault(k, info[k])
    return out


def _sim_config(args: argparse.Namespace, problem: ProblemParams, policy: Any = None) -> SimConfig:
    """Simulation settings: the flags given, over a checkpoint's own (:func:`checkpoint_sim`), over
    the defaults (dt = T/600)."""
    values = {"dt": problem.T / 600.0, **checkpoint_sim(policy)}
    values.update({k: getattr(args, k) for k in CHECKPOINT_SIM_FIELDS if getattr(args, k, None) is not None})
    cfg = SimConfig(n_paths=args.paths, seed=args.seed, **values)
    cfg.n_steps(problem.T)
    return cfg


def _log(args: argparse.Namespace, text: str) -> None:
    print(text, file=sys.stderr if args.json else sys.stdout)


def _format_table(rows: dict[str, dict[str, float]], keys: Sequence[str]) -> str:
    width = max(12, *(len(n) for n in rows))
    head = f"{'strategy':<{width}} " + " ".join(f"{k:>13}" for k in keys)
    lines = [head, "-" * len(head)]
    for name, m in rows.items():
        lines.append(f"{name:<{width}} " + " ".join(f"{m.get(k, float('nan')):>13.4g}" for k in keys))
    return "\n".join(lines)


def _use_ray(args: argparse.Namespace, config: SimConfig) -> bool:
    from mmray.distributed import ensure_ray, n_chunks

    if args.local or (n_chunks(config.n_paths, config.chunk_size) < 2 and not args.address):
        return False
    ensure_ray(address=args.address, num_cpus=args.workers)
    return True


def cmd_solve(args: argparse.Namespace) -> dict[str, Any]:
    from mmray.checkpoint import save_policy
    from mmray.solvers import solve
    from mmray.solvers.cli_args import solver_options

    market, problem = _params(args)
    solution = solve(market, problem, method=args.method, **solver_options(args.method, args, problem.T))
    i0 = int(np.argmin(np.abs(solution.q_grid)))
    rows = {}
    for j in sorted({0, i0 // 2, i0, (i0 + solution.q_grid.size - 1) // 2, solution.q_grid.size - 1}):
        rows[f"q={solution.q_grid[j]:g}"] = {"bid_t0": solution.bid[0, j], "ask_t0": solution.ask[0, j],
                                             "bid_tT": solution.bid[-1, j], "ask_tT": solution.ask[-1, j]}
    _log(args, f"solved with {args.method}: {solution.times.size} times x {solution.q_grid.size} inventories "
               f"in {solution.info.get('seconds', float('nan')):.3f} s")
    _log(args, _format_table(rows, ("bid_t0", "ask_t0", "bid_tT", "ask_tT")))
    constraints = solution.info.get("constraints")
    if constraints:
        table = {name: {"bound": c.get("bound", float("nan")), "activity": c.get("activity", float("nan")),
                        "binding": float(bool(c.get("binding"))), "shadow_price": c.get("shadow_price", float("nan")),
                        "cost": c.get("cost", float("nan"))} for name, c in constraints.items()}
        _log(args, "constraints (cost in objective units; binding = 1):")
        _log(args, _format_table(table, ("bound", "activity", "binding", "shadow_price", "cost")))
    out: dict[str, Any] = {"method": args.method, "market": market.to_dict(), "problem": problem.to_dict(),
                           "quotes_t0": {"q": solution.q_grid, "bid": solution.bid[0], "ask": solution.ask[0]},
                           "theta_t0_q0": float(solution.theta[0, i0]), "info": solution.info}
    if args.out:
        from mmray.plots import plot_quote_surface

        ckpt = save_policy(solution.policy(), args.out / "policy", provenance={"config": vars_jsonable(args)})
        plot_quote_surface(solution.times, solution.q_grid, solution.bid, solution.ask, args.out / "quotes.png",
                           title=f"{args.method} solution, objective {problem.objective}, gamma={problem.gamma:g}")
        atomic_write_json(args.out / "solution.json", out)
        out["checkpoint"] = str(ckpt)
        _log(args, f"wrote {ckpt} (load with mmray.load_policy or `mmray backtest --policy {ckpt}`), "
                   f"{args.out / 'quotes.png'}")
    return out


def vars_jsonable(args: argparse.Namespace) -> dict[str, Any]:
    return to_jsonable({k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "func"})


def _strategy_names(args: argparse.Namespace) -> list[str]:
    """``--strategy`` values (repeatable for backtest), default ``optimal``; none with ``--policy``."""
    if args.policy is not None:
        return []
    names = args.strategy if isinstance(args.strategy, list) else [args.strategy]
    return [n for n in names if n] or ["optimal"]


# strategy flags -> the strategies that use them (given to none of those, a flag is an error)
_STRATEGY_FLAGS = {"half_spread": ("constant", "inventory"), "skew": ("inventory",)}


def _setup(args: argparse.Namespace) -> tuple[dict[str, Any], MarketParams, ProblemParams, SimConfig]:
    """Policies, model and simulation settings of ``backtest``/``simulate``: a ``--policy``
    checkpoint brings its own model (and, for pi/csp, its dt and fill model), flags override."""
    names = _strategy_names(args)
    for flag, users in _STRATEGY_FLAGS.items():
        if getattr(args, flag) is not None and not set(users) & set(names):
            raise ValueError(f"--{flag.replace('_', '-')} applies to --strategy {' or '.join(users)} only")
    if args.policy is not None:
        from mmray.checkpoint import load_policy

        policy = load_policy(args.policy)
        market, problem = _params(args, policy)
        return {args.policy.name: policy}, market, problem, _sim_config(args, problem, policy)
    from mmray.strategies import make_strategy

    market, problem = _params(args)
    policies = {n: make_strategy(n, market, problem, half_spread=args.half_spread, skew=args.skew) for n in names}
    return policies, market, problem, _sim_config(args, problem)


def _warn_discrete_mismatch(policy: Any, market: MarketParams, config: SimConfig) -> None:
    """pi/csp policies are optimal for the discrete problem they were solved on: say when the backtest differs."""
    info = discrete_problem(policy)
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
    if market.tick > 0:
        issues.append("its offsets are already on the tick grid; --tick > 0 rounds prices a second time")
    if issues:
        print(f"mmray backtest: warning: this {policy.provenance['solver']} policy is optimal for its own discrete "
              f"problem: {'; '.join(issues)}", file=sys.stderr)


def cmd_backtest(args: argparse.Namespace) -> dict[str, Any]:
    from mmray.backtest import METRIC_KEYS, backtest

    policies, market, problem, config = _setup(args)
    for policy in policies.values():
        _warn_discrete_mismatch(policy, market, config)
    use_ray = _use_ray(args, config)
    record = 20 if args.out else 0
    results = {}
    for name, policy in policies.items():
        results[name] = backtest(policy, market, problem, config, use_ray=use_ray, record=record,
                                 progress=sys.stderr.isatty())
    metrics = {name: r.metrics for name, r in results.items()}
    _log(args, f"{config.n_paths} paths x {config.n_steps(problem.T)} steps, seed {config.seed}, "
               f"{config.price_model} prices, {config.fill_model} fills" + (" (Ray)" if use_ray else ""))
    _log(args, _format_table(metrics, METRIC_KEYS))
    if len(results) == 1:
        name = next(iter(results))
        out: dict[str, Any] = {"strategy": name, **metrics[name]}
    else:
        out = {"strategies": metrics}
    out.update({"n_paths": config.n_paths, "seed": config.seed, "market": market.to_dict(),
                "problem": problem.to_dict(), "sim": config.to_dict()})
    if args.out:
        from mmray import plots

        for name, r in results.items():
            plots.plot_paths(r, args.out / f"paths_{name}.png", title=f"{name}: sample paths")
        plots.plot_pnl_distribution(results, args.out / "pnl_distribution.png")
        plots.plot_comparison_table(metrics, args.out / "comparison.png",
                                    ("pnl_mean", "pnl_std", "sharpe", "q_final_std", "spread_mean"))
        atomic_write_json(args.out / "results.json", out)
        _log(args, f"wrote results.json and plots to {args.out}")
    return out


def cmd_simulate(args: argparse.Namespace) -> dict[str, Any]:
    from mmray.distributed import chunk_plan
    from mmray.sim import simulate_chunk

    policies, market, problem, config = _setup(args)
    name, policy = next(iter(policies.items()))
    # one chunk seeded as backtest's first: path i here is path i of `backtest` with the same
    # --paths and --seed (when they fit in one --chunk-size chunk)
    _, seq = chunk_plan(config.n_paths, max(config.n_paths, config.chunk_size), config.seed)[0]
    res = simulate_chunk(policy, market, problem, config, config.n_paths, seq, record=config.n_paths)
    assert res.paths is not None
    p = res.paths
    out = {"strategy": name, "seed": config.seed, "t": p["t"], "s": p["s"], "q": p["q"], "pnl": p["pnl"],
           "final": {"pnl": res.pnl, "q": res.q_final, "trades": res.trades}}
    for i in range(config.n_paths):
        _log(args, f"path {i}: final PnL {res.pnl[i]:.4f}, final q {res.q_final[i]:g}, {res.trades[i]:g} fills, "
                   f"max drawdown {res.max_drawdown[i]:.4f}")
    if args.out:
        import pandas as pd

        from mmray.backtest import BacktestResult
        from mmray.io import atomic_write
        from mmray.plots import plot_paths

        frame = pd.DataFrame({"path": np.repeat(np.arange(config.n_paths), p["t"].size),
                              "t": np.tile(p["t"], config.n_paths), "mid": p["s"].ravel(),
                              "q": p["q"].ravel(), "pnl": p["pnl"].ravel()})
        atomic_write(args.out / "paths.csv", lambda tmp: frame.to_csv(tmp, index=False))
        plot_paths(BacktestResult({}, {}, p, config, market, problem), args.out / "paths.png", title=name)
        _log(args, f"wrote {args.out / 'paths.csv'} and paths.png")
    return out


def build_parser() -> argparse.ArgumentParser:
    from mmray import __version__

    parser = argparse.ArgumentParser(prog="mmray", description="Optimal market making with inventory constraints.")
    parser.add_argument("--version", action="version", version=f"mmray {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    from mmray.solvers import METHODS
    from mmray.solvers.cli_args import add_solver_arguments

    p = sub.add_parser("solve", help="solve the model and optionally save the policy")
    p.add_argument("--method", choices=METHODS, default="exact")
    add_solver_arguments(p)
    _add_model_flags(p)
    p.add_argument("--out", type=Path, help="write policy checkpoint (OUT/policy), plot and solution.json")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(func=cmd_solve)

    for name, fn, paths, help_ in (("backtest", cmd_backtest, 10000, "Monte Carlo backtest with metrics"),
                                   ("simulate", cmd_simulate, 1, "simulate single paths")):
        p = sub.add_parser(name, help=help_)
        _add_strategy_flags(p, multiple=name == "backtest")
        _add_model_flags(p)
        _add_sim_flags(p, paths)
        p.add_argument("--out", type=Path, help="directory for results and plots")
        p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
        p.set_defaults(func=fn)

    p = sub.add_parser("tune", help="Ray Tune sweeps (same as python -m mmray.tune)", add_help=False)
    p.add_argument("tune_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=None)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["tune"]:
        from mmray.tune import main as tune_main

        return tune_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        out = args.func(args)
    except ValueError as exc:  # validation errors name the field and value
        parser.exit(2, f"mmray {args.command}: error: {exc}\n")
    except OSError as exc:  # unwritable --out, unreadable --policy, ...
        where = f"{exc.filename}: " if exc.filename else ""
        parser.exit(2, f"mmray {args.command}: error: {where}{exc.strerror or exc}\n")
    if args.json:
        print(json.dumps(to_jsonable(out), allow_nan=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
