"""``mmray solve``: solve the model with one of the solvers, print its quotes, save the policy."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from mmray.cli.common import args_jsonable, format_table, log, run_with_output
from mmray.cli.flags import add_model_flags, add_output_flags, add_solver_flags, model_params
from mmray.cli.policies import SOLVE_CHECKPOINT

NAME = "solve"
DESCRIPTION = ("Solve the market maker's problem (exact matrix exponential, finite differences, policy iteration "
               "on the tick grid, or OR-Tools under constraints), print the quotes at t=0 and t=T and optionally "
               "save the policy as a checkpoint.")
WRITES = f"{SOLVE_CHECKPOINT}/ (the policy checkpoint), quotes.png (quote surfaces) and solution.json"


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``mmray solve`` on the sub-command action ``sub``."""
    from mmray.solvers import METHODS

    p = sub.add_parser(NAME, help="solve the model and optionally save the policy", description=DESCRIPTION)
    p.add_argument("--method", choices=METHODS, default="exact", help="solver (default: %(default)s)")
    add_solver_flags(p)
    add_model_flags(p)
    add_output_flags(p, WRITES)
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``mmray solve``; returns the exit status."""
    return run_with_output(args, solve)


def _quote_rows(solution: Any) -> dict[str, dict[str, float]]:
    """Quotes at t=0 and t=T at five inventories (both bounds, zero and half-way)."""
    q = solution.q_grid
    i0 = int(np.argmin(np.abs(q)))
    return {f"q={q[j]:g}": {"bid_t0": solution.bid[0, j], "ask_t0": solution.ask[0, j],
                            "bid_tT": solution.bid[-1, j], "ask_tT": solution.ask[-1, j]}
            for j in sorted({0, i0 // 2, i0, (i0 + q.size - 1) // 2, q.size - 1})}


def _log_constraints(args: argparse.Namespace, constraints: dict[str, Any]) -> None:
    table = {name: {"bound": c.get("bound", float("nan")), "activity": c.get("activity", float("nan")),
                    "binding": float(bool(c.get("binding"))), "shadow_price": c.get("shadow_price", float("nan")),
                    "cost": c.get("cost", float("nan"))} for name, c in constraints.items()}
    log(args, "constraints (cost in objective units; binding = 1):")
    log(args, format_table(table, ("bound", "activity", "binding", "shadow_price", "cost")))


#: share of quoted sides at the first or last level of a tick grid above which ``mmray solve`` warns
GRID_EDGE_WARNING = 0.1


def _quote_grid(args: argparse.Namespace, market: Any, problem: Any, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` with the quote levels chosen from the model (:func:`mmray.solvers.grids.model_grid`: the
    offsets the optimum can want at the decision step and fill model), unless ``--n-levels`` or
    ``--min-level`` chose them; unchanged when the problem cannot say (no tick, no inventory bound)."""
    from mmray.solvers.grids import model_grid

    tick = options.get("tick") or market.tick or None
    if {"n_levels", "min_level", "levels"} & set(options) or tick is None or problem.q_max is None:
        return options
    dt = options.get("dt") or problem.T / options.get("n_steps", 200)
    _, levels = model_grid(market, problem, tick=tick, dt=dt, fill_model=options.get("fill_model", "poisson"))
    log(args, f"quote grid from the model: tick {tick:g}, offsets {levels[0] * tick:g} to {levels[-1] * tick:g} "
              f"({levels.size} levels; --n-levels and --min-level choose another)")
    return {**options, "levels": [int(v) for v in levels]}


def grid_edge_share(solution: Any) -> float | None:
    """Share of the quoted sides of a tick-grid solution at the grid's first or last level (``pi`` reports
    it as ``info["grid_edge_share"]``; for ``csp`` it is read off the quote tables); ``None`` off a grid."""
    info = solution.info
    if info.get("grid_edge_share") is not None:
        return float(info["grid_edge_share"])
    grid = info.get("grid")
    if not isinstance(grid, dict) or not grid.get("levels"):
        return None
    edges = grid["tick"] * np.array([grid["levels"][0], grid["levels"][-1]], dtype=float)
    sides = np.concatenate([np.ravel(solution.bid[:-1]), np.ravel(solution.ask[:-1])])
    quoted = sides[np.isfinite(sides)]
    if quoted.size == 0:
        return 0.0
    return float(np.mean(np.isclose(quoted[:, None], edges[None, :], rtol=0.0, atol=1e-9 * grid["tick"]).any(axis=1)))


def _warn_grid_edge(args: argparse.Namespace, solution: Any) -> None:
    """Say so when many quotes sit at the edge of the tick grid: the grid then truncates the optimum."""
    share = grid_edge_share(solution)
    if share is not None and share >= GRID_EDGE_WARNING:
        log(args, f"warning: {share:.0%} of the quoted sides are at the first or last level of the quote grid "
                  f"(grid_edge_share {share:.2f}): the grid truncates the optimum; widen it (--n-levels, "
                  "--min-level) or leave both out to choose it from the model")


def solve(args: argparse.Namespace, stage: Path | None) -> dict[str, Any]:
    """Solve, print, and write the ``--out`` files into ``stage``; returns the ``--json`` object."""
    from mmray.cli.solver_flags import solver_options
    from mmray.solvers import solve as solve_model

    market, problem = model_params(args)
    options = solver_options(args.method, args, problem.T)
    if args.method in ("pi", "csp"):
        options = _quote_grid(args, market, problem, options)
    solution = solve_model(market, problem, method=args.method, **options)
    _warn_grid_edge(args, solution)
    i0 = int(np.argmin(np.abs(solution.q_grid)))
    log(args, f"solved with {args.method}: {solution.times.size} times x {solution.q_grid.size} inventories "
              f"in {solution.info.get('seconds', float('nan')):.3f} s")
    log(args, format_table(_quote_rows(solution), ("bid_t0", "ask_t0", "bid_tT", "ask_tT")))
    if solution.info.get("constraints"):
        _log_constraints(args, solution.info["constraints"])
    out: dict[str, Any] = {"method": args.method, "market": market.to_dict(), "problem": problem.to_dict(),
                           "quotes_t0": {"q": solution.q_grid, "bid": solution.bid[0], "ask": solution.ask[0]},
                           "theta_t0_q0": float(solution.theta[0, i0]), "info": solution.info}
    if stage is not None:
        _write(args, stage, solution, out)
    return out


def _write(args: argparse.Namespace, stage: Path, solution: Any, out: dict[str, Any]) -> None:
    from mmray.checkpoint import save_policy
    from mmray.io import atomic_write_json
    from mmray.plots import plot_quote_surface, run_settings

    save_policy(solution.policy(), stage / SOLVE_CHECKPOINT, provenance={"config": args_jsonable(args)})
    # the solution's tables (for a randomised csp policy: its most probable quotes), steps on a tick grid
    plot_quote_surface(solution.times, solution.q_grid, solution.bid, solution.ask, stage / "quotes.png",
                       title=f"{args.method} solution",
                       settings=run_settings(solution.market, solution.problem, method=args.method),
                       solved_for=solution.solved_for)
    atomic_write_json(stage / "solution.json", out)
    ckpt = args.out / SOLVE_CHECKPOINT
    out["checkpoint"] = str(ckpt)
    log(args, f"wrote {ckpt} (load with mmray.load_policy or `mmray backtest --policy {args.out}`), "
              f"{args.out / 'quotes.png'}, {args.out / 'solution.json'}")
