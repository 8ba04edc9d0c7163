"""Dantzig-Wolfe column generation over policies for the occupation-measure LP of ``csp``.

The flow-conservation polytope of :mod:`mmray.solvers.occupation` has the occupation measures of
deterministic Markov policies as vertices, so every feasible ``x`` is ``sum_k w_k x_k``. The master
LP keeps only the coupling rows (global constraints) and the convexity row; a column is a policy
(its expected ``value_B`` ``R_k`` and constraint activities ``G_k`` from forward propagation).
Pricing at duals ``(y, mu)`` is backward induction of the Lagrangian ``r - y . a`` over all pairs
admitted by the per-state restrictions: ``max_k (R_k - y G_k) - mu`` is the largest reduced cost
of any column of the full LP. It also gives the Lagrangian bound ``L(y) = V^y_0(q0) + y . b``.

Tailing off, typical of Kelley-type column generation when many coupling rows bind (e.g. a limit
probability at each of 200 times), is damped by Wentges smoothing: after the first
``smoothing_after`` iterations, pricing uses ``alpha y_center + (1 - alpha) y_master`` with
``y_center`` the duals of the best bound so far; a column that does not improve the master at its
own duals (mis-pricing) triggers exact pricing at ``y_master``. The loop stops when pricing at
``y_master`` finds no column with reduced cost above ``1e-10`` times the objective scale, or when
the best bound meets the master's objective within that tolerance (then ``y_center`` is an
optimal dual). Phase 1 (feasibility) runs the same loop with zero rewards and elastic slacks.

References: G. B. Dantzig, P. Wolfe, "Decomposition principle for linear programs", Oper. Res. 8
(1960); P. Wentges, "Weighted Dantzig-Wolfe decomposition for linear mixed-integer programming",
Int. Trans. Oper. Res. 4 (1997); E. Altman, "Constrained Markov Decision Processes" (1999).
"""

from __future__ import annotations

import math
import time as _time
from dataclasses import dataclass
from typing import Any

import numpy as np

from mmray.solvers.constraints import GLOBAL, Constraints
from mmray.solvers.occupation import OccupationModel

GLOP_TIGHT = "primal_feasibility_tolerance: 1e-11 dual_feasibility_tolerance: 1e-11"
PDLP_TIGHT = (
    "termination_criteria { simple_optimality_criteria { eps_optimal_absolute: 1e-11 eps_optimal_relative: 1e-11 } }"
)


class InfeasibleConstraints(ValueError):
    """The constraint set admits no policy; ``conflict`` names a minimal conflicting subset."""

    def __init__(self, message: str, conflict: list[str]) -> None:
        super().__init__(message)
        self.conflict = conflict


def _rhs(om: OccupationModel, name: str) -> np.ndarray:
    """Finite right-hand side of each row of constraint ``name``."""
    lo, hi = om.row_bounds(name)
    return np.full(om.n_rows(name), lo if math.isfinite(lo) else hi)


class Master:
    """Master LP over policies: coupling rows + convexity row, elastic slacks for phase 1."""

    def __init__(self, om: OccupationModel, names: list[str], backend: str) -> None:
        from ortools.linear_solver import pywraplp

        solver = pywraplp.Solver.CreateSolver(backend)
        if solver is None:
            raise ValueError(f"OR-Tools solver {backend!r} is not available")
        if backend == "PDLP":  # first-order method: ask for near-simplex accuracy on this tiny LP
            solver.SetSolverSpecificParametersAsString(PDLP_TIGHT)
        else:  # the default 1e-6-level tolerances let GLOP ignore columns the pricing finds improving
            solver.SetSolverSpecificParametersAsString(GLOP_TIGHT)
        self.om, self.names, self.solver = om, list(names), solver
        inf = solver.infinity()
        self.convex = solver.Constraint(1.0, 1.0)
        self.rows: dict[str, list[Any]] = {}
        self.slack: list[Any] = []
        for name in self.names:
            lo, hi = om.row_bounds(name)
            rows = [solver.Constraint(-inf if lo == -np.inf else lo, inf if hi == np.inf else hi)
                    for _ in range(om.n_rows(name))]
            for row in rows:
                s = solver.NumVar(0.0, inf, "")
                row.SetCoefficient(s, 1.0 if lo > -np.inf else -1.0)
                self.slack.append(s)
            self.rows[name] = rows
        self.objective = solver.Objective()
        self.objective.SetMaximization()
        self.weights: list[Any] = []
        self.policies: list[tuple[np.ndarray, np.ndarray]] = []
        self.returns: list[float] = []
        self.phase1 = bool(self.slack)
        for s in self.slack:
            self.objective.SetCoefficient(s, -1.0)

    def add(self, b: np.ndarray, a: np.ndarray,
            column: tuple[float, dict[str, np.ndarray], np.ndarray] | None = None) -> None:
        value, acts, _ = self.om.policy_column(b, a, self.names) if column is None else column
        w = self.solver.NumVar(0.0, self.solver.infinity(), "")
        self.convex.SetCoefficient(w, 1.0)
        for name, rows in self.rows.items():
            for row, coef in zip(rows, acts[name].tolist(), strict=True):
                if coef != 0.0:
                    row.SetCoefficient(w, coef)
        self.objective.SetCoefficient(w, 0.0 if self.phase1 else value)
        self.weights.append(w)
        self.policies.append((b.copy(), a.copy()))
        self.returns.append(value)

    def to_phase2(self) -> None:
        """Fix the slacks at 0 and switch to the true objective (the basis is kept)."""
        for s in self.slack:
            s.SetUb(0.0)
            self.objective.SetCoefficient(s, 0.0)
        for w, value in zip(self.weights, self.returns, strict=True):
            self.objective.SetCoefficient(w, value)
        self.phase1 = False

    def solve(self) -> tuple[float, float, dict[str, np.ndarray]]:
        """``(objective, convexity dual mu, coupling duals)``."""
        from ortools.linear_solver import pywraplp

        status = self.solver.Solve()
        if status != pywraplp.Solver.OPTIMAL:
            raise ValueError(f"csp: the master LP stopped with status {status} (not optimal)")
        duals = {name: np.array([r.dual_value() for r in rows]) for name, rows in self.rows.items()}
        return float(self.objective.Value()), float(self.convex.dual_value()), duals

    def mixture(self) -> list[tuple[float, np.ndarray, np.ndarray]]:
        """Policies with positive weight in the current master solution: ``[(w, b, a), ...]``."""
        return [(w.solution_value(), b, a) for w, (b, a) in zip(self.weights, self.policies, strict=True)
                if w.solution_value() > 1e-12]


@dataclass
class DWResult:
    """Outcome of one column generation: LP optimum, coupling duals, Lagrangian value function
    ``(N+1, n)`` and policy at those duals, the optimal mixture ``[(weight, bid idx, ask idx)]``,
    iteration counts, timings and the final bound gap."""

    objective: float
    duals: dict[str, np.ndarray]
    value: np.ndarray  # Lagrangian value function (N+1, n)
    lag_b: np.ndarray
    lag_a: np.ndarray
    mixture: list[tuple[float, np.ndarray, np.ndarray]]
    iterations: int
    phase1_iterations: int
    n_policies: int
    lp_seconds: float
    pricing_seconds: float
    gap: float


class Infeasible(Exception):
    """Raised inside the column generation when phase 1 cannot reach feasibility."""


class DantzigWolfe:
    """Dantzig-Wolfe column generation for any subset of the active constraints."""

    def __init__(self, om: OccupationModel, backend: str, max_iter: int, smoothing: float = 0.8,
                 smoothing_after: int = 20) -> None:
        self.om, self.backend, self.max_iter = om, backend, max_iter
        self.smoothing, self.smoothing_after = smoothing, smoothing_after
        self.scale = 1.0 + float(np.max(np.abs(np.where(om.struct, om.r_mid, 0.0)))) * om.N
        self.total_iterations = 0

    def mask(self, names: list[str]) -> np.ndarray | None:
        """Admissible pairs under the per-state restrictions in ``names``; ``None`` if some state has none."""
        mask = self.om.struct.copy()
        for name in names:
            if name not in GLOBAL:
                mask &= ~self.om.mdp.violations(name, self.om.constraints)[None]
        if np.any(~mask.reshape(self.om.n, -1).any(axis=1)):
            return None
        return mask

    def _bound(self, value: np.ndarray, duals: dict[str, np.ndarray]) -> float:
        """Lagrangian dual function ``L(y) = V^y_0(q0) + sum_r y_r b_r``: an upper bound on the LP."""
        return float(value[0, self.om.i0]) + sum(float(np.sum(y * _rhs(self.om, n))) for n, y in duals.items())

    def _loop(self, master: Master, mask: np.ndarray, weight: float, stats: dict[str, float]) -> tuple[
            float, dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, float]:
        """Column generation with Wentges dual smoothing (see :meth:`solve`)."""
        tol = 1e-10 * self.scale if weight else 1e-12
        center: dict[str, np.ndarray] | None = None
        best = math.inf
        smooth = 0.0
        for it in range(self.max_iter):
            t0 = _time.perf_counter()
            objective, mu, y_master = master.solve()
            stats["lp"] += _time.perf_counter() - t0
            if best - objective <= tol and center is not None:  # the bound proves optimality
                value, b, a = self.om.lagrangian(center, mask, weight)
                return objective, center, value, b, a, best - objective
            t0 = _time.perf_counter()
            if center is None or smooth == 0.0:
                y_price = y_master
            else:
                y_price = {n: smooth * center[n] + (1.0 - smooth) * y_master[n] for n in y_master}
            value, b, a = self.om.lagrangian(y_price, mask, weight)
            bound = self._bound(value, y_price)
            if bound < best:
                best, center = bound, y_price
            column = self.om.policy_column(b, a, master.names)
            reduced = weight * column[0] - mu - sum(float(np.dot(y_master[n], column[1][n])) for n in y_master)
            stats["pricing"] += _time.perf_counter() - t0
            stats["iterations"] += 1
            if reduced > tol:
                master.add(b, a, column)
                # plain Kelley steps first (most problems converge in a few); smooth the tail
                smooth = self.smoothing if it + 1 >= self.smoothing_after else 0.0
            elif y_price is y_master:  # exact pricing at the master's duals: optimal
                return objective, y_master, value, b, a, max(reduced, 0.0)
            else:  # mis-pricing: the smoothed duals found nothing new; price at the master's duals
                smooth = 0.0
        raise ValueError(
            f"csp: column generation did not converge in max_cg_iter={self.max_iter} iterations "
            f"(bound gap {best - objective:.3g})"
        )

    def feasible(self, names: list[str]) -> bool:
        """Whether the constraints ``names`` admit a policy (phase 1 only)."""
        mask = self.mask(names)
        if mask is None:
            return False
        glob = [n for n in names if n in GLOBAL]
        if not glob:
            return True
        try:
            self.solve(names, phase1_only=True)
        except Infeasible:
            return False
        return True

    def solve(self, names: list[str], phase1_only: bool = False) -> DWResult:
        """LP optimum under the constraints ``names`` (phase 1, then phase 2 unless ``phase1_only``).

        Starts from the unconstrained optimal policy under the per-state restrictions; raises
        :class:`Infeasible` when phase 1 ends with positive slack or a restriction leaves a state
        without any admissible pair.
        """
        mask = self.mask(names)
        if mask is None:
            raise Infeasible()
        glob = [n for n in names if n in GLOBAL]
        master = Master(self.om, glob, self.backend)
        _, b0, a0 = self.om.lagrangian({}, mask)
        master.add(b0, a0)
        stats = {"lp": 0.0, "pricing": 0.0, "iterations": 0}
        phase1_iterations = 0
        if glob:
            objective, *_ = self._loop(master, mask, 0.0, stats)
            phase1_iterations = int(stats["iterations"])
            if objective < -1e-9:
                raise Infeasible()
            if phase1_only:
                return DWResult(objective, {}, np.zeros(0), b0, a0, [], 0, phase1_iterations, 0, 0, 0, 0)
            master.to_phase2()
        objective, duals, value, b, a, gap = self._loop(master, mask, 1.0, stats)
        self.total_iterations += int(stats["iterations"])
        return DWResult(
            objective, duals, value, b, a, master.mixture(), int(stats["iterations"]) - phase1_iterations,
            phase1_iterations, len(master.policies), stats["lp"], stats["pricing"], gap,
        )

    def restriction_price(self, name: str, names: list[str], duals: dict[str, np.ndarray]) -> float:
        """Dual of the row ``sum over pairs violating name of x <= 0`` (see module docstring)."""
        om = self.om
        mask_all = self.mask(names)
        mask_free = self.mask([n for n in names if n != name])
        base = float(om.lagrangian(duals, mask_all)[0][0, om.i0])

        def relaxed(y: float) -> float:
            d = dict(duals)
            d[name] = np.array([y])
            return float(om.lagrangian(d, mask_free)[0][0, om.i0])

        tol = 1e-12 * self.scale  # same recursion on both sides: equal values are equal to rounding
        if relaxed(0.0) <= base + tol:
            return 0.0
        hi = 1.0
        while relaxed(hi) > base + tol:
            hi *= 2.0
            if hi > 1e12:
                return math.inf
        lo = 0.0
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            if relaxed(mid) > base + tol:
                lo = mid
            else:
                hi = mid
            if hi - lo <= 1e-9 * max(1.0, hi):
                break
        return hi


def conflict_set(dw: DantzigWolfe, constraints: Constraints, names: list[str]) -> InfeasibleConstraints:
    """Deletion filter: a minimal subset of ``names`` that is still infeasible."""
    keep = list(names)
    for name in list(names):
        trial = [n for n in keep if n != name]
        if not dw.feasible(trial):
            keep = trial
    what = "; ".join(constraints.describe(n) for n in keep)
    if len(keep) == 1:
        msg = f"csp: infeasible constraint: {what} cannot be met by any policy on this tick grid"
    else:
        msg = f"csp: infeasible constraint set: {what} conflict (dropping any one of them makes the rest feasible)"
    return InfeasibleConstraints(msg, keep)
