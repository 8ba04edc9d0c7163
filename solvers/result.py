"""The one result type every solver returns.

A :class:`Solution` is frozen: the value function and the optimal quotes on a
(time x inventory) grid, the parameters it was solved for, and solver diagnostics.
``solution.policy()`` turns it into a :class:`mmray.policy.TablePolicy`, which can be
backtested or saved as a checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mmray.params import MarketParams, ProblemParams
from mmray.policy import TablePolicy


@dataclass(frozen=True)
class Solution:
    """Solved market-making problem on a grid.

    Attributes
    ----------
    method : str
        Solver name (``"exact"``, ``"fd"``, ``"pi"``, ``"csp"``).
    market, problem : MarketParams, ProblemParams
        What was solved.
    times : ndarray, shape (N,)
        Increasing time grid from 0 to T.
    q_grid : ndarray, shape (n,)
        Inventory levels ``-Q .. Q`` in steps of the trade size.
    theta : ndarray, shape (N, n)
        Value function: objective A ``u = -exp(-gamma (x + q S + theta))``; objective B
        ``u = x + q S + theta`` (currency units).
    bid, ask : ndarray, shape (N, n)
        Optimal offsets from the mid (price units); NaN where that side is not quoted
        (bid at ``q = Q``, ask at ``q = -Q``).
    info : dict
        Diagnostics (timings, iterations, fallbacks, ...), JSON-serialisable.
    solved_for : dict or None
        Keyword only. The discrete-time problem the quotes were chosen for (``TickMDP.describe()``
        of the tick-grid solvers ``pi`` and ``csp``: dt, fill/price models, intensity, tick grid);
        ``None`` for the continuous-time solvers. The policy carries it (:func:`mmray.policy.quotes_on_tick_grid`).
    """

    method: str
    market: MarketParams
    problem: ProblemParams
    times: np.ndarray
    q_grid: np.ndarray
    theta: np.ndarray
    bid: np.ndarray
    ask: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)
    solved_for: dict[str, Any] | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        for name in ("times", "q_grid", "theta", "bid", "ask"):
            arr = np.asarray(getattr(self, name), dtype=float)
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)
        n_t, n_q = self.times.size, self.q_grid.size
        for name in ("theta", "bid", "ask"):
            if getattr(self, name).shape != (n_t, n_q):
                raise ValueError(
                    f"Solution.{name} has shape {getattr(self, name).shape}, expected {(n_t, n_q)}"
                )

    def quotes_at(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Bid and ask offsets over the inventory grid at the grid time nearest ``t``."""
        i = int(np.argmin(np.abs(self.times - t)))
        return self.bid[i], self.ask[i]

    def policy(self) -> TablePolicy:
        """The solution as a table policy: linear interpolation in time for a continuous-time
        solution; for a discrete-time one (``solved_for`` set: pi, csp) the row of the last decision
        time, so that quotes between decision times stay on the tick grid."""
        return TablePolicy.from_offsets(
            self.times,
            self.q_grid,
            self.bid,
            self.ask,
            market=self.market,
            problem=self.problem,
            provenance={"solver": self.method, "info": self.info},
            interpolation="linear" if self.solved_for is None else "previous",
            solved_for=self.solved_for,
        )
