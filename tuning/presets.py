"""Built-in sweeps (``--sweep KIND``) and the smoke transform (``--smoke``).

``risk-aversion`` is the default of ``python -m mmray.tune``: over a gamma grid, the continuous-time
optimal strategy (``optimal``, the exact solution of the model), the optimum of the simulator's own
discrete-time problem beside it (``discrete_optimal``: policy iteration at the simulator's ``dt = 1``,
where at most one fill per side per step makes ``optimal`` a proxy), Avellaneda-Stoikov and a constant
spread; GLFT 2013 market (sigma=0.3, A=0.9, k=0.3, T=600 s, Q=30), 40,000 Monte Carlo paths per trial.
A frontier has no single best: the report gives, per strategy, the gamma that maximises the
certainty equivalent of a maker with the reference gamma 0.01.

``rl`` trains RLlib PPO agents in a small env (T = 30, dt = 0.5, Q = 5, gamma = 0.2, expected-value
rewards), 4 random configurations of the learning rate, the initial action std and PPO's clip, each
with 2 seeds (8 trials of 30 iterations, 115,200 env steps each): a few minutes on 2 CPUs. A real
run: ``examples/sweeps/rl_ppo.yaml``.

``hparams`` searches strategy and solver parameters (the inventory bound, the exact solver's time
grid) under one fixed market: a market parameter (tick, fill model, ...) is the environment, and a
search over it would find the easiest market, not the best strategy (:mod:`mmray.tuning.validate`).
"""

from __future__ import annotations

from typing import Any

from mmray.tuning.config import spec_from_dict
from mmray.tuning.spec import KINDS, SweepConfigError, SweepSpec

_BASE: dict[str, Any] = {
    "market": {"sigma": 0.3, "A": 0.9, "k": 0.3},
    "problem": {"T": 600.0, "q_max": 30, "objective": "A"},
    "sim": {"dt": 1.0, "fill_model": "poisson"},
}

PRESETS: dict[str, dict[str, Any]] = {
    "risk-aversion": {
        "kind": "risk-aversion", "name": "risk-aversion",
        # problem.gamma: the reference maker whose certainty equivalent ranks each strategy's gammas
        **_BASE, "problem": {**_BASE["problem"], "gamma": 0.01}, "sim": {**_BASE["sim"], "n_paths": 40000},
        "strategies": ["optimal", "discrete_optimal", "as", "constant"],
        "grid": {"gamma": [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2]},
        "search": {"metric": "ce_A"},
    },
    "hparams": {
        "kind": "hparams", "name": "hparams",
        **_BASE, "problem": {**_BASE["problem"], "gamma": 0.01},
        "sim": {**_BASE["sim"], "n_paths": 8000, "chunk_size": 2000},  # 4 chunks: one per ASHA rung
        "strategies": ["optimal"],
        # strategy and solver parameters only: the market (tick 0, Poisson fills) stays fixed
        "space": {"q_max": {"low": 2, "high": 40, "int": True}, "n_times": {"low": 11, "high": 1001, "log": True}},
        "search": {"algorithm": "optuna", "metric": "ce_A", "num_samples": 16, "max_concurrent": 2,
                   "asha": {"rungs": 4, "grace_period": 1, "reduction_factor": 2}},
    },
    "rl": {
        "kind": "rl", "name": "rl",
        # a small env (60 steps of dt 0.5, |q| <= 5) where inventory control matters (gamma 0.2), with training's
        # rewards (tuning.rl.TRAINING_REWARD: the zero-mean noise of the fills and the mid removed): minutes on 2 CPUs
        "market": {"sigma": 0.3, "A": 0.9, "k": 0.3}, "problem": {"gamma": 0.2, "T": 30.0, "q_max": 5},
        "sim": {"dt": 0.5, "fill_model": "poisson"}, "seeds": 2,
        "rl": {"iterations": 30, "hidden": [32, 32], "num_envs_per_env_runner": 64, "rollout_fragment_length": 60,
               "minibatch_size": 960, "num_epochs": 5},
        "space": {"lr": {"low": 3e-4, "high": 3e-3, "log": True}, "initial_log_std": {"low": -2.0, "high": -0.5},
                  "clip_param": {"low": 0.1, "high": 0.4}},
        # no ASHA: it compares trials of different seeds, and a seed that starts slowly (measured: every seed-1
        # trial was behind at a quarter of the budget) would be stopped whatever its configuration
        "search": {"algorithm": "random", "metric": "gap_closed", "num_samples": 4},
    },
    "robustness": {
        "kind": "robustness", "name": "robustness",
        **_BASE, "problem": {**_BASE["problem"], "gamma": 0.01}, "sim": {**_BASE["sim"], "n_paths": 8000},
        "strategies": ["optimal", "as", "inventory"],
        "perturb": {"sigma": [0.5, 0.75, 1.5, 2.0], "A": [0.5, 0.75, 1.5, 2.0], "k": [0.5, 0.75, 1.5, 2.0]},
        "combine": "one-at-a-time",
    },
}


def preset(kind: str) -> SweepSpec:
    """The built-in sweep of ``kind``."""
    if kind not in PRESETS:
        raise SweepConfigError(f"--sweep: unknown sweep kind {kind!r}; expected one of {', '.join(KINDS)}")
    return spec_from_dict({"sweep": PRESETS[kind]}, source=f"<builtin {kind}>")


def _thin(values: list[Any], keep: int) -> list[Any]:
    """``keep`` values spread over ``values`` (first and last included)."""
    if len(values) <= keep:
        return list(values)
    idx = sorted({round(i * (len(values) - 1) / (keep - 1)) for i in range(keep)})
    return [values[i] for i in idx]


def smoke(spec: SweepSpec, n_paths: int = 400, keep: int = 3) -> SweepSpec:
    """A seconds-long version of ``spec`` for tests and CI: few paths, short grids, few samples.

    The horizon is cut to 120 time units (keeping ``dt``) so each backtest is short, and a trial's
    Monte Carlo tasks (``mc_ray``) reserve one CPU bundle, so a cluster sweep runs on a laptop.
    """
    doc = spec.to_dict()["sweep"]
    if spec.kind == "rl":
        return spec_from_dict({"sweep": _rl_smoke(doc)}, source=f"{spec.source} (smoke)")
    doc["sim"]["n_paths"] = min(doc["sim"]["n_paths"], n_paths)
    doc["sim"]["chunk_size"] = min(doc["sim"]["chunk_size"], max(1, doc["sim"]["n_paths"] // 2))
    if doc["problem"]["T"] > 120 and (120 / doc["sim"]["dt"]).is_integer():
        doc["problem"]["T"] = 120.0
    doc["resources"]["mc_workers"] = 1
    doc["grid"] = {k: _thin(v, keep) for k, v in doc["grid"].items()}
    doc["search"]["num_samples"] = min(doc["search"]["num_samples"], 4)
    if doc["search"]["asha"] is not None:
        doc["search"]["asha"]["rungs"] = 2
        doc["search"]["asha"]["grace_period"] = 1
    if "perturb" in doc:
        doc["perturb"] = {k: _thin(v, 2) for k, v in list(doc["perturb"].items())[:2]}
    doc["name"] = f"{doc['name']}-smoke"
    return spec_from_dict({"sweep": doc}, source=f"{spec.source} (smoke)")


def _rl_smoke(doc: dict[str, Any]) -> dict[str, Any]:
    """An ``rl`` sweep cut to seconds: 2 iterations of at most 16 envs x 60 steps per trial, at most 2
    configurations of 2 seeds, no ASHA, the env's horizon cut to 30 time units (the benchmark is then solved
    in seconds)."""
    dt = doc["sim"]["dt"]
    if doc["problem"]["T"] > 60 * dt and (30.0 / dt).is_integer():
        doc["problem"]["T"] = 30.0
    budget = {k: doc["rl"].pop(k) for k in ("iterations", "timesteps", "time_budget") if k in doc["rl"]}
    doc["rl"]["iterations"] = min(2, budget.get("iterations") or 2)
    if "timesteps" in budget and doc["rl"].get("lr_decay_steps") is None:  # an lr_end decay keeps its length
        doc["rl"]["lr_decay_steps"] = budget["timesteps"]
    rl = doc["rl"]
    rl["num_envs_per_env_runner"] = min(rl.get("num_envs_per_env_runner", 16), 16)
    rl["rollout_fragment_length"] = min(rl.get("rollout_fragment_length", 60), 60)
    batch = rl["num_envs_per_env_runner"] * rl["rollout_fragment_length"] * max(1, rl.get("num_env_runners", 0))
    rl["minibatch_size"] = min(rl.get("minibatch_size", batch), batch)
    if "minibatch_size" in doc["grid"]:
        doc["grid"]["minibatch_size"] = sorted({min(v, batch) for v in doc["grid"]["minibatch_size"]})
        rl.pop("minibatch_size")
    if "minibatch_size" in doc["space"]:
        r = doc["space"]["minibatch_size"]
        r["high"] = min(r["high"], batch)
        r["low"] = min(r["low"], r["high"] - 1)
        rl.pop("minibatch_size")
    doc["seeds"] = doc["seeds"][:2] if isinstance(doc["seeds"], list) else min(doc["seeds"], 2)
    doc["grid"] = {k: _thin(v, 2) for k, v in doc["grid"].items()}
    doc["search"]["num_samples"] = min(doc["search"]["num_samples"], 2)
    doc["search"]["asha"] = None
    doc["name"] = f"{doc['name']}-smoke"
    return doc
