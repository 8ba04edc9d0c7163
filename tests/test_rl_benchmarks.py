"""The RL benchmarks run in their smoke modes and print what they promise (timings are not tested)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.ray


def _run(*args: str) -> str:
    out = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    return out.stdout


def test_env_throughput_smoke(tmp_path):
    text = _run("benchmarks/env_throughput.py", "--smoke", "--mbt-gym", "--json", str(tmp_path / "t.json"))
    for label in ("MarketMakingEnv (single)", "MarketMakingVectorEnv N=256 (shared generator)",
                  "gymnasium SyncVectorEnv of 16 single envs", "native vector env (VECTOR_ENTRY_POINT)",
                  "gymnasium SYNC of single envs"):
        assert label in text
    assert re.search(r"mbt_gym: not measured|mbt_gym single env", text)  # optional: measured or said so
    figures = json.loads((tmp_path / "t.json").read_text())
    assert figures["raw"]["MarketMakingEnv (single)"] > 0 and figures["vector_over_single"] > 0
    assert all(r["sampling"] > 0 and r["train"] > 0 for r in figures["rllib"].values())


def test_rl_glft_smoke(tmp_path):
    text = _run("benchmarks/rl_glft.py", "--smoke", "--seeds", "0", "--out", str(tmp_path))
    assert "reference (pi)" in text and "best constant" in text
    summary = json.loads((tmp_path / "default-smoke" / "reward-expected" / "summary.json").read_text())
    assert summary["reward"] == "expected" and summary["env"]["reward"] == "expected"  # training's default
    assert [(r["algorithm"], r["seed"]) for r in summary["runs"]] == [("ppo", 0), ("sac", 0)]
    for run in summary["runs"]:
        assert run["method"] == "exact" and run["env_steps"] > 0 and set(run["milestones"]) == {"0.5", "0.8", "0.9",
                                                                                                "0.95"}
        assert (Path(run["out"]) / "learning_curves.png").is_file()
    assert re.search(r"^\s+ppo\s+0\s+[+-]\d", text, re.M) and re.search(r"^\s+sac\s+0\s+[+-]\d", text, re.M)
