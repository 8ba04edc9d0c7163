"""``mmray tune`` (also ``python -m mmray.tune``): Ray Tune sweeps of market-making strategies.

How to run
----------
::

    python -m mmray.tune                          # quick risk-aversion sweep, all local CPUs
    python -m mmray.tune --sweep robustness       # built-ins: risk-aversion, hparams, robustness, rl
    python -m mmray.tune --sweep rl               # RLlib PPO under Tune: 4 configurations x 2 seeds, minutes
    python -m mmray.tune --config examples/sweeps/hparams_optuna.yaml
    python -m mmray.tune --smoke                  # a seconds-long version (tests, CI)
    python -m mmray.tune --resume runs/risk-aversion-20250101-120000   # continue after a crash
    python -m mmray.tune --address auto           # on a running Ray cluster
    python -m mmray.tune --dashboard              # Ray dashboard on http://127.0.0.1:8265

What to expect
--------------
With no arguments: an embedded Ray on all local CPUs runs 36 trials (at 9 risk aversions: the
continuous-time optimum, the simulator's discrete-time optimum beside it, Avellaneda-Stoikov and a
constant spread; 40,000 Monte Carlo paths each), about a minute on 2 cores (Ray start-up included).
Tune's progress table is printed while trials run, then the results table, what "best" means for
the sweep (a frontier has none: each strategy's best gamma for a reference maker) and the run
directory ``runs/<name>/`` with ``results.parquet``/``results.csv``, ``frontier.png``,
``report.md`` and the picked policies (``best_policies/<strategy>/``), with the
``mmray backtest --policy ...`` command that reproduces each picked
row. The same sweep with the same ``--seed`` gives the same table (grid and random search
without ASHA; see docs/tuning.md). Ctrl-C stops the sweep, keeps what finished and prints the
``--resume`` command. Exit status: 0 when at least one trial finished, 1 when none did, 2 for
an invalid sweep or option (nothing is started: the sweep, ``--storage`` and ``--name`` are
checked first, and a cluster given by ``--address`` that does not answer within 20 s is an error),
130 when interrupted.

``--sweep rl`` trains RLlib PPO agents (one training run per trial; every configuration with each of
its seeds) in a small env and reports, per configuration, the mean and standard error over its seeds
of the best agent's ``gap_closed`` (how much of the gap between the best constant spread and the
optimum of the env it closes), then exports the best configuration's best agent to ``best_policy/``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from mmray.cli.flags import add_ray_flags, path_component
from mmray.io import to_jsonable
from mmray.tuning.spec import ALGORITHMS, KINDS, METRIC_MODES, RL_METRIC_MODES, SweepConfigError, SweepSpec

#: every metric a sweep can rank by (``rl`` sweeps: the agents' optimality figures)
_METRICS = {**METRIC_MODES, **RL_METRIC_MODES}

NAME = "tune"
DESCRIPTION = "Ray Tune sweeps of market-making strategies (see docs/tuning.md)."


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``mmray tune`` on the sub-command action ``sub``."""
    p = sub.add_parser(NAME, help="Ray Tune sweeps (same as python -m mmray.tune)", description=DESCRIPTION,
                       epilog="Exit status: 0 when a trial finished, 1 when none did, 2 for an invalid sweep or "
                              "option (nothing started), 130 when interrupted.")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--sweep", choices=KINDS,
                      help="built-in sweep; rl: RLlib PPO, 4 configurations x 2 seeds in a small env, a few "
                           "minutes on 2 CPUs (default: risk-aversion)")
    what.add_argument("--config", metavar="FILE", help="YAML or JSON sweep file, see examples/sweeps/ (default: none)")
    what.add_argument("--resume", metavar="DIR",
                      help="continue the interrupted sweep in run directory DIR (default: start a new sweep)")
    p.add_argument("--smoke", action="store_true", help="seconds-long version of the sweep (few paths, short grids)")
    p.add_argument("--seed", type=int, help="sweep seed, every trial seed derives from it (default: the sweep's)")
    p.add_argument("--name", type=path_component,
                   help="run directory name, one path component (default: <sweep name>-<UTC time>)")
    p.add_argument("--storage", default="runs",
                   help="directory or s3:// URI holding run directories, checked before Ray starts "
                        "(default: %(default)s)")
    add_ray_flags(p, local=False, cpus_flag="--num-cpus")
    p.add_argument("--cpus-per-trial", type=float,
                   help="CPUs reserved per trial, fractions allowed (default: the sweep's)")
    p.add_argument("--mc-ray", action="store_true", help="run each trial's Monte Carlo chunks as Ray tasks")
    p.add_argument("--mc-workers", type=int,
                   help="1-CPU bundles per trial for its Monte Carlo tasks, with --mc-ray only (default: the sweep's)")
    p.add_argument("--search", choices=ALGORITHMS, help="search algorithm, hparams sweeps (default: the sweep's)")
    p.add_argument("--metric", choices=tuple(_METRICS),
                   help="metric to rank and optimise; rl sweeps: gap_closed, optimality_ratio or agent_value "
                        "(default: the sweep's)")
    p.add_argument("--num-samples", type=int, help="trials for random/optuna search (default: the sweep's)")
    p.add_argument("--asha", action="store_true",
                   help="early stopping with ASHA over Monte Carlo rungs (rl sweeps: over quarters of the training "
                        "budget)")
    p.add_argument("--n-paths", type=int, help="Monte Carlo paths per trial, not rl sweeps (default: the sweep's)")
    p.add_argument("--max-failures", type=int,
                   help="retries of a trial whose worker died or that raised (default: the sweep's)")
    p.add_argument("--dashboard", action="store_true", help="start Ray with its dashboard on 127.0.0.1:8265")
    p.add_argument("--json", action="store_true", help="print one JSON object with the results instead of tables")
    p.add_argument("-q", "--quiet", action="store_true", help="no Tune progress table")
    p.add_argument("-v", "--verbose", action="store_true", help="Tune prints every result; worker logs shown")
    p.set_defaults(run=run)
    return p


def build_parser() -> argparse.ArgumentParser:
    """The ``mmray tune`` argument parser (the sub-parser of :func:`mmray.cli.build_parser`)."""
    from mmray.cli import command_parser

    return command_parser(NAME)


# flags that define a sweep (and so cannot change a sweep being resumed) -> argparse destination
_SWEEP_FLAGS = {
    "--smoke": "smoke", "--seed": "seed",
    "--cpus-per-trial": "cpus_per_trial", "--mc-ray": "mc_ray", "--mc-workers": "mc_workers",
    "--search": "search", "--metric": "metric", "--num-samples": "num_samples", "--asha": "asha",
    "--n-paths": "n_paths", "--max-failures": "max_failures",
}


def _override_list(args: argparse.Namespace) -> list[tuple[str, list[tuple[str | None, str, Any]]]]:
    """``[(flag as typed, [(section, key, value), ...]), ...]`` for the sweep-defining flags given."""
    out: list[tuple[str, list[tuple[str | None, str, Any]]]] = []

    def add(flag: str, value: Any, *fields: tuple[str | None, str, Any], show: bool = True) -> None:
        if value is not None and value is not False:
            out.append((f"{flag} {value}" if show else flag, list(fields)))

    add("--seed", args.seed, (None, "seed", args.seed))
    add("--cpus-per-trial", args.cpus_per_trial, ("resources", "cpus_per_trial", args.cpus_per_trial))
    add("--mc-ray", args.mc_ray, ("resources", "mc_ray", True), show=False)
    add("--mc-workers", args.mc_workers, ("resources", "mc_workers", args.mc_workers))
    add("--search", args.search, ("search", "algorithm", args.search))
    if args.metric:  # each metric has one direction
        add("--metric", args.metric, ("search", "metric", args.metric), ("search", "mode", _METRICS[args.metric]))
    add("--num-samples", args.num_samples, ("search", "num_samples", args.num_samples))
    add("--n-paths", args.n_paths, ("sim", "n_paths", args.n_paths))
    add("--asha", args.asha, ("search", "asha", "rungs"), show=False)  # rungs: set in _apply
    add("--max-failures", args.max_failures, ("failure", "max_failures", args.max_failures))
    return out


def _apply(doc: dict[str, Any], fields: list[tuple[str | None, str, Any]]) -> dict[str, Any]:
    import copy

    from mmray.distributed import n_chunks

    doc = copy.deepcopy(doc)
    for section, key, value in fields:
        if (section, key, value) == ("search", "asha", "rungs"):
            # up to 4 rungs of whole Monte Carlo chunks (at least 2; fewer chunks is reported as an error); an rl
            # sweep's trials are compared at quarters of their budget
            sim = doc.get("sim", {})
            chunks = n_chunks(int(sim.get("n_paths", 1)), int(sim.get("chunk_size", 1))) if "n_paths" in sim else 4
            rungs = 4 if doc.get("kind") == "rl" else chunks
            value = {"rungs": max(2, min(4, rungs))}
        (doc if section is None else doc.setdefault(section, {}))[key] = value
    return doc


def _overrides(spec: SweepSpec, args: argparse.Namespace) -> SweepSpec:
    """``spec`` with the sweep-defining flags applied; an error names the flag(s) that caused it."""
    from mmray.tuning.config import spec_from_dict

    given = _override_list(args)
    if not given:
        return spec
    doc = spec.to_dict()["sweep"]
    source = f"{spec.source} + command line"
    try:
        return spec_from_dict({"sweep": _apply(doc, [f for _, fs in given for f in fs])}, source=source)
    except SweepConfigError as exc:
        if exc.path is None:
            raise
        path = exc.path

        def sets(fields: list[tuple[str | None, str, Any]]) -> bool:
            names = [".".join(p for p in ("sweep", section, key) if p) for section, key, _ in fields]
            return any(path == n or path.startswith((f"{n}.", f"{n}[")) for n in names)

        culprits = [flag for flag, fs in given if sets(fs)]
        if not culprits:  # e.g. --search grid on a sweep with ranges: the error is in another field
            for flag, fs in given:
                try:
                    spec_from_dict({"sweep": _apply(doc, fs)}, source=source)
                except SweepConfigError:
                    culprits.append(flag)
        culprits = culprits or [flag for flag, _ in given]
        raise SweepConfigError(f"{', '.join(culprits)}: {exc.detail} (sweep field {path} of {spec.source})",
                               spec.source, path, exc.detail) from None


def load_requested_spec(args: argparse.Namespace) -> SweepSpec:
    """The spec chosen by ``--sweep``/``--config`` (default risk-aversion), with overrides and ``--smoke``."""
    from mmray.tuning.config import load_spec
    from mmray.tuning.presets import preset, smoke

    spec = load_spec(args.config) if args.config else preset(args.sweep or "risk-aversion")
    if args.smoke:
        spec = smoke(spec)
    return _overrides(spec, args)


def _print_summary(summary: Any, as_json: bool) -> None:
    """The results: one JSON object with ``--json``, else the console summary (both written by
    :class:`mmray.tuning.runner.RunSummary`, which says what "best" means for the sweep's kind)."""
    if as_json:
        print(json.dumps(to_jsonable(summary.as_json()), indent=1, default=str))
        return
    print("\n".join(summary.console_lines()))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m mmray.tune``: ``mmray tune`` with ``argv``; returns the exit status."""
    from mmray.cli import main as cli_main

    return cli_main(["tune", *(sys.argv[1:] if argv is None else argv)])


def _check(args: argparse.Namespace) -> SweepSpec | None:
    """Everything that can be checked before Ray starts; the sweep to run (``None`` to resume)."""
    from mmray.io import check_writable_dir
    from mmray.tuning.runner import prepare_resume

    if args.resume:
        ignored = [flag for flag, value in _SWEEP_FLAGS.items() if getattr(args, value) not in (None, False)]
        if ignored:
            raise SweepConfigError(f"--resume continues the sweep as it was defined; it does not take "
                                   f"{', '.join(ignored)}")
        prepare_resume(args.resume)
        return None
    spec = load_requested_spec(args)
    if args.mc_workers is not None and not spec.resources.mc_ray:
        raise SweepConfigError(f"--mc-workers {args.mc_workers} sizes the Monte Carlo tasks of --mc-ray; without "
                               "--mc-ray (or resources.mc_ray: true in the sweep file) it has no effect")
    if "://" not in args.storage:
        try:
            check_writable_dir(args.storage)
        except OSError as exc:
            raise SweepConfigError(f"--storage {exc.filename}: {exc.strerror or exc}") from None
    return spec


def run(args: argparse.Namespace) -> int:
    """Run ``mmray tune`` with parsed flags; returns the exit status."""
    from mmray.tuning.runner import RunOptions, resume_sweep, run_sweep, start_ray

    try:
        spec = _check(args)
    except SweepConfigError as exc:
        print(f"mmray tune: error: {exc}", file=sys.stderr)
        return 2
    verbose = 0 if (args.quiet or args.json) else (2 if args.verbose else 1)
    options = RunOptions(storage=args.storage, name=args.name, address=args.address, num_cpus=args.num_cpus,
                         dashboard=args.dashboard, verbose=verbose)
    import ray

    try:
        started, url = start_ray(options)
    except ConnectionError as exc:  # names the address and why, after at most CONNECT_TIMEOUT_S
        print(f"mmray tune: error: {exc}", file=sys.stderr)
        return 2
    except (TimeoutError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {args.address!r}" if args.address else "an embedded Ray"
        print(f"mmray tune: error: cannot start or reach {where}: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    if url:
        print(f"Ray dashboard: {url}  (API token: ~/.ray/auth_token)", file=sys.stderr, flush=True)
    try:
        if not args.json:
            what = f"resuming {args.resume}" if args.resume else f"sweep {spec.name!r} ({spec.kind}) from {spec.source}"
            print(f"mmray tune: {what} on Ray with {ray.cluster_resources().get('CPU', 0):g} CPUs", flush=True)
        summary = resume_sweep(args.resume, options) if args.resume else run_sweep(spec, options)
    except SweepConfigError as exc:
        print(f"mmray tune: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if started:
            ray.shutdown()
    _print_summary(summary, args.json)
    if summary.interrupted:
        return 130
    return 0 if summary.table["status"].isin(["ok", "stopped"]).any() else 1


