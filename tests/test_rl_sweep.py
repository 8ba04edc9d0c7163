"""The ``rl`` sweep kind: RLlib PPO under Ray Tune (tuning/rl_sweep.py, docs/tuning.md).

One tiny sweep end to end on 2 CPUs through ``mmray tune`` (2 configurations x 2 seeds, 2 iterations
each, a 30-step env): per-iteration reports, the per-trial and per-configuration tables (mean and SE
over seeds), the best agent exported and loaded by ``mmray.load_policy`` and measured again by
``mmray backtest --policy``; Ray is shut down afterwards. Then the validation errors of ``rl`` sweep
files (no Ray).
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from mmray import load_policy
from mmray.io import atomic_write_json
from mmray.tune import build_parser, load_requested_spec, main
from mmray.tuning.config import load_spec, spec_from_dict
from mmray.tuning.rl import RL_CONFIG_FILE, PPOTrainConfig, config_to_json, read_run_config
from mmray.tuning.rl_sweep import (
    budget_fraction,
    env_config,
    n_trials,
    resource_bundles,
    scheduler,
    trial_config,
)
from mmray.tuning.spec import SweepConfigError

TINY = """\
sweep:
  kind: rl
  name: tiny-rl
  seed: 7
  seeds: 2
  market: {sigma: 0.3, A: 0.9, k: 0.3}
  problem: {gamma: 0.05, T: 15, q_max: 3}
  sim: {dt: 0.5}
  rl: {iterations: 2, hidden: [8, 8], num_envs_per_env_runner: 16, rollout_fragment_length: 30,
       minibatch_size: 240, num_epochs: 1}
  space:
    lr: {low: 1.0e-4, high: 3.0e-3, log: true}
  search: {algorithm: random, num_samples: 2}
  resources: {cpus_per_trial: 1}
  failure: {max_failures: 0}
"""


def _write(tmp_path: Path, text: str, name: str = "rl.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# --------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, str]:
    """The tiny sweep through the CLI entry point (it starts and stops its own Ray on 2 CPUs)."""
    import contextlib
    import io

    tmp = tmp_path_factory.mktemp("rl-sweep")
    sweep = _write(tmp, TINY)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["--config", str(sweep), "--storage", str(tmp / "runs"), "--name", "tiny", "--num-cpus", "2",
                     "--json", "-q"])
    assert code == 0, out.getvalue()[-2000:]
    return tmp / "runs" / "tiny", json.loads(out.getvalue()), str(sweep)


@pytest.mark.ray
def test_rl_sweep_trains_every_configuration_with_each_seed(swept: tuple[Path, dict, str]) -> None:
    import ray

    run, doc, _ = swept
    assert not ray.is_initialized()  # the CLI shut down the Ray it started
    df = pd.read_parquet(run / "results.parquet")
    assert len(df) == 4 == doc["n_trials"] and (df["status"] == "ok").all(), df["error"].tolist()
    # random search draws a configuration once and trains it with each seed (2 configurations x seeds 7, 8)
    assert sorted(df.groupby("config")["seed"].apply(list).tolist()) == [[7, 8], [7, 8]]
    assert df.groupby("config")["lr"].nunique().eq(1).all() and df["lr"].nunique() == 2
    assert df["lr"].between(1e-4, 3e-3).all()
    assert (df["iterations"] == 2).all() and (df["env_steps"] == 2 * 16 * 30).all()
    assert df["best_iteration"].between(1, 2).all() and (df["eval_method"] == "exact").all()
    assert df["gap_closed"].notna().all() and df["optimality_ratio"].between(0, 1.1).all()
    # each iteration was reported to Tune with the metric, the figures, env steps and wall time
    for trial_dir in run.glob("run_trial_*"):
        rows = [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines()]
        assert [r["iterations"] for r in rows] == [1, 2, 2] and rows[-1]["rl_done"] == 1
        assert all(math.isfinite(r["gap_closed"]) and r["env_steps"] > 0 and r["wall_s"] > 0 for r in rows)
        assert rows[0]["budget_fraction"] == 0.5 and rows[-1]["budget_fraction"] == 1.0
        assert rows[1]["gap_closed"] == max(rows[0]["gap_closed"], rows[1]["gap_closed_iter"])  # the best so far


@pytest.mark.ray
def test_configurations_table_holds_the_mean_and_se_over_seeds(swept: tuple[Path, dict, str]) -> None:
    run, _, _ = swept
    df = pd.read_csv(run / "results.csv")
    configs = pd.read_csv(run / "configs.csv")
    assert len(configs) == 2 and (configs["n"] == 2).all() and (configs["n_ok"] == 2).all()
    for _, c in configs.iterrows():
        g = df.loc[df["config"] == c["config"], "gap_closed"]
        assert c["gap_closed_mean"] == pytest.approx(g.mean())
        assert c["gap_closed_se"] == pytest.approx(g.std(ddof=1) / math.sqrt(2))
        assert c["best_gap_closed"] == pytest.approx(g.max())
    assert (df["config_gap_closed_mean"] == df["config"].map(configs.set_index("config")["gap_closed_mean"])).all()
    assert (run / "configs.png").stat().st_size > 0 and "![configs](configs.png)" in (run / "report.md").read_text()


@pytest.mark.ray
def test_best_agent_is_exported_loaded_and_backtested(swept: tuple[Path, dict, str],
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from mmray.envs import MLPPolicy
    from mmray.tuning.rl_eval import OptimalityBenchmark

    run, doc, source = swept
    df = pd.read_parquet(run / "results.parquet")
    configs = pd.read_parquet(run / "configs.parquet")
    best_config = int(configs.loc[configs["gap_closed_mean"].idxmax(), "config"])
    rows = df[df["config"] == best_config]
    best = rows.loc[rows["gap_closed"].idxmax()]
    assert doc["best"]["trial"] == best["trial"] and doc["files"]["best_policy"] == str(run / "best_policy")
    policy = load_policy(run / "best_policy")
    assert isinstance(policy, MLPPolicy) and policy.layer_sizes == (2, 8, 8, 2)
    prov = policy.provenance
    assert prov["sweep"]["kind"] == "rl" and prov["seed"] == best["seed"] and prov["trial"] == best["trial"]
    assert prov["algorithm"] == "PPO (RLlib)" and prov["iteration"] == best["best_iteration"]
    assert prov["params"]["lr"] == best["lr"] and prov["config"]["lr"] == best["lr"]  # the PPO config trained
    # the row's figures are the exact evaluation of the exported agent against the sweep's benchmark
    spec = load_spec(source)
    bench = OptimalityBenchmark.load(run / "benchmark", env_config(spec))
    assert bench.evaluate(policy).gap_closed == pytest.approx(best["gap_closed"], rel=1e-12)
    command = doc["reproduce"][-1]
    assert command.startswith(f"mmray backtest --policy {run / 'best_policy'} --benchmark {run / 'benchmark'}")
    assert command in (run / "report.md").read_text()
    from mmray.cli import main as cli_main

    capsys.readouterr()
    assert cli_main(["backtest", "--policy", str(run / "best_policy"), "--benchmark", str(run / "benchmark"),
                     "--paths", "500", "--seed", "0", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert _find(out, "gap_closed") == pytest.approx(best["gap_closed"], rel=1e-12)  # measured again: the same


def _find(doc: object, key: str) -> object:
    """The first value of ``key`` anywhere in a JSON document."""
    if isinstance(doc, dict):
        if key in doc:
            return doc[key]
        doc = list(doc.values())
    if isinstance(doc, list):
        for item in doc:
            found = _find(item, key)
            if found is not None:
                return found
    return None


# --------------------------------------------------------------------------- the spec, no Ray


def test_rl_spec_round_trips_and_builds_each_trial(tmp_path: Path) -> None:
    spec = load_spec(_write(tmp_path, TINY))
    assert spec.rl.seeds == (7, 8) and spec.resources.reuse_actors is True and spec.search.metric == "gap_closed"
    assert spec_from_dict(json.loads(json.dumps(spec.to_dict())), source=spec.source) == spec
    assert n_trials(spec) == 4
    config = trial_config(spec, {"lr": 1e-3, "seed": 8})
    assert isinstance(config, PPOTrainConfig) and (config.lr, config.seed, config.iterations) == (1e-3, 8, 2)
    assert config.env.problem.objective == "B" and config.env.dt == 0.5 and config.num_env_runners == 0
    assert budget_fraction(config, 1, 480, 3.0) == 0.5
    # RLlib's own resource request: one bundle, the trial's process (env runner and learner live in it)
    assert resource_bundles(spec) == [{"CPU": 1.0}]
    remote = load_spec(_write(tmp_path, TINY.replace("num_epochs: 1}", "num_epochs: 1, num_env_runners: 2}"),
                              "remote.yaml"))
    assert [b["CPU"] for b in resource_bundles(remote)] == [1.0, 1.0, 1.0]
    # lr_end: a linear decay over lr_decay_steps (or the timesteps budget); clip_param reaches RLlib
    decay = replace(config, lr_end=1e-4, lr_decay_steps=960, clip_param=0.15)
    assert decay.lr_schedule == ((0, 1e-3), (960, 1e-4)) and decay.algorithm_config().clip_param == 0.15
    # a trial's config is a PPOTrainConfig: its run directory reads back like any training run's (mmray export)
    atomic_write_json(tmp_path / "run" / RL_CONFIG_FILE, config_to_json(decay))
    assert read_run_config(tmp_path / "run") == decay


def test_trials_that_cannot_be_placed_are_refused_naming_the_field(tmp_path: Path) -> None:
    from mmray.tuning.runner import Capacity, check_resources

    spec = load_spec(_write(tmp_path, TINY))
    check_resources(spec, Capacity((2.0,)))
    with pytest.raises(SweepConfigError, match=r"sweep.resources.cpus_per_trial=3 \(--cpus-per-trial\): an RL "
                       "trial's process"):
        check_resources(spec.replace(resources=replace(spec.resources, cpus_per_trial=3.0)), Capacity((2.0,)))
    remote = load_spec(_write(tmp_path, TINY.replace("num_epochs: 1}", "num_epochs: 1, num_env_runners: 2}"),
                              "remote.yaml"))
    with pytest.raises(SweepConfigError, match=r"sweep.rl: an RL trial reserves 3 CPUs in 3 bundles"):
        check_resources(remote, Capacity((2.0,)))
    check_resources(remote, Capacity((2.0, 2.0)))


def test_asha_compares_trials_at_fractions_of_their_budget(tmp_path: Path) -> None:
    text = TINY.replace("num_samples: 2}", "num_samples: 2, asha: {rungs: 4, grace_period: 1}}")
    sched = scheduler(load_spec(_write(tmp_path, text)))
    assert sched._time_attr == "budget_rungs" and sched._max_t == 4


def test_the_preset_is_small_and_cli_flags_apply() -> None:
    spec = load_requested_spec(build_parser().parse_args(["--sweep", "rl", "--seed", "3", "--metric",
                                                          "optimality_ratio", "--num-samples", "2"]))
    assert spec.rl.seeds == (3, 4) and spec.search.metric == "optimality_ratio" and n_trials(spec) == 4
    assert spec.problem.T / spec.sim.dt <= 60 and spec.rl.train["iterations"] <= 30


BAD = [
    ("rl: {iterations: 2,", "rl: {iterations: 2, minibatchsize: 100,",
     "sweep.rl.minibatchsize: unknown key (did you mean 'minibatch_size'?)"),
    ("rl: {iterations: 2,", "rl: {", "sweep.rl: missing a per-trial budget: set iterations, timesteps or time_budget"),
    ("iterations: 2,", "iterations: 0,",
     "sweep.rl.iterations: PPOTrainConfig.iterations must be an integer >= 1, got 0"),
    ("rl: {iterations: 2,", "rl: {iterations: 2, seed: 3,",
     "sweep.rl.seed: set by the sweep: RLlib seeds are sweep.seeds"),
    ("num_envs_per_env_runner: 16", "num_envs_per_env_runner: 4",
     "sweep.rl.minibatch_size: PPOTrainConfig.minibatch_size must be at most the train batch"),
    ("rl: {iterations: 2,", "rl: {iterations: 2, lr_end: 1.0e-5,", "sweep.rl.lr_end: PPOTrainConfig.lr_end must "
     "be given with a decay length: set lr_decay_steps (or a timesteps budget)"),
    ("rl: {iterations: 2,", "rl: {iterations: 2, activation: sigmoid,", "sweep.rl.activation: "
     "PPOTrainConfig.activation must be one of"),
    ("seeds: 2", "seeds: 0", "sweep.seeds: expected a number of seeds (an integer >= 1) or a list of seeds, got 0"),
    ("seeds: 2", "seeds: [1, 1]", "sweep.seeds[1]: duplicate seed 1"),
    ("seeds: 2", "strategies: [optimal]", "sweep.strategies: not used by kind: rl"),
    ("sim: {dt: 0.5}", "sim: {dt: 0.5, n_paths: 100}", "sweep.sim.n_paths: unknown key; expected one of dt, "
     "fill_model, price_model, q0"),
    ("sim: {dt: 0.5}", "sim: {dt: 0.7}", "sweep.sim.dt: SimConfig.dt=0.7 must divide the horizon"),
    ("problem: {gamma: 0.05", "problem: {objective: A, gamma: 0.05", "sweep.problem.objective: an rl sweep's "
     "agents earn objective B's per-step increments (mmray.envs): expected B, got the string 'A'"),
    ("seeds: 2", "seeds: 2\n  env: {offset_low: 5, offset_high: 1}", "sweep.env.offset_high: EnvConfig.offset_high "
     "must be a finite number > 5"),
    ("seeds: 2", "seeds: 2\n  env: {offsets: 1}", "sweep.env.offsets: unknown key"),
    ("space:", "grid: {gamma: [0.01, 0.1]}\n  space:", "sweep.grid.gamma: an rl sweep trains in one environment"),
    ("space:", "grid: {seed: [1, 2]}\n  space:", "sweep.grid.seed: an rl sweep trains every configuration with each "
     "of sweep.seeds"),
    ("space:", "grid: {lrr: [0.1]}\n  space:", "sweep.grid.lrr: unknown parameter (did you mean 'lr'?)"),
    ("space:", "grid: {lr_end: [1.0e-5]}\n  space:", "sweep.grid.lr_end[0]: value 1e-05: PPOTrainConfig.lr_end "
     "must be given with a decay length"),
    ("space:", "grid: {minibatch_size: [120, 960]}\n  space:", "sweep.grid.minibatch_size: also fixed in "
     "sweep.rl.minibatch_size; give it in one place"),
    ("space:", "grid: {num_epochs: [1.5]}\n  space:", "sweep.grid.num_epochs[0]: expected an integer >= 1, got 1.5"),
    ("lr: {low: 1.0e-4", "lr: {low: -1.0e-4", "sweep.space.lr.low: a log range needs low > 0"),
    ("lr: {low: 1.0e-4, high: 3.0e-3, log: true}", "initial_log_std: {low: -2, high: -1, int: true}",
     "sweep.space.initial_log_std.int: initial_log_std is a real parameter: expected false"),
    ("hidden: [8, 8]", "hidden: [8, 8], lr: 0.001", "sweep.space.lr: also fixed in sweep.rl.lr; give it in one place"),
    ("search: {algorithm: random, num_samples: 2}", "search: {metric: sharpe}", "sweep.search.metric: expected one "
     "of gap_closed, optimality_ratio, agent_value, got the string 'sharpe'"),
    ("search: {algorithm: random, num_samples: 2}", "search: {algorithm: optuna, asha: true}",
     "sweep.search.asha: Optuna's configurations are each trained once per seed"),
    ("resources: {cpus_per_trial: 1}", "resources: {mc_ray: true}", "sweep.resources.mc_ray: unknown key"),
]


@pytest.mark.parametrize(("old", "new", "message"), BAD, ids=[m.split(":")[0] for _, _, m in BAD])
def test_bad_rl_sweep_files_name_the_file_the_field_and_what_was_expected(
        tmp_path: Path, old: str, new: str, message: str) -> None:
    assert old in TINY
    path = _write(tmp_path, TINY.replace(old, new, 1))
    with pytest.raises(SweepConfigError) as info:
        load_spec(path)
    assert str(info.value).startswith(f"{path}: {message}"), str(info.value)


def test_cli_refuses_a_bad_rl_sweep_with_status_2_before_ray_starts(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import ray

    path = _write(tmp_path, TINY.replace("num_epochs: 1}", "num_epochs: 0}"))
    assert main(["--config", str(path), "--storage", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert f"mmray tune: error: {path}: sweep.rl.num_epochs: expected an integer >= 1, got 0" in err
    assert not ray.is_initialized() and not (tmp_path / "runs").exists()
    assert main(["--sweep", "rl", "--n-paths", "100"]) == 2
    assert "--n-paths 100: unknown key" in capsys.readouterr().err
