"""What an agent of the simulated market sees and does: the env configuration, the observation and
the action mapping, shared by the environments (:mod:`mmray.envs.market`) and the exported policies
(:mod:`mmray.envs.mlp`), so that a trained network is evaluated on exactly the numbers it saw.

* :class:`EnvConfig` - the market, the problem, the step and the agent's interface (typed, validated).
* :class:`ObservationSpec` - ``observe(t, q, features)``: time remaining and inventory scaled to
  ``O(1)``, then the optional simulator features (:data:`mmray.features.SIM_FEATURES`).
* :class:`ActionSpec` - ``offsets(action)``: a point of the action space to bid/ask offsets
  (price units), and ``action_of(bid, ask)``, its inverse up to clipping and rounding.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal

import numpy as np
from gymnasium import spaces

from mmray.checks import CheckError, choice, real
from mmray.features import SIM_FEATURES
from mmray.objectives import REWARD_NOISE
from mmray.params import FILL_MODELS, PRICE_MODELS, MarketParams, ProblemParams, SimConfig
from mmray.sim import StepModel

ActionMode = Literal["continuous", "discrete"]
ACTION_MODES = ("continuous", "discrete")
OFFSET_FEATURES = ("bid_offset_prev", "ask_offset_prev")
"""Features in price units, divided by :attr:`ObservationSpec.offset_scale` in the observation."""


def _default_problem() -> ProblemParams:
    return ProblemParams(objective="B")


@dataclass(frozen=True)
class EnvConfig:
    """The simulated market environment: model, step, and the agent's observation/action/reward.

    Parameters
    ----------
    market : MarketParams or dict
        The market (``sigma``, ``A``, ``k``, tick, ...). Default: GLFT 2013's figure parameters
        (sigma = 0.3, A = 0.9, k = 0.3).
    problem : ProblemParams or dict
        Horizon ``T``, inventory bound ``Q`` (required), risk aversion ``gamma``, terminal penalty.
        ``objective`` must be ``"B"``: the reward is objective B's per-step increment. Default
        ``ProblemParams(objective="B")``: gamma = 0.01, T = 600, Q = 30.
    dt : float
        Time step (time units); must divide ``T``. Default 1 (600 steps per episode).
    fill_model, price_model : str
        As in :class:`mmray.params.SimConfig` (default poisson fills, gaussian mid).
    q0 : float
        Initial inventory (a multiple of the trade size, ``|q0| <= Q``).
    action_mode : {"continuous", "discrete"}
        ``"continuous"``: ``Box(-1, 1, (2,), float32)``, ``a`` mapped linearly to offsets
        ``offset_low + (a + 1) / 2 (offset_high - offset_low)`` (bid, ask); ``"discrete"``:
        ``MultiDiscrete([n, n])``, index ``i`` quotes ``offset_low + i offset_step``,
        ``n = (offset_high - offset_low) / offset_step + 1``.
    offset_low, offset_high : float
        Offset range (price units), default ``[0, 10]`` (the exact policy of the default problem
        quotes within ``[0.49, 6.18]``).
    offset_step : float
        Discrete mode: spacing of the offset grid (price units), default 0.1; must divide the range.
    reward_scale : float
        Rewards are objective B's per-step increments (currency) divided by this (default 10: at the
        default parameters the optimal episode return is about 112 and the per-step rewards are
        ``O(0.1-1)``; RLlib's ``vf_clip_param`` must exceed the squared return error, see docs/rl.md).
    reward : {"realised", "mid_expected", "expected"}
        Which increment of objective B the reward is (:func:`mmray.objectives.step_noise_b`):
        ``"realised"`` (default) the increment as it happened, so an episode's rewards add up to its
        value_B; ``"mid_expected"`` without the mid move's zero-mean part ``q' (dS - mu dt)``;
        ``"expected"`` without the fills' zero-mean part as well (spread income at its conditional
        mean given the quotes). The last two are control variates: every policy's expected return,
        hence the optimum and the optimality figures, is the same as with ``"realised"``, at a fraction
        of the variance (see docs/rl.md).
    reward_offset : float
        Subtracted from every step's reward before scaling (currency per step; default 0). Every
        episode has ``T / dt`` steps, so every policy's return moves by the same ``n_steps x offset``: the
        optimum and the figures are unchanged. With the per-step mean of a reasonable policy (e.g. the best
        constant spread's value over ``n_steps``) the returns-to-go are centred near 0 and the critic fits
        the inventory-dependent part instead of a trend of order the whole value (see docs/rl.md).
    inventory_scale : float or None
        The observation's inventory column is ``q / inventory_scale`` (default ``None``: the bound ``Q``, so
        that it lies in ``[-1, 1]``).
    features : tuple of str
        Extra observations, names from :data:`mmray.features.SIM_FEATURES`, in this order after time
        and inventory: ``mid_return`` (last mid change over ``sigma sqrt(dt)``),
        ``bid_offset_prev``/``ask_offset_prev`` (offsets applied at the previous step, 0 where not
        quoted, divided by ``max(|offset_low|, |offset_high|)``).
    """

    market: MarketParams = field(default_factory=MarketParams)
    problem: ProblemParams = field(default_factory=_default_problem)
    dt: float = 1.0
    fill_model: str = "poisson"
    price_model: str = "gaussian"
    q0: float = 0.0
    action_mode: ActionMode = "continuous"
    offset_low: float = 0.0
    offset_high: float = 10.0
    offset_step: float = 0.1
    reward_scale: float = 10.0
    reward: str = "realised"
    reward_offset: float = 0.0
    inventory_scale: float | None = None
    features: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.market, Mapping):
            object.__setattr__(self, "market", MarketParams.from_dict(dict(self.market)))
        if isinstance(self.problem, Mapping):
            object.__setattr__(self, "problem", ProblemParams.from_dict(dict(self.problem)))
        if not isinstance(self.market, MarketParams):
            raise CheckError("EnvConfig.market", self.market, "a MarketParams or a dict of its fields")
        if not isinstance(self.problem, ProblemParams):
            raise CheckError("EnvConfig.problem", self.problem, "a ProblemParams or a dict of its fields")
        if self.problem.objective != "B":
            raise CheckError("EnvConfig.problem.objective", self.problem.objective,
                             '"B" (the reward is objective B\'s per-step increment; objective A is not implemented)')
        if self.problem.q_max is None:
            raise CheckError("EnvConfig.problem.q_max", None, "an inventory bound (the observation scales q by it)")
        for name in ("dt", "reward_scale", "offset_step"):
            object.__setattr__(self, name, real(f"EnvConfig.{name}", getattr(self, name), gt=0))
        if self.inventory_scale is not None:
            object.__setattr__(self, "inventory_scale", real("EnvConfig.inventory_scale", self.inventory_scale, gt=0))
        for name in ("offset_low", "q0", "reward_offset"):
            object.__setattr__(self, name, real(f"EnvConfig.{name}", getattr(self, name)))
        object.__setattr__(self, "offset_high", real("EnvConfig.offset_high", self.offset_high, gt=self.offset_low))
        choice("EnvConfig.fill_model", self.fill_model, FILL_MODELS)
        choice("EnvConfig.price_model", self.price_model, PRICE_MODELS)
        choice("EnvConfig.action_mode", self.action_mode, ACTION_MODES)
        choice("EnvConfig.reward", self.reward, REWARD_NOISE)
        feats = self.features
        if isinstance(feats, str) or not all(isinstance(f, str) for f in feats):
            raise CheckError("EnvConfig.features", feats, "a sequence of feature names")
        feats = tuple(feats)
        bad = [f for f in feats if f not in SIM_FEATURES]
        if bad or len(set(feats)) != len(feats):
            raise CheckError("EnvConfig.features", list(feats),
                             f"distinct names from {list(SIM_FEATURES)} (the simulator's features)")
        object.__setattr__(self, "features", feats)
        if self.action_mode == "discrete":
            n = (self.offset_high - self.offset_low) / self.offset_step
            if abs(n - round(n)) > 1e-9 * max(1.0, n):
                raise CheckError("EnvConfig.offset_step", self.offset_step,
                                 f"a divisor of offset_high - offset_low = {self.offset_high - self.offset_low:g}")
        self.sim_config().check(self.market, self.problem)  # dt divides T, q0 reachable

    def sim_config(self) -> SimConfig:
        """The simulator settings of one step (``n_paths``/``seed`` unused by the envs)."""
        return SimConfig(dt=self.dt, price_model=self.price_model, fill_model=self.fill_model, q0=self.q0)  # type: ignore[arg-type]

    @property
    def n_steps(self) -> int:
        """Steps per episode, ``T / dt``."""
        return self.sim_config().n_steps(self.problem.T)

    def step_model(self) -> StepModel:
        """The constants of :func:`mmray.sim.market_step` for this env."""
        return StepModel.of(self.market, self.problem, self.sim_config())

    def observation_spec(self) -> ObservationSpec:
        scale = max(abs(self.offset_low), abs(self.offset_high))
        q_scale = float(self.problem.q_max if self.inventory_scale is None else self.inventory_scale)  # type: ignore[arg-type]
        return ObservationSpec(self.problem.T, q_scale, self.features, scale, float(self.problem.q_max))  # type: ignore[arg-type]

    def action_spec(self) -> ActionSpec:
        return ActionSpec(self.action_mode, self.offset_low, self.offset_high, self.offset_step)

    def replace(self, **changes: Any) -> EnvConfig:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (market and problem as dicts, features as a list)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["market"], out["problem"] = asdict(self.market), asdict(self.problem)
        out["features"] = list(self.features)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EnvConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error naming them."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"EnvConfig: unknown field(s) {unknown}; expected a subset of {sorted(names)}")
        data = dict(data)
        if "features" in data and isinstance(data["features"], list):
            data["features"] = tuple(data["features"])
        return cls(**data)


def make_config(config: EnvConfig | Mapping[str, Any] | None = None, **overrides: Any) -> EnvConfig:
    """The config an env constructor was given: ``config`` (an :class:`EnvConfig`, a dict of its fields
    or ``None`` for the defaults) with ``overrides`` (field names; what ``gymnasium.make(id, **kwargs)``
    and RLlib's ``env_config`` pass) applied on top."""
    if config is None:
        config = EnvConfig()
    elif isinstance(config, Mapping):
        config = EnvConfig.from_dict(config)
    elif not isinstance(config, EnvConfig):
        raise CheckError("config", config, "an EnvConfig, a dict of its fields or None")
    if overrides:
        merged = {**config.to_dict(), **overrides}
        config = EnvConfig.from_dict(merged)
    return config


@dataclass(frozen=True)
class ObservationSpec:
    """The observation of a path at time ``t`` with inventory ``q`` (float32, one row per path).

    ==================  ============================================  ================
    column              value                                         range
    ==================  ============================================  ================
    ``time_remaining``  ``(T - t) / T``                               ``[0, 1]``
    ``inventory``       ``q / q_scale`` (``Q`` by default)            ``[-Q, Q] / q_scale``
    ``mid_return``      as given (already over ``sigma sqrt(dt)``)    ``R`` (~N(0, 1))
    ``*_offset_prev``   offset (price units) / ``offset_scale``       ``R`` (~[0, 1])
    ==================  ============================================  ================

    Feature columns follow ``features``' order.
    """

    horizon: float
    q_scale: float
    features: tuple[str, ...] = ()
    offset_scale: float = 10.0
    q_max: float | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return ("time_remaining", "inventory", *self.features)

    @property
    def size(self) -> int:
        return 2 + len(self.features)

    def space(self) -> spaces.Box:
        """The single-path observation space."""
        low = np.full(self.size, -np.inf, dtype=np.float32)
        high = np.full(self.size, np.inf, dtype=np.float32)
        bound = 1.0 if self.q_max is None else self.q_max / self.q_scale
        low[:2], high[:2] = (0.0, -bound), (1.0, bound)
        return spaces.Box(low, high, dtype=np.float32)

    def observe(self, t: float | np.ndarray, q: np.ndarray, features: Mapping[str, np.ndarray] | None = None,
                ) -> np.ndarray:
        """Observations of paths with inventories ``q`` (shape ``(n,)``) at time ``t`` (time units, a
        scalar or ``(n,)``): float32 array ``(n, size)``. ``features`` maps each name of
        :attr:`features` to an ``(n,)`` array in the simulator's units."""
        q = np.asarray(q, dtype=float)
        out = np.empty((*q.shape, self.size), dtype=np.float32)
        out[..., 0] = (self.horizon - np.asarray(t, dtype=float)) / self.horizon
        out[..., 1] = q / self.q_scale
        for i, name in enumerate(self.features, start=2):
            if features is None or name not in features:
                raise ValueError(f"observation needs feature {name!r}; given {sorted(features or {})}")
            value = np.asarray(features[name], dtype=float)
            out[..., i] = value / self.offset_scale if name in OFFSET_FEATURES else value
        return out


@dataclass(frozen=True)
class ActionSpec:
    """From a point of the action space to the (bid, ask) offsets quoted, in price units.

    * ``"continuous"``: ``a`` in ``[-1, 1]^2`` (clipped), ``delta = low + (a + 1) (high - low) / 2``.
    * ``"discrete"``: ``i`` in ``{0..n-1}^2``, ``delta = low + i step``.

    The first component is the bid, the second the ask. The simulator then applies the inventory
    bound (no bid at ``q = Q``, no ask at ``q = -Q``) and the tick (:func:`mmray.sim.market_step`).
    """

    mode: ActionMode
    low: float
    high: float
    step: float

    @property
    def levels(self) -> int:
        """Discrete mode: offsets per side."""
        return round((self.high - self.low) / self.step) + 1

    def space(self) -> spaces.Box | spaces.MultiDiscrete:
        """The single-path action space."""
        if self.mode == "continuous":
            return spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        return spaces.MultiDiscrete([self.levels, self.levels])

    def offsets(self, action: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Bid and ask offsets (price units, float64, shape ``action.shape[:-1]``) of ``action`` (``(..., 2)``)."""
        a = np.asarray(action)
        if a.shape[-1:] != (2,):
            raise ValueError(f"an action has 2 components (bid, ask); got shape {a.shape}")
        if self.mode == "continuous":
            x = np.clip(a.astype(float), -1.0, 1.0)
            d = self.low + (x + 1.0) * (0.5 * (self.high - self.low))
        else:
            d = self.low + np.clip(a, 0, self.levels - 1).astype(float) * self.step
        return d[..., 0], d[..., 1]

    def action_of(self, bid: np.ndarray, ask: np.ndarray) -> np.ndarray:
        """The action (``(..., 2)``, the space's dtype) whose offsets are nearest ``bid``, ``ask``: clipped
        to the range (``inf``, a side not quoted, becomes the widest offset); continuous actions are float32,
        so ``offsets(action_of(d))`` equals ``d`` to float32 precision times the range (about 1e-6 for
        ``[0, 10]``); discrete ones round to the nearest grid offset."""
        d = np.stack(np.broadcast_arrays(np.asarray(bid, dtype=float), np.asarray(ask, dtype=float)), axis=-1)
        d = np.clip(d, self.low, self.high)
        if self.mode == "continuous":
            return ((d - self.low) / (0.5 * (self.high - self.low)) - 1.0).astype(np.float32)
        return np.clip(np.rint((d - self.low) / self.step), 0, self.levels - 1).astype(np.int64)
