"""Ray Tune sweeps of market-making strategies: ``python -m mmray.tune`` (also ``mmray tune``).

How to run
----------
::

    python -m mmray.tune                          # quick risk-aversion sweep, all local CPUs
    python -m mmray.tune --sweep robustness       # built-ins: risk-aversion, hparams, robustness
    python -m mmray.tune --config examples/sweeps/hparams_optuna.yaml
    python -m mmray.tune --smoke                  # a seconds-long version (tests, CI)
    python -m mmray.tune --resume runs/risk-aversion-20250101-120000   # continue after a crash
    python -m mmray.tune --address auto           # on a running Ray cluster
    python -m mmray.tune --dashboard              # Ray dashboard on http://127.0.0.1:8265

What to expect
--------------
With no arguments: an embedded Ray on all local CPUs runs 27 trials (the exact optimal
strategy, Avellaneda-Stoikov and a constant spread at 9 risk aversions, 50,000 Monte Carlo
paths each), about 45 s on 2 cores (Ray start-up included). Tune's progress table is printed while trials run,
then the results table, the best trial and the run directory ``runs/<name>/`` with
``results.parquet``/``results.csv``, ``frontier.png``, ``report.md`` and ``best_policy/``
(``mmray backtest --policy runs/<name>/best_policy``). The same sweep with the same
``--seed`` gives the same table. Exit status: 0 when at least one trial finished, 1 when
none did, 2 for an invalid sweep or option.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from mmray.io import to_jsonable
from mmray.tuning.spec import ALGORITHMS, KINDS, METRIC_MODES, NotAvailableError, SweepConfigError, SweepSpec


def build_parser() -> argparse.ArgumentParser:
    """The ``mmray tune`` argument parser."""
    p = argparse.ArgumentParser(
        prog="mmray tune", description="Ray Tune sweeps of market-making strategies (see docs/tuning.md).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    what = p.add_mutually_exclusive_group()
    what.add_argument("--sweep", choices=KINDS, help="built-in sweep (default: risk-aversion); rl: not available yet")
    what.add_argument("--config", metavar="FILE", help="YAML or JSON sweep file (see examples/sweeps/)")
    what.add_argument("--resume", metavar="DIR", help="continue the interrupted sweep in run directory DIR")
    p.add_argument("--smoke", action="store_true", help="seconds-long version of the sweep (few paths, short grids)")
    p.add_argument("--seed", type=int, help="sweep seed (every trial seed derives from it)")
    p.add_argument("--name", help="run directory name (default: <sweep name>-<UTC time>)")
    p.add_argument("--storage", default="runs", help="directory or s3:// URI holding run directories (default: runs)")
    p.add_argument("--address", help="attach to a running Ray cluster ('auto' or host:port)")
    p.add_argument("--num-cpus", type=int, help="CPUs of the embedded Ray (default: all local CPUs)")
    p.add_argument("--cpus-per-trial", type=float, help="CPUs reserved per trial (fractions allowed)")
    p.add_argument("--mc-ray", action="store_true", help="run each trial's Monte Carlo chunks as Ray tasks")
    p.add_argument("--mc-workers", type=int, help="1-CPU bundles per trial for its Monte Carlo tasks (with --mc-ray)")
    p.add_argument("--search", choices=ALGORITHMS, help="search algorithm (hparams sweeps)")
    p.add_argument("--metric", choices=tuple(METRIC_MODES), help="metric to rank and optimise")
    p.add_argument("--num-samples", type=int, help="trials for random/optuna search")
    p.add_argument("--asha", action="store_true", help="early stopping with ASHA over Monte Carlo rungs")
    p.add_argument("--n-paths", type=int, help="Monte Carlo paths per trial")
    p.add_argument("--max-failures", type=int, help="retries of a trial whose worker died or that raised")
    p.add_argument("--dashboard", action="store_true", help="start Ray with its dashboard on 127.0.0.1:8265")
    p.add_argument("--json", action="store_true", help="print one JSON object with the results instead of tables")
    p.add_argument("-q", "--quiet", action="store_true", help="no Tune progress table")
    p.add_argument("-v", "--verbose", action="store_true", help="Tune prints every result; worker logs shown")
    return p


# flags that define a sweep (and so cannot change a sweep being resumed) -> argparse destination
_SWEEP_FLAGS = {
    "--smoke": "smoke", "--seed": "seed",
    "--cpus-per-trial": "cpus_per_trial", "--mc-ray": "mc_ray", "--mc-workers": "mc_workers",
    "--search": "search", "--metric": "metric", "--num-samples": "num_samples", "--asha": "asha",
    "--n-paths": "n_paths", "--max-failures": "max_failures",
}


def _overrides(spec: SweepSpec, args: argparse.Namespace) -> SweepSpec:
    from mmray.tuning.config import spec_from_dict

    doc = spec.to_dict()["sweep"]
    changed = False

    def put(section: str | None, key: str, value: Any) -> None:
        nonlocal changed
        if value is None:
            return
        (doc if section is None else doc.setdefault(section, {}))[key] = value
        changed = True

    put(None, "seed", args.seed)
    put("resources", "cpus_per_trial", args.cpus_per_trial)
    put("resources", "mc_ray", True if args.mc_ray else None)
    put("resources", "mc_workers", args.mc_workers)
    put("search", "algorithm", args.search)
    put("search", "metric", args.metric)
    put("search", "mode", METRIC_MODES[args.metric] if args.metric else None)  # each metric has one direction
    put("search", "num_samples", args.num_samples)
    put("search", "asha", {"rungs": 4} if args.asha else None)
    put("sim", "n_paths", args.n_paths)
    put("failure", "max_failures", args.max_failures)
    if not changed:
        return spec
    return spec_from_dict({"sweep": doc}, source=f"{spec.source} + command line")


def load_requested_spec(args: argparse.Namespace) -> SweepSpec:
    """The spec chosen by ``--sweep``/``--config`` (default risk-aversion), with overrides and ``--smoke``."""
    from mmray.tuning.config import load_spec
    from mmray.tuning.presets import preset, smoke

    spec = load_spec(args.config) if args.config else preset(args.sweep or "risk-aversion")
    if args.smoke:
        spec = smoke(spec)
    return _overrides(spec, args)


def _print_summary(summary: Any, as_json: bool) -> None:
    from mmray.tuning.results import summary_columns

    df = summary.table
    counts = df["status"].value_counts().to_dict() if len(df) else {}
    if as_json:
        out = {
            "run_dir": summary.run_dir, "seconds": summary.seconds, "n_trials": len(df),
            "status": counts, "files": summary.files, "best": summary.best_row,
            "rows": df.to_dict(orient="records"),
        }
        print(json.dumps(to_jsonable(out), indent=1, default=str))
        return
    import pandas as pd

    cols = [c for c in summary_columns(summary.spec) if c in df]
    with pd.option_context("display.max_rows", 60, "display.width", 160, "display.max_columns", 20,
                           "display.float_format", "{:.4g}".format):
        print(f"\nResults ({len(df)} trials: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
              + f"; {summary.seconds:.1f} s)")
        print(df[cols].to_string(index=False))
    if summary.best_row is not None:
        r = summary.best_row
        metric = summary.spec.search.metric
        params = ", ".join(f"{p}={r[p]}" for p in summary.spec.param_names if p in r)
        print(f"\nBest: trial {r['trial']} ({params}): {metric} = {r[metric]:.4g}")
    print(f"\nRun directory: {summary.run_dir}")
    for key in ("results.parquet", "results.csv", "report.md", "frontier.png", "metric_vs_params.png",
                "robustness.png", "best_policy"):
        if key in summary.files:
            print(f"  {key:<20} {summary.files[key]}")
    if "best_policy" in summary.files and "://" not in summary.files["best_policy"]:
        print(f"Backtest the best policy: mmray backtest --policy {summary.files['best_policy']}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m mmray.tune`` and ``mmray tune``; returns the exit status."""
    args = build_parser().parse_args(argv)
    from mmray.tuning.runner import RunOptions, resume_sweep, run_sweep, start_ray

    if args.resume:
        ignored = [flag for flag, value in _SWEEP_FLAGS.items() if getattr(args, value) not in (None, False)]
        if ignored:
            print(f"mmray tune: error: --resume continues the sweep as it was defined; it does not take "
                  f"{', '.join(ignored)}", file=sys.stderr)
            return 2
    try:
        spec = None if args.resume else load_requested_spec(args)
    except (SweepConfigError, NotAvailableError) as exc:
        print(f"mmray tune: error: {exc}", file=sys.stderr)
        return 2
    verbose = 0 if (args.quiet or args.json) else (2 if args.verbose else 1)
    options = RunOptions(storage=args.storage, name=args.name, address=args.address, num_cpus=args.num_cpus,
                         dashboard=args.dashboard, verbose=verbose)
    import ray

    try:
        started, url = start_ray(options)
    except (ConnectionError, TimeoutError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {args.address!r}" if args.address else "an embedded Ray"
        print(f"mmray tune: error: cannot start or reach {where}: {exc}", file=sys.stderr)
        return 2
    if url:
        print(f"Ray dashboard: {url}  (API token: ~/.ray/auth_token)", file=sys.stderr, flush=True)
    try:
        if not args.json:
            what = f"resuming {args.resume}" if args.resume else f"sweep {spec.name!r} ({spec.kind}) from {spec.source}"
            print(f"mmray tune: {what} on Ray with {ray.cluster_resources().get('CPU', 0):g} CPUs", flush=True)
        summary = resume_sweep(args.resume, options) if args.resume else run_sweep(spec, options)
    except (SweepConfigError, NotAvailableError) as exc:
        print(f"mmray tune: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if started:
            ray.shutdown()
    _print_summary(summary, args.json)
    return 0 if (summary.table["status"] != "error").any() else 1


if __name__ == "__main__":
    raise SystemExit(main())
