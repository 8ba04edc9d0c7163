"""Order-flow intensity functions ``Lambda(delta)`` and the Hamiltonian of the HJB system.

A quote at distance ``delta`` (price units) from the mid is hit at rate ``Lambda(delta)``
(fills per time unit), a decreasing function. Shipped shapes:

* :class:`Exponential` - ``Lambda(delta) = A exp(-k delta)`` (GLFT 2013, AS 2008).
* :class:`PowerLaw` - ``Lambda(delta) = A (1 + k delta / alpha)^(-alpha)`` for ``delta >= 0``,
  continued as ``A exp(-k delta)`` for ``delta < 0`` (a C^1 join; ``alpha -> inf`` gives the
  exponential). ``alpha > 1`` is required: Guéant 2017's condition
  ``sup Lambda Lambda'' / Lambda'^2 < 2`` reads ``(alpha + 1)/alpha < 2``.
* :class:`Logistic` - ``Lambda(delta) = A / (1 + exp(alpha + beta delta))`` (the logistic
  shape of Guéant 2017 §2); ``Lambda Lambda'' / Lambda'^2 = 1 - exp(-(alpha + beta delta)) < 1``.
* :class:`CustomIntensity` - any user-supplied decreasing function.

The Hamiltonian of one side (Guéant 2017 §2, trade size ``Delta``, ``xi = gamma`` for objective
A and ``xi = 0`` for objective B)::

    H_xi(p) = sup_delta Lambda(delta) (1 - exp(-xi Delta (delta - p))) / xi       (xi > 0)
    H_0(p)  = sup_delta Delta Lambda(delta) (delta - p)

With ``g(delta) = -Lambda'(delta)/Lambda(delta)`` (the log-slope), the maximiser solves the
first-order condition ``delta - p = ln(1 + xi Delta / g(delta)) / (xi Delta)`` (``1/g`` when
``xi = 0``), which has a unique root under Guéant's condition. By the envelope theorem
``H'(p) = -Delta Lambda(delta*) exp(-xi Delta (delta* - p))``.

Closed forms of the maximiser ``delta*(p)``:

* exponential, both objectives: ``delta* = p + dtilde`` with
  ``dtilde = ln(1 + xi Delta / k)/(xi Delta)`` (``1/k`` for ``xi = 0``);
* power law, objective B: ``delta* = (p + 1/k) alpha/(alpha - 1)`` if ``p + 1/k >= 0``, else
  ``p + 1/k``;
* logistic, objective B: ``delta* = p + (1 + omega(-alpha - beta p - 1))/beta`` with ``omega``
  the Wright omega function (``omega(z) = W_0(e^z)``, Lambert W).

Elsewhere the maximiser is found numerically, vectorised over all ``p`` at once: the bracket
``[p, p + h 2^m]`` is grown until the first-order condition changes sign (or the objective
stops increasing), then the Illinois (regula falsi) method on the first-order condition when the
log-slope is known (machine precision in ~10 iterations), or otherwise golden-section search on
the objective (derivative-free, stopped at a bracket of ``1e-7`` relative, where comparisons of
the flat-topped objective turn into rounding noise) followed by two safeguarded Newton steps on
the first-order condition with a centred-difference log-slope (``delta*`` to ~1e-9; the
Hamiltonian value is second-order accurate either way).

References
----------
Guéant 2017: O. Guéant, "Optimal market making", Appl. Math. Finance 24 (2017), arXiv:1605.01862.
GLFT 2013: O. Guéant, C.-A. Lehalle, J. Fernandez-Tapia, arXiv:1105.3115.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
from scipy.special import expit, wrightomega

from mmray.checks import real
from mmray.params import MarketParams

INTENSITIES = ("exponential", "power", "logistic")

_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0
#: golden-section search stops at a bracket of this width relative to max(scale, |delta|): just
#: above sqrt(eps) ~ 1.5e-8, where comparisons of the (flat-topped) objective become rounding noise
GOLDEN_RTOL = 1e-7
_FD_STEP = float(np.finfo(float).eps) ** (1.0 / 3.0)  # centred-difference step, relative
_NEWTON_STEPS = 2


def _gain(z: np.ndarray, xi: float, size: float) -> np.ndarray:
    """``(1 - exp(-xi Delta z)) / xi`` (``Delta z`` for ``xi = 0``): utility gain of a fill."""
    if xi == 0.0:
        return size * z
    return -np.expm1(-xi * size * z) / xi


def _foc_target(g: np.ndarray, xi: float, size: float) -> np.ndarray:
    """Right-hand side of the first-order condition ``delta - p = psi(g)``."""
    if xi == 0.0:
        return 1.0 / g
    return np.log1p(xi * size / g) / (xi * size)


class Intensity(ABC):
    """A decreasing fill-rate function ``Lambda(delta)`` (fills per time unit).

    Subclasses implement :meth:`rate`, optionally :meth:`log_slope` (``-Lambda'/Lambda``) and
    :meth:`closed_form_delta`; :meth:`hamiltonian` does the rest.
    """

    name: ClassVar[str] = "intensity"
    #: typical offset scale (price units): first bracket width of the numerical search
    scale: float = 1.0

    @abstractmethod
    def rate(self, delta: np.ndarray | float) -> np.ndarray:
        """``Lambda(delta)``: fill rate of a quote at offset ``delta`` (fills per time unit)."""

    def log_slope(self, delta: np.ndarray) -> np.ndarray | None:
        """``g(delta) = -Lambda'(delta) / Lambda(delta) > 0``; ``None`` when not available."""
        return None

    def closed_form_delta(self, p: np.ndarray, xi: float, size: float) -> np.ndarray | None:
        """Closed-form maximiser ``delta*(p)`` of the Hamiltonian, or ``None`` if there is none."""
        return None

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """JSON-serialisable description (name and parameters)."""

    # ------------------------------------------------------------------ Hamiltonian
    def optimal_delta(self, p: np.ndarray | float, xi: float, size: float) -> np.ndarray:
        """Maximiser ``delta*(p)`` of ``Lambda(delta) * gain(delta - p)`` (closed form or numerical)."""
        p = np.asarray(p, dtype=float)
        closed = self.closed_form_delta(p, xi, size)
        if closed is not None:
            return np.asarray(closed, dtype=float)
        return self._numeric_delta(p, xi, size)

    def hamiltonian(
        self, p: np.ndarray | float, xi: float, size: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(H_xi(p), delta*(p), H_xi'(p))`` for an array of ``p`` (price units).

        ``H`` is in currency per time unit for ``xi = 0`` (utility units otherwise); ``H'`` by the
        envelope theorem ``-Delta Lambda(delta*) exp(-xi Delta (delta* - p))``.
        """
        p = np.asarray(p, dtype=float)
        delta = self.optimal_delta(p, xi, size)
        lam = self.rate(delta)
        z = delta - p
        h = lam * _gain(z, xi, size)
        dh = -size * lam * (np.exp(-xi * size * z) if xi != 0.0 else 1.0)
        return h, delta, dh

    def _numeric_delta(self, p: np.ndarray, xi: float, size: float) -> np.ndarray:
        """Vectorised bracketed search for ``delta*(p)`` (see module docstring)."""
        flat = p.reshape(-1)
        if flat.size == 0:
            return p.copy()
        use_foc = self.log_slope(flat + self.scale) is not None
        lo = flat.copy()
        width = np.full(flat.shape, self.scale)

        def foc(delta: np.ndarray, base: np.ndarray) -> np.ndarray:
            g = self.log_slope(delta)
            return (delta - base) - _foc_target(np.maximum(g, 1e-300), xi, size)  # type: ignore[arg-type]

        def objective(delta: np.ndarray, base: np.ndarray) -> np.ndarray:
            return self.rate(delta) * _gain(delta - base, xi, size)

        # grow the bracket: hi = p + width until the maximum lies in [lo, hi]
        open_ = np.ones(flat.shape, dtype=bool)
        for _ in range(200):
            idx = np.flatnonzero(open_)
            if idx.size == 0:
                break
            hi = flat[idx] + width[idx]
            if use_foc:
                done = foc(hi, flat[idx]) >= 0.0
            else:
                mid = flat[idx] + 0.5 * width[idx]
                done = objective(hi, flat[idx]) <= objective(mid, flat[idx])
            open_[idx[done]] = False
            grow = idx[~done]
            if use_foc:  # the first-order condition is still negative at hi: the root lies beyond
                lo[grow] = flat[grow] + width[grow]
            width[grow] *= 2.0
        if np.any(open_):
            raise ValueError(
                f"{self.name} intensity: the Hamiltonian has no maximiser for p={float(flat[open_][0])!r} "
                "(Lambda decays too slowly: sup_delta Lambda(delta) (delta - p) is infinite)"
            )
        hi = flat + width  # golden section brackets with [p, p + width]
        if use_foc:
            return _illinois(lambda x: foc(x, flat), lo, hi).reshape(p.shape)
        a, b = lo, hi
        c = b - _GOLDEN * (b - a)
        d = a + _GOLDEN * (b - a)
        fc, fd = objective(c, flat), objective(d, flat)
        # Stop at a bracket of GOLDEN_RTOL: the objective is flat at its maximum, so below a width of
        # ~sqrt(eps) the comparisons fc >= fd are decided by rounding and the bracket would only wander.
        magnitude = np.maximum(self.scale, np.abs(flat))
        for _ in range(200):
            if np.all(b - a <= GOLDEN_RTOL * np.maximum(magnitude, np.abs(a))):
                break
            left = fc >= fd  # maximum in [a, d]
            b = np.where(left, d, b)
            a = np.where(left, a, c)
            new_c = b - _GOLDEN * (b - a)
            new_d = a + _GOLDEN * (b - a)
            c_old, fc_old, d_old, fd_old = c, fc, d, fd
            c = np.where(left, new_c, d_old)
            d = np.where(left, c_old, new_d)
            f_new = objective(np.where(left, c, d), flat)
            fc = np.where(left, f_new, fd_old)
            fd = np.where(left, fc_old, f_new)
        return self._refine(flat, 0.5 * (a + b), b - a, xi, size).reshape(p.shape)

    def _refine(self, p: np.ndarray, delta: np.ndarray, width: np.ndarray, xi: float, size: float) -> np.ndarray:
        """Final refinement of a golden-section maximiser: Newton steps on the first-order condition.

        The log-slope ``g = -(ln Lambda)'`` is a centred difference with step ``eps^(1/3)`` times
        the offset scale (error ~``eps^(2/3)``), so the root is found to ~1e-9 instead of the
        ~``sqrt(eps)`` that comparisons of objective values allow. Safeguarded per point: a step
        is kept only if finite, within ten brackets of the golden-section point, and not worse
        in objective (beyond rounding); otherwise the golden-section point stays (e.g. a
        non-smooth ``Lambda``).
        """
        h = _FD_STEP * np.maximum(self.scale, np.abs(delta))

        def foc(x: np.ndarray) -> np.ndarray:
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                g = -(np.log(self.rate(x + h)) - np.log(self.rate(x - h))) / (2.0 * h)
                return (x - p) - _foc_target(np.where(g > 0, g, np.nan), xi, size)

        def objective(x: np.ndarray) -> np.ndarray:
            return self.rate(x) * _gain(x - p, xi, size)

        reach = 10.0 * width + GOLDEN_RTOL * np.maximum(self.scale, np.abs(delta))
        best, f_best = delta, objective(delta)
        x = delta
        for _ in range(_NEWTON_STEPS):
            f0, f1 = foc(x), foc(x + h)
            with np.errstate(divide="ignore", invalid="ignore"):
                step = f0 * h / (f1 - f0)
            x_new = x - step
            f_new = objective(x_new)
            ok = (np.isfinite(x_new) & (np.abs(x_new - delta) <= reach)
                  & (f_new >= f_best - 8.0 * np.finfo(float).eps * np.abs(f_best)))
            best = np.where(ok, x_new, best)
            f_best = np.where(ok, np.maximum(f_new, f_best), f_best)
            x = np.where(ok, x_new, x)
        return best


def _illinois(fn: Callable[[np.ndarray], np.ndarray], lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Root of increasing-through-zero ``fn`` in ``[lo, hi]`` (``fn(lo) < 0 <= fn(hi)``), vectorised.

    Illinois variant of regula falsi (Dowell & Jarratt 1971): a secant step inside the bracket,
    halving the retained end's value when the same end survives twice, which restores superlinear
    convergence (order ~1.44); ~10 iterations reach machine precision, against ~60 for bisection.
    """
    f_lo, f_hi = fn(lo), fn(hi)
    last = np.zeros(lo.shape, dtype=np.int8)
    x = 0.5 * (lo + hi)
    eps = 4.0 * np.finfo(float).eps
    for _ in range(200):
        denom = f_hi - f_lo
        x_new = np.where(denom > 0, (lo * f_hi - hi * f_lo) / np.where(denom > 0, denom, 1.0), 0.5 * (lo + hi))
        x_new = np.clip(x_new, lo, hi)
        fx = fn(x_new)
        moved_hi = fx >= 0.0
        f_lo = np.where(moved_hi & (last == 1), 0.5 * f_lo, f_lo)
        f_hi = np.where(~moved_hi & (last == -1), 0.5 * f_hi, f_hi)
        hi, f_hi = np.where(moved_hi, x_new, hi), np.where(moved_hi, fx, f_hi)
        lo, f_lo = np.where(moved_hi, lo, x_new), np.where(moved_hi, f_lo, fx)
        last = np.where(moved_hi, 1, -1).astype(np.int8)
        done = np.abs(x_new - x) <= eps * np.maximum(1.0, np.abs(x_new))
        x = x_new
        if np.all(done | (fx == 0.0) | (hi - lo <= eps * np.maximum(1.0, np.abs(x)))):
            break
    return x


class Exponential(Intensity):
    """``Lambda(delta) = A exp(-k delta)``: ``A`` fills per time unit at the mid, ``k`` per price unit."""

    name: ClassVar[str] = "exponential"

    def __init__(self, A: float, k: float) -> None:
        self.A = real("Exponential.A", A, gt=0)
        self.k = real("Exponential.k", k, gt=0)
        self.scale = 1.0 / self.k

    def rate(self, delta: np.ndarray | float) -> np.ndarray:
        with np.errstate(over="ignore"):
            return self.A * np.exp(-self.k * np.asarray(delta, dtype=float))

    def log_slope(self, delta: np.ndarray) -> np.ndarray:
        return np.full(np.shape(delta), self.k)

    def closed_form_delta(self, p: np.ndarray, xi: float, size: float) -> np.ndarray:
        x = xi * size
        dtilde = 1.0 / self.k if x == 0.0 else math.log1p(x / self.k) / x
        return np.asarray(p, dtype=float) + dtilde

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "A": self.A, "k": self.k}


class PowerLaw(Intensity):
    """``A (1 + k delta/alpha)^(-alpha)`` for ``delta >= 0``, ``A exp(-k delta)`` below (``alpha > 1``)."""

    name: ClassVar[str] = "power"

    def __init__(self, A: float, k: float, alpha: float) -> None:
        self.A = real("PowerLaw.A", A, gt=0)
        self.k = real("PowerLaw.k", k, gt=0)
        self.alpha = real("PowerLaw.alpha", alpha, gt=0)
        if self.alpha <= 1.0:
            raise ValueError(
                f"PowerLaw.alpha must be > 1 (otherwise sup_delta Lambda(delta) delta is infinite), got {alpha!r}"
            )
        self.scale = 1.0 / self.k

    def rate(self, delta: np.ndarray | float) -> np.ndarray:
        d = np.asarray(delta, dtype=float)
        pos = np.maximum(d, 0.0)
        with np.errstate(over="ignore"):
            return np.where(d >= 0.0, self.A * (1.0 + self.k * pos / self.alpha) ** (-self.alpha),
                            self.A * np.exp(-self.k * np.minimum(d, 0.0)))

    def log_slope(self, delta: np.ndarray) -> np.ndarray:
        d = np.asarray(delta, dtype=float)
        return np.where(d >= 0.0, self.k / (1.0 + self.k * np.maximum(d, 0.0) / self.alpha), self.k)

    def closed_form_delta(self, p: np.ndarray, xi: float, size: float) -> np.ndarray | None:
        if xi != 0.0:
            return None
        base = np.asarray(p, dtype=float) + 1.0 / self.k
        return np.where(base >= 0.0, base * self.alpha / (self.alpha - 1.0), base)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "A": self.A, "k": self.k, "alpha": self.alpha}


class Logistic(Intensity):
    """``Lambda(delta) = A / (1 + exp(alpha + beta delta))`` (``beta > 0`` per price unit)."""

    name: ClassVar[str] = "logistic"

    def __init__(self, A: float, alpha: float, beta: float) -> None:
        self.A = real("Logistic.A", A, gt=0)
        self.alpha = real("Logistic.alpha", alpha)
        self.beta = real("Logistic.beta", beta, gt=0)
        self.scale = 1.0 / self.beta

    def rate(self, delta: np.ndarray | float) -> np.ndarray:
        y = self.alpha + self.beta * np.asarray(delta, dtype=float)
        return self.A * expit(-y)

    def log_slope(self, delta: np.ndarray) -> np.ndarray:
        return self.beta * expit(self.alpha + self.beta * np.asarray(delta, dtype=float))

    def closed_form_delta(self, p: np.ndarray, xi: float, size: float) -> np.ndarray | None:
        if xi != 0.0:
            return None
        p = np.asarray(p, dtype=float)
        omega = np.real(wrightomega(-self.alpha - self.beta * p - 1.0))
        return p + (1.0 + omega) / self.beta

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "A": self.A, "alpha": self.alpha, "beta": self.beta}


class CustomIntensity(Intensity):
    """A user-supplied decreasing ``Lambda``: ``func(delta_array) -> rate_array``.

    Parameters
    ----------
    func : callable
        Vectorised, positive, non-increasing fill rate (fills per time unit).
    log_slope : callable, optional
        ``-Lambda'(delta)/Lambda(delta)``; when given, the maximiser is found by the Illinois method
        (regula falsi) on the first-order condition (machine precision) instead of golden-section
        search refined by Newton steps with a finite-difference log-slope (~1e-9).
    scale : float
        Typical offset (price units), the first bracket width of the search.
    probe : tuple of float
        Interval on which ``func`` is checked to be positive, finite and non-increasing.
    """

    name: ClassVar[str] = "custom"

    def __init__(
        self,
        func: Callable[[np.ndarray], np.ndarray],
        log_slope: Callable[[np.ndarray], np.ndarray] | None = None,
        scale: float = 1.0,
        probe: tuple[float, float] = (-5.0, 20.0),
        label: str = "custom",
    ) -> None:
        if not callable(func):
            raise ValueError(f"CustomIntensity.func must be callable, got {func!r}")
        self.func = func
        self._log_slope = log_slope
        self.scale = real("CustomIntensity.scale", scale, gt=0)
        self.label = str(label)
        grid = np.linspace(probe[0], probe[1], 257) * self.scale
        values = np.asarray(func(grid), dtype=float)
        if values.shape != grid.shape or not np.all(np.isfinite(values)) or np.any(values < 0):
            raise ValueError("CustomIntensity.func must map an array of offsets to finite rates >= 0 (same shape)")
        if np.any(np.diff(values) > 1e-12 * np.max(np.abs(values))):
            i = int(np.argmax(np.diff(values)))
            raise ValueError(
                f"CustomIntensity.func must be non-increasing: Lambda({grid[i]:.4g})={values[i]:.6g} < "
                f"Lambda({grid[i + 1]:.4g})={values[i + 1]:.6g}"
            )

    def rate(self, delta: np.ndarray | float) -> np.ndarray:
        return np.asarray(self.func(np.asarray(delta, dtype=float)), dtype=float)

    def log_slope(self, delta: np.ndarray) -> np.ndarray | None:
        if self._log_slope is None:
            return None
        return np.asarray(self._log_slope(np.asarray(delta, dtype=float)), dtype=float)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "label": self.label, "log_slope": self._log_slope is not None}


def make_intensity(
    name: str, market: MarketParams, alpha: float | None = None, beta: float | None = None
) -> Intensity:
    """Intensity by name with ``A``, ``k`` from ``market``.

    ``"exponential"``: ``A e^(-k delta)``; ``"power"``: :class:`PowerLaw` with exponent ``alpha``;
    ``"logistic"``: :class:`Logistic` ``A / (1 + e^(alpha + beta delta))`` (default ``beta = k``,
    ``alpha = 0``).
    """
    if name == "exponential":
        return Exponential(market.A, market.k)
    if name == "power":
        if alpha is None:
            raise ValueError("intensity 'power' needs alpha (> 1), e.g. --intensity-alpha 3")
        return PowerLaw(market.A, market.k, alpha)
    if name == "logistic":
        return Logistic(market.A, 0.0 if alpha is None else alpha, market.k if beta is None else beta)
    raise ValueError(f"unknown intensity {name!r}; choose from {', '.join(INTENSITIES)}")


def resolve_intensity(spec: Intensity | str | dict[str, Any] | None, market: MarketParams) -> Intensity | None:
    """An :class:`Intensity` from an instance, a name, or ``{"name": ..., "alpha": ..., "beta": ...}``.

    Names and parameters as in :func:`make_intensity` (``A``, ``k`` from ``market``); ``None`` stays
    ``None`` (the solver's default, the market's exponential).
    """
    if spec is None or isinstance(spec, Intensity):
        return spec
    if isinstance(spec, str):
        return make_intensity(spec, market)
    if isinstance(spec, dict):
        extra = sorted(set(spec) - {"name", "alpha", "beta"})
        if "name" not in spec or extra:
            raise ValueError(
                f"intensity spec must be {{'name': ..., 'alpha': ..., 'beta': ...}}; got keys {sorted(spec)}"
            )
        return make_intensity(spec["name"], market, spec.get("alpha"), spec.get("beta"))
    raise ValueError(f"intensity must be an Intensity, a name or a dict spec, got {spec!r}")
