"""A tiny RLlib PPO run on the native vector env: trains, evaluates the agent against the optimum of its
env every iteration (best agent kept, learning curves written), checkpoints, resumes, exports to the
mlp kind; the exported numpy policy acts as RLlib's module does (parity < 1e-5) and backtests without
torch."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mmray import ProblemParams, SimConfig, backtest, load_policy
from mmray.envs import EnvConfig, MLPPolicy
from mmray.tuning.rl import (
    PPOTrainConfig,
    SACTrainConfig,
    centred,
    config_from_json,
    config_to_json,
    export_policy,
    export_ppo,
    load_rllib_module,
    scaled,
    train,
)
from mmray.tuning.rl_curves import COLUMNS, read_csv
from mmray.tuning.rl_eval import OptimalityBenchmark

pytestmark = pytest.mark.ray

ENV = EnvConfig(problem=ProblemParams(gamma=0.01, T=30.0, q_max=5, objective="B"), dt=0.5)
TINY = PPOTrainConfig(env=ENV, iterations=3, hidden=(16, 16), num_envs_per_env_runner=16,
                      rollout_fragment_length=60, minibatch_size=480, num_epochs=2, seed=3, checkpoint_every=2)


@pytest.fixture(scope="module")
def bench():
    return OptimalityBenchmark.build(ENV)


@pytest.fixture(scope="module")
def run(ray_session, bench, tmp_path_factory):
    import torch

    lines: list[str] = []
    hooked: list[tuple[dict, dict | None]] = []
    threads = torch.get_num_threads()
    res = train(TINY, tmp_path_factory.mktemp("ppo") / "run", benchmark=bench, progress=lines.append,
                on_iteration=lambda row, best: hooked.append((row, best)))
    assert torch.get_num_threads() == threads  # torch_threads=1 during the run only
    # the hook saw each iteration's curve row and the best agent so far, as written to the run directory
    assert [row for row, _ in hooked] == [{k: v for k, v in r.items()} for r in res.history]
    assert all(best is not None and best["iteration"] <= row["iteration"] for row, best in hooked)
    assert hooked[-1][1]["iteration"] == res.best_iteration
    assert [row["iteration"] for row, _ in hooked if row.get("best")][-1] == res.best_iteration
    return res, lines


def _rllib_deterministic_actions(module, obs, action_space):
    """The action RLlib's deterministic policy takes: the action distribution's deterministic sample from
    forward_inference, then unsquash_action (what normalize_actions=True would send; the runners send the
    raw sample and the env clips it to the same offsets, test_the_env_clips_raw_actions_as_rllib_unsquashes)."""
    import torch
    from ray.rllib.utils.spaces.space_utils import unsquash_action

    with torch.no_grad():
        inputs = module.forward_inference({"obs": torch.from_numpy(obs)})["action_dist_inputs"]
        dist = module.get_inference_action_dist_cls().from_logits(inputs).to_deterministic()
        actions = dist.sample().numpy()
    return unsquash_action(actions, action_space)


def test_train_writes_checkpoints_curves_and_the_best_exported_policy(run, bench):
    res, lines = run
    assert res.checkpoint.is_dir() and res.best_checkpoint.is_dir() and (res.out / "rl_config.json").is_file()
    assert res.iterations == 3 and len(res.history) == 3 and res.env_steps == 3 * TINY.train_batch_size
    assert res.stop_reason == "iterations 3" and res.wall_s > 0
    policy = load_policy(res.policy)
    assert isinstance(policy, MLPPolicy) and policy.layer_sizes == (2, 16, 16, 2)
    # the env it trained in: rewards centred and the observed inventory scaled by default
    assert policy.env == scaled(centred(TINY, bench), bench).env
    assert policy.env.inventory_scale == pytest.approx(bench.inventory_rms(), rel=1e-15)
    doc = json.loads((res.policy / "policy.json").read_text())
    assert doc["provenance"]["algorithm"] == "PPO (RLlib)" and doc["provenance"]["seed"] == 3
    assert doc["provenance"]["iteration"] == res.best_iteration
    # the figures reported are the exact evaluation of the exported policy, and the best of the run
    again = bench.evaluate(policy)
    assert again.method == "exact" and again == res.figures
    evaluated = [r for r in res.history if np.isfinite(r["agent_value"])]
    assert len(evaluated) == 3 and max(r["agent_value"] for r in evaluated) == res.figures.agent_value
    out = res.to_dict()
    for key in ("optimality_ratio", "optimality_ratio_se", "gap_closed", "gap_closed_se", "agent_value",
                "reference_value", "baseline_value", "env_steps", "wall_s", "checkpoint", "policy"):
        assert key in out
    assert json.loads((res.out / "result.json").read_text())["policy"] == str(res.policy)
    # learning curves: one CSV row per iteration with the figures, and the figure
    rows = read_csv(res.out / "learning_curves.csv")
    assert [r["iteration"] for r in rows] == [1, 2, 3] and list(rows[0]) == list(COLUMNS)
    assert [r["env_steps"] for r in rows] == [TINY.train_batch_size * i for i in (1, 2, 3)]
    assert all(r["eval_method"] == "exact" for r in rows) and sum(r["best"] for r in rows) >= 1
    assert (res.out / "learning_curves.png").stat().st_size > 10_000
    assert (res.out / "quotes.png").stat().st_size > 10_000
    # progress: a line per iteration with the figures
    assert sum(line.startswith("iter ") for line in lines) == 3 and "gap" in lines[-2]


def test_exported_actions_equal_rllib_deterministic_actions_on_a_grid(run):
    """Parity oracle: RLlib's own module, distribution and unsquashing, on a grid of (t, q) states
    (every step time x every inventory), max abs difference < 1e-5 (float32 torch vs float64 numpy),
    for the best agent's checkpoint and the exported policy."""
    res, _ = run
    policy = load_policy(res.policy)
    module = load_rllib_module(res.out, best=True)
    spec = ENV.observation_spec()
    t, q = np.meshgrid(np.arange(ENV.n_steps + 1) * ENV.dt, np.arange(-5.0, 6.0), indexing="ij")
    obs = spec.observe(t.ravel(), q.ravel())
    expected = _rllib_deterministic_actions(module, obs, ENV.action_spec().space())
    got = policy.act(obs)
    assert got.shape == expected.shape == (obs.shape[0], 2)
    assert np.max(np.abs(got - expected)) < 1e-5
    assert np.ptp(expected[:, 0]) > 0  # the network's actions vary over the grid
    # exporting again from the RLlib checkpoints alone gives the same networks
    np.testing.assert_array_equal(export_policy(res.out).weights, policy.weights)
    np.testing.assert_array_equal(export_policy(res.best_checkpoint, TINY).weights, policy.weights)
    latest = export_ppo(res.checkpoint, TINY)
    assert latest.provenance["rllib_checkpoint"] == str(res.checkpoint)


def test_the_exported_policy_backtests(run):
    res, _ = run
    policy = load_policy(res.policy)
    out = backtest(policy, ENV.market, ENV.problem, SimConfig(dt=ENV.dt, n_paths=500, seed=1))
    assert np.isfinite(out.metrics["value_B"])


def test_resume_continues_from_the_last_checkpoint(run, bench, tmp_path):
    """Resume: the RLlib state (weights, step counters, iteration) comes back from the last checkpoint and
    the run continues to the new stopping rule; a config that changes anything but the run settings, an
    occupied directory and a config with no stopping rule are refused."""
    import shutil

    res, _ = run
    run_dir = tmp_path / "copy"
    shutil.copytree(res.out, run_dir)
    for png in ("learning_curves.png", "quotes.png"):
        (run_dir / png).unlink()
    more = train(TINY.replace(iterations=5), resume=run_dir, benchmark=bench, progress=False, plots=False)
    assert not (run_dir / "learning_curves.png").exists() and not (run_dir / "quotes.png").exists()
    assert more.iterations == 5 and [r["iteration"] for r in more.history] == [1, 2, 3, 4, 5]
    assert more.env_steps == 5 * TINY.train_batch_size  # RLlib's lifetime counter restored
    assert more.wall_s > res.wall_s and more.figures.agent_value >= res.figures.agent_value
    # a finished run resumed with its own config has nothing to do
    same = train(resume=run_dir, benchmark=bench, progress=False)
    assert same.iterations == 5 and same.stop_reason == "iterations 5"
    with pytest.raises(ValueError, match=r"resuming may change only .*\['lr'\] differ"):
        train(TINY.replace(lr=1e-3), resume=run_dir, progress=False)
    with pytest.raises(ValueError, match="exists and is not empty"):
        train(TINY, run_dir, progress=False)
    with pytest.raises(ValueError, match="set at least one of iterations, timesteps, time_budget"):
        train(TINY.replace(iterations=None), tmp_path / "new", progress=False)
    with pytest.raises(ValueError, match="no checkpoint to resume from"):
        (tmp_path / "empty").mkdir()
        (tmp_path / "empty" / "rl_config.json").write_text(json.dumps(config_to_json(TINY)))
        train(resume=tmp_path / "empty", progress=False)


def test_initial_log_std_sets_the_log_std_biases_of_learner_and_runner(ray_session):
    config = TINY.replace(initial_log_std=-2.0)
    algo = config.algorithm_config().build_algo()
    try:
        config.initialise(algo)
        runner_bias = algo.get_module().state_dict()["pi.net.mlp.0.bias"].numpy()
        learner_bias = np.asarray(algo.learner_group.get_weights()["default_policy"]["pi.net.mlp.0.bias"])
    finally:
        algo.stop()
    np.testing.assert_array_equal(runner_bias[2:], [-2.0, -2.0])
    np.testing.assert_array_equal(learner_bias, runner_bias)


def test_the_env_clips_raw_actions_as_rllib_unsquashes():
    """The runners send the env the policy's raw samples (normalize_actions and clip_actions off: RLlib's
    per-sub-env action connector was ~40% of sampling); the env's offsets of a raw action equal those of
    RLlib's unsquashed (clipped) one, so the switch changes no env step."""
    from ray.rllib.utils.spaces.space_utils import unsquash_action

    for config in (TINY, SACTrainConfig(env=ENV, timesteps=10)):
        algo_config = config.algorithm_config()
        assert algo_config.normalize_actions is False and algo_config.clip_actions is False
    spec = ENV.action_spec()
    raw = np.random.default_rng(0).normal(0.0, 2.0, size=(10_000, 2)).astype(np.float32)  # ~60% outside [-1, 1]
    for ours, rllib in zip(spec.offsets(raw), spec.offsets(unsquash_action(raw, spec.space())), strict=True):
        np.testing.assert_allclose(ours, rllib, rtol=0, atol=1e-5)


def _first_sample(algo_config):
    algo = algo_config.build_algo()
    try:
        episodes = algo.env_runner.sample()
        return [(e.get_observations(), e.get_actions(), e.get_rewards(), e.get_extra_model_outputs("action_logp"))
                for e in episodes]
    finally:
        algo.stop()


@pytest.mark.parametrize("action_mode", ["continuous", "discrete"])
def test_the_batched_connector_pipelines_sample_as_rllibs_defaults(ray_session, action_mode):
    """The runners' connector pipelines (mmray.tuning.rl_connectors: RLlib's defaults without the per-sub-env
    steps) give the same episodes (observations, actions, rewards, log-probabilities) as RLlib's default
    pipelines for the same seed."""
    config = TINY.replace(env=ENV.replace(action_mode=action_mode), num_envs_per_env_runner=4,
                          rollout_fragment_length=70, minibatch_size=128)
    ours = config.algorithm_config()
    default = config.algorithm_config().env_runners(
        add_default_connectors_to_env_to_module_pipeline=True, env_to_module_connector=None,
        add_default_connectors_to_module_to_env_pipeline=True, module_to_env_connector=None)
    assert ours.add_default_connectors_to_env_to_module_pipeline is False
    assert ours.add_default_connectors_to_module_to_env_pipeline is False
    a, b = _first_sample(ours), _first_sample(default)
    assert len(a) == len(b) == 8  # 4 sub-envs: a finished episode (60 steps) and the next one's first 10
    for x, y in zip(a, b, strict=True):
        for u, v in zip(x, y, strict=True):
            np.testing.assert_array_equal(u, v)


def test_configs_round_trip_through_json():
    for config in (TINY, TINY.replace(lr_schedule=((0, 1e-3), (10_000, 1e-4))), SACTrainConfig(env=ENV, timesteps=10)):
        assert config_from_json(json.loads(json.dumps(config_to_json(config)))) == config
    old = {k: v for k, v in config_to_json(TINY).items() if k != "algorithm"}  # first version's files
    assert config_from_json(old) == TINY


@pytest.mark.parametrize(("changes", "match"), [
    ({"iterations": 0}, r"PPOTrainConfig\.iterations must be an integer >= 1"),
    ({"time_budget": -1.0}, r"PPOTrainConfig\.time_budget must be a finite number > 0"),
    ({"minibatch_size": 10**6}, r"PPOTrainConfig\.minibatch_size must be at most the train batch"),
    ({"gamma": 1.5}, r"PPOTrainConfig\.gamma must be a discount in \(0, 1\]"),
    ({"activation": "linear"}, r"PPOTrainConfig\.activation must be one of tanh, relu"),
    ({"eval_method": "guess"}, r"PPOTrainConfig\.eval_method must be one of auto, exact, monte_carlo"),
    ({"lr_schedule": ((5, 1e-3),)}, r"PPOTrainConfig\.lr_schedule must be pairs .* starting at step 0"),
    ({"env": {"dt": 7.0}}, r"SimConfig\.dt=7\.0 must divide the horizon"),
    ({"torch_threads": 0}, r"PPOTrainConfig\.torch_threads must be an integer >= 1"),
    ({"vf_share_layers": 1}, r"PPOTrainConfig\.vf_share_layers must be True or False"),
    ({"initial_log_std": "wide"}, r"PPOTrainConfig\.initial_log_std must be a finite number"),
])
def test_bad_train_configs_are_refused(changes, match):
    with pytest.raises(ValueError, match=match):
        TINY.replace(**changes)
