"""RLlib PPO on the simulated market (new API stack), and export of the trained agent to the ``mlp`` kind.

* :class:`PPOTrainConfig` - what a run is (env, network, PPO settings, resources), typed and checked.
* :func:`train` - build the algorithm (``PPOConfig`` ... ``build_algo()``), train, save an RLlib
  checkpoint, export the deterministic policy (:func:`export_ppo`); returns a :class:`TrainResult`.
* :func:`export_ppo` - RLlib checkpoint (or a training directory) -> :class:`mmray.envs.MLPPolicy`:
  the actor encoder's and the policy head's ``Linear`` layers from the RLModule's ``state_dict``, the
  head's rows for the Gaussian mean (continuous actions; the log-std rows are dropped) or all its
  logits (discrete). The deterministic action is then the mean clipped to ``[-1, 1]`` (RLlib's
  ``normalize_actions`` unsquash on the env's ``[-1, 1]`` box) or the per-side argmax.

Env runners step the native vector env (``gym_env_vectorize_mode=VECTOR_ENTRY_POINT``) and name the
env ``"mmray.envs:mmray/GLFT-v0"`` so that a remote runner imports (and so registers) ``mmray.envs``
itself. Importing this module imports neither Ray nor torch; :func:`train` and :func:`export_ppo` do.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from mmray.checks import CheckError, choice, integer, real
from mmray.envs.config import EnvConfig
from mmray.envs.mlp import ACTIVATIONS, MLPPolicy

RL_CONFIG_FILE = "rl_config.json"
RLLIB_DIR = "rllib_checkpoint"
POLICY_DIR = "policy"
MODULE_PATH = ("learner_group", "learner", "rl_module", "default_policy")
"""Where the RLModule lies inside an RLlib algorithm checkpoint."""


@dataclass(frozen=True)
class PPOTrainConfig:
    """A PPO run on :class:`mmray.envs.MarketMakingEnv` (defaults: the issue's calibration run on 2 CPUs).

    Parameters
    ----------
    env : EnvConfig or dict
        The environment (default :class:`EnvConfig`: GLFT parameters, objective B, dt = 1, rewards / 10).
    iterations : int
        ``algo.train()`` calls.
    seed : int
        RLlib's seed (``debugging(seed=...)``): network initialisation and env seeds.
    hidden : tuple of int
        Hidden layer sizes of the policy (and of the separate value) network, default (64, 64).
    activation : {"tanh", "relu"}
        Hidden-layer activation.
    num_env_runners : int
        Remote env runners (0: sample in the driver; more do not help on 2 CPUs).
    num_envs_per_env_runner : int
        Sub-envs of each runner's native vector env, default 256.
    rollout_fragment_length : int
        Steps per sub-env per sample; the train batch is ``max(1, runners) x envs x fragment``.
    minibatch_size, num_epochs, lr : int, int, float
        SGD settings (default 4096, 10, 3e-4).
    gamma, lambda_ : float
        Discount (default 1: objective B is undiscounted; time is observed) and GAE lambda (0.95).
    vf_clip_param : float
        Clip of the value loss (RLlib default 10 is below the squared error of returns ~100 at the
        default reward scale and stalls the critic; default 1e4).
    entropy_coeff : float
        Entropy bonus (default 0).
    """

    env: EnvConfig = field(default_factory=EnvConfig)
    iterations: int = 10
    seed: int = 0
    hidden: tuple[int, ...] = (64, 64)
    activation: str = "tanh"
    num_env_runners: int = 0
    num_envs_per_env_runner: int = 256
    rollout_fragment_length: int = 128
    minibatch_size: int = 4096
    num_epochs: int = 10
    lr: float = 3e-4
    gamma: float = 1.0
    lambda_: float = 0.95
    vf_clip_param: float = 1e4
    entropy_coeff: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.env, Mapping):
            object.__setattr__(self, "env", EnvConfig.from_dict(self.env))
        if not isinstance(self.env, EnvConfig):
            raise CheckError("PPOTrainConfig.env", self.env, "an EnvConfig or a dict of its fields")
        for name, lo in (("iterations", 1), ("seed", 0), ("num_env_runners", 0), ("num_envs_per_env_runner", 1),
                         ("rollout_fragment_length", 1), ("minibatch_size", 1), ("num_epochs", 1)):
            object.__setattr__(self, name, integer(f"PPOTrainConfig.{name}", getattr(self, name), ge=lo))
        hidden = self.hidden
        if isinstance(hidden, str) or not all(isinstance(h, int) and not isinstance(h, bool) and h >= 1
                                              for h in hidden):
            raise CheckError("PPOTrainConfig.hidden", hidden, "a sequence of integers >= 1")
        object.__setattr__(self, "hidden", tuple(hidden))
        choice("PPOTrainConfig.activation", self.activation, tuple(a for a in ACTIVATIONS if a != "linear"))
        object.__setattr__(self, "lr", real("PPOTrainConfig.lr", self.lr, gt=0))
        object.__setattr__(self, "gamma", real("PPOTrainConfig.gamma", self.gamma, gt=0))
        if self.gamma > 1:
            raise CheckError("PPOTrainConfig.gamma", self.gamma, "a discount in (0, 1]")
        object.__setattr__(self, "lambda_", real("PPOTrainConfig.lambda_", self.lambda_, ge=0))
        object.__setattr__(self, "vf_clip_param", real("PPOTrainConfig.vf_clip_param", self.vf_clip_param, gt=0))
        object.__setattr__(self, "entropy_coeff", real("PPOTrainConfig.entropy_coeff", self.entropy_coeff, ge=0))
        if self.minibatch_size > self.train_batch_size:
            raise CheckError("PPOTrainConfig.minibatch_size", self.minibatch_size,
                             f"at most the train batch (runners x envs x fragment = {self.train_batch_size})")

    @property
    def train_batch_size(self) -> int:
        """Env steps per iteration: ``max(1, num_env_runners) x num_envs_per_env_runner x rollout_fragment_length``."""
        return max(1, self.num_env_runners) * self.num_envs_per_env_runner * self.rollout_fragment_length

    def replace(self, **changes: Any) -> PPOTrainConfig:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["env"], out["hidden"] = self.env.to_dict(), list(self.hidden)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PPOTrainConfig:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"PPOTrainConfig: unknown field(s) {unknown}; expected a subset of {sorted(names)}")
        data = dict(data)
        if isinstance(data.get("hidden"), list):
            data["hidden"] = tuple(data["hidden"])
        return cls(**data)

    def algorithm_config(self) -> Any:
        """The RLlib ``PPOConfig`` of this run (new API stack, native vector env)."""
        import gymnasium as gym
        from ray.rllib.algorithms.ppo import PPOConfig
        from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

        env_id = "mmray/GLFT-v0" if self.env.action_mode == "continuous" else "mmray/GLFT-Discrete-v0"
        return (
            PPOConfig()
            .environment(f"mmray.envs:{env_id}", env_config=self.env.to_dict())
            .env_runners(num_env_runners=self.num_env_runners, num_envs_per_env_runner=self.num_envs_per_env_runner,
                         rollout_fragment_length=self.rollout_fragment_length,
                         gym_env_vectorize_mode=gym.VectorizeMode.VECTOR_ENTRY_POINT)
            .learners(num_learners=0)
            .rl_module(model_config=DefaultModelConfig(fcnet_hiddens=list(self.hidden),
                                                       fcnet_activation=self.activation, head_fcnet_hiddens=[]))
            .training(train_batch_size_per_learner=self.train_batch_size, minibatch_size=self.minibatch_size,
                      num_epochs=self.num_epochs, lr=self.lr, gamma=self.gamma, lambda_=self.lambda_,
                      vf_clip_param=self.vf_clip_param, entropy_coeff=self.entropy_coeff)
            .debugging(log_sys_usage=False, seed=self.seed)
        )


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train` produced.

    Attributes
    ----------
    out : Path
        The run directory: ``rl_config.json``, ``rllib_checkpoint/`` (RLlib's), ``policy/`` (mmray's).
    checkpoint, policy : Path
        The RLlib checkpoint and the exported ``mlp`` policy checkpoint.
    env_steps : int
        Env steps sampled (RLlib's lifetime count).
    wall_s : float
        Seconds from building the algorithm to the end of the export.
    history : list of dict
        Per iteration: ``iteration``, ``env_steps``, ``wall_s``, ``episode_return_mean`` (RLlib's; NaN when
        no episode ended in the iteration: evaluate the exported policy instead).
    """

    out: Path
    checkpoint: Path
    policy: Path
    env_steps: int
    wall_s: float
    history: list[dict[str, float]]


def train(config: PPOTrainConfig, out: str | Path) -> TrainResult:
    """Train PPO for ``config.iterations`` iterations, save the RLlib checkpoint and the exported policy under
    ``out`` (created; must not hold a previous run). Starts a local Ray session if none is running
    (``ray.init(include_dashboard=False)``) and leaves it running."""
    import ray

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out}: exists and is not empty; choose a new directory for the run")
    out.mkdir(parents=True, exist_ok=True)
    (out / RL_CONFIG_FILE).write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False)
    logging.getLogger("ray.rllib").setLevel(logging.ERROR)
    start = time.perf_counter()
    algo = config.algorithm_config().build_algo()
    history: list[dict[str, float]] = []
    try:
        for i in range(config.iterations):
            result = algo.train()
            runners = result.get("env_runners", {})
            history.append({
                "iteration": i + 1,
                "env_steps": float(runners.get("num_env_steps_sampled_lifetime", np.nan)),
                "wall_s": time.perf_counter() - start,
                "episode_return_mean": float(runners.get("episode_return_mean", np.nan)),
            })
        checkpoint = Path(algo.save_to_path(str((out / RLLIB_DIR).resolve())))
    finally:
        algo.stop()
    policy = export_ppo(checkpoint, config, provenance={"env_steps": history[-1]["env_steps"]})
    policy_dir = policy.save(out / POLICY_DIR)
    return TrainResult(out, checkpoint, policy_dir, int(history[-1]["env_steps"]),
                       time.perf_counter() - start, history)


def _load_module(checkpoint: Path) -> Any:
    from ray.rllib.core.rl_module.rl_module import RLModule

    path = checkpoint.joinpath(*MODULE_PATH)
    if not path.is_dir():
        raise ValueError(f"{checkpoint}: not an RLlib algorithm checkpoint (no {'/'.join(MODULE_PATH)})")
    return RLModule.from_checkpoint(str(path))


def load_rllib_module(source: str | Path) -> Any:
    """The RLModule (torch) of an RLlib checkpoint or of a :func:`train` run directory."""
    source = Path(source)
    return _load_module(source / RLLIB_DIR if (source / RL_CONFIG_FILE).is_file() else source)


def module_layers(module: Any, env: EnvConfig) -> list[tuple[np.ndarray, np.ndarray]]:
    """The deterministic actor of a PPO RLModule as ``[(W, b), ...]`` (float64, torch layout): the actor
    encoder's ``Linear`` layers, then the policy head's, keeping only the Gaussian-mean rows of a
    continuous head. Raises ``ValueError`` for a head with hidden layers or an unexpected output size."""
    import re

    state = {k: v.detach().cpu().numpy().astype(float) for k, v in module.state_dict().items()}
    pattern = re.compile(r"^(encoder\.(?:actor_encoder|encoder)\.net|pi\.net)\.mlp\.(\d+)\.(weight|bias)$")
    found: dict[tuple[int, int], dict[str, np.ndarray]] = {}
    for key, value in state.items():
        m = pattern.match(key)
        if m:
            part = 0 if m.group(1).startswith("encoder") else 1
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


def export_ppo(source: str | Path, config: PPOTrainConfig | None = None,
               provenance: dict[str, Any] | None = None) -> MLPPolicy:
    """The deterministic policy of a PPO checkpoint as an :class:`MLPPolicy` (not saved: call ``.save(dir)``).

    ``source`` is a :func:`train` run directory (its ``rl_config.json`` gives ``config``) or an RLlib
    checkpoint directory (then ``config`` is required: the env and the activation)."""
    source = Path(source)
    if (source / RL_CONFIG_FILE).is_file():
        config = config or PPOTrainConfig.from_dict(json.loads((source / RL_CONFIG_FILE).read_text()))
        source = source / RLLIB_DIR
    if config is None:
        raise ValueError(f"{source}: an RLlib checkpoint needs the PPOTrainConfig it was trained with")
    layers = module_layers(_load_module(source), config.env)
    prov = {"algorithm": "PPO (RLlib)", "rllib_checkpoint": str(source), "config": config.to_dict(),
            "seed": config.seed, **(provenance or {})}
    return MLPPolicy.from_layers(config.env, layers, config.activation, prov)
