"""PPO and SAC on the default GLFT env for a time budget each: the optimality figures of every run.

How to run::

    python benchmarks/rl_glft.py                                # PPO and SAC, 30 min each, seeds 0 1 2
    python benchmarks/rl_glft.py --algo ppo --seeds 0 --budget 600
    python benchmarks/rl_glft.py --params inventory             # the harder set: gamma 5x (inventory risk dominates)
    python benchmarks/rl_glft.py --reward realised              # the realised reward (default: expected, same optimum)
    python benchmarks/rl_glft.py --smoke                        # a tiny env, 2 iterations each (seconds)

Each run is :func:`mmray.tuning.rl.train` with a ``time_budget`` (Ray on ``--cpus`` CPUs, 2 by default),
evaluating the deterministic agent exactly after every iteration against the optimum of the env's own
dynamics (``pi`` on a refined quote grid; :mod:`mmray.tuning.rl_eval`) and keeping the best. Printed per
run: the best agent's ``gap_closed`` and ``optimality_ratio`` (exact: no standard error), its value, env
steps and steps/s, and the env steps and wall time at which the gap closed first reached 0.5, 0.8, 0.9
and 0.95. Written under ``--out``: one run directory per (algorithm, seed) with its learning curves, and
``summary.json`` (runs of earlier invocations on the same ``--out`` and ``--params`` are kept, a rerun of the
same algorithm and seed replaces its entry).

Issue 9's goals (2 CPUs, 30 minutes): PPO ``gap_closed`` >= 0.95, reliably (three seeds); SAC >= 0.5.
The 30-minute runs are not for CI; ``--smoke`` is (tests/test_rl_benchmarks.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from mmray.envs import EnvConfig
from mmray.io import to_jsonable
from mmray.objectives import REWARD_NOISE
from mmray.params import ProblemParams
from mmray.tuning.rl import TRAINING_REWARD, PPOTrainConfig, SACTrainConfig, TrainConfig, train
from mmray.tuning.rl_curves import MILESTONES, milestones
from mmray.tuning.rl_eval import OptimalityBenchmark, ReferenceSpec

PARAMS: dict[str, EnvConfig] = {
    "default": EnvConfig(),
    "inventory": EnvConfig(problem=ProblemParams(gamma=0.05, objective="B")),
}
"""The parameter sets: issue 9's default env (GLFT figure parameters, gamma 0.01, objective B, Q = 30,
T = 600, dt = 1) and a harder one where inventory risk dominates (gamma 0.05)."""


def ppo_config(env: EnvConfig, seed: int, budget: float, smoke: bool) -> PPOTrainConfig:
    """PPO: the calibration run's settings (``PPOTrainConfig`` defaults: [64, 64] tanh, 256 envs x 128
    steps, minibatch 4096, 10 epochs, lr 3e-4, discount 1) with a separate value network
    (``vf_share_layers=False``), initial action std 0.22 (``initial_log_std=-1.5``), entropy bonus 0.01,
    rewards centred and the observed inventory scaled by the reference's RMS inventory (``TrainConfig``
    defaults), the learning rate decayed linearly to 3e-5 over the first 20 M env steps
    (stability late in the run; the best agent is kept anyway)."""
    if smoke:
        return PPOTrainConfig(env=env, seed=seed, iterations=2, hidden=(16, 16), num_envs_per_env_runner=16,
                              rollout_fragment_length=60, minibatch_size=480, num_epochs=2)
    return PPOTrainConfig(env=env, seed=seed, time_budget=budget, lr_schedule=((0, 3e-4), (20_000_000, 3e-5)),
                          checkpoint_every=20)


def sac_config(env: EnvConfig, seed: int, budget: float, smoke: bool) -> SACTrainConfig:
    """SAC: ``SACTrainConfig`` defaults (256 envs x 4 steps per sample, batch 1024, replay ratio 1, initial
    entropy weight 1e-4, 3-step returns, discount 0.999, [64, 64] tanh, the numpy replay), evaluated every
    20 iterations (an RLlib SAC iteration is several samples: about 5,000 env steps here)."""
    if smoke:
        return SACTrainConfig(env=env, seed=seed, iterations=2, hidden=(16, 16), num_envs_per_env_runner=8,
                              rollout_fragment_length=8, train_batch_size=64, learning_starts=128,
                              replay_capacity=10_000)
    return SACTrainConfig(env=env, seed=seed, time_budget=budget, eval_every=20, checkpoint_every=200)


BUILDERS = {"ppo": ppo_config, "sac": sac_config}


def describe(algo: str, seed: int, res: Any) -> dict[str, Any]:
    f = res.figures
    marks = milestones(res.history)
    return {"algorithm": algo, "seed": seed, "stop_reason": res.stop_reason, "gap_closed": f.gap_closed,
            "gap_closed_se": f.gap_closed_se,
            "optimality_ratio": f.optimality_ratio, "optimality_ratio_se": f.optimality_ratio_se,
            "agent_value": f.agent_value, "reference_value": f.reference_value, "baseline_value": f.baseline_value,
            "exact_policy_value": f.exact_policy_value, "method": f.method, "best_iteration": res.best_iteration,
            "env_steps": res.env_steps, "wall_s": res.wall_s, "steps_per_s": res.env_steps / res.wall_s,
            "milestones": marks, "out": str(res.out)}


def _mark(m: dict[str, Any] | None) -> str:
    return "     -     " if m is None else f"{m['env_steps'] / 1e6:5.2f}M/{m['wall_s'] / 60:4.1f}m"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--algo", nargs="+", choices=sorted(BUILDERS), default=["ppo", "sac"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--budget", type=float, default=1800.0, help="seconds of training per run")
    parser.add_argument("--params", choices=sorted(PARAMS), default="default")
    parser.add_argument("--reward", choices=REWARD_NOISE, default=TRAINING_REWARD,
                        help="the env's reward variant (EnvConfig.reward; the figures do not depend on it; "
                             "default: %(default)s, training's)")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs Ray may use")
    parser.add_argument("--out", default="runs/rl_glft", help="directory for the runs and summary.json")
    parser.add_argument("--smoke", action="store_true", help="a tiny env and 2 iterations per run")
    args = parser.parse_args(argv)

    import ray

    env = PARAMS[args.params].replace(reward=args.reward)
    if args.smoke:
        env = env.replace(problem=env.problem.replace(T=30.0, q_max=5), dt=0.5)
    problem_dir = Path(args.out) / (args.params + ("-smoke" if args.smoke else ""))
    out = problem_dir / f"reward-{args.reward}"
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    spec = ReferenceSpec()
    bench_dir = problem_dir / "benchmark"  # one per problem: the figures do not depend on the reward variant
    if (bench_dir / "benchmark.json").is_file():
        bench = OptimalityBenchmark.load(bench_dir, env)
    else:
        bench = OptimalityBenchmark.build(env, spec)
        bench.save(bench_dir)
    shape = "smoke" if args.smoke else "T = 600, dt = 1, Q = 30"
    print(f"env: {args.params}, reward {args.reward} ({shape}); reference (pi) "
          f"{bench.reference_value:.3f} (last refinement {bench.reference_info['refinement_change']:+.4f}), "
          f"continuous exact policy {bench.exact_value:.3f}, best constant {bench.baseline_value:.3f} "
          f"(h = {bench.baseline_half_spread:.3f}); exact policy's gap closed "
          f"{(bench.exact_value - bench.baseline_value) / (bench.reference_value - bench.baseline_value):.3f}",
          flush=True)
    if not ray.is_initialized():
        ray.init(address="local", num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    logging.getLogger("ray.rllib").setLevel(logging.ERROR)
    runs = []
    for algo in args.algo:
        for seed in args.seeds:
            config: TrainConfig = BUILDERS[algo](env, seed, args.budget, args.smoke)
            run_dir = out / f"{algo}-seed{seed}"
            resume = run_dir if (run_dir / "run_state.json").is_file() else None
            print(f"--- {algo} seed {seed}: {run_dir}{' (resumed)' if resume else ''}", flush=True)
            res = train(config, None if resume else run_dir, resume=resume, benchmark=bench,
                        progress=lambda line: print("   ", line, flush=True))
            runs.append(describe(algo, seed, res))
    levels = "  ".join(f"to {level:<6g}   " for level in MILESTONES)
    print(f"\nsummary ({args.params}; budget {args.budget:g} s per run; load average {os.getloadavg()[0]:.1f})")
    print(f"  algo seed   gap_closed  ratio     value     env steps  steps/s   {levels}")
    for r in runs:
        marks = "  ".join(_mark(r["milestones"][f"{level:g}"]) for level in MILESTONES)
        print(f"  {r['algorithm']:<4s} {r['seed']:>4d}   {r['gap_closed']:+9.4f}  {r['optimality_ratio']:.5f}  "
              f"{r['agent_value']:9.3f}  {r['env_steps']:>11,d}  {r['steps_per_s']:7,.0f}   {marks}")
    path = out / "summary.json"
    done = {(r["algorithm"], r["seed"]) for r in runs}
    earlier = json.loads(path.read_text())["runs"] if path.is_file() else []  # other algorithms/seeds run before
    runs = [r for r in earlier if (r["algorithm"], r["seed"]) not in done] + runs
    summary = {"params": args.params, "reward": args.reward, "env": env.to_dict(), "smoke": args.smoke,
               "benchmark": bench.summary(), "runs": runs, "seconds": time.perf_counter() - start}
    path.write_text(json.dumps(to_jsonable(summary), indent=2) + "\n")
    print(f"summary written to {out / 'summary.json'}")
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
