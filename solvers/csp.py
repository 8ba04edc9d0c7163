"""Constrained market making with OR-Tools: an LP over occupation measures (``csp``).

The discrete problem of ``pi`` (:mod:`mmray.solvers.discrete`) under hard constraints
(:class:`mmray.solvers.constraints.Constraints`) is a constrained MDP; over occupation measures
``x[j, q, b, a] >= 0`` it is the linear program of :mod:`mmray.solvers.occupation` (Altman 1999,
"Constrained Markov Decision Processes", ch. 3-4), solved with OR-Tools' GLOP (simplex, with
duals) or PDLP.

Decomposition. For ``Q = 20``, 200 steps and 15 tick levels plus "no quote" per side the LP has
``~1.9`` million columns and 7,780 flow rows. Per-side variables linked by marginals would not
be exact: both sides can fill in the same step and the joint probability ``p_b p_a`` enters the
transition and the reward. The LP is instead solved exactly by **Dantzig-Wolfe decomposition**
(column generation over policies): the flow-conservation polytope's vertices are the occupation
measures of deterministic Markov policies, so ``x = sum_k w_k x_k`` over policies ``k`` and the
master LP keeps only the coupling rows::

    max  sum_k w_k R_k   s.t.  sum_k w_k G_k (<= or >=) b,   sum_k w_k = 1,   w >= 0

(``R_k`` the policy's expected ``value_B``, ``G_k`` its constraint activities, computed by forward
propagation of its state distribution). Pricing, given the master's duals ``y`` and ``mu``, is
backward induction of the Lagrangian ``r - y . a`` over *all* pairs (vectorised, one sweep): its
value at ``q0`` minus ``mu`` is the largest reduced cost of any column of the full LP. When it is
``<= 0`` the master's optimum is the full LP's optimum, ``y`` are the full LP's duals of the
coupling rows and the Lagrangian value function is the dual of the flow rows. Per-state
restrictions (max spread, tick limits) are enforced exactly by removing the pairs they forbid;
their shadow prices (duals of the rows ``sum over forbidden pairs of x <= 0``) are the smallest
multipliers at which allowing the forbidden pairs, at that price per expected step, no longer
raises the Lagrangian value (found by bisection). ``formulation="direct"`` builds the full LP
instead (:mod:`mmray.solvers.lp_direct`; small problems, and the cross-check of the tests).

Feasibility first (phase 1: elastic slacks on the coupling rows, minimised by the same column
generation with zero rewards); an infeasible constraint set is reduced by a deletion filter to a
minimal conflicting subset, which the :class:`InfeasibleConstraints` error names.

Report per active constraint (``info["constraints"]``): ``bound``, ``binding``, ``shadow_price``
(the dual, ``d objective / d bound``, currency per unit of the bound), ``activity`` (achieved value),
and ``cost`` = objective without it (the others kept) minus objective with it. The constraint set
itself is ``info["constraint_set"]`` (``Constraints.to_dict()``: the active names and their bounds,
as ``pi``'s ``info["constraints"]``); both travel in the policy's provenance, so a checkpoint
records what it was solved under.

Policy: ``pi(b, a | j, q) = x[j,q,b,a] / sum x[j,q,.,.]`` where the state has mass, else the
Lagrangian-optimal pair. :meth:`ConstrainedSolution.policy` returns a
:class:`~mmray.solvers.random_policy.RandomTablePolicy` when it randomises (sampled with the
simulator's generator: one uniform per path and step), a :class:`~mmray.policy.TablePolicy`
otherwise. ``deterministic=True`` solves the mixed-integer program of :mod:`mmray.solvers.lp_direct`
with SCIP (or CP-SAT, approximately), re-evaluates the chosen deterministic policy exactly and
reports the cost of determinism against the LP optimum.
"""

from __future__ import annotations

import math
import time as _time
from dataclasses import dataclass
from typing import Any

import numpy as np

from mmray.checks import choice, flag, integer, real
from mmray.limits import require_grid_memory
from mmray.params import MarketParams, ProblemParams
from mmray.policy import TablePolicy
from mmray.solvers.constraints import GLOBAL, Constraints
from mmray.solvers.discrete import TickGrid, TickMDP
from mmray.solvers.dw import DantzigWolfe, DWResult, Infeasible, InfeasibleConstraints, conflict_set
from mmray.solvers.fd import steps_option
from mmray.solvers.lp_direct import all_columns, solve_direct
from mmray.solvers.occupation import OccupationModel, activity_of
from mmray.solvers.random_policy import RandomTablePolicy
from mmray.solvers.result import Solution

LP_SOLVERS = ("GLOP", "PDLP")
MILP_SOLVERS = ("SCIP", "CP_SAT")
FORMULATIONS = ("dw", "direct")
DIRECT_COLUMN_FLOATS = 16  # memory per LP column of the direct formulation (coefficients, bounds, solver state)


@dataclass(frozen=True)
class ConstrainedSolution(Solution):
    """A :class:`Solution` from ``csp`` with its (possibly randomised) policy.

    ``bid``/``ask`` hold the most likely pair per state and ``theta`` the Lagrangian value function
    at the optimal multipliers of the decomposition (``pi``'s value function when no constraint
    binds). ``random_policy`` is the exact extracted policy; :meth:`policy` returns it when it
    randomises somewhere, a :class:`TablePolicy` otherwise. ``flow_duals`` (``formulation="direct"``
    only, else ``None``): the full LP's own duals of the flow rows, ``(N, n)`` over the decision
    times, NaN at states unreachable from ``q0``; the value function of that LP (equal to
    ``theta[:-1]`` at reachable states when the Lagrangian is unique, e.g. without constraints).
    """

    random_policy: RandomTablePolicy | None = None
    flow_duals: np.ndarray | None = None

    def policy(self) -> TablePolicy | RandomTablePolicy:  # type: ignore[override]
        if self.random_policy is not None and self.random_policy.is_randomised():
            return self.random_policy
        return super().policy()


# ---------------------------------------------------------------------- public entry point
def csp_settings(
    market: MarketParams, problem: ProblemParams, constraints: Any, grid: Any, q0: Any, formulation: Any,
    lp_solver: Any, constraint_costs: Any, deterministic: Any, milp_solver: Any, milp_time_limit: Any,
    max_cg_iter: Any, grid_options: dict[str, Any],
) -> tuple[Constraints, float, str, str, bool, bool, str, float, int, TickMDP]:
    """The checked options of :func:`solve_csp` (same order; ``grid`` and ``grid_options`` become the
    discrete problem, last), ``ValueError`` naming the option otherwise. Also what a sweep file is
    checked with."""
    if problem.objective != "B":
        raise ValueError(
            "csp needs objective B (risk-neutral with running penalty), which is linear in the occupation "
            f"measure; got objective {problem.objective!r} (use method='pi' for objective A)"
        )
    constraints = Constraints() if constraints is None else constraints
    if not isinstance(constraints, Constraints):
        raise ValueError(
            f"csp option constraints must be an mmray.solvers.constraints.Constraints, got {constraints!r}"
        )
    formulation = choice("csp option formulation", formulation, FORMULATIONS)
    lp_solver = choice("csp option lp_solver", lp_solver, LP_SOLVERS)
    milp_solver = choice("csp option milp_solver", milp_solver, MILP_SOLVERS)
    constraint_costs = flag("csp option constraint_costs", constraint_costs)
    deterministic = flag("csp option deterministic", deterministic)
    max_cg_iter = integer("csp option max_cg_iter", max_cg_iter, ge=1)
    milp_time_limit = real("csp option milp_time_limit", milp_time_limit, gt=0)
    q0 = real("csp option q0", q0)
    tick_grid = TickGrid.of(grid, grid_options, "csp")
    mdp = tick_grid.mdp(market, problem, "csp")
    if formulation == "direct":  # the full LP: one column per (step, inventory, bid, ask)
        require_grid_memory("csp solver (formulation='direct')", mdp.n_steps,
                            steps_option(tick_grid.n_steps, tick_grid.dt, mdp.n_steps), market, problem,
                            tables=DIRECT_COLUMN_FLOATS * float(mdp.n_choices) ** 2)
    return (constraints, q0, formulation, lp_solver, constraint_costs, deterministic, milp_solver, milp_time_limit,
            max_cg_iter, mdp)


def solve_csp(
    market: MarketParams,
    problem: ProblemParams,
    constraints: Constraints | None = None,
    grid: TickGrid | None = None,
    *,
    q0: float = 0.0,
    formulation: str = "dw",
    lp_solver: str = "GLOP",
    constraint_costs: bool = True,
    deterministic: bool = False,
    milp_solver: str = "SCIP",
    milp_time_limit: float = 60.0,
    max_cg_iter: int = 2000,
    **grid_options: Any,
) -> ConstrainedSolution:
    """Optimal (randomised) tick-grid policy under hard constraints, objective B.

    Parameters
    ----------
    market, problem : MarketParams, ProblemParams
        Model; objective must be ``"B"`` (linear in the occupation measure).
    constraints : Constraints, optional
        Obligations and risk limits; ``None`` = unconstrained (the optimum then equals ``pi``).
    grid : TickGrid, optional
        The discrete problem, as for :func:`mmray.solvers.pi.solve_pi` (``price_model`` plays no
        part: objective B is linear in the inventory).
    q0 : float
        Initial inventory (a grid level): occupation measures start there.
    formulation : {"dw", "direct"}
        Dantzig-Wolfe column generation (any size), or in addition the full LP (at most 200,000
        columns), a cross-check: ``direct`` still runs the decomposition first (it names the
        conflicting constraints of an infeasible set and gives the per-state restrictions' shadow
        prices), then takes the occupation measure and the global constraints' duals from the full LP.
    lp_solver : {"GLOP", "PDLP"}
        OR-Tools LP backend (GLOP: simplex with exact duals; PDLP: first-order, approximate).
    constraint_costs : bool
        Re-solve without each active constraint to report its cost in objective units.
    deterministic : bool
        Require a deterministic policy: mixed-integer program solved by ``milp_solver``.
    milp_solver : {"SCIP", "CP_SAT"}
        Backend for ``deterministic=True``: SCIP solves the mixed-integer program exactly; CP-SAT
        needs integer data and solves a version with occupations in units of 1e-6 (approximate;
        the returned policy's value and activities are always recomputed exactly).
    milp_time_limit : float
        Seconds for the mixed-integer solve (the best policy found is returned with its status).
    max_cg_iter : int
        Column-generation iteration limit per LP.
    **grid_options
        Fields of :class:`TickGrid` given directly; they override ``grid``.

    Returns
    -------
    ConstrainedSolution
        ``method="csp"``; ``info["objective"]`` is the expected ``value_B`` from ``q0``;
        ``info["constraints"]`` the per-constraint report; ``info["constraint_set"]`` the constraints
        solved under (names and bounds); LP sizes, iterations and timings.

    Raises
    ------
    InfeasibleConstraints
        When no policy satisfies the constraints; the message names a minimal conflicting subset.
    """
    start = _time.perf_counter()
    (constraints, q0, formulation, lp_solver, constraint_costs, deterministic, milp_solver, milp_time_limit,
     max_cg_iter, mdp) = csp_settings(market, problem, constraints, grid, q0, formulation, lp_solver,
                                      constraint_costs, deterministic, milp_solver, milp_time_limit, max_cg_iter,
                                      grid_options)
    om = OccupationModel(mdp, constraints, q0)
    names = constraints.active()
    # no special case for q0 at +-Q: the max_limit_prob rows cover t_1..t_N only (t_0 is given), so
    # whether the desk can leave the bound in time is for phase 1 to decide
    dw = DantzigWolfe(om, lp_solver, max_cg_iter)
    try:
        res = dw.solve(names)
    except Infeasible:
        raise conflict_set(dw, constraints, names) from None
    info: dict[str, Any] = mdp.describe()
    info.update({"q0": float(q0), "formulation": formulation, "lp_solver": lp_solver, "active": names,
                 "constraint_set": constraints.to_dict()})
    if formulation == "direct":
        direct = solve_direct(om, names, lp_solver)
        if direct.status != "optimal":
            raise ValueError("csp: the direct LP is infeasible although the decomposition found a feasible point")
        cols, x = direct.cols, direct.x
        objective = direct.objective
        flow_duals = np.where(om.reach, direct.flow_duals, np.nan)
        duals = {n: direct.duals[n] for n in names if n in GLOBAL}
        info["direct"] = {"seconds": direct.seconds,
                          "restriction_duals": {n: float(direct.duals[n][0]) for n in names if n not in GLOBAL}}
    else:
        cols, x = _mixture_occupation(om, res.mixture)
        objective, duals = res.objective, res.duals
        flow_duals = None
    act = om.activities(cols, x)
    report = _report(om, constraints, names, duals, act)
    for name in names:
        if name not in GLOBAL:
            report[name]["shadow_price"] = dw.restriction_price(name, names, res.duals)
            report[name]["binding"] = report[name]["shadow_price"] > 1e-9 * dw.scale
    if constraint_costs:
        for name in names:
            other = dw.solve([n for n in names if n != name])
            cost = other.objective - objective
            report[name]["cost"] = 0.0 if abs(cost) <= 1e-9 * dw.scale else float(cost)
    info.update({
        "objective": objective,
        "lagrangian_gap": res.gap,
        "constraints": report,
        "binding": [n for n in names if report[n]["binding"]],
        "lp_full": {"columns": int(all_columns_count(om)), "rows": om.n_states + sum(
            om.n_rows(n) for n in names)},
        "lp_master": {"columns": res.n_policies, "rows": 1 + sum(om.n_rows(n) for n in names if n in GLOBAL)},
        "column_generation": {"iterations": res.iterations, "phase1_iterations": res.phase1_iterations,
                              "policies": res.n_policies, "lp_seconds": res.lp_seconds,
                              "pricing_seconds": res.pricing_seconds},
        "cg_iterations_total": dw.total_iterations,
        "activities": {k: v for k, v in act.items() if k != "limit_prob"},
    })
    probs, pair_b, pair_a = _extract(om, cols, x, res.lag_b, res.lag_a)
    if deterministic:
        probs, pair_b, pair_a, info["milp"] = _deterministic(om, names, cols, res, milp_solver,
                                                             float(milp_time_limit), objective)
        info["objective_lp"] = objective
        info["objective"] = info["milp"]["objective"]
    info["randomised_states"] = int(np.count_nonzero(np.count_nonzero(probs > 1e-12, axis=2) > 1))
    info["seconds"] = _time.perf_counter() - start
    return _solution(market, problem, mdp, res.value, probs, pair_b, pair_a, info, flow_duals)


def all_columns_count(om: OccupationModel) -> int:
    """Number of columns of the full occupation LP (admissible pairs at reachable states)."""
    per_q = om.struct.reshape(om.n, -1).sum(axis=1)
    return int(np.sum(om.reach * per_q[None, :]))


def _mixture_occupation(
    om: OccupationModel, mixture: list[tuple[float, np.ndarray, np.ndarray]]
) -> tuple[np.ndarray, np.ndarray]:
    """Occupation ``x`` of the mixture ``sum_k w_k x_k`` on its distinct columns."""
    parts, mass = [], []
    jj, ii = np.nonzero(om.reach)
    for w, b, a in mixture:
        rho = om.forward(b, a)
        parts.append(np.column_stack([jj, ii, b[jj, ii], a[jj, ii]]))
        mass.append(w * rho[jj, ii])
    cols = np.vstack(parts)
    x = np.concatenate(mass)
    uniq, inverse = np.unique(cols, axis=0, return_inverse=True)
    return uniq, np.bincount(inverse.ravel(), weights=x, minlength=uniq.shape[0])


def _report(
    om: OccupationModel, constraints: Constraints, names: list[str], duals: dict[str, np.ndarray],
    act: dict[str, Any],
) -> dict[str, dict[str, Any]]:
    """Binding status, shadow price and achieved value of each active constraint."""
    report: dict[str, dict[str, Any]] = {}
    for name in names:
        entry: dict[str, Any] = {"bound": getattr(constraints, name), "activity": activity_of(name, act)}
        y = duals.get(name, np.zeros(1))
        if name == "min_two_sided":
            entry["shadow_price"] = float(y[0] * om.N)  # d objective / d fraction (<= 0)
            entry["shadow_price_units"] = "currency per unit of the two-sided fraction"
        elif name == "max_limit_prob":
            entry["shadow_price"] = float(np.sum(y))  # every time's epsilon moved together
            entry["shadow_price_units"] = "currency per unit of epsilon (all times together)"
            entry["binding_times"] = int(np.count_nonzero(np.abs(y) > 1e-9))
        elif name == "max_terminal_q2":
            entry["shadow_price"] = float(y[0])
            entry["shadow_price_units"] = "currency per share^2 of E[q_T^2]"
        else:
            entry["shadow_price_units"] = "currency per expected step at a forbidden pair"
        entry["binding"] = bool(np.any(np.abs(y) > 1e-9))
        report[name] = entry
    return report


def _extract(
    om: OccupationModel, cols: np.ndarray, x: np.ndarray, lag_b: np.ndarray, lag_a: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-state distribution over pairs ``(prob, b, a)``, each ``(N, n, K)``."""
    N, n = om.N, om.n
    j, i, b, a = cols.T
    mass = np.zeros((N, n))
    np.add.at(mass, (j, i), x)
    share = x / np.where(mass[j, i] > 0, mass[j, i], 1.0)
    keep = (mass[j, i] > 1e-12) & (share > 1e-9)
    order = np.lexsort((-share[keep], i[keep], j[keep]))
    kj, ki, kb, ka, ks = (arr[keep][order] for arr in (j, i, b, a, share))
    state = kj * n + ki
    first = np.r_[True, state[1:] != state[:-1]] if state.size else np.zeros(0, dtype=bool)
    rank = np.arange(state.size) - np.maximum.accumulate(np.where(first, np.arange(state.size), 0))
    K = int(rank.max(initial=0)) + 1
    prob = np.zeros((N, n, K))
    pb = np.repeat(lag_b[:, :, None], K, axis=2)
    pa = np.repeat(lag_a[:, :, None], K, axis=2)
    has = mass > 1e-12
    prob[~has, 0] = 1.0
    prob[kj, ki, rank] = ks
    pb[kj, ki, rank] = kb
    pa[kj, ki, rank] = ka
    prob[has] /= prob[has].sum(axis=1, keepdims=True)
    return prob, pb, pa


def _deterministic(
    om: OccupationModel, names: list[str], cols: np.ndarray, res: DWResult, backend: str,
    time_limit: float, lp_objective: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """Deterministic policy by mixed-integer programming over candidate pairs.

    Candidates: every admissible pair when the full LP has at most 50,000 columns; else the LP
    solution's pairs plus the Lagrangian-optimal pair of each state (a heuristic restriction,
    reported in ``candidate_scope``). Per-state restrictions remove their pairs beforehand.
    """
    mask = om.struct.copy()
    for name in names:
        if name not in GLOBAL:
            mask &= ~om.mdp.violations(name, om.constraints)[None]
    if all_columns_count(om) <= 50_000:
        cand = all_columns(om)
        scope = "all admissible pairs"
    else:
        jj, ii = np.nonzero(om.reach)
        extra = np.column_stack([jj, ii, res.lag_b[jj, ii], res.lag_a[jj, ii]])
        cand = np.unique(np.vstack([cols, extra]), axis=0)
        scope = "LP pairs + Lagrangian-optimal pairs (heuristic)"
    j, i, b, a = cand.T
    cand = cand[mask[i, b, a]]
    glob = [n for n in names if n in GLOBAL]
    out = solve_direct(om, glob, backend, cand, integer=True, time_limit=time_limit)
    if out.status == "infeasible":
        what = "; ".join(om.constraints.describe(n) for n in names)
        raise InfeasibleConstraints(
            f"csp: no deterministic policy satisfies {what} (over {scope}); a randomised one does "
            "(the LP is feasible): use deterministic=False", list(names),
        )
    j, i, b, a = out.cols[out.chosen].T
    prob = np.ones((om.N, om.n, 1))
    pb, pa = res.lag_b[:, :, None].copy(), res.lag_a[:, :, None].copy()
    pb[j, i, 0], pa[j, i, 0] = b, a
    # exact value and activities of the chosen deterministic policy
    value, acts, _ = om.policy_column(pb[..., 0], pa[..., 0], glob)
    violated = []
    for n in glob:
        lo, hi = om.row_bounds(n)
        slack = 1e-7 * max(1.0, abs(lo) if math.isfinite(lo) else abs(hi))
        if np.any(acts[n] < lo - slack) or np.any(acts[n] > hi + slack):
            violated.append(n)
    milp = {
        "solver": backend, "status": out.status, "objective": value, "milp_objective": out.objective,
        "exact_feasible": not violated, "violated": violated,
        "best_bound": out.best_bound, "cost_of_determinism": float(lp_objective - value),
        "candidates": int(cand.shape[0]), "candidate_scope": scope, "seconds": out.seconds,
        "activities": {n: [float(v) for v in acts[n]] if n == "max_limit_prob" else float(acts[n][0]) for n in glob},
    }
    return prob, pb, pa, milp


def _solution(
    market: MarketParams, problem: ProblemParams, mdp: TickMDP, value: np.ndarray,
    prob: np.ndarray, pair_b: np.ndarray, pair_a: np.ndarray, info: dict[str, Any],
    flow_duals: np.ndarray | None = None,
) -> ConstrainedSolution:
    off = np.append(mdp.grid.offsets, 0.0)
    on = np.append(np.ones(mdp.grid.n_levels, dtype=bool), False)
    rows = lambda arr: np.concatenate([arr, arr[-1:]], axis=0)  # noqa: E731  (no decision at T)
    prob_t, pb_t, pa_t = rows(prob), rows(pair_b), rows(pair_a)
    # the discrete problem (so that a backtest can check it plays the same one), the constraint set
    # solved for (names and bounds: Constraints.from_dict(info["constraint_set"]) rebuilds it) and
    # the LP's outcome, with the per-constraint report (bound, activity, shadow price, cost)
    keep = (*mdp.describe(), "q0", "formulation", "lp_solver", "constraint_set", "active", "objective",
            "objective_lp", "binding", "constraints", "activities")
    provenance = {"solver": "csp", "info": {k: info[k] for k in keep if k in info}}
    rand = RandomTablePolicy(
        mdp.times, mdp.q, prob_t, off[pb_t], off[pa_t], on[pb_t], on[pa_t], market, problem, provenance,
        solved_for=mdp.describe(),
    )
    mode = np.argmax(prob_t, axis=2)[..., None]
    bid, ask = mdp.offsets(np.take_along_axis(pb_t, mode, axis=2)[..., 0],
                           np.take_along_axis(pa_t, mode, axis=2)[..., 0])
    mdp.require_finite(value, bid, ask, "csp")
    if flow_duals is not None:
        flow_duals.setflags(write=False)
    return ConstrainedSolution("csp", market, problem, mdp.times, mdp.q, value, bid, ask, info, rand, flow_duals,
                               solved_for=mdp.describe())


__all__ = ["FORMULATIONS", "LP_SOLVERS", "ConstrainedSolution", "InfeasibleConstraints", "solve_csp"]
