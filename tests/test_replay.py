"""Replay storage: sequences never cross an episode end, terminals are MDP terminals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from alm_offline.core.replay import ReplayBuffer, SeedReplay


def fill_random_episodes(buffer: ReplayBuffer, rng: np.random.Generator, n_episodes: int) -> list:
    """Observations encode (episode, t) so successors can be checked after sampling."""
    layouts = []
    for episode in range(n_episodes):
        length = int(rng.integers(1, 9))
        terminated_end = bool(rng.integers(0, 2))
        buffer.start_episode(np.array([episode, 0.0], dtype=np.float32))
        for t in range(length):
            last = t == length - 1
            buffer.add(
                action=np.array([episode + t / 100], dtype=np.float32),
                reward=float(t),
                terminated=last and terminated_end,
                next_obs=np.array([episode, t + 1.0], dtype=np.float32),
            )
        layouts.append((length, terminated_end))
    return layouts


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("seq_len", [1, 3, 5])
def test_sequences_never_cross_episode_end(seed, seq_len):
    rng = np.random.default_rng(seed)
    capacity = int(rng.integers(seq_len + 2, 120))  # small: the ring wraps many times
    buffer = ReplayBuffer(capacity, obs_dim=2, action_dim=1, seq_len=seq_len)
    fill_random_episodes(buffer, rng, n_episodes=60)
    starts = [
        i
        for i in range(capacity)
        if all(buffer.has_next[(i + k) % capacity] for k in range(seq_len))
    ]
    assert buffer.num_sequences == len(starts) > 0  # a brute-force recount
    torch.manual_seed(seed)
    seq = buffer.sample_sequences(256)
    episode, t = seq.obs[..., 0], seq.obs[..., 1]
    assert seq.obs.shape == (seq_len + 1, 256, 2) and seq.action.shape == (seq_len, 256, 1)
    assert torch.all(episode == episode[0])  # one episode per sequence
    assert torch.all(t[1:] - t[:-1] == 1)  # consecutive steps, next obs is the successor
    torch.testing.assert_close(seq.action[..., 0], episode[:-1] + t[:-1] / 100)
    torch.testing.assert_close(seq.reward, t[:-1])
    assert torch.all(seq.terminated[:-1] == 0)  # a terminal can only be the last step


def test_index_sets_match_a_brute_force_recount():
    rng = np.random.default_rng(1)
    buffer = ReplayBuffer(50, obs_dim=2, action_dim=1, seq_len=3)
    fill_random_episodes(buffer, rng, n_episodes=40)
    valid = [
        i for i in range(buffer.capacity) if all(buffer.has_next[(i + k) % 50] for k in range(3))
    ]
    assert sorted(buffer.sequence_starts._members[: buffer.num_sequences]) == valid
    assert buffer.num_transitions == int(buffer.has_next.sum())


def test_transitions_cover_terminal_steps_and_store_terminated_only():
    buffer = ReplayBuffer(100, obs_dim=2, action_dim=1, seq_len=3)
    buffer.start_episode(np.array([0, 0], dtype=np.float32))
    buffer.add(np.zeros(1), 1.0, True, np.array([0, 1], dtype=np.float32))  # terminated after 1
    buffer.start_episode(np.array([1, 0], dtype=np.float32))
    for t in range(4):  # truncated (time limit) episode: no terminal flag
        buffer.add(np.zeros(1), 0.0, False, np.array([1, t + 1], dtype=np.float32))
    assert buffer.num_transitions == 5 and buffer.num_sequences == 2
    torch.manual_seed(0)
    batch = buffer.sample_transitions(400)
    first_episode = batch.obs[:, 0] == 0
    assert first_episode.any()  # an episode shorter than K still trains critic and reward
    assert torch.all(batch.terminated[first_episode] == 1)
    assert torch.all(batch.terminated[~first_episode] == 0)
    torch.testing.assert_close(batch.next_obs[:, 1], batch.obs[:, 1] + 1)


def test_load_episodes_matches_incremental_adds_and_state_round_trip():
    rng = np.random.default_rng(3)
    lengths = np.array([1, 2, 5, 3])
    obs = rng.normal(size=(lengths.sum() + len(lengths), 4)).astype(np.float32)
    actions = rng.uniform(-1, 1, size=(lengths.sum(), 2)).astype(np.float32)
    rewards = rng.normal(size=lengths.sum()).astype(np.float32)
    terms = np.zeros(lengths.sum(), dtype=bool)
    terms[0] = True
    bulk = ReplayBuffer(30, 4, 2, seq_len=2)
    bulk.load_episodes(obs, actions, rewards, terms, lengths)
    inc = ReplayBuffer(30, 4, 2, seq_len=2)
    o, a = 0, 0
    for length in lengths:
        inc.start_episode(obs[o])
        for t in range(length):
            inc.add(actions[a], rewards[a], terms[a], obs[o + t + 1])
            a += 1
        o += length + 1
    for name in ("obs", "action", "reward", "terminated"):
        torch.testing.assert_close(getattr(bulk, name), getattr(inc, name))
    assert sorted(bulk.sequence_starts._members[: bulk.num_sequences]) == sorted(
        inc.sequence_starts._members[: inc.num_sequences]
    )
    restored = ReplayBuffer(30, 4, 2, seq_len=2)
    restored.load_state_dict(inc.state_dict())
    torch.manual_seed(7)
    s1 = inc.sample_sequences(32)
    torch.manual_seed(7)
    s2 = restored.sample_sequences(32)
    torch.testing.assert_close(s1.obs, s2.obs)
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer(31, 4, 2, seq_len=2).load_state_dict(inc.state_dict())


def test_memory_is_one_observation_per_slot():
    replay = ReplayBuffer(1000, 348, 17, 3)
    per_slot = ReplayBuffer.bytes_per_slot(348, 17)
    assert replay.nbytes() == 1000 * per_slot
    assert 4 * 348 < per_slot < 4 * 348 * 1.15  # observations dominate; never stored twice
    # 1M Humanoid-v5 transitions: about 1.5 GB (see docs/speed.md)
    assert 1.45e9 < 10**6 * per_slot < 1.55e9


def fill_seed_episodes(
    buffer: ReplayBuffer, seed: int, rng: np.random.Generator, n_episodes: int
) -> None:
    """Episodes whose observations encode (seed, episode, t) and actions seed + episode + t."""
    for episode in range(n_episodes):
        length = int(rng.integers(1, 9))
        terminated_end = bool(rng.integers(0, 2))
        buffer.start_episode(np.array([seed, episode, 0.0], dtype=np.float32))
        for t in range(length):
            buffer.add(
                action=np.array([1000 * seed + episode + t / 100], dtype=np.float32),
                reward=float(t),
                terminated=t == length - 1 and terminated_end,
                next_obs=np.array([seed, episode, t + 1.0], dtype=np.float32),
            )


def test_seed_replay_samples_each_seeds_own_buffer():
    seeds, seq_len, batch = 3, 3, 128
    replay = SeedReplay.create(seeds, 60, obs_dim=3, action_dim=1, seq_len=seq_len)
    assert len(replay.buffers) == seeds
    for s, buffer in enumerate(replay.buffers):  # different data, lengths and counts per seed
        fill_seed_episodes(buffer, s, np.random.default_rng(10 + s), n_episodes=15 + 10 * s)
    assert len({b.num_sequences for b in replay.buffers}) > 1  # the counts are per seed
    torch.manual_seed(0)
    seq = replay.sample_sequences(batch)
    assert seq.obs.shape == (seeds, seq_len + 1, batch, 3)
    assert seq.action.shape == (seeds, seq_len, batch, 1)
    assert seq.reward.shape == seq.terminated.shape == (seeds, seq_len, batch)
    seed, episode, t = seq.obs.unbind(-1)
    rows = torch.arange(seeds, dtype=torch.float32).view(-1, 1, 1)
    assert torch.all(seed == rows)  # row s holds buffer s's observations only
    assert torch.all(episode == episode[:, :1])  # one episode per sequence
    assert torch.all(t[:, 1:] - t[:, :-1] == 1)  # consecutive: never across an episode end
    torch.testing.assert_close(
        seq.action[..., 0], 1000 * seed[:, :-1] + episode[:, :-1] + t[:, :-1] / 100
    )
    torch.testing.assert_close(seq.reward, t[:, :-1])
    assert torch.all(seq.terminated[:, :-1] == 0)  # a terminal can only be the last step

    tr = replay.sample_transitions(batch)
    assert tr.obs.shape == tr.next_obs.shape == (seeds, batch, 3)
    assert tr.action.shape == (seeds, batch, 1)
    assert tr.reward.shape == tr.terminated.shape == (seeds, batch)
    rows = rows.view(-1, 1)
    assert torch.all(tr.obs[..., 0] == rows) and torch.all(tr.next_obs[..., 0] == rows)
    torch.testing.assert_close(tr.next_obs[..., 1], tr.obs[..., 1])  # the same episode
    torch.testing.assert_close(tr.next_obs[..., 2], tr.obs[..., 2] + 1)  # its successor
    torch.testing.assert_close(
        tr.action[..., 0], 1000 * tr.obs[..., 0] + tr.obs[..., 1] + tr.obs[..., 2] / 100
    )
    torch.testing.assert_close(tr.reward, tr.obs[..., 2])


def test_shared_seed_replay_draws_its_own_indices_per_seed_and_one_seed_is_the_buffer():
    buffer = ReplayBuffer(120, obs_dim=3, action_dim=1, seq_len=3)
    fill_seed_episodes(buffer, 0, np.random.default_rng(4), n_episodes=30)
    shared = SeedReplay.shared(buffer, 3)
    torch.manual_seed(1)
    seq, tr = shared.sample_sequences(64), shared.sample_transitions(64)
    assert seq.obs.shape == (3, 4, 64, 3) and tr.obs.shape == (3, 64, 3)
    for a, b in ((0, 1), (0, 2), (1, 2)):  # each seed's own draw from the one buffer
        assert not torch.equal(seq.obs[a], seq.obs[b])
        assert not torch.equal(tr.obs[a], tr.obs[b])
    episode, t = seq.obs[..., 1], seq.obs[..., 2]
    assert torch.all(episode == episode[:, :1]) and torch.all(t[:, 1:] - t[:, :-1] == 1)
    torch.testing.assert_close(tr.next_obs[..., 2], tr.obs[..., 2] + 1)

    one = SeedReplay.shared(buffer, 1)
    torch.manual_seed(2)
    got_seq, got_tr = one.sample_sequences(32), one.sample_transitions(32)
    torch.manual_seed(2)
    want_seq, want_tr = buffer.sample_sequences(32), buffer.sample_transitions(32)
    for name in ("obs", "action", "reward", "terminated"):
        got, want = getattr(got_seq, name), getattr(want_seq, name)
        assert got.shape == (1, *want.shape) and torch.equal(got[0], want), name
    for name in ("obs", "action", "reward", "next_obs", "terminated"):
        got, want = getattr(got_tr, name), getattr(want_tr, name)
        assert got.shape == (1, *want.shape) and torch.equal(got[0], want), name
