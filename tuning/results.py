"""Sweep artefacts: results table, plots (drawn by :mod:`mmray.plots`), markdown report, best policy,
trial manifest.

Everything in a run directory except Tune's own files is written here, each final file
atomically (:func:`mmray.io.atomic_write`: temporary file in the same directory, then ``os.replace``):

* ``results.parquet`` / ``results.csv`` - one row per trial: ``trial`` (row number), the swept
  parameters, ``seed``, ``status`` (ok | stopped | error | unfinished), the metrics with standard
  errors, ``n_paths_done``, ``attempt``, ``error``. Rows are sorted by the parameters in the
  sweep's own order, so the same sweep with the same seed gives the same table byte for byte
  where the sweep is reproducible at all (:func:`reproducibility`);
* ``trials.json`` - run-specific facts per trial (Tune trial id, node, pid, seconds);
* ``frontier.png`` (risk-aversion), ``metric_vs_params.png``, ``robustness.png``;
* ``report.md``; ``best_policy/`` - the best trial's policy as an mmray checkpoint whose
  provenance holds the trial's ``sim`` (its :class:`~mmray.params.SimConfig`); the report prints
  the ``mmray backtest --policy DIR ...`` command that reproduces the best row.
"""

from __future__ import annotations

import json
import math
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mmray.backtest import METRIC_KEYS
from mmray.io import atomic_write
from mmray.params import SimConfig
from mmray.tuning.seeds import trial_seed
from mmray.tuning.spec import SweepSpec
from mmray.tuning.trainables import KEY_METRICS

TABLE_FILES = ("results.parquet", "results.csv")
BEST_POLICY_DIR = "best_policy"


#: Tune trial states of a trial that will not run again in this driver
FINAL_STATES = ("TERMINATED", "ERROR")


@dataclass(frozen=True)
class TrialRecord:
    """One trial as Tune left it: its parameters, last reported metrics, error, run facts.

    ``tune_status`` is Tune's state of the trial when the driver read it: ``TERMINATED``,
    ``ERROR``, ``PENDING``/``RUNNING``/``PAUSED``. (After Ctrl-C, Tune saves the unfinished trials
    as such for ``--resume``, then marks them ``TERMINATED`` in memory when it stops them: a
    trial that never reported its metrics and did not fail is unfinished whatever this says.)
    """

    config: dict[str, Any]
    metrics: dict[str, Any]
    error: str | None
    trial_id: str
    path: str
    tune_status: str = "TERMINATED"


def records_from_result_grid(result_grid: Any) -> list[TrialRecord]:
    """Read a Tune ``ResultGrid`` into :class:`TrialRecord` objects."""
    analysis = getattr(result_grid, "_experiment_analysis", None)
    trials = list(getattr(analysis, "trials", None) or [])
    out = []
    for i, r in enumerate(result_grid):
        metrics = dict(r.metrics or {})
        error = None
        if r.error is not None:
            error = _first_line(r.error)
        path = str(r.path or "")
        trial_id = str(metrics.get("trial_id") or Path(path).name)
        trial = trials[i] if i < len(trials) else None
        status = str(getattr(trial, "status", "TERMINATED"))
        # a trial that never reported has no config in its Result: take the Trial's own
        config = dict(r.config or getattr(trial, "config", None) or {})
        out.append(TrialRecord(config, metrics, error, trial_id, path, status))
    return out


def pending_trials(df: pd.DataFrame, n_expected: int | None = None) -> int:
    """Trials that did not finish: rows ``unfinished`` plus those Tune never created (a sweep stopped
    by Ctrl-C creates no more), when the sweep's trial count ``n_expected`` is known."""
    done = int(df["status"].isin(["ok", "stopped", "error"]).sum()) if len(df) else 0
    unfinished = int((df["status"] == "unfinished").sum()) if len(df) else 0
    return max(unfinished, (n_expected - done) if n_expected is not None else 0)


def _first_line(exc: BaseException) -> str:
    """The innermost meaningful message of a (possibly wrapped) trial exception."""
    cause: BaseException | None = exc
    while getattr(cause, "cause", None) is not None or getattr(cause, "__cause__", None) is not None:
        cause = getattr(cause, "cause", None) or cause.__cause__
    text = str(cause or exc)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    # Ray wraps the user exception; keep the last "Type: message" line
    for ln in reversed(lines):
        if ln.split(":", 1)[0].endswith(("Error", "Exception", "Exit")):
            return ln[:500]
    return (lines[-1] if lines else type(exc).__name__)[:500]


def metric_columns(spec: SweepSpec) -> list[str]:
    """Metric columns of the results table, the sweep's metric (and robustness loss) first."""
    first = ["loss", "loss_se", "loss_rel", spec.search.metric, f"truth_{spec.search.metric}"] \
        if spec.kind == "robustness" else [spec.search.metric]
    cols: list[str] = []
    for k in [*first, *KEY_METRICS, *METRIC_KEYS]:
        for c in (k, f"{k}_se"):
            if c not in cols and (c != f"truth_{spec.search.metric}_se"):
                cols.append(c)
    return [c for c in cols if c not in ("spread_mean_se", "q_final_std_se", "loss_rel_se", "loss_se_se")]


def _param_values(spec: SweepSpec, record: TrialRecord) -> dict[str, Any]:
    cfg = record.config
    row: dict[str, Any] = {"strategy": cfg.get("strategy", spec.strategies[0])}
    for name in (*spec.grid, *spec.space):
        row[name] = cfg.get(name)
    if spec.robustness is not None:
        scen = cfg.get("scenario") or {}
        for name, _ in spec.robustness.perturb:
            row[f"{name}_factor"] = float(scen.get(name, 1.0))
    return row


def _sort_key(spec: SweepSpec, row: Mapping[str, Any], config: Mapping[str, Any]) -> tuple[Any, ...]:
    key: list[Any] = [_rank(spec.strategies, row["strategy"])]
    for name in spec.grid:
        key.append(_rank(spec.grid[name], row[name]))
    for name in spec.space:
        v = row[name]
        key.append((0, float(v)) if isinstance(v, int | float) else (1, str(v)))
    if spec.robustness is not None:
        key.append(_rank(spec.robustness.scenarios(), config.get("scenario")))
    return tuple(key)


def _rank(values: Sequence[Any], value: Any) -> tuple[int, Any]:
    for i, v in enumerate(values):
        if v == value:
            return (0, i)
    return (1, str(value))


def results_table(spec: SweepSpec, records: Sequence[TrialRecord]) -> tuple[pd.DataFrame, list[TrialRecord]]:
    """The results table (one row per trial, stable order) and the records in the same order."""
    mcols = metric_columns(spec)
    rows = []
    for rec in records:
        row = _param_values(spec, rec)
        m = rec.metrics
        done = m.get("n_paths_done")
        if rec.error is not None:
            status = "error"
        elif rec.tune_status not in FINAL_STATES or done is None:
            status = "unfinished"  # stopped (Ctrl-C) before it reported, without failing: --resume runs it
        elif done is not None and done >= int(rec.config.get("n_paths", spec.sim.n_paths)):  # n_paths may be swept
            status = "ok"
        else:
            status = "stopped"
        seed = m.get("seed")
        if seed is None:  # never reported (errored, unfinished): the seed it runs with, as trial_setup derives it
            seed = trial_seed(spec.seed, rec.config, spec.common_random_numbers)
        row["seed"] = seed
        row["status"] = status
        for c in mcols:
            v = m.get(c)
            row[c] = float(v) if isinstance(v, int | float) and not isinstance(v, bool) else np.nan
        row["n_paths_done"] = int(done) if done is not None else 0
        row["attempt"] = int(m.get("attempt", 0) or 0)
        row["error"] = rec.error or ""
        rows.append((_sort_key(spec, row, rec.config), row, rec))
    rows.sort(key=lambda t: t[0])
    ordered_records = [r for _, _, r in rows]
    df = pd.DataFrame([row for _, row, _ in rows])
    if df.empty:
        df = pd.DataFrame(columns=[*spec.param_names, "seed", "status", *mcols, "n_paths_done", "attempt", "error"])
    df.insert(0, "trial", range(len(df)))
    df["seed"] = pd.array(df["seed"], dtype="Int64")
    for c in spec.param_names:
        if c in df and df[c].dtype == object and df[c].map(lambda v: isinstance(v, int | float)).all():
            df[c] = df[c].astype(float)
    return df.reset_index(drop=True), ordered_records


# --------------------------------------------------------------------------- artefact files


def write_table(df: pd.DataFrame, run_dir: Path) -> list[Path]:
    """Write ``results.parquet`` and ``results.csv`` atomically."""
    pq = atomic_write(run_dir / "results.parquet", lambda p: df.to_parquet(p, index=False))
    csv = atomic_write(run_dir / "results.csv", lambda p: df.to_csv(p, index=False))
    return [pq, csv]


def write_manifest(spec: SweepSpec, df: pd.DataFrame, records: Sequence[TrialRecord], run_dir: Path) -> Path:
    """``trials.json``: per trial (in table order) the Tune trial id, path, node, pid, time."""
    items = []
    for i, rec in enumerate(records):
        m = rec.metrics
        items.append({
            "trial": i, "trial_id": rec.trial_id, "path": rec.path, "status": df["status"].iat[i],
            "node_id": m.get("node_id"), "pid": m.get("pid"), "time_total_s": m.get("time_total_s"),
            "attempt": m.get("attempt"), "config": rec.config,
        })
    text = json.dumps({"sweep": spec.name, "trials": items}, indent=2, default=str)
    return atomic_write(run_dir / "trials.json", lambda p: p.write_text(text + "\n"))


def write_plots(spec: SweepSpec, df: pd.DataFrame, run_dir: Path) -> list[Path]:
    """The sweep's figures (:mod:`mmray.plots`): ``frontier.png`` (risk-aversion),
    ``metric_vs_params.png`` (risk-aversion, hparams), ``robustness.png``; none without data to show."""
    from mmray import plots

    strategies, metric = spec.strategies, spec.search.metric
    figures = []
    if spec.kind == "risk-aversion":
        figures.append(plots.plot_frontier(df, strategies, spec.name, run_dir / "frontier.png"))
    if spec.kind in ("risk-aversion", "hparams"):
        log = ("gamma", *(n for n, r in spec.space.items() if r.log))
        figures.append(plots.plot_metric_vs_params(df, strategies, (*spec.grid, *spec.space), metric, log, spec.name,
                                                   run_dir / "metric_vs_params.png"))
    if spec.robustness is not None:
        factors = tuple(n for n, _ in spec.robustness.perturb)
        figures.append(plots.plot_robustness(df, strategies, factors, metric, spec.name, run_dir / "robustness.png"))
    return [p for p in figures if p is not None]


# --------------------------------------------------------------------------- best policy, report


def best_index(spec: SweepSpec, df: pd.DataFrame) -> int | None:
    """Row of the best trial: best metric among complete trials; robustness: the nominal row of
    the strategy with the smallest worst-case loss."""
    ok = df[df["status"] == "ok"]
    if ok.empty:
        return None
    if spec.kind == "robustness":
        worst = ok.groupby("strategy", sort=False)["loss"].max()
        order = sorted(worst.index, key=lambda s: (worst[s], _rank(spec.strategies, s)))
        best = order[0]
        factors = [f"{n}_factor" for n, _ in spec.robustness.perturb] if spec.robustness else []
        nominal = ok[(ok["strategy"] == best) & (ok[factors] == 1.0).all(axis=1)]
        return int(nominal.index[0]) if not nominal.empty else int(ok[ok["strategy"] == best].index[0])
    vals = ok[spec.search.metric]
    if vals.isna().all():
        return None
    idx = vals.idxmax() if spec.search.mode == "max" else vals.idxmin()
    return int(idx)


def export_best(spec: SweepSpec, df: pd.DataFrame, records: Sequence[TrialRecord], run_dir: Path) -> Path | None:
    """Rebuild the best trial's policy with the plain solver functions and save it as a checkpoint."""
    from mmray.checkpoint import save_policy
    from mmray.tuning.trainables import build_policy, trial_setup

    i = best_index(spec, df)
    if i is None:
        return None
    config = dict(records[i].config)
    if spec.robustness is not None:
        config["scenario"] = {n: 1.0 for n, _ in spec.robustness.perturb}
    setup = trial_setup(spec, config)
    policy = build_policy(setup)
    row = df.iloc[i]
    metrics = {c: _clean(row[c]) for c in metric_columns(spec) if c in row}
    provenance = {
        "sweep": {"name": spec.name, "kind": spec.kind, "source": spec.source, "seed": spec.seed,
                  "metric": spec.search.metric, "mode": spec.search.mode},
        "config": config, "seed": int(row["seed"]), "metrics": metrics, "trial": int(row["trial"]),
        "strategy": setup.strategy,
        # the trial's simulation settings: `mmray backtest --policy` uses them as its defaults
        "sim": setup.sim.to_dict(),
    }
    return save_policy(policy, run_dir / BEST_POLICY_DIR, provenance=provenance)


def backtest_command(policy_dir: str, sim: SimConfig) -> str:
    """The ``mmray backtest`` command that simulates ``policy_dir`` exactly as the trial did.

    Every simulation setting is given as a flag (the checkpoint's model supplies the market and
    the problem), so the command reproduces the row whatever the CLI's defaults are.
    """
    args = ["mmray", "backtest", "--policy", policy_dir, "--paths", str(sim.n_paths), "--seed", str(sim.seed),
            "--dt", repr(float(sim.dt)), "--chunk-size", str(sim.chunk_size), "--price-model", sim.price_model,
            "--fill-model", sim.fill_model, "--q0", repr(float(sim.q0))]
    return shlex.join(args)


def copy_command(uri: str, local: str) -> str:
    """A command that copies the checkpoint directory at ``uri`` to the local directory ``local``
    (``load_policy`` and ``mmray backtest --policy`` read local directories only)."""
    if uri.startswith("s3://"):
        return shlex.join(["aws", "s3", "cp", "--recursive", uri, local])
    code = f"import pyarrow.fs as fs; fs.copy_files({uri!r}, {local!r})"
    return shlex.join(["python", "-c", code])


def reproduce_lines(spec: SweepSpec, policy_dir: str, sim: SimConfig) -> list[str]:
    """Shell lines that rerun the best row: a copy first when ``policy_dir`` is a URI."""
    if "://" in policy_dir:
        local = Path(policy_dir.rstrip("/")).name or BEST_POLICY_DIR
        return [copy_command(policy_dir, local), backtest_command(local, sim)]
    return [backtest_command(policy_dir, sim)]


def reproducibility(spec: SweepSpec) -> tuple[bool, str]:
    """Whether running ``spec`` again with the same seed gives the same table, byte for byte, and why.

    Every trial's numbers depend only on its parameters and seed. Which trials run, and for how
    long, depends on the order results arrive in when more than one trial runs at once and the
    sweep reacts to results: Optuna's suggestions and ASHA's stop decisions do. Grid and random
    search without ASHA do not (random search draws its points from the seed up front).
    """
    s = spec.search
    reacts = [w for w, on in (("Optuna's suggestions", s.algorithm == "optuna"),
                               ("ASHA's stop decisions", s.asha is not None)) if on]
    concurrency = s.concurrency
    if not reacts:
        return True, f"{s.algorithm} search without early stopping"
    if concurrency == 1:
        return True, f"{' and '.join(reacts)} see results in a fixed order (max_concurrent: 1)"
    at_once = f"up to {concurrency}" if concurrency else "as many as the resources allow"
    return False, (f"{' and '.join(reacts)} depend on the order results arrive in, with {at_once} trials at once; "
                   "set search.max_concurrent: 1 for a reproducible table")


def _clean(v: Any) -> Any:
    if isinstance(v, float | np.floating):
        return None if not math.isfinite(float(v)) else float(v)
    if isinstance(v, np.integer):
        return int(v)
    return v


def _fmt(v: Any) -> str:
    if isinstance(v, float | np.floating):
        if not math.isfinite(float(v)):
            return ""
        return f"{float(v):.4g}"
    return str(v)


def markdown_table(df: pd.DataFrame, columns: Sequence[str]) -> str:
    """A GitHub-flavoured markdown table of ``columns``."""
    cols = [c for c in columns if c in df]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, r in df[cols].iterrows():
        lines.append("| " + " | ".join(_fmt(r[c]).replace("|", "/") for c in cols) + " |")
    return "\n".join(lines)


def summary_columns(spec: SweepSpec) -> list[str]:
    """Columns shown on the console and in the report."""
    metric = spec.search.metric
    cols = ["trial", *spec.param_names, "status"]
    if spec.kind == "robustness":
        cols += ["loss", "loss_se", "loss_rel", metric, f"truth_{metric}"]
    else:
        cols += [metric, f"{metric}_se"]
    cols += [c for c in ("pnl_mean", "pnl_std", "q_final_std") if c not in cols]
    return cols


def write_report(
    spec: SweepSpec, df: pd.DataFrame, run_dir: Path, plots: Sequence[Path], best: int | None,
    best_dir: Path | None, seconds: float | None, display_dir: str | None = None,
    reproduce: Sequence[str] = (), n_expected: int | None = None,
) -> Path:
    """``report.md``: what ran, the best trial and the command that reproduces it, the table (best
    first, at most 30 rows), plots, errors."""
    counts = df["status"].value_counts().to_dict()
    metric = spec.search.metric
    same, why = reproducibility(spec)
    lines = [
        f"# Sweep `{spec.name}` ({spec.kind})", "",
        f"- source: `{spec.source}`; seed {spec.seed}; common random numbers: {spec.common_random_numbers}",
        f"- search: {spec.search.algorithm}, metric `{metric}` ({spec.search.mode})"
        + (f", ASHA over {spec.search.asha.rungs} Monte Carlo rungs" if spec.search.asha else ""),
        f"- trials: {len(df)} (" + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + ")"
        + (f"; wall time {seconds:.1f} s" if seconds is not None else ""),
        f"- Monte Carlo: {spec.sim.n_paths} paths per trial, dt={spec.sim.dt:g}, T={spec.problem.T:g}, "
        f"fill model {spec.sim.fill_model}",
        f"- same seed, same table: {'yes' if same else 'no'} ({why})",
        "",
    ]
    if best is not None:
        row = df.iloc[best]
        what = "Most robust strategy (smallest worst-case loss)" if spec.kind == "robustness" else "Best trial"
        params = ", ".join(f"{p}={_fmt(row[p])}" for p in spec.param_names if p in row)
        lines += [f"## {what}", "", f"Trial {int(row['trial'])}: {params}; {metric} = {_fmt(row[metric])}"
                  + (f" ± {_fmt(row[metric + '_se'])}" if f"{metric}_se" in row else ""), ""]
        if best_dir is not None:
            remote = (" The run directory is remote and `mmray backtest --policy` reads local directories, so the "
                      "first line copies the checkpoint here.") if len(reproduce) > 1 else ""
            lines += [f"Policy checkpoint: `{best_dir.name}/`. This command simulates it on the trial's own paths "
                      f"and prints the numbers of this row.{remote}", "", "```bash", *reproduce, "```", ""]
    shown = df.copy()
    if spec.kind != "robustness" and metric in shown:
        shown = shown.sort_values(metric, ascending=spec.search.mode == "min", kind="mergesort", na_position="last")
    lines += ["## Results", "", f"Full table: `results.csv` / `results.parquet` ({len(df)} rows).", "",
              markdown_table(shown.head(30), summary_columns(spec)), ""]
    if plots:
        lines += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots] + [""]
    errors = df[df["status"] == "error"]
    if not errors.empty:
        lines += ["## Errors", ""] + [f"- trial {int(r['trial'])} ({r['strategy']}): {r['error']}"
                                      for _, r in errors.iterrows()] + [""]
    pending = pending_trials(df, n_expected)
    if pending:
        lines += ["## Interrupted", "", f"{pending} of {max(n_expected or 0, len(df))} trials did not finish: continue "
                  f"the sweep with `python -m mmray.tune --resume {display_dir or run_dir}`.", ""]
    text = "\n".join(lines)
    return atomic_write(run_dir / "report.md", lambda p: p.write_text(text))


@dataclass(frozen=True)
class Artefacts:
    """Paths of what :func:`write_artefacts` produced."""

    table: pd.DataFrame
    files: dict[str, Path]
    best: int | None
    reproduce: list[str] = field(default_factory=list)
    #: trials that did not finish (interrupted sweep): ``--resume`` runs them
    pending: int = 0


def write_artefacts(spec: SweepSpec, records: Sequence[TrialRecord], run_dir: Path,
                    seconds: float | None = None, display_dir: str | None = None,
                    n_expected: int | None = None) -> Artefacts:
    """Write every artefact of a finished (or interrupted) sweep into ``run_dir`` (a local directory).

    ``display_dir`` is where the files will finally live (e.g. an ``s3://`` URI), for the report;
    ``n_expected`` the sweep's trial count, to report trials an interrupted sweep never started.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    df, ordered_records = results_table(spec, records)
    files: dict[str, Path] = {}
    pq, csv = write_table(df, run_dir)
    files.update({"results.parquet": pq, "results.csv": csv})
    files["trials.json"] = write_manifest(spec, df, ordered_records, run_dir)
    plots = write_plots(spec, df, run_dir)
    files.update({p.name: p for p in plots})
    best = best_index(spec, df)
    best_dir = export_best(spec, df, ordered_records, run_dir)
    reproduce: list[str] = []
    if best_dir is not None:
        files[BEST_POLICY_DIR] = best_dir
        from mmray.checkpoint import load_policy

        sim = SimConfig.from_dict(load_policy(best_dir).provenance["sim"])
        reproduce = reproduce_lines(spec, f"{display_dir or run_dir}/{best_dir.name}", sim)
    files["report.md"] = write_report(spec, df, run_dir, plots, best, best_dir, seconds, display_dir, reproduce,
                                      n_expected)
    return Artefacts(df, files, best, reproduce, pending_trials(df, n_expected))
