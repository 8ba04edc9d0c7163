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

An ``rl`` sweep's artefacts (per-trial and per-configuration tables, its best agent) are written by
:func:`mmray.tuning.rl_sweep.write_artefacts`, which :func:`write_artefacts` hands them to.
"""

from __future__ import annotations

import json
import math
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
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
from mmray.tuning.trainables import GAMMA_METRICS, KEY_METRICS, strategy_label
from mmray.tuning.validate import MARKET_MODEL_PARAMS

TABLE_FILES = ("results.parquet", "results.csv")
BEST_POLICY_DIR = "best_policy"
#: where a sweep with no single best (a frontier, markets compared side by side) puts one policy per group
BEST_POLICIES_DIR = "best_policies"


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
    #: the trial's latest Tune checkpoint (``ray.tune.Checkpoint``; an ``rl`` trial's holds its best agent)
    checkpoint: Any = None


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
        out.append(TrialRecord(config, metrics, error, trial_id, path, status, getattr(r, "checkpoint", None)))
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


def rank_column(spec: SweepSpec) -> str:
    """The column the sweep's trials are ranked by: the metric, or for a risk-aversion sweep ranked by an
    objective (``ce_A``, ``value_B``) that objective at the reference ``gamma`` (``<metric>_ref``)."""
    metric = spec.search.metric
    return f"{metric}_ref" if spec.kind == "risk-aversion" and metric in GAMMA_METRICS else metric


def metric_columns(spec: SweepSpec) -> list[str]:
    """Metric columns of the results table, the sweep's metric (and robustness loss) first."""
    first = ["loss", "loss_se", "loss_rel", spec.search.metric, f"truth_{spec.search.metric}"] \
        if spec.kind == "robustness" else list(dict.fromkeys([spec.search.metric, rank_column(spec)]))
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

    # strategies by their labels (`optimal (continuous-time)`); a frontier's metric at the reference gamma
    strategies, metric = tuple(strategy_label(s) for s in spec.strategies), spec.search.metric
    df = display_table(df)
    settings = plots.run_settings(spec.market, spec.problem, spec.sim)  # the swept ones are dropped by each figure
    figures = []
    if spec.kind == "risk-aversion":
        figures.append(plots.plot_frontier(df, strategies, spec.name, run_dir / "frontier.png", settings=settings))
    if spec.kind in ("risk-aversion", "hparams"):
        log = ("gamma", *(n for n, r in spec.space.items() if r.log))
        figures.append(plots.plot_metric_vs_params(df, strategies, (*spec.grid, *spec.space), rank_column(spec), log,
                                                   spec.name, run_dir / "metric_vs_params.png", settings=settings))
    if spec.robustness is not None:
        factors = tuple(n for n, _ in spec.robustness.perturb)
        figures.append(plots.plot_robustness(df, strategies, factors, metric, spec.name, run_dir / "robustness.png",
                                             settings=settings))
    return [p for p in figures if p is not None]


# --------------------------------------------------------------------------- best policy, report


def group_columns(spec: SweepSpec) -> list[str]:
    """Columns whose values split the trials into groups that are not comparable with each other.

    * risk-aversion: ``strategy``. A frontier has no single best point (ranked by Sharpe it is always
      the edge of the gamma grid): each strategy's best ``gamma`` is reported instead;
    * hparams: the market parameters that are grid axes (:data:`~mmray.tuning.validate.MARKET_MODEL_PARAMS`):
      a market is the environment, not a choice, so trials are ranked within each market setting;
    * otherwise none: one best trial.
    """
    if spec.kind == "risk-aversion":
        return ["strategy"]
    if spec.kind == "hparams":
        return [name for name in spec.grid if name in MARKET_MODEL_PARAMS]
    return []


@dataclass(frozen=True)
class Pick:
    """The best trial of one group of comparable trials (:func:`group_columns`; one group: the whole sweep).

    ``group`` maps the group's columns to its values (empty for the whole sweep); ``row`` is the
    trial's row in the results table.
    """

    group: dict[str, Any]
    row: int

    @property
    def label(self) -> str:
        """``strategy=as``, ``tick=0.5, fill_model=linear``; ``""`` for the whole sweep."""
        return ", ".join(f"{k}={_fmt(v)}" for k, v in self.group.items())

    @property
    def dirname(self) -> str:
        """The group's directory under ``best_policies/`` (``as``, ``tick=0.5,fill_model=linear``)."""
        if list(self.group) == ["strategy"]:
            return str(self.group["strategy"])
        return re.sub(r"[^A-Za-z0-9._=,+-]", "_", ",".join(f"{k}={_fmt(v)}" for k, v in self.group.items()))


def _best_row(spec: SweepSpec, ok: pd.DataFrame) -> int | None:
    vals = ok[rank_column(spec)] if rank_column(spec) in ok else pd.Series(dtype=float)
    if vals.isna().all():
        return None
    return int(vals.idxmax() if spec.search.mode == "max" else vals.idxmin())


def picks(spec: SweepSpec, df: pd.DataFrame) -> list[Pick]:
    """The best complete trial of each group of comparable trials, in the table's order.

    Robustness: one pick, the nominal row of the strategy with the smallest worst-case loss.
    Otherwise the best :func:`rank_column` value among the ``ok`` trials of each group of
    :func:`group_columns` (one group without any).
    """
    if spec.kind == "rl":  # the best configuration by its mean over seeds, its best agent
        from mmray.tuning.rl_sweep import picks as rl_picks

        return rl_picks(spec, df)
    ok = df[df["status"] == "ok"]
    if ok.empty:
        return []
    if spec.kind == "robustness":
        worst = ok.groupby("strategy", sort=False)["loss"].max()
        order = sorted(worst.index, key=lambda s: (worst[s], _rank(spec.strategies, s)))
        best = order[0]
        factors = [f"{n}_factor" for n, _ in spec.robustness.perturb] if spec.robustness else []
        nominal = ok[(ok["strategy"] == best) & (ok[factors] == 1.0).all(axis=1)]
        row = int(nominal.index[0]) if not nominal.empty else int(ok[ok["strategy"] == best].index[0])
        return [Pick({}, row)]
    cols = group_columns(spec)
    if not cols:
        row = _best_row(spec, ok)
        return [] if row is None else [Pick({}, row)]
    out = []
    for key, group in ok.groupby(cols, sort=False):
        row = _best_row(spec, group)
        if row is not None:
            values = key if isinstance(key, tuple) else (key,)
            out.append(Pick({c: _clean(v) for c, v in zip(cols, values, strict=True)}, row))
    return sorted(out, key=lambda p: p.row)


def best_index(spec: SweepSpec, df: pd.DataFrame) -> int | None:
    """Row of the sweep's single best trial; ``None`` when there is none, or no single one (a frontier,
    markets compared side by side: see :func:`picks`)."""
    found = picks(spec, df)
    return found[0].row if len(found) == 1 and not found[0].group else None


def pick_policy_dir(pick: Pick) -> str:
    """Where a pick's policy is saved in the run directory: ``best_policy`` for the single best trial,
    ``best_policies/<group>`` for the best of each group."""
    return BEST_POLICY_DIR if not pick.group else f"{BEST_POLICIES_DIR}/{pick.dirname}"


def export_pick(spec: SweepSpec, df: pd.DataFrame, records: Sequence[TrialRecord], run_dir: Path,
                pick: Pick) -> Path:
    """Rebuild a picked trial's policy with the plain solver functions and save it as a checkpoint."""
    from mmray.checkpoint import save_policy
    from mmray.tuning.trainables import build_policy, trial_setup

    i = pick.row
    config = dict(records[i].config)
    if spec.robustness is not None:
        config["scenario"] = {n: 1.0 for n, _ in spec.robustness.perturb}
    setup = trial_setup(spec, config)
    policy = build_policy(setup)
    row = df.iloc[i]
    metrics = {c: _clean(row[c]) for c in metric_columns(spec) if c in row}
    provenance = {
        "sweep": {"name": spec.name, "kind": spec.kind, "source": spec.source, "seed": spec.seed,
                  "metric": spec.search.metric, "mode": spec.search.mode, "ranked_by": rank_column(spec),
                  "group": pick.group},
        "config": config, "seed": int(row["seed"]), "metrics": metrics, "trial": int(row["trial"]),
        "strategy": setup.strategy,
        # the trial's simulation settings: `mmray backtest --policy` uses them as its defaults
        "sim": setup.sim.to_dict(),
    }
    target = run_dir / pick_policy_dir(pick)
    target.parent.mkdir(parents=True, exist_ok=True)
    return save_policy(policy, target, provenance=provenance)


def export_best(spec: SweepSpec, df: pd.DataFrame, records: Sequence[TrialRecord], run_dir: Path) -> Path | None:
    """The single best trial's policy as a checkpoint (``None`` without a single best: :func:`best_index`)."""
    i = best_index(spec, df)
    return None if i is None else export_pick(spec, df, records, run_dir, Pick({}, i))


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
    if spec.kind == "rl":
        from mmray.tuning.rl_sweep import reproducibility as rl_reproducibility

        timed = rl_reproducibility(spec)
        if timed is not None:
            return timed
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
    if spec.kind == "rl":
        from mmray.tuning.rl_sweep import summary_columns as rl_columns

        return rl_columns(spec)
    metric = spec.search.metric
    cols = ["trial", *spec.param_names, "status"]
    if spec.kind == "robustness":
        cols += ["loss", "loss_se", "loss_rel", metric, f"truth_{metric}"]
    else:
        ranked = rank_column(spec)
        cols += [metric, f"{metric}_se"] + ([ranked, f"{ranked}_se"] if ranked != metric else [])
    cols += [c for c in ("pnl_mean", "pnl_std", "q_final_std") if c not in cols]
    return cols


def display_table(df: pd.DataFrame) -> pd.DataFrame:
    """The results table as the console and the report show it: strategies by their labels
    (``optimal (continuous-time)``, :data:`~mmray.tuning.trainables.STRATEGY_LABELS`)."""
    shown = df.copy()
    if "strategy" in shown:
        shown["strategy"] = shown["strategy"].map(lambda s: strategy_label(s) if isinstance(s, str) else s)
    return shown


def picks_heading(spec: SweepSpec) -> str:
    """What the sweep's "best" means, in one sentence (the console and the report open with it)."""
    if spec.kind == "rl":
        from mmray.tuning.rl_sweep import picks_heading as rl_heading

        return rl_heading(spec)
    metric, ranked = spec.search.metric, rank_column(spec)
    verb = "maximises" if spec.search.mode == "max" else "minimises"
    if spec.kind == "robustness":
        return (f"Most robust strategy: the smallest worst-case loss in {metric} against the policy that is optimal "
                "for each true market (the loss of its worst scenario); its nominal policy is exported:")
    if spec.kind == "risk-aversion":
        yardstick = (f"{metric} of a maker with the reference gamma={spec.problem.gamma:g} (column {ranked})"
                     if ranked != metric else metric)
        return (f"A frontier has no single best: for each strategy, the gamma that {verb} {yardstick}:")
    cols = group_columns(spec)
    if cols:
        return (f"Markets are compared, not chosen ({', '.join(cols)} is a grid axis): the trial that {verb} {metric} "
                "within each market setting:")
    return f"Best trial: the one that {verb} {metric}:"


def pick_line(spec: SweepSpec, df: pd.DataFrame, pick: Pick) -> str:
    """One line per pick: its group, trial, parameters and ranked value (with its standard error)."""
    if spec.kind == "rl":
        from mmray.tuning.rl_sweep import pick_line as rl_pick_line

        return rl_pick_line(spec, df, pick)
    row = df.iloc[pick.row]
    if spec.kind == "robustness":
        strategy = row["strategy"]
        rows = df[(df["strategy"] == strategy) & (df["status"] == "ok")]
        worst = rows.loc[rows["loss"].idxmax()]
        factors = [f"{n}_factor" for n, _ in spec.robustness.perturb] if spec.robustness else []
        where = ", ".join(f"{c.removesuffix('_factor')} x{_fmt(worst[c])}" for c in factors if worst[c] != 1.0)
        return (f"{strategy_label(strategy)}: worst-case loss {_fmt(worst['loss'])} ± {_fmt(worst['loss_se'])} "
                f"({where or 'nominal market'}); nominal policy: trial {int(row['trial'])}")
    col = rank_column(spec)
    value = f"{col} = {_fmt(row[col])}" + (f" ± {_fmt(row[col + '_se'])}" if f"{col}_se" in row else "")
    others = [p for p in spec.param_names if p in row and p not in pick.group]
    params = ", ".join(f"{p}={_fmt(row[p])}" if p != "strategy" else strategy_label(row[p]) for p in others)
    text = f"trial {int(row['trial'])} ({params}): {value}"
    if spec.kind == "risk-aversion":
        gammas = sorted(float(g) for g in spec.grid["gamma"])
        edge = " (the edge of the gamma grid: the best gamma may lie beyond)" \
            if float(row["gamma"]) in (gammas[0], gammas[-1]) else ""
        trial = int(row["trial"])
        return f"{strategy_label(row['strategy'])}: gamma={_fmt(row['gamma'])}, trial {trial}: {value}{edge}"
    return f"{pick.label}: {text}" if pick.group else text


def write_report(
    spec: SweepSpec, df: pd.DataFrame, run_dir: Path, plots: Sequence[Path], found: Sequence[Pick],
    reproduce: Mapping[int, Sequence[str]], seconds: float | None, display_dir: str | None = None,
    n_expected: int | None = None,
) -> Path:
    """``report.md``: what ran, what "best" means and the best trial(s) with the command that reproduces each,
    the table (best first, at most 30 rows), plots, errors."""
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
    ]
    named = [s for s in spec.strategies if s in STRATEGY_NOTES]
    lines += [f"- {strategy_label(s)}: {STRATEGY_NOTES[s]}" for s in named] + [""]
    if found:
        title = {"robustness": "Most robust strategy", "risk-aversion": "Best gamma per strategy"}.get(
            spec.kind, "Best trial per market setting" if group_columns(spec) else "Best trial")
        lines += [f"## {title}", "", picks_heading(spec), ""]
        for pick in found:
            lines += [f"- {pick_line(spec, df, pick)}"]
        lines += [""]
        remote = any(len(v) > 1 for v in reproduce.values())
        if reproduce:
            dirs = ", ".join(f"`{pick_policy_dir(p)}/`" for p in found if p.row in reproduce)
            lines += [f"Policy checkpoints: {dirs}"
                      + ". Each command simulates one on its trial's own paths and prints the numbers of its row."
                      + (" The run directory is remote and `mmray backtest --policy` reads local directories, so "
                         "the checkpoint is copied here first." if remote else ""), "", "```bash"]
            for pick in found:
                if pick.row in reproduce:
                    if len(found) > 1:
                        lines.append(f"# {pick.label or 'best'}")
                    lines += list(reproduce[pick.row])
            lines += ["```", ""]
    shown = display_table(df)
    ranked = rank_column(spec)
    if spec.kind != "robustness" and ranked in shown:
        shown = shown.sort_values(ranked, ascending=spec.search.mode == "min", kind="mergesort", na_position="last")
    lines += ["## Results", "", f"Full table: `results.csv` / `results.parquet` ({len(df)} rows).", "",
              markdown_table(shown.head(30), summary_columns(spec)), ""]
    if plots:
        lines += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots] + [""]
    return finish_report(lines, df, run_dir, display_dir, n_expected, lambda r: str(r["strategy"]))


def finish_report(lines: list[str], df: pd.DataFrame, run_dir: Path, display_dir: str | None,
                  n_expected: int | None, describe: Callable[[pd.Series], str]) -> Path:
    """Write ``report.md``: ``lines``, then the trials that failed (``describe(row)`` says which, in
    brackets) and, for an interrupted sweep, how to continue it."""
    lines = list(lines)
    errors = df[df["status"] == "error"]
    if not errors.empty:
        lines += ["## Errors", ""] + [f"- trial {int(r['trial'])} ({describe(r)}): {r['error']}"
                                      for _, r in errors.iterrows()] + [""]
    pending = pending_trials(df, n_expected)
    if pending:
        lines += ["## Interrupted", "", f"{pending} of {max(n_expected or 0, len(df))} trials did not finish: continue "
                  f"the sweep with `python -m mmray.tune --resume {display_dir or run_dir}`.", ""]
    text = "\n".join(lines)
    return atomic_write(run_dir / "report.md", lambda p: p.write_text(text))


#: what the report says about strategies whose names could mislead
STRATEGY_NOTES = {
    "optimal": "the exact solution of the continuous-time model (fills at any instant); in a simulator stepping "
               "in dt with at most one fill per side per step it is a proxy, close when A dt << 1",
    "discrete_optimal": "the optimum of the simulator's own discrete-time problem (policy iteration at the "
                        "sweep's dt and fill model, on a quote grid chosen from the model)",
}


@dataclass(frozen=True)
class Artefacts:
    """Paths of what :func:`write_artefacts` produced."""

    table: pd.DataFrame
    files: dict[str, Path]
    #: the single best trial's row (``None`` when there is no single best: see ``picks``)
    best: int | None
    #: shell lines that reproduce the single best row
    reproduce: list[str] = field(default_factory=list)
    #: trials that did not finish (interrupted sweep): ``--resume`` runs them
    pending: int = 0
    #: the best trial of each group of comparable trials (:func:`picks`)
    picks: list[Pick] = field(default_factory=list)
    #: shell lines that reproduce each pick's row, by row
    pick_reproduce: dict[int, list[str]] = field(default_factory=dict)


def write_artefacts(spec: SweepSpec, records: Sequence[TrialRecord], run_dir: Path,
                    seconds: float | None = None, display_dir: str | None = None,
                    n_expected: int | None = None) -> Artefacts:
    """Write every artefact of a finished (or interrupted) sweep into ``run_dir`` (a local directory).

    ``display_dir`` is where the files will finally live (e.g. an ``s3://`` URI), for the report;
    ``n_expected`` the sweep's trial count, to report trials an interrupted sweep never started.
    """
    from mmray.checkpoint import load_policy

    if spec.kind == "rl":  # trials are training runs: their agents come from their Tune checkpoints
        from mmray.tuning.rl_sweep import write_artefacts as rl_artefacts

        return rl_artefacts(spec, records, run_dir, seconds, display_dir, n_expected)
    run_dir.mkdir(parents=True, exist_ok=True)
    df, ordered_records = results_table(spec, records)
    files: dict[str, Path] = {}
    pq, csv = write_table(df, run_dir)
    files.update({"results.parquet": pq, "results.csv": csv})
    files["trials.json"] = write_manifest(spec, df, ordered_records, run_dir)
    plots = write_plots(spec, df, run_dir)
    files.update({p.name: p for p in plots})
    found = picks(spec, df)
    reproduce: dict[int, list[str]] = {}
    for pick in found:
        target = export_pick(spec, df, ordered_records, run_dir, pick)
        files[pick_policy_dir(pick)] = target
        sim = SimConfig.from_dict(load_policy(target).provenance["sim"])
        reproduce[pick.row] = reproduce_lines(spec, f"{display_dir or run_dir}/{pick_policy_dir(pick)}", sim)
    best = best_index(spec, df)
    files["report.md"] = write_report(spec, df, run_dir, plots, found, reproduce, seconds, display_dir, n_expected)
    return Artefacts(df, files, best, reproduce.get(best, []) if best is not None else [],
                     pending_trials(df, n_expected), found, reproduce)
