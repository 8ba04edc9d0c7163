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

Accuracy guard: the eigen-expansion sums terms of both signs with eigenvectors known to an
absolute (not relative) accuracy, so a component of ``v`` many orders of magnitude below the
largest one (far inventories, strong risk aversion) loses relative accuracy. A second method
keeps it, in the log domain: with ``f`` the positive ground state of ``M`` (``log f`` from a
continued fraction, accurate where ``f`` underflows), ``v = diag(f) w`` and
``exp(-M h) = diag(f) e^(-s h) exp((sI - M~) h) diag(f)^-1``, where ``M~ = diag(f)^-1 M diag(f)``
has equal row sums and ``(sI - M~) h >= 0`` entrywise; its exponential is summed by a Taylor
series and repeated squaring of nonnegative matrices, and ``w`` is kept as ``log w`` and
multiplied band by band (log-sum-exp), so every component keeps full relative accuracy and stays
finite however many orders of magnitude ``v`` spans (``Q = 400``, ``gamma = 1e6``). The solver runs
that method on up to 64 of the grid times (cheap) and compares; if ``log v`` differs by more than
``rtol`` anywhere, or the ground state spans more than double precision, it uses the stepping
method on the whole grid. ``theta`` from stepping carries a common additive error of order
``(Delta / k) eps max(M_qq) T`` (uniformisation), which cancels in every quote.
"""

from __future__ import annotations

import time as _time
from typing import Any

import numpy as np
from scipy.linalg import eigh_tridiagonal

from mmray.checks import integer
from mmray.limits import model_scales, require_finite_solution, require_grid_memory
from mmray.model import c_xi, delta_tilde
from mmray.params import MarketParams, ProblemParams, inventory_grid
from mmray.solvers.result import Solution

_EPS = np.finfo(float).eps
EXACT_TABLES = 10  # float64 arrays of the (time x inventory) grid held at once (measured peak: see tests)
# the ground state spans more than double precision: the eigen-expansion cannot represent v, go
# straight to positive stepping (saves the check)
EIGEN_MAX_LOG_RANGE = 700.0
EXACT_SQUARES = 8  # n x n matrices: eigenvectors, Taylor terms and squarings, one cached propagator


def generator(market: MarketParams, problem: ProblemParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Diagonal and off-diagonal of ``M`` and the inventory grid: ``(diag, offdiag, q_grid)``."""
    q = inventory_grid(problem, market)
    k, d = market.k, market.trade_size
    diag = (k / d) * (0.5 * problem.gamma * market.sigma**2 * q * q - market.drift * q)
    off = np.full(q.size - 1, -market.A * c_xi(market, problem))
    return diag, off, q


def _log_v_eigen(diag: np.ndarray, off: np.ndarray, log_v_T: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """``log v`` at times-to-go ``tau``, shape ``(len(tau), n)``, via one eigendecomposition.

    NaN where the expansion gives ``v <= 0`` (cancellation below its absolute accuracy).
    """
    lam, vecs = eigh_tridiagonal(diag, off)
    coef = vecs.T @ np.exp(log_v_T)
    # shift by the smallest eigenvalue: keeps exp() from overflowing at long horizons
    decay = np.exp(-np.outer(lam - lam[0], tau))  # (n_eig, N)
    w = vecs @ (coef[:, None] * decay)  # (n, N)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_v = np.log(np.where(w > 0, w, np.nan)) - lam[0] * tau[None, :]
    return log_v.T


def _expm_nonnegative(B: np.ndarray) -> tuple[np.ndarray, float]:
    """``exp(B) = P e^c`` for an entrywise nonnegative ``B``: returns ``(P, c)``, max entry of P is 1.

    Taylor series of ``B / 2^m`` plus ``m`` squarings, renormalised after each squaring so that
    nothing overflows. Every operation adds nonnegative numbers, so each entry keeps full
    relative accuracy, however small it is.
    """
    norm = float(np.max(np.sum(B, axis=1))) if B.size else 0.0
    squarings = int(np.ceil(np.log2(norm / 0.5))) if norm > 0.5 else 0
    Bs = B / (2.0**squarings)
    result = np.eye(B.shape[0])
    term = np.eye(B.shape[0])
    for j in range(1, 30):
        term = term @ Bs / j
        result = result + term
        if float(term.max(initial=0.0)) <= _EPS * 1e-3 * float(result.min(initial=1.0)):
            break
    log_scale = 0.0
    for _ in range(squarings):
        result = result @ result
        top = float(result.max())
        result /= top
        log_scale = 2.0 * log_scale + np.log(top)
    return result, log_scale


def log_ground_state(diag: np.ndarray, coupling: float) -> tuple[float, np.ndarray]:
    """Smallest eigenvalue ``lambda_0`` of ``M`` and ``log f`` of its positive eigenvector (max 0).

    ``M`` has diagonal ``diag`` and off-diagonals ``-coupling < 0``. ``log f`` keeps full relative
    accuracy in the tails, where ``f`` itself underflows: each row of ``M f = lambda_0 f`` reads
    ``coupling (f_{i-1} + f_{i+1}) = (d_i - lambda_0) f_i``, so the ratios
    ``rho_i = f_i / f_{i-1}`` obey the continued fraction
    ``rho_i = coupling / (d_i - lambda_0 - coupling rho_{i+1})``, ``rho_{n-1} = coupling / (d_{n-1} - lambda_0)``,
    which is stable from the end inward (it selects the decaying solution), and symmetrically from
    the start. The two meet at the smallest diagonal entry. Every denominator equals
    ``coupling f_{i-1} / f_i > 0``; a non-positive one (rounding, far from any tail) is replaced by a
    flat ratio, which keeps ``f`` positive: any positive ``f`` makes the similarity transform of
    :func:`_log_v_stepping` exact, only its dynamic range depends on how close ``f`` is to the ground state.
    """
    n = diag.size
    lam0 = float(eigh_tridiagonal(diag, np.full(n - 1, -coupling), eigvals_only=True,
                                  select="i", select_range=(0, 0))[0])
    mid = int(np.argmin(diag))
    log_f = np.zeros(n)
    # log(f_i / f_{i-1}) for i > mid from the top; log(f_i / f_{i+1}) for i < mid from the bottom
    for order in (range(n - 1, mid, -1), range(0, mid)):
        ratio = 0.0
        for i in order:
            den = diag[i] - lam0 - coupling * ratio
            ratio = coupling / den if den > 0 and np.isfinite(den) else 1.0
            log_f[i] = np.log(ratio)
    up = np.cumsum(log_f[mid + 1 :])
    down = np.cumsum(log_f[:mid][::-1])[::-1]
    log_f[mid + 1 :] = up
    log_f[:mid] = down
    log_f[mid] = 0.0
    return lam0, log_f - log_f.max()


def _log_matvec(P: np.ndarray, u: np.ndarray, width: float = 600.0) -> np.ndarray:
    """``log(P @ exp(u))`` for a nonnegative ``P`` and any finite ``u``, without overflow or underflow.

    The entries of ``u`` are split into bands at most ``width`` wide (``e^-600`` is far above the
    smallest double); column ``b`` of ``E`` holds ``exp(u_j - top_b)`` for the ``j`` of band ``b``
    and 0 elsewhere, so ``P @ E`` is one BLAS product, and its columns' logarithms plus ``top_b``
    are combined by log-sum-exp. Every term is nonnegative, so each entry keeps full relative
    accuracy.
    """
    top = float(u.max())
    with np.errstate(divide="ignore"):
        if top - float(u.min()) <= width:
            return top + np.log(P @ np.exp(u - top))
        band = np.floor((top - u) / width).astype(np.int64)
        used, band = np.unique(band, return_inverse=True)
        tops = top - used * width
        E = np.zeros((u.size, used.size))
        E[np.arange(u.size), band] = np.exp(u - tops[band])
        logs = np.log(P @ E) + tops
    peak = logs.max(axis=1, keepdims=True)
    return peak[:, 0] + np.log(np.sum(np.exp(logs - peak), axis=1))


def _log_v_stepping(
    diag: np.ndarray, coupling: float, log_f: np.ndarray, log_v_T: np.ndarray, tau: np.ndarray
) -> np.ndarray:
    """``log v`` at times-to-go ``tau`` (increasing, tau[0] = 0) by positive stepping in the log domain.

    With ``D = diag(f)``, ``f`` the ground state (``log_f`` from :func:`log_ground_state`), ``v = D w`` and
    ``w(tau) = exp(-M~ tau) w(0)`` with ``M~ = D^-1 M D`` (off-diagonals ``-coupling f_{i+-1} / f_i``).
    ``M~`` is similar to ``M`` and its rows sum to ``lambda_0``: its uniformised propagator
    ``exp(-M~ h) = e^(-s h) exp((sI - M~) h)``, ``s = max d``, is entrywise nonnegative with equal
    row sums, so no row underflows however far ``v`` spans (``v_Q / v_0`` below ``1e-308`` at
    ``Q = 400`` with the GLFT parameters). ``w`` is kept as ``log w`` and multiplied by
    :func:`_log_matvec`.
    """
    n = diag.size
    s = float(diag.max())
    lr = np.diff(log_f)  # log(f_{i+1} / f_i)
    with np.errstate(over="ignore"):
        upper = np.exp(np.log(coupling) + lr)
        lower = np.exp(np.log(coupling) - lr)
    if not (np.all(np.isfinite(upper)) and np.all(np.isfinite(lower))):
        raise ValueError(
            "exact: the value function's ratio between neighbouring inventories overflows double precision "
            f"(A * C_xi = {coupling:.3g} against a largest generator rate {s:.3g}); choose a larger A or "
            "smaller gamma, sigma or q_max"
        )
    base = np.diag(s - diag)
    base[np.arange(n - 1), np.arange(1, n)] = upper
    base[np.arange(1, n), np.arange(n - 1)] = lower
    steps = np.diff(tau)
    cache: dict[float, tuple[np.ndarray, float]] = {}
    log_v = np.empty((tau.size, n))
    u = log_v_T - log_f
    log_v[0] = log_v_T
    for i, h in enumerate(steps, start=1):
        key = float(f"{h:.11g}")  # equal steps up to float noise share one propagator
        if key not in cache:
            if len(cache) >= 64:  # very irregular grid: do not hoard memory
                cache.clear()
            cache[key] = _expm_nonnegative(base * h)
        P, log_p = cache[key]
        u = _log_matvec(P, u) + (log_p - s * h)
        log_v[i] = u + log_f
    return log_v


def exact_settings(
    market: MarketParams, problem: ProblemParams, times: Any, n_times: Any, rtol: Any
) -> tuple[np.ndarray, float]:
    """The checked options of :func:`solve_exact`: its time grid and ``rtol`` (``ValueError`` naming
    the option otherwise). Also what a sweep file is checked with before anything runs."""
    if isinstance(rtol, bool) or not isinstance(rtol, int | float | np.integer | np.floating) or not rtol >= 0:
        raise ValueError(f"exact option rtol must be a number >= 0 (0: always the stepping path, inf: never), "
                         f"got {rtol!r}")
    rtol = float(rtol)
    model_scales(market, problem)
    explicit = times
    if times is None:
        n_times = integer("exact option n_times", n_times, ge=2)
        require_grid_memory("exact solver", n_times, f"n_times={n_times}", market, problem,
                            tables=EXACT_TABLES, square=EXACT_SQUARES)
        times = np.linspace(0.0, problem.T, n_times)
    try:
        times = np.asarray(times, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"exact option times must be a list of numbers, got {times!r}") from None
    if times.ndim != 1 or times.size < 1 or not np.all(np.isfinite(times)):
        raise ValueError("exact option times must be a 1-d array of finite numbers")
    if np.any(np.diff(times) <= 0) or times[0] < 0 or times[-1] > problem.T * (1 + 1e-12):
        raise ValueError(f"exact option times must increase strictly within [0, T={problem.T}]")
    if explicit is not None:
        require_grid_memory("exact solver", times.size, "option times", market, problem,
                            tables=EXACT_TABLES, square=EXACT_SQUARES)
    return times, rtol


def solve_exact(
    market: MarketParams,
    problem: ProblemParams,
    times: np.ndarray | None = None,
    n_times: int = 1001,
    rtol: float = 1e-6,
) -> Solution:
    """Solve objective A or B exactly on a time grid.

    Parameters
    ----------
    market, problem : MarketParams, ProblemParams
        Model; ``problem.q_max`` must be set and a multiple of ``market.trade_size``.
    times : array, optional
        Increasing time grid in ``[0, T]``; any spacing. Default ``linspace(0, T, n_times)``.
    n_times : int
        Grid size when ``times`` is not given (default 1001, as the ``optimal`` strategy and
        ``mmray solve`` use, so both give the same table).
    rtol : float
        Largest acceptable difference in ``log v`` (relative error of ``v``) between the
        eigen-expansion and the positive-stepping check before the stepping method is used for
        the whole grid; quote errors are at most ``2 rtol / k``.

    Returns
    -------
    Solution
        ``method="exact"``; ``info`` records the path taken and the wall time.
    """
    start = _time.perf_counter()
    times, rtol = exact_settings(market, problem, times, n_times, rtol)

    diag, off, q = generator(market, problem)
    k, d = market.k, market.trade_size
    log_v_T = -k * problem.terminal(q) / d  # v_q(T) = exp(-k ell(q) / Delta)
    log_v_T = log_v_T - log_v_T.max()
    coupling = -float(off[0])
    tau = problem.T - times[::-1]  # increasing time-to-go
    tau[0] = max(tau[0], 0.0)
    if tau[0] > 0:  # stepping starts from T
        tau_full = np.concatenate([[0.0], tau])
    else:
        tau_full = tau
    _, log_f = log_ground_state(diag, coupling)
    check_err = np.nan
    if np.ptp(log_f) < EIGEN_MAX_LOG_RANGE:
        with np.errstate(under="ignore"):
            log_v = _log_v_eigen(diag, off, log_v_T, tau)
        stride = max(1, -(-(tau_full.size - 1) // 63))
        check = np.arange(0, tau_full.size, stride)
        reference = _log_v_stepping(diag, coupling, log_f, log_v_T, tau_full[check])
        at = check - (tau_full.size - tau.size)
        keep = at >= 0
        check_err = float(np.max(np.abs(log_v[at[keep]] - reference[keep]))) if keep.any() else 0.0
    path = "eigen"
    # also catches NaN from a non-positive reconstruction, at the checked times or any other
    if not (check_err <= rtol and np.all(np.isfinite(log_v))):
        log_v = _log_v_stepping(diag, coupling, log_f, log_v_T, tau_full)[tau_full.size - tau.size :]
        path = "positive-stepping"
    log_v = log_v[::-1]  # back to the order of `times`
    theta = (d / k) * log_v

    base = delta_tilde(market, problem)
    nan_col = np.full((times.size, 1), np.nan)
    bid = np.hstack([base + (log_v[:, :-1] - log_v[:, 1:]) / k, nan_col])
    ask = np.hstack([nan_col, base + (log_v[:, 1:] - log_v[:, :-1]) / k])
    due = np.ones(bid.shape, dtype=bool)
    due[:, -1] = False  # no bid at Q; no ask at -Q (mirrored)
    require_finite_solution("exact", theta, bid, ask, "rescale the units (price, time) or choose less extreme "
                            "gamma, sigma, A, k, T or q_max", quoted=(due, due[:, ::-1]))
    info = {
        "path": path,
        "eigen_check_err": check_err if np.isfinite(check_err) else None,
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
    model_scales(market, problem)
    diag, off, q = generator(market, problem)
    _, log_f = log_ground_state(diag, -float(off[0]))
    base = delta_tilde(market, problem)
    k = market.k
    bid = np.append(base + (log_f[:-1] - log_f[1:]) / k, np.nan)
    ask = np.insert(base + (log_f[1:] - log_f[:-1]) / k, 0, np.nan)
    return q, bid, ask
