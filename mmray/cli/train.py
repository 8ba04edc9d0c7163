"""``mmray train``: RLlib PPO/SAC on the simulated market, measured against the optimum of its own
environment; the best agent is exported as an mmray policy checkpoint (``mmray export`` writes one
from any run or RLlib checkpoint).

::

    mmray train --algo ppo --time-budget 600 --out runs/ppo           # laptop: 2 CPUs, local Ray
    mmray train --resume runs/ppo --time-budget 1200                   # go on from the last checkpoint
    mmray train --algo ppo --address auto --env-runners 8 --learners 1 --gpus-per-learner 1 --out s3-or-dir
    mmray export runs/ppo --out runs/ppo-policy                        # best agent (by exact evaluation)
    mmray backtest --policy runs/ppo/policy --paths 20000

Every run measures its agent against the optimum of its own environment (docs/rl.md): the JSON has
``optimality_ratio``, ``gap_closed`` (with standard errors), ``agent_value``, ``reference_value``,
``baseline_value``, ``env_steps``, ``wall_s``, ``checkpoint`` and ``policy``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from mmray.cli.common import fail, log, ray_session_scope
from mmray.cli.flags import add_model_flags, model_params
from mmray.objectives import REWARD_NOISE

NAME = "train"
DESCRIPTION = ("Train an RLlib PPO or SAC agent on the simulated market (mmray/GLFT-v0: objective-B rewards, the "
               "one market step), evaluate it against the optimum of its own environment every iteration, keep "
               "the best agent and export it as an mmray policy checkpoint. See docs/rl.md.")
WRITES = ("rl_config.json, benchmark/, rllib_checkpoint/ (latest, to resume from), run_state.json, best_checkpoint/, "
          "policy/ (the best agent as an mmray checkpoint), best.json, learning_curves.csv/.png, quotes.png and "
          "result.json")


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``mmray train`` on the sub-command action ``sub``."""
    p = sub.add_parser(NAME, help="train an RL agent (RLlib PPO/SAC) and measure it against the optimum",
                       description=DESCRIPTION)
    p.add_argument("--algo", choices=("ppo", "sac"), help="algorithm (required unless --resume; default: none)")
    stop = p.add_argument_group("stopping (at least one, or --resume's saved ones)")
    stop.add_argument("--timesteps", type=int, help="env steps to train (default: none)")
    stop.add_argument("--time-budget", type=float, metavar="SECONDS", help="wall-clock seconds (default: none)")
    stop.add_argument("--iterations", type=int, help="RLlib training iterations (default: none)")
    p.add_argument("--seed", type=int, default=0, help="seed of the run (default: %(default)s)")
    p.add_argument("--dt", type=float, default=1.0, help="the environment's time step (default: %(default)s)")
    p.add_argument("--reward", choices=REWARD_NOISE,
                   help="the reward variant: realised increments of objective B, or with the zero-mean noise of "
                        "the mid (mid_expected) and of the fills too (expected) removed; the optimum and the "
                        "figures do not depend on it (docs/rl.md) (default: expected, training's)")
    add_model_flags(p)
    r = p.add_argument_group("resources (a laptop by default: 2 CPUs, local Ray)")
    r.add_argument("--address", help="attach to a running Ray cluster ('auto' or host:port) (default: a local Ray)")
    r.add_argument("--env-runners", type=int, help="RLlib env runners (default: the algorithm's, 0 = sample "
                                                    "in the driver)")
    r.add_argument("--envs-per-runner", type=int, help="vectorised envs per runner (default: the algorithm's)")
    r.add_argument("--learners", type=int, help="RLlib learners (default: 0, learn in the driver)")
    r.add_argument("--gpus-per-learner", type=float, help="GPUs per learner (default: 0)")
    r.add_argument("--minibatch-size", type=int, help="PPO minibatch, at most runners x envs x fragment "
                                                      "(default: the algorithm's, 4096)")
    p.add_argument("--out", type=Path, help=f"new run directory; writes {WRITES} (default: none; required "
                                            "unless --resume)")
    p.add_argument("--resume", type=Path, metavar="DIR", help="continue the run in DIR from its last checkpoint "
                                                               "(stopping flags may be raised) (default: none)")
    p.add_argument("--json", action="store_true", help="print one JSON object with the figures")
    p.set_defaults(run=run)
    return p


def _config(args: argparse.Namespace) -> Any:
    from mmray.envs.config import EnvConfig
    from mmray.tuning.rl import CONFIGS, training_env

    market, problem = model_params(args, problem=EnvConfig().problem)
    env = training_env(market=market, problem=problem, dt=args.dt, **({"reward": args.reward} if args.reward else {}))
    values: dict[str, Any] = {"env": env, "seed": args.seed}
    for flag, field in (("timesteps", "timesteps"), ("time_budget", "time_budget"), ("iterations", "iterations"),
                        ("env_runners", "num_env_runners"), ("envs_per_runner", "num_envs_per_env_runner"),
                        ("learners", "num_learners"), ("gpus_per_learner", "num_gpus_per_learner"),
                        ("minibatch_size", "minibatch_size")):
        if getattr(args, flag) is not None:
            values[field] = getattr(args, flag)
    if args.algo != "ppo" and "minibatch_size" in values:
        raise ValueError("--minibatch-size applies to --algo ppo only")
    return CONFIGS[args.algo](**values)


def _resume_config(args: argparse.Namespace) -> Any:
    """The saved config of ``--resume`` with the stopping flags given (the only fields that may change)."""
    from dataclasses import replace

    from mmray.tuning.rl import read_run_config

    saved = read_run_config(args.resume)
    changed = {f: getattr(args, f) for f in ("timesteps", "time_budget", "iterations") if getattr(args, f) is not None}
    return replace(saved, **changed)


def run(args: argparse.Namespace) -> int:
    """Run ``mmray train``; returns the exit status."""
    import json

    from mmray.distributed import ensure_ray
    from mmray.io import to_jsonable

    try:
        if args.resume is None and (args.algo is None or args.out is None):
            raise ValueError("--algo and --out are required (or --resume DIR)")
        if args.resume is not None and args.out is not None:
            raise ValueError("--resume continues its own run directory; it does not take --out")
        config = _resume_config(args) if args.resume is not None else _config(args)
        from mmray.tuning.rl import train

        with ray_session_scope():
            if args.address is not None:
                ensure_ray(address=args.address)
            result = train(config, args.out, resume=args.resume,
                           progress=lambda line: print(line, file=sys.stderr, flush=True))
    except (ValueError, OSError, ConnectionError, TimeoutError) as exc:
        fail(args, exc)
    out = result.to_dict()
    if args.json:
        print(json.dumps(to_jsonable(out), allow_nan=False))
    else:
        se = "exact" if out["method"] == "exact" else f"± {out['gap_closed_se']:.4f}"
        log(args, f"gap closed {out['gap_closed']:.4f} ({se}), optimality ratio "
                  f"{out['optimality_ratio']:.5f}: agent {out['agent_value']:.2f}, optimum "
                  f"{out['reference_value']:.2f}, best constant spread {out['baseline_value']:.2f}; "
                  f"{out['env_steps']:,} env steps in "
                  f"{out['wall_s']:.0f} s")
        log(args, f"policy {out['policy']} (mmray backtest --policy {out['policy']})")
    return 0
