"""Env throughput: raw env steps/s of the single env, the native vector env and gymnasium's SyncVectorEnv;
RLlib PPO sampling alone and end to end (sampling + learning); mbt_gym alongside when it is installed.

How to run::

    python benchmarks/env_throughput.py             # full (a few minutes, Ray on 2 CPUs)
    python benchmarks/env_throughput.py --smoke     # seconds of each part, for a quick check
    python benchmarks/env_throughput.py --no-rllib  # the envs only
    python benchmarks/env_throughput.py --mbt-gym   # with the peer mbt_gym (installed as below)
    python benchmarks/env_throughput.py --no-sync --ppo "wide:num_envs_per_env_runner=512,rollout_fragment_length=64"
    python benchmarks/env_throughput.py --json out.json

Raw env steps: the default env (GLFT parameters, dt = 1, 600-step episodes), constant actions, episodes
reset as they end (the NEXT_STEP autoreset step of a vector env is not counted, as RLlib does not count
it); the envs are timed in turn, ``--repeats`` rounds of ``--seconds`` each, and each figure is its best
round. RLlib: ``PPOTrainConfig`` defaults (256 sub-envs per runner x 128-step fragments, native vector env
through ``VECTOR_ENTRY_POINT``), gymnasium's SYNC vectorisation of the single env (``--no-sync`` skips
it) and every ``--ppo`` variant (``PPOTrainConfig`` fields, or ``SECTION.KEY`` passed to that method of
the ``AlgorithmConfig``: ``env_runners.num_cpus_per_env_runner=0.5``), all built first and then timed in
turn (A, B, A, B: ``--rllib-iterations`` rounds of one ``algo.train()`` each, then as many of one
sampling call each), torch on 1 thread as ``train()`` sets it; sampling alone is the local runner's
``sample()`` (exploration on), or every remote runner's in parallel; end to end is ``algo.train()``.
Printed: the median steps/s of each and the median of its per-round ratio to the defaults, and the load
average (``uptime``) at the start, before RLlib and at the end.

mbt_gym (the vectorised model-based market-making gym, an optional peer, not a dependency) is not on PyPI
and its repository has no packaging; to include it (``--mbt-gym``), with ``gym`` from PyPI::

    git clone <mbt_gym's repository> /tmp/mbt_gym        # or a snapshot of it
    cat > /tmp/mbt_gym/pyproject.toml <<'EOF'
    [build-system]
    requires = ["setuptools>=61"]
    build-backend = "setuptools.build_meta"
    [project]
    name = "mbt_gym"
    version = "0"
    [tool.setuptools.packages.find]
    include = ["mbt_gym*"]
    EOF
    .venv/bin/pip install gym==0.26.2 && .venv/bin/pip install --no-deps --no-build-isolation /tmp/mbt_gym

It is then built at our model (:func:`mbt_gym_env`: same A, k, sigma, dt, horizon, inventory bound, offset
range and objective-B reward) and stepped with one trajectory and with ``--mbt-trajectories`` (1000), timed
in turn with our envs.

Issue 9's goals (2 CPUs): native vector env >= 10x the single env; RLlib PPO end to end >= 25,000 env
steps/s and sampling alone >= 40,000; >= 2x mbt_gym's single-env steps/s and trajectory-steps/s with 1000
trajectories (the issue quotes ~19,000 and ~6.7 M for it). This machine is shared: figures are lower
bounds; compare within one run.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from mmray.envs import EnvConfig, MarketMakingEnv, MarketMakingVectorEnv

Batch = Callable[[], int]
"""A timed unit of work: steps an env a few times, returns the env steps done."""


def rates(batches: dict[str, Batch], seconds: float, repeats: int) -> dict[str, float]:
    """Env steps/s of each batch: one untimed call each (first-call costs), then ``repeats`` rounds in which
    each batch in turn runs for about ``seconds`` (interleaved, so that the machine's load hits all alike);
    the best round of each.

    Parameters
    ----------
    batches : dict of str to callable
        Label -> a batch of work returning the env steps it did.
    seconds, repeats : float, int
        Length of a timed run and number of rounds.

    Returns
    -------
    dict of str to float
        Label -> the best round's env steps/s.
    """
    for batch in batches.values():
        batch()
    best = dict.fromkeys(batches, 0.0)
    for _ in range(repeats):
        for label, batch in batches.items():
            done, start = 0, time.perf_counter()
            while True:
                done += batch()
                elapsed = time.perf_counter() - start
                if elapsed >= seconds:
                    break
            best[label] = max(best[label], done / elapsed)
    return best


def single_env(config: EnvConfig) -> Batch:
    """100 steps of :class:`MarketMakingEnv` (reset as an episode ends; a reset is not a step)."""
    env = MarketMakingEnv(config)
    env.reset(seed=0)
    action = np.zeros(2, dtype=np.float32)

    def batch() -> int:
        for _ in range(100):
            _, _, done, _, _ = env.step(action)
            if done:
                env.reset()
        return 100
    return batch


def _not_autoreset(step: Callable[[], np.ndarray], n: int) -> Batch:
    """10 calls of a vector env's ``step`` (returning ``terminated``), counting the sub-envs that stepped:
    the NEXT_STEP autoreset step after an episode's last one is no env step (RLlib does not count it)."""
    ended = np.zeros(n, dtype=bool)

    def batch() -> int:
        nonlocal ended
        done = 0
        for _ in range(10):
            terminated = step()
            done += n - int(ended.sum())
            ended = np.asarray(terminated, dtype=bool)
        return done
    return batch


def vector_env(config: EnvConfig, n: int, rng_mode: str = "shared") -> Batch:
    """10 steps of :class:`MarketMakingVectorEnv` with ``n`` sub-envs."""
    env = MarketMakingVectorEnv(n, config, rng_mode=rng_mode)
    env.reset(seed=0)
    actions = np.zeros((n, 2), dtype=np.float32)
    return _not_autoreset(lambda: env.step(actions)[2], n)


def sync_vector_env(config: EnvConfig, n: int) -> Batch:
    """10 steps of gymnasium's ``SyncVectorEnv`` of ``n`` single envs."""
    import gymnasium as gym

    env = gym.vector.SyncVectorEnv([lambda: MarketMakingEnv(config) for _ in range(n)])
    env.reset(seed=0)
    actions = np.zeros((n, 2), dtype=np.float32)
    return _not_autoreset(lambda: env.step(actions)[2], n)


def mbt_gym_env(config: EnvConfig, trajectories: int, seed: int = 1) -> Any:
    """mbt_gym's ``TradingEnvironment`` of ``trajectories`` paths at the model of ``config``: Brownian mid
    (``sigma``, drift, ``s0``), Poisson arrivals of intensity ``A`` on each side and exponential fill
    probabilities ``exp(-k delta)`` (``LimitOrderModelDynamics``), step ``dt`` over ``T``, inventory bound ``Q``,
    reward ``RunningInventoryPenalty`` = objective B's increment (running ``gamma sigma^2 / 2 q'^2 dt``,
    ``ell(q_T)`` at the end), actions normalised to [-1, 1] over depths ``[0, offset_high]`` as ours.
    mbt_gym draws an arrival with probability ``A dt`` and then a fill with probability ``exp(-k delta)``
    per side and step (ours: probability ``1 - exp(-A exp(-k delta) dt)``); the same model to first order
    in ``A dt``, and the same arithmetic per step.

    Parameters
    ----------
    config : EnvConfig
        Our env's configuration (``offset_low`` must be 0 and ``A dt <= 1``, else ``ValueError``).
    trajectories : int
        mbt_gym's ``num_trajectories`` (paths stepped together).
    seed : int
        Seed of mbt_gym's processes (mid, arrivals, fills: ``seed``, ``seed + 1``, ``seed + 2``).

    Returns
    -------
    mbt_gym.gym.TradingEnvironment.TradingEnvironment
        Raises ``ImportError`` when mbt_gym (or gym) is absent.
    """
    from mbt_gym.gym.ModelDynamics import LimitOrderModelDynamics
    from mbt_gym.gym.TradingEnvironment import TradingEnvironment
    from mbt_gym.rewards.RewardFunctions import RunningInventoryPenalty
    from mbt_gym.stochastic_processes.arrival_models import PoissonArrivalModel
    from mbt_gym.stochastic_processes.fill_probability_models import ExponentialFillFunction
    from mbt_gym.stochastic_processes.midprice_models import BrownianMotionMidpriceModel

    from mmray.objectives import penalty_rate

    m, p, dt, n = config.market, config.problem, config.dt, trajectories
    if config.offset_low != 0.0 or m.A * dt > 1.0:
        raise ValueError("mbt_gym's depths start at 0 and its arrivals are Bernoulli(A dt): needs offset_low = 0 "
                         f"and A dt <= 1 (got offset_low {config.offset_low}, A dt {m.A * dt})")
    dynamics = LimitOrderModelDynamics(
        midprice_model=BrownianMotionMidpriceModel(drift=m.drift, volatility=m.sigma, initial_price=m.s0,
                                                   terminal_time=p.T, step_size=dt, num_trajectories=n, seed=seed),
        arrival_model=PoissonArrivalModel(intensity=np.array([m.A, m.A]), step_size=dt, num_trajectories=n,
                                          seed=seed + 1),
        fill_probability_model=ExponentialFillFunction(fill_exponent=m.k, step_size=dt, num_trajectories=n,
                                                       seed=seed + 2),
        num_trajectories=n, seed=seed, max_depth=config.offset_high)
    reward = RunningInventoryPenalty(per_step_inventory_aversion=penalty_rate(m, p),
                                     terminal_inventory_aversion=p.terminal_penalty)
    return TradingEnvironment(terminal_time=p.T, n_steps=config.n_steps, reward_function=reward,
                              model_dynamics=dynamics, max_inventory=int(p.q_max), num_trajectories=n, seed=seed)


def mbt_gym_batch(config: EnvConfig, trajectories: int) -> Batch:
    """10 steps of :func:`mbt_gym_env` (``trajectories`` trajectory-steps each), constant actions (0: the
    middle of the depth range, as ours), reset as the episodes end (a reset is not a step). Raises
    ImportError when mbt_gym is absent."""
    env = mbt_gym_env(config, trajectories)
    env.reset()
    action = np.zeros((trajectories, 2))

    def batch() -> int:
        for _ in range(10):
            dones = env.step(action)[2]
            if dones[0]:
                env.reset()
        return 10 * trajectories
    return batch


SECTIONS = ("environment", "env_runners", "learners", "training", "framework")
"""``AlgorithmConfig`` methods a ``--ppo`` variant may call (``SECTION.KEY=VALUE``)."""


def parse_variant(text: str) -> tuple[str, dict[str, Any], dict[str, dict[str, Any]]]:
    """``"LABEL:KEY=VALUE,KEY=VALUE"`` (or without ``LABEL:``, then the text is the label; a comma inside a
    value such as ``hidden=[32,32]`` is kept) -> (label,
    :class:`PPOTrainConfig` field overrides, ``{section: {key: value}}`` for ``AlgorithmConfig.section(**kw)``
    with ``KEY = SECTION.NAME``, ``SECTION`` in :data:`SECTIONS`). Values are JSON (``true``, ``0.5``,
    ``"x"``) or else strings; ``env_runners.gym_env_vectorize_mode`` takes a ``gymnasium.VectorizeMode`` name.
    Raises ``ValueError`` naming the bad part.

    Parameters
    ----------
    text : str
        One ``--ppo`` argument.

    Returns
    -------
    tuple
        ``(label, {field: value}, {section: {key: value}})``.
    """
    from dataclasses import fields

    from mmray.tuning.rl import PPOTrainConfig

    label, sep, body = text.partition(":")
    if not sep or "=" in label:
        label, body = text, text
    known = {f.name for f in fields(PPOTrainConfig)}
    ppo: dict[str, Any] = {}
    sections: dict[str, dict[str, Any]] = {}
    for item in filter(None, (s.strip() for s in re.split(r",(?=\s*[A-Za-z_][\w.]*=)", body))):
        key, eq, raw = item.partition("=")
        if not eq or not key:
            raise ValueError(f"{item!r}: expected KEY=VALUE")
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        section, dot, name = key.partition(".")
        if dot:
            if section not in SECTIONS:
                raise ValueError(f"{key!r}: section must be one of {SECTIONS}")
            if name == "gym_env_vectorize_mode":
                import gymnasium as gym

                try:
                    value = gym.VectorizeMode[str(value).upper()]
                except KeyError:
                    raise ValueError(f"{key}={raw}: not a gymnasium.VectorizeMode "
                                     f"({[m.name for m in gym.VectorizeMode]})") from None
            sections.setdefault(section, {})[name] = value
        elif key in known:
            ppo[key] = tuple(value) if isinstance(value, list) else value
        else:
            raise ValueError(f"{key!r}: not a PPOTrainConfig field nor SECTION.KEY with SECTION in {SECTIONS}")
    return label.strip(), ppo, sections


class PPOProbe:
    """One built PPO algorithm (``PPOTrainConfig`` with ``overrides``, then ``AlgorithmConfig.section(**kw)``
    for each of ``sections``), warmed up (one ``sample()`` and one ``train()``), timed one call at a time so
    that several probes can be measured interleaved."""

    def __init__(self, label: str, base: dict[str, Any], overrides: dict[str, Any],
                 sections: dict[str, dict[str, Any]]) -> None:
        from mmray.tuning.rl import PPOTrainConfig

        self.label = label
        self.ppo = PPOTrainConfig(**{**base, **overrides})
        algo_config = self.ppo.algorithm_config()
        for section, kwargs in sections.items():
            algo_config = getattr(algo_config, section)(**kwargs)
        self.algo = algo_config.build_algo()
        self.ppo.initialise(self.algo)
        self.sampling: list[float] = []
        self.train: list[float] = []
        self.lifetime: int | None = None
        self.sample_once()
        self.train_once()  # after the sample() above, so that RLlib's step total is in step from here on
        self.sampling.clear()
        self.train.clear()

    def sample_once(self) -> float:
        """Env steps/s of one sampling round: the local runner's ``sample()``, or all remote runners' in
        parallel (each returns only its step count)."""
        start = time.perf_counter()
        if self.ppo.num_env_runners == 0:
            steps = sum(len(e) for e in self.algo.env_runner.sample())
        else:
            counts = self.algo.env_runner_group.foreach_env_runner(
                lambda runner: sum(len(e) for e in runner.sample()), local_env_runner=False)
            steps = sum(counts)
        self.sampling.append(steps / (time.perf_counter() - start))
        return self.sampling[-1]

    def train_once(self) -> float:
        """Env steps/s of one ``algo.train()`` (sampling + learning), by RLlib's lifetime step count."""
        start = time.perf_counter()
        lifetime = self.algo.train()["env_runners"]["num_env_steps_sampled_lifetime"]
        elapsed = time.perf_counter() - start
        steps = lifetime - self.lifetime if self.lifetime is not None else self.ppo.train_batch_size
        self.lifetime = lifetime
        self.train.append(steps / elapsed)
        return self.train[-1]

    def stop(self) -> None:
        self.algo.stop()


def rllib_compare(variants: list[tuple[str, dict[str, Any], dict[str, dict[str, Any]]]], base: dict[str, Any],
                  rounds: int) -> dict[str, dict[str, Any]]:
    """Build every variant, then ``rounds`` rounds of one ``train()`` of each in turn, then ``rounds``
    rounds of one ``sample()`` of each (A, B, A, B: the machine's load hits all alike). Per variant: median
    steps/s and, for every variant after the first, the median of its per-round ratio to the first."""
    probes = []
    try:
        for label, overrides, sections in variants:
            probes.append(PPOProbe(label, base, overrides, sections))
        for _ in range(rounds):  # train first: out-of-band sample() calls would count in RLlib's step total
            for probe in probes:
                probe.train_once()
        for _ in range(rounds):
            for probe in probes:
                probe.sample_once()
    finally:
        for probe in probes:
            probe.stop()
    first = probes[0]
    out = {}
    for probe in probes:
        out[probe.label] = {
            "sampling": float(np.median(probe.sampling)), "train": float(np.median(probe.train)),
            "sampling_runs": probe.sampling, "train_runs": probe.train,
            "sampling_ratio": float(np.median(np.divide(probe.sampling, first.sampling))),
            "train_ratio": float(np.median(np.divide(probe.train, first.train))),
            "overrides": {**{k: list(v) if isinstance(v, tuple) else v for k, v in probe.ppo.to_dict().items()
                             if k in variants[probes.index(probe)][1]},
                          **{f"{s}.{k}": str(v) for s, kw in variants[probes.index(probe)][2].items()
                             for k, v in kw.items()}},
        }
    return out


SINGLE = "MarketMakingEnv (single)"
MBT_SINGLE = "mbt_gym single env (1 trajectory)"


def uptime() -> str:
    """``load average: a, b, c`` now (1, 5 and 15 minutes), as ``uptime`` prints it."""
    return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


NATIVE = "native vector env (VECTOR_ENTRY_POINT)"
SYNC = "gymnasium SYNC of single envs"


def run_rllib(variants: list[tuple[str, dict[str, Any], dict[str, dict[str, Any]]]],
              args: argparse.Namespace) -> dict[str, Any]:
    """RLlib PPO, sampling alone and end to end: ``PPOTrainConfig`` defaults (native vector env, the default
    training env: its reward variant is :data:`mmray.tuning.rl.TRAINING_REWARD`; ``T = 60`` with
    ``--smoke``), gymnasium's SYNC vectorisation of single envs (unless ``--no-sync``) and every ``--ppo``
    variant, interleaved."""
    import gymnasium as gym
    import ray
    import torch

    from mmray.tuning.rl import PPOTrainConfig

    started = not ray.is_initialized()
    if started:
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    logging.getLogger("ray.rllib").setLevel(logging.ERROR)
    env = PPOTrainConfig().env
    base: dict[str, Any] = {"env": env, "iterations": 1}
    if args.smoke:
        base |= {"env": env.replace(problem=env.problem.replace(T=60.0)),
                 "num_envs_per_env_runner": 32, "rollout_fragment_length": 16, "minibatch_size": 256}
    threads = torch.get_num_threads()
    torch.set_num_threads(PPOTrainConfig().torch_threads or threads)  # as train() does
    runs = [(NATIVE, {}, {})]
    if not args.no_sync:
        runs.append((SYNC, {}, {"env_runners": {"gym_env_vectorize_mode": gym.VectorizeMode.SYNC}}))
    runs += variants
    rounds = 1 if args.smoke else args.rllib_iterations
    try:
        result = rllib_compare(runs, base, rounds)
    finally:
        torch.set_num_threads(threads)
        if started:
            ray.shutdown()
    ppo = PPOTrainConfig(**base)
    print(f"RLlib PPO env steps/s (defaults: {ppo.num_envs_per_env_runner} sub-envs x {ppo.rollout_fragment_length}"
          f"-step fragments, 1 local env runner, minibatch {ppo.minibatch_size} x {ppo.num_epochs} epochs, "
          f"reward {ppo.env.reward!r}, "
          f"torch {ppo.torch_threads} thread; Ray on 2 CPUs; median of {rounds} interleaved rounds; {uptime()})")
    print(f"  {'configuration':<44s} {'sampling':>10s} {'ratio':>6s} {'end to end':>11s} {'ratio':>6s}")
    for label, r in result.items():
        print(f"  {label:<44s} {r['sampling']:>10,.0f} {r['sampling_ratio']:>6.2f} {r['train']:>11,.0f} "
              f"{r['train_ratio']:>6.2f}")
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny budgets (a quick check, not a measurement)")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per timed run of a raw env")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per raw env (best is reported)")
    parser.add_argument("--no-rllib", action="store_true", help="skip the RLlib part")
    parser.add_argument("--rllib-iterations", type=int, default=5,
                        help="rounds of one timed train() (then one sample()) of every configuration in turn")
    parser.add_argument("--ppo", action="append", default=[], metavar="[LABEL:]KEY=VALUE,...",
                        help="also measure this PPO configuration, interleaved with the defaults: PPOTrainConfig "
                             "fields (num_envs_per_env_runner=512) or SECTION.KEY of AlgorithmConfig "
                             "(env_runners.num_cpus_per_env_runner=0.5; sections: " + ", ".join(SECTIONS) +
                             "); repeatable")
    parser.add_argument("--no-sync", action="store_true",
                        help="skip the RLlib configuration with gymnasium's SYNC vectorisation of single envs")
    parser.add_argument("--mbt-gym", action="store_true", help="also step mbt_gym (must be installed)")
    parser.add_argument("--mbt-trajectories", type=int, default=1000)
    parser.add_argument("--json", help="write the figures to this JSON file")
    args = parser.parse_args(argv)
    try:
        variants = [parse_variant(text) for text in args.ppo]
    except ValueError as exc:
        parser.error(f"--ppo: {exc}")
    if args.rllib_iterations < 1:
        parser.error(f"--rllib-iterations must be >= 1, got {args.rllib_iterations}")
    seconds, repeats = (0.2, 1) if args.smoke else (args.seconds, args.repeats)
    config = EnvConfig()
    if args.smoke:
        config = config.replace(problem=config.problem.replace(T=60.0))
    out: dict[str, Any] = {"env": "mmray/GLFT-v0 " + ("(T = 60, smoke)" if args.smoke else "(defaults)"),
                           "cpus": os.cpu_count(), "uptime_start": uptime()}

    n_sync, n_mbt = (16 if args.smoke else 256), args.mbt_trajectories
    batches = {SINGLE: single_env(config)}
    for n in sorted({256, 1000, n_mbt}):
        batches[f"MarketMakingVectorEnv N={n} (shared generator)"] = vector_env(config, n)
    batches["MarketMakingVectorEnv N=256 (per-env generators)"] = vector_env(config, 256, rng_mode="per_env")
    batches[f"gymnasium SyncVectorEnv of {n_sync} single envs"] = sync_vector_env(config, n_sync)
    if args.mbt_gym:
        try:
            batches[MBT_SINGLE] = mbt_gym_batch(config, 1)
            batches[f"mbt_gym {n_mbt} trajectories"] = mbt_gym_batch(config, n_mbt)
        except Exception as exc:  # absent or another version's API: say so, measure the rest
            print(f"mbt_gym: not measured ({type(exc).__name__}: {exc})")
            out["mbt_gym"] = {"error": f"{type(exc).__name__}: {exc}"}
    raw = rates(batches, seconds, repeats)
    single = raw[SINGLE]
    print(f"raw env steps/s ({out['env']}; best of {repeats} interleaved rounds of {seconds:g} s; "
          f"{out['uptime_start']})")
    for label, value in raw.items():
        print(f"  {label:<52s} {value:>14,.0f}   {value / single:8.1f}x single")
    out["raw"] = raw
    out["vector_over_single"] = raw["MarketMakingVectorEnv N=256 (shared generator)"] / single
    if MBT_SINGLE in raw:
        mbt_vector = raw[f"mbt_gym {n_mbt} trajectories"]
        ours_vector = raw[f"MarketMakingVectorEnv N={n_mbt} (shared generator)"]
        out["mbt_gym"] = {"single": raw[MBT_SINGLE], "vector": mbt_vector, "trajectories": n_mbt,
                          "single_ours_over_theirs": single / raw[MBT_SINGLE],
                          "vector_ours_over_theirs": ours_vector / mbt_vector}
        print(f"  ours / mbt_gym: single env {single / raw[MBT_SINGLE]:.2f}x, "
              f"{n_mbt} paths {ours_vector / mbt_vector:.2f}x (issue 9's goal: >= 2x both)")

    if not args.no_rllib:
        out["rllib"] = run_rllib(variants, args)
    out["uptime_end"] = uptime()
    print(f"({out['uptime_end']} at the end)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
