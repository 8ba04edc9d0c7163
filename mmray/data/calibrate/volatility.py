r"""σ (and the optional drift μ) from mid changes on a clock grid, with batch-means intervals.

The mid ``(bid+ask)/2`` is sampled every ``interval`` seconds on a clock grid (previous-tick:
the last quote at or before each grid time, in exchange time ``ts``). With increments
:math:`r_i`, the estimator is the realised variance with ``lags`` autocovariance corrections
(Zhou 1996; a flat realised kernel, Barndorff-Nielsen et al. 2008):

.. math::  \hat\sigma^2 = \frac{1}{n\,\Delta}\sum_i z_i,\qquad
           z_i = r_i^2 + 2\sum_{h=1}^{L} r_i r_{i-h}.

Under i.i.d. microstructure noise of variance ω² in the sampled mid, :math:`E[r_i^2] =
\sigma^2\Delta + 2\omega^2` and :math:`E[r_i r_{i-1}] = -\omega^2`, so :math:`E[z_i] = \sigma^2\Delta`
for every ``L >= 1``: the estimator is unbiased at the chosen interval whatever the noise level
(plain realised variance, ``lags=0``, is biased up by 2ω²/Δ). The result's ``signature`` lists
plain realised σ at several intervals (a volatility signature plot): a curve that changes with
the interval shows noise or lead-lag. Interval: a Student-t interval from the means of B
contiguous batches of the :math:`z_i` (:func:`_batch_interval`; batch means: valid for
dependent, non-Gaussian :math:`z_i`; with an intraday volatility pattern it is conservative),
mapped to σ by the square root. Drift (optional): :math:`\hat\mu = \sum r_i/(n\Delta)`,
batch-means interval; its standard error is σ/√T, hopelessly wide over a day. Increments that
overlap a trading halt are left out.

References
----------
Zhou, B. (1996), "High-frequency data and volatility in foreign-exchange rates", JBES 14(1).
Barndorff-Nielsen, Hansen, Lunde, Shephard (2008), "Designing realized kernels", Econometrica 76.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import stats

from mmray.data.calibrate.events import _NS, _Day
from mmray.data.calibrate.settings import Settings

__all__ = ["SIGNATURE_INTERVALS"]

#: Intervals (s) of the volatility signature (plain realised σ) reported per day.
SIGNATURE_INTERVALS: tuple[float, ...] = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0)


def _increments(day: _Day, interval: float, lags: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grid start times (ns), increments r_i and z_i (NaN where unusable), in time order."""
    d = round(interval * _NS)
    first = max(day.start, int(day.q_ts[0]))
    g = np.arange(-(-first // d) * d, day.end // d * d + 1, d, dtype=np.int64)
    if g.size < 2:
        return np.empty(0, np.int64), np.empty(0), np.empty(0)
    mids = day.q_mid[np.searchsorted(day.q_ts, g, side="right") - 1]
    r = np.diff(mids)
    t0 = g[:-1]
    for h0, h1 in day.halts:  # increments overlapping a halt are not price moves
        r[(t0 < h1) & (t0 + d > h0)] = np.nan
    z = r * r
    for h in range(1, lags + 1):
        cross = np.full(r.size, np.nan)
        cross[h:] = r[h:] * r[:-h]
        z = z + 2 * cross
    return t0, r, z


def _batch_interval(x: np.ndarray, batches: int, level: float) -> tuple[float, float, float]:
    r"""Mean of `x` and its t-interval from the means of contiguous batches (at least 5 per batch).

    The variance of the batch means is the mean square successive difference (von Neumann 1941),
    :math:`\sum_j (m_{j+1} - m_j)^2 / (2(B-1))`: unbiased for dependent data within batches like
    the classic batch-means variance, but a slow change of level over the day (intraday
    volatility pattern) barely inflates it. Quantile: Student t with the effective degrees of
    freedom of that estimator for normal batch means, :math:`2(B-1)^2/(3B-4)` (13 for B = 20).
    """
    n = x.size
    if n == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    b = min(batches, n // 5)
    if b < 2:
        return mean, math.nan, math.nan
    m = np.array([c.mean() for c in np.array_split(x, b)])
    var_m = float(np.sum(np.diff(m) ** 2)) / (2 * (b - 1))
    df = 2 * (b - 1) ** 2 / (3 * b - 4)
    half = stats.t.ppf((1 + level) / 2, df) * math.sqrt(var_m / b)
    return mean, mean - half, mean + half


def _sigma(z: np.ndarray, r: np.ndarray, s: Settings) -> dict[str, Any]:
    z = z[np.isfinite(z)]
    var, lo, hi = _batch_interval(z, s.batches, s.level)
    var, lo, hi = var / s.interval, lo / s.interval, hi / s.interval
    out: dict[str, Any] = {
        "sigma": math.sqrt(var) if var > 0 else math.nan,
        "sigma_ci": (math.sqrt(max(lo, 0.0)) if math.isfinite(lo) else math.nan,
                     math.sqrt(hi) if hi > 0 else math.nan),
        "n_increments": int(z.size),
    }
    if s.drift:
        rr = r[np.isfinite(r)]
        mu, mlo, mhi = _batch_interval(rr, s.batches, s.level)
        out["drift"], out["drift_ci"] = mu / s.interval, (mlo / s.interval, mhi / s.interval)
    return out


def _signature(day: _Day) -> tuple[tuple[float, float], ...]:
    """Plain realised σ (price/√s) at each of ``SIGNATURE_INTERVALS`` with ≥ 10 increments."""
    out = []
    span = (day.end - max(day.start, int(day.q_ts[0]))) / _NS
    for iv in SIGNATURE_INTERVALS:
        if span / iv < 10:
            continue
        _, r, _ = _increments(day, iv, 0)
        r = r[np.isfinite(r)]
        if r.size:
            out.append((iv, math.sqrt(float(np.mean(r * r)) / iv)))
    return tuple(out)
