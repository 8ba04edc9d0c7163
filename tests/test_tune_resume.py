"""Kill the sweep driver mid-sweep, resume with ``--resume``: no finished trial runs again, and a
trial that had reported its final checkpoint is restored from it, not recomputed.

The sweep runs in subprocesses (``python -m mmray.tune``), each with its own embedded Ray on
2 CPUs; this module starts no Ray session itself. The driver is killed by a Tune callback at the
moment Tune's saved state lists two finished trials (:class:`tune_hooks.KillWhenSaved`), not by a
clock. The first run also starts the dashboard (``--dashboard``): its API must refuse a request
without the auth token (401) and answer one with it (200).
"""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import tune_hooks

from mmray.tuning.config import load_spec
from mmray.tuning.trainables import evaluate_trial

pytestmark = pytest.mark.ray

SWEEP = """
sweep:
  kind: risk-aversion
  name: resume
  seed: 5
  problem: {T: 600, q_max: 20}
  sim: {n_paths: 30000, dt: 1.0}
  strategies: [optimal, as]
  grid: {gamma: [0.001, 0.002, 0.005, 0.01, 0.02, 0.05]}
  resources: {cpus_per_trial: 1.0}
"""
N_TRIALS = 12


def _result_files(run: Path) -> dict[str, str]:
    return {Path(p).parent.name: Path(p).read_text() for p in glob.glob(str(run / "*" / "result.json"))}


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c", tune_hooks.DRIVER, *args, "--num-cpus", "2", "-q"]


def _mark_unfinished(run: Path, trial_id: str) -> None:
    """Edit Tune's saved state as a driver killed between a trial's final checkpoint and its completion
    leaves it: the trial reported (its checkpoint is in the state) but is not marked finished."""
    path = Path(sorted(glob.glob(str(run / "experiment_state-*.json")))[-1])
    state = json.loads(path.read_text())
    for entry in state["trial_data"]:
        trial = json.loads(entry[0])
        if trial["trial_id"] == trial_id:
            trial["status"] = "RUNNING"
            entry[0] = json.dumps(trial)
    path.write_text(json.dumps(state))


def test_resume_after_killing_the_driver(tmp_path: Path) -> None:
    sweep = tmp_path / "resume.yaml"
    sweep.write_text(SWEEP)
    run = tmp_path / "runs" / "r"
    dashboard = tmp_path / "dashboard.json"
    hooks = [("KillWhenSaved", {"finished": 2, "marker": str(tmp_path / "killed"), "dashboard_file": str(dashboard)})]
    with open(tmp_path / "first.log", "w") as log:
        proc = subprocess.Popen(
            _cli("--config", str(sweep), "--storage", str(tmp_path / "runs"), "--name", "r", "--dashboard"),
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=tune_hooks.driver_env(hooks))
        try:
            code = proc.wait(timeout=600)
        finally:  # the Ray processes it started (its process group), whatever happened
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
    text = (tmp_path / "first.log").read_text()
    assert code == -signal.SIGKILL, text  # killed by the hook, mid-sweep
    answers = json.loads(dashboard.read_text())
    assert f"Ray dashboard: {answers['url']}" in text and answers["url"].startswith("http://127.0.0.1:")
    assert (answers["without_token"], answers["with_token"]) == (401, 200)  # the API is token-protected

    before = tune_hooks.saved_statuses(str(run))
    assert before == answers["saved"]  # the state the driver left is the one it checked, whole
    finished = {tid for tid, s in before.items() if s == "TERMINATED"}
    assert 2 <= len(finished) < N_TRIALS, before
    results_before = _result_files(run)
    finished_dirs = {d: next(t for t in finished if t in d) for d in results_before if any(t in d for t in finished)}
    assert len(finished_dirs) == len(finished)
    assert not (run / "results.csv").exists()

    # one finished trial as if the driver had died after its final checkpoint but before marking it
    # finished; and were it recomputed rather than restored from that checkpoint, it would fail
    restored_dir, restored_id = sorted(finished_dirs.items())[0]
    _mark_unfinished(run, restored_id)
    restored_config = json.loads(results_before[restored_dir].splitlines()[-1])["config"]
    spec_file = run / "sweep.json"
    doc = json.loads(spec_file.read_text())
    doc["sweep"]["failure"] = {"max_failures": 0, "inject": [{"match": restored_config, "times": 99, "how": "raise"}]}
    spec_file.write_text(json.dumps(doc))

    resumed = subprocess.run(_cli("--resume", str(run)), capture_output=True, text=True, timeout=600,
                             env=tune_hooks.driver_env([]))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr

    after = tune_hooks.saved_statuses(str(run))
    assert set(after) >= set(before) and len(after) == N_TRIALS
    assert all(s == "TERMINATED" for s in after.values())
    results_after = _result_files(run)
    for d in finished_dirs:  # a finished trial was not run again: its results are untouched
        if d != restored_dir:
            assert results_after[d] == results_before[d]
    # the restored trial reported again, the metrics of its checkpoint
    last_before = json.loads(results_before[restored_dir].splitlines()[-1])
    last_after = json.loads(results_after[restored_dir].splitlines()[-1])
    assert len(results_after[restored_dir].splitlines()) == 2
    assert {k: last_after[k] for k in ("sharpe", "ce_A", "seed", "attempt")} == \
        {k: last_before[k] for k in ("sharpe", "ce_A", "seed", "attempt")}
    df = pd.read_csv(run / "results.csv")
    assert len(df) == N_TRIALS and (df["status"] == "ok").all()
    assert sorted(zip(df["strategy"], df["gamma"], strict=True)) == sorted(
        (s, g) for s in ("optimal", "as") for g in (0.001, 0.002, 0.005, 0.01, 0.02, 0.05))
    # the resumed table holds the same numbers as the plain (Ray-free) trial function
    spec = load_spec(sweep)
    for i in (0, N_TRIALS - 1):
        row = df.iloc[i]
        expected = evaluate_trial(spec, {"strategy": row["strategy"], "gamma": row["gamma"]}, use_ray=False)
        assert row["ce_A"] == pytest.approx(expected["ce_A"], rel=1e-12)
        assert row["seed"] == expected["seed"]
    assert (run / "best_policies" / "optimal" / "policy.json").exists()


def test_resume_refuses_a_truncated_experiment_state(tmp_path: Path) -> None:
    """A driver killed while Tune copied its state leaves a truncated file: a clear error, no Ray."""
    from mmray.tuning.runner import SPEC_FILE, resume_sweep
    from mmray.tuning.spec import SweepConfigError

    sweep = tmp_path / "resume.yaml"
    sweep.write_text(SWEEP)
    run = tmp_path / "r"
    run.mkdir()
    spec = load_spec(sweep)
    (run / SPEC_FILE).write_text(json.dumps({**spec.to_dict(), "mmray": {"source": str(sweep)}}))
    (run / "tuner.pkl").write_bytes(b"")  # Tuner.can_restore looks for it; never unpickled here
    state = run / "experiment_state-2026-12-01_07-00-00.json"
    state.write_text('{"trial_data": [["{\\"trial_id\\": ')
    with pytest.raises(SweepConfigError, match=r"experiment_state-2026-12-01_07-00-00\.json: Tune's experiment "
                                               r"state is incomplete .*killed while saving it"):
        resume_sweep(str(run))
