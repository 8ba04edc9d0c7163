"""Sweep files, validation errors, seeds and the plain trial function (no Ray)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from mmray import SimConfig, backtest, make_strategy
from mmray.tune import build_parser, load_requested_spec, main
from mmray.tuning.config import load_spec, spec_from_dict
from mmray.tuning.presets import PRESETS, preset, smoke
from mmray.tuning.seeds import derive_seed, trial_seed
from mmray.tuning.spec import SweepConfigError
from mmray.tuning.trainables import evaluate_trial, trial_setup

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples" / "sweeps").glob("*.yaml"))


def _write(tmp_path: Path, text: str, name: str = "sweep.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


GOOD = """
sweep:
  kind: risk-aversion
  problem: {T: 60, q_max: 10}
  sim: {n_paths: 200}
  grid:
    gamma: [0.01, 0.1, 1.0]
"""


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_files_validate_and_round_trip(path: Path) -> None:
    spec = load_spec(path)
    assert spec.source == str(path)
    again = spec_from_dict(json.loads(json.dumps(spec.to_dict())), source=spec.source)
    assert again == spec


def test_examples_cover_every_available_kind() -> None:
    kinds = {load_spec(p).kind for p in EXAMPLES}
    assert kinds == {"risk-aversion", "hparams", "robustness", "rl"}
    algorithms = {load_spec(p).search.algorithm for p in EXAMPLES}
    assert algorithms == {"grid", "random", "optuna"}


@pytest.mark.parametrize("kind", sorted(PRESETS))
def test_presets_and_smoke(kind: str) -> None:
    spec = preset(kind)
    small = smoke(spec)
    if kind == "rl":  # training runs cut to 2 iterations, 2 configurations of 2 seeds
        assert small.rl.train["iterations"] == 2 < spec.rl.train["iterations"] and len(small.rl.seeds) == 2
        assert small.search.num_samples == 2 and small.search.asha is None and small.name.endswith("-smoke")
        return
    assert small.sim.n_paths <= 400 < spec.sim.n_paths
    assert all(len(v) <= 3 for v in small.grid.values())
    assert small.kind == spec.kind and small.name.endswith("-smoke")
    # a cluster sweep's smoke version runs on a laptop: one Monte Carlo bundle per trial
    cluster = load_spec(ROOT / "examples" / "sweeps" / "cluster.yaml")
    assert cluster.resources.mc_workers == 4 and smoke(cluster).resources.mc_workers == 1


def test_default_sweep_is_the_risk_aversion_frontier() -> None:
    spec = preset("risk-aversion")
    # the continuous-time optimum with the simulator's discrete-time optimum beside it
    assert spec.strategies == ("optimal", "discrete_optimal", "as", "constant")
    assert len(spec.grid["gamma"]) >= 5 and list(spec.grid["gamma"]) == sorted(spec.grid["gamma"])
    # ranked by the objective of one reference maker, not by Sharpe (always the edge of the grid)
    assert (spec.search.metric, spec.problem.gamma, spec.search.asha) == ("ce_A", 0.01, None)


def test_market_parameters_are_grid_axes_never_search_targets(tmp_path: Path) -> None:
    """A search over the market finds the easiest market, not the best strategy: refused under random
    and Optuna search, naming the field; a grid axis is allowed (the report ranks within each market)."""
    base = ("sweep:\n  kind: hparams\n  problem: {T: 60, q_max: 10}\n  sim: {n_paths: 200}\n"
            "  search: {algorithm: %s, num_samples: 4}\n")
    for algorithm, section, text, field in (
            ("optuna", "grid", "fill_model: [poisson, linear]", "sweep.grid.fill_model"),
            ("random", "grid", "tick: [0.0, 0.1]", "sweep.grid.tick"),
            ("optuna", "space", "sigma: {low: 0.1, high: 0.5}", "sweep.space.sigma"),
            ("random", "grid", "dt: [0.5, 1.0]", "sweep.grid.dt")):
        file = _write(tmp_path, base % algorithm + f"  {section}:\n    {text}\n    q_max: [5, 10]\n"
                      if section == "grid" else base % algorithm + f"  {section}:\n    {text}\n")
        with pytest.raises(SweepConfigError) as info:
            load_spec(file)
        message = str(info.value)
        assert message.startswith(f"{file}: {field}: "), message
        assert "is a parameter of the simulated market, not of the strategy" in message
        assert "search.algorithm: grid (the report then ranks the trials within each market setting)" in message
    grid = spec_from_dict({"sweep": {"kind": "hparams", "problem": {"T": 60, "q_max": 10},
                                     "grid": {"tick": [0.0, 0.5], "fill_model": ["poisson", "linear"],
                                              "q_max": [5, 10]}}})
    from mmray.tuning.results import group_columns

    assert group_columns(grid) == ["tick", "fill_model"]
    # the built-in hparams sweep and the Optuna example search strategy and solver parameters only
    from mmray.tuning.validate import MARKET_MODEL_PARAMS

    for spec in (preset("hparams"), load_spec(ROOT / "examples" / "sweeps" / "hparams_optuna.yaml")):
        assert spec.search.algorithm == "optuna"
        assert not set(spec.grid) & set(MARKET_MODEL_PARAMS) and not set(spec.space) & set(MARKET_MODEL_PARAMS)
    assert "fill_model" in MARKET_MODEL_PARAMS and "tick" in MARKET_MODEL_PARAMS and "gamma" not in MARKET_MODEL_PARAMS


def test_a_frontier_refuses_asha(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = _write(tmp_path, GOOD + "  search: {asha: {rungs: 2}}\n")
    with pytest.raises(SweepConfigError, match=r"sweep\.search\.asha: a risk-aversion sweep traces a frontier: "
                                               r"every gamma is a point of it, so none may be stopped early"):
        load_spec(file)
    assert main(["--asha", "--num-cpus", "1"]) == 2  # the default sweep with --asha: refused before Ray starts
    assert "--asha: a risk-aversion sweep traces a frontier" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "path", "expected"),
    [
        ("grid:\n    gamma: [0.01, 0.1, abc]", "sweep.grid.gamma[2]", "expected a finite number, got the string 'abc'"),
        ("grid:\n    gamma: [0.01, -0.1]", "sweep.grid.gamma[1]", "ProblemParams.gamma must be a finite number > 0"),
        ("grid:\n    gamma: [0.01, 0.01]", "sweep.grid.gamma[1]", "duplicate value"),
        ("grid:\n    gamma: 0.01", "sweep.grid.gamma", "expected a non-empty list"),
        ("grid:\n    gama: [0.01, 0.1]", "sweep.grid.gama", "unknown parameter (did you mean 'gamma'?)"),
        ("grid:\n    gamma: [0.01, 0.1]\n  serach: {metric: sharpe}", "sweep.serach",
         "unknown key (did you mean 'search'?)"),
        ("grid:\n    gamma: [0.01, 0.1]\n  strategies: [optimal, as, greedy]", "sweep.strategies[2]",
         "expected one of optimal, as, symmetric, constant, inventory, discrete_optimal, got the string 'greedy'"),
        ("grid:\n    gamma: [0.01, 0.1]\n  search: {metric: profit}", "sweep.search.metric",
         "expected one of sharpe, ce_A"),
        ("grid:\n    gamma: [0.01, 0.1]\n  search: {algorithm: optuna}", "sweep.search.algorithm",
         "a risk-aversion sweep is a grid: expected grid"),
        ("grid:\n    gamma: [0.01, 0.1]\n  sim: {dt: 7.0}", "sweep.sim.dt", "must divide the horizon T=60.0"),
        ("grid:\n    gamma: [0.01, 0.1]\n  market: {sigma: -1}", "sweep.market.sigma",
         "must be a finite number > 0, got -1"),
        ("grid:\n    gamma: [0.01, 0.1]\n  problem: {T: 60, q_max: 2.5}", "sweep.problem.q_max", "expected an integer"),
        ("grid:\n    gamma: [0.01, 0.1]\n  resources: {cpus_per_trial: 0}", "sweep.resources.cpus_per_trial",
         "expected a number > 0"),
        ("grid:\n    gamma: [0.01, 0.1]\n  failure: {max_failures: -1}", "sweep.failure.max_failures",
         "expected an integer >= 0"),
        ("grid:\n    gamma: [0.01, 0.1]\n    method: [exact, magic]", "sweep.grid.method[1]",
         "expected one of exact"),
        ("grid:\n    gamma: [0.01, 0.1]\n  space: {q_max: {low: 2, high: 9}}", "sweep.space.q_max",
         "ranges need search.algorithm random or optuna"),
        ("grid: {}", "sweep.grid.gamma", "missing: a risk-aversion sweep needs a list of gamma values"),
        ("grid:\n    gamma: [0.01, 0.1]\n  solver: {method: pi, options: {n_levelz: 9}}",
         "sweep.solver.options.n_levelz", "solver 'pi' does not take option 'n_levelz'; it takes horizon"),
        ("grid:\n    gamma: [0.01, 0.1]\n    solver.scheme: [cn, implicit]", "sweep.grid.solver.scheme",
         "solver 'exact' does not take option 'scheme'"),
        ("grid:\n    gamma: [0.01, 0.1]\n    method: [fd, pi]\n  solver: {options: {scheme: cn}}",
         "sweep.solver.options.scheme", "solver 'pi' does not take option 'scheme'"),
        ("grid:\n    gamma: [0.01, 0.1]\n  solver: {method: csp, options: {constraints: {max_spred: 8}}}",
         "sweep.solver.options.constraints.max_spred", "unknown constraint 'max_spred'; expected one of max_spread"),
        ("grid:\n    gamma: [0.01, 0.1]\n  solver: {method: csp, options: {constraints: {max_spread: -1}}}",
         "sweep.solver.options.constraints", "Constraints.max_spread must be a finite number > 0, got -1"),
        ("grid:\n    gamma: [0.01, 0.1]\n  solver: {method: fd, options: {constraints: {max_spread: 8}}}",
         "sweep.solver.options.constraints.max_spread", "constraints need solver method csp (or pi), not fd"),
        # every grid value is checked by building the trial's parameter objects and solver options
        ("grid:\n    gamma: [0.01, 0.1]\n    dt: [1.0, 7.0]", "sweep.grid.dt[1]",
         "value 7.0: SimConfig.dt=7.0 must divide the horizon T=60.0 into a whole number of steps"),
        ("grid:\n    gamma: [0.01, 0.1]\n    solver.scheme: [cn, bogus]\n  solver: {method: fd}",
         "sweep.grid.solver.scheme[1]", "value 'bogus': fd option scheme must be one of explicit, implicit, cn"),
        ("grid:\n    gamma: [0.01, 0.1]\n    q_max: [10, 100000]", "sweep.grid.q_max[1]",
         "value 100000: ProblemParams.q_max=100000 with trade size 1 gives 200001 inventory levels; strategy "
         "'optimal' is limited to 2001"),
        ("grid:\n    gamma: [0.01, 0.1]\n    solver.n_levels: [9, 0]\n  solver: {method: pi, options: {tick: 0.1}}",
         "sweep.grid.solver.n_levels[1]", "option n_levels must be an integer >= 1, got 0"),
        ("grid:\n    gamma: [0.01, 0.1]\n    solver.horizon: [finite, average]\n  solver: {method: pi, options: "
         "{tick: 0.1}}", "sweep.grid.solver.horizon[1]", "value 'average': pi horizon='average' needs objective B"),
        ("grid:\n    gamma: [0.01, 0.1]\n    q0: [0.0, 11.0]", "sweep.grid.q0[1]",
         "value 11.0: SimConfig.q0=11.0 is outside the inventory bound [-10, 10]"),
        ("grid:\n    gamma: [0.01, 0.1]\n    trade_size: [1.0, 3.0]", "sweep.grid.trade_size[1]",
         "value 3.0: ProblemParams.q_max=10 must be a multiple of MarketParams.trade_size=3.0"),
        ("grid:\n    gamma: [0.01, 0.1]\n    half_spread: [1.0, 2.0]\n  strategies: [optimal, as]",
         "sweep.grid.half_spread", "half_spread applies to strategy constant or inventory only, and the sweep's "
         "strategies are optimal, as: every value would run the same trials"),
        ("grid:\n    gamma: [0.01, 0.1]\n    half_spread: [1.0, -2.0]\n  strategies: [optimal, constant]",
         "sweep.grid.half_spread[1]", "value -2.0: ClosedFormPolicy.half_spread must be a finite number > 0"),
        ("grid:\n    gamma: [0.01, 0.1]\n    n_times: [11, 101]\n  solver: {method: fd}", "sweep.grid.n_times",
         "n_times is the time grid of the exact solver, not of fd"),
        # values that are valid one by one but not together
        ("grid:\n    gamma: [0.01, 0.1]\n    T: [60, 70]\n    dt: [1.0, 6.0]", "sweep.grid",
         "the combination gamma=0.01 (sweep.grid.gamma[0]), T=70.0 (sweep.grid.T[1]), dt=6.0 (sweep.grid.dt[1]) is "
         "invalid: SimConfig.dt=6.0 must divide the horizon T=70.0"),
        # the failure-injection hook and the loader
        ("grid:\n    gamma: [0.01, 0.1]\n  failure: {inject: 5}", "sweep.failure.inject",
         "expected a list of faults, e.g. [{match: {strategy: optimal}, times: 1, how: raise}]; got 5"),
        ("grid:\n    gamma: [0.01, 0.1]\n  failure: {inject: {match: {strategy: optimal}}}", "sweep.failure.inject",
         "got a single mapping (put it in a list: inject: [{match: ...}])"),
        ("grid:\n    gamma: [0.01, 0.1]\n  search: {asha: {rungs: 2}}\n  sim: {n_paths: 4000, chunk_size: 2000}",
         "sweep.search.asha", "a risk-aversion sweep traces a frontier: every gamma is a point of it"),
    ],
)
def test_bad_sweep_files_name_file_field_and_expectation(tmp_path: Path, text: str, path: str, expected: str) -> None:
    problem = "" if "\n  problem:" in text else "  problem: {T: 60, q_max: 10}\n"
    body = "sweep:\n  kind: risk-aversion\n" + problem + "  " + text + "\n"
    file = _write(tmp_path, body)
    with pytest.raises(SweepConfigError) as info:
        load_spec(file)
    message = str(info.value)
    assert message.startswith(f"{file}: {path}: "), message
    assert expected in message, message


def test_hparams_space_errors(tmp_path: Path) -> None:
    base = "sweep:\n  kind: hparams\n  search: {algorithm: random, num_samples: 3}\n  space:\n"
    cases = {
        "    q_max: {low: 9, high: 2}": ("sweep.space.q_max", "expected low < high"),
        "    gamma: {low: 0, high: 1, log: true}": ("sweep.space.gamma.low", "a log range needs low > 0"),
        "    gamma: {low: 0.1}": ("sweep.space.gamma.high", "missing"),
        "    fill_model: {low: 1, high: 2}": ("sweep.space.fill_model", "a string parameter cannot be a range"),
        "    q_max: {low: 2.5, high: 9}": ("sweep.space.q_max.low", "expected an integer"),
    }
    for i, (line, (path, expected)) in enumerate(cases.items()):
        file = _write(tmp_path, base + line + "\n", f"s{i}.yaml")
        with pytest.raises(SweepConfigError) as info:
            load_spec(file)
        assert str(info.value).startswith(f"{file}: {path}: ") and expected in str(info.value), str(info.value)


def test_syntax_errors_give_line_and_column(tmp_path: Path) -> None:
    bad_yaml = _write(tmp_path, "sweep:\n  kind: hparams\n  grid: {gamma: [0.1, 0.2}\n")
    with pytest.raises(SweepConfigError, match=r"sweep\.yaml: line 3 column \d+: invalid YAML"):
        load_spec(bad_yaml)
    bad_json = _write(tmp_path, '{"sweep": {"kind": "hparams",}}', "sweep.json")
    with pytest.raises(SweepConfigError, match=r"sweep\.json: line 1 column \d+: invalid JSON"):
        load_spec(bad_json)
    with pytest.raises(SweepConfigError, match="no such sweep file"):
        load_spec(tmp_path / "missing.yaml")
    with pytest.raises(SweepConfigError, match="empty file"):
        load_spec(_write(tmp_path, "", "empty.yaml"))
    with pytest.raises(SweepConfigError, match=r"sweep: missing: a sweep file holds one top-level mapping 'sweep'"):
        load_spec(_write(tmp_path, "kind: hparams\n", "flat.yaml"))


def test_json_files_and_numeric_strings(tmp_path: Path) -> None:
    doc = {"sweep": {"kind": "risk-aversion", "problem": {"T": 60, "q_max": 10}, "grid": {"gamma": [0.01, 0.1]}}}
    spec = load_spec(_write(tmp_path, json.dumps(doc), "s.json"))
    assert spec.grid["gamma"] == (0.01, 0.1)
    # YAML 1.1 reads 1e-3 as a string; numeric strings are accepted for numeric fields
    spec = load_spec(_write(tmp_path, GOOD.replace("0.01, 0.1, 1.0", "1e-3, 1e-2")))
    assert spec.grid["gamma"] == (0.001, 0.01)


def test_rl_kind_is_a_built_in_sweep() -> None:
    """``--sweep rl`` (details and its validation errors: tests/test_rl_sweep.py)."""
    spec = load_requested_spec(build_parser().parse_args(["--sweep", "rl"]))
    assert spec.kind == "rl" and spec.rl is not None and len(spec.rl.seeds) >= 2
    assert spec.search.metric == "gap_closed" and spec.resources.cpus_per_trial == 1.0


def test_cli_reports_bad_file_without_starting_ray(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = _write(tmp_path, GOOD.replace("1.0]", "-1.0]"))
    assert main(["--config", str(file), "--storage", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    expected = f"{file}: sweep.grid.gamma[2]: ProblemParams.gamma must be a finite number > 0, got -1.0"
    assert f"mmray tune: error: {expected}" in err
    assert not (tmp_path / "runs").exists()
    assert main(["--config", str(tmp_path / "nope.yaml")]) == 2
    assert "no such sweep file" in capsys.readouterr().err


def test_command_line_metric_sets_its_direction() -> None:
    # --metric pnl_std with a search algorithm must minimise, whatever mode the preset had
    args = build_parser().parse_args(["--sweep", "hparams", "--metric", "pnl_std", "--search", "random"])
    spec = load_requested_spec(args)
    assert (spec.search.metric, spec.search.mode, spec.search.algorithm) == ("pnl_std", "min", "random")
    args = build_parser().parse_args(["--sweep", "hparams", "--metric", "sharpe"])
    assert load_requested_spec(args).search.mode == "max"


def test_resume_refuses_flags_that_would_redefine_the_sweep(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--resume", str(tmp_path), "--n-paths", "10", "--metric", "sharpe"]) == 2
    err = capsys.readouterr().err
    assert "--resume continues the sweep as it was defined; it does not take --metric, --n-paths" in err


def test_trial_status_compares_with_the_trial_own_path_count() -> None:
    # a swept n_paths: a 500-path trial that ran all its paths is "ok", not "stopped" (base is 1000)
    from mmray.tuning.results import TrialRecord, results_table

    spec = spec_from_dict({"sweep": {"kind": "hparams", "problem": {"T": 60, "q_max": 10},
                                     "sim": {"n_paths": 1000}, "grid": {"n_paths": [500, 1000, 2000]}}})
    records = [TrialRecord({"strategy": "optimal", "n_paths": n}, {"n_paths_done": done, "seed": 1}, None, f"t{n}", "")
               for n, done in ((500, 500), (1000, 1000), (2000, 1000))]
    table, _ = results_table(spec, records)
    assert table.set_index("n_paths")["status"].to_dict() == {500: "ok", 1000: "ok", 2000: "stopped"}


def test_trial_seeds_derive_from_the_sweep_seed() -> None:
    a = {"strategy": "optimal", "gamma": 0.1}
    b = {"strategy": "as", "gamma": 0.1}
    assert trial_seed(3, a, True) == trial_seed(3, b, True) == derive_seed(3, 0)
    assert trial_seed(3, a, False) != trial_seed(3, b, False)
    assert trial_seed(3, a, False) == trial_seed(3, dict(reversed(list(a.items()))), False)
    assert trial_seed(3, a, True) != trial_seed(4, a, True)
    assert 0 <= derive_seed(3, 0) < 2**63


def test_plain_trial_is_deterministic_and_robustness_nominal_loss_is_zero() -> None:
    spec = smoke(preset("robustness"))
    nominal = {"strategy": "optimal", "scenario": dict.fromkeys(("sigma", "A"), 1.0)}
    out = evaluate_trial(spec, nominal, use_ray=False)
    assert out["loss"] == 0.0 and out["loss_se"] == 0.0
    assert out["ce_A"] == out["truth_ce_A"]
    off = evaluate_trial(spec, {"strategy": "as", "scenario": {"sigma": 2.0, "A": 1.0}}, use_ray=False)
    assert trial_setup(spec, {"strategy": "as", "scenario": {"sigma": 2.0, "A": 1.0}}).true_market.sigma == 0.6
    assert off == evaluate_trial(spec, {"strategy": "as", "scenario": {"sigma": 2.0, "A": 1.0}}, use_ray=False)
    assert list(off)[:3] == ["loss", "loss_rel", "ce_A"]
    # off-nominal: the loss is (optimum of the true market) - (policy built for the nominal one), both
    # backtested on the true market with the same seed; recomputed here with the plain public API
    setup = trial_setup(spec, {"strategy": "as", "scenario": {"sigma": 2.0, "A": 1.0}})
    true, pr, sim = setup.simulated_market, setup.problem, setup.sim
    truth = backtest(make_strategy("optimal", true, pr), true, pr, sim).metrics["ce_A"]
    value = backtest(make_strategy("as", setup.market, pr), true, pr, sim).metrics["ce_A"]
    assert (off["truth_ce_A"], off["ce_A"]) == (truth, value)
    assert off["loss"] == pytest.approx(truth - value, rel=1e-12) and off["loss_se"] > 0


def test_asha_rungs_are_chunk_groups_of_one_plain_backtest() -> None:
    """ASHA rungs simulate the chunks of the trial's plain backtest group by group: after the last
    rung the metrics are exactly ``backtest(policy, market, problem, setup.sim)`` (what the
    exported policy's ``mmray backtest`` command reruns), after the first the first group's."""
    from mmray.tuning.trainables import build_policy, rung_plan

    spec = smoke(preset("hparams"))
    rungs: list[dict] = []
    params = {"strategy": "optimal", "tick": 0.1, "fill_model": "poisson", "q_max": 10, "n_times": 101}
    final = evaluate_trial(spec, params, use_ray=False, on_rung=rungs.append)
    n = spec.sim.n_paths
    assert [r["n_paths_done"] for r in rungs] == [n // 2]
    assert final["n_paths_done"] == n and final["seed"] == rungs[0]["seed"]
    setup = trial_setup(spec, params)
    policy = build_policy(setup)
    whole = backtest(policy, setup.market, setup.problem, setup.sim).metrics
    assert {k: final[k] for k in whole} == whole  # bit for bit, spread_mean included
    first = backtest(policy, setup.market, setup.problem, setup.sim.replace(n_paths=n // 2)).metrics
    assert {k: rungs[0][k] for k in first} == first  # the first chunk group is a prefix of the same paths
    groups = rung_plan(SimConfig(n_paths=10, chunk_size=3), 3)  # 4 chunks in 3 rungs
    assert [[size for size, _ in g] for g in groups] == [[3], [3], [3, 1]]


def test_duplicate_keys_are_errors(tmp_path: Path) -> None:
    text = "sweep:\n  kind: risk-aversion\n  grid:\n    gamma: [0.01, 0.1]\n    gamma: [0.5, 1.0]\n"
    with pytest.raises(SweepConfigError, match=r"sweep\.yaml: line 5 column 5: invalid YAML: duplicate key "
                                               r"'gamma' \(first given on line 4\)"):
        load_spec(_write(tmp_path, text))
    doc = '{"sweep": {"kind": "risk-aversion", "grid": {"gamma": [0.01, 0.1]}, "kind": "hparams"}}'
    with pytest.raises(SweepConfigError, match=r"s\.json: invalid JSON: duplicate key 'kind' in one object"):
        load_spec(_write(tmp_path, doc, "s.json"))
    # a key merged in with '<<' may be overridden: not a duplicate
    merged = load_spec(_write(tmp_path, GOOD.replace("sim: {n_paths: 200}", "sim: {<<: {n_paths: 100}, n_paths: 200}"),
                              "m.yaml"))
    assert merged.sim.n_paths == 200


def test_space_checks(tmp_path: Path) -> None:
    """Range keys name solver options the methods take; ranges whose samples cannot make a valid
    trial are refused; bounds are checked as trials."""
    base = ("sweep:\n  kind: hparams\n  problem: {T: 60, q_max: 10, objective: B}\n"
            "  search: {algorithm: random, num_samples: 3}\n")
    cases = {
        "  solver: {method: pi, options: {tick: 0.1}}\n  space:\n    solver.n_levelz: {low: 5, high: 9, int: true}":
            ("sweep.space.solver.n_levelz", "solver 'pi' does not take option 'n_levelz'"),
        "  solver: {method: csp, options: {tick: 0.1}}\n  space:\n    solver.constraints.max_spred: {low: 1, high: 8}":
            ("sweep.space.solver.constraints.max_spred", "unknown constraint 'max_spred'"),
        "  solver: {method: pi, options: {tick: 0.1}}\n  space:\n    solver.n_levels: {low: 5, high: 9}":
            ("sweep.space.solver.n_levels.low", "option n_levels must be an integer >= 1, got 5.0"),
        "  space:\n    dt: {low: 0.5, high: 2}": ("sweep.space.dt", "dt is a parameter of the simulated market"),
        "  solver: {method: pi, options: {tick: 0.1}}\n  space:\n    solver.dt: {low: 0.5, high: 2}":
            ("sweep.space.solver.dt", "solver.dt must divide the horizon T"),
        "  space:\n    T: {low: 30, high: 90}": ("sweep.space.T", "a sampled T must be a whole number of time steps"),
        "  market: {trade_size: 2}\n  problem: {T: 60, q_max: 10}\n  space:\n    q_max: {low: 4, high: 20}":
            ("sweep.space.q_max", "a sampled q_max must be a multiple of the trade size (market.trade_size=2.0"),
        "  space:\n    q_max: {low: 4, high: 5000}": ("sweep.space.q_max.high", "value 5000: ProblemParams.q_max=5000"),
        "  space:\n    half_spread: {low: 1, high: 4}": ("sweep.space.half_spread", "applies to strategy constant"),
    }
    for i, (lines, (path, expected)) in enumerate(cases.items()):
        text = base + lines + "\n"
        if "\n  problem:" in lines:
            text = text.replace("  problem: {T: 60, q_max: 10, objective: B}\n", "", 1)
        file = _write(tmp_path, text, f"s{i}.yaml")
        with pytest.raises(SweepConfigError) as info:
            load_spec(file)
        assert str(info.value).startswith(f"{file}: {path}: ") and expected in str(info.value), str(info.value)
    ok = load_spec(_write(tmp_path, base + "  space:\n    T: {low: 30, high: 90, int: true}\n", "ok.yaml"))
    assert ok.space["T"].integer


def test_robustness_refuses_a_metric_the_optimum_does_not_maximise(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    base = "sweep:\n  kind: robustness\n  problem: {T: 60, q_max: 10, objective: A}\n"
    with pytest.raises(SweepConfigError, match=r"sweep\.search\.metric: a robustness sweep's loss is measured "
                                               r"against the optimal policy of the true market, which maximises "
                                               r"ce_A \(objective A\); expected ce_A, got 'sharpe'"):
        load_spec(_write(tmp_path, base + "  search: {metric: sharpe}\n"))
    spec = load_spec(_write(tmp_path, base.replace("objective: A", "objective: B"), "b.yaml"))
    assert spec.search.metric == "value_B"
    with pytest.raises(SweepConfigError, match=r"sweep\.perturb: expected at least one of sigma, A, k"):
        load_spec(_write(tmp_path, base + "  perturb: {}\n", "p.yaml"))
    assert main(["--sweep", "robustness", "--metric", "sharpe"]) == 2
    assert "mmray tune: error: --metric sharpe: a robustness sweep's loss" in capsys.readouterr().err


def test_command_line_errors_name_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    import ray

    assert main(["--search", "optuna"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mmray tune: error: --search optuna: a risk-aversion sweep is a grid: expected grid "
                          "(sweep field sweep.search.algorithm of <builtin risk-aversion>)"), err
    # the error is in another field (the ranges), the flag that caused it is still named
    assert main(["--sweep", "hparams", "--search", "grid", "--num-samples", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mmray tune: error: --search grid: ranges need search.algorithm random or optuna"), err
    assert main(["--smoke", "--n-paths", "0"]) == 2
    assert "mmray tune: error: --n-paths 0: expected an integer >= 1, got 0" in capsys.readouterr().err
    # --asha picks rungs that the chunks allow (smoke: 2 chunks)
    spec = load_requested_spec(build_parser().parse_args(["--sweep", "hparams", "--smoke", "--asha"]))
    assert spec.search.asha is not None and spec.search.asha.rungs == 2
    with pytest.raises(SweepConfigError, match="expected at most 2 rungs, got 4: each rung is a group of whole Monte "
                                               "Carlo chunks"):
        spec_from_dict({"sweep": {"kind": "hparams", "problem": {"T": 60, "q_max": 10},
                                  "sim": {"n_paths": 4000, "chunk_size": 2000}, "grid": {"q_max": [5, 10]},
                                  "search": {"asha": {"rungs": 4}}}})
    assert not ray.is_initialized()


def test_resume_checks_the_run_directory_before_starting_ray(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    import ray

    assert main(["--resume", str(tmp_path / "nope")]) == 2
    assert "nope: no such run directory" in capsys.readouterr().err
    assert main(["--resume", str(tmp_path)]) == 2
    assert "sweep.json: missing; --resume needs a run directory created by mmray.tune" in capsys.readouterr().err
    assert not ray.is_initialized()


def test_results_of_trials_that_never_reported() -> None:
    """An errored trial's seed is the one it ran with; an interrupted sweep's unfinished trials are
    'unfinished', not errors with an empty message."""
    from mmray.tuning.results import TrialRecord, pending_trials, results_table

    spec = spec_from_dict({"sweep": {"kind": "risk-aversion", "common_random_numbers": False,
                                     "problem": {"T": 60, "q_max": 10}, "grid": {"gamma": [0.01, 0.1]}}})
    cfg = {"strategy": "as", "gamma": 0.1}
    records = [TrialRecord(cfg, {}, "RuntimeError: boom", "t1", "", "ERROR"),
               TrialRecord({"strategy": "as", "gamma": 0.01}, {}, None, "t2", "", "PENDING")]
    table, _ = results_table(spec, records)
    rows = table.set_index("gamma")
    assert rows.loc[0.1, "status"] == "error" and rows.loc[0.1, "error"] == "RuntimeError: boom"
    assert rows.loc[0.1, "seed"] == trial_seed(spec.seed, cfg, False) == trial_setup(spec, cfg).sim.seed
    assert rows.loc[0.01, "status"] == "unfinished" and rows.loc[0.01, "error"] == ""
    assert pending_trials(table) == 1
    assert pending_trials(table, n_expected=6) == 5  # trials an interrupted sweep never created count too
    assert pending_trials(results_table(spec, records[:1])[0], n_expected=1) == 0


def test_best_policy_carries_the_trial_sim_config_and_the_report_its_command(tmp_path: Path) -> None:
    """Without Ray: records from the plain trial function, then the artefacts."""
    from mmray import load_policy
    from mmray.tuning.results import TrialRecord, write_artefacts

    spec = spec_from_dict({"sweep": {
        "kind": "hparams", "problem": {"T": 60, "q_max": 10}, "strategies": ["optimal", "as"],
        "sim": {"n_paths": 300, "chunk_size": 100, "dt": 0.5, "fill_model": "linear", "price_model": "binomial"},
        "grid": {"gamma": [0.01, 0.1]}, "common_random_numbers": False, "seed": 3}}, source="<test>")
    configs = [{"strategy": s, "gamma": g} for s in spec.strategies for g in spec.grid["gamma"]]
    records = [TrialRecord(c, {**evaluate_trial(spec, c, use_ray=False), "attempt": 1}, None, f"t{i}", "")
               for i, c in enumerate(configs)]
    art = write_artefacts(spec, records, tmp_path / "run")
    row = art.table.iloc[art.best]
    policy = load_policy(tmp_path / "run" / "best_policy")
    config = {"strategy": row["strategy"], "gamma": row["gamma"]}
    sim = trial_setup(spec, config).sim
    assert policy.provenance["sim"] == sim.to_dict() and sim.seed == int(row["seed"])
    assert (sim.dt, sim.fill_model, sim.price_model, sim.n_paths) == (0.5, "linear", "binomial", 300)
    command = (f"mmray backtest --policy {tmp_path / 'run' / 'best_policy'} --paths 300 --seed {sim.seed} --dt 0.5 "
               "--chunk-size 100 --price-model binomial --fill-model linear --q0 0.0")
    assert art.reproduce == [command]
    assert command in (tmp_path / "run" / "report.md").read_text()
    # the command's simulation is the trial's: its numbers are the row's
    again = backtest(policy, policy.market, policy.problem, SimConfig.from_dict(policy.provenance["sim"])).metrics
    assert again["sharpe"] == row["sharpe"]
    # a remote run directory: copy first (load_policy reads local directories only)
    remote = write_artefacts(spec, records, tmp_path / "staging", display_dir="s3://bucket/runs/r")
    assert remote.reproduce[0] == "aws s3 cp --recursive s3://bucket/runs/r/best_policy best_policy"
    assert remote.reproduce[1].startswith("mmray backtest --policy best_policy --paths 300 ")
    report = (tmp_path / "staging" / "report.md").read_text()
    assert "mmray backtest --policy s3://" not in report and remote.reproduce[0] in report


def _artefacts(spec, configs, run_dir: Path):
    """Records from the plain trial function (no Ray), then the artefacts."""
    from mmray.tuning.results import TrialRecord, write_artefacts

    records = [TrialRecord(c, {**evaluate_trial(spec, c, use_ray=False), "attempt": 1}, None, f"t{i}", "")
               for i, c in enumerate(configs)]
    return write_artefacts(spec, records, run_dir)


def test_a_frontier_reports_each_strategy_best_gamma_at_a_reference_maker(tmp_path: Path) -> None:
    """No single best on a frontier: per strategy, the gamma whose policy gives the highest ce_A to a maker
    with the reference gamma (problem.gamma), each policy exported; labels say which optimum is which."""
    from mmray import load_policy
    from mmray.backtest import compute_metrics
    from mmray.tuning.runner import RunSummary

    spec = spec_from_dict({"sweep": {
        "kind": "risk-aversion", "problem": {"T": 60, "q_max": 10, "gamma": 0.05}, "sim": {"n_paths": 300},
        "strategies": ["optimal", "discrete_optimal", "as"], "grid": {"gamma": [0.001, 0.05, 1.0]}}}, source="<f>")
    assert spec.search.metric == "ce_A"  # a frontier is ranked by the objective by default, not by Sharpe
    configs = [{"strategy": s, "gamma": g} for s in spec.strategies for g in spec.grid["gamma"]]
    art = _artefacts(spec, configs, tmp_path / "run")
    df = art.table
    assert art.best is None and art.reproduce == [] and not (tmp_path / "run" / "best_policy").exists()
    # ce_A_ref: each row's paths measured with gamma 0.05, recomputed here from a plain backtest
    row = df[(df["strategy"] == "as") & (df["gamma"] == 1.0)].iloc[0]
    setup = trial_setup(spec, {"strategy": "as", "gamma": 1.0})
    res = backtest(make_strategy("as", setup.market, setup.problem), setup.market, setup.problem, setup.sim)
    ref = compute_metrics(res.per_path, setup.market, setup.problem.replace(gamma=0.05))["ce_A"]
    assert row["ce_A_ref"] == pytest.approx(ref, rel=1e-12) and row["ce_A"] != row["ce_A_ref"]
    assert [p.group for p in art.picks] == [{"strategy": s} for s in spec.strategies]
    for pick in art.picks:
        rows = df[df["strategy"] == pick.group["strategy"]]
        assert pick.row == rows["ce_A_ref"].idxmax()
        policy = load_policy(tmp_path / "run" / "best_policies" / pick.group["strategy"])
        assert policy.provenance["trial"] == int(df.loc[pick.row, "trial"])
        assert policy.provenance["sweep"]["ranked_by"] == "ce_A_ref"
    report = (tmp_path / "run" / "report.md").read_text()
    assert "## Best gamma per strategy" in report and "## Best trial" not in report
    assert "A frontier has no single best: for each strategy, the gamma that maximises ce_A of a maker with the " \
           "reference gamma=0.05 (column ce_A_ref)" in report
    assert "optimal (continuous-time): gamma=" in report and "optimal (discrete-time): gamma=" in report
    assert "| optimal (continuous-time) |" in report  # the table names the continuous-time optimum as such
    summary = RunSummary(spec, str(tmp_path / "run"), df, {k: str(v) for k, v in art.files.items()}, art.best, 1.0,
                         picks=art.picks, pick_reproduce=art.pick_reproduce)
    text = "\n".join(summary.console_lines())
    assert "A frontier has no single best" in text and "Best: trial" not in text
    assert text.count("mmray backtest --policy") == 3 and "# strategy=discrete_optimal" in text
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "run" / "results.csv")[["strategy"]], df[["strategy"]])


def test_a_market_grid_axis_is_ranked_within_each_market(tmp_path: Path) -> None:
    spec = spec_from_dict({"sweep": {
        "kind": "hparams", "problem": {"T": 60, "q_max": 10}, "sim": {"n_paths": 300}, "strategies": ["optimal"],
        "grid": {"q_max": [5, 10], "tick": [0.0, 0.5]}, "search": {"metric": "value_B"}}}, source="<m>")
    configs = [{"strategy": "optimal", "q_max": q, "tick": t} for q in (5, 10) for t in (0.0, 0.5)]
    art = _artefacts(spec, configs, tmp_path / "run")
    df = art.table
    assert art.best is None and [p.group for p in art.picks] == [{"tick": 0.0}, {"tick": 0.5}]
    for pick in art.picks:
        same = df[df["tick"] == pick.group["tick"]]
        assert pick.row == same["value_B"].idxmax()
        assert (tmp_path / "run" / "best_policies" / f"tick={pick.group['tick']:g}" / "policy.json").exists()
    report = (tmp_path / "run" / "report.md").read_text()
    assert "Markets are compared, not chosen (tick is a grid axis): the trial that maximises value_B within each " \
           "market setting" in report


def test_robustness_summary_says_what_best_means(tmp_path: Path) -> None:
    from mmray.tuning.runner import RunSummary

    spec = smoke(preset("robustness"))
    configs = [{"strategy": s, "scenario": sc} for s in spec.strategies for sc in spec.robustness.scenarios()]
    art = _artefacts(spec, configs, tmp_path / "run")
    summary = RunSummary(spec, str(tmp_path / "run"), art.table, {k: str(v) for k, v in art.files.items()},
                         art.best, 1.0, picks=art.picks, pick_reproduce=art.pick_reproduce, reproduce=art.reproduce)
    text = "\n".join(summary.console_lines())
    assert "Most robust strategy: the smallest worst-case loss in ce_A against the policy that is optimal for each " \
           "true market" in text
    worst = art.table.groupby("strategy")["loss"].max()
    from mmray.tuning.trainables import strategy_label

    assert f"  {strategy_label(worst.idxmin())}: worst-case loss" in text
    assert summary.as_json()["best_means"].startswith("Most robust strategy")


def test_reproducibility_is_stated_per_sweep() -> None:
    from mmray.tuning.results import reproducibility

    assert reproducibility(preset("risk-aversion"))[0]
    assert reproducibility(load_spec(ROOT / "examples" / "sweeps" / "hparams_random.yaml"))[0]
    same, why = reproducibility(preset("hparams"))  # Optuna + ASHA, 2 trials at once
    assert not same and "max_concurrent: 1" in why
    assert reproducibility(preset("hparams").replace(search=replace(preset("hparams").search, max_concurrent=1)))[0]


def test_resources_are_checked_against_the_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mmray.tuning.runner import Capacity, _autoscaler_node_types, check_resources

    def spec(**resources: object):
        return spec_from_dict({"sweep": {"kind": "risk-aversion", "problem": {"T": 60, "q_max": 10},
                                         "grid": {"gamma": [0.01, 0.1]}, "resources": resources}}, source="<s>")

    two = Capacity((2.0,))
    check_resources(spec(cpus_per_trial=2.0), two)
    with pytest.raises(SweepConfigError, match=r"<s>: sweep\.resources\.cpus_per_trial=3 \(--cpus-per-trial\): a "
                                               r"trial needs 3 CPUs on one node, but the largest node of this Ray "
                                               r"cluster has 2 \(1 node with 2 CPUs\)"):
        check_resources(spec(cpus_per_trial=3.0), two)
    with pytest.raises(SweepConfigError, match=r"has 1 \(2 nodes with 1, 1 CPUs\)"):
        check_resources(spec(cpus_per_trial=1.5), Capacity((1.0, 1.0)))
    check_resources(spec(mc_ray=True, mc_workers=2), Capacity((1.0, 1.0)))  # bundles may spread over nodes
    with pytest.raises(SweepConfigError, match=r"mc_workers=3 \(--mc-workers\) with mc_ray: each trial reserves 3 "
                                               r"one-CPU bundles .* this Ray cluster has 2 CPUs in all"):
        check_resources(spec(mc_ray=True, mc_workers=3), Capacity((1.0, 1.0)))
    # nodes the autoscaler can add count (clusters/aws.yaml: a 7-CPU head, up to 8 16-CPU workers)
    check_resources(spec(cpus_per_trial=16.0), Capacity((7.0,), ((16.0, 8),)))
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "ray_bootstrap_config.yaml").write_text((ROOT / "clusters" / "aws.yaml").read_text())
    assert _autoscaler_node_types() == ((16.0, 8),)


def test_swept_parameter_types_are_the_dataclass_field_types() -> None:
    """A swept value is read by the type of the field it sets (no table restates them): integral
    floats become integers, ``q_max`` may be null, a string field takes strings only."""
    from typing import get_type_hints

    from mmray.params import ProblemParams, SimConfig
    from mmray.tuning.spec import INTEGER_PARAMS, PARAM_TYPES

    assert PARAM_TYPES["q_max"] == get_type_hints(ProblemParams)["q_max"]
    assert PARAM_TYPES["fill_model"] == get_type_hints(SimConfig)["fill_model"] and "seed" not in PARAM_TYPES
    assert set(INTEGER_PARAMS) == {"q_max", "n_paths", "chunk_size", "n_times"}
    doc = {"kind": "hparams", "problem": {"T": 60, "q_max": 10.0}, "sim": {"n_paths": 200.0},
           "grid": {"n_paths": [100.0, 300]}}
    spec = spec_from_dict({"sweep": doc})
    assert (spec.problem.q_max, spec.sim.n_paths, spec.grid["n_paths"]) == (10, 200, (100, 300))
    assert type(spec.sim.n_paths) is int and all(type(n) is int for n in spec.grid["n_paths"])
    unbounded = spec_from_dict({"sweep": {"kind": "hparams", "strategies": ["as", "symmetric"],
                                          "problem": {"q_max": None}}})
    assert unbounded.problem.q_max is None
    for grid, expected in (({"fill_model": [1]}, "sweep.grid.fill_model[0]: expected a string, got 1"),
                           ({"n_paths": [0]}, "sweep.grid.n_paths[0]: expected an integer >= 1, got 0"),
                           ({"gamma": [True]}, "sweep.grid.gamma[0]: expected a finite number, got true (a boolean)")):
        with pytest.raises(SweepConfigError) as info:
            spec_from_dict({"sweep": {**doc, "grid": grid}}, source="<s>")
        assert str(info.value) == f"<s>: {expected}"
