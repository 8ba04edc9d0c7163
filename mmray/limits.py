"""Resource and numeric-range limits checked before any work starts.

One mechanism for every solver (and any other caller that allocates grids):

* :func:`require_memory` refuses, with a one-line ``ValueError`` naming the options responsible and
  the memory they would need, a computation whose estimated peak memory exceeds the cap
  :func:`memory_cap_bytes`: ``MMRAY_MAX_MEMORY_GB`` (GiB, a number > 0) when set, else half the
  physical memory (``os.sysconf``), else 8 GiB where the platform does not report it.
* :func:`model_scales` refuses a model whose rates overflow double precision (``sigma = 1e300``:
  ``gamma sigma^2 Q^2`` is ``inf``), naming the parameters, instead of an ``OverflowError`` or a
  NaN policy later.
* :func:`inventory_levels` counts the inventory levels ``n = 2 Q / Delta + 1`` without allocating
  them, so the sizes can be checked first.

Estimates count the float64 arrays a computation holds at once (8 bytes each); they are meant to
separate "fits" from "cannot fit" by orders of magnitude, not to predict the peak to the byte.
"""

from __future__ import annotations

import math
import os

import numpy as np

from mmray import model
from mmray.params import MarketParams, ProblemParams

GIB = 2.0**30
ENV_MAX_MEMORY = "MMRAY_MAX_MEMORY_GB"
DEFAULT_CAP_GIB = 8.0  # where the physical memory is unknown
PHYSICAL_SHARE = 0.5  # of the physical memory, when MMRAY_MAX_MEMORY_GB is not set
FLOAT_BYTES = 8


def memory_cap_bytes() -> float:
    """The memory one computation may use (bytes).

    ``MMRAY_MAX_MEMORY_GB`` (GiB, finite and > 0) when set; else ``PHYSICAL_SHARE`` (one half) of
    the physical memory reported by ``os.sysconf``; else ``DEFAULT_CAP_GIB`` (8 GiB).
    """
    raw = os.environ.get(ENV_MAX_MEMORY)
    if raw is not None and raw.strip():
        try:
            gib = float(raw)
        except ValueError:
            gib = float("nan")
        if not (math.isfinite(gib) and gib > 0):
            raise ValueError(f"environment variable {ENV_MAX_MEMORY} must be a number of GiB > 0, got {raw!r}")
        return gib * GIB
    try:
        return PHYSICAL_SHARE * float(os.sysconf("SC_PAGE_SIZE")) * float(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):
        return DEFAULT_CAP_GIB * GIB


def require_memory(nbytes: float, who: str, sizes: str) -> None:
    """Refuse a computation that would need ``nbytes`` bytes, more than :func:`memory_cap_bytes`.

    Parameters
    ----------
    nbytes : float
        Estimated peak memory (bytes).
    who : str
        The computation, e.g. ``"exact solver"``.
    sizes : str
        The options that set the size, with their values, e.g.
        ``"n_times=1001 x 200001 inventory levels (ProblemParams.q_max=100000, trade_size=1)"``.
    """
    cap = memory_cap_bytes()
    if not nbytes <= cap:
        raise ValueError(
            f"{who}: {sizes} would need about {nbytes / GIB:.3g} GiB of memory, above the cap of "
            f"{cap / GIB:.3g} GiB (set {ENV_MAX_MEMORY} to change it); use a smaller grid"
        )


def inventory_levels(market: MarketParams, problem: ProblemParams) -> int:
    """Number of inventory levels ``2 Q / Delta + 1`` (``ValueError`` as :func:`mmray.params.inventory_grid`)."""
    if problem.q_max is None:
        raise ValueError("ProblemParams.q_max is None: this method needs a bounded inventory")
    n = problem.q_max / market.trade_size
    if not math.isfinite(n) or abs(n - round(n)) > 1e-9:
        raise ValueError(
            f"ProblemParams.q_max={problem.q_max} must be a multiple of MarketParams.trade_size={market.trade_size}"
        )
    return 2 * round(n) + 1


def grid_sizes(n_times: int, time_option: str, market: MarketParams, problem: ProblemParams) -> str:
    """The wording of :func:`require_memory`'s ``sizes`` for a (time x inventory) grid."""
    return (f"{time_option} ({n_times} time points) x {inventory_levels(market, problem)} inventory levels "
            f"(ProblemParams.q_max={problem.q_max}, MarketParams.trade_size={market.trade_size:g})")


def model_scales(market: MarketParams, problem: ProblemParams) -> dict[str, float]:
    """The model's largest rates, refused when one overflows double precision.

    Returns (all finite)::

        penalty_rate  = gamma sigma^2 Q^2 / 2 + |mu| Q       (running penalty at the bound, currency / time)
        generator     = (k / Delta) penalty_rate              (largest diagonal of the exact solver's M, 1 / time)
        terminal      = k ell Q^2 / Delta                     (largest exponent of the terminal condition)
        fill_rate     = A                                      (fills / time at a zero offset)

    Raises ``ValueError`` naming the parameters and values of the first product that is not
    finite (e.g. ``sigma=1e300``). ``Q`` defaults to 1 when the inventory is unbounded.
    """
    q = float(problem.q_max) if problem.q_max is not None else 1.0
    names = (f"gamma={problem.gamma!r}, sigma={market.sigma!r}, drift={market.drift!r}, "
             f"ProblemParams.q_max={problem.q_max!r}")
    # plain float products: inf on overflow (``**`` would raise OverflowError instead)
    penalty = 0.5 * problem.gamma * market.sigma * market.sigma * q * q + abs(market.drift) * q
    scales = {
        "penalty_rate": (penalty, f"gamma sigma^2 Q^2 / 2 + |drift| Q ({names})"),
        "generator": (market.k / market.trade_size * penalty,
                      f"(k / trade_size)(gamma sigma^2 Q^2 / 2 + |drift| Q) (k={market.k!r}, "
                      f"trade_size={market.trade_size!r}, {names})"),
        "terminal": (market.k * problem.terminal_penalty * q * q / market.trade_size,
                     f"k terminal_penalty Q^2 / trade_size (k={market.k!r}, "
                     f"terminal_penalty={problem.terminal_penalty!r}, ProblemParams.q_max={problem.q_max!r}, "
                     f"trade_size={market.trade_size!r})"),
        "fill_rate": (market.A, f"A={market.A!r}"),
    }
    for value, what in scales.values():
        if not math.isfinite(value):
            raise ValueError(
                f"model out of double-precision range: {what} = {value} (largest double 1.8e308): no solver can "
                "represent this model; rescale the units (price, time) or choose smaller values"
            )
    return {name: value for name, (value, _) in scales.items()}


def require_grid_memory(
    who: str, n_times: int, time_option: str, market: MarketParams, problem: ProblemParams, *,
    tables: float, square: float = 0.0, per_level: float = 0.0,
) -> int:
    """Refuse a (time x inventory) computation whose float64 arrays would exceed the memory cap.

    The estimate is ``8 (tables N n + square n^2 + per_level n)`` bytes for ``N = n_times`` time
    points and ``n`` inventory levels (:func:`inventory_levels`): ``tables`` arrays of the grid's
    size, ``square`` ``n x n`` matrices and ``per_level`` numbers per inventory level (e.g. the
    ``(L+1)^2`` quote pairs of a tick grid). Returns ``n``.
    """
    n = inventory_levels(market, problem)
    nbytes = FLOAT_BYTES * (tables * float(n_times) * n + square * float(n) * n + per_level * n)
    require_memory(nbytes, who, grid_sizes(n_times, time_option, market, problem))
    return n


def require_finite_solution(who: str, theta: np.ndarray, bid: np.ndarray, ask: np.ndarray, hint: str,
                            quoted: tuple[np.ndarray, np.ndarray] | None = None) -> None:
    """Refuse a solver result that is not finite where it must be (never hand out a NaN policy).

    ``theta`` must be finite everywhere; ``bid``/``ask`` finite or NaN (NaN = "no quote"), and finite
    wherever the boolean masks ``quoted = (bid_due, ask_due)`` say a quote is due. ``hint`` ends the
    message (what to change).
    """
    bad = []
    if not np.all(np.isfinite(theta)):
        bad.append(f"value function ({int(np.count_nonzero(~np.isfinite(theta)))} entries)")
    for side, arr, due in (("bid", bid, None if quoted is None else quoted[0]),
                           ("ask", ask, None if quoted is None else quoted[1])):
        wrong = np.isinf(arr) if due is None else (np.isinf(arr) | (np.isnan(arr) & due))
        if np.any(wrong):
            bad.append(f"{side} offsets ({int(np.count_nonzero(wrong))} entries)")
    if bad:
        raise ValueError(f"{who}: non-finite {' and '.join(bad)} in double precision; {hint}")


def simulation_warnings(market: MarketParams, problem: ProblemParams, dt: float) -> list[str]:
    """Why a simulation at these settings, although valid, measures little of the model: one line each.

    * fills saturate: the fill probability per step at the myopic quote ``dtilde`` (about where
      every strategy quotes) is above 0.99 (``A dt exp(-k dtilde)`` >= ~4.6), so nearly every
      quote fills every step; the simulator's one fill per side per step then decides the outcome,
      not the intensity ``A exp(-k delta)``;
    * the tick is not below the initial mid: outward rounding puts bids at a price <= 0 and asks at
      twice the mid or more.
    """
    notes = []
    dtilde = model.delta_tilde(market, problem)
    rate_dt = market.A * dt * math.exp(-market.k * dtilde)
    if -math.expm1(-rate_dt) > 0.99:
        notes.append(f"fills saturate: A dt exp(-k dtilde) = {rate_dt:.3g} (A={market.A:g}, dt={dt:g}, "
                     f"k={market.k:g}, dtilde={dtilde:.3g}), so a quote near the myopic one fills with probability "
                     f"{-math.expm1(-rate_dt):.4f} every step and the results measure the one-fill-per-step cap, "
                     "not the model; choose a smaller dt or A")
    if market.tick >= market.s0 > 0:
        notes.append(f"tick {market.tick:g} is not below the mid {market.s0:g}: bids round to a price <= 0 and "
                     "asks to twice the mid or more, so the quotes mean nothing; choose a smaller tick")
    return notes
