"""How to calibrate: :class:`Settings`, validated when built (durations in seconds or ``"30min"``)."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

from mmray.checks import CheckError, choice, flag, integer, real

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
    try:
        return real(label, value, gt=0)
    except CheckError:
        raise CheckError(label, value, "a positive duration") from None


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
            set_(self, name, integer(name, getattr(self, name), ge=low))
        for name in ("level", "upper_quantile"):
            set_(self, name, real(name, getattr(self, name), gt=0, lt=1))
        for name, bound in (("bucket", {"gt": 0}), ("tick", {"ge": 0})):
            if getattr(self, name) is not None:
                set_(self, name, real(name, getattr(self, name), **bound))
        if self.fit_range is not None:
            fr = tuple(self.fit_range)
            ok = len(fr) == 2 and all(v is None or (not isinstance(v, bool) and isinstance(v, int | float)
                                                    and math.isfinite(v) and v >= 0) for v in fr)
            if not ok or (fr[0] is not None and fr[1] is not None and fr[1] <= fr[0]):
                raise ValueError("fit_range must be (lo, hi) with 0 <= lo < hi (None for a default), "
                                 f"got {self.fit_range!r}")
            set_(self, "fit_range", fr)
        set_(self, "quotes", choice("quotes", self.quotes, ("auto", "book", "ticker")))
        for name in ("hidden", "drift"):
            set_(self, name, flag(name, getattr(self, name)))

