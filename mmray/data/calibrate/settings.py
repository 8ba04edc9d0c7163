"""How to calibrate: :class:`Settings`, validated when built (durations in seconds or ``"30min"``)."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Settings"]


def _seconds(label: str, value: Any) -> float | None:
    """Seconds from a number, a ``datetime.timedelta`` or a pandas-style string (``"30min"``)."""
    if value is None:
        return None
    if isinstance(value, dt.timedelta):
        value = value.total_seconds()
    elif isinstance(value, str):
        import pandas as pd

        try:
            value = pd.Timedelta(value).total_seconds()
        except ValueError:
            raise ValueError(f"{label} must be a duration such as '30min', '1h' or '90s', got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating) \
            or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{label} must be a positive duration, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Settings:
    """How to calibrate (validated when built; durations in seconds or strings like ``"30min"``).

    Parameters
    ----------
    interval : float
        σ sampling interval Δ, seconds (default 1 s).
    lags : int
        Autocovariance lags L of the σ estimator (1: Zhou 1996; 0: plain realised variance).
    batches : int
        Number B of batches for the σ and drift intervals (default 20; fewer when there are
        fewer than 5 increments per batch).
    level : float
        Confidence level of every interval (default 0.95).
    fit_range : (float or None, float or None) or None
        ``(lo, hi)`` of the intensity fit, price from the mid; ``None`` parts take the defaults
        (median half-spread before the orders; 99th percentile of the reaches).
    bucket : float or None
        Bucket width w, price (default: half a tick; without a tick, (hi − lo)/30).
    tick : float or None
        Tick size (default: inferred from the quotes; 0 when the prices are on no grid).
    upper_quantile : float
        Quantile of the reaches that sets the default ``hi`` (0.99).
    hidden : bool
        Count LOBSTER hidden executions as market orders (default ``False``: they print inside
        the spread against hidden orders a visible quote would not be).
    quotes : {"auto", "book", "ticker"}
        Where the mid comes from: book-changing rows (LOBSTER, Binance depth) or bookTicker rows.
        ``auto``: ticker rows when present and carrying an exchange time (not Binance spot), else
        the book.
    drift : bool
        Estimate the drift μ (default ``False``: μ = 0 in the parameter file).
    window, step : float, str or None
        Rolling windows (length and spacing; ``step`` defaults to ``window``), aligned to
        multiples of ``step`` since the epoch (UTC). ``None``: no windows.
    """

    interval: float = 1.0
    lags: int = 1
    batches: int = 20
    level: float = 0.95
    fit_range: tuple[float | None, float | None] | None = None
    bucket: float | None = None
    tick: float | None = None
    upper_quantile: float = 0.99
    hidden: bool = False
    quotes: str = "auto"
    drift: bool = False
    window: float | None = None
    step: float | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "interval", _seconds("interval", self.interval))
        set_(self, "window", _seconds("window", self.window))
        set_(self, "step", _seconds("step", self.step) if self.step is not None else self.window)
        if self.step is not None and self.window is None:
            raise ValueError("step needs a window")
        if self.window is not None and self.window < self.interval:
            raise ValueError(f"window ({self.window:g} s) must be at least the σ interval ({self.interval:g} s)")
        for name, low in (("lags", 0), ("batches", 2)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")
        for name in ("level", "upper_quantile"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v < 1:
                raise ValueError(f"{name} must be a number in (0, 1), got {v!r}")
        for name in ("bucket", "tick"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v)
                                  or v < 0 or (name == "bucket" and v == 0)):
                raise ValueError(f"{name} must be a finite number {'> 0' if name == 'bucket' else '>= 0'}, got {v!r}")
        if self.fit_range is not None:
            fr = tuple(self.fit_range)
            ok = len(fr) == 2 and all(v is None or (not isinstance(v, bool) and isinstance(v, int | float)
                                                    and math.isfinite(v) and v >= 0) for v in fr)
            if not ok or (fr[0] is not None and fr[1] is not None and fr[1] <= fr[0]):
                raise ValueError("fit_range must be (lo, hi) with 0 <= lo < hi (None for a default), "
                                 f"got {self.fit_range!r}")
            set_(self, "fit_range", fr)
        if self.quotes not in ("auto", "book", "ticker"):
            raise ValueError(f"quotes must be one of auto, book, ticker; got {self.quotes!r}")
        for name in ("hidden", "drift"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")

