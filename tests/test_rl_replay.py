"""The numpy n-step transition replay for SAC (mmray.tuning.rl_replay): its transitions against a plain
Python loop over the episodes and against RLlib's own EpisodeReplayBuffer.sample(n_step=, gamma=) on
episodes an RLlib env runner sampled from the market env (terminations inside n-step windows, episodes
split across fragments); its train batch has the columns and dtypes RLlib's SAC learner connector makes;
seeded sampling, FIFO overwrite, bad capacities refused. The tiny SAC run with it is in test_rl_sac.py."""

from __future__ import annotations

import numpy as np
import pytest
from ray.rllib.core.columns import Columns

from mmray import ProblemParams
from mmray.checks import CheckError
from mmray.envs import EnvConfig
from mmray.tuning.rl import SACTrainConfig
from mmray.tuning.rl_replay import COLUMNS, N_STEP, TransitionReplay

ENV = EnvConfig(problem=ProblemParams(gamma=0.01, T=30.0, q_max=5, objective="B"), dt=0.5)  # 60-step episodes
GAMMA, N = 0.9, 3


def _oracle(calls, n, gamma):
    """The transitions a plain loop gives, in the order the buffer stores them: after each add call, for
    each chunk in order, every t of its episode whose n-step window is now complete (t + n <= steps so
    far, or any t once the episode is done), reward sum r[t] + gamma r[t+1] + ... over k = min(n, len - t)
    steps, next obs o[t + k], terminated/truncated only where the window reaches the episode's end."""
    seen: dict = {}
    emitted: dict = {}
    rows = []
    for chunks in calls:
        for key, t0, obs, actions, rewards, terminated, truncated in chunks:
            if key in seen:
                o, a, r = seen[key]
                assert t0 == len(a) and np.array_equal(o[-1], obs[0])
                seen[key] = (np.concatenate([o, obs[1:]]), np.concatenate([a, actions]), np.concatenate([r, rewards]))
            else:
                assert t0 == 0
                seen[key] = (obs, actions, rewards)
            o, a, r = seen[key]
            length, done = len(a), terminated or truncated
            last = length if done else length - n + 1
            for t in range(emitted.get(key, 0), max(last, 0)):
                k = min(n, length - t)
                total = 0.0
                for i in reversed(range(k)):
                    total = float(r[t + i]) + gamma * total
                end = t + k == length
                rows.append({"key": key, "t": t, Columns.OBS: o[t], Columns.ACTIONS: a[t], Columns.REWARDS: total,
                             Columns.NEXT_OBS: o[t + k], Columns.TERMINATEDS: bool(end and terminated),
                             Columns.TRUNCATEDS: bool(end and truncated), N_STEP: k})
            emitted[key] = max(emitted.get(key, 0), last)
    return rows


def _assert_rows_equal(replay, rows):
    stored = replay.rows()
    assert len(replay) == len(rows)
    for key in (Columns.OBS, Columns.ACTIONS, Columns.REWARDS, Columns.NEXT_OBS, Columns.TERMINATEDS,
                Columns.TRUNCATEDS, N_STEP):
        np.testing.assert_array_equal(stored[key], np.array([row[key] for row in rows]), err_msg=key)


def _synthetic_calls(seed=0):
    """Add calls of chunks of 4 synthetic episodes: lengths 11 (terminated), 7 (truncated), 2 (terminated,
    shorter than n), 9 (unfinished), cut into chunks of 1-4 steps, several episodes per call."""
    rng = np.random.default_rng(seed)
    episodes = {"a": (11, True, False), "b": (7, False, True), "c": (2, True, False), "d": (9, False, False)}
    cuts = {}
    for key, (length, terminated, truncated) in episodes.items():
        obs = rng.normal(size=(length + 1, 2)).astype(np.float32)
        actions = rng.uniform(-1, 1, size=(length, 2)).astype(np.float32)
        rewards = rng.normal(size=length)
        chunks, t = [], 0
        while t < length:
            step = min(int(rng.integers(1, 5)), length - t)
            end = t + step == length
            chunks.append((key, t, obs[t:t + step + 1], actions[t:t + step], rewards[t:t + step],
                           terminated and end, truncated and end))
            t += step
        cuts[key] = chunks
    calls = []
    while any(cuts.values()):
        calls.append([chunks.pop(0) for chunks in cuts.values() if chunks])
    return calls


def _fill(replay, calls):
    for chunks in calls:
        for key, t0, obs, actions, rewards, terminated, truncated in chunks:
            replay.add_chunk(key, t0, obs, actions, rewards, terminated, truncated)


def test_transitions_equal_a_python_loop_on_chunked_episodes():
    calls = _synthetic_calls()
    for n in (1, 3, 5):
        replay = TransitionReplay(1000, n, GAMMA, seed=0)
        _fill(replay, [[chunk] for chunks in calls for chunk in chunks])
        rows = _oracle([[chunk] for chunks in calls for chunk in chunks], n, GAMMA)
        _assert_rows_equal(replay, rows)
        assert replay.pending == 1  # "d" is unfinished: its last n - 1 steps wait
        assert {row["key"] for row in rows if row[Columns.TERMINATEDS]} == {"a", "c"}
        assert {row["key"] for row in rows if row[Columns.TRUNCATEDS]} == {"b"}
        # a window cut short by the episode's end sums the steps there were, and says so
        assert [row[N_STEP] for row in rows if row["key"] == "a"][-n:] == list(range(n, 0, -1))[-min(n, 11):]


def test_same_seed_same_samples_and_fifo_overwrite():
    calls = [[chunk] for chunks in _synthetic_calls() for chunk in chunks]
    rows = _oracle(calls, N, GAMMA)
    first, second, other = (TransitionReplay(1000, N, GAMMA, seed=s) for s in (7, 7, 8))
    for replay in (first, second, other):
        _fill(replay, calls)
    draws = [first.sample_indices(64) for _ in range(3)]
    assert all(np.array_equal(d, second.sample_indices(64)) for d in draws)
    assert not np.array_equal(draws[0], other.sample_indices(64))
    assert all(d.min() >= 0 and d.max() < len(rows) for d in draws)
    batch = first.sample(32)
    assert set(batch) == set(COLUMNS) and all(len(v) == 32 for v in batch.values())
    assert np.all(batch["weights"] == 1.0)

    small = TransitionReplay(5, N, GAMMA, seed=0)
    _fill(small, calls)  # wraps several times, one chunk at a time
    assert len(small) == 5 and small.added == len(rows)
    _assert_rows_equal(small, rows[-5:])
    once = TransitionReplay(5, N, GAMMA, seed=0)
    once.add_chunk("e", 0, np.zeros((13, 2), np.float32), np.zeros((12, 2), np.float32), np.arange(12.0), True)
    assert len(once) == 5 and np.array_equal(once.rows()[Columns.ACTIONS], np.zeros((5, 2), np.float32))
    np.testing.assert_array_equal(once.rows()[N_STEP], [3, 3, 3, 2, 1])  # the newest 5 of 12


@pytest.mark.parametrize("capacity", [0, -1, 2.5, "10", True])
def test_bad_capacities_are_refused(capacity):
    with pytest.raises(CheckError, match=r"TransitionReplay\.capacity"):
        TransitionReplay(capacity, N, GAMMA)


def test_a_capacity_beyond_memory_is_refused_before_allocating():
    replay = TransitionReplay(10**15, N, GAMMA)
    with pytest.raises(CheckError, match=r"TransitionReplay\.capacity .*fit in memory"):
        replay.add_chunk("a", 0, np.zeros((5, 2), np.float32), np.zeros((4, 2), np.float32), np.zeros(4), True)
    assert len(replay) == 0


def test_bad_n_step_gamma_and_chunk_order_are_refused():
    with pytest.raises(CheckError, match=r"TransitionReplay\.n_step"):
        TransitionReplay(10, 0, GAMMA)
    with pytest.raises(CheckError, match=r"TransitionReplay\.gamma"):
        TransitionReplay(10, N, 1.5)
    replay = TransitionReplay(10, N, GAMMA)
    replay.add_chunk("a", 0, np.zeros((3, 2)), np.zeros((2, 2)), np.zeros(2))
    with pytest.raises(ValueError, match="starting at t=3 where t=2"):
        replay.add_chunk("a", 3, np.zeros((3, 2)), np.zeros((2, 2)), np.zeros(2))
    with pytest.raises(ValueError, match="one observation more"):
        replay.add_chunk("b", 0, np.zeros((2, 2)), np.zeros((2, 2)), np.zeros(2))
    with pytest.raises(ValueError, match="empty"):
        TransitionReplay(10, N, GAMMA).sample(4)


def test_sac_train_config_replay_field():
    assert SACTrainConfig().replay == "numpy"
    assert SACTrainConfig(replay="rllib").replay == "rllib"
    with pytest.raises(CheckError, match=r"SACTrainConfig\.replay must be one of numpy, rllib"):
        SACTrainConfig(replay="fast")


@pytest.fixture(scope="module")
def sampled():
    """Episode chunks of 12 sample() calls of an RLlib env runner (8 sub-envs x 7-step fragments: the
    60-step episodes end inside fragments and n-step windows), its config and the runner."""
    from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner

    config = SACTrainConfig(env=ENV, hidden=(8,), num_envs_per_env_runner=8, rollout_fragment_length=7, seed=4,
                            gamma=GAMMA, n_step=N, train_batch_size=64)
    algo_config = config.algorithm_config()
    runner = SingleAgentEnvRunner(config=algo_config)
    calls = [runner.sample() for _ in range(12)]
    yield calls, algo_config, runner
    runner.stop()


def _chunk_tuples(chunks):
    return [(e.id_, e.t_started, np.asarray(e.get_observations()), np.asarray(e.get_actions()),
             np.asarray(e.get_rewards()), bool(e.is_terminated), bool(e.is_truncated)) for e in chunks]


def test_transitions_of_env_runner_episodes_equal_the_loop_and_rllib(sampled):
    from ray.rllib.utils.replay_buffers.episode_replay_buffer import EpisodeReplayBuffer

    calls, _, _ = sampled
    replay = TransitionReplay(100_000, N, GAMMA, seed=0)
    for chunks in calls:
        replay.add(chunks)
    rows = _oracle([_chunk_tuples(chunks) for chunks in calls], N, GAMMA)
    _assert_rows_equal(replay, rows)
    terminal = [row for row in rows if row[Columns.TERMINATEDS]]
    assert len(terminal) >= 8 and {row[N_STEP] for row in rows} == {1, 2, 3}  # ends inside windows
    assert sum(c.t_started > 0 and c.is_terminated for chunks in calls for c in chunks) >= 4  # split episodes

    # RLlib's own n-step sampling over the same chunks: every complete window it draws is ours
    rllib = EpisodeReplayBuffer(capacity=100_000)
    for chunks in calls:
        rllib.add(chunks)
    lengths = {e.id_: len(e) for e in rllib.episodes}
    done = {e.id_ for e in rllib.episodes if e.is_terminated}
    index = {(row["key"], row["t"]): row for row in rows}
    matched = unmasked = 0
    for item in rllib.sample(num_items=1500, n_step=N, gamma=GAMMA, sample_episodes=True):
        key, t = item.id_, item.t_started
        if t + N > lengths[key] and key not in done:
            assert (key, t) not in index  # an unfinished episode's last steps: RLlib samples them, we wait
            continue
        row = index[(key, t)]
        obs = item.get_observations()
        np.testing.assert_array_equal(obs[0], row[Columns.OBS])
        np.testing.assert_array_equal(obs[-1], row[Columns.NEXT_OBS])
        np.testing.assert_array_equal(item.get_actions()[0], row[Columns.ACTIONS])
        assert item.get_rewards()[0] == row[Columns.REWARDS]
        # RLlib 2.60 flags a window terminated only if it ends exactly at the episode's end: it slices
        # [t, t + n) and SingleAgentEpisode.slice keeps the done flag only when stop == len(episode), so the
        # last n - 1 windows of a terminated episode bootstrap from its terminal observation; ours are masked
        assert bool(item.is_terminated) == (row[Columns.TERMINATEDS] and t + N == lengths[key])
        unmasked += row[Columns.TERMINATEDS] and t + N > lengths[key]
        # RLlib reports n for a window the episode's end cut short (masked when terminated); we report k
        assert row[N_STEP] == min(N, lengths[key] - t) and item.get_extra_model_outputs(N_STEP)[0] == N
        matched += 1
    assert matched > 1000 and unmasked > 0


def test_the_batch_has_the_columns_and_dtypes_of_rllibs_learner_connector(sampled):
    """RLlib's SAC learner connector on EpisodeReplayBuffer.sample()'s one-step episodes, against our
    batch converted as Learner.update(batch=...) converts it; then one update from our batch."""
    from ray.rllib.policy.sample_batch import DEFAULT_POLICY_ID, MultiAgentBatch, SampleBatch
    from ray.rllib.utils.replay_buffers.episode_replay_buffer import EpisodeReplayBuffer

    calls, algo_config, runner = sampled
    rllib, replay = EpisodeReplayBuffer(capacity=10_000), TransitionReplay(10_000, N, GAMMA, seed=0)
    for chunks in calls:
        rllib.add(chunks)
        replay.add(chunks)
    learner = algo_config.build_learner(env=runner.env)
    learner.build()
    theirs = learner._learner_connector(rl_module=learner.module, batch={}, shared_data={}, metrics=learner.metrics,
                                        episodes=rllib.sample(num_items=16, n_step=N, gamma=GAMMA,
                                                              sample_episodes=True))[DEFAULT_POLICY_ID]
    batch = MultiAgentBatch({DEFAULT_POLICY_ID: SampleBatch(replay.sample(16))}, env_steps=16)
    ours = learner._convert_batch_type(batch).policy_batches[DEFAULT_POLICY_ID]
    assert set(ours.keys()) == set(theirs.keys()) == set(COLUMNS)
    for key in COLUMNS:
        assert ours[key].dtype == theirs[key].dtype and ours[key].shape == theirs[key].shape, key
    before = [p.detach().clone() for p in learner.module[DEFAULT_POLICY_ID].parameters()]
    learner.update(batch=batch, timesteps={"num_env_steps_sampled_lifetime": 1000})
    after = list(learner.module[DEFAULT_POLICY_ID].parameters())
    assert any(not np.array_equal(b.numpy(), a.detach().numpy()) for b, a in zip(before, after, strict=True))
