"""Env throughput: raw env steps/s of the single env, the native vector env and gymnasium's SyncVectorEnv;
RLlib PPO sampling alone and end to end (sampling + learning); mbt_gym alongside when it is installed.

How to run::

    python benchmarks/env_throughput.py             # full (a few minutes, Ray on 2 CPUs)
    python benchmarks/env_throughput.py --smoke     # seconds of each part, for a quick check
    python benchmarks/env_throughput.py --no-rllib  # the envs only
    python benchmarks/env_throughput.py --json out.json

Raw env steps: the default env (GLFT parameters, dt = 1, 600-step episodes), constant actions, episodes
reset as they end; each figure is the best of ``--repeats`` timed runs of ``--seconds`` each. RLlib:
``PPOTrainConfig`` defaults (256 sub-envs per runner x 128-step fragments, native vector env through
``VECTOR_ENTRY_POINT``) against gymnasium's sync vectorisation of the single env, torch on 1 thread as
``train()`` sets it; sampling alone is ``algo.env_runner.sample()`` (the local runner, exploration on),
end to end is ``algo.train()``.

mbt_gym (the vectorised model-based market-making gym) is not on PyPI (``pip install mbt-gym``: no
distribution): install it from its repository to include it (``--mbt-gym``); it is then stepped with
its own Poisson arrivals and exponential fills at the same A, k, dt and horizon, one env (one
trajectory) and one env of ``--mbt-trajectories`` trajectories.

Issue 9's goals (2 CPUs): native vector env >= 10x the single env; RLlib PPO end to end >= 25,000 env
steps/s and sampling alone >= 40,000; >= 2x mbt_gym's 19,000 single-env steps/s and 6.7 M
trajectory-steps/s. This machine is shared: figures are lower bounds; compare within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from mmray.envs import EnvConfig, MarketMakingEnv, MarketMakingVectorEnv


def rate(step_batch: Callable[[], int], seconds: float, repeats: int) -> float:
    """Best of ``repeats`` runs of ``step_batch`` (returns env steps done) for about ``seconds`` each, after
    one untimed call (first-call costs: imports, caches)."""
    step_batch()
    best = 0.0
    for _ in range(repeats):
        done, start = 0, time.perf_counter()
        while True:
            done += step_batch()
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                break
        best = max(best, done / elapsed)
    return best


def single_env(config: EnvConfig, seconds: float, repeats: int) -> float:
    env = MarketMakingEnv(config)
    env.reset(seed=0)
    action = np.zeros(2, dtype=np.float32)

    def batch() -> int:
        for _ in range(100):
            _, _, done, _, _ = env.step(action)
            if done:
                env.reset()
        return 100
    return rate(batch, seconds, repeats)


def vector_env(config: EnvConfig, n: int, seconds: float, repeats: int, rng_mode: str = "shared") -> float:
    env = MarketMakingVectorEnv(n, config, rng_mode=rng_mode)
    env.reset(seed=0)
    actions = np.zeros((n, 2), dtype=np.float32)

    def batch() -> int:
        for _ in range(10):
            env.step(actions)  # the autoreset step counts as a step of every sub-env, as RLlib counts it
        return 10 * n
    return rate(batch, seconds, repeats)


def sync_vector_env(config: EnvConfig, n: int, seconds: float, repeats: int) -> float:
    import gymnasium as gym

    env = gym.vector.SyncVectorEnv([lambda: MarketMakingEnv(config) for _ in range(n)])
    env.reset(seed=0)
    actions = np.zeros((n, 2), dtype=np.float32)

    def batch() -> int:
        env.step(actions)
        return n
    return rate(batch, seconds, repeats)


def mbt_gym_rates(config: EnvConfig, trajectories: int, seconds: float, repeats: int) -> dict[str, Any]:
    """mbt_gym's ``TradingEnvironment`` at the same A, k, dt, T (its own Poisson arrivals and exponential
    fills); one trajectory and ``trajectories`` trajectories per env. Raises ImportError when absent."""
    from mbt_gym.gym.TradingEnvironment import TradingEnvironment
    from mbt_gym.stochastic_processes.arrival_models import PoissonArrivalModel
    from mbt_gym.stochastic_processes.fill_probability_models import ExponentialFillFunction

    m, n_steps = config.market, config.n_steps

    def make(n: int) -> Any:
        arrivals = PoissonArrivalModel(intensity=np.array([m.A, m.A]), step_size=config.dt, num_trajectories=n)
        fills = ExponentialFillFunction(fill_exponent=m.k, step_size=config.dt, num_trajectories=n)
        return TradingEnvironment(terminal_time=config.problem.T, n_steps=n_steps, arrival_model=arrivals,
                                  fill_probability_model=fills, num_trajectories=n)

    out = {}
    for label, n in (("single", 1), ("vector", trajectories)):
        env = make(n)
        env.reset()
        action = np.full((n, 2), 3.0)

        def batch(env: Any = env, action: np.ndarray = action, n: int = n) -> int:
            for _ in range(10):
                _, _, dones, _ = env.step(action)[:4]
                if np.all(dones):
                    env.reset()
            return 10 * n
        out[label] = rate(batch, seconds, repeats)
    out["trajectories"] = trajectories
    return out


def rllib_rates(config: EnvConfig, iterations: int, envs: int, fragment: int, minibatch: int,
                vector_entry_point: bool) -> dict[str, float]:
    """PPO (``PPOTrainConfig`` with ``envs`` sub-envs x ``fragment`` steps): sampling alone (local runner's
    ``sample()``, after one warm-up call) and end to end (``algo.train()``, after one warm-up iteration)."""
    import gymnasium as gym
    import torch

    from mmray.tuning.rl import PPOTrainConfig

    ppo = PPOTrainConfig(env=config, num_envs_per_env_runner=envs, rollout_fragment_length=fragment,
                         minibatch_size=minibatch, iterations=1)
    torch.set_num_threads(ppo.torch_threads or torch.get_num_threads())  # as train() does
    algo_config = ppo.algorithm_config()
    if not vector_entry_point:
        algo_config = algo_config.env_runners(gym_env_vectorize_mode=gym.VectorizeMode.SYNC)
    algo = algo_config.build_algo()
    try:
        runner = algo.env_runner
        runner.sample()
        steps, start = 0, time.perf_counter()
        for _ in range(iterations):
            episodes = runner.sample()
            steps += sum(len(e) for e in episodes)
        sample_rate = steps / (time.perf_counter() - start)
        algo.train()
        before = algo.train()["env_runners"]["num_env_steps_sampled_lifetime"]
        start = time.perf_counter()
        for _ in range(iterations):
            after = algo.train()["env_runners"]["num_env_steps_sampled_lifetime"]
        train_rate = (after - before) / (time.perf_counter() - start)
    finally:
        algo.stop()
    return {"sampling": sample_rate, "train": train_rate}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny budgets (a quick check, not a measurement)")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per timed run of a raw env")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per raw env (best is reported)")
    parser.add_argument("--no-rllib", action="store_true", help="skip the RLlib part")
    parser.add_argument("--rllib-iterations", type=int, default=5, help="timed sample()/train() calls")
    parser.add_argument("--mbt-gym", action="store_true", help="also step mbt_gym (must be installed)")
    parser.add_argument("--mbt-trajectories", type=int, default=1000)
    parser.add_argument("--json", help="write the figures to this JSON file")
    args = parser.parse_args(argv)
    seconds, repeats = (0.2, 1) if args.smoke else (args.seconds, args.repeats)
    config = EnvConfig()
    if args.smoke:
        config = config.replace(problem=config.problem.replace(T=60.0))
    out: dict[str, Any] = {"env": "mmray/GLFT-v0 " + ("(T = 60, smoke)" if args.smoke else "(defaults)"),
                           "cpus": os.cpu_count(), "load_average": os.getloadavg()[0]}

    single = single_env(config, seconds, repeats)
    rows = [("MarketMakingEnv (single)", single)]
    for n in (256, 1000):
        rows.append((f"MarketMakingVectorEnv N={n} (shared generator)", vector_env(config, n, seconds, repeats)))
    rows.append(("MarketMakingVectorEnv N=256 (per-env generators)",
                 vector_env(config, 256, seconds, repeats, rng_mode="per_env")))
    n_sync = 16 if args.smoke else 256
    rows.append((f"gymnasium SyncVectorEnv of {n_sync} single envs", sync_vector_env(config, n_sync, seconds, repeats)))
    print(f"raw env steps/s ({out['env']}; load average {out['load_average']:.1f} on {out['cpus']} CPUs)")
    for label, value in rows:
        print(f"  {label:<52s} {value:>14,.0f}   {value / single:8.1f}x single")
    out["raw"] = dict(rows)
    out["vector_over_single"] = rows[1][1] / single

    if args.mbt_gym:
        try:
            mbt = mbt_gym_rates(config, args.mbt_trajectories, seconds, repeats)
        except Exception as exc:  # absent or another version's API: say so, measure the rest
            print(f"mbt_gym: not measured ({type(exc).__name__}: {exc})")
            out["mbt_gym"] = {"error": f"{type(exc).__name__}: {exc}"}
        else:
            out["mbt_gym"] = mbt
            print(f"  mbt_gym single env                                   {mbt['single']:>14,.0f}   "
                  f"ours / theirs {single / mbt['single']:.2f}")
            print(f"  mbt_gym {mbt['trajectories']} trajectories                             "
                  f"{mbt['vector']:>14,.0f}   ours (N=1000) / theirs {rows[2][1] / mbt['vector']:.2f}")

    if not args.no_rllib:
        import logging

        import ray

        if not ray.is_initialized():
            ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
        logging.getLogger("ray.rllib").setLevel(logging.ERROR)
        envs, fragment, minibatch = (32, 16, 256) if args.smoke else (256, 128, 4096)
        iterations = 1 if args.smoke else args.rllib_iterations
        out["rllib"] = {}
        print(f"RLlib PPO env steps/s ({envs} sub-envs x {fragment}-step fragments, 1 local env runner, 2 CPUs)")
        modes = (("native vector env (VECTOR_ENTRY_POINT)", True), ("gymnasium SYNC of single envs", False))
        for label, native in modes:
            r = rllib_rates(config, iterations, envs, fragment, minibatch, native)
            out["rllib"][label] = r
            print(f"  {label:<40s} sampling {r['sampling']:>10,.0f}   end to end {r['train']:>10,.0f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
