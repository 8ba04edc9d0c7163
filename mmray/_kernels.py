"""Fused numba kernel for one simulator step of a table policy.

The numpy version of a step makes about twenty passes over the path arrays; this kernel makes
one. Random numbers are still drawn by numpy (same generator, same order) before the call,
so the kernel changes speed, not the numbers. Floating-point operations are done in the same
order as the numpy path of :func:`mmray.sim.simulate_chunk` (no fastmath).
"""

from __future__ import annotations

import numpy as np
from numba import njit


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
        income = off_b[j] * nb + off_a[j] * na
        dq = nb - na
        qi[i] = j + np.intp(dq)
        if d != 1.0:
            dq *= d
            income *= d
        qn = q[i] + dq
        q[i] = qn
        trades[i] += nb + na
        q2[i] += qn * qn
        m = mtm[i] + income
        if gaussian:
            dz = z[i] * sq
        else:
            dz = -sq if z[i] < 0.5 else sq
        if mu_dt != 0.0:
            dz += mu_dt
        s[i] += dz
        m += qn * dz
        mtm[i] = m
        pk = max(peak[i], m)
        peak[i] = pk
        mdd[i] = max(mdd[i], pk - m)
    return spread_total, spread_steps
