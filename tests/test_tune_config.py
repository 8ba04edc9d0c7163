"""Sweep files, validation errors, seeds and the plain trial function (no Ray)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmray import backtest, make_strategy
from mmray.tune import build_parser, load_requested_spec, main
from mmray.tuning.config import load_spec, spec_from_dict
from mmray.tuning.presets import PRESETS, preset, smoke
from mmray.tuning.seeds import derive_seed, trial_seed
from mmray.tuning.spec import NotAvailableError, SweepConfigError
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
    assert kinds == {"risk-aversion", "hparams", "robustness"}
    algorithms = {load_spec(p).search.algorithm for p in EXAMPLES}
    assert algorithms == {"grid", "random", "optuna"}


@pytest.mark.parametrize("kind", sorted(PRESETS))
def test_presets_and_smoke(kind: str) -> None:
    spec = preset(kind)
    small = smoke(spec)
    assert small.sim.n_paths <= 400 < spec.sim.n_paths
    assert all(len(v) <= 3 for v in small.grid.values())
    assert small.kind == spec.kind and small.name.endswith("-smoke")


def test_default_sweep_is_the_risk_aversion_frontier() -> None:
    spec = preset("risk-aversion")
    assert spec.strategies == ("optimal", "as", "constant")
    assert len(spec.grid["gamma"]) >= 5 and list(spec.grid["gamma"]) == sorted(spec.grid["gamma"])


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
         "expected one of optimal, as, symmetric, constant, inventory, got the string 'greedy'"),
        ("grid:\n    gamma: [0.01, 0.1]\n  search: {metric: profit}", "sweep.search.metric",
         "expected one of sharpe, ce_A"),
        ("grid:\n    gamma: [0.01, 0.1]\n  search: {algorithm: optuna}", "sweep.search.algorithm",
         "a risk-aversion sweep is a grid: expected grid"),
        ("grid:\n    gamma: [0.01, 0.1]\n  sim: {dt: 7.0}", "sweep.sim.dt", "must divide the horizon T=60.0"),
        ("grid:\n    gamma: [0.01, 0.1]\n  market: {sigma: -1}", "sweep.market.sigma",
         "must be a finite number > 0, got -1"),
        ("grid:\n    gamma: [0.01, 0.1]\n  problem: {q_max: 2.5}", "sweep.problem.q_max", "expected an integer"),
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
    ],
)
def test_bad_sweep_files_name_file_field_and_expectation(tmp_path: Path, text: str, path: str, expected: str) -> None:
    body = "sweep:\n  kind: risk-aversion\n  problem: {T: 60, q_max: 10}\n  " + text + "\n"
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


def test_rl_kind_is_not_available_yet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(NotAvailableError, match="not available yet"):
        load_spec(_write(tmp_path, "sweep:\n  kind: rl\n"))
    with pytest.raises(NotAvailableError, match="not available yet"):
        preset("rl")
    assert main(["--sweep", "rl"]) == 2
    assert "sweep kind 'rl' is not available yet" in capsys.readouterr().err


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


def test_asha_rungs_report_growing_path_counts() -> None:
    spec = smoke(preset("hparams"))
    rungs: list[dict] = []
    params = {"strategy": "optimal", "tick": 0.1, "fill_model": "poisson", "q_max": 10, "n_times": 101}
    final = evaluate_trial(spec, params, use_ray=False, on_rung=rungs.append)
    n = spec.sim.n_paths
    assert [r["n_paths_done"] for r in rungs] == [n // 2]
    assert final["n_paths_done"] == n and final["seed"] == rungs[0]["seed"]
    # the merged spread_mean is the path-step-weighted mean over both batches (not lost in the merge)
    from mmray.tuning.seeds import batch_seeds
    from mmray.tuning.trainables import build_policy

    setup = trial_setup(spec, params)
    policy = build_policy(setup)
    batches = [backtest(policy, setup.market, setup.problem, setup.sim.replace(n_paths=size, seed=seed))
               for size, seed in zip((n - n // 2, n // 2), batch_seeds(setup.sim.seed, 2), strict=True)]
    expected = sum(b.info["spread_total"] for b in batches) / sum(b.info["spread_steps"] for b in batches)
    assert final["spread_mean"] == pytest.approx(expected, rel=1e-12)
