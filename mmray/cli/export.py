"""``mmray export``: a trained agent as an mmray policy checkpoint (numpy MLP: backtests, sweeps and
the replay engine need neither torch nor RLlib)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mmray.cli.common import fail, log

NAME = "export"


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``mmray export`` on the sub-command action ``sub``."""
    e = sub.add_parser(NAME, help="write a trained agent as an mmray policy checkpoint",
                       description="Write the deterministic policy of a `mmray train` run (its best agent, or "
                                   "--latest) or of an RLlib checkpoint inside one as an mmray policy checkpoint: "
                                   "MLP weights in arrays.npz, architecture, activation, observation and action "
                                   "scaling in policy.json; evaluated in numpy.")
    e.add_argument("source", type=Path, metavar="RUN_OR_CHECKPOINT",
                   help="a `mmray train` run directory, or an RLlib checkpoint directory inside one")
    e.add_argument("--out", type=Path, required=True, help="checkpoint directory to write (required)")
    e.add_argument("--latest", action="store_true", help="the latest checkpoint instead of the best agent")
    e.add_argument("--json", action="store_true", help="print one JSON object describing the policy")
    e.set_defaults(run=run)
    return e


def run(args: argparse.Namespace) -> int:
    """Run ``mmray export``; returns the exit status."""
    import json

    from mmray.checkpoint import save_policy
    from mmray.io import to_jsonable
    from mmray.tuning.rl import RL_CONFIG_FILE, export_policy, read_run_config

    try:
        source = args.source
        if not source.is_dir():
            raise ValueError(f"{source}: not a directory (a `mmray train` run or an RLlib checkpoint inside one)")
        config = None
        if not (source / RL_CONFIG_FILE).is_file():
            parent = next((p for p in source.parents if (p / RL_CONFIG_FILE).is_file()), None)
            if parent is None:
                raise ValueError(f"{source}: no {RL_CONFIG_FILE} here or above: pass a `mmray train` run directory "
                                 "or an RLlib checkpoint inside one")
            config = read_run_config(parent)
        policy = export_policy(source, config, best=not args.latest)
        path = save_policy(policy, args.out)
    except (ValueError, OSError) as exc:
        fail(args, exc)
    meta = json.loads((path / "policy.json").read_text())
    out = {"policy": str(path), "kind": meta["kind"], "features": meta["features"], "params": meta["params"]}
    if args.json:
        print(json.dumps(to_jsonable(out), allow_nan=False))
    else:
        log(args, f"wrote {path} ({meta['kind']} policy; backtest with mmray backtest --policy {path})")
    return 0
