"""Run, resume and publish a sweep: Ray start-up, ``Tuner``/``Tuner.restore``, artefacts.

Layout of a run (``<storage>/<name>``, a local directory or an ``s3://`` / ``gs://`` URI)::

    sweep.json            the validated spec (what --resume reloads)
    experiment_state-*    Tune's experiment state, searcher state, trial directories
    results.parquet/.csv  one row per trial          (mmray.tuning.results)
    trials.json           Tune trial ids, nodes, pids, timings
    frontier.png ...      plots
    report.md             short report, with the `mmray backtest --policy ...` command of the best row
    best_policy/          best trial's policy (an mmray checkpoint; provenance holds its SimConfig)

Each trial's final report carries a small checkpoint with its metrics; with
``CheckpointConfig(num_to_keep=1)`` Tune saves its experiment state as soon as it records one,
so a driver killed between two saves resumes without re-running a trial it had recorded as
finished, and a trial that had checkpointed is restored from its metrics, not recomputed. (Tune's
copy of the state to storage is not atomic: a kill during that copy leaves a truncated file,
which ``resume_sweep`` reports as such.)

Before anything is written or fitted, :func:`check_resources` compares a trial's resource request
with the cluster (a request no node can meet would otherwise wait forever, silently below
verbosity 2). A sweep stopped with Ctrl-C keeps its unfinished trials as ``unfinished`` (not
errors) and :attr:`RunSummary.interrupted` is set: ``--resume <run_dir>`` continues it.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from mmray.io import atomic_write
from mmray.tuning.config import spec_from_dict
from mmray.tuning.results import (
    Pick,
    TrialRecord,
    display_table,
    pick_line,
    pick_policy_dir,
    picks_heading,
    records_from_result_grid,
    summary_columns,
    write_artefacts,
)
from mmray.tuning.spec import SweepConfigError, SweepSpec

SPEC_FILE = "sweep.json"


@dataclass(frozen=True)
class RunOptions:
    """How (not what) to run a sweep.

    Attributes
    ----------
    storage : str
        Directory or URI (``s3://bucket/prefix``) that holds run directories.
    name : str or None
        Run directory name; default ``<sweep name>-<UTC timestamp>``.
    address : str or None
        Attach to a running cluster (``"auto"`` or ``host:port``) instead of starting Ray.
    num_cpus : int or None
        CPUs of the embedded Ray (default: all local CPUs). Ignored with ``address``.
    dashboard : bool
        Start the embedded Ray with its dashboard on 127.0.0.1:8265.
    verbose : int
        Tune console output: 0 silent, 1 progress table, 2 every result.
    """

    storage: str = "runs"
    name: str | None = None
    address: str | None = None
    num_cpus: int | None = None
    dashboard: bool = False
    verbose: int = 1


@dataclass
class RunSummary:
    """What a finished (or resumed) sweep produced."""

    spec: SweepSpec
    run_dir: str
    table: pd.DataFrame
    files: dict[str, str]
    best: int | None
    seconds: float
    dashboard_url: str | None = None
    notes: list[str] = field(default_factory=list)
    #: trials that did not finish (the sweep was stopped, e.g. by Ctrl-C): ``--resume run_dir`` runs them
    pending: int = 0
    #: shell lines that reproduce the best row (``mmray backtest --policy ...``, after a copy for a URI)
    reproduce: list[str] = field(default_factory=list)
    #: the best trial of each group of comparable trials (one group, unless the sweep has no single best:
    #: a frontier, markets compared side by side; :func:`mmray.tuning.results.picks`)
    picks: list[Pick] = field(default_factory=list)
    #: shell lines that reproduce each pick's row, by row
    pick_reproduce: dict[int, list[str]] = field(default_factory=dict)

    @property
    def interrupted(self) -> bool:
        return self.pending > 0

    @property
    def best_row(self) -> dict[str, Any] | None:
        return None if self.best is None else self.table.iloc[self.best].to_dict()

    def as_json(self) -> dict[str, Any]:
        """What ``mmray tune --json`` prints (before :func:`mmray.io.to_jsonable`)."""
        df = self.table
        counts = df["status"].value_counts().to_dict() if len(df) else {}
        return {
            "run_dir": self.run_dir, "seconds": self.seconds, "n_trials": len(df), "status": counts,
            "files": self.files, "best": self.best_row, "reproduce": self.reproduce,
            "best_means": picks_heading(self.spec) if self.picks else None,
            "picks": [{"group": p.group, "trial": int(df["trial"].iat[p.row]), "row": df.iloc[p.row].to_dict(),
                       "policy": self.files.get(pick_policy_dir(p)), "reproduce": self.pick_reproduce.get(p.row, [])}
                      for p in self.picks],
            "unfinished_trials": self.pending, "rows": df.to_dict(orient="records"),
        }

    def console_lines(self) -> list[str]:
        """The console summary of ``mmray tune``: the table, what "best" means and the best trial(s), the
        files, the commands that reproduce the picked rows, and ``--resume`` after an interruption."""
        import pandas as pd

        df, spec = self.table, self.spec
        counts = df["status"].value_counts().to_dict() if len(df) else {}
        cols = [c for c in summary_columns(spec) if c in df]
        with pd.option_context("display.max_rows", 60, "display.width", 160, "display.max_columns", 20,
                               "display.float_format", "{:.4g}".format):
            table = display_table(df)[cols].to_string(index=False)
        lines = ["", f"Results ({len(df)} trials: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
                 + f"; {self.seconds:.1f} s)", table]
        if spec.kind == "rl" and len(df):  # and the configurations: the metric's mean and SE over their seeds
            from mmray.tuning.rl_sweep import config_columns, config_table

            with pd.option_context("display.max_rows", 60, "display.width", 160, "display.max_columns", 20,
                                   "display.float_format", "{:.4g}".format):
                lines += ["", f"Configurations (mean and standard error of {spec.search.metric} over the seeds):",
                          config_table(spec, df)[config_columns(spec)].to_string(index=False)]
        if self.picks:
            lines += ["", picks_heading(spec)]
            lines += [f"  {pick_line(spec, df, p)}" for p in self.picks]
        lines += ["", f"Run directory: {self.run_dir}"]
        shown = ["results.parquet", "results.csv", "configs.csv", "report.md", "frontier.png", "metric_vs_params.png",
                 "robustness.png", "configs.png", "benchmark", *(pick_policy_dir(p) for p in self.picks)]
        lines += [f"  {key:<20} {self.files[key]}" for key in shown if key in self.files]
        commands = [(p, self.pick_reproduce[p.row]) for p in self.picks if p.row in self.pick_reproduce]
        if commands:
            remote = any(len(c) > 1 for _, c in commands)
            many = len(commands) > 1
            lines.append(f"Reproduce the {'picked rows' if many else 'best row'}"
                         + (" (copy the checkpoint first: mmray backtest --policy reads local directories)"
                            if remote else "") + ":")
            for pick, command in commands:
                if many:
                    lines.append(f"  # {pick.label}")
                lines += [f"  {line}" for line in command]
        if self.interrupted:
            n = self.pending
            lines += ["", f"Interrupted: {n} trial{'s' if n != 1 else ''} did not finish. Continue the sweep with:",
                      f"  python -m mmray.tune --resume {self.run_dir}"]
        return lines


# --------------------------------------------------------------------------- Ray


def start_ray(options: RunOptions) -> tuple[bool, str | None]:
    """Start an embedded Ray (all local CPUs unless ``num_cpus``) or attach to ``address``.

    Returns ``(started_here, dashboard_url)``; reuses a session that is already initialised.
    """
    from mmray.distributed import ensure_ray

    ctx = ensure_ray(options.address, options.num_cpus, options.dashboard, log_to_driver=options.verbose >= 2)
    if ctx is None:  # a session was already running
        return False, None
    return True, _dashboard_url(ctx) if (options.dashboard or options.address) else None


def _dashboard_url(ctx: Any) -> str | None:
    url = getattr(ctx, "dashboard_url", None) if ctx is not None else None
    if not url:
        return None
    return url if url.startswith("http") else f"http://{url}"


# --------------------------------------------------------------------------- storage


def _is_uri(path: str) -> bool:
    return "://" in path


def _join(storage: str, name: str) -> str:
    return f"{storage.rstrip('/')}/{name}" if _is_uri(storage) else str(Path(storage) / name)


def _split(run_dir: str) -> tuple[str, str]:
    run_dir = run_dir.rstrip("/")
    if _is_uri(run_dir):
        head, _, name = run_dir.rpartition("/")
        return head, name
    p = Path(run_dir).expanduser().resolve()
    return str(p.parent), p.name


def _normalise_storage(storage: str) -> str:
    return storage if _is_uri(storage) else str(Path(storage).expanduser().resolve())


def _read_text(path: str) -> str:
    if not _is_uri(path):
        return Path(path).read_text()
    import pyarrow.fs as pafs

    fs, p = pafs.FileSystem.from_uri(path)
    with fs.open_input_stream(p) as f:
        return f.read().decode()


def _exists(path: str) -> bool:
    if not _is_uri(path):
        return Path(path).exists()
    import pyarrow.fs as pafs

    fs, p = pafs.FileSystem.from_uri(path)
    return fs.get_file_info(p).type != pafs.FileType.NotFound


def _write_spec(spec: SweepSpec, run_dir: str) -> None:
    text = json.dumps({**spec.to_dict(), "mmray": {"source": spec.source}}, indent=2) + "\n"
    if _is_uri(run_dir):
        import pyarrow.fs as pafs

        fs, p = pafs.FileSystem.from_uri(run_dir)
        fs.create_dir(p, recursive=True)
        with fs.open_output_stream(f"{p}/{SPEC_FILE}") as f:
            f.write(text.encode())
        return
    atomic_write(Path(run_dir) / SPEC_FILE, lambda t: t.write_text(text))


# --------------------------------------------------------------------------- resources


@dataclass(frozen=True)
class Capacity:
    """CPUs a sweep can get: per node now, and per node type the autoscaler may add."""

    node_cpus: tuple[float, ...]
    #: (CPUs per node, most nodes) of each node type the autoscaler can launch; empty without one
    scalable: tuple[tuple[float, int], ...] = ()

    @property
    def largest_node(self) -> float:
        return max([*self.node_cpus, *(c for c, n in self.scalable if n > 0)], default=0.0)

    @property
    def total(self) -> float:
        return sum(self.node_cpus) + sum(c * n for c, n in self.scalable)

    def describe(self) -> str:
        nodes = ", ".join(f"{c:g}" for c in sorted(self.node_cpus, reverse=True)) or "none"
        text = f"{len(self.node_cpus)} node{'s' if len(self.node_cpus) != 1 else ''} with {nodes} CPUs"
        if self.scalable:
            text += "; the autoscaler can add " + ", ".join(f"{n} x {c:g} CPUs" for c, n in self.scalable)
        return text


def check_resources(spec: SweepSpec, capacity: Capacity) -> None:
    """Refuse a sweep whose trials can never be scheduled on ``capacity``.

    A trial without ``mc_ray`` is one actor: its ``cpus_per_trial`` must fit on one node. With
    ``mc_ray`` it reserves a placement group of ``mc_workers`` 1-CPU bundles (PACK, which may
    spread over nodes): the cluster needs that many CPUs in all, one node at least 1. Tune would
    otherwise keep such trials pending forever (its warning is hidden below verbosity 2).
    """
    r = spec.resources
    if spec.kind == "rl":
        _check_rl_resources(spec, capacity)
    elif r.mc_ray:
        if capacity.largest_node < 1.0 or r.mc_workers > capacity.total:
            raise SweepConfigError(
                f"{spec.source}: sweep.resources.mc_workers={r.mc_workers} (--mc-workers) with mc_ray: each "
                f"trial reserves {r.mc_workers} one-CPU bundles for its Monte Carlo tasks, but this Ray cluster has "
                f"{capacity.total:g} CPUs in all ({capacity.describe()}); lower mc_workers or use a bigger cluster")
    elif r.cpus_per_trial > capacity.largest_node:
        raise SweepConfigError(
            f"{spec.source}: sweep.resources.cpus_per_trial={r.cpus_per_trial:g} (--cpus-per-trial): a trial "
            f"needs {r.cpus_per_trial:g} CPUs on one node, but the largest node of this Ray cluster has "
            f"{capacity.largest_node:g} ({capacity.describe()}); lower cpus_per_trial, or start Ray with more CPUs "
            "(--num-cpus)")


def _check_rl_resources(spec: SweepSpec, capacity: Capacity) -> None:
    """An ``rl`` trial reserves RLlib's placement group (:func:`mmray.tuning.rl_sweep.resource_bundles`): its
    main bundle (``cpus_per_trial``) and each remote env runner's or learner's must fit on a node, all of
    them in the cluster."""
    from mmray.tuning.rl_sweep import resource_bundles

    bundles = resource_bundles(spec)
    cpus = [b.get("CPU", 0.0) for b in bundles]
    if cpus[0] > capacity.largest_node:
        raise SweepConfigError(
            f"{spec.source}: sweep.resources.cpus_per_trial={cpus[0]:g} (--cpus-per-trial): an RL trial's process "
            f"(RLlib's local env runner and learner) needs {cpus[0]:g} CPUs on one node, but the largest node of this "
            f"Ray cluster has {capacity.largest_node:g} ({capacity.describe()}); lower cpus_per_trial, or start Ray "
            "with more CPUs (--num-cpus)")
    if max(cpus) > capacity.largest_node or sum(cpus) > capacity.total:
        raise SweepConfigError(
            f"{spec.source}: sweep.rl: an RL trial reserves {sum(cpus):g} CPUs in {len(bundles)} bundles (its process "
            f"and RLlib's remote env runners and learners: {', '.join(f'{c:g}' for c in cpus)}), but this Ray cluster "
            f"has {capacity.total:g} CPUs in all ({capacity.describe()}); lower sweep.rl.num_env_runners or use a "
            "bigger cluster")


def cluster_capacity() -> Capacity:
    """The running Ray cluster's CPUs per alive node, and what its autoscaler may add.

    The autoscaler's node types come from the cluster config Ray keeps in GCS when there is one,
    else from ``~/ray_bootstrap_config.yaml``, which ``ray up`` writes on the head node (where
    ``ray attach`` and ``ray job submit`` run the driver).
    """
    import ray

    nodes = tuple(float(n.get("Resources", {}).get("CPU", 0.0)) for n in ray.nodes() if n.get("Alive"))
    return Capacity(nodes, _autoscaler_node_types())


def _autoscaler_node_types() -> tuple[tuple[float, int], ...]:
    try:
        from ray._private.state import state

        config = state.get_cluster_config()
    except Exception:  # internal API: absent or changed
        config = None
    if config is not None and config.node_group_configs:
        return tuple((float(g.resources.get("CPU", 0)), int(g.max_count) if g.max_count >= 0 else 10**6)
                     for g in config.node_group_configs if g.max_count != 0)
    path = Path("~/ray_bootstrap_config.yaml").expanduser()
    if not path.is_file():
        return ()
    try:
        import yaml

        doc = yaml.safe_load(path.read_text())
        types = doc.get("available_node_types") or {}
        head = doc.get("head_node_type")
        limit = int(doc.get("max_workers", 10**6))
        return tuple((float((t.get("resources") or {}).get("CPU", 0)), min(int(t.get("max_workers", limit)), limit))
                     for name, t in types.items() if name != head and int(t.get("max_workers", limit)) > 0)
    except Exception:  # an unreadable file: judge by the current nodes only
        return ()


def load_run_spec(run_dir: str) -> SweepSpec:
    """The spec a run was started with (its ``sweep.json``)."""
    path = _join(run_dir, SPEC_FILE) if _is_uri(run_dir) else str(Path(run_dir) / SPEC_FILE)
    if not _exists(path):
        raise SweepConfigError(f"{path}: missing; --resume needs a run directory created by mmray.tune")
    try:
        data = json.loads(_read_text(path))
    except json.JSONDecodeError as exc:
        raise SweepConfigError(f"{path}: line {exc.lineno} column {exc.colno}: invalid JSON: {exc.msg}") from None
    meta = data.pop("mmray", {}) if isinstance(data, dict) else {}
    source = meta.get("source") if isinstance(meta, dict) else None
    return spec_from_dict(data, source=source or path)


# --------------------------------------------------------------------------- run


def _tuner(spec: SweepSpec, storage: str, name: str, verbose: int) -> Any:
    from ray import tune

    from mmray.tuning import sweeps

    metric, mode = ("loss", "min") if spec.kind == "robustness" else (spec.search.metric, spec.search.mode)
    tune_config = tune.TuneConfig(
        metric=metric, mode=mode, search_alg=sweeps.search_algorithm(spec), scheduler=sweeps.scheduler(spec),
        num_samples=sweeps.num_samples(spec), reuse_actors=spec.resources.reuse_actors,
    )
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    run_config = tune.RunConfig(
        name=name, storage_path=storage, verbose=verbose, progress_reporter=_reporter(spec),
        callbacks=[JsonLoggerCallback(), CSVLoggerCallback(), *_extra_callbacks()],  # no TensorBoard
        failure_config=tune.FailureConfig(max_failures=spec.failure.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
    )
    return tune.Tuner(sweeps.trainable(spec, _join(storage, name)), param_space=sweeps.param_space(spec),
                      tune_config=tune_config, run_config=run_config)


def _extra_callbacks() -> list[Any]:
    """More Tune callbacks for a new sweep (none; tests add one)."""
    return []


def _reporter(spec: SweepSpec) -> Any:
    """Tune's console progress table: the swept parameters and the key metrics."""
    from ray.tune import CLIReporter

    metric = spec.search.metric
    metrics = ["loss", "loss_se", metric] if spec.kind == "robustness" else [metric, f"{metric}_se"]
    if spec.kind == "rl":
        metrics += [m for m in ("optimality_ratio", "gap_closed_iter", "env_steps", "wall_s") if m not in metrics]
        params = [*spec.grid, *spec.space, "seed"]
    else:
        metrics += [m for m in ("pnl_mean", "pnl_std", "q_final_std", "n_paths_done") if m not in metrics]
        params = [p for p in ("strategy", *spec.grid, *spec.space, "scenario")
                  if p != "scenario" or spec.robustness is not None]
    return CLIReporter(parameter_columns=params, metric_columns=metrics, max_progress_rows=40,
                       max_report_frequency=15, sort_by_metric=False, max_column_length=24)


def _fit(tuner: Any, verbose: int) -> list[TrialRecord]:
    import logging

    # a trial's final report carries a checkpoint, which (with num_to_keep=1) makes Tune save its
    # experiment state at once: frequent by design, so no warning about it
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the CLIReporter progress table
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # the loggers are given explicitly
    if verbose < 2:
        for name in ("ray.tune", "ray.train", "ray.air"):
            logging.getLogger(name).setLevel(logging.ERROR)
        # but not "no trial can be scheduled" (e.g. after the cluster lost a node mid-sweep)
        logging.getLogger("ray.tune.execution.insufficient_resources_manager").setLevel(logging.WARNING)
    return records_from_result_grid(tuner.fit())


def _publish(spec: SweepSpec, records: list[TrialRecord], run_dir: str, seconds: float) -> tuple[Any, dict[str, str]]:
    from mmray.tuning.sweeps import n_trials

    if not _is_uri(run_dir):
        art = write_artefacts(spec, records, Path(run_dir), seconds, n_expected=n_trials(spec))
        return art, {k: str(v) for k, v in art.files.items()}
    import pyarrow.fs as pafs

    with tempfile.TemporaryDirectory(prefix="mmray-tune-") as tmp:
        art = write_artefacts(spec, records, Path(tmp), seconds, display_dir=run_dir, n_expected=n_trials(spec))
        fs, p = pafs.FileSystem.from_uri(run_dir)
        pafs.copy_files(tmp, p, destination_filesystem=fs)
        files = {k: _join(run_dir, str(Path(v).relative_to(tmp))) for k, v in art.files.items()}
    return art, files


def run_sweep(spec: SweepSpec, options: RunOptions | None = None) -> RunSummary:
    """Run ``spec`` on Ray Tune and write its artefacts; see the module docstring for the layout.

    Raises
    ------
    SweepConfigError
        The run directory already holds a sweep (use :func:`resume_sweep` or another name).
    """
    options = options or RunOptions()
    storage = _normalise_storage(options.storage)
    name = options.name or f"{spec.name}-{_dt.datetime.now(_dt.UTC).strftime('%Y%m%d-%H%M%S')}"
    run_dir = _join(storage, name)
    if _exists(_join(run_dir, SPEC_FILE)):
        raise SweepConfigError(f"{run_dir}: already holds a sweep; continue it with --resume {run_dir} "
                               "or choose another --name")
    return _execute(spec, run_dir, options, lambda: _tuner(spec, storage, name, options.verbose), True)


def resume_sweep(run_dir: str, options: RunOptions | None = None) -> RunSummary:
    """Continue an interrupted sweep with ``Tuner.restore``: finished trials are kept,
    unfinished and errored ones run (again), then the artefacts are rewritten."""
    from ray import tune

    from mmray.tuning import sweeps

    options = options or RunOptions()
    run_dir, spec = prepare_resume(run_dir)
    return _execute(spec, run_dir, options, lambda: tune.Tuner.restore(
        run_dir, trainable=sweeps.trainable(spec, run_dir), resume_unfinished=True, resume_errored=True), False)


def prepare_resume(run_dir: str) -> tuple[str, SweepSpec]:
    """Check that ``run_dir`` can be resumed, before any Ray starts: its ``sweep.json`` and Tune's
    experiment state. Returns the normalised run directory and the sweep it holds."""
    from ray import tune

    run_dir = run_dir.rstrip("/") if _is_uri(run_dir) else str(Path(run_dir).expanduser().resolve())
    if not _is_uri(run_dir) and not Path(run_dir).is_dir():
        raise SweepConfigError(f"{run_dir}: no such run directory (--resume takes a run directory created by "
                               "mmray.tune, e.g. runs/<name>)")
    spec = load_run_spec(run_dir)
    if not tune.Tuner.can_restore(run_dir):
        raise SweepConfigError(f"{run_dir}: no Tune experiment state to resume (did the sweep start?)")
    _check_experiment_state(run_dir)
    return run_dir, spec


def _check_experiment_state(run_dir: str) -> None:
    """Refuse to resume from an unreadable experiment state, naming the file.

    Tune copies its state from the driver's staging directory to the storage path without an
    atomic rename; a driver killed during that copy (a few milliseconds after each finished
    trial) leaves a truncated file, which ``Tuner.restore`` would fail on deep inside Ray.
    """
    from ray.tune.execution.experiment_state import _find_newest_experiment_checkpoint

    path = _find_newest_experiment_checkpoint(run_dir)
    if path is None:
        raise SweepConfigError(f"{run_dir}: no Tune experiment state to resume (did the sweep start?)")
    shown = _join(run_dir, Path(path).name)
    try:
        json.loads(_read_text(shown))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SweepConfigError(
            f"{shown}: Tune's experiment state is incomplete ({exc}); the driver was probably killed "
            "while saving it. Start the sweep again under a new --name (finished trials cannot be "
            "recovered from this file).") from None


def _execute(spec: SweepSpec, run_dir: str, options: RunOptions, make_tuner: Any, write_spec: bool) -> RunSummary:
    """Start Ray if needed, fit the tuner ``make_tuner()`` builds, publish the artefacts, stop Ray."""
    started, url = start_ray(options)
    try:
        check_resources(spec, cluster_capacity())
        if write_spec:
            _write_spec(spec, run_dir)
        t0 = time.perf_counter()
        records = _fit(make_tuner(), options.verbose)
        seconds = time.perf_counter() - t0
        art, files = _publish(spec, records, run_dir, seconds)
    finally:
        if started:
            import ray

            ray.shutdown()
    return RunSummary(spec, run_dir, art.table, files, art.best, seconds, url,
                      pending=art.pending, reproduce=list(art.reproduce), picks=list(art.picks),
                      pick_reproduce=dict(art.pick_reproduce))
