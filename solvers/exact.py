"""Exact solution of the GLFT / Guéant model by a matrix exponential.

With exponential intensities ``Lambda(delta) = A exp(-k delta)`` the change of variable
``v_q(t) = exp(k theta(t, q) / Delta)`` turns the HJB system (objective A or B, bounded
inventory, drift ``mu``, terminal penalty ``ell``) into a linear ODE (GLFT 2013 Thm 3.1,
Guéant 2017 §3)::

    dv/dt = M v,      v_q(T) = exp(-k ell(q) / Delta)
    M_qq        = (k / Delta) (gamma sigma^2 q^2 / 2 - mu q)
    M_q,q+-Delta = -A C_xi              (C_xi from mmray.model.c_xi)

so ``v(t) = exp(-M (T - t)) v(T)``. ``M`` is symmetric tridiagonal, so a single
eigendecomposition ``M = V diag(lambda) V^T`` gives ``v`` at every time of any grid at the
cost of one matrix product. Optimal quotes (Guéant 2017 eq. (3.6))::

    delta_b(t, q) = dtilde + (1/k) ln(v_q / v_{q+Delta}),   delta_a = dtilde + (1/k) ln(v_q / v_{q-Delta})

Accuracy guard: the eigen-expansion sums terms of both signs, so a component of ``v`` many
orders of magnitude below the largest one (far inventories with strong risk aversion) loses
relative accuracy. The solver estimates that loss from the sum of absolute terms; where it
exceeds ``rtol`` it recomputes ``v`` by stepping with ``exp(-M h)`` evaluated as
``e^(-s h) exp((sI - M) h)`` with ``(sI - M) h >= 0`` entrywise, by a Taylor series and
repeated squaring of nonnegative matrices, which keeps every component's relative accuracy.
"""

from __future__ import annotations

import time as _time

import numpy as np
from mmray.solvers.result import Solution
from scipy.linalg import eigh_tridiagonal

from mmray.model import c_xi, delta_tilde
from mmray.params import MarketParams, ProblemParams, inventory_grid

_EPS = np.finfo(float).eps


def generator(market: MarketParams, problem: ProblemParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Diagonal and off-diagonal of ``M`` and the inventory grid: ``(diag, offdiag, q_grid)``."""
    q = inventory_grid(problem, market)
    k, d = market.k, market.trade_size
    diag = (k / d) * (0.5 * problem.gamma * market.sigma**2 * q * q - market.drift * q)
    off = np.full(q.size - 1, -market.A * c_xi(market, problem))
    return diag, off, q


def _log_v_eigen(
    diag: np.ndarray, off: np.ndarray, v_T: np.ndarray, tau: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``log v`` at times-to-go ``tau`` via one eigendecomposition, and a relative error bound."""
    lam, vecs = eigh_tridiagonal(diag, off)
    coef = vecs.T @ v_T
    # shift by the smallest eigenvalue: keeps exp() from overflowing at long horizons
    decay = np.exp(-np.outer(lam - lam[0], tau))  # (n_eig, N)
    w = vecs @ (coef[:, None] * decay)  # (n, N)
    abs_sum = np.abs(vecs) @ (np.abs(coef)[:, None] * decay)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel_err = np.where(w > 0, 4.0 * diag.size * _EPS * abs_sum / w, np.inf)
        log_v = np.log(np.where(w > 0, w, np.nan)) - lam[0] * tau[None, :]
    return log_v.T, rel_err.T


def _expm_nonnegative(B: np.ndarray) -> np.ndarray:
    """``exp(B)`` for an entrywise nonnegative ``B``: Taylor series plus squaring.

    Every operation adds nonnegative numbers, so each entry keeps full relative accuracy,
    however small it is.
    """
    norm = float(np.max(np.sum(B, axis=1))) if B.size else 0.0
    squarings = max(0, int(np.ceil(np.log2(norm / 0.5))) if norm > 0.5 else 0)
    Bs = B / (2.0**squarings)
    result = np.eye(B.shape[0])
    term = np.eye(B.shape[0])
    for j in range(1, 30):
        term = term @ Bs / j
        result = result + term
        if float(term.max(initial=0.0)) <= _EPS * float(result.min(initial=1.0)) * 1e-3:
            break
    for _ in range(squarings):
        result = result @ result
    return result


def _log_v_stepping(
    diag: np.ndarray, off: np.ndarray, v_T: np.ndarray, tau: np.ndarray
) -> np.ndarray:
    """``log v`` at times-to-go ``tau`` (increasing, tau[0] = 0) by positive stepping."""
    n = diag.size
    s = float(diag.max())
    base = np.diag(s - diag)
    base[np.arange(n - 1), np.arange(1, n)] = -off
    base[np.arange(1, n), np.arange(n - 1)] = -off
    steps = np.diff(tau)
    cache: dict[float, np.ndarray] = {}
    log_v = np.empty((tau.size, n))
    v = v_T.copy()
    log_scale = 0.0
    log_v[0] = np.log(v)
    for i, h in enumerate(steps, start=1):
        key = round(float(h), 12)
        P = cache.get(key)
        if P is None:
            P = cache[key] = _expm_nonnegative(base * h)
            if len(cache) > 64:  # very irregular grid: do not hoard memory
                cache.clear()
        v = P @ v
        top = float(v.max())
        v /= top
        log_scale += np.log(top) - s * h
        log_v[i] = np.log(v) + log_scale
    return log_v


def solve_exact(
    market: MarketParams,
    problem: ProblemParams,
    times: np.ndarray | None = None,
    n_times: int = 601,
    rtol: float = 1e-9,
) -> Solution:
    """Solve objective A or B exactly on a time grid.

    Parameters
    ----------
    market, problem : MarketParams, ProblemParams
        Model; ``problem.q_max`` must be set and a multiple of ``market.trade_size``.
    times : array, optional
        Increasing time grid in ``[0, T]``; any spacing. Default ``linspace(0, T, n_times)``.
    n_times : int
        Grid size when ``times`` is not given.
    rtol : float
        Largest acceptable relative error of ``v`` from the eigen-expansion before the
        positive-stepping fallback is used (quote error ~ ``rtol / k``).

    Returns
    -------
    Solution
        ``method="exact"``; ``info`` records the path taken and the wall time.
    """
    start = _time.perf_counter()
    if times is None:
        if n_times < 2:
            raise ValueError(f"n_times must be >= 2, got {n_times}")
        times = np.linspace(0.0, problem.T, n_times)
    times = np.asarray(times, dtype=float)
    if times.ndim != 1 or times.size < 1 or not np.all(np.isfinite(times)):
        raise ValueError("times must be a 1-d array of finite numbers")
    if np.any(np.diff(times) <= 0) or times[0] < 0 or times[-1] > problem.T * (1 + 1e-12):
        raise ValueError(f"times must increase strictly within [0, T={problem.T}]")

    diag, off, q = generator(market, problem)
    k, d = market.k, market.trade_size
    v_T = np.exp(-k * problem.terminal(q) / d)
    v_T = v_T / v_T.max()
    tau = problem.T - times[::-1]  # increasing time-to-go
    tau[0] = max(tau[0], 0.0)
    log_v, rel_err = _log_v_eigen(diag, off, v_T, tau)
    worst = float(np.nanmax(rel_err)) if np.all(np.isfinite(rel_err)) else np.inf
    path = "eigen"
    if not worst <= rtol:
        if tau[0] > 0:
            tau_full = np.concatenate([[0.0], tau])
            log_v = _log_v_stepping(diag, off, v_T, tau_full)[1:]
        else:
            log_v = _log_v_stepping(diag, off, v_T, tau)
        path = "positive-stepping"
    log_v = log_v[::-1]  # back to the order of `times`
    theta = (d / k) * log_v

    base = delta_tilde(market, problem)
    nan_col = np.full((times.size, 1), np.nan)
    bid = np.hstack([base + (log_v[:, :-1] - log_v[:, 1:]) / k, nan_col])
    ask = np.hstack([nan_col, base + (log_v[:, 1:] - log_v[:, :-1]) / k])
    info = {
        "path": path,
        "eigen_rel_err": worst if np.isfinite(worst) else None,
        "n_times": int(times.size),
        "n_q": int(q.size),
        "seconds": _time.perf_counter() - start,
    }
    return Solution("exact", market, problem, times, q, theta, bid, ask, info)


def stationary_quotes(market: MarketParams, problem: ProblemParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Limit ``T - t -> infinity`` of the exact quotes: the ground state of ``M``.

    As ``T - t`` grows, ``v`` aligns with the eigenvector of the smallest eigenvalue of ``M``
    (Perron-Frobenius: it is positive), so the quotes converge to
    ``dtilde + (1/k) ln(f_q / f_{q +- Delta})``. Returns ``(q_grid, bid, ask)``.
    """
    diag, off, q = generator(market, problem)
    _, vec = eigh_tridiagonal(diag, off, select="i", select_range=(0, 0))
    f = np.abs(vec[:, 0])
    log_f = np.log(f)
    base = delta_tilde(market, problem)
    k = market.k
    bid = np.append(base + (log_f[:-1] - log_f[1:]) / k, np.nan)
    ask = np.insert(base + (log_f[1:] - log_f[:-1]) / k, 0, np.nan)
    return q, bid, ask
