"""Randomised table policy: at each (time, inventory) a distribution over a few quote pairs.

Constrained MDPs may need randomised policies (Altman 1999, "Constrained Markov Decision
Processes", Thm 3.8: an optimal stationary-Markov policy randomises in at most as many states as
there are constraints). :class:`RandomTablePolicy` stores, for every time row ``j`` and inventory
level ``i``, up to ``K`` (bid, ask) pairs and their probabilities.

Sampling (how backtests use it): at a call ``quotes(t, q, s, rng)`` the row is the last grid time
``<= t`` (the policy is piecewise constant in time; the solvers put their decision times on the
grid), the inventory level is the nearest grid level, and for every path one uniform
``U = rng.random()`` picks the pair ``k`` with ``cumprob[k-1] <= U < cumprob[k]``. In
:mod:`mmray.sim` ``rng`` is the chunk's generator, so the draws are reproducible for a given
seed and chunk size, and each step's draw is independent of everything before it, which is
exactly the randomised Markov policy of the LP. ``rng=None`` is refused: a randomised policy
without a generator would not be reproducible.

Checkpoint arrays (``N`` times, ``n`` inventories, ``K`` pairs): ``times (N,)``, ``q_grid (n,)``,
``prob``, ``bid``, ``ask`` ``(N, n, K)`` floats, ``bid_on``, ``ask_on`` ``(N, n, K)`` bools.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from mmray.params import MarketParams, ProblemParams
from mmray.policy import Savable, check_grids, checked_solved_for, freeze_arrays, nearest_level, params_from_dict
from mmray.registry import register_policy_kind


@register_policy_kind
@dataclass(frozen=True, eq=False)
class RandomTablePolicy(Savable):
    """Randomised quotes tabulated over (time, inventory); see module docstring.

    Attributes
    ----------
    times : ndarray (N,)
        Strictly increasing times; row ``j`` applies on ``[times[j], times[j+1])``.
    q_grid : ndarray (n,)
        Equally spaced inventory levels.
    prob : ndarray (N, n, K)
        Probabilities of the ``K`` candidate pairs (each row sums to 1).
    bid, ask : ndarray (N, n, K)
        Offsets (price units) of each candidate; ignored where the side is off.
    bid_on, ask_on : ndarray (N, n, K) of bool
        Whether the candidate quotes that side.
    solved_for : dict or None
        The discrete problem the candidates were chosen for (see :class:`mmray.policy.TablePolicy`).
    """

    times: np.ndarray
    q_grid: np.ndarray
    prob: np.ndarray
    bid: np.ndarray
    ask: np.ndarray
    bid_on: np.ndarray
    ask_on: np.ndarray
    market: MarketParams | None = None
    problem: ProblemParams | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    solved_for: dict[str, Any] | None = None

    kind: ClassVar[str] = "random_table"
    array_spec: ClassVar[dict[str, tuple[str, tuple[str, ...]]]] = {
        "times": ("f", ("N",)), "q_grid": ("f", ("n",)),
        "prob": ("f", ("N", "n", "K")), "bid": ("f", ("N", "n", "K")), "ask": ("f", ("N", "n", "K")),
        "bid_on": ("b", ("N", "n", "K")), "ask_on": ("b", ("N", "n", "K")),
    }

    def __post_init__(self) -> None:
        object.__setattr__(self, "solved_for", checked_solved_for("RandomTablePolicy", self.solved_for))
        freeze_arrays(self, ("times", "q_grid", "prob", "bid", "ask"), ("bid_on", "ask_on"))
        n_t, n_q = self.times.size, self.q_grid.size
        if self.prob.ndim != 3 or self.prob.shape[:2] != (n_t, n_q) or self.prob.shape[2] < 1:
            raise ValueError(f"RandomTablePolicy.prob has shape {self.prob.shape}, expected ({n_t}, {n_q}, K>=1)")
        for name in ("bid", "ask", "bid_on", "ask_on"):
            if getattr(self, name).shape != self.prob.shape:
                raise ValueError(
                    f"RandomTablePolicy.{name} has shape {getattr(self, name).shape}, expected {self.prob.shape}"
                )
        check_grids("RandomTablePolicy", self.times, self.q_grid,
                    tuple((name, getattr(self, name)) for name in ("times", "q_grid", "prob", "bid", "ask")))
        if np.any(self.prob < 0) or np.max(np.abs(self.prob.sum(axis=2) - 1.0)) > 1e-9:
            raise ValueError("RandomTablePolicy.prob must be >= 0 and sum to 1 over the last axis")
        object.__setattr__(self, "_cum", np.cumsum(self.prob, axis=2))

    @property
    def n_candidates(self) -> int:
        return int(self.prob.shape[2])

    def is_randomised(self, tol: float = 1e-12) -> bool:
        """Whether some state mixes two or more pairs with probability > ``tol``."""
        return bool(np.any(np.count_nonzero(self.prob > tol, axis=2) > 1))

    def time_index(self, t: float | np.ndarray) -> np.ndarray:
        """Row of each time: the last grid time ``<= t`` (within a relative tolerance of 1e-9)."""
        t = np.asarray(t, dtype=float)
        span = float(self.times[-1] - self.times[0]) or 1.0
        i = np.searchsorted(self.times, t + 1e-9 * span, side="right") - 1
        return np.clip(i, 0, self.times.size - 1)

    def q_index(self, q: np.ndarray) -> np.ndarray:
        """Index of the nearest inventory level (clipped to the grid)."""
        return nearest_level(self.q_grid, q)

    def quotes(
        self, t: float | np.ndarray, q: np.ndarray, s: np.ndarray | None = None,
        rng: np.random.Generator | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Sample ``(bid_offset, ask_offset)`` per path (``inf`` = side not quoted)."""
        if rng is None:
            raise ValueError(
                "RandomTablePolicy.quotes needs rng (a numpy Generator): the policy is randomised; "
                "the simulator passes its chunk generator"
            )
        qi = self.q_index(q)
        ti = np.broadcast_to(self.time_index(t), qi.shape)
        u = rng.random(qi.shape)
        cum = self._cum[ti, qi]  # (..., K)
        k = np.minimum(np.sum(cum <= u[..., None], axis=-1), self.n_candidates - 1)
        bid = np.where(self.bid_on[ti, qi, k], self.bid[ti, qi, k], np.inf)
        ask = np.where(self.ask_on[ti, qi, k], self.ask[ti, qi, k], np.inf)
        return bid, ask

    def to_checkpoint(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta = {
            "market": None if self.market is None else self.market.to_dict(),
            "problem": None if self.problem is None else self.problem.to_dict(),
            "params": {"n_candidates": self.n_candidates, "solved_for": self.solved_for},
            "provenance": self.provenance,
        }
        arrays = {
            "times": self.times, "q_grid": self.q_grid, "prob": self.prob, "bid": self.bid, "ask": self.ask,
            "bid_on": self.bid_on, "ask_on": self.ask_on,
        }
        return meta, arrays

    @classmethod
    def from_checkpoint(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> RandomTablePolicy:
        if "solved_for" not in meta["params"]:
            raise KeyError("params.solved_for")
        return cls(
            arrays["times"], arrays["q_grid"], arrays["prob"], arrays["bid"], arrays["ask"],
            arrays["bid_on"], arrays["ask_on"],
            params_from_dict(MarketParams, meta.get("market")), params_from_dict(ProblemParams, meta.get("problem")),
            dict(meta.get("provenance") or {}), meta["params"]["solved_for"],
        )
