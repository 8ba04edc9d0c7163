"""The flag groups that commands share, and what they parse to.

One ``add_*_flags`` function per group (model, simulation, strategy, Ray, output; the solver
group is :func:`mmray.cli.solver_flags.add_solver_flags`), each flag with a help text that states
its default, and the readers that turn parsed flags into parameters and checks. A command module
adds the groups it needs; a new command (``train``, ``data ...``) reuses them as they are.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from mmray.cli.solver_flags import add_solver_flags
from mmray.distributed import CONNECT_TIMEOUT_S
from mmray.params import FILL_MODELS, OBJECTIVES, PRICE_MODELS, MarketParams, ProblemParams, SimConfig, load_params_file

__all__ = [
    "CHECKPOINT_SIM_FIELDS", "MARKET_FLAGS", "PROBLEM_FLAGS", "RAY_CONFLICTS", "add_model_flags", "add_output_flags",
    "add_ray_flags", "add_sim_flags", "add_solver_flags", "add_strategy_flags", "flag_name", "given", "model_params",
    "path_component", "positive_int", "refuse_conflicts", "sim_config", "use_ray",
]

UNBOUNDED = "none"  # what --q-max none parses to (None means the flag was not given)
MARKET_FLAGS = ("sigma", "A", "k", "drift", "trade_size", "tick", "s0")
PROBLEM_FLAGS = ("gamma", "T", "q_max", "objective", "terminal_penalty")
#: (flag, other flag, why) pairs of the Ray group that cannot be given together
RAY_CONFLICTS = (("local", "address", "--local runs without Ray"),
                 ("local", "workers", "--local runs without Ray; --workers sizes the embedded Ray"))
# simulation settings a checkpoint can bring (SimConfig fields); --paths and --seed are always the flags'
CHECKPOINT_SIM_FIELDS = ("dt", "price_model", "fill_model", "chunk_size", "q0")


# --------------------------------------------------------------------------- argument types


def _q_max(text: str) -> int | str:
    if text.lower() in ("none", "inf", "unbounded"):
        return UNBOUNDED
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'none', got {text!r}") from None
    if not math.isfinite(value) or value != int(value) or value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'none', got {text!r}")
    return int(value)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (worker and CPU counts)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def path_component(text: str) -> str:
    """argparse type: a single file-name component (a run name): no separator, not '.' or '..'."""
    if not text or text in (".", "..") or "/" in text or "\\" in text or "\0" in text:
        raise argparse.ArgumentTypeError(f"expected a single directory name (no '/', not '.' or '..'), got {text!r}")
    return text


# --------------------------------------------------------------------------- flag groups


def add_model_flags(p: argparse.ArgumentParser) -> None:
    """Model flags; each defaults to None ("not given") so that a checkpoint's model can fill it."""
    m, pr = MarketParams(), ProblemParams()
    g = p.add_argument_group("model (defaults: a --policy checkpoint's model, else the GLFT 2013 figure parameters)")
    g.add_argument("--params", type=Path, metavar="FILE",
                   help="JSON file of market parameters (e.g. written by `mmray data calibrate --out FILE`); "
                        "the flags below override it (default: none)")
    g.add_argument("--sigma", type=float, help=f"mid volatility per sqrt(time) (default: {m.sigma:g})")
    g.add_argument("--A", type=float, help=f"fill intensity at the mid, per time (default: {m.A:g})")
    g.add_argument("--k", type=float, help=f"intensity decay per price unit (default: {m.k:g})")
    g.add_argument("--drift", type=float, help=f"mid drift per time (default: {m.drift:g})")
    g.add_argument("--trade-size", type=float, help=f"fill size Delta (default: {m.trade_size:g})")
    g.add_argument("--tick", type=float, help=f"tick for quote rounding, 0 = none (default: {m.tick:g})")
    g.add_argument("--s0", type=float, help=f"initial mid (default: {m.s0:g})")
    g.add_argument("--gamma", type=float, help=f"risk aversion (default: {pr.gamma:g})")
    g.add_argument("--T", type=float, help=f"horizon (default: {pr.T:g})")
    g.add_argument("--q-max", type=_q_max, help=f"inventory bound Q, or 'none' for unbounded (default: {pr.q_max})")
    g.add_argument("--objective", choices=OBJECTIVES,
                   help=f"A = CARA utility, B = running inventory penalty (default: {pr.objective})")
    g.add_argument("--terminal-penalty", type=float,
                   help=f"ell in ell(q) = ell q^2 at T (default: {pr.terminal_penalty:g})")


def add_sim_flags(p: argparse.ArgumentParser, paths: int) -> None:
    """Simulation flags; those a checkpoint can supply default to None ("not given")."""
    c = SimConfig()
    g = p.add_argument_group("simulation (defaults: a --policy checkpoint's own settings where it has them)")
    g.add_argument("--dt", type=float, help="time step (default: the checkpoint's dt, else T/600)")
    g.add_argument("--paths", type=int, default=paths, help="Monte Carlo paths (default: %(default)s)")
    g.add_argument("--seed", type=int, default=0, help="root seed (default: %(default)s)")
    g.add_argument("--price-model", choices=PRICE_MODELS, help=f"mid-price steps (default: {c.price_model})")
    g.add_argument("--fill-model", choices=FILL_MODELS, help=f"per-step fill model (default: {c.fill_model})")
    g.add_argument("--chunk-size", type=int, help=f"paths per chunk, one Ray task each (default: {c.chunk_size})")
    g.add_argument("--q0", type=float, help=f"initial inventory (default: {c.q0:g})")


def add_ray_flags(p: argparse.ArgumentParser, local: bool = True, cpus_flag: str = "--workers") -> None:
    """Where Ray runs: ``--address``, the embedded Ray's CPUs (``cpus_flag``) and, for Monte Carlo
    commands (``local``), ``--local``. Conflicts are refused by :func:`refuse_conflicts` with
    :data:`RAY_CONFLICTS`."""
    g = p.add_argument_group("Ray")
    g.add_argument("--address", help=f"attach to a running Ray cluster, 'auto' or host:port; gives up after "
                                     f"{CONNECT_TIMEOUT_S:g} s (default: start an embedded Ray)")
    g.add_argument(cpus_flag, type=positive_int, metavar="N",
                   help="CPUs of the embedded Ray, an integer >= 1 (default: all local CPUs)")
    if local:
        g.add_argument("--local", action="store_true",
                       help="run in this process without Ray, same numbers (default: Ray when the paths make more "
                            "than one --chunk-size chunk)")


def add_strategy_flags(p: argparse.ArgumentParser, multiple: bool) -> None:
    """``--strategy NAME`` (repeatable when ``multiple``) or ``--policy DIR``, and their parameters."""
    from mmray.strategies import STRATEGIES

    g = p.add_argument_group("strategy")
    src = g.add_mutually_exclusive_group()
    src.add_argument("--strategy", choices=STRATEGIES, action="append",
                     help="strategy by name" + (", repeatable" if multiple else ", one") + " (default: optimal)")
    src.add_argument("--policy", type=Path, metavar="DIR",
                     help="a saved policy checkpoint directory, or the --out directory of `mmray solve` (its "
                          "policy/ checkpoint) (default: none)")
    g.add_argument("--half-spread", type=float,
                   help="half-spread of constant/inventory (default: constant: the myopic optimum dtilde; "
                        "inventory: dtilde + Delta C/2, Guéant 2017)")
    g.add_argument("--skew", type=float,
                   help="inventory skew of the inventory strategy (default: the Guéant 2017 slope C)")


def add_output_flags(p: argparse.ArgumentParser, writes: str) -> None:
    """``--out DIR`` (``writes``: the files it holds afterwards) and ``--json``."""
    g = p.add_argument_group("output")
    g.add_argument("--out", type=Path, metavar="DIR",
                   help=f"write {writes} into DIR, all or nothing: nothing is written when the command fails "
                        "(default: write nothing)")
    g.add_argument("--json", action="store_true",
                   help="print one JSON object with the results on stdout, tables on stderr (default: tables on "
                        "stdout)")


# --------------------------------------------------------------------------- readers


def flag_name(dest: str) -> str:
    """``trade_size`` -> ``--trade-size``."""
    return "--" + dest.replace("_", "-")


def _is_given(args: argparse.Namespace, dest: str) -> bool:
    return getattr(args, dest, None) not in (None, False, [])


def refuse_conflicts(args: argparse.Namespace, pairs: Iterable[tuple[str, str, str]]) -> None:
    """Raise ``ValueError`` for the first ``(flag, other, why)`` whose two flags were both given."""
    for first, second, why in pairs:
        if _is_given(args, first) and _is_given(args, second):
            raise ValueError(f"{flag_name(first)} and {flag_name(second)} cannot be combined: {why}")


def given(args: argparse.Namespace, names: Sequence[str]) -> dict[str, Any]:
    """The model flags the user gave, as field values (``--q-max none`` -> ``None``)."""
    out = {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}
    if out.get("q_max") == UNBOUNDED:
        out["q_max"] = None
    return out


def model_params(args: argparse.Namespace, market: MarketParams | None = None, problem: ProblemParams | None = None,
                 source: str | None = None) -> tuple[MarketParams, ProblemParams]:
    """The model: the flags given, over a ``--params`` file, over ``market``/``problem`` (default: the defaults).

    When the base model comes from ``source`` (e.g. "checkpoint"), flags that change it are noted on stderr.
    """
    market, problem = market or MarketParams(), problem or ProblemParams()
    from_file = load_params_file(args.params) if getattr(args, "params", None) is not None else {}
    m_given, p_given = {**from_file, **given(args, MARKET_FLAGS)}, given(args, PROBLEM_FLAGS)
    if source is not None:
        changed = [f"{flag_name(n)} {v} ({source}: {getattr(base, n)})"
                   for base, values in ((market, m_given), (problem, p_given))
                   for n, v in values.items() if v != getattr(base, n)]
        if changed:
            who = "flags and --params" if from_file else "flags"
            print(f"mmray {args.command}: note: {who} override the {source}'s model: {', '.join(changed)}",
                  file=sys.stderr)
    return market.replace(**m_given), problem.replace(**p_given)


def sim_config(args: argparse.Namespace, problem: ProblemParams, saved: dict[str, Any] | None = None) -> SimConfig:
    """Simulation settings: the flags given, over ``saved`` (a checkpoint's own), over the defaults
    (dt = T/600); checked against ``problem``."""
    values = {"dt": problem.T / 600.0, **(saved or {})}
    values.update({k: getattr(args, k) for k in CHECKPOINT_SIM_FIELDS if getattr(args, k, None) is not None})
    cfg = SimConfig(n_paths=args.paths, seed=args.seed, **values)
    cfg.n_steps(problem.T)
    return cfg


def use_ray(args: argparse.Namespace, config: SimConfig) -> bool:
    """Whether the Monte Carlo chunks of ``config`` run as Ray tasks; starts or attaches Ray if so."""
    from mmray.distributed import ensure_ray, n_chunks

    if args.local or (n_chunks(config.n_paths, config.chunk_size) < 2 and not args.address):
        if args.workers is not None and not args.local:
            print(f"mmray {args.command}: note: --workers {args.workers} has no effect: {config.n_paths} paths fit "
                  f"in one chunk (--chunk-size {config.chunk_size}), which runs without Ray", file=sys.stderr)
        return False
    ensure_ray(address=args.address, num_cpus=args.workers)
    return True
