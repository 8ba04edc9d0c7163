"""Where the CLI asks the core about policies: one small function per question.

Loading a ``--policy`` directory, building a named strategy, the discrete problem a tick-grid
policy was solved on and the simulation settings saved with a checkpoint. (The market a policy is
simulated in is the simulator's own business: a tick-grid policy is not rounded twice.) Each
calls the core in exactly one place, so that a change of the policy contract
touches this module only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmray.cli.flags import CHECKPOINT_SIM_FIELDS
from mmray.params import MarketParams, ProblemParams

#: sub-directory of ``mmray solve --out DIR`` that holds the checkpoint
SOLVE_CHECKPOINT = "policy"


def checkpoint_dir(path: Path) -> Path:
    """``path``, or ``path/policy`` when ``path`` is the ``--out`` directory of ``mmray solve``
    (it holds a ``policy/`` checkpoint and no ``policy.json`` of its own)."""
    from mmray.checkpoint import META_FILE

    inner = path / SOLVE_CHECKPOINT
    if path.is_dir() and not (path / META_FILE).exists() and (inner / META_FILE).is_file():
        return inner
    return path


def load(path: Path) -> Any:
    """The policy saved at ``path`` (see :func:`checkpoint_dir`)."""
    from mmray.checkpoint import load_policy

    return load_policy(checkpoint_dir(path))


def strategy(name: str, market: MarketParams, problem: ProblemParams, half_spread: float | None,
             skew: float | None) -> Any:
    """The named strategy for this model."""
    from mmray.strategies import make_strategy

    return make_strategy(name, market, problem, half_spread=half_spread, skew=skew)


def discrete_info(policy: Any) -> dict[str, Any] | None:
    """The discrete problem a tick-grid policy was solved on (its ``solved_for``); ``None`` for other policies."""
    from mmray.policy import discrete_problem

    return discrete_problem(policy)


def saved_sim(policy: Any) -> dict[str, Any]:
    """Simulation settings saved with ``policy``: its provenance ``sim`` (a sweep's SimConfig); for
    pi/csp, the dt, fill and price models of the discrete problem it was solved on; for an agent
    trained in an environment (its ``env``, e.g. the ``mlp`` kind), that environment's dt, fill and
    price models and initial inventory."""
    prov = getattr(policy, "provenance", None) or {}
    saved = prov.get("sim") if isinstance(prov.get("sim"), dict) else {}
    out = {k: saved[k] for k in CHECKPOINT_SIM_FIELDS if saved.get(k) is not None}
    info = discrete_info(policy) or {}
    for k in ("dt", "fill_model", "price_model"):
        if info.get(k) is not None:
            out.setdefault(k, info[k])
    env = getattr(policy, "env", None)
    for k in ("dt", "fill_model", "price_model", "q0"):
        if getattr(env, k, None) is not None:
            out.setdefault(k, getattr(env, k))
    return out


def rl_env(policy: Any) -> Any | None:
    """The environment an RL agent was trained in: its ``env`` when that is an :class:`mmray.envs.EnvConfig`
    (the ``mlp`` kind), else ``None``. :mod:`mmray.envs` is imported only for a policy that has an ``env``
    (loading such a checkpoint imported it already)."""
    env = getattr(policy, "env", None)
    if env is None:
        return None
    from mmray.envs import EnvConfig

    return env if isinstance(env, EnvConfig) else None
