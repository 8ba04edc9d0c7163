"""Occupation-measure formulation of the constrained tick-grid problem (Altman 1999, ch. 3-4).

For the finite-horizon MDP of :mod:`mmray.solvers.discrete` started at inventory ``q0``, let
``x[j, q, b, a] >= 0`` be the probability of being at inventory ``q`` at step ``j`` and quoting the
pair ``(b, a)``. Every Markov (randomised) policy gives such an ``x`` and every ``x`` satisfying
the flow conservation below comes from the policy ``pi(b, a | j, q) = x[j,q,b,a] / sum_{b,a} x[j,q,.,.]``::

    sum_{b,a} x[0, q, b, a] = 1{q = q0}
    sum_{b,a} x[j, q', b, a] = sum_{q,b,a} P(q' | q, b, a) x[j-1, q, b, a]        j = 1..N-1

with ``P(q+Delta) = p_b (1 - p_a)``, ``P(q-Delta) = p_a (1 - p_b)``, the rest staying. Objective B
is linear: ``sum x[j,q,b,a] r(q, b, a)`` (plus ``-E ell(q_N)`` folded into the last step), and so
is every constraint of :class:`mmray.solvers.constraints.Constraints`:

* per-state restrictions: ``sum over violating pairs of x <= 0``;
* ``min_two_sided``: ``sum over two-sided pairs of x >= f N`` (``N`` counts every decision step,
  those at ``|q| = Q``, necessarily one-sided, included);
* ``max_limit_prob``: for ``j = 1..N``, ``sum_{q,b,a} x[j-1,q,b,a] P(|q'| = Q | q,b,a) <= eps``;
* ``max_terminal_q2``: ``sum_{q,b,a} x[N-1,q,b,a] E[q'^2 | q,b,a] <= B``.

States that cannot be reached from ``q0`` in ``j`` steps (``|q - q0| > j Delta``) carry no mass
and are left out. This module holds the coefficient arrays, the vectorised pricing of all
columns given LP duals (the reduced cost of a column is a one-step Bellman expression, so it is
evaluated for all ``N n (L+1)^2`` columns at the cost of one backward sweep), the Lagrangian
backward recursion, and the activities of an occupation measure.
"""

from __future__ import annotations

import numpy as np

from mmray.model import inventory_transition
from mmray.solvers.constraints import GLOBAL, PER_STATE, Constraints
from mmray.solvers.discrete import TickMDP


class OccupationModel:
    """Coefficients of the occupation-measure LP of ``mdp`` from inventory ``q0``."""

    def __init__(self, mdp: TickMDP, constraints: Constraints, q0: float) -> None:
        self.mdp, self.constraints = mdp, constraints
        q, d = mdp.q, mdp.size
        pos = np.flatnonzero(np.abs(q - q0) <= 1e-9 * max(1.0, d))
        if pos.size != 1:
            raise ValueError(
                f"csp option q0={q0!r} must be an inventory level of the grid {q[0]:g}..{q[-1]:g} step {d:g}"
            )
        self.i0 = int(pos[0])
        self.N, self.n, self.C = mdp.n_steps, q.size, mdp.n_choices
        steps = np.arange(self.N)[:, None]
        self.reach = np.abs(np.arange(self.n)[None, :] - self.i0) <= steps  # (N, n)
        self.sid = np.full((self.N, self.n), -1, dtype=np.int64)
        self.sid[self.reach] = np.arange(int(self.reach.sum()))
        self.n_states = int(self.reach.sum())
        self.struct = mdp.pair_mask(None)
        self.r_mid = mdp.q_values_linear(mdp.running)
        self.r_last = mdp.q_values_linear(mdp.running + mdp.terminal)
        pb, pa = mdp.p[:, None], mdp.p[None, :]
        self.up = pb * (1.0 - pa)
        self.down = pa * (1.0 - pb)
        self.stay = 1.0 - self.up - self.down
        self.two = np.outer(mdp.quoted, mdp.quoted).astype(float)
        self.viol = {name: mdp.violations(name, constraints).astype(float) for name in constraints.per_state_active()}
        self.at_bound = np.zeros(self.n)
        self.at_bound[[0, -1]] = 1.0
        self.q2 = q * q

    # ------------------------------------------------------------------ columns
    def objective(self, j: np.ndarray, i: np.ndarray, b: np.ndarray, a: np.ndarray) -> np.ndarray:
        return np.where(j == self.N - 1, self.r_last[i, b, a], self.r_mid[i, b, a])

    def flow_entries(
        self, j: np.ndarray, i: np.ndarray, b: np.ndarray, a: np.ndarray
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """``[(row ids, coefficients), ...]``: own row +1, next rows ``-P`` (row id -1 = none)."""
        nxt = j + 1 < self.N
        jn = np.minimum(j + 1, self.N - 1)
        out = [(self.sid[j, i], np.ones(j.size))]
        for shift, prob in ((1, self.up), (0, self.stay), (-1, self.down)):
            k = np.clip(i + shift, 0, self.n - 1)
            valid = nxt & (i + shift >= 0) & (i + shift < self.n)
            rows = np.where(valid, self.sid[jn, k], -1)
            coef = -prob[b, a]
            out.append((np.where(coef != 0.0, rows, -1), coef))
        return out

    def global_entries(self, name: str, j: np.ndarray, i: np.ndarray, b: np.ndarray, a: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
        """Row index within the constraint ``name`` (0 for single-row ones) and coefficient per column."""
        if name in self.viol:
            return np.zeros(j.size, dtype=np.int64), self.viol[name][b, a]
        if name == "min_two_sided":
            return np.zeros(j.size, dtype=np.int64), self.two[b, a]
        probs = self._next_probs(i, b, a)
        if name == "max_limit_prob":  # row j' = j + 1 (1..N), stored at index j
            coef = sum(p * self.at_bound[np.clip(i + s, 0, self.n - 1)] for s, p in probs)
            return j.astype(np.int64), coef
        if name == "max_terminal_q2":
            coef = sum(p * self.q2[np.clip(i + s, 0, self.n - 1)] for s, p in probs)
            return np.zeros(j.size, dtype=np.int64), np.where(j == self.N - 1, coef, 0.0)
        raise ValueError(f"unknown constraint {name!r}")

    def _next_probs(self, i: np.ndarray, b: np.ndarray, a: np.ndarray) -> list[tuple[int, np.ndarray]]:
        return [(1, self.up[b, a]), (0, self.stay[b, a]), (-1, self.down[b, a])]

    def n_rows(self, name: str) -> int:
        return self.N if name == "max_limit_prob" else 1

    def row_bounds(self, name: str) -> tuple[float, float]:
        """``(lower, upper)`` of each row of constraint ``name`` (``inf`` for none)."""
        value = getattr(self.constraints, name)
        if name in PER_STATE:
            return -np.inf, 0.0
        if name == "min_two_sided":
            return value * self.N, np.inf
        return -np.inf, float(value)

    # ------------------------------------------------------------------ pricing
    def step_values(self, j: int, cont: np.ndarray, duals: dict[str, np.ndarray], weight: float) -> np.ndarray:
        """``(n, L+1, L+1)`` values ``r - sum_g y_g a_g + E[cont(q')]`` of the columns at step ``j``.

        ``duals[name]`` are the LP duals (``d objective / d right-hand side``) of the global rows;
        ``weight`` multiplies the rewards (0 in phase 1).
        """
        mdp = self.mdp
        u = weight * mdp.running + cont
        if "max_limit_prob" in duals:
            u = u - duals["max_limit_prob"][j] * self.at_bound
        if j == self.N - 1:
            u = u + weight * mdp.terminal
            if "max_terminal_q2" in duals:
                u = u - duals["max_terminal_q2"][0] * self.q2
        values = mdp.q_values_linear(u, cash_weight=weight)
        pen = np.zeros((self.C, self.C))
        for name, arr in self.viol.items():
            if name in duals:
                pen -= duals[name][0] * arr
        if "min_two_sided" in duals:
            pen -= duals["min_two_sided"][0] * self.two
        return values + pen[None]

    def price(
        self, flow_duals: np.ndarray, duals: dict[str, np.ndarray], weight: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Best reduced cost per state and its pair: ``(rc (N, n), b (N, n), a (N, n))``.

        Reduced cost of column ``(j, q, b, a)``: ``r - sum_g y_g a_g + sum_q' P(q'|q,b,a) V_{j+1}(q') - V_j(q)``
        with ``V`` the flow-row duals; unreachable states get ``-inf``.
        """
        rc = np.full((self.N, self.n), -np.inf)
        bb = np.zeros((self.N, self.n), dtype=np.intp)
        aa = np.zeros((self.N, self.n), dtype=np.intp)
        zero = np.zeros(self.n)
        for j in range(self.N):
            cont = flow_duals[j + 1] if j + 1 < self.N else zero
            vals = self.step_values(j, cont, duals, weight) - flow_duals[j][:, None, None]
            best, b, a = TickMDP.best(vals, self.struct)
            rc[j], bb[j], aa[j] = np.where(self.reach[j], best, -np.inf), b, a
        return rc, bb, aa

    def lagrangian(
        self, duals: dict[str, np.ndarray], mask: np.ndarray, weight: float = 1.0
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Backward recursion of the Lagrangian: ``(V (N+1, n), b (N, n), a (N, n))`` over ``mask``."""
        value = np.zeros((self.N + 1, self.n))
        b = np.zeros((self.N, self.n), dtype=np.intp)
        a = np.zeros((self.N, self.n), dtype=np.intp)
        for j in range(self.N - 1, -1, -1):
            value[j], b[j], a[j] = TickMDP.best(self.step_values(j, value[j + 1], duals, weight), mask)
        value[-1] = self.mdp.terminal
        return value, b, a

    # ------------------------------------------------------------------ policies
    def forward(self, b: np.ndarray, a: np.ndarray) -> np.ndarray:
        """State distribution ``rho (N+1, n)`` of the deterministic policy ``(b, a)`` (each ``(N, n)``) from ``q0``."""
        rho = np.zeros((self.N + 1, self.n))
        rho[0, self.i0] = 1.0
        for j in range(self.N):
            rho[j + 1] = inventory_transition(rho[j], self.up[b[j], a[j]], self.down[b[j], a[j]])
        return rho

    def policy_column(
        self, b: np.ndarray, a: np.ndarray, names: list[str]
    ) -> tuple[float, dict[str, np.ndarray], np.ndarray]:
        """Objective (expected ``value_B``) and constraint row activities of a deterministic policy.

        Returns ``(objective, {name: activities per row}, rho)``; the activities are the
        left-hand sides of the rows of :meth:`row_bounds` evaluated at the policy's occupation.
        """
        rho = self.forward(b, a)
        steps = np.arange(self.N)[:, None]
        idx = np.arange(self.n)[None, :]
        reward = np.where(steps == self.N - 1, self.r_last[idx, b, a], self.r_mid[idx, b, a])
        objective = float(np.sum(rho[:-1] * reward))
        acts: dict[str, np.ndarray] = {}
        for name in names:
            if name == "min_two_sided":
                acts[name] = np.array([np.sum(rho[:-1] * self.two[b, a])])
            elif name == "max_limit_prob":
                acts[name] = rho[1:, 0] + rho[1:, -1]
            elif name == "max_terminal_q2":
                acts[name] = np.array([np.sum(rho[-1] * self.q2)])
            else:
                acts[name] = np.array([np.sum(rho[:-1] * self.viol[name][b, a])])
        return objective, acts, rho

    # ------------------------------------------------------------------ activities
    def activities(self, cols: np.ndarray, x: np.ndarray) -> dict[str, float | list[float]]:
        """Achieved value of every constraint's left-hand side for the occupation ``x`` on ``cols``.

        Returns the two-sided fraction, ``P(|q_j| = Q)`` for ``j = 1..N`` and its maximum,
        ``E[q_T^2]``, and the expected number of steps violating each per-state restriction.
        """
        j, i, b, a = cols.T
        out: dict[str, float | list[float]] = {}
        out["two_sided_fraction"] = float(np.sum(x * self.two[b, a]) / self.N)
        _, coef = self.global_entries("max_limit_prob", j, i, b, a)
        per_time = np.bincount(j, weights=x * coef, minlength=self.N)
        out["limit_prob"] = [float(v) for v in per_time]
        out["max_limit_prob"] = float(per_time.max(initial=0.0))
        _, coef = self.global_entries("max_terminal_q2", j, i, b, a)
        out["terminal_q2"] = float(np.sum(x * coef))
        for name in PER_STATE:
            if name in self.viol:
                out[f"{name}_violation"] = float(np.sum(x * self.viol[name][b, a]))
        return out


def activity_of(name: str, act: dict[str, float | list[float]]) -> float:
    """The scalar activity that constraint ``name`` bounds."""
    key = {"min_two_sided": "two_sided_fraction", "max_limit_prob": "max_limit_prob",
           "max_terminal_q2": "terminal_q2"}.get(name, f"{name}_violation")
    return float(act[key])  # type: ignore[arg-type]


__all__ = ["GLOBAL", "PER_STATE", "OccupationModel", "activity_of"]
