"""The command line: --json output, checkpoints, plots, errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mmray import MarketParams, ProblemParams, SimConfig, backtest, load_policy, make_strategy
from mmray.cli import main

REQUIRED = ("pnl_mean", "pnl_std", "sharpe", "max_drawdown", "trades_mean", "spread_mean", "q_final_mean",
            "q_final_std")
SMALL = ["--T", "60", "--dt", "0.5", "--paths", "400"]


def _json(capsys, argv):
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1  # exactly one JSON object on stdout
    return json.loads(out)


def test_backtest_json_has_the_metrics(capsys):
    data = _json(capsys, ["backtest", "--strategy", "as", *SMALL, "--json", "--local"])
    for key in REQUIRED:
        assert isinstance(data[key], float), key
    assert data["strategy"] == "as" and data["n_paths"] == 400 and data["sim"]["dt"] == 0.5
    # the same numbers as the library call with the CLI's defaults (GLFT model, seed 0), bit for bit
    market, problem = MarketParams(), ProblemParams(T=60.0)
    direct = backtest(make_strategy("as", market, problem), market, problem, SimConfig(dt=0.5, n_paths=400)).metrics
    assert {k: data[k] for k in REQUIRED} == {k: direct[k] for k in REQUIRED}


def test_backtest_several_strategies_and_plots(capsys, tmp_path):
    data = _json(capsys, ["backtest", "--strategy", "optimal", "--strategy", "constant", *SMALL,
                          "--json", "--out", str(tmp_path)])
    assert set(data["strategies"]) == {"optimal", "constant"}
    assert data["strategies"]["optimal"]["q_final_std"] < data["strategies"]["constant"]["q_final_std"]
    for name in ("results.json", "pnl_distribution.png", "comparison.png", "paths_optimal.png"):
        assert (tmp_path / name).stat().st_size > 1000, name
    assert json.loads((tmp_path / "results.json").read_text())["strategies"].keys() == data["strategies"].keys()


def test_solve_writes_checkpoint_that_backtest_loads(capsys, tmp_path):
    data = _json(capsys, ["solve", "--method", "exact", "--json"])
    q = data["quotes_t0"]["q"]
    assert data["quotes_t0"]["bid"][q.index(0)] == pytest.approx(3.3130, abs=1e-4)  # GLFT check value
    data = _json(capsys, ["solve", "--T", "60", "--json", "--out", str(tmp_path)])
    assert data["quotes_t0"]["bid"][-1] is None  # no bid at q = Q
    assert load_policy(tmp_path / "policy").kind == "table"
    assert (tmp_path / "quotes.png").exists()
    direct = _json(capsys, ["backtest", "--strategy", "optimal", *SMALL, "--json"])
    loaded = _json(capsys, ["backtest", "--policy", str(tmp_path / "policy"), *SMALL, "--json"])
    # same model, same seed, same table (both 1001 time points): the same numbers
    assert {k: loaded[k] for k in REQUIRED} == {k: direct[k] for k in REQUIRED}


def test_unbounded_closed_form_and_simulate(capsys, tmp_path):
    data = _json(capsys, ["backtest", "--strategy", "symmetric", "--q-max", "none", *SMALL, "--json"])
    assert data["problem"]["q_max"] is None
    sim = _json(capsys, ["simulate", "--strategy", "inventory", "--T", "10", "--dt", "0.5", "--paths", "2",
                         "--seed", "4", "--json", "--out", str(tmp_path)])
    assert len(sim["q"]) == 2 and len(sim["t"]) == 21
    assert (tmp_path / "paths.csv").read_text().startswith("path,t,mid,q,pnl")
    # path i of simulate is path i of backtest with the same --paths and --seed
    sim = _json(capsys, ["simulate", "--strategy", "optimal", *SMALL, "--seed", "3", "--json"])
    bt = _json(capsys, ["backtest", "--strategy", "optimal", *SMALL, "--seed", "3", "--json", "--local"])
    assert len(sim["final"]["pnl"]) == 400
    assert sum(sim["final"]["pnl"]) / 400 == pytest.approx(bt["pnl_mean"], rel=1e-12)
    assert sum(sim["final"]["q"]) / 400 == pytest.approx(bt["q_final_mean"], rel=1e-12, abs=1e-12)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["backtest", "--sigma", "-1"], "MarketParams.sigma must be a finite number > 0, got -1.0"),
        (["backtest", "--T", "1", "--dt", "0.3"], "SimConfig.dt=0.3 must divide the horizon T=1.0"),
        (["backtest", "--strategy", "optimal", "--q-max", "none"], "'optimal' needs a bounded inventory"),
        (["backtest", "--q-max", "2.5"], "expected a positive integer or 'none', got '2.5'"),
        (["backtest", "--policy", "/nonexistent/ckpt"], "no such checkpoint directory"),
        (["backtest", "--q-max", "1e400"], "expected a positive integer or 'none', got '1e400'"),
        (["backtest", "--strategy", "as", "--half-spread", "1"], "--half-spread applies to --strategy constant or"),
        (["backtest", "--strategy", "constant", "--skew", "0.1"], "--skew applies to --strategy inventory only"),
        (["solve", "--method", "exact", "--scheme", "cn"], "--scheme does not apply to --method exact"),
        (["solve", "--method", "fd", "--solver-tick", "0.5"], "--solver-tick does not apply to --method fd"),
        (["solve", "--method", "pi", "--formulation", "dw"], "--formulation does not apply to --method pi"),
        (["solve", "--T", "10", "--out", "/proc/mmray-no/such"], "error: /proc/mmray-no: No such file or directory"),
        (["backtest", "--T", "60", "--q0", "50"], "SimConfig.q0=50.0 is outside the inventory bound [-30, 30]"),
        (["simulate", "--T", "60", "--q0", "0.5"], "SimConfig.q0=0.5 must be a multiple of MarketParams.trade_size"),
    ],
)
def test_errors_are_clear(capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_backtest_policy_uses_the_checkpoint_model_unless_flags_override(capsys, tmp_path):
    # exact policy solved for gamma = 0.2, T = 60, Q = 5: its backtest is of that model, not the defaults
    _json(capsys, ["solve", "--gamma", "0.2", "--T", "60", "--q-max", "5", "--out", str(tmp_path / "exact"), "--json"])
    data = _json(capsys, ["backtest", "--policy", str(tmp_path / "exact" / "policy"), "--paths", "200", "--json"])
    assert (data["problem"]["gamma"], data["problem"]["T"], data["problem"]["q_max"]) == (0.2, 60.0, 5)
    assert data["sim"]["dt"] == 0.1  # T / 600
    policy = load_policy(tmp_path / "exact" / "policy")
    direct = backtest(policy, policy.market, policy.problem, SimConfig(dt=0.1, n_paths=200)).metrics
    assert data["pnl_mean"] == direct["pnl_mean"] and data["ce_A"] == direct["ce_A"]  # gamma 0.2 in ce_A
    assert main(["backtest", "--policy", str(tmp_path / "exact" / "policy"), "--gamma", "0.5", "--paths", "200",
                 "--json"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["problem"]["gamma"] == 0.5 and json.loads(out.out)["problem"]["T"] == 60.0
    assert "flags override the checkpoint's model: --gamma 0.5 (checkpoint: 0.2)" in out.err
    # a pi policy plays its own discrete problem: its dt and fill model, and no second tick rounding
    _json(capsys, ["solve", "--method", "pi", "--objective", "B", "--T", "20", "--q-max", "4", "--tick", "0.5",
                   "--n-steps", "40", "--fill-model", "linear", "--out", str(tmp_path / "pi"), "--json"])
    assert main(["backtest", "--policy", str(tmp_path / "pi" / "policy"), "--paths", "200", "--json"]) == 0
    out = capsys.readouterr()
    data = json.loads(out.out)
    assert (data["sim"]["dt"], data["sim"]["fill_model"], data["market"]["tick"]) == (0.5, "linear", 0.0)
    assert "warning" not in out.err  # nothing differs from the problem it was solved on


def test_backtest_policy_takes_the_simulation_settings_saved_with_it(capsys, tmp_path):
    """A checkpoint whose provenance holds ``sim`` (a sweep's SimConfig) is backtested with its dt,
    price and fill models, chunk size and q0 unless flags say otherwise; --paths/--seed are the flags'."""
    market, problem = MarketParams(), ProblemParams(T=60.0, q_max=5)
    saved = SimConfig(dt=0.25, n_paths=300, price_model="binomial", fill_model="linear", seed=9, chunk_size=100,
                      q0=2.0)
    make_strategy("optimal", market, problem).save(tmp_path / "p", provenance={"sim": saved.to_dict()})
    data = _json(capsys, ["backtest", "--policy", str(tmp_path / "p"), "--paths", "300", "--seed", "9", "--local",
                          "--json"])
    assert data["sim"] == saved.to_dict()
    direct = backtest(load_policy(tmp_path / "p"), market, problem, saved).metrics
    assert {k: data[k] for k in REQUIRED} == {k: direct[k] for k in REQUIRED}
    data = _json(capsys, ["backtest", "--policy", str(tmp_path / "p"), "--paths", "300", "--dt", "0.5",
                          "--fill-model", "poisson", "--local", "--json"])
    assert (data["sim"]["dt"], data["sim"]["fill_model"], data["sim"]["price_model"]) == (0.5, "poisson", "binomial")


def test_pi_policy_solved_with_another_intensity_warns_when_backtested(capsys, tmp_path):
    _json(capsys, ["solve", "--method", "pi", "--objective", "B", "--T", "10", "--q-max", "3", "--tick", "0.5",
                   "--n-steps", "20", "--intensity", "power", "--intensity-alpha", "3", "--out", str(tmp_path),
                   "--json"])
    assert main(["backtest", "--policy", str(tmp_path / "policy"), "--paths", "50", "--json"]) == 0
    err = capsys.readouterr().err
    assert "solved with a power intensity, simulated with the market's exponential" in err


def test_every_model_and_simulation_flag_reaches_the_backtest(capsys):
    data = _json(capsys, ["backtest", "--strategy", "constant", "--sigma", "0.4", "--A", "1.1", "--k", "0.4",
                          "--drift", "0.01", "--trade-size", "2", "--tick", "0.1", "--s0", "50", "--gamma", "0.02",
                          "--T", "20", "--q-max", "8", "--objective", "B", "--terminal-penalty", "0.1",
                          "--dt", "0.5", "--paths", "50", "--seed", "3", "--price-model", "binomial",
                          "--fill-model", "linear", "--chunk-size", "25", "--q0", "2", "--local", "--json"])
    assert data["market"] == {"sigma": 0.4, "A": 1.1, "k": 0.4, "drift": 0.01, "trade_size": 2.0, "tick": 0.1,
                              "s0": 50.0}
    assert data["problem"] == {"gamma": 0.02, "T": 20.0, "q_max": 8, "objective": "B", "terminal_penalty": 0.1}
    assert data["sim"] == {"dt": 0.5, "n_paths": 50, "price_model": "binomial", "fill_model": "linear", "seed": 3,
                           "chunk_size": 25, "q0": 2.0}


def test_console_script_and_module_entry_point():
    out = subprocess.run([sys.executable, "-m", "mmray", "backtest", "--strategy", "constant", *SMALL, "--json"],
                         capture_output=True, text=True, check=True)
    assert json.loads(out.stdout)["strategy"] == "constant"


@pytest.mark.ray
def test_embedded_ray_from_a_clean_process_gives_the_local_numbers():
    """`mmray backtest` with several chunks starts its own Ray (fresh process, no Ray settings in the
    environment) and must print exactly the numbers of --local."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    args = [sys.executable, "-m", "mmray", "backtest", "--strategy", "optimal", "--T", "60", "--dt", "0.5",
            "--paths", "3000", "--chunk-size", "1000", "--json"]
    with_ray = subprocess.run([*args, "--workers", "2"], capture_output=True, text=True, env=env, timeout=300)
    assert with_ray.returncode == 0, with_ray.stderr
    local = subprocess.run([*args, "--local"], capture_output=True, text=True, env=env, timeout=300, check=True)
    assert json.loads(with_ray.stdout) == json.loads(local.stdout)
