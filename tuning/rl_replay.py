"""A numpy n-step transition replay buffer for RLlib's SAC, and the SAC algorithm that uses it.

RLlib's ``EpisodeReplayBuffer`` (2.60) keeps whole episodes and builds every replayed transition in
Python at sampling time (``SingleAgentEpisode.slice``, a one-step ``SingleAgentEpisode`` per item, ~0.3 ms
each, profiled); the learner connector then turns the 256 one-step episodes of a batch back into arrays,
again in Python. At SAC's replay ratio that bounds it to a few hundred env steps/s on 2 CPUs.

* :class:`TransitionReplay` - n-step transitions in preallocated numpy arrays, computed once when the
  env runner's episode chunks are added (vectorised per chunk), sampled uniformly with a seeded
  ``np.random.Generator`` as the columns the SAC learner reads.
* :class:`FastReplaySAC` - RLlib's ``SAC`` with DQN's new-API-stack ``training_step`` (which SAC uses)
  redone around :class:`TransitionReplay`: the same sampling from the env runners, metrics, lifetime
  counters, learner updates (``learner_group.update(batch=...)``: a ``MultiAgentBatch`` of numpy arrays,
  which the ``Learner`` converts to tensors without running the learner connector), target-network
  updates (done by RLlib's SAC learner after each update) and weight sync. Select it with
  ``SACConfig(algo_class=FastReplaySAC)``; everything else is RLlib's SAC.

Transition ``t`` of an episode with observations ``o``, actions ``a`` and rewards ``r`` (``r[t]`` follows
``a[t]``), ``n = n_step`` and ``k = min(n, len - t)`` where ``len`` is the episode's length once it is done::

    obs = o[t], actions = a[t], rewards = sum_{i<k} gamma**i r[t+i], new_obs = o[t+k],
    terminateds = terminated and t + k == len, truncateds = truncated and t + k == len, n_step = k

A transition is stored when its window is complete: ``n`` steps later, or when the episode ends (the last
``n - 1`` transitions of an episode then sum fewer steps). Episodes continue across the runner's chunks
(same episode id, consecutive ``t_started``): the last ``n - 1`` steps of every unfinished episode are kept
until their windows complete. A truncated episode's last transitions bootstrap from the last observation
(``terminateds`` False). The SAC loss discounts the bootstrap by ``gamma ** n_step``, so a window cut
short by a truncation is discounted by the steps it actually summed.

Against RLlib's ``EpisodeReplayBuffer.sample(n_step=n, gamma=gamma)`` (2.60, tested): the same ``obs``,
``actions``, ``rewards`` (the same float64 recursion as its ``scipy.signal.lfilter``) and ``new_obs`` for
every window that is complete when sampled, with three differences. (1) RLlib flags a window
``terminateds`` only if it ends exactly at a terminated episode's end: it slices ``[t, t + n)`` and
``SingleAgentEpisode.slice`` keeps the done flag only when the slice's stop equals the episode's length,
so the last ``n - 1`` transitions of a terminated episode bootstrap from its terminal observation (which
no transition starts from); here they are terminal, as a termination means. (2) RLlib also samples the
windows of an unfinished episode's last ``n - 1`` steps (a shorter reward sum bootstrapped from the
newest observation, still discounted by ``gamma ** n``); here those wait for their ``n`` steps. (3) RLlib
reports ``n_step = n`` for windows cut short by an episode's end, here the steps summed (which changes
the target only after a truncation). Both sample uniformly over the stored transitions with
replacement; RLlib evicts whole episodes when over capacity, this buffer the oldest transitions (FIFO).
Neither is saved in RLlib checkpoints (``Algorithm.get_state`` on the new API stack has no replay buffer;
``store_buffer_in_checkpoints`` is read only by the old stack's ``__getstate__``): a resumed run starts
with an empty buffer.

Measured at the earlier ``SACTrainConfig`` defaults (64 sub-envs x 4 steps, batch 256, replay ratio 4) on
the default env (2 CPUs shared, load 5-6): 1330-1430 env steps/s once learning starts against 590-670
with RLlib's buffer (2.1-2.3x). What is left is RLlib's torch SAC update (there 4 per 256 sampled steps,
~77% of the time, profiled) and the env sampling (~15%); the replay's own adding and sampling are under
1%.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import numpy as np
from ray.rllib.algorithms.dqn.dqn import calculate_rr_weights
from ray.rllib.algorithms.sac import SAC
from ray.rllib.core.columns import Columns
from ray.rllib.execution.rollout_ops import synchronous_parallel_sample
from ray.rllib.policy.sample_batch import DEFAULT_POLICY_ID, MultiAgentBatch, SampleBatch
from ray.rllib.utils.metrics import (
    ALL_MODULES,
    ENV_RUNNER_RESULTS,
    ENV_RUNNER_SAMPLING_TIMER,
    LEARNER_RESULTS,
    LEARNER_UPDATE_TIMER,
    NUM_AGENT_STEPS_SAMPLED_LIFETIME,
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
    REPLAY_BUFFER_ADD_DATA_TIMER,
    REPLAY_BUFFER_RESULTS,
    REPLAY_BUFFER_SAMPLE_TIMER,
    SYNCH_WORKER_WEIGHTS_TIMER,
    TD_ERROR_KEY,
    TIMERS,
)

from mmray.checks import CheckError, integer, real

N_STEP = "n_step"
WEIGHTS = "weights"
COLUMNS = (Columns.OBS, Columns.ACTIONS, Columns.REWARDS, Columns.NEXT_OBS, Columns.TERMINATEDS,
           Columns.TRUNCATEDS, N_STEP, WEIGHTS)
"""The train-batch columns :meth:`TransitionReplay.sample` returns: those RLlib's SAC learner connector
builds from the one-step episodes ``EpisodeReplayBuffer.sample`` returns (tested)."""


class TransitionReplay:
    """N-step transitions of single-agent episodes in preallocated numpy arrays (see the module docstring).

    Parameters
    ----------
    capacity : int
        Transitions kept (the oldest are overwritten first). Checked (an integer >= 1, and its arrays no
        larger than the machine's memory) before the arrays are allocated, at the first :meth:`add`, when
        the observation and action shapes are known.
    n_step : int
        Steps summed per transition (fewer at an episode's end).
    gamma : float
        Discount of the reward sums, in ``(0, 1]``.
    seed : int or None
        Seed of the sampling generator (``np.random.default_rng``): the same seed and the same additions
        give the same samples.
    stale_after : int
        An unfinished episode whose tail no :meth:`add` call has continued in this many calls is dropped
        (the env runner that stepped it is gone); every call of a runner's ``sample()`` continues all of
        its ongoing episodes.
    """

    def __init__(self, capacity: int, n_step: int, gamma: float, seed: int | None = None,
                 stale_after: int = 16) -> None:
        self.capacity = integer("TransitionReplay.capacity", capacity, ge=1)
        self.n_step = integer("TransitionReplay.n_step", n_step, ge=1)
        self.gamma = real("TransitionReplay.gamma", gamma, gt=0)
        if self.gamma > 1:
            raise CheckError("TransitionReplay.gamma", gamma, "a discount in (0, 1]")
        self.stale_after = integer("TransitionReplay.stale_after", stale_after, ge=1)
        self.rng = np.random.default_rng(seed)
        self.size = 0
        self.position = 0
        self.added = 0
        self._calls = 0
        self._arrays: dict[str, np.ndarray] | None = None
        # episode id -> (obs (k + 1, ...), actions (k, ...), rewards (k,), next t, call of the last add)
        self._tails: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, int, int]] = {}

    def __len__(self) -> int:
        return self.size

    @property
    def pending(self) -> int:
        """Unfinished episodes whose last steps wait for their n-step windows."""
        return len(self._tails)

    def _allocate(self, obs: np.ndarray, actions: np.ndarray) -> dict[str, np.ndarray]:
        cap = self.capacity
        specs = {Columns.OBS: (obs.shape[1:], obs.dtype), Columns.NEXT_OBS: (obs.shape[1:], obs.dtype),
                 Columns.ACTIONS: (actions.shape[1:], actions.dtype), Columns.REWARDS: ((), np.float64),
                 Columns.TERMINATEDS: ((), np.bool_), Columns.TRUNCATEDS: ((), np.bool_), N_STEP: ((), np.int64)}
        nbytes = sum(cap * int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
                     for shape, dtype in specs.values())
        try:
            memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (AttributeError, ValueError, OSError):  # pragma: no cover - not POSIX
            memory = None
        if memory is not None and nbytes > memory:
            raise CheckError("TransitionReplay.capacity", cap,
                             f"a size whose arrays ({nbytes / 2**30:.1f} GiB) fit in memory "
                             f"({memory / 2**30:.1f} GiB)")
        return {key: np.empty((cap, *shape), dtype=dtype) for key, (shape, dtype) in specs.items()}

    def transitions(self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, done: bool,
                    terminated: bool, truncated: bool) -> dict[str, np.ndarray]:
        """The complete n-step transitions of a stretch of one episode (numpy, no state): ``obs`` has one
        row more than ``actions`` and ``rewards``; ``done`` says the stretch ends the episode. Without
        ``done`` the last ``n_step - 1`` steps give none (their windows are incomplete)."""
        m, n = len(rewards), self.n_step
        count = m if done else max(0, m - n + 1)
        t = np.arange(count)
        k = np.minimum(n, m - t)
        padded = np.zeros(m + n, dtype=np.float64)
        padded[:m] = rewards
        # r[t] + gamma (r[t+1] + gamma (...)): the order of scipy.signal.lfilter([1], [1, -gamma], r[::-1])
        sums = np.zeros(count, dtype=np.float64)
        for i in range(n - 1, -1, -1):
            sums = padded[t + i] + self.gamma * sums
        end = t + k == m
        return {Columns.OBS: obs[:count], Columns.ACTIONS: actions[:count], Columns.REWARDS: sums,
                Columns.NEXT_OBS: obs[t + k], Columns.TERMINATEDS: end & bool(done and terminated),
                Columns.TRUNCATEDS: end & bool(done and truncated), N_STEP: k.astype(np.int64)}

    def add_chunk(self, episode_id: str, t_started: int, obs: np.ndarray, actions: np.ndarray,
                  rewards: np.ndarray, terminated: bool = False, truncated: bool = False) -> int:
        """Add one chunk of an episode (observations ``t_started .. t_started + len``, one row more than
        ``actions`` and ``rewards``); returns the transitions stored."""
        return self._add([(episode_id, t_started, obs, actions, rewards, terminated, truncated)])

    def add(self, episodes: Iterable[Any]) -> int:
        """Add the ``SingleAgentEpisode`` chunks an RLlib env runner's ``sample()`` returned (numpy'd or
        not; chunks of one episode in order); returns the transitions stored."""
        return self._add((e.id_, e.t_started, e.get_observations(), e.get_actions(), e.get_rewards(),
                          e.is_terminated, e.is_truncated) for e in episodes if len(e))

    def _add(self, chunks: Iterable[tuple[str, int, Any, Any, Any, bool, bool]]) -> int:
        """One add call: the chunks' complete transitions stored together, stale tails pruned."""
        self._calls += 1
        parts = [self._extend(episode_id, t_started, np.asarray(obs), np.asarray(actions), np.asarray(rewards),
                              terminated, truncated)
                 for episode_id, t_started, obs, actions, rewards, terminated, truncated in chunks]
        self._prune()
        return self._store(parts)

    def _extend(self, episode_id: str, t_started: int, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray,
                terminated: bool, truncated: bool) -> dict[str, np.ndarray]:
        if len(obs) != len(actions) + 1 or len(rewards) != len(actions):
            raise ValueError(f"episode {episode_id}: {len(obs)} observations, {len(actions)} actions and "
                             f"{len(rewards)} rewards (one observation more than actions and rewards expected)")
        next_t = t_started + len(actions)
        tail = self._tails.pop(episode_id, None)
        if tail is not None:
            tail_obs, tail_actions, tail_rewards, expected_t, _ = tail
            if t_started != expected_t:
                raise ValueError(f"episode {episode_id}: a chunk starting at t={t_started} where t={expected_t} "
                                 "was expected (chunks of an episode must be added in order)")
            obs = np.concatenate([tail_obs[:-1], obs])
            actions = np.concatenate([tail_actions, actions])
            rewards = np.concatenate([tail_rewards, rewards])
        done = bool(terminated or truncated)
        out = self.transitions(obs, actions, rewards, done, terminated, truncated)
        if not done:
            count = len(out[Columns.REWARDS])
            self._tails[episode_id] = (obs[count:], actions[count:], rewards[count:], next_t, self._calls)
        return out

    def _prune(self) -> None:
        stale = [key for key, tail in self._tails.items() if self._calls - tail[4] >= self.stale_after]
        for key in stale:
            del self._tails[key]

    def _store(self, parts: list[dict[str, np.ndarray]]) -> int:
        parts = [p for p in parts if len(p[Columns.REWARDS])]
        if not parts:
            return 0
        if self._arrays is None:
            self._arrays = self._allocate(parts[0][Columns.OBS], parts[0][Columns.ACTIONS])
        count = sum(len(p[Columns.REWARDS]) for p in parts)
        keep = min(count, self.capacity)  # more than the capacity at once: the newest
        rows = (self.position + count - keep + np.arange(keep)) % self.capacity
        for key, array in self._arrays.items():
            values = np.concatenate([p[key] for p in parts]) if len(parts) > 1 else parts[0][key]
            array[rows] = values[count - keep:]
        self.position = (self.position + count) % self.capacity
        self.size = min(self.size + count, self.capacity)
        self.added += count
        return count

    def sample_indices(self, batch_size: int) -> np.ndarray:
        """``batch_size`` rows drawn uniformly with replacement from the stored transitions."""
        if self.size == 0:
            raise ValueError("TransitionReplay.sample: the buffer is empty")
        return self.rng.integers(0, self.size, size=integer("batch_size", batch_size, ge=1))

    def sample(self, batch_size: int) -> dict[str, np.ndarray]:
        """A train batch of ``batch_size`` transitions: the columns of :data:`COLUMNS` (``weights`` 1.0)."""
        rows = self.sample_indices(batch_size)
        assert self._arrays is not None
        batch = {key: array[rows] for key, array in self._arrays.items()}
        batch[WEIGHTS] = np.ones(len(rows), dtype=np.float64)
        return batch

    def rows(self) -> dict[str, np.ndarray]:
        """The stored transitions, oldest first (copies)."""
        if self._arrays is None:
            return {}
        order = (self.position - self.size + np.arange(self.size)) % self.capacity
        return {key: array[order] for key, array in self._arrays.items()}


class FastReplaySAC(SAC):
    """RLlib's SAC with :class:`TransitionReplay` in place of its ``EpisodeReplayBuffer`` (see the module
    docstring). The buffer's capacity is ``replay_buffer_config["capacity"]``, its ``n_step`` and ``gamma``
    the config's, its sampling seed the config's ``seed``."""

    def setup(self, config: Any) -> None:
        super().setup(config)
        n_step = self.config.n_step
        if not isinstance(n_step, int) or isinstance(n_step, bool):
            raise CheckError("FastReplaySAC n_step", n_step, "an integer (a random n-step range is not supported)")
        self.transition_replay = TransitionReplay(self.config.replay_buffer_config["capacity"], n_step,
                                                  self.config.gamma, self.config.seed)

    def training_step(self) -> None:
        """DQN's ``_training_step_new_api_stack`` (ray 2.60) with :class:`TransitionReplay`: sample and
        store ``store_weight`` times, then ``sample_and_train_weight`` updates once learning has started,
        then the weight sync to the env runners."""
        if not self.config.enable_env_runner_and_connector_v2:
            raise ValueError("FastReplaySAC runs on RLlib's new API stack only")
        store_weight, sample_and_train_weight = calculate_rr_weights(self.config)
        replay = self.transition_replay
        for _ in range(store_weight):
            with self.metrics.log_time((TIMERS, ENV_RUNNER_SAMPLING_TIMER)):
                episodes, env_runner_results = synchronous_parallel_sample(
                    worker_set=self.env_runner_group, concat=True, sample_timeout_s=self.config.sample_timeout_s,
                    _uses_new_env_runners=True, _return_metrics=True)
            self.metrics.aggregate(env_runner_results, key=ENV_RUNNER_RESULTS)
            with self.metrics.log_time((TIMERS, REPLAY_BUFFER_ADD_DATA_TIMER)):
                replay.add(episodes)
        self.metrics.log_dict({"num_transitions_stored": len(replay), "num_episodes_pending": replay.pending},
                              key=REPLAY_BUFFER_RESULTS, window=1)

        if self.config.count_steps_by == "agent_steps":
            current_ts = sum(self.metrics.peek((ENV_RUNNER_RESULTS, NUM_AGENT_STEPS_SAMPLED_LIFETIME),
                                               default={}).values())
        else:
            current_ts = self.metrics.peek((ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME), default=0)
        if current_ts < self.config.num_steps_sampled_before_learning_starts or len(replay) == 0:
            return

        module_id = DEFAULT_POLICY_ID
        batch_size = self.config.total_train_batch_size
        learner_results: list[dict[str, Any]] = []
        for _ in range(sample_and_train_weight):
            with self.metrics.log_time((TIMERS, REPLAY_BUFFER_SAMPLE_TIMER)):
                batch = MultiAgentBatch({module_id: SampleBatch(replay.sample(batch_size))}, env_steps=batch_size)
            with self.metrics.log_time((TIMERS, LEARNER_UPDATE_TIMER)):
                learner_results = self.learner_group.update(batch=batch, timesteps={
                    NUM_ENV_STEPS_SAMPLED_LIFETIME: self.metrics.peek(
                        (ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME)),
                    NUM_AGENT_STEPS_SAMPLED_LIFETIME: self.metrics.peek(
                        (ENV_RUNNER_RESULTS, NUM_AGENT_STEPS_SAMPLED_LIFETIME)),
                })
                # TD errors are for prioritised replay (none here): DQN pops them before logging, as here
                for res in learner_results:
                    for module_results in res.values():
                        module_results.pop(TD_ERROR_KEY, None)
                self.metrics.aggregate(learner_results, key=LEARNER_RESULTS)

        with self.metrics.log_time((TIMERS, SYNCH_WORKER_WEIGHTS_TIMER)):
            modules_to_update = set(learner_results[0].keys()) - {ALL_MODULES}
            self.env_runner_group.sync_weights(from_worker_or_learner_group=self.learner_group,
                                               policies=modules_to_update, global_vars=None, inference_only=True)


__all__ = ["COLUMNS", "FastReplaySAC", "TransitionReplay"]
