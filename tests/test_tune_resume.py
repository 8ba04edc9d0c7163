"""Kill the sweep driver mid-sweep, resume with ``--resume``: no finished trial runs again.

The sweep runs in subprocesses (``python -m mmray.tune``), each with its own embedded Ray on
2 CPUs; this module starts no Ray session itself. The first run also starts the dashboard
(``--dashboard``), which must answer on 127.0.0.1 while the sweep runs.
"""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

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


def _statuses(run: Path) -> dict[str, str]:
    """Trial id -> status in Tune's newest saved experiment state (what a resume starts from)."""
    files = glob.glob(str(run / "experiment_state-*.json"))
    if not files:
        return {}
    try:
        state = json.loads(Path(max(files)).read_text())
    except (json.JSONDecodeError, OSError):
        return {}
    out = {}
    for trial_json, _ in state["trial_data"]:
        t = json.loads(trial_json)
        out[t["trial_id"]] = t["status"]
    return out


def _n_finished(run: Path) -> int:
    return sum(s == "TERMINATED" for s in _statuses(run).values())


def _result_files(run: Path) -> dict[str, str]:
    return {Path(p).parent.name: Path(p).read_text() for p in glob.glob(str(run / "*" / "result.json"))}


def _dashboard_status(log: Path) -> int | None:
    """HTTP status of the dashboard URL the CLI printed (401 without the auth token), if printed."""
    for line in log.read_text().splitlines():
        if line.startswith("Ray dashboard: "):
            url = line.split()[2]
            assert url.startswith("http://127.0.0.1:"), line
            try:
                with urllib.request.urlopen(url, timeout=5) as resp:
                    return resp.status
            except urllib.error.HTTPError as exc:
                return exc.code
            except OSError:  # not answering yet
                return None
    return None


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "mmray.tune", *args, "--num-cpus", "2", "-q"]


def test_resume_after_killing_the_driver(tmp_path: Path) -> None:
    sweep = tmp_path / "resume.yaml"
    sweep.write_text(SWEEP)
    run = tmp_path / "runs" / "r"
    log = open(tmp_path / "first.log", "w")
    proc = subprocess.Popen(
        _cli("--config", str(sweep), "--storage", str(tmp_path / "runs"), "--name", "r", "--dashboard"),
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        dashboard = None
        interrupted = False
        while time.monotonic() < deadline and proc.poll() is None:
            if dashboard is None:
                dashboard = _dashboard_status(tmp_path / "first.log")
            # interrupt once two trials are saved as finished and the dashboard has answered
            if dashboard is not None and _n_finished(run) >= 2:
                # Tune's copy of its state to storage is not atomic: freeze the driver and its Ray
                # processes, and kill them only while the saved state is whole (else let them go on)
                os.killpg(proc.pid, signal.SIGSTOP)
                time.sleep(0.1)
                if _n_finished(run) >= 2:
                    interrupted = True
                    break
                os.killpg(proc.pid, signal.SIGCONT)
            time.sleep(0.05)
        assert interrupted and proc.poll() is None, "the sweep finished before it could be interrupted"
        assert dashboard in (200, 401), (tmp_path / "first.log").read_text()
    finally:
        # kill the driver and the Ray processes it started (its own process group), no clean-up
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        log.close()
    before = _statuses(run)
    finished = {tid for tid, s in before.items() if s == "TERMINATED"}
    assert 2 <= len(finished) < N_TRIALS, before
    results_before = _result_files(run)
    finished_dirs = {d for d in results_before if any(tid in d for tid in finished)}
    assert len(finished_dirs) == len(finished)
    assert not (run / "results.csv").exists()

    resumed = subprocess.run(_cli("--resume", str(run)), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr

    after = _statuses(run)
    assert set(after) >= set(before) and len(after) == N_TRIALS
    assert all(s == "TERMINATED" for s in after.values())
    results_after = _result_files(run)
    for d in finished_dirs:  # a finished trial was not run again: its results are untouched
        assert results_after[d] == results_before[d]
    df = pd.read_csv(run / "results.csv")
    assert len(df) == N_TRIALS and (df["status"] == "ok").all()
    assert sorted(zip(df["strategy"], df["gamma"], strict=True)) == sorted(
        (s, g) for s in ("optimal", "as") for g in (0.001, 0.002, 0.005, 0.01, 0.02, 0.05))
    # the resumed table holds the same numbers as the plain (Ray-free) trial function
    spec = load_spec(sweep)
    for i in (0, N_TRIALS - 1):
        row = df.iloc[i]
        expected = evaluate_trial(spec, {"strategy": row["strategy"], "gamma": row["gamma"]}, use_ray=False)
        assert row["sharpe"] == pytest.approx(expected["sharpe"], rel=1e-12)
        assert row["seed"] == expected["seed"]
    assert (run / "best_policy" / "policy.json").exists()


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
