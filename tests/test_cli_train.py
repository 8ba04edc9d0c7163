"""``mmray train`` / ``mmray export`` end to end on a tiny environment: the JSON figures, a run that
resumes, an exported policy that loads and backtests, one-line refusals."""

from __future__ import annotations

import json

import pytest

from mmray import load_policy
from mmray.cli import main

pytestmark = pytest.mark.ray

TINY = ["--T", "20", "--q-max", "3", "--envs-per-runner", "16", "--minibatch-size", "512"]


def _fails(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(err) == 1 and "Traceback" not in err[0]
    return err[0]


def test_train_resume_export_backtest(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--algo", "ppo", "--iterations", "1", *TINY, "--reward", "expected", "--out", str(run),
                 "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    for key in ("optimality_ratio", "optimality_ratio_se", "gap_closed", "gap_closed_se", "agent_value",
                "reference_value", "baseline_value", "env_steps", "wall_s", "checkpoint", "policy"):
        assert key in first, key
    assert first["env_steps"] == 16 * 128 and first["iterations"] == 1
    # the figures are what they say: ratio = agent / reference, gap closed from the baseline
    assert first["optimality_ratio"] == pytest.approx(first["agent_value"] / first["reference_value"], rel=1e-12)
    gap = (first["agent_value"] - first["baseline_value"]) / (first["reference_value"] - first["baseline_value"])
    assert first["gap_closed"] == pytest.approx(gap, rel=1e-9)
    assert main(["train", "--resume", str(run), "--iterations", "2", "--json"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["iterations"] == 2 and second["env_steps"] == 2 * 16 * 128
    assert main(["export", str(run), "--out", str(tmp_path / "agent"), "--latest", "--json"]) == 0
    exported = json.loads(capsys.readouterr().out)
    assert exported["kind"] == "mlp" and exported["params"]["env"]["problem"]["T"] == 20.0
    assert exported["params"]["env"]["reward"] == "expected"  # --reward reached the env
    policy = load_policy(tmp_path / "agent")
    assert type(policy).kind == "mlp"
    assert main(["backtest", "--policy", str(tmp_path / "agent"), "--paths", "200", "--local", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["sim"]["dt"] == 1.0 and res["problem"]["q_max"] == 3  # the env's own model and step
    import ray

    assert not ray.is_initialized()  # the command shut down the Ray session it started


def test_train_and_export_refusals(tmp_path, capsys):
    assert "--algo and --out are required" in _fails(["train", "--iterations", "1"], capsys)
    assert "--minibatch-size applies to --algo ppo only" in _fails(
        ["train", "--algo", "sac", "--iterations", "1", "--minibatch-size", "64", "--out", str(tmp_path / "r")],
        capsys)
    assert "no rl_config.json here or above" in _fails(["export", str(tmp_path), "--out", str(tmp_path / "p")],
                                                        capsys)
    assert not (tmp_path / "r").exists() and not (tmp_path / "p").exists()
