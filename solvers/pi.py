"""Dynamic programming on the tick grid: backward induction and policy iteration (``pi``).

The problem is the simulator's discrete MDP (:mod:`mmray.solvers.discrete`): decisions every
``dt``, quotes on a tick grid (or no quote), independent per-step fills with the simulator's
``fill_probability``, so the resulting policy is optimal *for the simulator* (backtest it with
``SimConfig(dt=<same dt>, fill_model=<same>)`` and ``MarketParams(tick=0)``).

Horizons (Puterman 1994, "Markov Decision Processes", ch. 4, 6, 8):

* ``finite`` (objectives A and B): backward induction from ``V_N = -ell`` (objective B:
  ``V_j(q) = max_{b,a} E[r + V_{j+1}(q')]``; objective A: the certainty-equivalent recursion of
  :mod:`mmray.solvers.discrete`). Exactly optimal for the ``N``-step problem.
* ``discounted`` (objective B): ``V(q) = max E[r + beta V(q')]``, ``beta = exp(-rho dt)`` with the
  discount rate ``rho`` per time unit; policy iteration: evaluate the policy by the tridiagonal
  solve ``(I - beta P_pi) V = r_pi``, improve greedily (keeping the current action on ties),
  stop when no state changes.
* ``average`` (objective B, long-run average reward with the running penalty
  ``gamma sigma^2 q^2 dt / 2``): gain ``g`` and bias ``h`` with ``h(0) = 0`` solve
  ``h + g = r_pi + P_pi h`` (unichain policy evaluation); same improvement step. The continuous
  analogue is the ground state of :func:`mmray.solvers.exact.stationary_quotes`.

Convergence diagnostics of policy iteration (``info["history"]``): per iteration the number of
states whose action changed, the Bellman residual ``max_q (T V - V)`` of the evaluated policy
(it is 0 exactly when the policy is optimal), and the gain (average) or ``V(0)`` (discounted).

For stationary horizons the returned :class:`Solution` has the two-point time grid ``[0, T]``
with identical rows: the policy does not depend on time.
"""

from __future__ import annotations

import math
import time as _time
from typing import Any

import numpy as np
from scipy.linalg import solve_banded

from mmray.checks import choice, integer, real
from mmray.params import MarketParams, ProblemParams
from mmray.solvers.constraints import Constraints
from mmray.solvers.discrete import TickGrid, TickMDP
from mmray.solvers.result import Solution

HORIZONS = ("finite", "discounted", "average")


def _check_per_state(constraints: Constraints | None) -> Constraints | None:
    if constraints is None:
        return None
    if not isinstance(constraints, Constraints):
        raise ValueError(f"pi option constraints must be an mmray.solvers.constraints.Constraints, got {constraints!r}")
    glob = constraints.global_active()
    if glob:
        raise ValueError(
            f"pi handles per-state restrictions only; {', '.join(glob)} constrain the whole occupation "
            "measure: use method='csp'"
        )
    return constraints


def pi_settings(
    market: MarketParams, problem: ProblemParams, grid: Any, horizon: Any, discount_rate: Any, max_iter: Any,
    constraints: Any, grid_options: dict[str, Any],
) -> tuple[str, float | None, int, Constraints | None, TickMDP]:
    """The checked options of :func:`solve_pi` (same order; ``grid`` and ``grid_options`` become the
    discrete problem), ``ValueError`` naming the option otherwise. Also what a sweep file is checked with."""
    horizon = choice("pi option horizon", horizon, HORIZONS)
    if horizon != "finite" and problem.objective != "B":
        raise ValueError(
            f"pi horizon={horizon!r} needs objective B (risk-neutral with running penalty); "
            f"got objective {problem.objective!r}"
        )
    if horizon == "discounted":
        discount_rate = real("pi option discount_rate (horizon='discounted')", discount_rate, gt=0)
    elif discount_rate is not None:
        raise ValueError(f"pi option discount_rate applies to horizon='discounted' only (horizon={horizon!r})")
    max_iter = integer("pi option max_iter", max_iter, ge=1)
    constraints = _check_per_state(constraints)
    mdp = TickGrid.of(grid, grid_options, "pi").mdp(market, problem, "pi")
    return horizon, discount_rate, max_iter, constraints, mdp


def solve_pi(
    market: MarketParams,
    problem: ProblemParams,
    grid: TickGrid | None = None,
    *,
    horizon: str = "finite",
    discount_rate: float | None = None,
    max_iter: int = 100,
    constraints: Constraints | None = None,
    **grid_options: Any,
) -> Solution:
    """Optimal tick-grid policy of the simulator's discrete problem.

    Parameters
    ----------
    market, problem : MarketParams, ProblemParams
        Model; ``problem.q_max`` must be set.
    grid : TickGrid, optional
        The discrete problem (steps, tick levels, fill and price models, intensity); see
        :class:`mmray.solvers.discrete.TickGrid`. Use the same ``dt`` and fill model in the backtest.
    **grid_options
        Fields of :class:`TickGrid` given directly (``tick=0.5, n_levels=9``); they override ``grid``.
    horizon : {"finite", "discounted", "average"}
        See module docstring. Stationary horizons need objective B.
    discount_rate : float, optional
        ``rho > 0`` per time unit, for ``horizon="discounted"``.
    max_iter : int
        Policy-iteration limit (stationary horizons).
    constraints : Constraints, optional
        Per-state restrictions (max spread, per-side tick limits) applied as admissible pairs.

    Returns
    -------
    Solution
        ``method="pi"``; ``theta`` is ``V`` (objective B, currency), the certainty equivalent
        (objective A) or the bias ``h`` (average); ``bid``/``ask`` are grid offsets, NaN where the
        policy does not quote. ``info`` holds the grid, ``dt``, iteration history, ``value_q0`` and
        ``grid_edge_share`` (share of quotes at the first or last level: a large value means the
        grid truncates the optimum; widen ``levels``).
    """
    start = _time.perf_counter()
    horizon, discount_rate, max_iter, constraints, mdp = pi_settings(
        market, problem, grid, horizon, discount_rate, max_iter, constraints, grid_options)
    mask = mdp.pair_mask(constraints)
    info = mdp.describe()
    info["horizon"] = horizon
    info["constraints"] = constraints.to_dict() if constraints is not None else {}
    i0 = int(np.argmin(np.abs(mdp.q)))
    if horizon == "finite":
        value, b_idx, a_idx = mdp.backward(mask)
        info["grid_edge_share"] = _edge_share(mdp, b_idx, a_idx)
        bid, ask = mdp.offsets(b_idx, a_idx)
        bid = np.vstack([bid, bid[-1:]])  # no decision at T: repeat the last one
        ask = np.vstack([ask, ask[-1:]])
        info["value_q0"] = float(value[0, i0])
        info["seconds"] = _time.perf_counter() - start
        mdp.require_finite(value, bid, ask, "pi")
        return Solution("pi", market, problem, mdp.times, mdp.q, value, bid, ask, info, solved_for=mdp.describe())
    beta = math.exp(-discount_rate * mdp.dt) if horizon == "discounted" else 1.0
    value, b, a, history, gain = policy_iteration(mdp, mask, beta, max_iter)
    info["grid_edge_share"] = _edge_share(mdp, b, a)
    bid, ask = mdp.offsets(b, a)
    info.update({
        "iterations": len(history),
        "history": history,
        "discount_rate": discount_rate,
        "beta": beta,
        "value_q0": float(value[i0]),
        "seconds": _time.perf_counter() - start,
    })
    if horizon == "average":
        info["gain_per_step"] = gain
        info["gain_per_time"] = gain / mdp.dt
    mdp.require_finite(value, bid, ask, "pi")
    times = np.array([0.0, problem.T])
    rows = lambda x: np.vstack([x, x])  # noqa: E731
    return Solution("pi", market, problem, times, mdp.q, rows(value), rows(bid), rows(ask), info,
                    solved_for=mdp.describe())


def _edge_share(mdp: TickMDP, b: np.ndarray, a: np.ndarray) -> float:
    """Share of quoted sides at the lowest or highest grid level: if large, widen the grid."""
    last = mdp.grid.n_levels - 1
    sides = np.concatenate([np.ravel(b), np.ravel(a)])
    quoted = sides != mdp.none
    return float(np.mean((sides[quoted] == 0) | (sides[quoted] == last))) if np.any(quoted) else 0.0


def _evaluate_stationary(
    mdp: TickMDP, b: np.ndarray, a: np.ndarray, beta: float, ref: int
) -> tuple[np.ndarray, float]:
    """Value of the stationary policy ``(b, a)``: discounted ``V`` or average ``(h, g)``."""
    reward = mdp.gather(mdp.q_values_linear(mdp.running), b, a)
    up, down = mdp.step_transition(b, a)
    n = reward.size
    if beta < 1.0:
        ab = np.zeros((3, n))
        ab[1] = 1.0 - beta * (1.0 - up - down)
        ab[0, 1:] = -beta * up[:-1]
        ab[2, :-1] = -beta * down[1:]
        return solve_banded((1, 1), ab, reward), 0.0
    mat = np.eye(n) - np.diag(1.0 - up - down)
    mat[np.arange(n - 1), np.arange(1, n)] -= up[:-1]
    mat[np.arange(1, n), np.arange(n - 1)] -= down[1:]
    mat[:, ref] = 1.0  # unknown h_ref = 0 is replaced by the gain g
    try:
        z = np.linalg.solve(mat, reward)
    except np.linalg.LinAlgError:
        raise ValueError(
            "pi (average reward): the evaluated policy is multichain (some inventories never "
            "communicate); use horizon='discounted' with a small discount_rate"
        ) from None
    gain = float(z[ref])
    h = z.copy()
    h[ref] = 0.0
    return h, gain


def policy_iteration(
    mdp: TickMDP, mask: np.ndarray, beta: float, max_iter: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]], float]:
    """Howard's policy iteration for the stationary problem (``beta < 1`` discounted, ``= 1`` average).

    Returns ``(V or h, bid index, ask index, history, gain)``.
    """
    ref = int(np.argmin(np.abs(mdp.q)))
    # start from the myopic policy: best one-step reward
    _, b, a = mdp.best(mdp.q_values_linear(mdp.running), mask)
    history: list[dict[str, Any]] = []
    for it in range(1, max_iter + 1):
        value, gain = _evaluate_stationary(mdp, b, a, beta, ref)
        q_vals = mdp.q_values_linear(mdp.running + beta * value)
        current = mdp.gather(q_vals, b, a)
        best_val, nb, na = mdp.best(q_vals, mask)
        scale = 1.0 + float(np.max(np.abs(current)))
        residual = float(np.max(best_val - current))
        improve = best_val > current + 1e-12 * scale
        history.append({
            "iteration": it,
            "changed": int(np.count_nonzero(improve)),
            "bellman_residual": residual,
            "gain_per_step" if beta == 1.0 else "value_q0": gain if beta == 1.0 else float(value[ref]),
        })
        if not np.any(improve):
            return value, b, a, history, gain
        b = np.where(improve, nb, b)
        a = np.where(improve, na, a)
    raise ValueError(
        f"pi: policy iteration did not converge in max_iter={max_iter} iterations "
        f"(last: {history[-1]['changed']} states changed, Bellman residual {history[-1]['bellman_residual']:.3g})"
    )
