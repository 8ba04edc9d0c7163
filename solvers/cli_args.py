"""Command-line flags of the numerical solvers, for ``mmray solve --method {exact,fd,pi,csp}``.

Two functions for the CLI: :func:`add_solver_arguments` adds the flags of ``fd``, ``pi`` and
``csp`` (time stepping, intensity, tick grid, horizon, LP options and every ``csp`` constraint)
to an ``argparse`` parser, and :func:`solver_options` turns the parsed namespace into the
keyword arguments of :func:`mmray.solvers.solve` for one method. Every flag defaults to
``None`` ("solver default"), so only what the user typed is passed on.

Flags that the CLI may already define for the model or the simulator (``--dt``, ``--fill-model``,
``--price-model``, ``--q0``) are not added twice: call :func:`add_solver_arguments` after the model
and simulation flags and their values are reused (``--dt`` as the solver step when ``--n-steps``
is absent, ``--q0`` as the ``csp`` initial inventory when ``--csp-q0`` is absent). The solver's
tick defaults to the market's ``--tick``; ``--solver-tick`` overrides it.
"""

from __future__ import annotations

import argparse
from typing import Any

from mmray.checks import real
from mmray.params import FILL_MODELS, PRICE_MODELS, steps_of
from mmray.solvers.constraints import Constraints
from mmray.solvers.csp import FORMULATIONS, LP_SOLVERS, MILP_SOLVERS
from mmray.solvers.fd import ON_UNSTABLE, SCHEMES
from mmray.solvers.intensity import INTENSITIES
from mmray.solvers.pi import HORIZONS

CONSTRAINT_FLAGS = {
    "max_spread": ("--max-spread", float, "obligation: largest two-sided spread delta_b + delta_a (price units)"),
    "min_two_sided": ("--min-two-sided", float,
                      "obligation: minimum expected fraction of all steps quoting both sides "
                      "(steps at |q| = Q count as one-sided)"),
    "max_limit_prob": ("--max-limit-prob", float, "risk: P(|q_t| = Q) <= EPS at every time after the start"),
    "max_terminal_q2": ("--max-terminal-q2", float, "risk: E[q_T^2] <= BOUND (shares^2)"),
    "bid_min_ticks": ("--bid-min-ticks", int, "smallest bid offset when quoting (ticks)"),
    "bid_max_ticks": ("--bid-max-ticks", int, "largest bid offset when quoting (ticks)"),
    "ask_min_ticks": ("--ask-min-ticks", int, "smallest ask offset when quoting (ticks)"),
    "ask_max_ticks": ("--ask-max-ticks", int, "largest ask offset when quoting (ticks)"),
}


_ALL, _GRID = ("exact", "fd", "pi", "csp"), ("fd", "pi", "csp")
# every solver flag (argparse destination) -> the methods it applies to; a flag given to another
# method is an error rather than silently ignored (constraints are checked by their own messages)
OPTION_METHODS: dict[str, tuple[str, ...]] = {
    "n_steps": _ALL, "dt": _ALL, "intensity": _ALL, "intensity_alpha": _GRID, "intensity_beta": _GRID,
    **dict.fromkeys(("scheme", "on_unstable", "rannacher_steps", "newton_tol", "max_newton"), ("fd",)),
    **dict.fromkeys(("solver_tick", "n_levels", "min_level", "no_quote_forbidden", "fill_model"), ("pi", "csp")),
    **dict.fromkeys(("price_model", "horizon", "discount_rate", "max_iter"), ("pi",)),
    **dict.fromkeys(("csp_q0", "formulation", "lp_solver", "no_constraint_costs", "deterministic", "milp_solver",
                     "milp_time_limit", "max_cg_iter"), ("csp",)),
}


def _add(parser: argparse.ArgumentParser, group: argparse._ArgumentGroup, flag: str, **kwargs: Any) -> None:
    """Add ``flag`` to ``group`` unless ``parser`` already has it (then its value is reused)."""
    if flag in parser._option_string_actions:
        return
    group.add_argument(flag, **kwargs)


def add_solver_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``fd``/``pi``/``csp`` options and the ``csp`` constraints to ``parser``."""
    g = parser.add_argument_group("numerical solvers (--method fd, pi, csp)")
    _add(parser, g, "--n-steps", type=int, default=None, help="time steps over [0, T] (fd default 1000, pi/csp 200)")
    _add(parser, g, "--dt", type=float, default=None, help="time step (must divide T); alternative to --n-steps")
    _add(parser, g, "--intensity", choices=INTENSITIES, default=None,
         help="fill intensity Lambda(delta) for fd/pi/csp (A, k from the model flags)")
    _add(parser, g, "--intensity-alpha", type=float, default=None,
         help="power law: exponent alpha > 1; logistic: shift alpha in A/(1+exp(alpha+beta delta))")
    _add(parser, g, "--intensity-beta", type=float, default=None, help="logistic: slope beta (default k)")
    f = parser.add_argument_group("finite differences (--method fd)")
    _add(parser, f, "--scheme", choices=SCHEMES, default=None, help="time stepping (default cn)")
    _add(parser, f, "--on-unstable", choices=ON_UNSTABLE, default=None,
         help="explicit scheme: refuse an unstable step or split it (default raise)")
    _add(parser, f, "--rannacher-steps", type=int, default=None, help="cn: implicit half steps at the start")
    _add(parser, f, "--newton-tol", type=float, default=None, help="Newton tolerance of implicit steps")
    _add(parser, f, "--max-newton", type=int, default=None, help="Newton iterations per step")
    d = parser.add_argument_group("tick-grid problem (--method pi, csp)")
    _add(parser, d, "--solver-tick", type=float, default=None, help="tick of the quote grid (default: market tick)")
    _add(parser, d, "--n-levels", type=int, default=None, help="quote levels per side (default 15)")
    _add(parser, d, "--min-level", type=int, default=None, help="smallest offset in ticks (default: centred)")
    _add(parser, d, "--no-quote-forbidden", action="store_true", default=None,
         help="always quote both sides (except the forbidden side at |q| = Q)")
    _add(parser, d, "--fill-model", choices=FILL_MODELS, default=None, help="per-step fill probability model")
    _add(parser, d, "--price-model", choices=PRICE_MODELS, default=None, help="mid-price steps (objective A)")
    _add(parser, d, "--horizon", choices=HORIZONS, default=None, help="pi: finite, discounted or average")
    _add(parser, d, "--discount-rate", type=float, default=None, help="pi: discount rate per time unit")
    _add(parser, d, "--max-iter", type=int, default=None, help="pi: policy-iteration limit")
    c = parser.add_argument_group("constrained solver (--method csp)")
    _add(parser, c, "--csp-q0", type=float, default=None, help="initial inventory of the occupation measure")
    _add(parser, c, "--formulation", choices=FORMULATIONS, default=None,
         help="dw: column generation over policies (default); direct: full LP (small problems)")
    _add(parser, c, "--lp-solver", choices=LP_SOLVERS, default=None, help="OR-Tools LP backend (default GLOP)")
    _add(parser, c, "--no-constraint-costs", action="store_true", default=None,
         help="skip the re-solves that price each constraint")
    _add(parser, c, "--deterministic", action="store_true", default=None,
         help="require a deterministic policy (mixed-integer program)")
    _add(parser, c, "--milp-solver", choices=MILP_SOLVERS, default=None, help="backend of --deterministic")
    _add(parser, c, "--milp-time-limit", type=float, default=None, help="seconds for --deterministic")
    _add(parser, c, "--max-cg-iter", type=int, default=None, help="column-generation iteration limit")
    for _, (flag, typ, text) in CONSTRAINT_FLAGS.items():
        _add(parser, c, flag, type=typ, default=None, help=text)


def _constraints(args: argparse.Namespace) -> Constraints | None:
    values = {name: getattr(args, name, None) for name in CONSTRAINT_FLAGS}
    values = {k: v for k, v in values.items() if v is not None}
    return Constraints(**values) if values else None


def solver_options(method: str, args: argparse.Namespace, horizon: float | None = None) -> dict[str, Any]:
    """Keyword arguments of :func:`mmray.solvers.solve` for ``method`` from parsed flags.

    Only flags the user set are included (the solvers' defaults apply otherwise). Raises
    ``ValueError`` for a flag that makes no sense for ``method`` (e.g. ``--scheme`` or constraints
    with ``exact``). ``horizon`` (the problem's ``T``) turns ``--dt`` into the exact solver's time grid.
    """
    get = lambda name: getattr(args, name, None)  # noqa: E731
    for name, methods in OPTION_METHODS.items():
        if get(name) not in (None, False) and method not in methods:
            raise ValueError(f"--{name.replace('_', '-')} does not apply to --method {method} "
                             f"(it is an option of {', '.join(methods)})")
    opts: dict[str, Any] = {}
    cons = _constraints(args)
    if method == "exact":
        if get("intensity") not in (None, "exponential"):
            raise ValueError("--method exact supports the exponential intensity only; use --method fd")
        if cons is not None:
            raise ValueError("constraints need --method csp (per-state ones also work with --method pi)")
        if get("n_steps") is not None and get("dt") is not None:
            raise ValueError("give --n-steps or --dt, not both")
        if get("n_steps") is not None:
            opts["n_times"] = int(get("n_steps")) + 1
        elif get("dt") is not None:
            if horizon is None:
                raise ValueError("--dt with --method exact needs the horizon T")
            opts["n_times"] = steps_of(horizon, real("--dt", get("dt"), gt=0), "--dt") + 1
        return opts
    if method not in ("fd", "pi", "csp"):
        raise ValueError(f"unknown solver method {method!r}; choose from exact, fd, pi, csp")
    if get("n_steps") is not None:
        opts["n_steps"] = get("n_steps")
    elif get("dt") is not None:
        opts["dt"] = get("dt")
    if get("intensity") is not None:
        spec = {"name": get("intensity")}
        for key in ("alpha", "beta"):
            if get(f"intensity_{key}") is not None:
                spec[key] = get(f"intensity_{key}")
        opts["intensity"] = spec
    if method == "fd":
        if cons is not None:
            raise ValueError("constraints need --method csp (per-state ones also work with --method pi)")
        for name in ("scheme", "on_unstable", "rannacher_steps", "newton_tol", "max_newton"):
            if get(name) is not None:
                opts[name] = get(name)
        return opts
    if get("solver_tick") is not None:
        opts["tick"] = get("solver_tick")
    for name in ("n_levels", "min_level", "fill_model"):
        if get(name) is not None:
            opts[name] = get(name)
    if get("no_quote_forbidden"):
        opts["allow_no_quote"] = False
    if cons is not None:
        opts["constraints"] = cons
    if method == "pi":
        for name in ("price_model", "horizon", "discount_rate", "max_iter"):
            if get(name) is not None:
                opts[name] = get(name)
        return opts
    q0 = get("csp_q0") if get("csp_q0") is not None else get("q0")
    if q0 is not None:
        opts["q0"] = q0
    for name in ("formulation", "lp_solver", "milp_solver", "milp_time_limit", "max_cg_iter"):
        if get(name) is not None:
            opts[name] = get(name)
    if get("no_constraint_costs"):
        opts["constraint_costs"] = False
    if get("deterministic"):
        opts["deterministic"] = True
    return opts
