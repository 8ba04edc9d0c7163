"""End-to-end Ray Tune sweeps on a 2-CPU embedded Ray (one session for the module)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from mmray import backtest, load_policy
from mmray.tune import main
from mmray.tuning.config import load_spec, spec_from_dict
from mmray.tuning.presets import preset, smoke
from mmray.tuning.runner import RunOptions, load_run_spec, run_sweep
from mmray.tuning.sweeps import n_trials
from mmray.tuning.trainables import trial_setup

pytestmark = pytest.mark.ray

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples" / "sweeps").glob("*.yaml"))


@pytest.fixture(scope="module", autouse=True)
def ray_session():
    import ray
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def quick(storage: Path) -> Path:
    """The default sweep in smoke mode, run through the CLI entry point."""
    assert main(["--smoke", "--storage", str(storage), "--name", "quick", "-q", "--seed", "0"]) == 0
    return storage / "quick"


def _table(run: Path) -> pd.DataFrame:
    return pd.read_csv(run / "results.csv")


def _small(kind: str, **sweep: object) -> dict:
    doc = {"kind": kind, "problem": {"T": 120, "q_max": 10}, "sim": {"n_paths": 400, "chunk_size": 200}}
    doc.update(sweep)
    return {"sweep": doc}


def test_quick_sweep_writes_table_plots_report_and_loadable_policies(quick: Path, capsys) -> None:
    df = _table(quick)
    pq = pd.read_parquet(quick / "results.parquet")
    strategies = ["optimal", "discrete_optimal", "as", "constant"]
    assert len(df) == len(pq) == 12  # 4 strategies x 3 gammas in smoke mode
    pd.testing.assert_frame_equal(df.drop(columns="error"), pq.drop(columns="error"), check_dtype=False)
    assert (pq["error"] == "").all()
    assert list(df["trial"]) == list(range(12))
    assert list(df["strategy"]) == [s for s in strategies for _ in range(3)]
    assert (df["status"] == "ok").all() and (df["attempt"] == 1).all() and (df["n_paths_done"] == 400).all()
    assert df["seed"].nunique() == 1  # common random numbers: every trial simulates the same paths
    for col in ("gamma", "seed", "sharpe", "sharpe_se", "pnl_mean", "pnl_std", "q_final_std", "ce_A", "value_B",
                "ce_A_ref", "ce_A_ref_se"):
        assert col in df
    png = (quick / "frontier.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) < 250_000
    assert (quick / "metric_vs_params.png").exists()
    report = (quick / "report.md").read_text()
    assert "## Best gamma per strategy" in report and "![frontier](frontier.png)" in report
    assert "12 ok" in report.replace("(", "")
    trials = json.loads((quick / "trials.json").read_text())["trials"]
    assert len(trials) == 12 and len({t["trial_id"] for t in trials}) == 12

    # no single best on a frontier: per strategy, the gamma best for the reference maker, each exported;
    # backtesting a checkpoint reproduces its row
    assert not (quick / "best_policy").exists()
    spec = load_run_spec(str(quick))
    for strategy in strategies:
        rows = df[df["strategy"] == strategy]
        best = rows.loc[rows["ce_A_ref"].idxmax()]
        policy = load_policy(quick / "best_policies" / strategy)
        prov = policy.provenance
        assert prov["sweep"]["kind"] == "risk-aversion" and prov["trial"] == int(best["trial"])
        assert prov["config"] == {"strategy": strategy, "gamma": best["gamma"]}
        setup = trial_setup(spec, prov["config"])
        again = backtest(policy, setup.market, setup.problem, setup.sim).metrics
        assert again["ce_A"] == pytest.approx(best["ce_A"], rel=1e-12)
        assert setup.sim.seed == int(best["seed"]) and prov["sim"] == setup.sim.to_dict()
        # the report prints the command that reruns it
        assert f"mmray backtest --policy {quick / 'best_policies' / strategy} --paths 400 --seed {setup.sim.seed} " \
               "--dt 1.0 " in report
    assert "same seed, same table: yes" in report
    # the CLI, given only --paths and --seed, takes dt, models and chunking from the checkpoint
    from mmray.cli import main as cli_main

    best = df.loc[df[df["strategy"] == "discrete_optimal"]["ce_A_ref"].idxmax()]
    assert cli_main(["backtest", "--policy", str(quick / "best_policies" / "discrete_optimal"), "--paths", "400",
                     "--seed", str(int(best["seed"])), "--local", "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    assert cli["sim"]["dt"] == 1.0 and cli["ce_A"] == pytest.approx(best["ce_A"], rel=1e-12)


def test_tune_json_prints_one_object_with_the_results(storage: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--smoke", "--storage", str(storage), "--name", "json", "--json", "--seed", "0"]) == 0
    out = json.loads(capsys.readouterr().out)  # the whole of stdout is one JSON object
    run = storage / "json"
    df = _table(run)
    assert out["run_dir"] == str(run) and out["n_trials"] == len(df) == 12 and out["status"] == {"ok": 12}
    assert out["best"] is None and out["best_means"].startswith("A frontier has no single best")
    assert [p["group"] for p in out["picks"]] == [{"strategy": s} for s in
                                                 ("optimal", "discrete_optimal", "as", "constant")]
    for pick in out["picks"]:
        row = df.iloc[pick["trial"]]
        assert pick["row"]["strategy"] == row["strategy"] == pick["group"]["strategy"]
        assert (pick["row"]["gamma"], pick["row"]["ce_A_ref"]) == (row["gamma"], pytest.approx(row["ce_A_ref"]))
        assert pick["policy"] == str(run / "best_policies" / pick["group"]["strategy"])
        assert pick["reproduce"][0].startswith(f"mmray backtest --policy {pick['policy']} --paths 400 ")
    assert out["files"]["report.md"] == str(run / "report.md")
    assert [r["ce_A"] for r in out["rows"]] == pytest.approx(list(df["ce_A"]), rel=1e-12)


def test_frontier_follows_theory(quick: Path) -> None:
    df = _table(quick)
    opt = df[df["strategy"] == "optimal"].sort_values("gamma")
    # more risk aversion -> less PnL dispersion and less inventory, paid for with mean PnL
    assert opt["pnl_std"].is_monotonic_decreasing and opt["pnl_std"].nunique() == 3
    assert opt["q_final_std"].is_monotonic_decreasing
    assert opt["pnl_mean"].is_monotonic_decreasing
    avs = df[df["strategy"] == "as"].sort_values("gamma")
    assert avs["pnl_std"].is_monotonic_decreasing
    # at the largest gamma the exact solution beats the AS approximation on its own objective, and the
    # optimum of the simulator's discrete-time problem beats both (paired: same paths)
    hi = df[df["gamma"] == df["gamma"].max()].set_index("strategy")
    assert hi.loc["discrete_optimal", "ce_A"] > hi.loc["optimal", "ce_A"] > hi.loc["as", "ce_A"]


def test_same_sweep_same_seed_same_table(quick: Path, storage: Path) -> None:
    assert main(["--smoke", "--storage", str(storage), "--name", "quick-again", "-q", "--seed", "0"]) == 0
    assert (storage / "quick-again" / "results.csv").read_bytes() == (quick / "results.csv").read_bytes()
    assert main(["--smoke", "--storage", str(storage), "--name", "quick-seed1", "-q", "--seed", "1"]) == 0
    other = _table(storage / "quick-seed1")
    assert (other["pnl_mean"] != _table(quick)["pnl_mean"]).all()


def test_nested_monte_carlo_tasks_do_not_deadlock_and_match(quick: Path, storage: Path) -> None:
    """mc_ray: each trial reserves a 1-CPU bundle for its chunk tasks and holds no CPU itself, so
    two trials on 2 CPUs never starve their own tasks; the numbers do not depend on Ray."""
    assert main(["--smoke", "--mc-ray", "--storage", str(storage), "--name", "quick-mc", "-q", "--seed", "0"]) == 0
    assert (storage / "quick-mc" / "results.csv").read_bytes() == (quick / "results.csv").read_bytes()


def test_failed_trials_are_retried_then_reported(storage: Path) -> None:
    spec = spec_from_dict(_small(
        "risk-aversion", strategies=["optimal", "as"], grid={"gamma": [0.01, 0.1]},
        failure={"max_failures": 1, "inject": [
            {"match": {"strategy": "optimal", "gamma": 0.1}, "times": 5, "how": "raise"},
            {"match": {"strategy": "as", "gamma": 0.01}, "times": 1, "how": "exit"},  # the worker dies
        ]},
    ))
    summary = run_sweep(spec, RunOptions(storage=str(storage), name="failures", verbose=0))
    df = summary.table.set_index(["strategy", "gamma"])
    bad = df.loc[("optimal", 0.1)]
    assert bad["status"] == "error" and math.isnan(bad["sharpe"])
    assert bad["seed"] == trial_setup(spec, {"strategy": "optimal", "gamma": 0.1}).sim.seed  # though it never reported
    assert "injected failure for trial strategy=optimal, gamma=0.1 (attempt 2)" in bad["error"]  # retried once
    assert df.loc[("as", 0.01), "status"] == "ok" and df.loc[("as", 0.01), "attempt"] == 2
    for key in [("optimal", 0.01), ("as", 0.1)]:
        assert df.loc[key, "status"] == "ok" and df.loc[key, "attempt"] == 1
    report = (storage / "failures" / "report.md").read_text()
    assert "## Errors" in report and "injected failure" in report


def test_hparams_optuna_with_asha(storage: Path) -> None:
    spec = spec_from_dict(_small(
        "hparams", name="optuna", strategies=["optimal"], sim={"n_paths": 600, "chunk_size": 200},
        space={"q_max": {"low": 2, "high": 30, "int": True}, "n_times": {"low": 11, "high": 301, "log": True}},
        search={"algorithm": "optuna", "metric": "ce_A", "num_samples": 6, "max_concurrent": 1,
                "asha": {"rungs": 3, "grace_period": 1, "reduction_factor": 2}},
    ))
    summary = run_sweep(spec, RunOptions(storage=str(storage), name="optuna", verbose=0))
    df = summary.table
    assert len(df) == 6
    assert df["q_max"].between(2, 30).all() and (df["q_max"] == df["q_max"].round()).all()
    assert df["n_times"].between(11, 301).all()
    assert set(df["status"]) <= {"ok", "stopped"} and (df["status"] == "ok").any()
    stopped = df[df["status"] == "stopped"]
    assert len(stopped) >= 1  # ASHA cut at least one trial after an early Monte Carlo rung
    assert set(stopped["n_paths_done"]) <= {200, 400}
    assert list((storage / "optuna").glob("searcher-state-*.pkl"))  # OptunaSearch state, for --resume
    ok = df[df["status"] == "ok"]
    assert summary.best == int(ok["ce_A"].idxmax())
    best = load_policy(storage / "optuna" / "best_policy").provenance["config"]
    assert best["q_max"] == df.loc[summary.best, "q_max"]


def test_robustness_sweep_reports_loss_vs_true_optimum(storage: Path) -> None:
    spec = smoke(preset("robustness"))
    summary = run_sweep(spec, RunOptions(storage=str(storage), name="robust", verbose=0))
    df = summary.table
    scenarios = spec.robustness.scenarios()
    assert len(df) == len(spec.strategies) * len(scenarios) and (df["status"] == "ok").all()
    nominal = df[(df["sigma_factor"] == 1.0) & (df["A_factor"] == 1.0)].set_index("strategy")
    assert nominal.loc["optimal", "loss"] == 0.0  # the optimum of the true market, on the same paths
    assert (nominal.loc["optimal", "ce_A"] == nominal.loc["optimal", "truth_ce_A"])
    assert (df["loss_se"] >= 0).all()
    assert (storage / "robust" / "robustness.png").exists()
    best = load_policy(storage / "robust" / "best_policy")
    assert best.provenance["config"]["scenario"] == {"sigma": 1.0, "A": 1.0}
    worst = df.groupby("strategy")["loss"].max()
    assert best.provenance["strategy"] == worst.idxmin()
    assert any(line.startswith("Most robust strategy: the smallest worst-case loss") for line in
               summary.console_lines())


def test_csp_obligation_levels_through_solve(storage: Path) -> None:
    """Obligations (csp ``max_spread``) swept through ``solver.constraints.*``: tighter costs value."""
    spec = spec_from_dict({"sweep": {
        "kind": "hparams", "name": "csp", "market": {"tick": 0.5},
        "problem": {"gamma": 0.01, "T": 120, "q_max": 10, "objective": "B"},
        "sim": {"n_paths": 1000, "dt": 1.0}, "strategies": ["optimal"],
        "solver": {"method": "csp", "options": {"dt": 1.0, "fill_model": "poisson", "constraint_costs": False}},
        "grid": {"solver.constraints.max_spread": [4.0, 6.0, 8.0]},
        "search": {"metric": "value_B"},
    }}, source="<csp test>")
    summary = run_sweep(spec, RunOptions(storage=str(storage), name="csp", verbose=0))
    df = summary.table.sort_values("solver.constraints.max_spread")
    assert (df["status"] == "ok").all(), df["error"].tolist()
    assert df["value_B"].is_monotonic_increasing and df["spread_mean"].is_monotonic_increasing
    # oracle: each trial's simulated value_B is the LP value of its constrained problem (4 SE)
    from mmray.solvers import Constraints, solve

    lp = []
    for _, row in df.iterrows():
        cons = Constraints(max_spread=float(row["solver.constraints.max_spread"]))
        sol = solve(spec.market, spec.problem, "csp", dt=1.0, fill_model="poisson", constraint_costs=False,
                    constraints=cons)
        lp.append(sol.info["objective"])
        assert abs(row["value_B"] - sol.info["objective"]) < 4 * row["value_B_se"], (row.to_dict(), lp)
    assert lp == sorted(lp) and lp[0] < lp[-1]  # a looser spread cap never costs value
    assert load_policy(storage / "csp" / "best_policy").provenance["solver"] == "csp"


def test_unschedulable_trials_are_refused_before_anything_runs(storage: Path) -> None:
    """A trial no node can hold would wait forever (silently below verbosity 2): an error instead."""
    from mmray.tuning.spec import SweepConfigError

    for resources, expected in (({"cpus_per_trial": 3.0}, "the largest node of this Ray cluster has 2"),
                                ({"mc_ray": True, "mc_workers": 3}, "this Ray cluster has 2 CPUs in all")):
        spec = spec_from_dict(_small("risk-aversion", grid={"gamma": [0.01, 0.1]}, resources=resources))
        with pytest.raises(SweepConfigError, match=expected):
            run_sweep(spec, RunOptions(storage=str(storage), name="too-big", verbose=0))
        assert not (storage / "too-big").exists()


def test_ctrl_c_keeps_finished_trials_and_prints_the_resume_command(storage: Path, tmp_path: Path) -> None:
    """Ctrl-C in a sweep driver (a subprocess with its own Ray; the signal is sent by a Tune callback
    when the first trial completes, not by a timer): finished trials are kept, the others are
    'unfinished', the --resume command is printed, exit status 130; the command it prints works."""
    import subprocess
    import sys

    import tune_hooks

    sweep = tmp_path / "ctrl-c.json"
    doc = _small("risk-aversion", strategies=["optimal", "as"], grid={"gamma": [0.01, 0.1, 1.0]})
    sweep.write_text(json.dumps(doc))
    run = storage / "ctrl-c"
    hooks = [("CtrlC", {"marker": str(tmp_path / "sent")})]
    stopped = subprocess.run(
        [sys.executable, "-c", tune_hooks.DRIVER, "--config", str(sweep), "--storage", str(storage),
         "--name", "ctrl-c", "-q", "--num-cpus", "2"],
        capture_output=True, text=True, timeout=600, env=tune_hooks.driver_env(hooks))
    assert stopped.returncode == 130, stopped.stdout + stopped.stderr
    assert f"did not finish. Continue the sweep with:\n  python -m mmray.tune --resume {run}" in stopped.stdout
    df = _table(run)
    assert set(df["status"]) == {"ok", "unfinished"} and len(df) == 6  # trials not finished are not "errors"
    assert df.loc[df["status"] == "unfinished", "error"].isna().all()
    assert df["gamma"].notna().all() and df["seed"].notna().all()
    assert f"python -m mmray.tune --resume {run}" in (run / "report.md").read_text()
    assert main(["--resume", str(run), "-q"]) == 0  # what it printed works (the callback is restored: once only)
    assert (_table(run)["status"] == "ok").all() and len(_table(run)) == 6


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_sweeps_run(path: Path, storage: Path) -> None:
    """Every example sweep file runs (smoke-sized: few paths, short grids, a 120 s horizon), not only validates."""
    spec = smoke(load_spec(path))
    summary = run_sweep(spec, RunOptions(storage=str(storage), name=f"example-{path.stem}", verbose=0))
    df = summary.table
    assert len(df) == n_trials(spec) and (df["status"].isin(["ok", "stopped"])).all(), df["error"].tolist()
    assert summary.picks and all(Path(summary.files[key]).joinpath("policy.json").exists()
                                 for key in summary.files if key.startswith("best_polic"))
    assert (storage / f"example-{path.stem}" / "report.md").exists()
