"""Gymnasium environments of the simulated GLFT market, stepping through :func:`mmray.sim.market_step`.

:class:`MarketMakingEnv` is one path; :class:`MarketMakingVectorEnv` steps ``num_envs`` paths with
one call of the market step per step, which is what the Monte Carlo simulator does. Both are
drivers of the one market step, like :func:`mmray.sim.simulate_chunk`: with the same seed and the
same quotes they produce the simulator's numbers bit for bit (tested).

Seeds and draw order
--------------------
* ``MarketMakingEnv.reset(seed=s)`` seeds ``self.np_random`` (``Generator(PCG64(SeedSequence(s)))``,
  the generator of ``numpy.random.default_rng(s)``); an episode then equals path 0 of
  ``simulate_chunk(policy, ..., n_paths=1, seed=s)``.
* ``MarketMakingVectorEnv(rng_mode="shared")`` (default, fastest): one generator for all paths, seeded
  like the single env; episode paths equal those of ``simulate_chunk(..., n_paths=num_envs, seed=s)``
  path for path. Sub-env ``i`` is not a single env (its draws interleave with the others').
* ``MarketMakingVectorEnv(rng_mode="per_env")``: sub-env ``i`` draws from its own generator, seeded
  ``s + i`` by ``reset(seed=s)`` (gymnasium's ``SyncVectorEnv`` convention) or by ``seed[i]`` for a
  list; sub-env ``i`` then equals ``MarketMakingEnv`` reset with seed ``s + i``, draw for draw. It
  costs ``3 num_envs`` scalar draws per step (about 0.5 us each).

Later resets without a seed continue the generators (a new episode, not a replay).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from mmray.objectives import step_noise_b, step_reward_b
from mmray.sim import PathState, market_step

from .config import EnvConfig, make_config

RNG_MODES = ("shared", "per_env")


class _Episodes:
    """``n`` paths of the simulated market, each with its own step index: the state, the agent's
    observation and the objective-B reward of each step. The one implementation behind both
    environments. Every episode has ``T / dt`` steps; paths start together (``start``) or at given step
    indices (``start(steps)``, the vector env's staggered first episodes), and a path is started afresh
    on its own (``restart``)."""

    def __init__(self, config: EnvConfig, n: int) -> None:
        self.config, self.n = config, n
        self.model = config.step_model()
        self.obs_spec, self.act_spec = config.observation_spec(), config.action_spec()
        self.n_steps = config.n_steps
        self.state: PathState | None = None
        self.j = np.zeros(n, dtype=np.int64)

    def start(self, steps: np.ndarray | None = None) -> np.ndarray:
        """Start new episodes on every path (at step ``steps[i]`` on path ``i``, 0 by default); returns
        the first observations ``(n, d)``."""
        self.state = PathState(self.n, self.config.market.s0, self.config.q0)
        self.j = np.zeros(self.n, dtype=np.int64) if steps is None else np.array(steps, dtype=np.int64)
        return self.observe()

    def restart(self, where: np.ndarray) -> None:
        """Start new episodes (at step 0) on the paths selected by the boolean mask ``where``."""
        self.state.restart(where, self.config.market.s0, self.config.q0)  # type: ignore[union-attr]
        self.j[where] = 0

    @property
    def ended(self) -> np.ndarray:
        """Boolean mask of the paths whose episode has reached ``T``."""
        return self.j >= self.n_steps

    @property
    def done(self) -> bool:
        """Whether every path's episode has reached ``T``."""
        return bool(self.ended.all())

    def observe(self) -> np.ndarray:
        p, names = self.state, self.obs_spec.features
        feats = p.features(names, self.model) if names else None
        return self.obs_spec.observe(self.j * self.config.dt, p.q, feats)

    def advance(self, action: np.ndarray, rng: Any, restarting: np.ndarray | None = None) -> np.ndarray:
        """One market step with the offsets of ``action`` (``(n, 2)``); returns the rewards ``(n,)``:
        objective B's increment (:func:`mmray.objectives.step_reward_b`, with ``-ell(q_T)`` on the paths
        whose episode ends with this step), less the zero-mean part the config's ``reward`` variant leaves
        out (:func:`mmray.objectives.step_noise_b`), over ``reward_scale``. Ended paths are an error unless
        ``restarting`` selects them (the caller restarts them after the step and discards their reward)."""
        if self.state is None:
            raise RuntimeError("call reset() before step()")
        ended = self.ended
        if ended.any() and (restarting is None or np.any(ended & ~restarting)):
            raise RuntimeError("the episode is over (terminated at T): call reset()")
        bid, ask = self.act_spec.offsets(action)
        p, c = self.state, self.config
        before = p.mtm.copy()
        market_step(p, bid, ask, self.model, rng)
        self.j += 1
        reward = step_reward_b(p.mtm - before, p.q, c.dt, c.market, c.problem)
        last = self.j == self.n_steps
        if last.any():
            reward = reward - np.where(last, c.problem.terminal(p.q), 0.0)
        if c.reward != "realised":
            reward = reward - step_noise_b(
                c.reward, p.q, p.ds, self.model.mu_dt, bid_offset=p.bid_offset, ask_offset=p.ask_offset,
                bid_filled=p.bid_filled, ask_filled=p.ask_filled, market=c.market, dt=c.dt, fill_model=c.fill_model)
        if c.reward_offset:
            reward = reward - c.reward_offset
        return reward / c.reward_scale


class MarketMakingEnv(gym.Env[np.ndarray, np.ndarray]):
    """One market maker quoting bid and ask offsets in the simulated GLFT market (objective B).

    Each step of length ``dt``: the agent's action is mapped to offsets
    (:meth:`mmray.envs.config.ActionSpec.offsets`), then :func:`mmray.sim.market_step` applies the
    inventory bound and tick, draws the fills and moves the mid. Configuration: :class:`EnvConfig`
    (``config=`` or its field names as keyword arguments, as ``gymnasium.make`` passes them).

    ==================  ==========================================================================
    Observation         ``Box(float32, (2 + len(features),))``: ``(T - t) / T`` in [0, 1],
                        ``q / Q`` in [-1, 1], then the configured features
                        (:class:`mmray.envs.config.ObservationSpec`)
    Action              continuous: ``Box(-1, 1, (2,), float32)`` -> offsets
                        ``offset_low + (a + 1)/2 (offset_high - offset_low)`` (bid, ask);
                        discrete: ``MultiDiscrete([n, n])`` -> ``offset_low + i offset_step``
    Reward              ``(dW - gamma sigma^2 / 2 q'^2 dt [- ell(q_T) at the last step]) / reward_scale``:
                        objective B's increment; an episode's rewards sum to its value_B / reward_scale.
                        ``reward="mid_expected"``/``"expected"``: less the zero-mean part of the mid
                        move (and of the fills): same expected return, far less variance
    Start               ``q = q0``, mid ``s0``, PnL 0, ``t = 0``
    Termination         ``terminated`` at ``t = T`` (after ``T / dt`` steps; time is observed, so
                        the horizon is part of the MDP); ``truncated`` is always False
    Info                ``inventory``, ``mid``, ``mtm_pnl`` (``W`` before the terminal penalty),
                        ``q2_integral`` (``int q^2 dt`` so far), ``bid_offset``/``ask_offset``
                        applied (inf where not quoted; after a step)
    ==================  ==========================================================================
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 (gymnasium's class attribute)

    def __init__(self, config: EnvConfig | Mapping[str, Any] | None = None, render_mode: str | None = None,
                 **overrides: Any) -> None:
        if render_mode is not None:
            raise ValueError(f"MarketMakingEnv has no render modes, got render_mode={render_mode!r}")
        self.render_mode = render_mode
        self.config = make_config(config, **overrides)
        self._episodes = _Episodes(self.config, 1)
        self.observation_space = self._episodes.obs_spec.space()
        self.action_space = self._episodes.act_spec.space()

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None,
              ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        obs = self._episodes.start()
        return obs[0], self._info()

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        action = np.asarray(action)
        if action.shape != (2,):
            raise ValueError(f"action must have shape (2,) (bid, ask), got {action.shape}")
        reward = self._episodes.advance(action[None, :], self.np_random)
        return self._episodes.observe()[0], float(reward[0]), self._episodes.done, False, self._info()

    @property
    def state(self) -> PathState | None:
        """The path's :class:`mmray.sim.PathState` (arrays of length 1; read, do not write), ``None``
        before the first reset."""
        return self._episodes.state

    def _info(self) -> dict[str, Any]:
        p = self._episodes.state
        return {"inventory": float(p.q[0]), "mid": float(p.s[0]), "mtm_pnl": float(p.mtm[0]),
                "q2_integral": float(p.q2[0]) * self.config.dt,
                "bid_offset": float(p.bid_offset[0]), "ask_offset": float(p.ask_offset[0])}


class PerPathGenerators:
    """Stands in for one ``numpy.random.Generator`` in :func:`mmray.sim.market_step`, drawing element
    ``i`` of every array from generator ``i`` (so each path has its own stream); implements the
    methods the market step calls."""

    def __init__(self, generators: Sequence[np.random.Generator]) -> None:
        self.generators = list(generators)

    def _fill(self, method: str, out: np.ndarray) -> np.ndarray:
        out[:] = [getattr(g, method)() for g in self.generators]
        return out

    def standard_exponential(self, out: np.ndarray) -> np.ndarray:
        return self._fill("standard_exponential", out)

    def standard_normal(self, out: np.ndarray) -> np.ndarray:
        return self._fill("standard_normal", out)

    def random(self, out: np.ndarray) -> np.ndarray:
        return self._fill("random", out)


class MarketMakingVectorEnv(VectorEnv):
    """``num_envs`` paths of :class:`MarketMakingEnv` stepped together by one :func:`mmray.sim.market_step`
    call per step (same spaces per sub-env, same rewards and termination).

    Autoreset (``metadata["autoreset_mode"] = NEXT_STEP``, gymnasium's default and what RLlib's env
    runner expects): the step after a sub-env's last one ignores its action, starts a new episode and
    returns its first observation with reward 0 and ``terminated = truncated = False``. Infos are empty
    (``{}``). Seeding: see :mod:`mmray.envs.market` (``rng_mode``).

    Every episode has ``T / dt`` steps, so by default (``stagger=False``) all sub-envs start and end
    together: a rollout fragment shorter than an episode then holds the same few time steps on every
    sub-env, and a learner sees one window of the horizon per batch. ``stagger=True`` starts sub-env
    ``i``'s first episode at step ``floor(i T / (dt N))`` (time ``t_i``, inventory ``q0``, PnL 0; a
    shorter first episode), so that from then on the sub-envs cover the horizon evenly and every batch
    holds all times; later episodes are whole. With ``stagger=False`` and the shared generator the paths
    are those of :func:`mmray.sim.simulate_chunk` (tested); with ``stagger=True`` the sub-envs that restart
    on a step draw the variates of that step too (discarded), so the paths differ from it.
    """

    metadata: dict[str, Any] = {"render_modes": [], "autoreset_mode": AutoresetMode.NEXT_STEP}  # noqa: RUF012

    def __init__(self, num_envs: int = 1, config: EnvConfig | Mapping[str, Any] | None = None,
                 rng_mode: str = "shared", render_mode: str | None = None, stagger: bool = False,
                 **overrides: Any) -> None:
        if render_mode is not None:
            raise ValueError(f"MarketMakingVectorEnv has no render modes, got render_mode={render_mode!r}")
        if isinstance(num_envs, bool) or not isinstance(num_envs, int | np.integer) or num_envs < 1:
            raise ValueError(f"num_envs must be an integer >= 1, got {num_envs!r}")
        if rng_mode not in RNG_MODES:
            raise ValueError(f"rng_mode must be one of {RNG_MODES}, got {rng_mode!r}")
        if not isinstance(stagger, bool | np.bool_):
            raise ValueError(f"stagger must be True or False, got {stagger!r}")
        self.num_envs = int(num_envs)
        self.stagger = bool(stagger)
        self.render_mode = render_mode
        self.rng_mode = rng_mode
        self.config = make_config(config, **overrides)
        self._episodes = _Episodes(self.config, self.num_envs)
        self.single_observation_space = self._episodes.obs_spec.space()
        self.single_action_space = self._episodes.act_spec.space()
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._per_path: PerPathGenerators | None = None
        self._zeros = np.zeros(self.num_envs, dtype=bool)
        self._autoreset = self._zeros.copy()

    def reset(self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None,
              ) -> tuple[np.ndarray, dict[str, Any]]:
        if self.rng_mode == "shared":
            if seed is not None and not isinstance(seed, int | np.integer):
                raise ValueError("rng_mode='shared' takes one integer seed (per-sub-env seeds need rng_mode='per_env')")
            super().reset(seed=None if seed is None else int(seed))
        elif seed is not None or self._per_path is None:
            self._per_path = PerPathGenerators([np.random.default_rng(s) for s in self._seeds(seed)])
        self._autoreset = self._zeros.copy()
        steps = (np.arange(self.num_envs) * self.config.n_steps) // self.num_envs if self.stagger else None
        return self._episodes.start(steps), {}

    @property
    def state(self) -> PathState | None:
        """The paths' :class:`mmray.sim.PathState` (arrays of length ``num_envs``; read, do not write),
        ``None`` before the first reset; after the last step it holds the finished episodes until the
        autoreset step."""
        return self._episodes.state

    def _seeds(self, seed: int | list[int] | None) -> list[Any]:
        if seed is None:  # fresh entropy, from the vector env's own generator
            return list(self.np_random.integers(0, 2**63, size=self.num_envs))
        if isinstance(seed, int | np.integer):
            return [int(seed) + i for i in range(self.num_envs)]
        seeds = list(seed)
        if len(seeds) != self.num_envs:
            raise ValueError(f"reset got {len(seeds)} seeds for {self.num_envs} sub-envs")
        return seeds

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        restarting = self._autoreset
        if restarting.all():  # NEXT_STEP: the step after the last one starts new episodes
            self._autoreset = self._zeros.copy()
            return self._episodes.start(), np.zeros(self.num_envs), self._zeros.copy(), self._zeros.copy(), {}
        actions = np.asarray(actions)
        if actions.shape != (self.num_envs, 2):
            raise ValueError(f"actions must have shape ({self.num_envs}, 2), got {actions.shape}")
        rng = self.np_random if self.rng_mode == "shared" else self._per_path
        some = bool(restarting.any())  # staggered episodes: some sub-envs restart while the others step
        rewards = self._episodes.advance(actions, rng, restarting if some else None)
        if some:
            self._episodes.restart(restarting)
            rewards[restarting] = 0.0
        terminated = self._episodes.ended
        self._autoreset = terminated
        return self._episodes.observe(), rewards, terminated.copy(), self._zeros.copy(), {}
