"""Quoting policies: one protocol, table and closed-form implementations.

A policy is anything with ``quotes(t, q, s, rng=None) -> (bid_offset, ask_offset)``,
vectorised over numpy arrays of paths: ``t`` is a scalar (all paths at the same time) or an
array broadcastable with ``q``; ``q`` the inventories; ``s`` the mid prices. Offsets are
distances from the mid in price units (bid = ``s - bid_offset``, ask = ``s + ask_offset``);
``np.inf`` means "do not quote that side". Randomised policies draw from ``rng``.

Two optional attributes extend the contract (read with :func:`policy_features` and
:func:`quotes_on_tick_grid`, so a policy that lacks them has the defaults):

* ``features: tuple[str, ...]`` (default ``()``): the market features (names from
  :data:`mmray.features.FEATURES`) the policy needs beyond ``(t, q, s)``, e.g. an RL policy
  trained on book data. A driver (simulator, replay engine, environment) checks up front that it
  can provide them (:func:`mmray.features.check_features`) and then calls
  ``quotes(t, q, s, rng, features=mapping)`` with one array per path for each name; a policy
  without features is called with four arguments. :func:`ask_quotes` is that one call.
* ``solved_for: dict | None`` (default ``None``): the discrete-time problem the policy's offsets
  were chosen for (``dt``, fill and price models, intensity, tick grid). Its offsets are then
  already on that tick grid around a continuous mid, and the simulator does not round them
  to the market's tick a second time.

Kinds shipped here:

* :class:`TablePolicy` - offsets on a (time x inventory) grid from a solver, linear
  interpolation in time (continuous-time solvers) or the row of the last grid time
  (``interpolation="previous"``: tick-grid solvers, whose offsets must stay on the tick grid),
  exact lookup in inventory (nearest level, clipped to the grid).
* :class:`ClosedFormPolicy` - ``as`` (AS 2008 inventory strategy), ``symmetric`` (AS 2008
  symmetric strategy), ``constant`` (fixed half-spread), ``inventory`` (linear skew, by
  default the Guéant 2017 asymptotic closed form).

Every kind serialises to plain JSON metadata plus float/bool arrays
(:mod:`mmray.checkpoint`), so checkpoints load without pickle.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from mmray import model
from mmray.checks import choice, real
from mmray.features import policy_features
from mmray.params import MarketParams, ProblemParams
from mmray.registry import register_policy_kind


@runtime_checkable
class Policy(Protocol):
    """What the simulator, replay and environments need from a policy."""

    kind: ClassVar[str]

    def quotes(
        self, t: float | np.ndarray, q: np.ndarray, s: np.ndarray, rng: np.random.Generator | None = None
    ) -> tuple[np.ndarray, np.ndarray]: ...

    def to_checkpoint(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]: ...


def quotes_on_tick_grid(policy: object) -> bool:
    """Whether ``policy``'s offsets are already on the tick grid of the discrete problem it was solved
    for (its ``solved_for``), so that the simulator must not round its prices again."""
    return getattr(policy, "solved_for", None) is not None


def ask_quotes(
    policy: Policy, t: float | np.ndarray, q: np.ndarray, s: np.ndarray, rng: np.random.Generator | None,
    features: Mapping[str, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The one way every driver asks a policy for quotes: with ``features`` (only the names the
    policy declares) when it declares any, else with ``(t, q, s, rng)``."""
    names = policy_features(policy)
    if not names:
        return policy.quotes(t, q, s, rng)
    if features is None:
        raise ValueError(f"policy of kind {type(policy).kind!r} needs features {list(names)}; none were given")
    return policy.quotes(t, q, s, rng, features={n: features[n] for n in names})


class Savable:
    """Mixin: ``policy.save(directory)`` writes a checkpoint (see :func:`mmray.checkpoint.save_policy`)."""

    def save(self, directory: str | os.PathLike[str], provenance: dict[str, Any] | None = None) -> Path:
        from mmray.checkpoint import save_policy

        return save_policy(self, directory, provenance)  # type: ignore[arg-type]


def freeze_arrays(obj: object, floats: tuple[str, ...], bools: tuple[str, ...] = ()) -> None:
    """Turn the named fields of a frozen dataclass into read-only contiguous float / bool arrays."""
    for names, dtype in ((floats, float), (bools, bool)):
        for name in names:
            arr = np.ascontiguousarray(getattr(obj, name), dtype=dtype)
            arr.setflags(write=False)
            object.__setattr__(obj, name, arr)


def check_grids(owner: str, times: np.ndarray, q_grid: np.ndarray, finite: tuple[tuple[str, np.ndarray], ...]) -> None:
    """Shared checks of table-like policies: non-empty 1-d grids, finite arrays, strictly increasing
    times, equally spaced increasing inventories; errors name ``owner.field``."""
    if times.ndim != 1 or q_grid.ndim != 1 or times.size < 1 or q_grid.size < 1:
        raise ValueError(f"{owner}: times and q_grid must be non-empty 1-d arrays")
    for name, arr in finite:
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{owner}.{name} has non-finite values")
    if times.size > 1 and np.any(np.diff(times) <= 0):
        raise ValueError(f"{owner}.times must be strictly increasing")
    if q_grid.size > 1:
        steps = np.diff(q_grid)
        if np.any(steps <= 0) or np.ptp(steps) > 1e-9 * max(1.0, steps[0]):
            raise ValueError(f"{owner}.q_grid must be equally spaced and increasing")


def _as_dict(params: MarketParams | ProblemParams | None) -> dict[str, Any] | None:
    return None if params is None else params.to_dict()


INTERPOLATIONS = ("linear", "previous")


@register_policy_kind
@dataclass(frozen=True, eq=False)
class TablePolicy(Savable):
    """Offsets tabulated over a time grid and an inventory grid.

    Attributes
    ----------
    times : ndarray (N,)
        Strictly increasing times.
    q_grid : ndarray (n,)
        Equally spaced inventory levels.
    bid, ask : ndarray (N, n)
        Finite offsets (price units).
    bid_on, ask_on : ndarray (N, n) of bool
        Whether that side is quoted; ``False`` gives ``inf`` from :meth:`quotes`.
    interpolation : {"linear", "previous"}
        In time: ``"linear"`` between grid times (the quoting mask of the nearest one);
        ``"previous"``: row ``j`` holds on ``[times[j], times[j+1])`` (decision times of a
        discrete-time problem; offsets stay exactly as tabulated, e.g. on a tick grid).
    solved_for : dict or None
        The discrete-time problem the offsets were chosen for (``dt``, ``fill_model``,
        ``price_model``, ``intensity``, ``tick``, ...; see :func:`quotes_on_tick_grid`), ``None``
        for a continuous-time solution.
    """

    times: np.ndarray
    q_grid: np.ndarray
    bid: np.ndarray
    ask: np.ndarray
    bid_on: np.ndarray
    ask_on: np.ndarray
    market: MarketParams | None = None
    problem: ProblemParams | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    interpolation: str = "linear"
    solved_for: dict[str, Any] | None = None

    kind: ClassVar[str] = "table"

    def __post_init__(self) -> None:
        choice("TablePolicy.interpolation", self.interpolation, INTERPOLATIONS)
        object.__setattr__(self, "solved_for", checked_solved_for("TablePolicy", self.solved_for))
        freeze_arrays(self, ("times", "q_grid", "bid", "ask"), ("bid_on", "ask_on"))
        n_t, n_q = self.times.size, self.q_grid.size
        for name in ("bid", "ask", "bid_on", "ask_on"):
            if getattr(self, name).shape != (n_t, n_q):
                raise ValueError(
                    f"TablePolicy.{name} has shape {getattr(self, name).shape}, expected {(n_t, n_q)}"
                )
        check_grids("TablePolicy", self.times, self.q_grid,
                    tuple((name, getattr(self, name)) for name in ("times", "q_grid", "bid", "ask")))

    @classmethod
    def from_offsets(
        cls,
        times: np.ndarray,
        q_grid: np.ndarray,
        bid: np.ndarray,
        ask: np.ndarray,
        market: MarketParams | None = None,
        problem: ProblemParams | None = None,
        provenance: dict[str, Any] | None = None,
        interpolation: str = "linear",
        solved_for: dict[str, Any] | None = None,
    ) -> TablePolicy:
        """Build from offsets where NaN or inf marks a side that is not quoted."""
        bid = np.asarray(bid, dtype=float)
        ask = np.asarray(ask, dtype=float)
        bid_on, ask_on = np.isfinite(bid), np.isfinite(ask)
        return cls(
            times, q_grid, np.where(bid_on, bid, 0.0), np.where(ask_on, ask, 0.0),
            bid_on, ask_on, market, problem, dict(provenance or {}), interpolation, solved_for,
        )

    @property
    def q_step(self) -> float:
        return float(self.q_grid[1] - self.q_grid[0]) if self.q_grid.size > 1 else 1.0

    def q_index(self, q: np.ndarray) -> np.ndarray:
        """Index of the nearest inventory level (clipped to the grid)."""
        return nearest_level(self.q_grid, q)

    def _time_weights(self, t: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        t = np.asarray(t, dtype=float)
        if self.times.size == 1:
            zero = np.zeros(t.shape, dtype=np.intp)
            return zero, np.zeros(t.shape)
        if self.interpolation == "previous":  # the last grid time <= t (relative tolerance 1e-9)
            span = float(self.times[-1] - self.times[0])
            i = np.searchsorted(self.times, t + 1e-9 * span, side="right") - 1
            return np.clip(i, 0, self.times.size - 1), np.zeros(t.shape)
        i = np.clip(np.searchsorted(self.times, t, side="right") - 1, 0, self.times.size - 2)
        w = (t - self.times[i]) / (self.times[i + 1] - self.times[i])
        return i, np.clip(w, 0.0, 1.0)

    def row(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Offsets over the whole inventory grid at one time (inf where not quoted)."""
        bid, ask = self.rows(np.array([t], dtype=float))
        return bid[0], ask[0]

    def rows(self, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Offsets over the inventory grid at many times: two ``(len(times), n)`` arrays, inf where
        not quoted; linear interpolation in time, the quoting mask of the nearest grid time."""
        i, w = self._time_weights(np.asarray(times, dtype=float))
        j = np.minimum(i + 1, self.times.size - 1)
        near = np.where(w < 0.5, i, j)
        w = w[:, None]
        bid = (1.0 - w) * self.bid[i] + w * self.bid[j]
        ask = (1.0 - w) * self.ask[i] + w * self.ask[j]
        return np.where(self.bid_on[near], bid, np.inf), np.where(self.ask_on[near], ask, np.inf)

    def quotes(
        self, t: float | np.ndarray, q: np.ndarray, s: np.ndarray | None = None,
        rng: np.random.Generator | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        idx = self.q_index(q)
        if np.ndim(t) == 0:
            bid_row, ask_row = self.row(float(t))
            return bid_row[idx], ask_row[idx]
        i, w = self._time_weights(t)
        i, w = np.broadcast_arrays(i, w, idx)[:2]
        j = np.minimum(i + 1, self.times.size - 1)
        near = np.where(w < 0.5, i, j)
        bid = (1.0 - w) * self.bid[i, idx] + w * self.bid[j, idx]
        ask = (1.0 - w) * self.ask[i, idx] + w * self.ask[j, idx]
        return (np.where(self.bid_on[near, idx], bid, np.inf), np.where(self.ask_on[near, idx], ask, np.inf))

    def to_checkpoint(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta = {
            "market": _as_dict(self.market),
            "problem": _as_dict(self.problem),
            "params": {"interpolation": self.interpolation, "solved_for": self.solved_for},
            "provenance": self.provenance,
        }
        arrays = {
            "times": self.times, "q_grid": self.q_grid, "bid": self.bid, "ask": self.ask,
            "bid_on": self.bid_on, "ask_on": self.ask_on,
        }
        return meta, arrays

    @classmethod
    def from_checkpoint(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> TablePolicy:
        for key in ("interpolation", "solved_for"):
            if key not in meta["params"]:
                raise KeyError(f"params.{key}")
        return cls(
            arrays["times"], arrays["q_grid"], arrays["bid"], arrays["ask"],
            arrays["bid_on"], arrays["ask_on"],
            params_from_dict(MarketParams, meta.get("market")), params_from_dict(ProblemParams, meta.get("problem")),
            dict(meta.get("provenance") or {}), meta["params"]["interpolation"], meta["params"]["solved_for"],
        )

    # checkpoint array contract: name -> (dtype kind, shape in terms of N=len(times), n=len(q_grid))
    array_spec: ClassVar[dict[str, tuple[str, tuple[str, ...]]]] = {
        "times": ("f", ("N",)), "q_grid": ("f", ("n",)),
        "bid": ("f", ("N", "n")), "ask": ("f", ("N", "n")),
        "bid_on": ("b", ("N", "n")), "ask_on": ("b", ("N", "n")),
    }


def checked_solved_for(owner: str, value: object) -> dict[str, Any] | None:
    """``solved_for`` of a table-like policy: ``None`` or a dict (a copy)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError(f"{owner}.solved_for must be a dict or None, got {value!r}")
    return dict(value)


def discrete_problem(policy: object) -> dict[str, Any] | None:
    """The discrete problem (``dt``, fill model, tick grid...) ``policy`` was solved on (its
    ``solved_for``); ``None`` for a continuous-time or closed-form policy."""
    return getattr(policy, "solved_for", None)


def simulation_market(policy: object, market: MarketParams) -> MarketParams:
    """The market ``policy`` is simulated in: tick 0 where its offsets are already on the tick grid of
    the discrete problem it was solved for (:func:`quotes_on_tick_grid`), else ``market``. The
    simulator and :func:`mmray.backtest` apply this themselves."""
    if market.tick > 0 and quotes_on_tick_grid(policy):
        return market.replace(tick=0.0)
    return market


def params_from_dict(cls: type, data: dict[str, Any] | None) -> Any:
    """``cls.from_dict(data)`` (a checkpoint's market or problem), or ``None`` where none was saved."""
    return None if data is None else cls.from_dict(data)


def nearest_level(q_grid: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Index of the nearest level of the evenly spaced ``q_grid`` for each ``q`` (clipped to the grid)."""
    step = float(q_grid[1] - q_grid[0]) if q_grid.size > 1 else 1.0
    idx = np.rint((np.asarray(q, dtype=float) - q_grid[0]) / step)
    return np.clip(idx, 0, q_grid.size - 1).astype(np.intp)


CLOSED_FORMS = ("as", "symmetric", "constant", "inventory")


@register_policy_kind
@dataclass(frozen=True, eq=False)
class ClosedFormPolicy(Savable):
    """A strategy given by a formula of ``(t, q)``.

    ``name``:

    * ``"as"`` - AS 2008 inventory strategy: reservation price ``s - q gamma sigma^2 (T-t)``,
      spread ``gamma sigma^2 (T-t) + (2/gamma) ln(1 + gamma/k)``.
    * ``"symmetric"`` - AS 2008 symmetric strategy: around the mid, half of the AS spread's
      time average on each side.
    * ``"constant"`` - ``half_spread`` on each side (default ``dtilde``, the myopic optimum).
    * ``"inventory"`` - linear skew ``delta_b = h + c q``, ``delta_a = h - c q`` with defaults
      from the Guéant 2017 asymptotic closed form: ``h = dtilde + Delta C / 2``, ``c = C``.
    """

    name: str
    market: MarketParams
    problem: ProblemParams
    half_spread: float | None = None
    skew: float | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    kind: ClassVar[str] = "closed_form"
    array_spec: ClassVar[dict[str, tuple[str, tuple[str, ...]]]] = {}

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or self.name not in CLOSED_FORMS:
            raise ValueError(f"unknown closed-form strategy {self.name!r}; choose from {CLOSED_FORMS}")
        if self.half_spread is not None:
            object.__setattr__(self, "half_spread", real("ClosedFormPolicy.half_spread", self.half_spread, gt=0))
        if self.skew is not None:
            object.__setattr__(self, "skew", real("ClosedFormPolicy.skew", self.skew))
        if self.name in ("constant", "inventory"):
            h = self.half_spread
            if h is None:
                h = model.delta_tilde(self.market, self.problem)
                if self.name == "inventory":
                    h += 0.5 * self.market.trade_size * model.asymptotic_slope(self.market, self.problem)
            object.__setattr__(self, "half_spread", float(h))
        if self.name == "inventory" and self.skew is None:
            object.__setattr__(self, "skew", model.asymptotic_slope(self.market, self.problem))
        for name in ("half_spread", "skew"):
            value = getattr(self, name)
            if value is not None and not np.isfinite(value):
                raise ValueError(f"ClosedFormPolicy.{name} must be finite, got {value!r}")
        if not isinstance(self.provenance, dict):
            raise ValueError(f"ClosedFormPolicy.provenance must be a dict, got {self.provenance!r}")

    def quotes(
        self, t: float | np.ndarray, q: np.ndarray, s: np.ndarray | None = None,
        rng: np.random.Generator | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        q = np.asarray(q, dtype=float)
        if self.name == "as":
            return model.as_quotes(t, q, self.market, self.problem)
        if self.name == "symmetric":
            half = 0.5 * model.as_mean_spread(self.market, self.problem)
            out = np.full(q.shape, half)
            return out, out.copy()
        if self.name == "constant":
            out = np.full(q.shape, self.half_spread)
            return out, out.copy()
        return self.half_spread + self.skew * q, self.half_spread - self.skew * q  # inventory

    def to_checkpoint(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta = {
            "market": self.market.to_dict(),
            "problem": self.problem.to_dict(),
            "params": {"name": self.name, "half_spread": self.half_spread, "skew": self.skew},
            "provenance": self.provenance,
        }
        return meta, {}

    @classmethod
    def from_checkpoint(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> ClosedFormPolicy:
        params = meta["params"]
        missing = {"name", "half_spread", "skew"} - set(params)
        if missing:
            raise KeyError(f"params.{sorted(missing)[0]}")
        return cls(
            params["name"], MarketParams.from_dict(meta["market"]),
            ProblemParams.from_dict(meta["problem"]), params["half_spread"], params["skew"],
            dict(meta.get("provenance") or {}),
        )
