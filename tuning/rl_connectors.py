"""The env runners' connector pipelines for a single-agent, stateless RLModule on a native vector env
(:class:`mmray.envs.MarketMakingVectorEnv`): RLlib's default pipelines with the per-sub-env Python steps
left out, the same numbers in and out (tested against the defaults in ``tests/test_rl_ppo.py``).

RLlib (2.60) builds each pipeline from the factory given to ``config.env_runners(env_to_module_connector=
..., module_to_env_connector=...)`` and adds its defaults unless
``add_default_connectors_to_env_to_module_pipeline`` / ``..._module_to_env_pipeline`` is False;
:meth:`mmray.tuning.rl.TrainConfig.algorithm_config` sets both factories below and turns the defaults off.
The learner's pipeline (GAE and the train batch) is RLlib's own, untouched.

This module imports Ray; :mod:`mmray.tuning.rl` imports it only when it builds an algorithm config.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from ray.rllib.connectors.common import NumpyToTensor, TensorToNumpy
from ray.rllib.connectors.connector_v2 import ConnectorV2
from ray.rllib.connectors.module_to_env import GetActions
from ray.rllib.core.columns import Columns


class LastObservations(ConnectorV2):
    """``batch["obs"]`` = the last observation of every ongoing episode, stacked in sub-env order (one
    ``np.stack``), unless already there.

    RLlib's default ``AddObservationsFromEpisodesToBatch`` adds the same observations one batch item per
    episode (keyed by episode id), and ``BatchIndividualItems`` stacks them in the same order and records
    their episode ids for ``UnBatchToIndividualItems``, which :func:`batched_module_to_env` leaves out; the
    default's ``AddTimeDimToBatchAndZeroPad`` and ``AddStatesFromEpisodesToBatch`` do nothing for a
    module without a recurrent state.
    """

    def __call__(self, *, rl_module: Any, batch: dict[str, Any], episodes: list[Any], explore: bool | None = None,
                 shared_data: dict | None = None, **kwargs: Any) -> Any:
        """Add the stacked last observations to ``batch`` (RLlib's ``ConnectorV2`` call)."""
        if Columns.OBS not in batch:
            batch[Columns.OBS] = np.stack([episode.get_observations(-1) for episode in episodes])
        return batch


def batched_env_to_module(env: Any = None, spaces: Any = None, device: Any = None) -> list[ConnectorV2]:
    """The env-to-module pipeline: :class:`LastObservations`, then RLlib's ``NumpyToTensor`` (on ``device``).

    Parameters
    ----------
    env, spaces : Any
        RLlib's arguments (unused).
    device : torch.device or None
        Where the module runs (RLlib's argument, passed on to ``NumpyToTensor``).
    """
    return [LastObservations(), NumpyToTensor(device=device)]


def batched_module_to_env(env: Any = None, spaces: Any = None) -> list[ConnectorV2]:
    """The module-to-env pipeline: RLlib's ``GetActions`` (sample the actions and their log-probabilities
    from the module's distribution inputs) and ``TensorToNumpy``, nothing else.

    RLlib's default pipeline adds, for this module and env: ``UnBatchToIndividualItems`` (splits every
    column into one item per sub-env, in Python), ``RemoveSingleTsTimeRankFromBatch`` (nothing without a
    recurrent state), ``NormalizeAndClipActions`` (off: the env clips its actions itself, see
    :meth:`mmray.tuning.rl.TrainConfig.algorithm_config`) and ``ListifyDataForVectorEnv`` (joins the items
    again: the actions back into one array, the other columns into lists indexed by sub-env). The env
    runner reads the actions as that array and every other column by sub-env index, which the batched
    arrays give alike; the round trip was ~20% of ``sample()``'s time (py-spy).

    Parameters
    ----------
    env, spaces : Any
        RLlib's arguments (unused).
    """
    return [GetActions(), TensorToNumpy()]


__all__ = ["LastObservations", "batched_env_to_module", "batched_module_to_env"]
