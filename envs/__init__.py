"""Gymnasium environments of the simulated market (``mmray.envs``), registered on import.

==========================  ======================================  ========================================
id                          entry point / vector entry point        actions
==========================  ======================================  ========================================
``mmray/GLFT-v0``           :class:`MarketMakingEnv` /              ``Box(-1, 1, (2,))`` -> offsets in
                            :class:`MarketMakingVectorEnv`          ``[offset_low, offset_high]``
``mmray/GLFT-Discrete-v0``  the same, ``action_mode="discrete"``    ``MultiDiscrete([n, n])`` tick offsets
==========================  ======================================  ========================================

``gymnasium.make(id, **fields)`` and ``gymnasium.make_vec(id, num_envs, **fields)`` take the fields
of :class:`EnvConfig` (or ``config=EnvConfig(...)``); ``make_vec`` uses the native vector env
(``vectorization_mode="vector_entry_point"``, its default here), as RLlib does with
``env_runners(gym_env_vectorize_mode=gym.VectorizeMode.VECTOR_ENTRY_POINT)``. Importing this package
also registers the ``mlp`` policy kind (:class:`MLPPolicy`) for :func:`mmray.load_policy`. See docs/rl.md.
"""

from __future__ import annotations

import gymnasium as gym

from .config import ActionSpec, EnvConfig, ObservationSpec, make_config
from .market import MarketMakingEnv, MarketMakingVectorEnv
from .mlp import MLPPolicy

ENV_IDS: dict[str, dict[str, str]] = {
    "mmray/GLFT-v0": {},
    "mmray/GLFT-Discrete-v0": {"action_mode": "discrete"},
}
"""Registered ids and the :class:`EnvConfig` fields each fixes."""


def register_envs() -> None:
    """Register :data:`ENV_IDS` with gymnasium (idempotent; done on import of :mod:`mmray.envs`)."""
    for env_id, kwargs in ENV_IDS.items():
        if env_id not in gym.registry:
            gym.register(env_id, entry_point="mmray.envs.market:MarketMakingEnv",
                         vector_entry_point="mmray.envs.market:MarketMakingVectorEnv", kwargs=dict(kwargs))


register_envs()

__all__ = ["ENV_IDS", "ActionSpec", "EnvConfig", "MLPPolicy", "MarketMakingEnv", "MarketMakingVectorEnv",
           "ObservationSpec", "make_config", "register_envs"]
