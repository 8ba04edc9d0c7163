"""``mmray backtest --policy DIR`` of an RL policy (the ``mlp`` kind, which carries its env): the optimality
figures of issue 9 in the JSON and results.json, equal to ``OptimalityBenchmark.build(env).evaluate(policy)``
(exact for a (t, q) agent; Monte Carlo on the backtest's --paths/--seed for one with features), the
benchmark reused from ``--benchmark`` or a train run's directory, else built and saved under --out; the
quotes plot; one-line refusals; and a non-RL backtest unchanged, importing neither mmray.envs nor rl_eval."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from mmray import ClosedFormPolicy, MarketParams, ProblemParams, SimConfig, backtest
from mmray.cli import command_parser, main
from mmray.envs import EnvConfig, MLPPolicy
from mmray.tuning.rl_eval import DEFAULT_PATHS, OptimalityBenchmark

# 20 steps of dt = 0.5, Q = 3: the benchmark builds in well under a second
ENV = EnvConfig(problem=ProblemParams(gamma=0.05, T=10.0, q_max=3, objective="B"), dt=0.5)
FIGURES = ("optimality_ratio", "optimality_ratio_se", "gap_closed", "gap_closed_se", "agent_value",
           "reference_value", "baseline_value", "exact_policy_value", "method", "n_paths", "seed")


def _mlp(features: tuple[str, ...] = (), seed: int = 0) -> MLPPolicy:
    """A fixed network with random weights (no training) whose quotes vary with t and q."""
    rng = np.random.default_rng(seed)
    env = ENV.replace(features=features)
    d = env.observation_spec().size
    layers = [(rng.normal(0, 0.8, (8, d)), rng.normal(0, 0.3, 8)), (rng.normal(0, 0.3, (2, 8)), np.zeros(2))]
    return MLPPolicy.from_layers(env, layers)


@pytest.fixture(scope="module")
def bench() -> OptimalityBenchmark:
    return OptimalityBenchmark.build(ENV)


def _json(capsys, argv: list[str]) -> tuple[dict, str]:
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert captured.out.count("\n") == 1  # exactly one JSON object on stdout
    return json.loads(captured.out), captured.err


def _fails(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "error" in line]
    assert len(lines) == 1 and "Traceback" not in err
    return lines[0]


def test_exact_figures_results_json_quotes_and_the_saved_benchmark(tmp_path, capsys):
    """A (t, q) agent: the figures are the exact ones of the env's benchmark, built (said on stderr) and saved
    under --out; a second backtest with --benchmark OUT/benchmark gives the same figures without building."""
    policy = _mlp()
    policy.save(tmp_path / "agent")
    out = tmp_path / "out"
    data, err = _json(capsys, ["backtest", "--policy", str(tmp_path / "agent"), "--paths", "200", "--local",
                               "--json", "--out", str(out)])
    assert "building the optimality benchmark" in err
    fig = data["optimality"]
    direct = OptimalityBenchmark.build(policy.env).evaluate(policy)
    assert {k: fig[k] for k in FIGURES} == {k: v for k, v in direct.to_dict().items() if k in FIGURES}
    assert fig["method"] == "exact" and fig["gap_closed_se"] == 0.0 and fig["optimality_ratio_se"] == 0.0
    assert fig["optimality_ratio"] == pytest.approx(fig["agent_value"] / fig["reference_value"], rel=1e-12)
    assert fig["benchmark"]["source"] == "built" and fig["benchmark"]["dir"] == str(out / "benchmark")
    assert data["n_paths"] == 200 and data["sim"]["dt"] == ENV.dt  # the backtest itself, in the env's model
    assert json.loads((out / "results.json").read_text())["optimality"] == fig
    assert (out / "quotes.png").stat().st_size > 1000 and (out / "benchmark" / "benchmark.json").is_file()

    again, err = _json(capsys, ["backtest", "--policy", str(tmp_path / "agent"), "--paths", "200", "--local",
                                "--json", "--benchmark", str(out / "benchmark")])
    assert "building" not in err
    assert again["optimality"]["benchmark"] == {**fig["benchmark"], "source": "loaded"}
    assert {k: again["optimality"][k] for k in FIGURES} == {k: fig[k] for k in FIGURES}


def test_monte_carlo_figures_on_the_backtest_paths_and_seed(tmp_path, capsys):
    """An agent with features is evaluated by Monte Carlo on --paths/--seed: the figures are the library's on
    those paths, and the agent's value is the backtest's own value_B (the same paths); without --paths the
    figures take the issue's 20,000 paths while the backtest keeps its 10,000."""
    policy = _mlp(features=("mid_return",))
    policy.save(tmp_path / "agent")
    argv = ["backtest", "--policy", str(tmp_path / "agent"), "--local", "--json"]
    data, _ = _json(capsys, [*argv, "--paths", "500", "--seed", "3"])
    fig = data["optimality"]
    direct = OptimalityBenchmark.build(policy.env).evaluate(policy, n_paths=500, seed=3)
    assert {k: fig[k] for k in FIGURES} == {k: v for k, v in direct.to_dict().items() if k in FIGURES}
    assert fig["method"] == "monte_carlo" and (fig["n_paths"], fig["seed"]) == (500, 3) and fig["gap_closed_se"] > 0
    assert fig["agent_value"] == pytest.approx(data["value_B"], rel=1e-12)

    data, _ = _json(capsys, argv)
    assert data["n_paths"] == 10000 and data["optimality"]["n_paths"] == DEFAULT_PATHS == 20000
    assert str(DEFAULT_PATHS) in " ".join(command_parser("backtest").format_help().split())


def test_the_benchmark_of_a_train_run_directory_is_reused(tmp_path, capsys, bench):
    """RUN_DIR/policy with RUN_DIR/benchmark (as `mmray train` leaves them): loaded, not built; one of another
    env there is not used (a warning) and the agent's own is built."""
    run = tmp_path / "run"
    policy = _mlp()
    policy.save(run / "policy")
    bench.save(run / "benchmark")
    data, err = _json(capsys, ["backtest", "--policy", str(run), "--paths", "200", "--local", "--json"])
    assert "building" not in err
    assert data["optimality"]["benchmark"]["source"] == "loaded"
    assert data["optimality"]["benchmark"]["dir"] == str(run / "benchmark")
    assert data["optimality"]["gap_closed"] == bench.evaluate(policy).gap_closed

    other = tmp_path / "other"
    _mlp().save(other / "policy")
    OptimalityBenchmark.build(ENV.replace(problem=ENV.problem.replace(gamma=0.02))).save(other / "benchmark")
    data, err = _json(capsys, ["backtest", "--policy", str(other / "policy"), "--paths", "200", "--local", "--json"])
    assert "warning" in err and "problem.gamma" in err and "building the optimality benchmark" in err
    assert data["optimality"]["benchmark"]["source"] == "built"
    assert data["optimality"]["gap_closed"] == bench.evaluate(policy).gap_closed


def test_refusals_are_one_line_and_write_nothing(tmp_path, capsys):
    _mlp().save(tmp_path / "agent")
    OptimalityBenchmark.build(ENV.replace(problem=ENV.problem.replace(gamma=0.02))).save(tmp_path / "b_other")
    for name, text in (("b_truncated", json.dumps({"env": ENV.to_dict()})), ("b_garbled", "{")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "benchmark.json").write_text(text)
    out = tmp_path / "out"
    base = ["backtest", "--policy", str(tmp_path / "agent"), "--paths", "200", "--local", "--out", str(out)]
    err = _fails(capsys, [*base, "--benchmark", str(tmp_path / "b_other")])
    assert "--benchmark" in err and "built for another env" in err and "problem.gamma 0.02 (the policy's: 0.05)" in err
    assert "no benchmark.json" in _fails(capsys, [*base, "--benchmark", str(tmp_path / "missing")])
    for name in ("b_truncated", "b_garbled"):
        assert "not a readable benchmark" in _fails(capsys, [*base, "--benchmark", str(tmp_path / name)])
    err = _fails(capsys, ["backtest", "--strategy", "constant", "--benchmark", str(tmp_path / "b_other")])
    assert "--benchmark applies to --policy of an RL policy only" in err
    assert not out.exists()


def test_a_non_rl_backtest_is_unchanged_and_imports_no_rl(tmp_path):
    """A closed-form checkpoint: the same numbers as the library's backtest, no figures, no quotes.png, and
    neither mmray.envs nor mmray.tuning.rl_eval imported (a fresh interpreter)."""
    problem = ProblemParams(T=20.0, q_max=3)
    policy = ClosedFormPolicy("constant", MarketParams(), problem, half_spread=3.0)
    policy.save(tmp_path / "const")
    code = (
        "import json, sys\n"
        "from mmray.cli import main\n"
        f"assert main(['backtest', '--policy', {str(tmp_path / 'const')!r}, '--dt', '0.5', '--paths', '300',\n"
        f"             '--local', '--json', '--out', {str(tmp_path / 'out')!r}]) == 0\n"
        "loaded = [m for m in sys.modules if m.startswith(('mmray.envs', 'mmray.tuning.rl'))]\n"
        "assert not loaded, loaded\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    data = json.loads(run.stdout)
    assert "optimality" not in data and "optimality" not in json.loads((tmp_path / "out" / "results.json").read_text())
    assert not (tmp_path / "out" / "quotes.png").exists() and not (tmp_path / "out" / "benchmark").exists()
    direct = backtest(policy, policy.market, problem, SimConfig(dt=0.5, n_paths=300)).metrics
    assert {k: data[k] for k in direct if k in data} == {k: v for k, v in direct.items() if k in data}
