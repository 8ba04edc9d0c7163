"""The solver flag group of ``mmray solve --method {exact,fd,pi,csp}``.

:func:`add_solver_flags` adds the options of ``fd``, ``pi`` and ``csp`` (time stepping, intensity,
tick grid, horizon, LP options and every ``csp`` constraint) to a parser; :func:`solver_options`
turns the parsed flags into the keyword arguments of :func:`mmray.solvers.solve` for one method.
Every flag defaults to ``None`` ("solver default"), so only what the user typed is passed on.

Which methods take a flag is not restated here: :data:`FLAG_OPTIONS` names the solver keyword
each flag sets and :func:`mmray.solvers.method_options` (the solvers' signatures) says which
methods take that keyword. A flag given to a method that does not take it is an error.

A flag the parser already has (``--q0``, ``--dt``, ``--fill-model``, ``--price-model`` of the
simulation group) is not added twice and its value is reused.
"""

from __future__ import annotations

import argparse
from typing import Any

from mmray.checks import real
from mmray.params import FILL_MODELS, PRICE_MODELS, steps_of
from mmray.solvers import METHODS, method_options
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

#: solver flag (argparse destination) -> the keyword of :func:`mmray.solvers.solve` it sets
FLAG_OPTIONS: dict[str, str] = {
    "n_steps": "n_steps", "dt": "dt", "intensity": "intensity", "intensity_alpha": "intensity",
    "intensity_beta": "intensity", "scheme": "scheme", "on_unstable": "on_unstable",
    "rannacher_steps": "rannacher_steps", "newton_tol": "newton_tol", "max_newton": "max_newton",
    "solver_tick": "tick", "n_levels": "n_levels", "min_level": "min_level", "no_quote_forbidden": "allow_no_quote",
    "fill_model": "fill_model", "price_model": "price_model", "horizon": "horizon", "discount_rate": "discount_rate",
    "max_iter": "max_iter", "csp_q0": "q0", "formulation": "formulation", "lp_solver": "lp_solver",
    "no_constraint_costs": "constraint_costs", "deterministic": "deterministic", "milp_solver": "milp_solver",
    "milp_time_limit": "milp_time_limit", "max_cg_iter": "max_cg_iter",
}
# exact takes its time grid as n_times (set from --n-steps or --dt) and only the exponential intensity
_EXACT_FLAGS = ("n_steps", "dt", "intensity")


def option_methods(flag: str) -> tuple[str, ...]:
    """The solver methods that take solver flag ``flag`` (an argparse destination)."""
    option = FLAG_OPTIONS[flag]
    return tuple(m for m in METHODS if option in method_options(m) or (m == "exact" and flag in _EXACT_FLAGS))


#: every solver flag -> the methods it applies to, derived from the solvers' signatures
OPTION_METHODS: dict[str, tuple[str, ...]] = {flag: option_methods(flag) for flag in FLAG_OPTIONS}


def _add(parser: argparse.ArgumentParser, group: argparse._ArgumentGroup, flag: str, **kwargs: Any) -> None:
    """Add ``flag`` to ``group`` unless ``parser`` already has it (then its value is reused)."""
    if flag in parser._option_string_actions:
        return
    group.add_argument(flag, default=None, **kwargs)


def add_solver_flags(parser: argparse.ArgumentParser) -> None:
    """Add the ``fd``/``pi``/``csp`` options and the ``csp`` constraints to ``parser``."""
    g = parser.add_argument_group("numerical solvers (--method fd, pi, csp)")
    _add(parser, g, "--n-steps", type=int,
         help="time steps over [0, T] (default: exact 1000, fd 1000, pi/csp 200)")
    _add(parser, g, "--dt", type=float, help="time step (must divide T); alternative to --n-steps (default: from "
                                             "--n-steps)")
    _add(parser, g, "--intensity", choices=INTENSITIES,
         help="fill intensity Lambda(delta) for fd/pi/csp, A and k from the model flags (default: exponential)")
    _add(parser, g, "--intensity-alpha", type=float,
         help="power law: exponent alpha > 1; logistic: shift alpha in A/(1+exp(alpha+beta delta)) "
              "(default: the intensity's own)")
    _add(parser, g, "--intensity-beta", type=float, help="logistic: slope beta (default: k)")
    f = parser.add_argument_group("finite differences (--method fd)")
    _add(parser, f, "--scheme", choices=SCHEMES, help="time stepping (default: cn)")
    _add(parser, f, "--on-unstable", choices=ON_UNSTABLE,
         help="explicit scheme: refuse an unstable step or split it (default: raise)")
    _add(parser, f, "--rannacher-steps", type=int, help="cn: implicit half steps at the start (default: 0)")
    _add(parser, f, "--newton-tol", type=float, help="Newton tolerance of implicit steps (default: 1e-12)")
    _add(parser, f, "--max-newton", type=int, help="Newton iterations per step (default: 50)")
    d = parser.add_argument_group("tick-grid problem (--method pi, csp)")
    _add(parser, d, "--solver-tick", type=float, help="tick of the quote grid (default: the market's --tick)")
    _add(parser, d, "--n-levels", type=int,
         help="quote levels per side (default: chosen from the model, covering the optimum's quotes; with only "
              "--min-level, 15)")
    _add(parser, d, "--min-level", type=int,
         help="smallest offset in ticks (default: chosen from the model; with only --n-levels, centred on the "
              "myopic quote)")
    _add(parser, d, "--no-quote-forbidden", action="store_true",
         help="always quote both sides, except the forbidden side at |q| = Q (default: a side may stay empty)")
    _add(parser, d, "--fill-model", choices=FILL_MODELS, help="per-step fill probability model (default: poisson)")
    _add(parser, d, "--price-model", choices=PRICE_MODELS,
         help="mid-price steps, objective A only (default: gaussian)")
    _add(parser, d, "--horizon", choices=HORIZONS, help="pi: finite, discounted or average (default: finite)")
    _add(parser, d, "--discount-rate", type=float,
         help="pi: discount rate per time unit, with --horizon discounted (default: none)")
    _add(parser, d, "--max-iter", type=int, help="pi: policy-iteration limit (default: 100)")
    c = parser.add_argument_group("constrained solver (--method csp)")
    _add(parser, c, "--csp-q0", type=float,
         help="initial inventory of the occupation measure (default: --q0 where the command has it, else 0)")
    _add(parser, c, "--formulation", choices=FORMULATIONS,
         help="dw: column generation over policies; direct: full LP, small problems (default: dw)")
    _add(parser, c, "--lp-solver", choices=LP_SOLVERS, help="OR-Tools LP backend (default: GLOP)")
    _add(parser, c, "--no-constraint-costs", action="store_true",
         help="skip the re-solves that price each constraint (default: price them)")
    _add(parser, c, "--deterministic", action="store_true",
         help="require a deterministic policy, a mixed-integer program (default: randomised allowed)")
    _add(parser, c, "--milp-solver", choices=MILP_SOLVERS, help="backend of --deterministic (default: SCIP)")
    _add(parser, c, "--milp-time-limit", type=float, help="seconds for --deterministic (default: 60)")
    _add(parser, c, "--max-cg-iter", type=int, help="column-generation iteration limit (default: 2000)")
    for _, (flag, typ, text) in CONSTRAINT_FLAGS.items():
        _add(parser, c, flag, type=typ, help=f"{text} (default: none)")


def _constraints(args: argparse.Namespace) -> Constraints | None:
    values = {name: getattr(args, name, None) for name in CONSTRAINT_FLAGS}
    values = {k: v for k, v in values.items() if v is not None}
    return Constraints(**values) if values else None


def _refuse_other_methods(method: str, args: argparse.Namespace) -> None:
    for name, methods in OPTION_METHODS.items():
        if getattr(args, name, None) not in (None, False) and method not in methods:
            raise ValueError(f"--{name.replace('_', '-')} does not apply to --method {method} "
                             f"(it is an option of {', '.join(methods)})")
    if _constraints(args) is not None and "constraints" not in method_options(method):
        raise ValueError("constraints need --method csp (per-state ones also work with --method pi)")


def _exact_options(args: argparse.Namespace, horizon: float | None) -> dict[str, Any]:
    """exact: --n-steps / --dt become its time grid ``n_times``; only the exponential intensity."""
    n_steps, dt = getattr(args, "n_steps", None), getattr(args, "dt", None)
    if getattr(args, "intensity", None) not in (None, "exponential"):
        raise ValueError("--method exact supports the exponential intensity only; use --method fd")
    if n_steps is not None and dt is not None:
        raise ValueError("give --n-steps or --dt, not both")
    if n_steps is not None:
        return {"n_times": int(n_steps) + 1}
    if dt is not None:
        if horizon is None:
            raise ValueError("--dt with --method exact needs the horizon T")
        return {"n_times": steps_of(horizon, real("--dt", dt, gt=0), "--dt") + 1}
    return {}


def solver_options(method: str, args: argparse.Namespace, horizon: float | None = None) -> dict[str, Any]:
    """Keyword arguments of :func:`mmray.solvers.solve` for ``method`` from parsed flags.

    Only flags the user set are included (the solvers' defaults apply otherwise). Raises
    ``ValueError`` for a flag that makes no sense for ``method`` (e.g. ``--scheme`` or constraints
    with ``exact``). ``horizon`` (the problem's ``T``) turns ``--dt`` into the exact solver's time grid.
    """
    if method not in METHODS:
        raise ValueError(f"unknown solver method {method!r}; choose from {', '.join(METHODS)}")
    _refuse_other_methods(method, args)
    if method == "exact":
        return _exact_options(args, horizon)
    given = {name: getattr(args, name, None) for name in FLAG_OPTIONS}
    given = {name: value for name, value in given.items() if value not in (None, False)}
    if "n_steps" in given:  # --n-steps wins over --dt, as before
        given.pop("dt", None)
    if method == "csp" and "csp_q0" not in given and getattr(args, "q0", None) is not None:
        given["csp_q0"] = args.q0
    opts: dict[str, Any] = {}
    for name, value in given.items():
        if name.startswith("intensity"):
            continue
        opts[FLAG_OPTIONS[name]] = False if name in ("no_quote_forbidden", "no_constraint_costs") else value
    if "intensity" in given:
        spec = {"name": given["intensity"]}
        spec.update({key: given[f"intensity_{key}"] for key in ("alpha", "beta") if f"intensity_{key}" in given})
        opts["intensity"] = spec
    cons = _constraints(args)
    if cons is not None:
        opts["constraints"] = cons
    return opts
