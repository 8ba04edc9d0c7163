"""``mmray solve --method fd|csp`` end to end through the command line, against independent oracles:
fd with the logistic intensity against a stiff ODE solution of the HJB system built here, csp's
printed constraint report, and a backtest of the saved csp checkpoint against the LP's own value."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.integrate import solve_ivp
from scipy.optimize import brentq
from scipy.special import expit

from mmray.cli import main


def _logistic_hjb_theta0(A: float, alpha: float, beta: float, gamma: float, sigma: float, T: float, Q: int):
    """theta(0, q) and the t=0 quotes of objective B with Lambda(d) = A / (1 + exp(alpha + beta d)), Delta = 1.

    HJB (Guéant 2017, model B): d theta/dt - (gamma sigma^2 / 2) q^2 + 1[q<Q] H(theta(q+1) - theta(q))
    + 1[q>-Q] H(theta(q-1) - theta(q)) = 0, theta(T, q) = 0, with H(p) = max_d Lambda(d) (d + p). The
    maximiser solves the first-order condition (d + p) beta expit(alpha + beta d) = 1 (Lambda'/Lambda =
    -beta expit(alpha + beta d)), found by bracketing (not the Wright-omega closed form of the code);
    the system is integrated backward with Radau at rtol 1e-10."""
    q = np.arange(-Q, Q + 1, dtype=float)

    def best(p: float) -> tuple[float, float]:
        d = brentq(lambda x: (x + p) * beta * expit(alpha + beta * x) - 1.0, -p, -p + 200.0 / beta, xtol=1e-14)
        return d, A * expit(-(alpha + beta * d)) * (d + p)

    def rhs(_t: float, theta: np.ndarray) -> np.ndarray:  # d theta / dt
        out = 0.5 * gamma * sigma**2 * q**2
        for i in range(q.size):
            if i + 1 < q.size:
                out[i] -= best(theta[i + 1] - theta[i])[1]
            if i > 0:
                out[i] -= best(theta[i - 1] - theta[i])[1]
        return out

    sol = solve_ivp(rhs, (T, 0.0), np.zeros(q.size), method="Radau", rtol=1e-10, atol=1e-10)
    theta = sol.y[:, -1]
    bid = [best(theta[i + 1] - theta[i])[0] if i + 1 < q.size else np.nan for i in range(q.size)]
    return theta, np.array(bid)


def test_fd_with_the_logistic_intensity_matches_an_independent_hjb_solution(capsys):
    """fd (Crank-Nicolson, 1000 steps) vs the ODE solution: theta within 1e-6 relative and quotes within
    1e-5 (CN's O(dt^2) error at dt = 0.02 is ~1e-7 here; the ODE tolerance 1e-10)."""
    argv = ["solve", "--method", "fd", "--intensity", "logistic", "--intensity-alpha", "0.5", "--objective", "B",
            "--T", "20", "--q-max", "3", "--gamma", "0.05", "--json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["info"]["intensity"] == {"name": "logistic", "A": 0.9, "alpha": 0.5, "beta": 0.3}
    theta, bid = _logistic_hjb_theta0(0.9, 0.5, 0.3, 0.05, 0.3, 20.0, 3)
    assert out["theta_t0_q0"] == pytest.approx(theta[3], rel=1e-6)
    got = np.array([np.nan if b is None else b for b in out["quotes_t0"]["bid"]])
    np.testing.assert_allclose(got, bid, rtol=0, atol=1e-5)


def test_csp_reports_its_constraints_and_its_checkpoint_backtests_to_the_lp_value(capsys, tmp_path):
    """The console table names each constraint with bound, activity, binding, shadow price and cost;
    the JSON has them too; the saved policy (randomised where the LP randomises) backtests to the
    LP's expected value_B within 4 standard errors (the LP value is exact for its own discrete problem,
    which the checkpoint brings: dt, fill model, tick grid)."""
    out_dir = tmp_path / "csp"
    argv = ["solve", "--method", "csp", "--T", "20", "--q-max", "3", "--objective", "B", "--dt", "1",
            "--solver-tick", "0.5", "--max-spread", "4", "--min-two-sided", "0.95", "--max-terminal-q2", "1",
            "--out", str(out_dir)]
    assert main(argv) == 0
    console = capsys.readouterr().out
    assert "constraints (cost in objective units; binding = 1):" in console
    table = console.split("constraints (cost in objective units; binding = 1):")[1]
    for name in ("max_spread", "min_two_sided", "max_terminal_q2"):
        assert name in table
    for column in ("bound", "activity", "binding", "shadow_price", "cost"):
        assert column in table
    info = json.loads((out_dir / "solution.json").read_text())["info"]
    report = info["constraints"]
    assert set(report) == {"max_spread", "min_two_sided", "max_terminal_q2"}
    assert all({"bound", "binding", "shadow_price"} <= set(c) for c in report.values())
    assert any(c["binding"] for c in report.values())  # the constraints were chosen to bind
    assert main(["backtest", "--policy", str(out_dir), "--paths", "20000", "--seed", "3", "--local", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["sim"]["dt"] == 1.0 and res["market"]["tick"] == 0.0
    assert abs(res["value_B"] - info["objective"]) < 4 * res["value_B_se"], (res["value_B"], info["objective"])
