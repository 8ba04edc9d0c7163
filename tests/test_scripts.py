"""Benchmarks and examples run in their smoke modes (tiny budgets) and print what they promise."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> str:
    out = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_sim_throughput_smoke():
    text = _run("benchmarks/sim_throughput.py", "--smoke")
    ratio = float(re.search(r"ratio sim/RNG :\s+([0-9.]+)", text).group(1))
    assert ratio > 0  # a ratio was measured; its value is the benchmark's business (timings are not tested)
    assert "M path-steps/s" in text and "linear fills, binomial prices" in text


def test_exact_solver_smoke():
    text = _run("benchmarks/exact_solver.py", "--smoke")
    err = float(re.search(r"stepping vs expm = ([0-9.e+-]+)", text).group(1))
    assert err < 1e-9  # two independent matrix exponentials agree


@pytest.mark.parametrize("flag", [[], ["--markdown"]])
def test_reproduce_as2008_small(flag):
    text = _run("examples/reproduce_as2008.py", "--paths", "300", *flag)
    assert text.count(" inventory |") == 3 and text.count(" symmetric |") == 3  # 3 gammas x 2 strategies
    # the symmetric strategy's exact moments, one line per gamma: profit 68.23 at gamma = 0.1
    assert "exact moments" in text and re.search(r"\b0\.1\b.*68\.23 / 68\.40 / ", text)


def test_solvers_worked_example():
    """The obligation example: the csp policy, simulated, has the LP's value (4 Monte Carlo SEs)."""
    text = _run("benchmarks/solvers.py", "--only", "example")
    m = re.search(r"simulator: value_B ([0-9.]+) \+- ([0-9.]+) \(LP ([0-9.]+)\)", text)
    assert m is not None, text
    mc, se, lp = map(float, m.groups())
    assert abs(mc - lp) < 4 * se


@pytest.mark.ray
def test_tune_scaling_smoke():
    """Tiny budget: both parts run end to end and print their ratios (their values are not tested)."""
    text = _run("benchmarks/tune_scaling.py", "--trials", "2", "--paths", "200", "--trivial", "2",
                "--max-rounds", "1", "--quiet-wait", "0")
    assert re.search(r"speed-up 2 vs 1 CPU: [0-9.]+x", text)
    assert re.search(r"plain Tune function:\s+[0-9.]+ s/trial", text) and "mmray trainable:" in text


def test_continuous_vs_discrete_smoke():
    """The discrete-time optimum beats the continuous-time one in the simulator's own dynamics, and the
    gap grows with dt (exact values, no sampling error: strict inequalities are the claim)."""
    text = _run("examples/continuous_vs_discrete.py", "--smoke")
    rows = re.findall(r"^\| (\d+) \| [^|]+ \| ([0-9.]+) \| ([0-9.]+) \| ([0-9.]+) \| ([0-9.]+) \(", text, re.M)
    assert [r[0] for r in rows] == ["1", "2"]
    gaps = [float(r[4]) for r in rows]
    for _, p, discrete, continuous, gap in rows:
        assert float(discrete) > float(continuous) and float(gap) > 0 and 0 < float(p) < 1
    assert gaps[1] > gaps[0]
