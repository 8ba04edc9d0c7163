"""The occupation-measure LP written out in full, and its mixed-integer variant (OR-Tools).

Used by ``csp`` with ``formulation="direct"`` (every column ``x[j, q, b, a]`` explicit; small
problems, and the independent check of the decomposition) and ``deterministic=True`` (one binary
``d`` per candidate column, ``x <= d``, ``sum_pairs d = 1`` per state; Feinberg 2000 shows that
the best deterministic policy of a constrained MDP is NP-hard in general). SCIP solves this
mixed-integer program exactly (to its default relative gap 1e-4); CP-SAT only handles integer
variables, so the occupations are scaled to units of 1e-6 (``mip_var_scaling``) and its answer is
approximate: the caller always re-evaluates the chosen deterministic policy exactly.
Rows are those of :mod:`mmray.solvers.occupation`; per-state restrictions become the aggregated
rows ``sum over violating pairs of x <= 0`` so that their LP duals exist.
"""

from __future__ import annotations

import time as _time
from dataclasses import dataclass
from typing import Any

import numpy as np

from mmray.solvers.occupation import OccupationModel

DIRECT_MAX_COLUMNS = 200_000


@dataclass
class DirectResult:
    """Solution of the direct LP/MILP: objective, columns, their values and the row duals."""

    status: str
    objective: float
    cols: np.ndarray
    x: np.ndarray
    flow_duals: np.ndarray | None
    duals: dict[str, np.ndarray]
    seconds: float
    best_bound: float | None = None
    chosen: np.ndarray | None = None


def all_columns(om: OccupationModel) -> np.ndarray:
    """Every admissible column ``(j, i, b, a)`` at a reachable state."""
    j, i, b, a = np.nonzero(om.reach[:, :, None, None] & om.struct[None])
    return np.column_stack([j, i, b, a])


def solve_direct(
    om: OccupationModel, names: list[str], backend: str, cols: np.ndarray | None = None,
    integer: bool = False, time_limit: float | None = None,
) -> DirectResult:
    """Build and solve the full LP (or MILP with ``integer=True``) over ``cols`` (default: all).

    ``names`` are the constraints to impose; per-state restrictions among them become aggregated
    rows. Statuses: ``"optimal"``, ``"feasible"`` (MILP stopped by the time limit),
    ``"infeasible"``; anything else raises ``ValueError``.
    """
    from ortools.linear_solver import pywraplp

    cols = all_columns(om) if cols is None else np.asarray(cols, dtype=np.int64)
    if cols.shape[0] > DIRECT_MAX_COLUMNS and not integer:
        raise ValueError(
            f"csp formulation='direct' would build {cols.shape[0]:,} columns (limit {DIRECT_MAX_COLUMNS:,}); "
            "use formulation='dw' (column generation over policies)"
        )
    solver = pywraplp.Solver.CreateSolver(backend)
    if solver is None:
        raise ValueError(f"OR-Tools solver {backend!r} is not available")
    if backend == "GLOP":
        solver.SetSolverSpecificParametersAsString("use_preprocessing: false")
    elif backend == "PDLP":
        from mmray.solvers.dw import PDLP_TIGHT

        solver.SetSolverSpecificParametersAsString(PDLP_TIGHT)
    elif backend == "CP_SAT":
        # CP-SAT works on integers: continuous occupations are represented in units of 1e-6 and the
        # flow equalities hold to that precision; the caller re-evaluates the chosen policy exactly.
        solver.SetSolverSpecificParametersAsString("mip_var_scaling: 1000000")
    inf = solver.infinity()
    rhs = np.zeros(om.n_states)
    rhs[om.sid[0, om.i0]] = 1.0
    flow = [solver.Constraint(float(v), float(v)) for v in rhs]
    rows: dict[str, list[Any]] = {}
    for name in names:
        lo, hi = om.row_bounds(name)
        rows[name] = [solver.Constraint(-inf if lo == -np.inf else lo, inf if hi == np.inf else hi)
                      for _ in range(om.n_rows(name))]
    j, i, b, a = cols.T
    reward = om.objective(j, i, b, a).tolist()
    flow_entries = [(r.tolist(), c.tolist()) for r, c in om.flow_entries(j, i, b, a)]
    glob = {}
    for name in names:
        r, c = om.global_entries(name, j, i, b, a)
        glob[name] = (r.tolist(), c.tolist())
    own = om.sid[j, i].tolist()
    pick = [solver.Constraint(1.0, 1.0) for _ in range(om.n_states)] if integer else None
    objective = solver.Objective()
    objective.SetMaximization()
    xs, ds = [], []
    for k in range(cols.shape[0]):
        x = solver.NumVar(0.0, 1.0 if integer else inf, "")
        for r, c in flow_entries:
            if r[k] >= 0:
                flow[r[k]].SetCoefficient(x, c[k])
        for name, (r, c) in glob.items():
            if c[k] != 0.0:
                rows[name][r[k]].SetCoefficient(x, c[k])
        objective.SetCoefficient(x, reward[k])
        xs.append(x)
        if pick is not None:
            d = solver.BoolVar("")
            link = solver.Constraint(-inf, 0.0)
            link.SetCoefficient(x, 1.0)
            link.SetCoefficient(d, -1.0)
            pick[own[k]].SetCoefficient(d, 1.0)
            ds.append(d)
    if time_limit is not None:
        solver.SetTimeLimit(int(time_limit * 1000))
    t0 = _time.perf_counter()
    status = solver.Solve()
    seconds = _time.perf_counter() - t0
    if status == pywraplp.Solver.INFEASIBLE:
        return DirectResult("infeasible", float("nan"), cols, np.zeros(0), None, {}, seconds)
    if integer and status == pywraplp.Solver.NOT_SOLVED:
        raise ValueError(
            f"csp: the {backend} solver found no deterministic policy within the time limit "
            f"({time_limit} s); raise milp_time_limit or use milp_solver='SCIP'"
        )
    if status not in (pywraplp.Solver.OPTIMAL, pywraplp.Solver.FEASIBLE) or (
        status == pywraplp.Solver.FEASIBLE and not integer
    ):
        raise ValueError(f"csp: the {backend} solver stopped with status {status} on the direct formulation")
    xv = np.maximum(np.array([x.solution_value() for x in xs]), 0.0)
    if integer:
        chosen = np.array([d.solution_value() for d in ds]) > 0.5
        return DirectResult(
            "optimal" if status == pywraplp.Solver.OPTIMAL else "feasible", float(objective.Value()), cols, xv,
            None, {}, seconds, float(objective.BestBound()), chosen,
        )
    flow_duals = np.zeros((om.N, om.n))
    flow_duals[om.reach] = np.array([row.dual_value() for row in flow])
    duals = {name: np.array([row.dual_value() for row in rs]) for name, rs in rows.items()}
    return DirectResult("optimal", float(objective.Value()), cols, xv, flow_duals, duals, seconds)
