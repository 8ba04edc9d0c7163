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
from mmray.policy import TICK_GRID_SOLVERS, TablePolicy


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
        """The solution as a table policy: linear interpolation in time for the continuous-time
        solvers (exact, fd); for the tick-grid solvers (pi, csp) the row of the last decision
        time, so that quotes between decision times stay on the tick grid."""
        return TablePolicy.from_offsets(
            self.times,
            self.q_grid,
            self.bid,
            self.ask,
            market=self.market,
            problem=self.problem,
            provenance={"solver": self.method, "info": self.info},
            interpolation="previous" if self.method in TICK_GRID_SOLVERS else "linear",
        )
