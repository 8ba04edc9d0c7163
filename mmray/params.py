"""Validated, frozen parameter sets for the market-making model.

Three dataclasses, each checked when built, each raising ``ValueError`` that names the
field and the offending value:

* :class:`MarketParams` - the market: mid-price volatility and drift, the order-flow
  intensity ``Lambda(delta) = A exp(-k delta)``, the trade size and the tick.
* :class:`ProblemParams` - the market maker's problem: risk aversion, horizon, inventory
  bound, objective and terminal penalty.
* :class:`SimConfig` - how a Monte Carlo backtest is run: time step, price and fill models,
  number of paths, seed and chunking.

Units: prices in currency units (e.g. dollars), time in the unit of ``T`` (seconds in GLFT
2013's figures, a trading day in AS 2008), ``sigma`` in price per sqrt(time unit), ``A`` in
fills per time unit, ``k`` per price unit, inventory in shares.

References
----------
GLFT 2013: O. Guéant, C.-A. Lehalle, J. Fernandez-Tapia, "Dealing with the inventory risk: a
solution to the market making problem", Math. Financ. Econ. 7 (2013), arXiv:1105.3115.
Guéant 2017: O. Guéant, "Optimal market making", Appl. Math. Finance 24 (2017), arXiv:1605.01862.
AS 2008: M. Avellaneda, S. Stoikov, "High-frequency trading in a limit order book",
Quant. Finance 8 (2008).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mmray.checks import choice, integer, real

Objective = Literal["A", "B"]
PriceModel = Literal["gaussian", "binomial"]
FillModel = Literal["linear", "poisson"]

OBJECTIVES = ("A", "B")
PRICE_MODELS = ("gaussian", "binomial")
FILL_MODELS = ("linear", "poisson")


def _check(obj: object, name: str, check: Callable[..., Any], *args: Any, **bounds: Any) -> None:
    """Validate field ``name`` of ``obj`` with a :mod:`mmray.checks` function and store the converted value."""
    value = check(f"{type(obj).__name__}.{name}", getattr(obj, name), *args, **bounds)
    object.__setattr__(obj, name, value)


class _Params:
    """Mixin: dict round trip with unknown-key errors."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict[str, Any]):  # type: ignore[no-untyped-def]
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(
                f"{cls.__name__}: unknown field(s) {unknown}; expected a subset of {sorted(names)}"
            )
        return cls(**data)

    def replace(self, **changes: Any):  # type: ignore[no-untyped-def]
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)  # type: ignore[type-var]


@dataclass(frozen=True)
class MarketParams(_Params):
    """The market the maker quotes in.

    Parameters
    ----------
    sigma : float
        Mid-price volatility, price units per sqrt(time unit): ``dS = mu dt + sigma dW``.
    A : float
        Intensity scale: fills per time unit for a quote at the mid (``delta = 0``).
    k : float
        Intensity decay per price unit: ``Lambda(delta) = A exp(-k delta)``.
    drift : float
        Mid-price drift ``mu`` (price units per time unit). Default 0.
    trade_size : float
        Size of each fill, ``Delta`` in Guéant 2017 (shares). Default 1.
    tick : float
        Tick size for quote rounding in simulations; 0 means no rounding.
    s0 : float
        Initial mid price.
    """

    sigma: float = 0.3
    A: float = 0.9
    k: float = 0.3
    drift: float = 0.0
    trade_size: float = 1.0
    tick: float = 0.0
    s0: float = 100.0

    def __post_init__(self) -> None:
        for name in ("sigma", "A", "k", "trade_size"):
            _check(self, name, real, gt=0)
        _check(self, "tick", real, ge=0)
        _check(self, "drift", real)
        _check(self, "s0", real)


@dataclass(frozen=True)
class ProblemParams(_Params):
    """The market maker's optimisation problem.

    Parameters
    ----------
    gamma : float
        Risk aversion (per currency unit). Objective A: CARA utility
        ``-exp(-gamma W)``; objective B: running penalty ``0.5 gamma sigma^2 q^2``.
    T : float
        Horizon, in the time unit of ``sigma`` and ``A``.
    q_max : int or None
        Inventory bound ``Q``: the maker never holds more than ``Q`` long or short
        (no bid at ``q = Q``, no ask at ``q = -Q``). Must be a multiple of the trade
        size. ``None`` means unbounded (closed-form strategies only).
    objective : {"A", "B"}
        ``"A"`` = GLFT CARA expected utility; ``"B"`` = Cartea-Jaimungal / Guéant model B
        (risk-neutral with running inventory penalty).
    terminal_penalty : float
        ``ell`` in the terminal penalty ``ell(q) = terminal_penalty * q^2`` (currency per
        share^2); 0 means liquidation at the mid.
    """

    gamma: float = 0.01
    T: float = 600.0
    q_max: int | None = 30
    objective: Objective = "A"
    terminal_penalty: float = 0.0

    def __post_init__(self) -> None:
        _check(self, "gamma", real, gt=0)
        _check(self, "T", real, gt=0)
        if self.q_max is not None:
            q = self.q_max
            ok = isinstance(q, int | float | np.integer | np.floating) and not isinstance(q, bool | np.bool_)
            if not ok or not math.isfinite(q) or q != int(q) or q < 1:
                raise ValueError(f"ProblemParams.q_max must be a positive integer or None, got {q!r}")
            object.__setattr__(self, "q_max", int(q))
        _check(self, "objective", choice, OBJECTIVES)
        _check(self, "terminal_penalty", real, ge=0)

    def terminal(self, q):  # type: ignore[no-untyped-def]
        """Terminal penalty ``ell(q) = terminal_penalty * q^2`` (vectorised)."""
        return self.terminal_penalty * q * q


@dataclass(frozen=True)
class SimConfig(_Params):
    """How a Monte Carlo backtest is run.

    Parameters
    ----------
    dt : float
        Time step. ``T / dt`` must be (close to) an integer.
    n_paths : int
        Number of simulated paths.
    price_model : {"gaussian", "binomial"}
        Mid increments ``sigma sqrt(dt) Z`` (plus drift) or ``+/- sigma sqrt(dt)`` with
        probability 1/2 each (AS 2008).
    fill_model : {"linear", "poisson"}
        Per-step fill probability ``min(Lambda dt, 1)`` (AS 2008) or ``1 - exp(-Lambda dt)``.
    seed : int
        Root seed; chunk ``i`` draws from ``SeedSequence(seed).spawn(n_chunks)[i]``.
    chunk_size : int
        Paths per chunk (the unit of work of a Ray task). Results do not depend on how
        chunks are spread over workers, but they do depend on ``chunk_size``.
    q0 : float
        Initial inventory.
    """

    dt: float = 1.0
    n_paths: int = 1000
    price_model: PriceModel = "gaussian"
    fill_model: FillModel = "poisson"
    seed: int = 0
    chunk_size: int = 16384
    q0: float = 0.0

    def __post_init__(self) -> None:
        _check(self, "dt", real, gt=0)
        _check(self, "n_paths", integer, ge=1)
        _check(self, "chunk_size", integer, ge=1)
        _check(self, "price_model", choice, PRICE_MODELS)
        _check(self, "fill_model", choice, FILL_MODELS)
        _check(self, "seed", integer, ge=0)
        _check(self, "q0", real)

    def n_steps(self, T: float) -> int:
        """Number of steps of length ``dt`` covering ``[0, T]``; rejects a ``dt`` that does not divide ``T``."""
        return steps_of(T, self.dt, "SimConfig.dt")

    def check(self, market: MarketParams, problem: ProblemParams) -> int:
        """What a simulation checks before its first step; returns :meth:`n_steps` of ``problem.T``.

        ``dt`` must divide ``T``; with an inventory bound, ``q0`` must be a reachable inventory:
        ``|q0| <= Q`` and a multiple of the trade size (inventory moves by ``Delta``, and table
        policies are tabulated there).
        """
        steps = self.n_steps(problem.T)
        if problem.q_max is None:
            return steps
        if abs(self.q0) > problem.q_max + 1e-9:
            raise ValueError(f"SimConfig.q0={self.q0!r} is outside the inventory bound "
                             f"[-{problem.q_max}, {problem.q_max}] (ProblemParams.q_max)")
        n = self.q0 / market.trade_size
        if abs(n - round(n)) > 1e-9 * max(1.0, abs(n)):
            raise ValueError(f"SimConfig.q0={self.q0!r} must be a multiple of MarketParams.trade_size="
                             f"{market.trade_size!r} when the inventory is bounded")
        return steps


def steps_of(T: float, dt: float, label: str) -> int:
    """``T / dt`` as a whole number of steps (relative tolerance 1e-9), else ``ValueError`` naming ``label``."""
    n = T / dt
    steps = round(n)
    if steps < 1 or abs(n - steps) > 1e-9 * max(1.0, n):
        raise ValueError(f"{label}={dt!r} must divide the horizon T={T!r} into a whole number of steps")
    return steps


def inventory_grid(problem: ProblemParams, market: MarketParams):  # type: ignore[no-untyped-def]
    """Inventory levels ``-Q, -Q + Delta, ..., Q`` (numpy array).

    Raises ``ValueError`` if the problem is unbounded or ``Q`` is not a multiple of the
    trade size.
    """
    if problem.q_max is None:
        raise ValueError("ProblemParams.q_max is None: this method needs a bounded inventory")
    n = problem.q_max / market.trade_size
    if abs(n - round(n)) > 1e-9:
        raise ValueError(
            f"ProblemParams.q_max={problem.q_max} must be a multiple of "
            f"MarketParams.trade_size={market.trade_size}"
        )
    n = round(n)
    return market.trade_size * np.arange(-n, n + 1, dtype=float)


def load_params_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a parameter file: a JSON object whose keys are :class:`MarketParams` fields (what
    ``mmray data calibrate --out FILE`` writes; ``mmray solve/backtest/simulate --params FILE`` and
    sweep files read it).

    Returns only the keys the file has (so command-line flags can override them), each checked by
    :class:`MarketParams` (with the other fields at their defaults).

    Raises
    ------
    ValueError
        Unreadable file, invalid JSON, not an object, an unknown key, or a value MarketParams
        refuses; the message starts with the file's path.
    """
    p = os.fspath(path)
    try:
        text = Path(p).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{p}: cannot read the parameter file ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{p}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{p}: expected a JSON object of MarketParams fields, got {type(data).__name__}")
    names = [f.name for f in fields(MarketParams)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ValueError(f"{p}: unknown key(s) {unknown}; expected some of {names}")
    try:
        checked = MarketParams(**data)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{p}: {exc}") from None
    return {k: getattr(checked, k) for k in data}
