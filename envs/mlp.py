"""The ``mlp`` policy kind: a trained network's deterministic action, evaluated in numpy.

An :class:`MLPPolicy` holds a fully connected network (hidden layers with one activation, a linear
output layer) and the :class:`mmray.envs.config.EnvConfig` it was trained in. ``quotes(t, q, s,
features=...)`` builds the env's observation with the env's own function
(:meth:`mmray.envs.config.ObservationSpec.observe`), evaluates the network, takes the deterministic
action and maps it to offsets with the env's own function
(:meth:`mmray.envs.config.ActionSpec.offsets`). A backtest of the policy is therefore an episode of
the env under the deterministic agent (tested bit for bit), with neither torch nor RLlib installed.

Outputs and deterministic action:

* continuous env: 2 outputs, the mean of the Gaussian action distribution (bid, ask); the action is
  the mean clipped to the action space ``[-1, 1]^2`` (RLlib's ``normalize_actions``/unsquash, which on
  a ``[-1, 1]`` box is the identity followed by clipping), as float32 (the space's dtype). With
  ``squash=True`` (SAC's squashed Gaussian) the action is ``tanh(mean)``, the squashed distribution's
  mean mapped to its bounds ``[-1, 1]`` (RLlib's ``to_deterministic()`` returns the mean *before* the
  tanh, ray issue 51544), then the same unsquash;
* discrete env: ``2 n`` outputs, the logits of the bid index then of the ask index; the action is the
  argmax of each (the mode of the categorical distribution).

Checkpoint (``kind = "mlp"``): ``params`` holds ``env`` (the env config), ``layer_sizes``
(``[d_in, h_1, ..., d_out]``), ``activation``, ``squash`` (absent in older checkpoints: False), and,
for the reader, ``observation`` (column names and scales) and ``action`` (mapping and output) derived
from ``env`` and ``squash`` (checked on load); ``arrays.npz``
holds one float array ``weights``: for each layer ``W`` (``(out, in)``, row-major, torch's
``Linear.weight`` layout) then ``b`` (``(out,)``), so a layer computes ``x W^T + b``.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from mmray.checks import CheckError, choice, flag
from mmray.params import MarketParams, ProblemParams
from mmray.policy import Savable
from mmray.registry import register_policy_kind

from .config import EnvConfig

ACTIVATIONS = ("tanh", "relu", "linear")
_ACT = {"tanh": np.tanh, "relu": lambda x: np.maximum(x, 0.0), "linear": lambda x: x}


def _interface(env: EnvConfig, squash: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    """The observation and action descriptions written to policy.json (derived from ``env`` and the
    continuous output's ``squash``)."""
    obs, act = env.observation_spec(), env.action_spec()
    observation = {"names": list(obs.names), "horizon": obs.horizon, "q_scale": obs.q_scale,
                   "offset_scale": obs.offset_scale}
    output = ("squashed_gaussian_mean" if squash else "gaussian_mean") if act.mode == "continuous" else "logits_argmax"
    action = {"mode": act.mode, "low": act.low, "high": act.high, "output": output}
    if act.mode == "discrete":
        action |= {"step": act.step, "levels": act.levels}
    return observation, action


def output_size(env: EnvConfig) -> int:
    """Network outputs the policy needs in ``env``: 2 (continuous) or ``2 levels`` (discrete)."""
    return 2 if env.action_mode == "continuous" else 2 * env.action_spec().levels


@register_policy_kind
@dataclass(frozen=True, eq=False)
class MLPPolicy(Savable):
    """A multilayer perceptron's deterministic action in the env it was trained in.

    Attributes
    ----------
    env : EnvConfig
        The environment (observation, action mapping, market and problem).
    layer_sizes : tuple of int
        ``(d_in, h_1, ..., d_out)``: ``d_in`` the observation size, ``d_out`` :func:`output_size`.
    weights : ndarray
        All parameters, flat (see the module docstring for the layout).
    activation : {"tanh", "relu", "linear"}
        Of the hidden layers (the output layer is linear).
    provenance : dict
        Algorithm, config, seed, metrics... (saved in the checkpoint).
    squash : bool
        Continuous actions only: the outputs are the mean of a tanh-squashed Gaussian (SAC); the
        deterministic action is ``tanh(mean)`` instead of ``clip(mean, -1, 1)``.
    """

    env: EnvConfig
    layer_sizes: tuple[int, ...]
    weights: np.ndarray
    activation: str = "tanh"
    provenance: dict[str, Any] = field(default_factory=dict)
    squash: bool = False

    kind: ClassVar[str] = "mlp"
    array_spec: ClassVar[dict[str, tuple[str, tuple[str, ...]]]] = {"weights": ("f", ("P",))}

    def __post_init__(self) -> None:
        if isinstance(self.env, Mapping):
            object.__setattr__(self, "env", EnvConfig.from_dict(self.env))
        if not isinstance(self.env, EnvConfig):
            raise CheckError("MLPPolicy.env", self.env, "an EnvConfig")
        choice("MLPPolicy.activation", self.activation, ACTIVATIONS)
        sizes = self.layer_sizes
        ok = isinstance(sizes, Sequence) and len(sizes) >= 2
        ok = ok and all(isinstance(n, int | np.integer) and not isinstance(n, bool) and n >= 1 for n in sizes)
        if not ok:
            raise CheckError("MLPPolicy.layer_sizes", sizes, "a sequence of at least 2 integers >= 1")
        sizes = tuple(int(n) for n in sizes)
        object.__setattr__(self, "layer_sizes", sizes)
        d_in, d_out = self.env.observation_spec().size, output_size(self.env)
        if sizes[0] != d_in or sizes[-1] != d_out:
            raise ValueError(f"MLPPolicy.layer_sizes {list(sizes)} must start with the observation size {d_in} "
                             f"(time, inventory + features {list(self.env.features)}) and end with {d_out} outputs "
                             f"({self.env.action_mode} actions)")
        w = np.array(self.weights, dtype=float).ravel()
        n_params = sum(o * i + o for i, o in itertools.pairwise(sizes))
        if w.size != n_params:
            raise ValueError(f"MLPPolicy.weights has {w.size} values; layer_sizes {list(sizes)} need {n_params}")
        if not np.all(np.isfinite(w)):
            raise ValueError("MLPPolicy.weights has non-finite values")
        w.setflags(write=False)
        object.__setattr__(self, "weights", w)
        layers, k = [], 0
        for i, o in itertools.pairwise(sizes):
            layers.append((w[k:k + o * i].reshape(o, i), w[k + o * i:k + o * i + o]))
            k += o * i + o
        object.__setattr__(self, "_layers", tuple(layers))
        object.__setattr__(self, "_obs_spec", self.env.observation_spec())
        object.__setattr__(self, "_act_spec", self.env.action_spec())
        if not isinstance(self.provenance, dict):
            raise CheckError("MLPPolicy.provenance", self.provenance, "a dict")
        object.__setattr__(self, "squash", flag("MLPPolicy.squash", self.squash))
        if self.squash and self.env.action_mode != "continuous":
            raise CheckError("MLPPolicy.squash", True, "False for discrete actions (logits have no squashing)")

    @classmethod
    def from_layers(cls, env: EnvConfig, layers: Sequence[tuple[np.ndarray, np.ndarray]], activation: str = "tanh",
                    provenance: dict[str, Any] | None = None, squash: bool = False) -> MLPPolicy:
        """Build from ``[(W, b), ...]`` with ``W`` of shape ``(out, in)`` (torch ``Linear`` layout)."""
        sizes = [int(np.shape(layers[0][0])[1]), *(int(np.shape(w)[0]) for w, _ in layers)]
        flat = np.concatenate([np.concatenate([np.ravel(w), np.ravel(b)]) for w, b in layers])
        return cls(env, tuple(sizes), flat, activation, dict(provenance or {}), squash)

    @property
    def market(self) -> MarketParams:
        return self.env.market

    @property
    def problem(self) -> ProblemParams:
        return self.env.problem

    @property
    def features(self) -> tuple[str, ...]:
        """The simulator features the observation includes (:data:`mmray.features.SIM_FEATURES`)."""
        return self.env.features

    def forward(self, obs: np.ndarray) -> np.ndarray:
        """Network outputs (float64, ``(n, d_out)``) for observations ``(n, d_in)``."""
        x = np.asarray(obs, dtype=float)
        act = _ACT[self.activation]
        *hidden, (w_out, b_out) = self._layers
        for w, b in hidden:
            x = act(x @ w.T + b)
        return x @ w_out.T + b_out

    def act(self, obs: np.ndarray) -> np.ndarray:
        """The deterministic actions (points of the env's action space, ``(n, 2)``) for ``obs``."""
        out = self.forward(obs)
        if self.env.action_mode == "continuous":
            return np.clip(np.tanh(out) if self.squash else out, -1.0, 1.0).astype(np.float32)
        n = self._act_spec.levels
        return np.stack([out[:, :n].argmax(axis=1), out[:, n:].argmax(axis=1)], axis=1).astype(np.int64)

    def quotes(
        self, t: float | np.ndarray, q: np.ndarray, s: np.ndarray | None = None,
        rng: np.random.Generator | None = None, features: Mapping[str, np.ndarray] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Offsets of the deterministic action in the observation the env would give at ``(t, q)``
        (plus ``features``, the simulator's, for a policy whose env observes them)."""
        q = np.atleast_1d(np.asarray(q, dtype=float))
        obs = self._obs_spec.observe(t, q, features)
        return self._act_spec.offsets(self.act(obs))

    def check_env(self, env: EnvConfig) -> None:
        """Raise ``ValueError`` unless an agent trained in this policy's env sees and acts the same way in
        ``env`` (observation columns and scales, action mapping)."""
        mine, theirs = _interface(self.env), _interface(env)  # the env's side of the interface only
        for part, a, b in zip(("observation", "action"), mine, theirs, strict=True):
            if a != b:
                diff = {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}
                raise ValueError(f"the mlp policy's {part} differs from the env's: "
                                 f"{ {k: f'policy {x!r}, env {y!r}' for k, (x, y) in diff.items()} }")

    def to_checkpoint(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        observation, action = _interface(self.env, self.squash)
        meta = {
            "market": self.market.to_dict(),
            "problem": self.problem.to_dict(),
            "params": {"env": self.env.to_dict(), "layer_sizes": list(self.layer_sizes),
                       "activation": self.activation, "squash": self.squash, "observation": observation,
                       "action": action},
            "provenance": self.provenance,
        }
        return meta, {"weights": np.asarray(self.weights)}

    @classmethod
    def from_checkpoint(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> MLPPolicy:
        params = meta["params"]
        for key in ("env", "layer_sizes", "activation", "observation", "action"):
            if key not in params:
                raise KeyError(f"params.{key}")
        policy = cls(EnvConfig.from_dict(params["env"]), tuple(params["layer_sizes"]), arrays["weights"],
                     params["activation"], dict(meta.get("provenance") or {}), params.get("squash", False))
        observation, action = _interface(policy.env, policy.squash)
        if params["observation"] != observation or params["action"] != action:
            raise ValueError("params.observation/params.action do not match params.env "
                             f"(expected {observation} and {action})")
        if meta.get("market") != policy.market.to_dict() or meta.get("problem") != policy.problem.to_dict():
            raise ValueError("market/problem do not match params.env's")
        return policy
