"""Sweep artefacts: results table, plots, markdown report, best policy, trial manifest.

Everything in a run directory except Tune's own files is written here, each final file
atomically (:func:`mmray.io.atomic_write`: temporary file in the same directory, then ``os.replace``):

* ``results.parquet`` / ``results.csv`` - one row per trial: ``trial`` (row number), the swept
  parameters, ``seed``, ``status`` (ok | stopped | error), the metrics with standard errors,
  ``n_paths_done``, ``attempt``, ``error``. Rows are sorted by the parameters in the sweep's
  own order, so the same sweep with the same seed gives the same table byte for byte;
* ``trials.json`` - run-specific facts per trial (Tune trial id, node, pid, seconds);
* ``frontier.png`` (risk-aversion), ``metric_vs_params.png``, ``robustness.png``;
* ``report.md``; ``best_policy/`` - the best trial's policy as an mmray checkpoint
  (``mmray backtest --policy DIR``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mmray.backtest import METRIC_KEYS
from mmray.io import atomic_write
from mmray.tuning.spec import SweepSpec
from mmray.tuning.trainables import KEY_METRICS

TABLE_FILES = ("results.parquet", "results.csv")
BEST_POLICY_DIR = "best_policy"


@dataclass(frozen=True)
class TrialRecord:
    """One trial as Tune left it: its parameters, last reported metrics, error, run facts."""

    config: dict[str, Any]
    metrics: dict[str, Any]
    error: str | None
    trial_id: str
    path: str


def records_from_result_grid(result_grid: Any) -> list[TrialRecord]:
    """Read a Tune ``ResultGrid`` into :class:`TrialRecord` objects."""
    out = []
    for r in result_grid:
        metrics = dict(r.metrics or {})
        error = None
        if r.error is not None:
            error = _first_line(r.error)
        path = str(r.path or "")
        trial_id = str(metrics.get("trial_id") or Path(path).name)
        out.append(TrialRecord(dict(r.config or {}), metrics, error, trial_id, path))
    return out


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
        elif done is not None and done >= int(rec.config.get("n_paths", spec.sim.n_paths)):  # n_paths may be swept
            status = "ok"
        elif done is not None:
            status = "stopped"
        else:
            status = "error"
        row["seed"] = m.get("seed")
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


# --------------------------------------------------------------------------- plots


def _savefig(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=90, bbox_inches="tight"))
    plt.close(fig)
    return path


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_frontier(spec: SweepSpec, df: pd.DataFrame, path: Path) -> Path | None:
    """Efficient frontier: mean PnL vs PnL std and vs terminal inventory std, one line per strategy."""
    ok = df[df["status"] == "ok"]
    if ok.empty or "gamma" not in ok:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for strategy in spec.strategies:
        d = ok[ok["strategy"] == strategy].sort_values("gamma")
        if d.empty:
            continue
        for ax, x in zip(axes, ("pnl_std", "q_final_std"), strict=True):
            ax.errorbar(d[x], d["pnl_mean"], yerr=d["pnl_mean_se"], marker="o", ms=4, capsize=2, label=strategy)
        if strategy == spec.strategies[0]:
            ends = d.iloc[sorted({0, len(d) // 2, len(d) - 1})]
            for _, r in ends.iterrows():
                axes[0].annotate(f"γ={r['gamma']:g}", (r["pnl_std"], r["pnl_mean"]), fontsize=7,
                                 xytext=(3, 3), textcoords="offset points")
    axes[0].set_xlabel("PnL std")
    axes[1].set_xlabel("terminal inventory std")
    axes[0].set_ylabel("mean PnL")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Efficient frontier over risk aversion γ ({spec.name}, {int(ok['n_paths_done'].max())} paths/trial)",
                 fontsize=10)
    return _savefig(fig, path)


def plot_metric_vs_params(spec: SweepSpec, df: pd.DataFrame, path: Path) -> Path | None:
    """The sweep's metric against each numeric swept parameter, one colour per strategy."""
    metric = spec.search.metric
    ok = df[df["status"].isin(["ok", "stopped"])]
    names = [n for n in (*spec.grid, *spec.space) if n in ok and pd.api.types.is_numeric_dtype(ok[n])]
    names += [n for n in (*spec.grid, *spec.space) if n in ok and n not in names]
    if ok.empty or not names:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.5), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        for strategy in spec.strategies:
            d = ok[ok["strategy"] == strategy]
            if d.empty:
                continue
            full = d[d["status"] == "ok"]
            x = full[name].astype(str) if not pd.api.types.is_numeric_dtype(d[name]) else full[name]
            ax.errorbar(x, full[metric], yerr=full.get(f"{metric}_se"), fmt="o", ms=4, capsize=2, label=strategy)
            stopped = d[d["status"] == "stopped"]
            if not stopped.empty:
                xs = stopped[name].astype(str) if not pd.api.types.is_numeric_dtype(d[name]) else stopped[name]
                ax.plot(xs, stopped[metric], "x", color="grey", label="stopped by ASHA")
        if name in ("gamma",) or (name in spec.space and spec.space[name].log):
            ax.set_xscale("log")
        ax.set_xlabel(name)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    uniq = dict(zip(labels, handles, strict=True))
    axes[0][0].legend(uniq.values(), uniq.keys(), fontsize=8)
    fig.suptitle(f"{metric} vs parameters ({spec.name})", fontsize=10)
    fig.tight_layout()
    return _savefig(fig, path)


def plot_robustness(spec: SweepSpec, df: pd.DataFrame, path: Path) -> Path | None:
    """Loss vs the truly optimal policy against each perturbation factor (others at 1)."""
    if spec.robustness is None:
        return None
    ok = df[df["status"] == "ok"]
    names = [n for n, _ in spec.robustness.perturb]
    if ok.empty:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.5), squeeze=False, sharey=True)
    for ax, name in zip(axes[0], names, strict=True):
        others = [f"{n}_factor" for n in names if n != name]
        d = ok[(ok[others] == 1.0).all(axis=1)] if others else ok
        for strategy in spec.strategies:
            s = d[d["strategy"] == strategy].sort_values(f"{name}_factor")
            ax.errorbar(s[f"{name}_factor"], s["loss"], yerr=s["loss_se"], marker="o", ms=4, capsize=2,
                        label=strategy)
        ax.set_xscale("log")
        ax.axhline(0.0, color="k", lw=0.5)
        ax.set_xlabel(f"true {name} / assumed {name}")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"loss in {spec.search.metric} vs true optimum")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"Model misspecification ({spec.name})", fontsize=10)
    fig.tight_layout()
    return _savefig(fig, path)


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
    }
    return save_policy(policy, run_dir / BEST_POLICY_DIR, provenance=provenance)


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
) -> Path:
    """``report.md``: what ran, the best trial, the table (best first, at most 30 rows), plots, errors."""
    counts = df["status"].value_counts().to_dict()
    metric = spec.search.metric
    lines = [
        f"# Sweep `{spec.name}` ({spec.kind})", "",
        f"- source: `{spec.source}`; seed {spec.seed}; common random numbers: {spec.common_random_numbers}",
        f"- search: {spec.search.algorithm}, metric `{metric}` ({spec.search.mode})"
        + (f", ASHA over {spec.search.asha.rungs} Monte Carlo rungs" if spec.search.asha else ""),
        f"- trials: {len(df)} (" + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + ")"
        + (f"; wall time {seconds:.1f} s" if seconds is not None else ""),
        f"- Monte Carlo: {spec.sim.n_paths} paths per trial, dt={spec.sim.dt:g}, T={spec.problem.T:g}, "
        f"fill model {spec.sim.fill_model}",
        "",
    ]
    if best is not None:
        row = df.iloc[best]
        what = "Most robust strategy (smallest worst-case loss)" if spec.kind == "robustness" else "Best trial"
        params = ", ".join(f"{p}={_fmt(row[p])}" for p in spec.param_names if p in row)
        lines += [f"## {what}", "", f"Trial {int(row['trial'])}: {params}; {metric} = {_fmt(row[metric])}"
                  + (f" ± {_fmt(row[metric + '_se'])}" if f"{metric}_se" in row else ""), ""]
        if best_dir is not None:
            where = f"{display_dir or run_dir}/{best_dir.name}"
            lines += [f"Policy checkpoint: `{best_dir.name}/` (`mmray backtest --policy {where}`).", ""]
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
    text = "\n".join(lines)
    return atomic_write(run_dir / "report.md", lambda p: p.write_text(text))


@dataclass(frozen=True)
class Artefacts:
    """Paths of what :func:`write_artefacts` produced."""

    table: pd.DataFrame
    files: dict[str, Path]
    best: int | None


def write_artefacts(spec: SweepSpec, records: Sequence[TrialRecord], run_dir: Path,
                    seconds: float | None = None, display_dir: str | None = None) -> Artefacts:
    """Write every artefact of a finished sweep into ``run_dir`` (a local directory).

    ``display_dir`` is where the files will finally live (e.g. an ``s3://`` URI), for the report.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    df, ordered_records = results_table(spec, records)
    files: dict[str, Path] = {}
    pq, csv = write_table(df, run_dir)
    files.update({"results.parquet": pq, "results.csv": csv})
    files["trials.json"] = write_manifest(spec, df, ordered_records, run_dir)
    plots = []
    if spec.kind == "risk-aversion":
        p = plot_frontier(spec, df, run_dir / "frontier.png")
        if p:
            plots.append(p)
    if spec.kind in ("risk-aversion", "hparams"):
        p = plot_metric_vs_params(spec, df, run_dir / "metric_vs_params.png")
        if p:
            plots.append(p)
    if spec.kind == "robustness":
        p = plot_robustness(spec, df, run_dir / "robustness.png")
        if p:
            plots.append(p)
    files.update({p.name: p for p in plots})
    best = best_index(spec, df)
    best_dir = export_best(spec, df, ordered_records, run_dir)
    if best_dir is not None:
        files[BEST_POLICY_DIR] = best_dir
    files["report.md"] = write_report(spec, df, run_dir, plots, best, best_dir, seconds, display_dir)
    return Artefacts(df, files, best)
