"""Results of a calibration: :class:`Fit` (one span), :class:`Calibration` (all of them), files.

``to_dict`` gives JSON-ready objects (NaN → ``None``); :func:`write_params_file` writes the pooled
estimates as a parameter file that :func:`mmray.params.load_params_file` reads back.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mmray.data.calibrate.intensity import GoodnessOfFit, Intensity
from mmray.data.calibrate.settings import Settings
from mmray.io import to_jsonable

__all__ = ["PARAM_UNITS", "Calibration", "Fit", "write_params_file"]

#: Units of every estimate (time in seconds, prices in the venue's quote currency).
PARAM_UNITS: dict[str, str] = {
    "sigma": "price/sqrt(s)", "drift": "price/s", "A": "fills/s per side", "k": "1/price",
    "k_per_tick": "1/tick", "delta": "price from the mid", "intensity": "orders/s per side",
    "tick": "price", "s0": "price", "seconds": "s",
}


def _iso(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class Fit:
    """Estimates over one span: a day, a rolling window, or every day pooled.

    Attributes (units in :data:`PARAM_UNITS`): ``sigma`` and ``sigma_ci`` (price/√s, from
    ``n_increments`` increments of ``interval`` s); ``drift``/``drift_ci`` (price/s; ``None``
    unless asked); ``A``/``A_ci`` (fills/s per side), ``k``/``k_ci`` (per price unit),
    ``k_per_tick``/``k_per_tick_ci`` (per tick; ``None`` without a tick); ``seconds`` (active time,
    halts excluded; the exposure is twice that, both sides), ``n_orders`` (market orders),
    ``n_fit`` (orders in the fit range, tail included), ``n_below`` (orders reaching less than
    ``lo``), ``n_stale`` (orders on the wrong side of the prior mid: stale quotes), ``fit_range``
    and ``bucket`` (price), ``gof``, ``intensity`` (days and pooled only), ``signature`` ((interval,
    plain realised σ) pairs; days and pooled only), ``note`` (why a value is NaN).
    """

    venue: str
    symbol: str
    date: str | None
    start: int
    end: int
    seconds: float
    interval: float
    sigma: float
    sigma_ci: tuple[float, float]
    n_increments: int
    A: float
    A_ci: tuple[float, float]
    k: float
    k_ci: tuple[float, float]
    k_per_tick: float | None
    k_per_tick_ci: tuple[float, float] | None
    tick: float
    n_orders: int
    n_fit: int
    n_below: int
    n_stale: int
    fit_range: tuple[float, float]
    bucket: float
    gof: GoodnessOfFit | None
    drift: float | None = None
    drift_ci: tuple[float, float] | None = None
    intensity: Intensity | None = None
    signature: tuple[tuple[float, float], ...] | None = None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN → ``None``; times also as ISO strings)."""
        d = asdict(self)
        d["start_utc"], d["end_utc"] = _iso(self.start), _iso(self.end)
        if self.signature is not None:
            d["signature"] = [{"interval": i, "sigma_rv": v} for i, v in self.signature]
        return to_jsonable(d)


@dataclass(frozen=True)
class Calibration:
    """A calibration: every day pooled (``overall``), each day, each rolling window.

    ``sigma``, ``A``, ``k`` (and ``*_ci``, ``drift``, ``k_per_tick``) are the pooled estimates;
    :meth:`params` gives them as :class:`mmray.params.MarketParams` fields, :meth:`to_dict` as one
    JSON-ready object whose top level holds them. ``runs`` records where each shard was reduced
    (process and Ray worker ids, seconds) and is left out of comparisons.
    """

    overall: Fit
    days: tuple[Fit, ...]
    windows: tuple[Fit, ...]
    settings: Settings
    quotes: str
    s0: float
    runs: tuple[dict[str, Any], ...] = field(default=(), compare=False)

    sigma = property(lambda self: self.overall.sigma)
    sigma_ci = property(lambda self: self.overall.sigma_ci)
    A = property(lambda self: self.overall.A)
    A_ci = property(lambda self: self.overall.A_ci)
    k = property(lambda self: self.overall.k)
    k_ci = property(lambda self: self.overall.k_ci)
    k_per_tick = property(lambda self: self.overall.k_per_tick)
    tick = property(lambda self: self.overall.tick)

    def params(self) -> dict[str, float]:
        """:class:`mmray.params.MarketParams` fields: ``sigma``, ``A``, ``k``, ``drift``, ``tick``, ``s0``.

        Raises
        ------
        ValueError
            σ, A or k is not a finite positive number (the note says why).
        """
        out = {"sigma": self.overall.sigma, "A": self.overall.A, "k": self.overall.k}
        bad = [n for n, v in out.items() if not (math.isfinite(v) and v > 0)]
        if bad:
            raise ValueError(f"calibration has no usable {', '.join(bad)} ({self.overall.note or 'no data'})")
        out["drift"] = float(self.overall.drift) if self.overall.drift is not None else 0.0
        out["tick"] = float(self.overall.tick)
        out["s0"] = float(self.s0)
        return out

    def to_dict(self) -> dict[str, Any]:
        """One JSON-ready object: the pooled fit's fields at the top, then ``params`` (or ``None``),
        ``units``, ``methods`` (the estimators in words), ``settings``, ``quotes``, ``days``,
        ``windows`` and ``runs``."""
        try:
            params: dict[str, float] | None = self.params()
        except ValueError:
            params = None
        s = self.settings
        rv = "realised variance" + (f" + {s.lags} autocovariance lag(s) (Zhou 1996)" if s.lags else "")
        methods = {
            "sigma": f"{rv} of the mid sampled every {s.interval:g} s (clock grid, previous tick, exchange time); "
                     f"t-interval from {s.batches} batch means (successive differences)",
            "intensity": "market-order reach from the mid just before the order; Poisson MLE on buckets of the "
                         "fit range plus the tail beyond it; profile-likelihood intervals; G2 goodness of fit",
        }
        return {**self.overall.to_dict(), "params": params, "units": dict(PARAM_UNITS), "methods": methods,
                "settings": to_jsonable(asdict(self.settings)), "quotes": self.quotes, "s0": to_jsonable(self.s0),
                "days": [d.to_dict() for d in self.days], "windows": [w.to_dict() for w in self.windows],
                "runs": to_jsonable(list(self.runs))}


def write_params_file(calibration: Calibration, path: str | os.PathLike[str]) -> Path:
    """Write the pooled estimates as a JSON parameter file (keys: MarketParams field names).

    The file holds ``sigma``, ``A``, ``k``, ``drift`` (0 unless estimated), ``tick`` (inferred
    or given; simulations then round quotes to it) and ``s0`` (the last mid seen); time unit:
    seconds. Written atomically; :func:`load_params_file` reads it back.
    """
    from mmray.io import atomic_write_text

    return atomic_write_text(path, json.dumps(calibration.params(), indent=2) + "\n")

