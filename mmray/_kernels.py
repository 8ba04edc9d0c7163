"""Fused numba kernel for one simulator step of a table policy.

The numpy version of a step makes about twenty passes over the path arrays; this kernel makes
one. Random numbers are still drawn by numpy (same generator, same order) before the call,
so the kernel changes speed, not the numbers. Floating-point operations are done in the same
order as the numpy path of :func:`mmray.sim.simulate_chunk` (no fastmath).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True, inline="always")
def _settle(
    i: int, fb: bool, fa: bool, b: float, a: float, q: np.ndarray, s: np.ndarray, mtm: np.ndarray,
    trades: np.ndarray, q2: np.ndarray, peak: np.ndarray, mdd: np.ndarray, z: np.ndarray,
    gaussian: bool, d: float, sq: float, mu_dt: float,
) -> None:
    """Path ``i`` after its fills (``fb``, ``fa`` at offsets ``b``, ``a``): trades, inventory, ``q^2``,
    then the mid move from its variate ``z[i]`` (which becomes the mid change), mark-to-market PnL,
    its peak and drawdown. Shared by both kernels, in the operation order of the numpy step."""
    income = (b if fb else 0.0) + (a if fa else 0.0)
    dq = (1.0 if fb else 0.0) - (1.0 if fa else 0.0)
    if d != 1.0:
        dq *= d
        income *= d
    qn = q[i] + dq
    q[i] = qn
    trades[i] += (1.0 if fb else 0.0) + (1.0 if fa else 0.0)
    q2[i] += qn * qn
    m = mtm[i] + income
    if gaussian:
        dz = z[i] * sq
    else:
        dz = -sq if z[i] < 0.5 else sq
    if mu_dt != 0.0:
        dz += mu_dt
    z[i] = dz
    s[i] += dz
    m += dz * qn
    mtm[i] = m
    pk = max(peak[i], m)
    peak[i] = pk
    mdd[i] = max(mdd[i], pk - m)


@njit(cache=True, nogil=True)
def table_step(
    qi: np.ndarray, q: np.ndarray, s: np.ndarray, mtm: np.ndarray, trades: np.ndarray, q2: np.ndarray,
    peak: np.ndarray, mdd: np.ndarray,
    e_bid: np.ndarray, e_ask: np.ndarray, z: np.ndarray,
    thr_b: np.ndarray, thr_a: np.ndarray, off_b: np.ndarray, off_a: np.ndarray, spread: np.ndarray,
    linear: bool, gaussian: bool, d: float, sq: float, mu_dt: float,
) -> tuple[float, int]:
    """Advance every path by one step (in place); return the sum and count of quoted spreads.

    ``thr_*`` are per-inventory-level fill thresholds (``linear``: fill if ``E > thr``;
    poisson: fill if ``E < thr``); ``off_*`` the offsets (0 where not quoted, which also has a
    threshold that never fills); ``spread`` the quoted spread per level, NaN where a side is not
    quoted. ``z`` holds standard normals (``gaussian``) or uniforms.
    """
    spread_total = 0.0
    spread_steps = 0
    # branch-free body: fills happen with probability ~0.1-0.5 per step, which branches mispredict
    for i in range(qi.size):
        j = qi[i]
        spr = spread[j]
        ok = not np.isnan(spr)
        spread_total += spr if ok else 0.0
        spread_steps += 1 if ok else 0
        if linear:
            nb = 1.0 if e_bid[i] > thr_b[j] else 0.0
            na = 1.0 if e_ask[i] > thr_a[j] else 0.0
        else:
            nb = 1.0 if e_bid[i] < thr_b[j] else 0.0
            na = 1.0 if e_ask[i] < thr_a[j] else 0.0
        qi[i] = j + np.intp(nb - na)
        _settle(i, nb == 1.0, na == 1.0, off_b[j], off_a[j], q, s, mtm, trades, q2, peak, mdd, z,
                gaussian, d, sq, mu_dt)
    return spread_total, spread_steps


@njit(cache=True, nogil=True)
def quote_step(
    q: np.ndarray, s: np.ndarray, mtm: np.ndarray, trades: np.ndarray, q2: np.ndarray,
    peak: np.ndarray, mdd: np.ndarray, ds: np.ndarray,
    bid_offset: np.ndarray, ask_offset: np.ndarray, bid_filled: np.ndarray, ask_filled: np.ndarray,
    e_bid: np.ndarray, e_ask: np.ndarray, db: np.ndarray, da: np.ndarray, spread: np.ndarray,
    bounded: bool, q_max: float, tick: float, k: float, log_adt: float, adt: float,
    linear: bool, gaussian: bool, d: float, sq: float, mu_dt: float,
) -> None:
    """:func:`mmray.sim.market_step` in one pass over the paths, for quotes given per path.

    ``db``/``da`` hold the quoted offsets (length ``n``, or 1 to quote the same on every path;
    ``inf`` = not quoted); ``ds`` holds the step's price variates on entry (standard normals or
    uniforms) and the mid changes on exit. Writes the applied offsets, the fill flags, the quoted
    spread ``bid + ask`` of each path (``inf`` where a side is off; the caller sums the finite
    ones, as the numpy twin does) and the path state in place. The arithmetic is that of
    :func:`mmray.sim.market_step_numpy`, operation for operation (tested equal).
    """
    one_b = db.size == 1
    one_a = da.size == 1
    for i in range(q.size):
        b = db[0] if one_b else db[i]
        a = da[0] if one_a else da[i]
        qi = q[i]
        if bounded:
            if qi + d > q_max + 1e-9:
                b = np.inf
            if qi - d < -q_max - 1e-9:
                a = np.inf
        if tick > 0.0:
            si = s[i]
            b = si - np.floor((si - b) / tick + 1e-9) * tick
            a = np.ceil((si + a) / tick - 1e-9) * tick - si
        bid_offset[i] = b
        ask_offset[i] = a
        if linear:
            fb = e_bid[i] > k * b - log_adt
            fa = e_ask[i] > k * a - log_adt
        else:
            fb = e_bid[i] < np.exp(-k * b) * adt
            fa = e_ask[i] < np.exp(-k * a) * adt
        bid_filled[i] = fb
        ask_filled[i] = fa
        spread[i] = b + a
        _settle(i, fb, fa, b, a, q, s, mtm, trades, q2, peak, mdd, ds, gaussian, d, sq, mu_dt)
