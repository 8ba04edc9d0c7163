"""The Gymnasium environments: the contract (check_env, seeding, autoreset), and that they are the
simulator (an episode under the exact policy's quotes equals simulate_chunk bit for bit; rewards
add up to objective B's value)."""

from __future__ import annotations

import itertools

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from mmray import MarketParams, ProblemParams, make_strategy
from mmray.envs import ENV_IDS, EnvConfig, MarketMakingEnv, MarketMakingVectorEnv, MLPPolicy
from mmray.envs.config import ActionSpec
from mmray.features import SIM_FEATURES
from mmray.objectives import value_b
from mmray.sim import simulate_chunk

# a short problem: 60 steps of dt = 0.5, Q = 5, a terminal penalty so that ell(q_T) is exercised
SMALL = {"problem": ProblemParams(gamma=0.01, T=30.0, q_max=5, objective="B", terminal_penalty=0.05), "dt": 0.5}
VARIANTS = [
    pytest.param({}, id="continuous"),
    pytest.param({"action_mode": "discrete"}, id="discrete"),
    pytest.param({"features": SIM_FEATURES}, id="continuous+features"),
    pytest.param({"action_mode": "discrete", "features": ("mid_return",), "fill_model": "linear",
                  "price_model": "binomial", "market": MarketParams(tick=0.1)}, id="discrete+tick+AS-models"),
    pytest.param({"reward": "expected", "fill_model": "linear", "market": MarketParams(tick=0.1, drift=0.01)},
                 id="expected-reward+tick+drift"),
    pytest.param({"inventory_scale": 2.0, "reward": "mid_expected"}, id="inventory-scale+mid-expected"),
]


class OnActionGrid:
    """A policy quoting ``inner``'s offsets as the env's action mapping renders them: ``offsets(action_of(.))``
    (what an agent whose action is the nearest point to ``inner``'s quotes makes the env quote)."""

    kind = "on_action_grid"

    def __init__(self, inner, spec: ActionSpec) -> None:
        self.inner, self.spec = inner, spec

    def quotes(self, t, q, s, rng=None):
        return self.spec.offsets(self.spec.action_of(*self.inner.quotes(t, q, s)))


def _episode(env, seed, act):
    """Run one episode; returns observations, rewards, infos (lists)."""
    obs, info = env.reset(seed=seed)
    out_obs, rewards, infos, done = [obs], [], [info], False
    while not done:
        obs, r, done, truncated, info = env.step(act(env, obs))
        assert not truncated
        out_obs.append(obs)
        rewards.append(r)
        infos.append(info)
    return np.array(out_obs), np.array(rewards), infos


def _exact_actions(policy, spec, dt):
    """An actor quoting the action nearest ``policy``'s quotes at step j (time j dt)."""
    step = iter(range(10**9))

    def act(env, obs):
        p = env.unwrapped.state
        return spec.action_of(*policy.quotes(next(step) * dt, p.q, p.s))[0]
    return act


@pytest.mark.filterwarnings("ignore:.*Box observation space m")  # features are unbounded (documented)
@pytest.mark.parametrize("fields", VARIANTS)
def test_check_env_passes_for_every_variant(fields):
    """Gymnasium's own checker (spaces, reset seeding determinism, step API, obs in space)."""
    check_env(MarketMakingEnv(**SMALL, **fields), skip_render_check=True)


@pytest.mark.parametrize("env_id", list(ENV_IDS))
def test_registered_ids_make_the_single_and_the_native_vector_env(env_id):
    spec = gym.spec(env_id)
    assert spec.entry_point == "mmray.envs.market:MarketMakingEnv"
    assert spec.vector_entry_point == "mmray.envs.market:MarketMakingVectorEnv"
    env = gym.make(env_id, **SMALL)
    check_env(env.unwrapped, skip_render_check=True)
    assert env.unwrapped.config.action_mode == ENV_IDS[env_id].get("action_mode", "continuous")
    venv = gym.make_vec(env_id, num_envs=3, **SMALL)  # default mode: the vector entry point
    assert isinstance(venv.unwrapped, MarketMakingVectorEnv) and venv.num_envs == 3
    assert venv.metadata["autoreset_mode"] == gym.vector.AutoresetMode.NEXT_STEP
    assert venv.single_action_space == env.action_space
    assert venv.single_observation_space == env.observation_space


@pytest.mark.parametrize("fields", VARIANTS)
def test_same_seed_same_episode(fields):
    """Two envs, same seed, same (random) actions -> identical observations, rewards and infos; another
    seed -> a different episode."""
    def run(seed):
        env = MarketMakingEnv(**SMALL, **fields)
        env.action_space.seed(7)
        return _episode(env, seed, lambda e, o: e.action_space.sample())

    a, b, c = run(5), run(5), run(6)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[2] == b[2]
    assert not np.array_equal(a[1], c[1])


@pytest.mark.parametrize("fields", VARIANTS[:3])
def test_per_env_vector_sub_env_i_is_the_single_env_seeded_seed_plus_i(fields):
    """rng_mode='per_env', reset(seed=s): sub-env i equals MarketMakingEnv reset with seed s + i, given
    the same actions (bit for bit: same draws, same arithmetic)."""
    n, s = 4, 100
    venv = MarketMakingVectorEnv(n, rng_mode="per_env", **SMALL, **fields)
    venv.action_space.seed(3)
    actions = [venv.action_space.sample() for _ in range(venv.config.n_steps)]
    obs, _ = venv.reset(seed=s)
    v_obs, v_rew = [obs], []
    for a in actions:
        obs, r, term, trunc, _ = venv.step(a)
        v_obs.append(obs)
        v_rew.append(r)
    assert term.all() and not trunc.any()
    v_obs, v_rew = np.array(v_obs), np.array(v_rew)
    for i in range(n):
        env = MarketMakingEnv(**SMALL, **fields)
        it = iter(actions)
        obs, rew, _ = _episode(env, s + i, lambda e, o, it=it, i=i: next(it)[i])
        np.testing.assert_array_equal(obs, v_obs[:, i])
        np.testing.assert_array_equal(rew, v_rew[:, i])


def test_an_episode_under_the_exact_policy_is_the_simulator_path(glft_market):
    """Oracle: simulate_chunk, 1 path, same seed, the exact policy's quotes as the env renders them
    (OnActionGrid): the PnL and inventory paths are equal bit for bit (same draws in the same order,
    the same market_step). Against the raw exact quotes (offsets within float32 precision of the
    action, ~1e-6): the same fills, PnL within 1e-9 per unit of offset error summed over fills."""
    env = MarketMakingEnv(market=glft_market, **SMALL)
    c = env.config
    exact = make_strategy("optimal", c.market, c.problem)
    spec = c.action_spec()
    _, rewards, infos = _episode(env, 42, _exact_actions(exact, spec, c.dt))
    pnl_path = np.array([i["mtm_pnl"] for i in infos])
    q_path = np.array([i["inventory"] for i in infos])
    ref = simulate_chunk(OnActionGrid(exact, spec), c.market, c.problem, c.sim_config(), 1, 42, record=1)
    np.testing.assert_array_equal(pnl_path[:-1], ref.paths["pnl"][0, :-1])
    np.testing.assert_array_equal(pnl_path[-1] - c.problem.terminal(q_path[-1]), ref.pnl[0])
    np.testing.assert_array_equal(q_path, ref.paths["q"][0])
    assert ref.trades[0] > 5  # the episode trades: the comparison is not vacuous
    raw = simulate_chunk(exact, c.market, c.problem, c.sim_config(), 1, 42, record=1)
    np.testing.assert_array_equal(q_path, raw.paths["q"][0])
    np.testing.assert_allclose(pnl_path[:-1], raw.paths["pnl"][0, :-1], rtol=0, atol=1e-5 * ref.trades[0])
    # rewards x scale sum to the episode's objective-B value (float tolerance: another summation order)
    assert rewards.sum() * c.reward_scale == pytest.approx(
        value_b(ref.pnl, ref.q2_integral, c.market, c.problem)[0], rel=0, abs=1e-9)


@pytest.mark.parametrize("fields", [pytest.param({}, id="continuous"),
                                    pytest.param({"action_mode": "discrete", "market": MarketParams(tick=0.05)},
                                                 id="discrete+tick")])
def test_the_shared_vector_env_is_simulate_chunk_path_for_path(glft_market, fields):
    """rng_mode='shared' with N sub-envs and seed s == simulate_chunk(N paths, seed s) under the same
    quotes: final inventory, PnL, int q^2 dt and fill counts bit for bit; the summed rewards x scale
    equal each path's value_B to 1e-9 (summation order); then autoreset starts fresh episodes."""
    fields = {"market": glft_market, **fields}
    n = 64
    venv = MarketMakingVectorEnv(n, **SMALL, **fields)
    c = venv.config
    exact = make_strategy("optimal", c.market, c.problem)
    spec = c.action_spec()
    venv.reset(seed=9)
    total = np.zeros(n)
    for j in range(c.n_steps):
        p = venv.state
        _obs, r, term, trunc, info = venv.step(spec.action_of(*exact.quotes(j * c.dt, p.q, p.s)))
        total += r
        assert term.all() == (j == c.n_steps - 1) and not trunc.any() and info == {}
    ref = simulate_chunk(OnActionGrid(exact, spec), c.market, c.problem, c.sim_config(), n, 9)
    p = venv.state
    np.testing.assert_array_equal(p.q, ref.q_final)
    np.testing.assert_array_equal(p.mtm - c.problem.terminal(p.q), ref.pnl)
    np.testing.assert_array_equal(p.q2 * c.dt, ref.q2_integral)
    np.testing.assert_array_equal(p.trades, ref.trades)
    np.testing.assert_allclose(total * c.reward_scale, value_b(ref.pnl, ref.q2_integral, c.market, c.problem),
                               rtol=0, atol=1e-9)
    # NEXT_STEP autoreset: actions ignored, first observations, reward 0, not terminated
    obs2, r2, term2, trunc2, _ = venv.step(np.full((n, 2), 10**6, dtype=int) if c.action_mode == "discrete"
                                           else np.full((n, 2), np.nan, dtype=np.float32))
    first, _ = MarketMakingEnv(**SMALL, **fields).reset(seed=0)
    np.testing.assert_array_equal(obs2, np.broadcast_to(first, obs2.shape))
    assert not r2.any() and not term2.any() and not trunc2.any()
    np.testing.assert_array_equal(venv.state.q, c.q0)
    venv.step(venv.action_space.sample())  # the new episode runs


def test_observation_and_action_mappings():
    """Oracles written out: time remaining and q/Q; offsets linear in the action; feature scaling."""
    env = MarketMakingEnv(**SMALL, features=SIM_FEATURES, q0=2.0)
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(obs, np.array([1.0, 2.0 / 5, 0.0, 0.0, 0.0], dtype=np.float32))
    obs, *_ = env.step(np.array([-1.0, 0.5], dtype=np.float32))
    p = env.state
    assert (p.bid_offset[0], p.ask_offset[0]) == (0.0, 7.5)
    sq = 0.3 * np.sqrt(0.5)
    expected = [(30.0 - 0.5) / 30.0, p.q[0] / 5, p.ds[0] / sq, 0.0, 0.75]
    np.testing.assert_allclose(obs, np.array(expected, dtype=np.float32), rtol=1e-6)
    spec = ActionSpec("discrete", 0.0, 10.0, 0.1)
    assert spec.levels == 101
    b, a = spec.offsets(np.array([[0, 100], [37, 5]]))
    np.testing.assert_allclose(b, [0.0, 3.7], rtol=1e-15)
    np.testing.assert_allclose(a, [10.0, 0.5], rtol=1e-15)
    np.testing.assert_array_equal(spec.action_of(np.array([3.74, np.inf]), np.array([-1.0, 0.06])),
                                  [[37, 0], [100, 1]])
    scaled = MarketMakingEnv(**SMALL, q0=2.0, inventory_scale=2.5)  # q / 2.5, bounds +-Q / 2.5
    obs, _ = scaled.reset(seed=0)
    np.testing.assert_array_equal(obs, np.array([1.0, 0.8], dtype=np.float32))
    np.testing.assert_array_equal(scaled.observation_space.low, np.array([0.0, -2.0], dtype=np.float32))
    np.testing.assert_array_equal(scaled.observation_space.high, np.array([1.0, 2.0], dtype=np.float32))


@pytest.mark.parametrize(("fields", "match"), [
    ({"problem": ProblemParams(objective="A")}, r"EnvConfig\.problem\.objective must be \"B\""),
    ({"problem": ProblemParams(objective="B", q_max=None)}, r"EnvConfig\.problem\.q_max must be an inventory bound"),
    ({"features": ("spread",)}, r"EnvConfig\.features must be distinct names from \['mid_return'"),
    ({"features": ("mid_return", "mid_return")}, r"EnvConfig\.features must be distinct"),
    ({"action_mode": "discrete", "offset_step": 0.3}, r"EnvConfig\.offset_step must be a divisor of"),
    ({"action_mode": "box"}, r"EnvConfig\.action_mode must be one of continuous, discrete"),
    ({"offset_high": -1.0}, r"EnvConfig\.offset_high must be a finite number > 0"),
    ({"dt": 7.0}, r"SimConfig\.dt=7\.0 must divide the horizon"),
    ({"reward_scale": 0}, r"EnvConfig\.reward_scale must be a finite number > 0"),
    ({"reward": "expectation"}, r"EnvConfig\.reward must be one of realised, mid_expected, expected"),
    ({"inventory_scale": 0.0}, r"EnvConfig\.inventory_scale must be a finite number > 0"),
    ({"sigma": 0.3}, r"EnvConfig: unknown field\(s\) \['sigma'\]"),
])
def test_bad_configs_are_refused_with_the_field_named(fields, match):
    with pytest.raises(ValueError, match=match):
        MarketMakingEnv(**fields)


def test_misuse_is_a_clear_error():
    env = MarketMakingEnv(**SMALL)
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(np.zeros(2, dtype=np.float32))
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        env.step(np.zeros(3, dtype=np.float32))
    with pytest.raises(ValueError, match="rng_mode='shared' takes one integer seed"):
        MarketMakingVectorEnv(2, **SMALL).reset(seed=[1, 2])
    with pytest.raises(ValueError, match="num_envs must be an integer >= 1"):
        MarketMakingVectorEnv(0)
    assert EnvConfig(**SMALL).n_steps == 60


# ---- the mlp policy kind -------------------------------------------------------------------------

def _random_mlp(config: EnvConfig, hidden=(8, 8), seed=0, activation="tanh", scale=1.0):
    from mmray.envs.mlp import output_size

    rng = np.random.default_rng(seed)
    sizes = [config.observation_spec().size, *hidden, output_size(config)]
    layers = [(scale * rng.normal(size=(o, i)) / np.sqrt(i), 0.1 * rng.normal(size=o))
              for i, o in itertools.pairwise(sizes)]
    return MLPPolicy.from_layers(config, layers, activation, {"algorithm": "test"}), layers


MLP_VARIANTS = [
    pytest.param({}, id="continuous"),
    pytest.param({"features": SIM_FEATURES, "market": MarketParams(tick=0.1)}, id="continuous+features+tick"),
    pytest.param({"action_mode": "discrete", "features": ("mid_return",)}, id="discrete+feature"),
]


@pytest.mark.parametrize("fields", MLP_VARIANTS)
def test_an_mlp_policy_backtests_as_its_deterministic_agent_plays_the_env(fields):
    """Oracle: the env driven by the policy's deterministic action on the env's own observations, seed s,
    equals simulate_chunk(policy, 1 path, seed s) bit for bit (PnL and inventory paths): quotes() builds
    the same observation (features included) and maps actions to the same offsets."""
    config = EnvConfig(**SMALL, **fields)
    policy, _ = _random_mlp(config, scale=3.0)
    env = MarketMakingEnv(config)
    _, _, infos = _episode(env, 17, lambda e, obs: policy.act(obs[None, :])[0])
    ref = simulate_chunk(policy, config.market, config.problem, config.sim_config(), 1, 17, record=1)
    np.testing.assert_array_equal([i["mtm_pnl"] for i in infos][:-1], ref.paths["pnl"][0, :-1])
    np.testing.assert_array_equal([i["inventory"] for i in infos], ref.paths["q"][0])
    assert ref.trades[0] > 3
    bids = {i["bid_offset"] for i in infos[1:]}
    assert len(bids) > 3  # the network's quotes move with the state: the comparison is not vacuous


@pytest.mark.parametrize("fields", MLP_VARIANTS)
def test_mlp_forward_equals_torch_and_survives_a_checkpoint(tmp_path, fields):
    """Oracle: torch.nn.Sequential(Linear, Tanh, ...) in float64 with the same weights (1e-12); then
    save/load: same kind, env, features, quotes bit for bit; policy.json describes the interface."""
    import json

    import torch

    from mmray import load_policy

    config = EnvConfig(**SMALL, **fields)
    policy, layers = _random_mlp(config, hidden=(16, 8))
    mods = []
    for w, b in layers:
        lin = torch.nn.Linear(w.shape[1], w.shape[0], dtype=torch.float64)
        lin.weight.data, lin.bias.data = torch.from_numpy(w), torch.from_numpy(b)
        mods += [lin, torch.nn.Tanh()]
    net = torch.nn.Sequential(*mods[:-1])
    obs = np.random.default_rng(1).uniform(-1, 1, size=(50, config.observation_spec().size)).astype(np.float32)
    with torch.no_grad():
        expected = net(torch.from_numpy(obs.astype(np.float64))).numpy()
    np.testing.assert_allclose(policy.forward(obs), expected, rtol=0, atol=1e-12)

    policy.save(tmp_path / "p", provenance={"seed": 3})
    doc = json.loads((tmp_path / "p" / "policy.json").read_text())
    assert doc["kind"] == "mlp" and doc["features"] == list(config.features)
    assert doc["params"]["layer_sizes"] == [config.observation_spec().size, 16, 8, expected.shape[1]]
    assert doc["params"]["observation"]["names"][:2] == ["time_remaining", "inventory"]
    assert doc["params"]["action"]["mode"] == config.action_mode
    loaded = load_policy(tmp_path / "p")
    assert isinstance(loaded, MLPPolicy) and loaded.env == config and loaded.provenance["seed"] == 3
    q = np.arange(-5.0, 6.0)
    feats = {name: np.linspace(-1, 2, q.size) for name in config.features}
    for t in (0.0, 12.5, 30.0):
        for a, b in zip(policy.quotes(t, q, q, features=feats), loaded.quotes(t, q, q, features=feats),
                        strict=True):
            np.testing.assert_array_equal(a, b)


def test_mlp_quotes_are_the_env_action_mapping_of_its_outputs():
    """Oracle written out: continuous offsets = low + (clip(mean) + 1)/2 (high - low), with the
    observation ((T - t)/T, q/Q); discrete = low + argmax * step."""
    config = EnvConfig(**SMALL)
    policy, _ = _random_mlp(config, scale=5.0)
    t, q = 7.5, np.array([-5.0, -1.0, 0.0, 3.0])
    obs = np.stack([np.full(4, (30.0 - 7.5) / 30.0), q / 5], axis=1).astype(np.float32)
    mean = policy.forward(obs)
    a = np.clip(mean, -1, 1).astype(np.float32).astype(float)
    bid, ask = policy.quotes(t, q, q)
    np.testing.assert_array_equal(bid, 0.0 + (a[:, 0] + 1.0) * 5.0)
    np.testing.assert_array_equal(ask, 0.0 + (a[:, 1] + 1.0) * 5.0)
    dconf = config.replace(action_mode="discrete")
    dpol, _ = _random_mlp(dconf)
    logits = dpol.forward(obs)
    bid, ask = dpol.quotes(t, q, q)
    np.testing.assert_allclose(bid, logits[:, :101].argmax(1) * 0.1, rtol=1e-15)
    np.testing.assert_allclose(ask, logits[:, 101:].argmax(1) * 0.1, rtol=1e-15)


def test_bad_mlp_policies_and_checkpoints_are_refused(tmp_path):
    import json

    from mmray import CheckpointError, load_policy
    from mmray.checkpoint import meta_digest

    config = EnvConfig(**SMALL)
    policy, layers = _random_mlp(config)
    with pytest.raises(ValueError, match=r"must start with the observation size 3 \(time, inventory \+ features "
                                         r"\['mid_return'\]\) and end with 2 outputs"):
        MLPPolicy.from_layers(config.replace(features=("mid_return",)), layers)
    with pytest.raises(ValueError, match=r"MLPPolicy.weights has 9 values; layer_sizes \[2, 8, 8, 2\] need 114"):
        MLPPolicy(config, (2, 8, 8, 2), np.zeros(9))
    with pytest.raises(ValueError, match=r"MLPPolicy\.activation must be one of tanh, relu, linear"):
        MLPPolicy(config, policy.layer_sizes, policy.weights, "gelu")
    with pytest.raises(ValueError, match=r"observation differs from the env's: .*'names': \"policy \['time_remaining'"):
        policy.check_env(config.replace(features=("mid_return",)))
    with pytest.raises(ValueError, match=r"action differs from the env's: \{'low': 'policy 0.0, env -2.0'\}"):
        policy.check_env(config.replace(offset_low=-2.0))
    policy.check_env(config.replace(reward_scale=1.0))  # rewards are not part of the policy
    # a checkpoint whose interface was edited consistently (digest recomputed) is still refused
    policy.save(tmp_path / "p")
    path = tmp_path / "p" / "policy.json"
    doc = json.loads(path.read_text())
    doc["params"]["observation"]["q_scale"] = 10.0
    doc["meta_sha256"] = meta_digest(doc)
    path.write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match=r"invalid content: params.observation/params.action do not match"):
        load_policy(tmp_path / "p")


def test_a_squashed_mlp_acts_with_the_tanh_of_its_mean_and_keeps_it_in_its_checkpoint(tmp_path):
    """SAC's deterministic action (squash=True): tanh(mean), the squashed Gaussian's mean on [-1, 1]
    (written out), then the env's mapping; saved and loaded with the flag; policy.json says so; a
    checkpoint without the key (first version) loads unsquashed; discrete actions refuse it."""
    import json

    from mmray import load_policy
    from mmray.checkpoint import meta_digest

    config = EnvConfig(**SMALL)
    plain, layers = _random_mlp(config, scale=4.0)
    squashed = MLPPolicy.from_layers(config, layers, squash=True)
    obs = np.random.default_rng(2).uniform(-1, 1, size=(40, 2)).astype(np.float32)
    mean = squashed.forward(obs)
    np.testing.assert_array_equal(squashed.act(obs), np.tanh(mean).astype(np.float32))
    assert np.any(np.abs(mean) > 1)  # clip and tanh differ here: the test tells them apart
    assert not np.array_equal(plain.act(obs), squashed.act(obs))
    squashed.save(tmp_path / "s")
    doc = json.loads((tmp_path / "s" / "policy.json").read_text())
    assert doc["params"]["squash"] is True and doc["params"]["action"]["output"] == "squashed_gaussian_mean"
    loaded = load_policy(tmp_path / "s")
    assert loaded.squash and np.array_equal(loaded.act(obs), squashed.act(obs))
    plain.save(tmp_path / "p")
    path = tmp_path / "p" / "policy.json"
    doc = json.loads(path.read_text())
    del doc["params"]["squash"]
    doc["meta_sha256"] = meta_digest(doc)
    path.write_text(json.dumps(doc))
    assert load_policy(tmp_path / "p").squash is False
    with pytest.raises(ValueError, match=r"MLPPolicy\.squash must be False for discrete actions"):
        _, dlayers = _random_mlp(config.replace(action_mode="discrete"))
        MLPPolicy.from_layers(config.replace(action_mode="discrete"), dlayers, squash=True)


@pytest.mark.parametrize("fields", [pytest.param({}, id="gaussian-poisson"),
                                    pytest.param({"fill_model": "linear", "price_model": "binomial",
                                                  "market": MarketParams(drift=0.02, tick=0.05)},
                                                 id="binomial-linear-drift-tick")])
def test_the_control_variate_rewards_keep_the_expected_return_and_cut_the_variance(fields):
    """Oracle: the exact value of the (t, q) policy by forward propagation of its inventory distribution
    (rl_eval.exact_value, no sampling), here of the exact policy on the action grid. Each reward variant's
    Monte Carlo mean return (4,000 paths, same seed: the variants see the same draws and the same states)
    is within 4 standard errors of it (4 SE: a false alarm about 1 in 16,000 per check), and the variants
    cut the standard deviation of the return: 'mid_expected' below 'realised', 'expected' below a fifth of
    it. Without a tick the quotes do not depend on the mid, so exact_value applies; with a tick the oracle
    is the 'realised' mean itself (paired: same paths)."""
    from mmray.tuning.rl_eval import exact_value

    base = EnvConfig(**{**SMALL, **fields})
    policy = OnActionGrid(make_strategy("optimal", base.market, base.problem), base.action_spec())
    n, returns, observations = 4000, {}, {}
    for variant in ("realised", "mid_expected", "expected"):
        env = MarketMakingVectorEnv(n, base.replace(reward=variant))
        obs, _ = env.reset(seed=7)
        total, seen = np.zeros(n), [obs]
        for j in range(base.n_steps):
            p = env.state
            obs, r, *_ = env.step(base.action_spec().action_of(*policy.quotes(j * base.dt, p.q, p.s)))
            total += r
            seen.append(obs)
        returns[variant] = total * base.reward_scale
        observations[variant] = np.array(seen)
    np.testing.assert_array_equal(observations["expected"], observations["realised"])  # same paths
    sd = {v: r.std(ddof=1) for v, r in returns.items()}
    assert sd["mid_expected"] < sd["realised"]
    assert sd["expected"] < sd["realised"] / 5
    if base.market.tick == 0:
        oracle = exact_value(policy, base).value
        for variant, r in returns.items():
            assert abs(r.mean() - oracle) < 4 * sd[variant] / np.sqrt(n), variant
    else:
        for variant in ("mid_expected", "expected"):
            d = returns[variant] - returns["realised"]
            assert abs(d.mean()) < 4 * d.std(ddof=1) / np.sqrt(n), variant


def test_staggered_vector_env_spreads_first_episodes_over_the_horizon_and_keeps_the_accounting():
    """stagger=True: sub-env i starts at step floor(i n / N); each ends once within the first n steps,
    restarts on the next step (reward 0, time T) while the others step on, and from then on every episode
    is whole. Oracle for the accounting of restarted paths: each finished episode's rewards x scale equal
    objective B's value of the path state (W - penalty int q^2 dt - ell(q_T)) read at its last step."""
    c = EnvConfig(**SMALL)
    n, steps = 6, c.n_steps
    env = MarketMakingVectorEnv(n, c, stagger=True)
    obs, _ = env.reset(seed=5)
    j0 = (np.arange(n) * steps) // n
    np.testing.assert_allclose(obs[:, 0], 1.0 - j0 / steps, rtol=0, atol=1e-6)
    act = np.tile(c.action_spec().action_of(3.0, 3.0), (n, 1))
    total, ends, restarts = np.zeros(n), [[] for _ in range(n)], np.zeros(n, dtype=int)
    restarting = np.zeros(n, dtype=bool)
    for k in range(2 * steps + 1):
        obs, r, term, trunc, _ = env.step(act)
        assert not trunc.any()
        assert np.all(r[restarting] == 0.0) and np.all(obs[restarting, 0] == 1.0)  # new episodes at t = 0
        restarts += restarting
        total[restarting] = 0.0
        total += r
        p = env.state
        for i in np.flatnonzero(term):
            value = p.mtm[i] - 0.5 * c.problem.gamma * c.market.sigma**2 * p.q2[i] * c.dt - c.problem.terminal(p.q[i])
            assert total[i] * c.reward_scale == pytest.approx(value, rel=0, abs=1e-9)
            ends[i].append(k + 1)
        restarting = term
    for i in range(n):  # the first episode ends after steps - j0 steps, the next ones after n + 1 more each
        assert ends[i][0] == steps - j0[i]
        assert np.all(np.diff(ends[i]) == steps + 1)
    assert restarts.min() >= 1
    with pytest.raises(ValueError, match="stagger must be True or False"):
        MarketMakingVectorEnv(2, c, stagger="yes")


def test_reward_offset_moves_every_return_by_the_same_amount():
    """Oracle: arithmetic. Same seed and actions, offset c: every step's reward is lower by c / scale,
    every episode's return by n_steps c / scale (so no policy's ranking changes)."""
    c = EnvConfig(**SMALL)
    act = np.tile(c.action_spec().action_of(2.5, 3.5), (4, 1))
    totals = []
    for offset in (0.0, 1.75):
        env = MarketMakingVectorEnv(4, c.replace(reward_offset=offset))
        env.reset(seed=11)
        totals.append(sum(env.step(act)[1] for _ in range(c.n_steps)))
    np.testing.assert_allclose(totals[0] - totals[1], c.n_steps * 1.75 / c.reward_scale, rtol=1e-12)
    with pytest.raises(ValueError, match=r"EnvConfig\.reward_offset must be a finite number"):
        EnvConfig(reward_offset=float("nan"))
