"""Finite-difference (time-stepping) solver of the HJB system for general intensities.

The value function ``theta(t, q)`` (objective A: ``u = -exp(-gamma (x + q S + theta))``;
objective B: ``u = x + q S + theta``) solves, on the inventory lattice ``q = -Q, ..., Q`` in steps
of the trade size ``Delta`` (Guéant 2017 §2 and §3)::

    0 = d theta/dt (t, q) + F(theta)(t, q),        theta(T, q) = -ell(q)
    F(theta)_q = mu q - gamma sigma^2 q^2 / 2
                 + 1{q < Q}  H_xi((theta_q - theta_{q+Delta}) / Delta)
                 + 1{q > -Q} H_xi((theta_q - theta_{q-Delta}) / Delta)

with the Hamiltonian ``H_xi`` of :mod:`mmray.solvers.intensity` (``xi = gamma`` for A, ``0`` for
B). The inventory is already discrete, so only time is discretised: with ``dt = T / n_steps``,
going backward from ``t = T``,

* ``explicit``  : ``theta^n = theta^{n+1} + dt F(theta^{n+1})`` (first order);
* ``implicit``  : ``theta^n - dt F(theta^n) = theta^{n+1}`` (first order, unconditionally stable);
* ``cn``        : ``theta^n - dt/2 F(theta^n) = theta^{n+1} + dt/2 F(theta^{n+1})`` (second order;
  the first ``rannacher_steps`` steps are each replaced by two implicit half steps, Rannacher
  1984, which damps the transient of a non-smooth terminal penalty).

The implicit equations are solved by Newton's method: the Jacobian ``I - w dt dF/dtheta`` is
tridiagonal with ``dF_q/dtheta_{q+Delta} = -H'(p_b)/Delta >= 0`` (envelope theorem), an
M-matrix, solved in ``O(n)`` by :func:`scipy.linalg.solve_banded`.

Stability of the explicit step: the scheme is monotone (hence stable in the sup norm) when
``1 + dt dF_q/dtheta_q >= 0`` for every ``q``, i.e. ``dt <= 1 / max_q r_q`` with
``r_q = -(H'(p_b) + H'(p_a))/Delta`` (for objective B, ``r_q = Lambda(delta_b*) + Lambda(delta_a*)``:
the total fill rate). ``r`` depends on ``theta`` and so changes along the solve (for the GLFT
parameters it grows going back from ``T``): the limit belongs to the whole solve, not to one
step. Every step is checked, and one that exceeds the limit is split into stable sub-steps, so
the backward pass always completes stably and measures the largest rate over the whole horizon.
``on_unstable="adapt"`` returns that solution; ``on_unstable="raise"`` refuses it if any step
needed a split, and names an ``n_steps`` *checked* to need none (:func:`stable_explicit_steps`:
``T`` times the whole-solve rate plus a 0.1% margin, confirmed by running that grid), so that
following the advice is accepted.

Optimal quotes: ``delta_b(t, q) = delta*((theta_q - theta_{q+Delta})/Delta)`` and
``delta_a(t, q) = delta*((theta_q - theta_{q-Delta})/Delta)``, ``delta*`` the maximiser of the
Hamiltonian (closed form or numerical). For ``Lambda = A e^(-k delta)`` this is the exact
solution of :mod:`mmray.solvers.exact` up to the time-stepping error ``O(dt)`` (explicit,
implicit) or ``O(dt^2)`` (cn); see ``docs/solvers.md`` for the measured orders.

References
----------
Guéant 2017 (arXiv:1605.01862) §2-3; GLFT 2013 (arXiv:1105.3115); R. Rannacher, "Finite element
solution of diffusion problems with irregular data", Numer. Math. 43 (1984).
"""

from __future__ import annotations

import math
import time as _time
from typing import Any

import numpy as np
from scipy.linalg import solve_banded

from mmray.checks import choice, integer, real
from mmray.limits import model_scales, require_finite_solution, require_grid_memory
from mmray.model import xi as _xi
from mmray.params import MarketParams, ProblemParams, inventory_grid, steps_of
from mmray.solvers.intensity import Exponential, Intensity, resolve_intensity
from mmray.solvers.result import Solution

SCHEMES = ("explicit", "implicit", "cn")
ON_UNSTABLE = ("raise", "adapt")


class HJBOperator:
    """``F(theta)`` of the HJB system and its tridiagonal Jacobian, vectorised over inventory."""

    def __init__(self, market: MarketParams, problem: ProblemParams, intensity: Intensity) -> None:
        self.q = inventory_grid(problem, market)
        self.size = market.trade_size
        self.xi = _xi(problem)
        self.intensity = intensity
        self.running = market.drift * self.q - 0.5 * problem.gamma * market.sigma**2 * self.q**2

    def momenta(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``p_b`` (rows q = -Q..Q-Delta) and ``p_a`` (rows q = -Q+Delta..Q) along the last axis."""
        diff = (theta[..., :-1] - theta[..., 1:]) / self.size
        return diff, -diff

    def evaluate(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(F, diag, upper, lower)`` with ``diag_q = dF_q/dtheta_q``, ``upper_q = dF_q/dtheta_{q+1}``
        (length n-1, rows 0..n-2) and ``lower_q = dF_q/dtheta_{q-1}`` (length n-1, rows 1..n-1)."""
        pb, pa = self.momenta(theta)
        m = pb.size
        h, _, dh = self.intensity.hamiltonian(np.concatenate([pb, pa]), self.xi, self.size)
        hb, ha, dhb, dha = h[:m], h[m:], dh[:m], dh[m:]
        f = self.running.copy()
        f[:-1] += hb
        f[1:] += ha
        diag = np.zeros_like(f)
        diag[:-1] += dhb / self.size
        diag[1:] += dha / self.size
        return f, diag, -dhb / self.size, -dha / self.size

    def quotes(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Optimal bid and ask offsets for every row of ``theta`` (NaN where a side is not quoted)."""
        pb, pa = self.momenta(theta)
        db = self.intensity.optimal_delta(pb, self.xi, self.size)
        da = self.intensity.optimal_delta(pa, self.xi, self.size)
        nan = np.full((*theta.shape[:-1], 1), np.nan)
        return np.concatenate([db, nan], axis=-1), np.concatenate([nan, da], axis=-1)


def resolve_steps(T: float, n_steps: int | None, dt: float | None, default: int, who: str) -> int:
    """Number of time steps from ``n_steps`` or ``dt`` (which must divide ``T``)."""
    if n_steps is not None and dt is not None:
        raise ValueError(f"{who}: give n_steps or dt, not both (got n_steps={n_steps!r}, dt={dt!r})")
    if dt is not None:
        return steps_of(T, real(f"{who} option dt", dt, gt=0), f"{who} option dt")
    if n_steps is None:
        return default
    return integer(f"{who} option n_steps", n_steps, ge=1)


def steps_option(n_steps: Any, dt: Any, steps: int) -> str:
    """How the user set the number of steps, for messages: ``"dt=0.1 (T/dt = 6000 steps)"``."""
    if dt is not None:
        return f"dt={dt!r} (T/dt = {steps} steps)"
    return f"n_steps={steps}" + (" (default)" if n_steps is None else "")


FD_TABLES = 8  # (time x inventory) float64 arrays: theta, bid, ask, their concatenation temporaries
MAX_EXPLICIT_SUBSTEPS = 10**7  # one explicit step split into more pieces than this is refused (a hang)
STABILITY_MARGIN = 1e-3  # head-room of a suggested n_steps over T * (largest fill rate of the solve)
_MAX_SUGGESTION_PASSES = 8


class _Stepper:
    """One backward time step of each scheme, with diagnostics."""

    def __init__(self, op: HJBOperator, newton_tol: float, max_newton: int) -> None:
        self.op = op
        self.newton_tol = newton_tol
        self.max_newton = max_newton
        self.newton_iterations: list[int] = []
        self.substeps = 0
        self.max_rate = 0.0
        self.first_unstable: tuple[float, float] | None = None  # (t, rate) of the first split step

    def explicit(self, theta: np.ndarray, dt: float, t: float) -> np.ndarray:
        """``theta + dt F(theta)``, split into equal stable pieces where ``dt`` exceeds the limit.

        Always stable; :attr:`first_unstable` records whether (and where) a split was needed, which
        ``on_unstable="raise"`` refuses once the whole solve has been checked.
        """
        remaining, pieces = dt, 1
        while pieces > 0:
            f, diag, _, _ = self.op.evaluate(theta)
            rate = float(np.max(-diag, initial=0.0))
            self.max_rate = max(self.max_rate, rate)
            h = remaining / pieces
            if rate * h > 1.0 + 1e-12:
                if self.first_unstable is None:
                    self.first_unstable = (t, rate)
                if not rate * remaining <= MAX_EXPLICIT_SUBSTEPS:
                    raise ValueError(
                        f"fd: the explicit step at t={t:.6g} needs {rate * remaining:.3g} stable sub-steps (total "
                        f"fill rate {rate:.3g} per time unit), more than {MAX_EXPLICIT_SUBSTEPS:.0e}: use "
                        "scheme='implicit' or 'cn'"
                    )
                pieces = math.ceil(rate * remaining * (1.0 + 1e-9))
                h = remaining / pieces
            theta = theta + h * f
            self.substeps += 1
            remaining -= h
            pieces -= 1
        return theta

    def implicit(self, theta_old: np.ndarray, rhs: np.ndarray, w_dt: float) -> np.ndarray:
        """Solve ``theta - w_dt F(theta) = rhs`` by Newton's method from ``theta_old``."""
        theta = theta_old.copy()
        n = theta.size
        ab = np.zeros((3, n))
        for it in range(1, self.max_newton + 1):
            f, diag, upper, lower = self.op.evaluate(theta)
            g = theta - w_dt * f - rhs
            ab[1] = 1.0 - w_dt * diag
            ab[0, 1:] = -w_dt * upper
            ab[2, :-1] = -w_dt * lower
            step = solve_banded((1, 1), ab, g, check_finite=False)
            if not np.all(np.isfinite(step)):
                raise ValueError(
                    "fd: the Hamiltonian overflows double precision in Newton's method (the value function "
                    f"differs by up to {float(np.ptp(theta)):.3g} across inventories): the model's rates are "
                    "beyond time stepping in double precision; use method='exact' (exponential intensity) "
                    "or less extreme gamma, sigma, A, k or terminal_penalty"
                )
            theta = theta - step
            if float(np.max(np.abs(step))) <= self.newton_tol * (1.0 + float(np.max(np.abs(theta)))):
                self.newton_iterations.append(it)
                return theta
        raise ValueError(
            f"fd: Newton's method did not converge in max_newton={self.max_newton} iterations "
            f"(last update {float(np.max(np.abs(step))):.3g}); reduce dt or raise max_newton"
        )


def _backward(
    op: HJBOperator, stepper: _Stepper, terminal: np.ndarray, horizon: float, steps: int, scheme: str,
    rannacher_steps: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Times ``t_n`` and ``theta(t_n, q)`` of the whole backward solve (explicit steps always stable)."""
    h = horizon / steps
    times = np.arange(steps + 1) * h
    times[-1] = horizon
    theta = np.empty((steps + 1, op.q.size))
    theta[-1] = terminal
    for n in range(steps - 1, -1, -1):
        old = theta[n + 1]
        if scheme == "explicit":
            theta[n] = stepper.explicit(old, h, times[n + 1])
        elif scheme == "implicit":
            theta[n] = stepper.implicit(old, old, h)
        elif steps - 1 - n < rannacher_steps:  # Rannacher start: two implicit half steps
            mid = stepper.implicit(old, old, 0.5 * h)
            theta[n] = stepper.implicit(mid, mid, 0.5 * h)
        else:
            f_old = op.evaluate(old)[0]
            theta[n] = stepper.implicit(old, old + 0.5 * h * f_old, 0.5 * h)
    return times, theta


def stable_explicit_steps(op: HJBOperator, terminal: np.ndarray, horizon: float, rate: float) -> tuple[int, bool]:
    """Smallest ``n_steps`` found at which the explicit scheme needs no split anywhere in the solve.

    Starts from ``ceil(T * rate * (1 + STABILITY_MARGIN))``, ``rate`` the largest total fill rate
    of a stable pass over the whole horizon, and *checks* that candidate by running the explicit
    solve on its grid: the rates along the candidate's own trajectory differ from ``rate`` by the
    time-stepping error, so a candidate that still needs a split somewhere is replaced by one
    based on that pass's largest rate. Returns ``(n_steps, verified)``; the solve is
    deterministic, so ``solve_fd(..., n_steps=n, scheme="explicit")`` is then accepted.
    """
    n = max(1, math.ceil(horizon * rate * (1.0 + STABILITY_MARGIN)))
    for _ in range(_MAX_SUGGESTION_PASSES):
        trial = _Stepper(op, 1e-12, 1)  # explicit steps only: no Newton
        _backward(op, trial, terminal, horizon, n, "explicit", 0)
        if trial.first_unstable is None:
            return n, True
        n = max(n + 1, math.ceil(horizon * trial.max_rate * (1.0 + STABILITY_MARGIN)))
    return n, False


def _unstable_error(op: HJBOperator, terminal: np.ndarray, horizon: float, steps: int, stepper: _Stepper
                    ) -> ValueError:
    """The refusal of an explicit solve whose step exceeds the stability limit somewhere."""
    assert stepper.first_unstable is not None
    t_first, rate_first = stepper.first_unstable
    rate = stepper.max_rate  # over the whole (sub-stepped, hence stable) backward pass
    n_ok, verified = stable_explicit_steps(op, terminal, horizon, rate)
    checked = "checked: no step of that grid exceeds the limit" if verified else "at least; not confirmed"
    return ValueError(
        f"fd: explicit step dt={horizon / steps:.6g} exceeds the stability limit dt <= 1/max_q(-dF_q/dtheta_q) "
        f"= {1.0 / rate:.6g} of this solve (total fill rate up to {rate:.6g} per time unit over the whole "
        f"horizon; first exceeded at t={t_first:.6g}, rate {rate_first:.6g}); use scheme='implicit' or 'cn', "
        f"n_steps >= {n_ok} ({checked}), or on_unstable='adapt'"
    )


def fd_settings(
    market: MarketParams, problem: ProblemParams, n_steps: Any, dt: Any, scheme: Any, intensity: Any,
    on_unstable: Any, newton_tol: Any, max_newton: Any, rannacher_steps: Any,
) -> tuple[int, str, str, Intensity, float, int, int]:
    """The checked options of :func:`solve_fd` (same order; ``n_steps``/``dt`` become the step
    count), ``ValueError`` naming the option otherwise. Also what a sweep file is checked with."""
    steps = resolve_steps(problem.T, n_steps, dt, 1000, "fd")
    model_scales(market, problem)
    require_grid_memory("fd solver", steps + 1, steps_option(n_steps, dt, steps), market, problem, tables=FD_TABLES)
    scheme = choice("fd option scheme", scheme, SCHEMES)
    on_unstable = choice("fd option on_unstable", on_unstable, ON_UNSTABLE)
    intensity = resolve_intensity(intensity, market)
    if intensity is None:
        intensity = Exponential(market.A, market.k)
    if not isinstance(intensity, Intensity):
        raise ValueError(f"fd option intensity must be an mmray.solvers.intensity.Intensity, got {intensity!r}")
    return (steps, scheme, on_unstable, intensity, real("fd option newton_tol", newton_tol, gt=0, lt=1),
            integer("fd option max_newton", max_newton, ge=1),
            integer("fd option rannacher_steps", rannacher_steps, ge=0))


def solve_fd(
    market: MarketParams,
    problem: ProblemParams,
    n_steps: int | None = None,
    dt: float | None = None,
    scheme: str = "cn",
    intensity: Intensity | str | dict[str, Any] | None = None,
    on_unstable: str = "raise",
    newton_tol: float = 1e-12,
    max_newton: int = 50,
    rannacher_steps: int = 0,
) -> Solution:
    """Solve the HJB system of objective A or B backward in time.

    Parameters
    ----------
    market, problem : MarketParams, ProblemParams
        Model: volatility ``sigma``, drift ``mu``, trade size, risk aversion, horizon, inventory
        bound ``Q`` (required), objective, terminal penalty ``ell(q)``.
    n_steps, dt : int or float, optional
        Time grid ``t_n = n dt``, ``dt = T / n_steps`` (default 1000 steps); ``dt`` must divide ``T``.
    scheme : {"explicit", "implicit", "cn"}
        Time stepping (see module docstring).
    intensity : Intensity, str or dict, optional
        ``Lambda(delta)`` of both sides (an instance, or a spec for
        :func:`mmray.solvers.intensity.resolve_intensity`); default ``A exp(-k delta)`` of ``market``.
    on_unstable : {"raise", "adapt"}
        Explicit scheme only: refuse a grid whose step exceeds the stability limit anywhere in the
        solve (the message names an ``n_steps`` checked to be stable throughout), or split such
        steps into stable sub-steps.
    newton_tol : float
        Newton stops when the update is below ``newton_tol * (1 + max|theta|)`` (implicit, cn).
    max_newton : int
        Newton iteration limit per step.
    rannacher_steps : int
        ``cn`` only: number of initial steps (from ``T``) replaced by two implicit half steps
        (default 0; use 2 for a non-smooth terminal penalty or intensity).

    Returns
    -------
    Solution
        ``method="fd"`` on the grid ``t_n``; ``info`` has the scheme, the intensity, Newton
        iteration counts, explicit sub-steps and the largest stable explicit ``dt`` seen.
    """
    start = _time.perf_counter()
    steps, scheme, on_unstable, intensity, newton_tol, max_newton, rannacher_steps = fd_settings(
        market, problem, n_steps, dt, scheme, intensity, on_unstable, newton_tol, max_newton, rannacher_steps)

    op = HJBOperator(market, problem, intensity)
    stepper = _Stepper(op, newton_tol, max_newton)
    terminal = -problem.terminal(op.q)
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is refused below, with its cause
        times, theta = _backward(op, stepper, terminal, problem.T, steps, scheme, rannacher_steps)
    if scheme == "explicit" and on_unstable == "raise" and stepper.first_unstable is not None:
        raise _unstable_error(op, terminal, problem.T, steps, stepper)
    h = problem.T / steps
    bid, ask = op.quotes(theta)
    due = np.ones(bid.shape, dtype=bool)
    due[:, -1] = False  # no bid at Q; no ask at -Q (mirrored below)
    require_finite_solution("fd", theta, bid, ask, "use method='exact' (exponential intensity) or less extreme "
                            "parameters", quoted=(due, due[:, ::-1]))
    its = stepper.newton_iterations
    info: dict[str, Any] = {
        "scheme": scheme,
        "n_steps": steps,
        "dt": h,
        "intensity": intensity.describe(),
        "objective": problem.objective,
        "newton_iterations_max": max(its) if its else 0,
        "newton_iterations_mean": float(np.mean(its)) if its else 0.0,
        "explicit_substeps": stepper.substeps if scheme == "explicit" else 0,
        "rannacher_steps": rannacher_steps if scheme == "cn" else 0,
        "seconds": _time.perf_counter() - start,
    }
    if scheme == "explicit":
        info["max_rate"] = stepper.max_rate
        info["stable_dt_limit"] = 1.0 / stepper.max_rate if stepper.max_rate > 0 else None
    return Solution("fd", market, problem, times, op.q, theta, bid, ask, info)
