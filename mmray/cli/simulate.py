"""``mmray simulate``: single simulated paths of one strategy (CSV and plot)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from mmray.cli.backtest import add_flags, setup, warn_regime
from mmray.cli.common import log, run_with_output

NAME = "simulate"
DESCRIPTION = ("Simulate single paths of one strategy or saved policy and print each path's final PnL, "
               "inventory, fills and drawdown; path i is path i of `mmray backtest` with the same --paths and "
               "--seed.")
WRITES = "paths.csv (path, t, mid, q, pnl per step) and paths.png"


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``mmray simulate`` on the sub-command action ``sub``."""
    p = sub.add_parser(NAME, help="simulate single paths", description=DESCRIPTION)
    add_flags(p, multiple=False, paths=1, writes=WRITES)
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``mmray simulate``; returns the exit status."""
    return run_with_output(args, simulate)


def simulate(args: argparse.Namespace, stage: Path | None) -> dict[str, Any]:
    """Simulate, print, and write the ``--out`` files into ``stage``; returns the ``--json`` object."""
    from mmray.distributed import chunk_plan
    from mmray.limits import FLOAT_BYTES, require_memory
    from mmray.sim import simulate_chunk

    if args.strategy is not None and len(args.strategy) > 1:
        raise ValueError(f"simulate runs one strategy, got --strategy {' --strategy '.join(args.strategy)} "
                         "(compare several with mmray backtest)")
    policies, market, problem, config = setup(args)
    n_points = config.n_steps(problem.T) + 1
    require_memory(3 * FLOAT_BYTES * config.n_paths * n_points, "recording every path",
                   f"--paths {config.n_paths} recorded paths x {n_points} time points (s, q and pnl)")
    warn_regime(args, market, problem, config)
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
        log(args, f"path {i}: final PnL {res.pnl[i]:.4f}, final q {res.q_final[i]:g}, {res.trades[i]:g} fills, "
                  f"max drawdown {res.max_drawdown[i]:.4f}")
    if stage is not None:
        _write(stage, name, res, config, market, problem)
        log(args, f"wrote {args.out / 'paths.csv'} and paths.png")
    return out


def _write(stage: Path, name: str, res: Any, config: Any, market: Any, problem: Any) -> None:
    import pandas as pd

    from mmray.backtest import BacktestResult
    from mmray.io import atomic_write
    from mmray.plots import plot_paths

    p = res.paths
    frame = pd.DataFrame({"path": np.repeat(np.arange(config.n_paths), p["t"].size),
                          "t": np.tile(p["t"], config.n_paths), "mid": p["s"].ravel(),
                          "q": p["q"].ravel(), "pnl": p["pnl"].ravel()})
    atomic_write(stage / "paths.csv", lambda tmp: frame.to_csv(tmp, index=False))
    plot_paths(BacktestResult({}, {}, p, config, market, problem), stage / "paths.png", title=f"strategy {name}")
