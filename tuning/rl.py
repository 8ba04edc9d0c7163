"""RLlib PPO and SAC on the simulated market (new API stack), the optimality figures during training,
and export of the trained agent to the ``mlp`` kind.

* :class:`TrainConfig` - what every run has: env, network, resources, stopping (``iterations``,
  ``timesteps``, ``time_budget``), evaluation and checkpoint cadence; :class:`PPOTrainConfig` and
  :class:`SACTrainConfig` add their algorithm's settings. Typed, frozen, checked.
* :func:`train` - build the algorithm (``PPOConfig``/``SACConfig`` ... ``build_algo()``), train until a
  stopping rule holds, evaluating the deterministic agent every ``eval_every`` iterations against the
  optimum of its env (:class:`mmray.tuning.rl_eval.OptimalityBenchmark`): the best agent by that
  evaluation is kept (exported policy and RLlib checkpoint), learning curves are written (CSV + PNG,
  :mod:`mmray.tuning.rl_curves`), progress is printed, RLlib checkpoints are saved every
  ``checkpoint_every`` iterations and at the end; ``train(resume=DIR)`` continues a run from its last
  checkpoint. Returns a :class:`TrainResult` (``to_dict()``: the figures, steps, time, paths).
* :func:`export_policy` - RLlib checkpoint (or a run directory) -> :class:`mmray.envs.MLPPolicy`: the
  actor encoder's and the policy head's ``Linear`` layers from the RLModule's ``state_dict``, the
  head's rows for the Gaussian mean (continuous actions; the log-std rows are dropped) or all its
  logits (discrete). PPO's deterministic action is then the mean clipped to ``[-1, 1]`` (RLlib's
  ``normalize_actions`` unsquash on the env's ``[-1, 1]`` box); SAC's is ``tanh(mean)`` (its squashed
  Gaussian's mean mapped to ``[-1, 1]``; RLlib's ``to_deterministic()`` returns the unsquashed mean,
  ray issue 51544), then the same unsquash.

Env runners step the native vector env (``gym_env_vectorize_mode=VECTOR_ENTRY_POINT``) and name the
env ``"mmray.envs:mmray/GLFT-v0"`` so that a remote runner imports (and so registers) ``mmray.envs``
itself. They send the env the sampled actions as they are (``normalize_actions=False, clip_actions=False``):
the env clips to its ``[-1, 1]`` box itself, which is what RLlib's unsquashing would do on that box. Their
connector pipelines are RLlib's defaults without the per-sub-env Python steps (:mod:`mmray.tuning.rl_connectors`).
Importing this module imports neither Ray nor torch; :func:`train` and :func:`export_policy` do.

Run directory (``out``)::

    rl_config.json          the config (with "algorithm": "ppo" or "sac")
    benchmark/              the reference optimum, best constant and exact policy values (rl_eval)
    rllib_checkpoint/       RLlib's latest algorithm checkpoint (periodic and final; resume from it)
    run_state.json          iteration, env steps, wall time of that checkpoint
    best_checkpoint/        RLlib checkpoint of the best evaluated agent
    policy/                 the best agent exported (mlp kind), for mmray.load_policy / backtest
    best.json               the best agent's figures and iteration
    learning_curves.csv/png the curves (one row per iteration)
    quotes.png              the best agent's quotes against inventory beside the reference's and the exact ones
    result.json             TrainResult.to_dict() of the last call
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from mmray.checks import CheckError, choice, flag, integer, real
from mmray.envs.config import EnvConfig
from mmray.envs.mlp import ACTIVATIONS, MLPPolicy
from mmray.io import atomic_write_json

from .rl_curves import CURVES_CSV, CURVES_PNG, FIGURE_KEYS, QUOTES_PNG, plot_curves, plot_quotes, read_csv, write_csv
from .rl_eval import DEFAULT_PATHS, METHODS, OptimalityBenchmark, OptimalityFigures, ReferenceSpec, same_problem

RL_CONFIG_FILE = "rl_config.json"
RLLIB_DIR = "rllib_checkpoint"
BEST_RLLIB_DIR = "best_checkpoint"
POLICY_DIR = "policy"
BENCHMARK_DIR = "benchmark"
STATE_FILE = "run_state.json"
BEST_FILE = "best.json"
RESULT_FILE = "result.json"
MODULE_PATH = ("learner_group", "learner", "rl_module", "default_policy")
"""Where the RLModule lies inside an RLlib algorithm checkpoint."""
STOP_FIELDS = ("iterations", "timesteps", "time_budget")
RUN_FIELDS = (*STOP_FIELDS, "eval_every", "eval_method", "eval_paths", "eval_seed", "checkpoint_every",
              "torch_threads")
"""Fields that may change when a run is resumed (the rest must equal the saved config)."""


TRAINING_REWARD = "expected"
"""The reward variant RL runs train on by default (:attr:`mmray.envs.EnvConfig.reward`): the zero-mean
noise of the mid and of the fills removed. Measured on the default env (PPO, seed 0, rewards centred):
best gap closed 0.945 in 5.2 M steps; with the realised reward 0.162 in 3.3 M steps, where the
'expected' run had reached 0.926 (docs/rl.md)."""


def training_env(**fields: Any) -> EnvConfig:
    """An :class:`EnvConfig` with ``fields``, training's reward variant (:data:`TRAINING_REWARD`) unless given."""
    return EnvConfig(**{"reward": TRAINING_REWARD, **fields})


def _optional(label: str, value: Any, check: Callable[..., Any], **bounds: Any) -> Any:
    return None if value is None else check(label, value, **bounds)


@dataclass(frozen=True)
class TrainConfig:
    """The settings every RL run has (see :class:`PPOTrainConfig` and :class:`SACTrainConfig`).

    Parameters
    ----------
    env : EnvConfig or dict
        The environment (default :func:`training_env`: :class:`EnvConfig`'s GLFT parameters, objective B,
        dt = 1, rewards / 10, with the control-variate reward ``"expected"``, which leaves every policy's
        expected return and so the optimum and the figures unchanged; see docs/rl.md).
    iterations, timesteps, time_budget : int, int, float or None
        Stop after this many ``algo.train()`` calls, env steps sampled, or seconds of wall time (from the
        algorithm's build, evaluations included; summed over resumed sessions), whichever comes first.
        At least one must be set to train.
    seed : int
        RLlib's seed (``debugging(seed=...)``): network initialisation and env seeds.
    hidden : tuple of int
        Hidden layer sizes of the policy network (and of the value/Q networks).
    activation : {"tanh", "relu"}
        Hidden-layer activation.
    num_env_runners : int
        Remote env runners (0: sample in the driver; on 2 CPUs more do not help).
    num_envs_per_env_runner : int
        Sub-envs of each runner's native vector env.
    rollout_fragment_length : int
        Steps per sub-env per sample call.
    num_learners, num_gpus_per_learner : int, float
        RLlib's learner resources (0 learners: learn in the driver; a GPU learner on a cluster:
        ``num_learners=1, num_gpus_per_learner=1``).
    gamma : float
        Discount (PPO default 1: objective B is undiscounted and time is observed).
    eval_every : int
        Evaluate the deterministic agent every this many iterations (and at the last one).
    eval_method : {"auto", "exact", "monte_carlo"}
        :meth:`mmray.tuning.rl_eval.OptimalityBenchmark.evaluate`'s method (``auto``: exact for an agent
        observing only ``(t, q)``, else Monte Carlo).
    eval_paths, eval_seed : int
        Monte Carlo paths and seed (the same for every evaluation: common random numbers).
    checkpoint_every : int
        Save the RLlib checkpoint every this many iterations (and at the end).
    centre_rewards : bool
        Subtract the best constant spread's value per step (the run's benchmark: ``baseline_value /
        n_steps``) from every reward, as the env's ``reward_offset``, unless the env sets its own offset.
        Every episode has ``n_steps`` steps, so this moves every return by the same amount and changes
        neither the optimum nor the figures; it centres the returns-to-go near 0, so that the critic fits
        the inventory-dependent part of the value instead of a trend of order the whole value (112 at the
        default env and reward scale, where inventory control is worth 2). Default True; measured on the
        default env (PPO, seed 0, reward ``"expected"``): best gap closed 0.926 in 3.3 M steps, against 0.683
        before a collapse without it (docs/rl.md).
    scale_inventory : bool
        Divide the observed inventory by the reference optimum's root mean square inventory
        (:meth:`~mmray.tuning.rl_eval.OptimalityBenchmark.inventory_rms`, 4.35 at the default env), as the
        env's ``inventory_scale``, unless the env sets its own scale: the network then sees the inventories
        that matter as ``O(1)`` inputs instead of ``q / Q`` (within +-0.15 most of the time at ``Q = 30``).
        It changes what the agent observes, not the market or the figures. Default True; measured on the
        default env (PPO, seed 1, 5 minutes): best gap closed 0.92 at scale 10 against 0.785 in 30 minutes
        at ``Q`` (docs/rl.md).
    torch_threads : int or None
        torch's intra-op threads in the driver process, where the learner and the env runner live with
        ``num_learners=0`` and ``num_env_runners=0`` (restored after the run); ``None`` leaves torch's
        default. Default 1: networks this small gain nothing from threads, and on a loaded 2-core machine
        torch's thread pool made a SAC update of batch 256 take 0.6 s instead of 0.03 s (measured).
    """

    algorithm: ClassVar[str] = ""

    env: EnvConfig = field(default_factory=training_env)
    iterations: int | None = None
    timesteps: int | None = None
    time_budget: float | None = None
    seed: int = 0
    hidden: tuple[int, ...] = (64, 64)
    activation: str = "tanh"
    num_env_runners: int = 0
    num_envs_per_env_runner: int = 256
    rollout_fragment_length: int = 128
    num_learners: int = 0
    num_gpus_per_learner: float = 0.0
    gamma: float = 1.0
    eval_every: int = 1
    eval_method: str = "auto"
    eval_paths: int = DEFAULT_PATHS
    eval_seed: int = 0
    checkpoint_every: int = 10
    centre_rewards: bool = True
    scale_inventory: bool = True
    torch_threads: int | None = 1

    def __post_init__(self) -> None:
        name = type(self).__name__
        if isinstance(self.env, Mapping):
            object.__setattr__(self, "env", EnvConfig.from_dict(self.env))
        if not isinstance(self.env, EnvConfig):
            raise CheckError(f"{name}.env", self.env, "an EnvConfig or a dict of its fields")
        object.__setattr__(self, "iterations", _optional(f"{name}.iterations", self.iterations, integer, ge=1))
        object.__setattr__(self, "timesteps", _optional(f"{name}.timesteps", self.timesteps, integer, ge=1))
        object.__setattr__(self, "time_budget", _optional(f"{name}.time_budget", self.time_budget, real, gt=0))
        object.__setattr__(self, "torch_threads", _optional(f"{name}.torch_threads", self.torch_threads, integer,
                                                            ge=1))
        for key, lo in (("seed", 0), ("num_env_runners", 0), ("num_envs_per_env_runner", 1),
                        ("rollout_fragment_length", 1), ("num_learners", 0), ("eval_every", 1), ("eval_paths", 2),
                        ("eval_seed", 0), ("checkpoint_every", 1)):
            object.__setattr__(self, key, integer(f"{name}.{key}", getattr(self, key), ge=lo))
        hidden = self.hidden
        if isinstance(hidden, str) or not all(isinstance(h, int) and not isinstance(h, bool) and h >= 1
                                              for h in hidden):
            raise CheckError(f"{name}.hidden", hidden, "a sequence of integers >= 1")
        object.__setattr__(self, "hidden", tuple(hidden))
        choice(f"{name}.activation", self.activation, tuple(a for a in ACTIVATIONS if a != "linear"))
        object.__setattr__(self, "num_gpus_per_learner", real(f"{name}.num_gpus_per_learner",
                                                              self.num_gpus_per_learner, ge=0))
        object.__setattr__(self, "gamma", real(f"{name}.gamma", self.gamma, gt=0))
        if self.gamma > 1:
            raise CheckError(f"{name}.gamma", self.gamma, "a discount in (0, 1]")
        choice(f"{name}.eval_method", self.eval_method, METHODS)
        object.__setattr__(self, "centre_rewards", flag(f"{name}.centre_rewards", self.centre_rewards))
        object.__setattr__(self, "scale_inventory", flag(f"{name}.scale_inventory", self.scale_inventory))

    @property
    def env_id(self) -> str:
        """The registered env id, importable by remote runners (``"module:id"``)."""
        env_id = "mmray/GLFT-v0" if self.env.action_mode == "continuous" else "mmray/GLFT-Discrete-v0"
        return f"mmray.envs:{env_id}"

    def replace(self, **changes: Any) -> Any:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["env"] = self.env.to_dict()
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Any:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown field(s) {unknown}; expected a subset of {sorted(names)}")
        data = {k: tuple(tuple(x) if isinstance(x, list) else x for x in v) if isinstance(v, list) and k != "env"
                else v for k, v in data.items()}
        return cls(**data)

    def stop_reason(self, iteration: int, env_steps: int, wall_s: float) -> str | None:
        """Which stopping rule holds after ``iteration`` iterations, ``env_steps`` steps and ``wall_s``
        seconds (``None``: go on)."""
        if self.iterations is not None and iteration >= self.iterations:
            return f"iterations {self.iterations}"
        if self.timesteps is not None and env_steps >= self.timesteps:
            return f"timesteps {self.timesteps}"
        if self.time_budget is not None and wall_s >= self.time_budget:
            return f"time budget {self.time_budget:g} s"
        return None

    def _model_config(self) -> Any:
        from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

        return DefaultModelConfig(fcnet_hiddens=list(self.hidden), fcnet_activation=self.activation,
                                  head_fcnet_hiddens=[], **self._model_extras())

    def _model_extras(self) -> dict[str, Any]:
        return {}

    def _common(self, algo_config: Any) -> Any:
        import gymnasium as gym

        from .rl_connectors import batched_env_to_module, batched_module_to_env

        return (
            algo_config
            # The env maps any action to its offsets, clipping to the [-1, 1] box itself (ActionSpec.offsets), so
            # RLlib's NormalizeAndClipActions connector (unsquash to the box, then clip: the identity on [-1, 1])
            # is switched off: it unbatches and maps every sub-env's action in Python, ~40% of
            # sample()'s time (py-spy); the env applies the same offsets, the episodes keep the same actions.
            .environment(self.env_id, env_config=self.env.to_dict(), normalize_actions=False, clip_actions=False)
            .env_runners(num_env_runners=self.num_env_runners, num_envs_per_env_runner=self.num_envs_per_env_runner,
                         rollout_fragment_length=self.rollout_fragment_length,
                         gym_env_vectorize_mode=gym.VectorizeMode.VECTOR_ENTRY_POINT,
                         env_to_module_connector=batched_env_to_module,
                         add_default_connectors_to_env_to_module_pipeline=False,
                         module_to_env_connector=batched_module_to_env,
                         add_default_connectors_to_module_to_env_pipeline=False)
            .learners(num_learners=self.num_learners, num_gpus_per_learner=self.num_gpus_per_learner)
            .rl_module(model_config=self._model_config())
            .debugging(log_sys_usage=False, seed=self.seed)
        )

    def algorithm_config(self) -> Any:
        """The RLlib ``AlgorithmConfig`` of this run."""
        raise NotImplementedError

    def initialise(self, algo: Any) -> None:
        """Adjust a freshly built algorithm (not a restored one) before its first iteration."""

    def policy_of_module(self, module: Any, provenance: dict[str, Any] | None = None) -> MLPPolicy:
        """The deterministic actor of an RLModule of this config as an :class:`MLPPolicy`."""
        layers = module_layers(module, self.env)
        prov = {"algorithm": f"{self.algorithm.upper()} (RLlib)", "config": self.to_dict(), "seed": self.seed,
                **(provenance or {})}
        return MLPPolicy.from_layers(self.env, layers, self.activation, prov, squash=self.algorithm == "sac")


@dataclass(frozen=True)
class PPOTrainConfig(TrainConfig):
    """A PPO run on :class:`mmray.envs.MarketMakingEnv` (defaults: the issue's calibration run on 2 CPUs).

    Defaults of :class:`TrainConfig` apply (``[64, 64]`` tanh, 256 sub-envs x 128-step fragments =
    32,768 env steps per iteration, discount 1), plus:

    Parameters
    ----------
    minibatch_size, num_epochs, lr : int, int, float
        SGD settings (default 4096, 10, 3e-4).
    lr_schedule : tuple of (int, float) or None
        Piecewise-linear learning rate over env steps, ``((0, lr0), (t1, lr1), ...)`` (RLlib's schedule
        form); overrides ``lr``.
    lr_end, lr_decay_steps : float or None, int or None
        A linear decay from ``lr`` to ``lr_end`` over ``lr_decay_steps`` env steps (default: the
        ``timesteps`` budget; required without one); sets ``lr_schedule`` (what a sweep varies).
    clip_param : float
        PPO's clip of the probability ratio (RLlib's ``clip_param``; default 0.3, RLlib's).
    lambda_ : float
        GAE lambda (0.95).
    vf_clip_param : float
        Clip of the value loss (RLlib default 10 is below the squared error of returns ~100 at the
        default reward scale and stalls the critic; default 1e4).
    entropy_coeff : float
        Entropy bonus (default 0.01). Without it the action std collapses within a few million steps (log std
        about -4, 0.09 price units) and the policy's quote level freezes wherever it is: the level's gradient
        is estimated from the exploration noise, and a 0.2 error in the level costs about 0.1 of the gap
        closed. Measured on the default env (PPO defaults, 7 minutes, two runs at a time on 2 CPUs): best gap
        closed 0.989 / 0.989 / 0.981 for seeds 0 / 1 / 2, against 0.981 / 0.960 / 0.894 without it (docs/rl.md).
    initial_log_std : float or None
        Continuous actions: initial log standard deviation of the Gaussian actions (the head's log-std
        biases, set after the algorithm is built; ignored for discrete actions). Default -1.5 (std 0.22,
        offsets +-1.1 price units on the default [0, 10] range); ``None``: RLlib's initialisation, std ~1,
        offsets +-5 while the optimal quotes differ by tenths. Measured on the default env, seed 0:
        best gap closed 0.548 within 5 minutes (3.3 M steps) against -0.45 with RLlib's (10 minutes: 0.245).
    vf_share_layers : bool
        Share the encoder between the policy and the value function (RLlib's default is True; default
        here False: the value loss at this return scale dwarfs the policy gradient in a shared encoder,
        and a 15-minute run with it shared reached gap_closed -0.13 then collapsed to -9).
    """

    algorithm: ClassVar[str] = "ppo"

    minibatch_size: int = 4096
    num_epochs: int = 10
    lr: float = 3e-4
    lr_schedule: tuple[tuple[int, float], ...] | None = None
    lambda_: float = 0.95
    vf_clip_param: float = 1e4
    entropy_coeff: float = 0.01
    initial_log_std: float | None = -1.5
    vf_share_layers: bool = False
    clip_param: float = 0.3
    lr_end: float | None = None
    lr_decay_steps: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        self._lr_decay()
        object.__setattr__(self, "clip_param", real("PPOTrainConfig.clip_param", self.clip_param, gt=0))
        object.__setattr__(self, "vf_share_layers", flag("PPOTrainConfig.vf_share_layers", self.vf_share_layers))
        object.__setattr__(self, "initial_log_std", _optional("PPOTrainConfig.initial_log_std", self.initial_log_std,
                                                              real))
        for key in ("minibatch_size", "num_epochs"):
            object.__setattr__(self, key, integer(f"PPOTrainConfig.{key}", getattr(self, key), ge=1))
        object.__setattr__(self, "lr", real("PPOTrainConfig.lr", self.lr, gt=0))
        object.__setattr__(self, "lr_schedule", _schedule("PPOTrainConfig.lr_schedule", self.lr_schedule))
        object.__setattr__(self, "lambda_", real("PPOTrainConfig.lambda_", self.lambda_, ge=0))
        object.__setattr__(self, "vf_clip_param", real("PPOTrainConfig.vf_clip_param", self.vf_clip_param, gt=0))
        object.__setattr__(self, "entropy_coeff", real("PPOTrainConfig.entropy_coeff", self.entropy_coeff, ge=0))
        if self.minibatch_size > self.train_batch_size:
            raise CheckError("PPOTrainConfig.minibatch_size", self.minibatch_size,
                             f"at most the train batch (runners x envs x fragment = {self.train_batch_size})")

    def _lr_decay(self) -> None:
        """``lr_end``: ``lr_schedule`` becomes the linear decay from ``lr`` over ``lr_decay_steps`` or ``timesteps``."""
        if self.lr_decay_steps is not None:
            object.__setattr__(self, "lr_decay_steps", integer("PPOTrainConfig.lr_decay_steps", self.lr_decay_steps,
                                                               ge=1))
        if self.lr_end is None:
            return
        end = real("PPOTrainConfig.lr_end", self.lr_end, gt=0)
        steps = self.lr_decay_steps or self.timesteps
        if steps is None:
            raise CheckError("PPOTrainConfig.lr_end", end, "given with a decay length: set lr_decay_steps (or a "
                             "timesteps budget)", sep=";")
        schedule = ((0, real("PPOTrainConfig.lr", self.lr, gt=0)), (int(steps), end))
        if self.lr_schedule is not None and tuple(tuple(p) for p in self.lr_schedule) != schedule:
            raise CheckError("PPOTrainConfig.lr_end", end, "given without lr_schedule (lr_end makes the schedule)",
                             sep=";")
        object.__setattr__(self, "lr_end", end)
        object.__setattr__(self, "lr_schedule", schedule)

    def _model_extras(self) -> dict[str, Any]:
        return {"vf_share_layers": self.vf_share_layers}

    def initialise(self, algo: Any) -> None:
        """Set the policy head's log-std biases to ``initial_log_std`` (learner and env runners)."""
        if self.initial_log_std is None or self.env.action_mode != "continuous":
            return
        weights = algo.learner_group.get_weights()
        state = weights["default_policy"]
        key = "pi.net.mlp.0.bias"
        bias = state[key].copy() if hasattr(state[key], "copy") else state[key].clone()
        bias[2:] = self.initial_log_std
        state[key] = bias
        algo.learner_group.set_weights(weights)
        algo.env_runner_group.sync_weights(from_worker_or_learner_group=algo.learner_group, inference_only=True)

    @property
    def train_batch_size(self) -> int:
        """Env steps per iteration: ``max(1, num_env_runners) x num_envs_per_env_runner x rollout_fragment_length``."""
        return max(1, self.num_env_runners) * self.num_envs_per_env_runner * self.rollout_fragment_length

    def algorithm_config(self) -> Any:
        """The RLlib ``PPOConfig`` of this run (new API stack, native vector env)."""
        from ray.rllib.algorithms.ppo import PPOConfig

        lr = [list(p) for p in self.lr_schedule] if self.lr_schedule else self.lr
        return self._common(PPOConfig()).training(
            train_batch_size_per_learner=self.train_batch_size, minibatch_size=self.minibatch_size,
            num_epochs=self.num_epochs, lr=lr, gamma=self.gamma, lambda_=self.lambda_,
            vf_clip_param=self.vf_clip_param, entropy_coeff=self.entropy_coeff, clip_param=self.clip_param)


@dataclass(frozen=True)
class SACTrainConfig(TrainConfig):
    """A SAC run on :class:`mmray.envs.MarketMakingEnv` (continuous actions only).

    SAC is sample-efficient but its per-step cost in RLlib is high: every sampled step is replayed
    ``training_intensity`` times on average, and RLlib's episode replay buffer builds each replayed
    transition in Python (~0.3 ms each, profiled), which bounds SAC at a few hundred env steps/s at replay
    ratio 4 on 2 CPUs (370 measured with the earlier defaults, 64 x 4 steps and batch 256, torch on 1
    thread). By default (``replay="numpy"``) the n-step transitions are computed once as they are sampled
    and replayed from numpy arrays (:mod:`mmray.tuning.rl_replay`). Defaults: 256 sub-envs x 4-step
    fragments (1024 env steps per sample), batch 1024, replay ratio 1 (one update per sample: RLlib's SAC
    update, ~30 ms, is the cost) and an initial entropy weight of 1e-4: the rewards (centred, divided by
    ``reward_scale``) differ by ~1e-3 per step between good and poor quotes, so RLlib's 0.1 made the entropy
    bonus dominate for longer than a 30-minute run (at 1e-4: gap closed -2.4 -> -0.43 over 2.1 M steps in 8
    minutes, three runs sharing 2 CPUs; at 0.1, -1.57 after 1.1 M steps; docs/rl.md).

    An iteration is one sampling round of the env runners (``max(1, num_env_runners) x
    num_envs_per_env_runner x rollout_fragment_length`` env steps, 1024 at the defaults) and the updates
    the replay ratio asks for. RLlib's SAC default, at least one second of rounds per iteration, made what
    an iteration holds depend on the machine's speed, so two runs with the same seed differed.

    Parameters
    ----------
    actor_lr, critic_lr, alpha_lr : float
        Learning rates of the policy, the Q networks and the entropy weight.
    train_batch_size : int
        Transitions per gradient step.
    training_intensity : float or None
        Replayed transitions per sampled transition (RLlib's ``training_intensity``; ``None``: RLlib's
        native ratio).
    replay_capacity : int
        Replay buffer size (transitions).
    learning_starts : int
        Env steps sampled before the first update.
    n_step : int
        N-step returns in the targets.
    tau : float
        Target-network soft-update rate.
    initial_alpha : float
        Initial entropy weight.
    replay : {"numpy", "rllib"}
        The replay buffer. ``"numpy"`` (default): :class:`mmray.tuning.rl_replay.FastReplaySAC`, RLlib's
        SAC with the n-step transitions computed when the runners' episodes are added and kept in numpy
        arrays (:class:`~mmray.tuning.rl_replay.TransitionReplay`; FIFO, uniform sampling seeded by
        ``seed``), the learner updated from their columns directly; ``"rllib"``: RLlib's SAC and its
        ``EpisodeReplayBuffer``. Same loss and the same transitions except: RLlib flags only the last
        full window of a terminated episode as terminated (its last ``n_step - 1`` transitions bootstrap
        from the terminal observation; the numpy buffer masks them), samples the windows of an
        unfinished episode's last ``n_step - 1`` steps (shorter; the numpy buffer waits for them to
        complete) and evicts whole episodes (the numpy buffer: FIFO transitions). Neither buffer is saved
        in checkpoints: a resumed run refills it.
    """

    algorithm: ClassVar[str] = "sac"
    replays: ClassVar[tuple[str, ...]] = ("numpy", "rllib")

    num_envs_per_env_runner: int = 256
    rollout_fragment_length: int = 4
    gamma: float = 0.999
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    alpha_lr: float = 3e-4
    train_batch_size: int = 1024
    training_intensity: float | None = 1.0
    replay_capacity: int = 1_000_000
    learning_starts: int = 10_000
    n_step: int = 3
    tau: float = 0.005
    initial_alpha: float = 1e-4
    replay: str = "numpy"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.env.action_mode != "continuous":
            raise CheckError("SACTrainConfig.env.action_mode", self.env.action_mode,
                             '"continuous" (RLlib\'s SAC takes Box actions)')
        for key in ("actor_lr", "critic_lr", "alpha_lr", "tau", "initial_alpha"):
            object.__setattr__(self, key, real(f"SACTrainConfig.{key}", getattr(self, key), gt=0))
        for key, lo in (("train_batch_size", 1), ("replay_capacity", 1), ("learning_starts", 0), ("n_step", 1)):
            object.__setattr__(self, key, integer(f"SACTrainConfig.{key}", getattr(self, key), ge=lo))
        object.__setattr__(self, "training_intensity",
                           _optional("SACTrainConfig.training_intensity", self.training_intensity, real, gt=0))
        choice("SACTrainConfig.replay", self.replay, self.replays)

    def algorithm_config(self) -> Any:
        """The RLlib ``SACConfig`` of this run (new API stack, native vector env)."""
        from ray.rllib.algorithms.sac import SACConfig

        if self.replay == "numpy":
            from .rl_replay import FastReplaySAC

            algo_config = SACConfig(algo_class=FastReplaySAC)
        else:
            algo_config = SACConfig()
        return self._common(algo_config).training(
            gamma=self.gamma, actor_lr=self.actor_lr, critic_lr=self.critic_lr, alpha_lr=self.alpha_lr,
            train_batch_size_per_learner=self.train_batch_size, training_intensity=self.training_intensity,
            replay_buffer_config={"type": "EpisodeReplayBuffer", "capacity": self.replay_capacity},
            num_steps_sampled_before_learning_starts=self.learning_starts, n_step=self.n_step, tau=self.tau,
            initial_alpha=self.initial_alpha).reporting(min_time_s_per_iteration=None,
                                                        min_sample_timesteps_per_iteration=0)


CONFIGS: dict[str, type[TrainConfig]] = {"ppo": PPOTrainConfig, "sac": SACTrainConfig}
"""Config class of each algorithm name (``rl_config.json``'s ``"algorithm"``)."""


def _schedule(label: str, value: Any) -> tuple[tuple[int, float], ...] | None:
    if value is None:
        return None
    try:
        pairs = tuple((integer(label, int(t) if isinstance(t, float) and t.is_integer() else t, ge=0),
                       real(label, v, gt=0)) for t, v in value)
    except (TypeError, ValueError):
        raise CheckError(label, value, "pairs (env step >= 0, learning rate > 0) starting at step 0") from None
    if not pairs or pairs[0][0] != 0 or any(b[0] <= a[0] for a, b in itertools.pairwise(pairs)):
        raise CheckError(label, value, "pairs (env step >= 0, learning rate > 0) starting at step 0, steps increasing")
    return pairs


def config_to_json(config: TrainConfig) -> dict[str, Any]:
    """``rl_config.json``'s content: ``{"algorithm": ..., **config.to_dict()}``."""
    return {"algorithm": config.algorithm, **config.to_dict()}


def config_from_json(data: Mapping[str, Any]) -> TrainConfig:
    """Inverse of :func:`config_to_json` (a file without ``"algorithm"`` is a PPO run of an earlier version)."""
    data = dict(data)
    algo = data.pop("algorithm", "ppo")
    if algo not in CONFIGS:
        raise ValueError(f"unknown algorithm {algo!r} in {RL_CONFIG_FILE}; expected one of {sorted(CONFIGS)}")
    return CONFIGS[algo].from_dict(data)


def read_run_config(run_dir: str | Path) -> TrainConfig:
    """The config of a :func:`train` run directory."""
    path = Path(run_dir) / RL_CONFIG_FILE
    if not path.is_file():
        raise ValueError(f"{run_dir}: not an RL run directory (no {RL_CONFIG_FILE})")
    return config_from_json(json.loads(path.read_text()))


# ----------------------------------------------------------------------------------------------- train
@dataclass(frozen=True)
class TrainResult:
    """What :func:`train` produced.

    Attributes
    ----------
    out : Path
        The run directory (layout in the module docstring).
    checkpoint, best_checkpoint, policy : Path
        RLlib's latest checkpoint, RLlib's checkpoint of the best agent, and the best agent exported
        (``mlp`` policy checkpoint).
    figures : OptimalityFigures
        The best agent's figures (by its evaluation; see :mod:`mmray.tuning.rl_eval`).
    best_iteration : int
        The iteration whose agent is the best.
    env_steps : int
        Env steps sampled (RLlib's lifetime count, over resumed sessions).
    wall_s : float
        Seconds of training (from the algorithm's build, evaluations included, over resumed sessions).
    iterations : int
        Iterations done (over resumed sessions).
    stop_reason : str
        The stopping rule that ended the run.
    benchmark : dict
        :meth:`OptimalityBenchmark.summary` (reference, baseline, exact policy values...).
    history : list of dict
        The learning-curve rows (:data:`mmray.tuning.rl_curves.COLUMNS`).
    """

    out: Path
    checkpoint: Path
    best_checkpoint: Path
    policy: Path
    figures: OptimalityFigures
    best_iteration: int
    env_steps: int
    wall_s: float
    iterations: int
    stop_reason: str
    benchmark: dict[str, Any]
    history: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        """One JSON-ready object: the figures, ``env_steps``, ``wall_s``, ``checkpoint`` (RLlib's latest),
        ``best_checkpoint``, ``policy`` (the exported best agent), ``best_iteration``, ``iterations``,
        ``stop_reason``, ``benchmark``, ``out``."""
        return {**self.figures.to_dict(), "env_steps": self.env_steps, "wall_s": self.wall_s,
                "iterations": self.iterations, "best_iteration": self.best_iteration, "stop_reason": self.stop_reason,
                "checkpoint": str(self.checkpoint), "best_checkpoint": str(self.best_checkpoint),
                "policy": str(self.policy), "out": str(self.out), "benchmark": self.benchmark}


def _resolve(config: TrainConfig | None, out: str | Path | None, resume: str | Path | None
             ) -> tuple[TrainConfig, Path, bool]:
    if resume is not None:
        if out is not None and Path(out) != Path(resume):
            raise ValueError("give either out (a new run) or resume (an existing run's directory), not both")
        run_dir = Path(resume)
        saved = read_run_config(run_dir)
        if not (run_dir / RLLIB_DIR).is_dir() or not (run_dir / STATE_FILE).is_file():
            raise ValueError(f"{run_dir}: no checkpoint to resume from ({RLLIB_DIR}/ and {STATE_FILE})")
        if config is None:
            config = saved
        else:
            if type(config) is not type(saved):
                raise ValueError(f"{run_dir}: a {saved.algorithm} run cannot be resumed as {config.algorithm}")
            a, b = saved.to_dict(), config.to_dict()
            diff = sorted(k for k in a if k not in RUN_FIELDS and a[k] != b[k])
            if diff:
                raise ValueError(f"{run_dir}: resuming may change only {list(RUN_FIELDS)}; {diff} differ "
                                 "from the saved config")
        return config, run_dir, True
    if config is None or out is None:
        raise ValueError("train needs a config and an out directory (or resume=DIR)")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out}: exists and is not empty; choose a new directory (or resume={str(out)!r})")
    return config, out, False


def progress_line(row: Mapping[str, Any], best: float | None, reward_scale: float) -> str:
    """One console line per iteration."""
    parts = [f"iter {row['iteration']:>4d}", f"steps {int(row['env_steps']):>11,d}", f"wall {row['wall_s']:8.1f} s"]
    ret = row.get("episode_return_mean", math.nan)
    parts.append(f"return {ret * reward_scale:9.2f}" if math.isfinite(ret) else "return       n/a")
    if math.isfinite(row.get("agent_value", math.nan)):
        se = row.get("gap_closed_se", 0.0)
        parts += [f"value {row['agent_value']:.2f}", f"ratio {row['optimality_ratio']:.4f}",
                  f"gap {row['gap_closed']:+.3f}" + (f" ±{se:.3f}" if se else "")]
    if best is not None:
        parts.append(f"(best gap {best:+.3f})")
    return "  ".join(parts)


def _reporter(progress: bool | Callable[[str], None]) -> Callable[[str], None]:
    if callable(progress):
        return progress
    if progress:
        return lambda line: print(line, file=sys.stderr, flush=True)
    return lambda line: None


def _save_rllib(algo: Any, target: Path) -> Path:
    """Save the algorithm to ``target`` via a sibling temporary directory (a crash leaves the old one)."""
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    algo.save_to_path(str(tmp.resolve()))
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    return target


class _Session:
    """One call of :func:`train`: the run's counters, history and best agent, and the steps of the loop."""

    def __init__(self, config: TrainConfig, run_dir: Path, benchmark: OptimalityBenchmark,
                 say: Callable[[str], None], resuming: bool,
                 on_iteration: Callable[[dict[str, Any], dict[str, Any] | None], None] | None = None) -> None:
        self.config, self.run_dir, self.benchmark, self.say = config, run_dir, benchmark, say
        self.on_iteration = on_iteration
        self.iteration, self.env_steps, wall = 0, 0, 0.0
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None
        if resuming:
            state = json.loads((run_dir / STATE_FILE).read_text())
            self.iteration, self.env_steps = int(state["iteration"]), int(state["env_steps"])
            wall = float(state["wall_s"])
            if (run_dir / CURVES_CSV).is_file():
                self.history = [r for r in read_csv(run_dir / CURVES_CSV) if r["iteration"] <= self.iteration]
            if (run_dir / BEST_FILE).is_file():
                self.best = json.loads((run_dir / BEST_FILE).read_text())
        self.start = time.perf_counter() - wall
        self.last_saved = self.iteration
        self.reason = config.stop_reason(self.iteration, self.env_steps, wall)

    @property
    def wall(self) -> float:
        return time.perf_counter() - self.start

    def save_checkpoint(self, algo: Any) -> None:
        _save_rllib(algo, self.run_dir / RLLIB_DIR)
        atomic_write_json(self.run_dir / STATE_FILE, {"iteration": self.iteration, "env_steps": self.env_steps,
                                                      "wall_s": self.wall})
        self.last_saved = self.iteration

    def step(self, algo: Any) -> None:
        """One ``algo.train()``, its evaluation when due, the curves, the progress line, the checkpoint when due."""
        config = self.config
        runners = algo.train().get("env_runners", {})
        self.iteration += 1
        self.env_steps = int(runners.get("num_env_steps_sampled_lifetime", self.env_steps))
        self.reason = config.stop_reason(self.iteration, self.env_steps, self.wall)
        row: dict[str, Any] = {"iteration": self.iteration, "env_steps": self.env_steps, "wall_s": self.wall,
                               "episode_return_mean": float(runners.get("episode_return_mean", math.nan))}
        if self.iteration % config.eval_every == 0 or self.reason is not None:
            self.evaluate(algo, row)
            row["wall_s"] = self.wall  # evaluation included
        self.history.append(row)
        write_csv(self.history, self.run_dir / CURVES_CSV)
        self.say(progress_line(row, self.best["figures"]["gap_closed"] if self.best else None,
                               config.env.reward_scale))
        if self.on_iteration is not None:
            self.on_iteration(dict(row), dict(self.best) if self.best else None)
        if self.iteration % config.checkpoint_every == 0 and self.reason is None:
            self.save_checkpoint(algo)

    def evaluate(self, algo: Any, row: dict[str, Any]) -> None:
        """The deterministic agent's figures into ``row``; a new best agent is exported and checkpointed."""
        config = self.config
        policy = config.policy_of_module(algo.get_module(), {"iteration": self.iteration, "env_steps": self.env_steps})
        figures = self.benchmark.evaluate(policy, config.eval_method, config.eval_paths, config.eval_seed)
        row |= {k: v for k, v in figures.to_dict().items() if k in FIGURE_KEYS}
        row["eval_method"] = figures.method
        if self.best is None or figures.agent_value > self.best["figures"]["agent_value"]:
            row["best"] = 1
            self.best = {"iteration": self.iteration, "env_steps": self.env_steps, "wall_s": self.wall,
                         "figures": figures.to_dict()}
            policy.save(self.run_dir / POLICY_DIR, provenance={"figures": figures.to_dict()})
            _save_rllib(algo, self.run_dir / BEST_RLLIB_DIR)
            atomic_write_json(self.run_dir / BEST_FILE, self.best)

    def run(self, resuming: bool) -> None:
        """Build (and restore) the algorithm, step until a stopping rule holds, save the last checkpoint
        (also on Ctrl-C)."""
        if self.reason is not None:
            self.say(f"nothing to do: the run already met its stopping rule ({self.reason})")
            return
        import torch

        threads = torch.get_num_threads()
        if self.config.torch_threads is not None:
            torch.set_num_threads(self.config.torch_threads)
        try:
            self._loop(resuming)
        finally:
            torch.set_num_threads(threads)

    def _loop(self, resuming: bool) -> None:
        algo = self.config.algorithm_config().build_algo()
        try:
            if resuming:
                algo.restore_from_path(str((self.run_dir / RLLIB_DIR).resolve()))
                self.say(f"resumed {self.run_dir} at iteration {self.iteration} ({self.wall:.1f} s)")
            else:
                self.config.initialise(algo)
            while self.reason is None:
                self.step(algo)
            if self.last_saved != self.iteration or not (self.run_dir / RLLIB_DIR).is_dir():
                self.save_checkpoint(algo)
        except KeyboardInterrupt:
            if self.iteration > self.last_saved:
                self.save_checkpoint(algo)
                self.say(f"interrupted: checkpoint saved at iteration {self.iteration}; "
                         f"resume with resume={str(self.run_dir)!r}")
            raise
        finally:
            algo.stop()

    def result(self, plots: bool = True) -> TrainResult:
        best, run_dir = self.best, self.run_dir
        if best is None:
            raise RuntimeError(f"{run_dir}: no evaluated agent (the run stopped before its first iteration)")
        if plots:
            self.plot()
        state = json.loads((run_dir / STATE_FILE).read_text())
        return TrainResult(run_dir, run_dir / RLLIB_DIR, run_dir / BEST_RLLIB_DIR, run_dir / POLICY_DIR,
                           OptimalityFigures(**best["figures"]), int(best["iteration"]), int(state["env_steps"]),
                           float(state["wall_s"]), int(state["iteration"]), self.reason or "", self.benchmark.summary(),
                           self.history)

    def plot(self) -> None:
        """``learning_curves.png`` and ``quotes.png`` (the best agent's quotes beside the reference's)."""
        best, config, run_dir = self.best, self.config, self.run_dir
        assert best is not None
        plot_curves(self.history, run_dir / CURVES_PNG, config.env.reward_scale,
                    f"{config.algorithm.upper()} on {config.env_id.split(':')[1]} (seed {config.seed}): best gap "
                    f"closed {best['figures']['gap_closed']:.3f} at iteration {best['iteration']}")
        from mmray.checkpoint import load_policy

        plot_quotes({"agent (best)": load_policy(run_dir / POLICY_DIR), "reference (pi)": self.benchmark.reference,
                     "continuous exact": self.benchmark.exact}, config.env, run_dir / QUOTES_PNG,
                    f"quotes of the best agent (iteration {best['iteration']}), the reference and the exact policy")


def train(config: TrainConfig | None = None, out: str | Path | None = None, *, resume: str | Path | None = None,
          benchmark: OptimalityBenchmark | None = None, reference: ReferenceSpec | None = None,
          progress: bool | Callable[[str], None] = True,
          on_iteration: Callable[[dict[str, Any], dict[str, Any] | None], None] | None = None,
          plots: bool = True) -> TrainResult:
    """Train PPO or SAC (by the config's class) until a stopping rule holds; see the module docstring.

    Parameters
    ----------
    config : TrainConfig
        :class:`PPOTrainConfig` or :class:`SACTrainConfig`; with ``resume``, optional (default the saved
        one; a given one may differ from it only in :data:`RUN_FIELDS`, e.g. a larger ``time_budget``).
    out : path
        A new run directory (created; must be empty).
    resume : path
        An existing run directory: restore its last RLlib checkpoint and go on (history after that
        checkpoint is dropped; the best agent found so far is kept).
    benchmark : OptimalityBenchmark
        The env's benchmark if already built (else loaded from the run directory or built, which solves
        ``pi`` on a fine grid: ~1 minute at the default env).
    reference : ReferenceSpec
        How to build the benchmark's reference (default :class:`ReferenceSpec`).
    progress : bool or callable
        Print a line per iteration to stderr (True), nothing (False), or pass each line to the callable.
    on_iteration : callable
        Called after every iteration with that iteration's row of ``learning_curves.csv`` (a dict:
        ``iteration``, ``env_steps``, ``wall_s``, ``episode_return_mean``, the figures when evaluated,
        ``best = 1`` when its agent became the best, already exported to ``policy/``) and the best agent
        so far (``best.json``'s dict: ``iteration``, ``env_steps``, ``wall_s``, ``figures``; ``None`` before
        the first evaluation). E.g. a Tune trial's per-iteration report.
    plots : bool
        Draw ``learning_curves.png`` and ``quotes.png`` at the end (default True).

    Starts a fresh local Ray session if none is running (:func:`mmray.distributed.ensure_ray`: never
    attached by accident to another local cluster) and leaves it running; to train on a cluster, call
    ``ray.init(address=...)`` first (then ``num_env_runners``, ``num_learners`` and
    ``num_gpus_per_learner`` size the run).
    """
    from mmray.distributed import ensure_ray

    config, run_dir, resuming = _resolve(config, out, resume)
    if all(getattr(config, k) is None for k in STOP_FIELDS):
        raise ValueError(f"{type(config).__name__}: set at least one of iterations, timesteps, time_budget")
    say = _reporter(progress)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run_dir / RL_CONFIG_FILE, config_to_json(config))
    benchmark = _benchmark(config, run_dir, benchmark, reference, say)
    config = scaled(centred(config, benchmark), benchmark)
    ensure_ray(log_to_driver=False)
    logging.getLogger("ray.rllib").setLevel(logging.ERROR)
    session = _Session(config, run_dir, benchmark, say, resuming, on_iteration)
    session.run(resuming)
    res = session.result(plots)
    atomic_write_json(run_dir / RESULT_FILE, res.to_dict())
    f = res.figures
    se = f" ± {f.gap_closed_se:.4f}" if f.method == "monte_carlo" else " (exact)"
    say(f"done ({res.stop_reason}): best gap closed {f.gap_closed:.4f}{se}, optimality ratio {f.optimality_ratio:.5f} "
        f"at iteration {res.best_iteration} of {res.iterations}; policy {res.policy}")
    return res


def centred(config: TrainConfig, benchmark: OptimalityBenchmark) -> TrainConfig:
    """``config`` with the env's ``reward_offset`` set to the benchmark's best-constant value per step when
    ``centre_rewards`` is on and the env has no offset of its own (else ``config`` itself); the same on
    every session of a run (the benchmark is saved with it), so a resumed run sees the same rewards."""
    if not config.centre_rewards or config.env.reward_offset != 0:
        return config
    return config.replace(env=config.env.replace(reward_offset=benchmark.baseline_value / config.env.n_steps))


def scaled(config: TrainConfig, benchmark: OptimalityBenchmark) -> TrainConfig:
    """``config`` with the env's ``inventory_scale`` set to the reference optimum's root mean square inventory
    when ``scale_inventory`` is on and the env has no scale of its own (else ``config`` itself); like
    :func:`centred`, the same on every session of a run."""
    if not config.scale_inventory or config.env.inventory_scale is not None:
        return config
    return config.replace(env=config.env.replace(inventory_scale=benchmark.inventory_rms()))


def _benchmark(config: TrainConfig, run_dir: Path, benchmark: OptimalityBenchmark | None,
               reference: ReferenceSpec | None, say: Callable[[str], None]) -> OptimalityBenchmark:
    """The run's benchmark: given, saved in the run directory, or built (and saved there)."""
    saved = run_dir / BENCHMARK_DIR
    if benchmark is None and (saved / "benchmark.json").is_file():
        benchmark = OptimalityBenchmark.load(saved, config.env)
    if benchmark is None:
        say("building the optimality benchmark (pi on a fine quote grid, best constant, exact policy)...")
        benchmark = OptimalityBenchmark.build(config.env, reference)
        say(f"  reference {benchmark.reference_value:.3f}  exact policy {benchmark.exact_value:.3f}  "
            f"best constant {benchmark.baseline_value:.3f} (h = {benchmark.baseline_half_spread:.3f})  "
            f"[{benchmark.seconds:.1f} s]")
    elif not same_problem(benchmark.env, config.env):
        raise ValueError("the benchmark given was built for another env than the config's")
    if not (saved / "benchmark.json").is_file():
        benchmark.save(saved)
    return benchmark


# ----------------------------------------------------------------------------------------------- export
def _load_module(checkpoint: Path) -> Any:
    from ray.rllib.core.rl_module.rl_module import RLModule

    path = checkpoint.joinpath(*MODULE_PATH)
    if not path.is_dir():
        raise ValueError(f"{checkpoint}: not an RLlib algorithm checkpoint (no {'/'.join(MODULE_PATH)})")
    return RLModule.from_checkpoint(str(path))


def load_rllib_module(source: str | Path, best: bool = False) -> Any:
    """The RLModule (torch) of an RLlib checkpoint or of a :func:`train` run directory (its latest
    checkpoint, or with ``best`` its best agent's)."""
    source = Path(source)
    if (source / RL_CONFIG_FILE).is_file():
        source = source / (BEST_RLLIB_DIR if best else RLLIB_DIR)
    return _load_module(source)


def module_layers(module: Any, env: EnvConfig) -> list[tuple[np.ndarray, np.ndarray]]:
    """The deterministic actor of a PPO or SAC RLModule as ``[(W, b), ...]`` (float64, torch layout): the
    actor encoder's ``Linear`` layers (PPO ``encoder.actor_encoder``/``encoder.encoder``, SAC
    ``pi_encoder``), then the policy head's (``pi``), keeping only the Gaussian-mean rows of a continuous
    head. Raises ``ValueError`` for a head with hidden layers or an unexpected output size."""
    import re

    state = {k: v.detach().cpu().numpy().astype(float) for k, v in module.state_dict().items()}
    pattern = re.compile(
        r"^(encoder\.(?:actor_encoder|encoder)\.net|pi_encoder\.net|pi\.net)\.mlp\.(\d+)\.(weight|bias)$")
    found: dict[tuple[int, int], dict[str, np.ndarray]] = {}
    for key, value in state.items():
        m = pattern.match(key)
        if m:
            part = 1 if m.group(1) == "pi.net" else 0
            found.setdefault((part, int(m.group(2))), {})[m.group(3)] = value
    head = [k for k in found if k[0] == 1]
    if len(head) != 1:
        raise ValueError(f"expected a policy head of one linear layer, found {len(head)} (use head_fcnet_hiddens=[])")
    layers = [(found[k]["weight"], found[k]["bias"]) for k in sorted(found)]
    w, b = layers[-1]
    if env.action_mode == "continuous":
        if w.shape[0] != 4:
            raise ValueError(f"a continuous 2-d action head has 4 outputs (mean, log std), found {w.shape[0]}")
        layers[-1] = (w[:2], b[:2])
    return layers


def export_policy(source: str | Path, config: TrainConfig | None = None, best: bool = True,
                  provenance: dict[str, Any] | None = None) -> MLPPolicy:
    """The deterministic policy of a PPO or SAC checkpoint as an :class:`MLPPolicy` (not saved: call
    ``.save(dir)``).

    ``source`` is a :func:`train` run directory (its ``rl_config.json`` gives ``config``; ``best``
    picks the best agent's checkpoint, else the latest) or an RLlib checkpoint directory (then
    ``config`` is required: the algorithm, the env and the activation)."""
    source = Path(source)
    if (source / RL_CONFIG_FILE).is_file():
        config = config or read_run_config(source)
        source = source / (BEST_RLLIB_DIR if best and (source / BEST_RLLIB_DIR).is_dir() else RLLIB_DIR)
    if config is None:
        raise ValueError(f"{source}: an RLlib checkpoint needs the TrainConfig it was trained with")
    return config.policy_of_module(_load_module(source), {"rllib_checkpoint": str(source), **(provenance or {})})


def export_ppo(source: str | Path, config: PPOTrainConfig | None = None,
               provenance: dict[str, Any] | None = None) -> MLPPolicy:
    """:func:`export_policy` of a PPO run's latest checkpoint (kept for callers of the first version)."""
    return export_policy(source, config, best=False, provenance=provenance)


__all__ = ["CONFIGS", "RUN_FIELDS", "PPOTrainConfig", "SACTrainConfig", "TrainConfig", "TrainResult",
           "config_from_json", "config_to_json", "export_policy", "export_ppo", "load_rllib_module",
           "module_layers", "progress_line", "read_run_config", "train"]
