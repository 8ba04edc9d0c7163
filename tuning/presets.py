"""Built-in sweeps (``--sweep KIND``) and the smoke transform (``--smoke``).

``risk-aversion`` is the default of ``python -m mmray.tune``: over a gamma grid, the continuous-time
optimal strategy (``optimal``, the exact solution of the model), the optimum of the simulator's own
discrete-time problem beside it (``discrete_optimal``: policy iteration at the simulator's ``dt = 1``,
where at most one fill per side per step makes ``optimal`` a proxy), Avellaneda-Stoikov and a constant
spread; GLFT 2013 market (sigma=0.3, A=0.9, k=0.3, T=600 s, Q=30), 40,000 Monte Carlo paths per trial.
A frontier has no single best: the report gives, per strategy, the gamma that maximises the
certainty equivalent of a maker with the reference gamma 0.01.

``hparams`` searches strategy and solver parameters (the inventory bound, the exact solver's time
grid) under one fixed market: a market parameter (tick, fill model, ...) is the environment, and a
search over it would find the easiest market, not the best strategy (:mod:`mmray.tuning.validate`).
"""

from __future__ import annotations

from typing import Any

from mmray.tuning.config import spec_from_dict
from mmray.tuning.spec import KINDS, RL_NOT_AVAILABLE, NotAvailableError, SweepConfigError, SweepSpec

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
    "robustness": {
        "kind": "robustness", "name": "robustness",
        **_BASE, "problem": {**_BASE["problem"], "gamma": 0.01}, "sim": {**_BASE["sim"], "n_paths": 8000},
        "strategies": ["optimal", "as", "inventory"],
        "perturb": {"sigma": [0.5, 0.75, 1.5, 2.0], "A": [0.5, 0.75, 1.5, 2.0], "k": [0.5, 0.75, 1.5, 2.0]},
        "combine": "one-at-a-time",
    },
}


def preset(kind: str) -> SweepSpec:
    """The built-in sweep of ``kind``; ``rl`` raises :class:`NotAvailableError`."""
    if kind == "rl":
        raise NotAvailableError(RL_NOT_AVAILABLE)
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
