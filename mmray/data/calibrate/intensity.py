r"""A and k of the fill intensity Λ(δ) = A e^(−kδ): bucketed Poisson MLE, profile intervals, G².

A quote at distance δ from the mid is filled when a market order reaches at least δ (the reach:
:mod:`mmray.data.calibrate.events`), so the empirical intensity is :math:`\hat\Lambda(\delta) =
\#\{D \ge \delta\}/E`, with exposure E = 2 × the active seconds (both sides pooled; halts
excluded). The fit uses reaches in ``[lo, hi)`` counted in buckets of width ``w`` (default half a
tick, the lattice reaches live on; without a tick (hi−lo)/30) plus the open cell ``[hi, ∞)``: the
counts are independent Poisson variables with means :math:`E A (e^{-k a_j} - e^{-k a_{j+1}})`,
which is exactly the model for :math:`\Lambda` on ``[lo, hi]`` (orders below ``lo`` do not enter
it; orders beyond ``hi`` enter only through :math:`\Lambda(hi)`). With :math:`x = e^{-kw}` the
maximum-likelihood estimate is closed-form:

.. math::  \hat x = \frac{S}{S + N'},\quad \hat k = -\ln\hat x / w,\quad
           \hat A = \frac{N}{E}\,e^{\hat k\,lo},

N the orders in the fit, N' those below ``hi``, S = Σ (cell index) × count (the tail cell
counting m). Default range (:func:`_grid`): ``lo`` = the median half-spread before the orders
(the touch, floored to the bucket grid), ``hi`` = the 99th percentile of the reaches (ceiled).
Intervals are profile-likelihood intervals (likelihood-ratio, χ²₁ quantile at ``level``), for k
from the conditional likelihood and for A maximising over k at each A. Goodness of fit: the
Poisson deviance G² over the cells, adjacent cells merged until each expects ≥ 5 orders, with
(cells − 2) degrees of freedom (approximate). The non-parametric :math:`\hat\Lambda` per bucket
(:class:`Intensity`) covers every reach, inside the fit range or not.

References
----------
Guéant, O. (2017), "Optimal market making", Appl. Math. Finance 24, arXiv:1605.01862.
Avellaneda, M., Stoikov, S. (2008), "High-frequency trading in a limit order book", Quant. Finance 8.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import optimize, stats

from mmray.data.calibrate.settings import Settings

__all__ = ["GoodnessOfFit", "Intensity"]

_EPS = 1e-6  # bucket-edge tolerance, in bucket widths (reaches are differences of floats)
_MAX_DISPLAY_BUCKETS = 120
_MIN_EXPECTED = 5.0  # goodness of fit: merge cells until each expects this many orders


@dataclass(frozen=True)
class GoodnessOfFit:
    """Poisson deviance of the fitted intensity over the fit cells (merged to ≥ 5 expected).

    ``statistic`` G² = 2 Σ n log(n/μ); ``df`` = cells − 2; ``pvalue`` from χ²(df) (approximate;
    NaN when df < 1). Small p-values say the exponential does not fit Λ on the range.
    """

    statistic: float
    df: int
    pvalue: float
    cells: int


@dataclass(frozen=True)
class Intensity:
    """The non-parametric intensity Λ̂(δ) per distance bucket, next to the fitted one.

    ``delta``: bucket left edges (price from the mid); ``count``: market orders whose reach is in
    ``[delta_i, delta_{i+1})``; ``intensity``: Λ̂(delta_i) = orders reaching ≥ delta_i per second
    and side; ``stderr``: its Poisson standard error; ``fitted``: A e^(−k delta_i); ``in_fit``:
    the edge lies in the fit range; ``width``: bucket width (a multiple of the fit's bucket).
    """

    delta: tuple[float, ...]
    count: tuple[int, ...]
    intensity: tuple[float, ...]
    stderr: tuple[float, ...]
    fitted: tuple[float, ...]
    in_fit: tuple[bool, ...]
    width: float


class _Cells:
    """Reach counts on the fit grid: m cells ``[lo + j w, lo + (j+1) w)`` and the tail ``[hi, ∞)``."""

    def __init__(self, reach: np.ndarray, lo: float, w: float, m: int) -> None:
        r = reach[np.isfinite(reach)]
        j = np.floor((r - lo) / w + _EPS).astype(np.int64)
        j = j[j >= 0]
        self.lo, self.w, self.m = lo, w, m
        self.counts = np.bincount(np.minimum(j, m), minlength=m + 1).astype(np.float64)  # last = tail
        self.N = float(self.counts.sum())
        self.N_below = float(self.counts[:m].sum())  # N'
        self.S = float(np.dot(np.arange(m + 1), self.counts))

    def probs(self, x: float) -> np.ndarray:
        j = np.arange(self.m + 1, dtype=np.float64)
        p = x ** j * (1 - x)
        p[-1] = x ** self.m
        return p


def _loglik(A: float, k: float, c: _Cells, E: float) -> float:
    """ℓ(A, k) = N ln(EA) − N k lo − E A e^(−k lo) − S w k + N' ln(1 − e^(−kw)) (constants dropped)."""
    return (c.N * math.log(E * A) - c.N * k * c.lo - E * A * math.exp(-k * c.lo) - c.S * c.w * k
            + c.N_below * math.log(-math.expm1(-k * c.w)))


def _lr_bounds(f: Callable[[float], float], theta: float, drop: float) -> tuple[float, float]:
    """Roots of f(θ) = f(θ̂) − drop either side of θ̂ (f concave-unimodal, → −∞ both ways)."""
    target = f(theta) - drop
    out = []
    for sign in (-1.0, 1.0):
        step = 0.05
        inner, outer = theta, theta + sign * step
        for _ in range(11):  # out to e^±51 times the estimate, then the bound is reported as NaN
            if f(outer) < target:
                break
            inner, step = outer, step * 2
            outer = theta + sign * step
        else:
            out.append(math.nan)
            continue
        out.append(optimize.brentq(lambda t: f(t) - target, min(inner, outer), max(inner, outer), xtol=1e-12))
    return out[0], out[1]


def _no_fit(note: str) -> dict[str, Any]:
    """The estimates of :func:`_fit_cells` when A and k cannot be fitted: NaN, and why (`note`)."""
    nan2 = (math.nan, math.nan)
    return {"A": math.nan, "A_ci": nan2, "k": math.nan, "k_ci": nan2, "gof": None, "note": note}


def _fit_cells(c: _Cells, E: float, level: float) -> dict[str, Any]:
    """MLE of A and k on the cells, profile-likelihood intervals, goodness of fit.

    Returns ``A``, ``A_ci``, ``k``, ``k_ci``, ``gof`` (:class:`GoodnessOfFit` or ``None``) and
    ``note`` (why the estimates are NaN; empty when they are not).
    """
    if c.N == 0 or E <= 0:
        return _no_fit("no market orders in the fit range")
    if c.N_below == 0:
        return _no_fit("every order in the fit reaches beyond hi: k is not identified (raise hi)")
    if c.S == 0:
        return _no_fit("every order in the fit is in the first bucket: k is not identified (smaller bucket or lo)")
    x = c.S / (c.S + c.N_below)
    k = -math.log(x) / c.w
    A = c.N / E * math.exp(k * c.lo)
    q = stats.chi2.ppf(level, 1) / 2

    def cond(logk: float) -> float:  # conditional (multinomial) log-likelihood of k
        kk = math.exp(logk)
        return -c.S * c.w * kk + c.N_below * math.log(-math.expm1(-kk * c.w))

    klo, khi = _lr_bounds(cond, math.log(k), q)

    def best_k(a: float) -> float:  # argmax_k ℓ(a, k): root of a decreasing score
        if c.lo == 0:
            return k

        def score(logk: float) -> float:
            kk = math.exp(logk)
            with np.errstate(over="ignore"):
                tail = c.N_below * c.w / np.expm1(kk * c.w)
            return float(-c.N * c.lo - c.S * c.w + E * a * c.lo * math.exp(-kk * c.lo) + tail)

        lo_, hi_ = math.log(k) - 0.5, math.log(k) + 0.5
        while score(lo_) < 0:
            lo_ -= 1.0
        while score(hi_) > 0:
            hi_ += 1.0
        return math.exp(optimize.brentq(score, lo_, hi_, xtol=1e-13))

    def profile_A(logA: float) -> float:
        a = math.exp(logA)
        return _loglik(a, best_k(a), c, E)

    alo, ahi = _lr_bounds(profile_A, math.log(A), q)
    p = c.probs(x)
    return {"A": A, "A_ci": (math.exp(alo), math.exp(ahi)), "k": k, "k_ci": (math.exp(klo), math.exp(khi)),
            "gof": _deviance(c.counts, c.N * p), "note": ""}


def _deviance(n: np.ndarray, mu: np.ndarray) -> GoodnessOfFit:
    """G² over cells merged left to right until each expects ≥ 5 (the remainder joins the last)."""
    groups_n, groups_mu, acc_n, acc_mu = [], [], 0.0, 0.0
    for ni, mi in zip(n, mu, strict=True):
        acc_n, acc_mu = acc_n + ni, acc_mu + mi
        if acc_mu >= _MIN_EXPECTED:
            groups_n.append(acc_n)
            groups_mu.append(acc_mu)
            acc_n = acc_mu = 0.0
    if acc_mu > 0 or acc_n > 0:
        if groups_n:
            groups_n[-1] += acc_n
            groups_mu[-1] += acc_mu
        else:
            groups_n, groups_mu = [acc_n], [acc_mu]
    gn, gm = np.array(groups_n), np.array(groups_mu)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(gn > 0, gn * np.log(gn / gm), 0.0) - (gn - gm)
    g2 = float(2 * terms.sum())
    df = gn.size - 2
    return GoodnessOfFit(statistic=g2, df=int(df), pvalue=float(stats.chi2.sf(g2, df)) if df >= 1 else math.nan,
                         cells=int(gn.size))


def _grid(reach: np.ndarray, half: np.ndarray, tick: float, s: Settings) -> tuple[float, float, float, str]:
    """``(lo, hi, w, note)`` of the intensity fit: settings first, data-driven defaults for the rest."""
    req_lo, req_hi = s.fit_range if s.fit_range is not None else (None, None)
    r = reach[np.isfinite(reach)]
    h = half[np.isfinite(half)]
    lo = req_lo if req_lo is not None else (float(np.median(h)) if h.size else 0.0)
    lo = max(lo, 0.0)
    above = r[r >= lo - 1e-12]
    hi = req_hi if req_hi is not None else (float(np.quantile(above, s.upper_quantile)) if above.size else math.nan)
    w = s.bucket if s.bucket is not None else (tick / 2 if tick > 0 else None)
    if w is not None:
        if req_lo is None:
            lo = math.floor(lo / w + _EPS) * w
        if not math.isfinite(hi):
            return lo, lo + 2 * w, w, "no market orders"
        cells = max(2, math.ceil((hi - lo) / w - _EPS))
        return round(lo, 12), round(lo + cells * w, 12), w, ""  # on the grid, without float dust
    if not math.isfinite(hi) or hi <= lo:
        return lo, math.nan, math.nan, "no spread of reaches to fit (give fit_range and bucket)"
    return lo, hi, (hi - lo) / 30, ""


def _intensity_table(reach: np.ndarray, E: float, lo: float, hi: float, w: float, A: float, k: float) -> Intensity:
    r = np.sort(reach[np.isfinite(reach) & (reach >= -_EPS * w)])
    top = max(float(r[-1]) if r.size else hi, hi)
    wd = w * max(1, math.ceil(top / (w * _MAX_DISPLAY_BUCKETS)))
    start = lo - math.floor(lo / wd + _EPS) * wd
    edges = start + wd * np.arange(math.floor((top - start) / wd + _EPS) + 2)
    tol = _EPS * w
    ge = (r.size - np.searchsorted(r, edges - tol, side="left")).astype(np.int64)
    counts = ge - np.append(ge[1:], 0)
    fitted = A * np.exp(-k * edges) if math.isfinite(A) and math.isfinite(k) else np.full(edges.size, np.nan)
    return Intensity(delta=tuple(float(e) for e in edges), count=tuple(int(x) for x in counts),
                     intensity=tuple(float(x) for x in ge / E), stderr=tuple(float(x) for x in np.sqrt(ge) / E),
                     fitted=tuple(float(x) for x in fitted),
                     in_fit=tuple(bool(lo - tol <= e <= hi + tol) for e in edges), width=float(wd))

