"""Datasets as the field writes them: env-unit actions, Minari store ids, exact round trips.

Every foreign dataset here is written by the other tool's own API (``minari.
create_dataset_from_buffers`` with ``EpisodeBuffer``, plain ``h5py`` in D4RL's layout) with
actions in the env's own units, then read, converted both ways and trained on.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import gymnasium as gym
import h5py
import minari
import numpy as np
import pytest
from click.testing import CliRunner, Result
from conftest import assert_one_line_error
from minari.data_collector import EpisodeBuffer

from alm_offline.datasets import (
    DatasetError,
    convert,
    load_dataset,
    read_hdf5,
)
from cli import alm

D4RL_ARRAYS = ("observations", "actions", "rewards", "terminals", "timeouts", "next_observations")
LEGACY_HDF5 = Path(__file__).parent / "data" / "legacy-normalised-pendulum.hdf5"
TINY_OFFLINE = (
    "device=cpu",
    "threads=1",
    "steps=20",
    "checkpoint_every=20",
    "log_every=10",
    "eval.every=20",
    "eval.episodes=1",
    "agent.batch_size=8",
    "agent.hidden_dim=16",
    "agent.model_hidden_dim=16",
    "agent.latent_dim=4",
)


def alm_cli(*args: str | Path) -> Result:
    return CliRunner().invoke(alm, [str(a) for a in args])


def env_unit_buffers(env_id: str, episodes: int, max_steps: int, seed: int) -> list:
    """Episodes of a raw gymnasium env under uniform actions in its own box, as Minari's
    ``EpisodeBuffer``s with their reset seeds (what Minari's DataCollector records)."""
    env = gym.make(env_id)
    env.action_space.seed(seed)
    buffers = []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        observations, actions, rewards, terms, truncs = [obs], [], [], [], []
        for t in range(max_steps):
            action = env.action_space.sample()
            obs, reward, terminated, truncated, _ = env.step(action)
            truncated = truncated or t == max_steps - 1
            observations.append(obs)
            actions.append(action)
            rewards.append(reward)
            terms.append(terminated)
            truncs.append(truncated and not terminated)
            if terminated or truncated:
                break
        buffers.append(
            EpisodeBuffer(
                seed=seed + i,
                observations=np.asarray(observations),
                actions=np.asarray(actions, dtype=np.float32),
                rewards=np.asarray(rewards),
                terminations=np.asarray(terms),
                truncations=np.asarray(truncs),
            )
        )
    env.close()
    return buffers


def minari_in_env_units(dataset_id: str, env_id: str, episodes: int = 3, max_steps: int = 40):
    """A Minari dataset in the local store, written by Minari itself in env units."""
    return minari.create_dataset_from_buffers(
        dataset_id,
        env_unit_buffers(env_id, episodes, max_steps, seed=7),
        env=env_id,
        algorithm_name="uniform",
        author="another tool",
        description=f"uniform actions in the box of {env_id}",
    )


def all_actions(dataset) -> np.ndarray:
    return np.concatenate([ep.actions for ep in dataset.iterate_episodes()])


def hdf5_arrays(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as file:
        return {name: file[name][()] for name in D4RL_ARRAYS}


# ------------------------------------------------------------------- env units
@pytest.mark.slow
@pytest.mark.parametrize(("env_id", "bound"), [("Humanoid-v5", 0.4), ("InvertedPendulum-v5", 3.0)])
def test_minari_env_unit_actions_read_rescaled_trained_and_converted(
    env_id: str, bound: float, tmp_path: Path
) -> None:
    name = env_id.split("-")[0].lower()
    foreign = minari_in_env_units(f"other/{name}-v0", env_id)
    raw = all_actions(foreign)
    assert np.abs(raw).max() > 0.9 * bound  # the whole box is used

    data = load_dataset(f"other/{name}-v0")
    assert data.action_box.describe() == f"[{-bound:g}, {bound:g}]"
    np.testing.assert_array_equal(data.actions, raw)  # held exactly as stored
    np.testing.assert_allclose(data.agent_actions(), raw / bound, rtol=1e-6, atol=1e-7)
    assert np.abs(data.agent_actions()).max() > 0.9  # not read 2.5x too small

    run_dir = tmp_path / "run"
    result = alm_cli(
        "train-offline", "--dataset", f"other/{name}-v0", "--quiet", f"run_dir={run_dir}",
        *TINY_OFFLINE,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (run_dir / "checkpoints" / "latest.pt").is_file()

    hdf5 = tmp_path / f"{name}.hdf5"
    assert alm_cli("dataset", "convert", f"other/{name}-v0", hdf5).exit_code == 0
    with h5py.File(hdf5, "r") as file:
        np.testing.assert_array_equal(file["actions"][()], raw)  # env units, bit for bit
        assert file["metadata"].attrs["action_units"] == "env"
    assert alm_cli("dataset", "convert", hdf5, f"other/{name}-back-v0").exit_code == 0
    back = minari.load_dataset(f"other/{name}-back-v0")
    assert back.action_space == foreign.action_space
    assert back.observation_space == foreign.observation_space
    np.testing.assert_array_equal(all_actions(back), raw)
    for ours, theirs in zip(back.iterate_episodes(), foreign.iterate_episodes(), strict=True):
        np.testing.assert_array_equal(ours.terminations, theirs.terminations)
        np.testing.assert_array_equal(ours.truncations, theirs.truncations)
        np.testing.assert_array_equal(ours.rewards, theirs.rewards.astype(np.float32))
    seeds = [m["seed"] for m in back.storage.get_episode_metadata(range(back.total_episodes))]
    assert seeds == [7, 8, 9]


def d4rl_pendulum_file(path: Path, env_id: str | None = "InvertedPendulum-v5") -> np.ndarray:
    """A D4RL-layout file as other tools write it (plain h5py): 3 episodes of a raw
    InvertedPendulum-v5 under actions in [-3, 3], the last one cut mid-episode (no flag)."""
    env = gym.make("InvertedPendulum-v5")
    rng = np.random.default_rng(3)
    rows: dict[str, list] = {name: [] for name in D4RL_ARRAYS}
    for episode in range(3):
        obs, _ = env.reset(seed=episode)
        for t in range(25):
            action = rng.uniform(-3, 3, 1).astype(np.float32)
            next_obs, reward, terminated, _, _ = env.step(action)
            cut = episode < 2 and t == 24
            for name, value in zip(
                D4RL_ARRAYS,
                (obs, action, reward, terminated, cut and not terminated, next_obs),
                strict=True,
            ):
                rows[name].append(value)
            obs = next_obs
            if terminated:
                break
    env.close()
    # a partial final episode: its last row flags neither terminal nor timeout
    rows["terminals"][-1], rows["timeouts"][-1] = False, False
    with h5py.File(path, "w") as file:
        for name, dtype in zip(D4RL_ARRAYS, ("f4", "f4", "f4", "?", "?", "f4"), strict=True):
            file.create_dataset(name, data=np.asarray(rows[name], dtype=dtype))
        if env_id is not None:
            file.create_group("metadata").attrs["env_id"] = env_id
    return np.asarray(rows["actions"], dtype=np.float32)


def test_d4rl_file_in_env_units_reads_and_needs_an_env_or_box_to_convert_when_it_names_none(
    tmp_path,
) -> None:
    named = tmp_path / "pendulum.hdf5"
    raw = d4rl_pendulum_file(named)
    assert np.abs(raw).max() > 2.5
    data = load_dataset(named)
    np.testing.assert_allclose(data.agent_actions(), raw / 3.0, rtol=1e-6, atol=1e-7)

    anonymous = tmp_path / "anonymous.hdf5"
    d4rl_pendulum_file(anonymous, env_id=None)
    described = alm_cli("dataset", "info", anonymous)  # issue 28: any valid file is described
    assert described.exit_code == 0 and "action box:       unknown" in described.output
    converted = alm_cli("dataset", "convert", anonymous, tmp_path / "out.hdf5")
    assert_one_line_error(converted, "name its env with --env ENV_ID")
    result = alm_cli("dataset", "info", anonymous, "--env", "InvertedPendulum-v5", "--json")
    assert result.exit_code == 0, result.output
    assert '"action_box": "[-3, 3]"' in result.stdout


def test_out_of_box_actions_name_count_and_box_and_clip_in_env_units(tmp_path) -> None:
    path = tmp_path / "wide.hdf5"
    d4rl_pendulum_file(path)
    with h5py.File(path, "a") as file:
        file["actions"][0] = 4.5
        file["actions"][1] = -3.25
    assert_one_line_error(
        alm_cli("dataset", "info", path),
        "2 action values lie outside the action box [-3, 3] of InvertedPendulum-v5",
    )
    clipped = tmp_path / "clipped.hdf5"
    result = alm_cli("dataset", "convert", path, clipped, "--clip-actions")
    assert result.exit_code == 0, result.output
    with h5py.File(clipped, "r") as file:
        assert file["actions"][0, 0] == 3.0 and file["actions"][1, 0] == -3.0


# ---------------------------------------------------------------- legacy files
def test_hdf5_written_before_env_units_still_reads_as_normalised(tmp_path) -> None:
    with h5py.File(LEGACY_HDF5, "r") as file:
        stored = file["actions"][()]
        assert "action_units" not in file["metadata"].attrs  # the old writer said nothing
    assert np.abs(stored).max() <= 1.0
    data = load_dataset(LEGACY_HDF5)
    np.testing.assert_array_equal(data.agent_actions(), stored)
    out = tmp_path / "now.hdf5"
    convert(LEGACY_HDF5, out)
    with h5py.File(out, "r") as file:
        np.testing.assert_allclose(file["actions"][()], stored * 3.0, rtol=1e-6)
        assert file["metadata"].attrs["action_units"] == "env"
    np.testing.assert_allclose(load_dataset(out).agent_actions(), stored, rtol=1e-6, atol=1e-7)


def test_minari_written_before_env_units_still_reads_as_normalised(minari_store: Path) -> None:
    """The old writer declared Box(-1, 1) with the raw env's spec and normalised actions."""
    buffers = [
        dataclasses.replace(buffer, actions=buffer.actions / np.float32(3.0))
        for buffer in env_unit_buffers("InvertedPendulum-v5", 2, 30, seed=1)
    ]
    minari.create_dataset_from_buffers(
        "old-pendulum-v0",
        buffers,
        env="InvertedPendulum-v5",
        author="alm-offline",
        description="Written by alm-offline; actions are normalised to [-1, 1].",
        observation_space=gym.spaces.Box(-np.inf, np.inf, (4,), np.float32),
        action_space=gym.spaces.Box(-1.0, 1.0, (1,), np.float32),
    )
    normalised = np.concatenate([b.actions for b in buffers])
    data = load_dataset("old-pendulum-v0")
    np.testing.assert_array_equal(data.agent_actions(), normalised.astype(np.float32))
    assert alm_cli("dataset", "convert", "old-pendulum-v0", "new-pendulum-v0").exit_code == 0
    new = minari.load_dataset("new-pendulum-v0")
    assert new.action_space == gym.spaces.Box(-3.0, 3.0, (1,), np.float32)
    np.testing.assert_allclose(all_actions(new), normalised * 3.0, rtol=1e-6)


# ----------------------------------------------------------------- Minari ids
def test_minari_ids_go_into_the_store_and_paths_stay_paths(tmp_path, minari_store, monkeypatch):
    monkeypatch.chdir(tmp_path)
    source = tmp_path / "p.hdf5"
    d4rl_pendulum_file(source)
    result = alm_cli("dataset", "convert", source, "mine/pendulum-v0")
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "mine").exists()
    assert (minari_store / "mine" / "pendulum-v0" / "data" / "metadata.json").is_file()
    assert minari.load_dataset("mine/pendulum-v0").total_steps == len(
        hdf5_arrays(source)["rewards"]
    )
    assert "mine/pendulum-v0" in minari.list_local_datasets()

    result = alm_cli("dataset", "convert", source, "./folder/pendulum-v0")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "folder" / "pendulum-v0" / "data" / "metadata.json").is_file()

    result = alm_cli(
        "dataset", "collect", "--env", "InvertedPendulum-v5", "--steps", "30",
        "--out", "mine/collected-v0",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert str(minari_store / "mine" / "collected-v0") in result.output
    assert minari.load_dataset("mine/collected-v0").total_steps == 30


# ---------------------------------------------------------------- round trips
def test_hdf5_minari_hdf5_is_bit_for_bit_with_an_unflagged_final_row(tmp_path) -> None:
    source = tmp_path / "source.hdf5"
    d4rl_pendulum_file(source)
    original = hdf5_arrays(source)
    assert not (original["terminals"][-1] or original["timeouts"][-1])
    data = read_hdf5(source)
    assert data.truncations[-1] and data.open_end  # held as truncated in memory
    convert(source, tmp_path / "mid-v0")
    convert(tmp_path / "mid-v0", tmp_path / "back.hdf5")
    back = hdf5_arrays(tmp_path / "back.hdf5")
    for name in D4RL_ARRAYS:
        assert back[name].dtype == original[name].dtype, name
        np.testing.assert_array_equal(back[name], original[name], err_msg=name)


@pytest.mark.parametrize("env_id", ["InvertedPendulum-v5", "Humanoid-v5"])
def test_our_minari_output_replays_in_the_recovered_env(env_id: str, tmp_path) -> None:
    result = alm_cli(
        "dataset", "collect", "--env", env_id, "--steps", "60", "--noise", "0.2",
        "--out", "ours/replay-v0",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    dataset = minari.load_dataset("ours/replay-v0")
    env = dataset.recover_environment()
    assert env.action_space == dataset.action_space == gym.make(env_id).action_space
    seeds = [m["seed"] for m in dataset.storage.get_episode_metadata(range(dataset.total_episodes))]
    assert len(set(seeds)) == len(seeds) and all(isinstance(s, int) for s in seeds)
    for seed, episode in zip(seeds, dataset.iterate_episodes(), strict=True):
        assert env.action_space.contains(episode.actions[0])
        obs, _ = env.reset(seed=seed)
        np.testing.assert_allclose(obs, episode.observations[0], rtol=1e-6, atol=1e-6)
        for t, action in enumerate(episode.actions):
            obs, reward, terminated, _, _ = env.step(action)
            np.testing.assert_allclose(obs, episode.observations[t + 1], rtol=1e-5, atol=1e-5)
            assert reward == pytest.approx(float(episode.rewards[t]), rel=1e-5, abs=1e-5)
            assert terminated == bool(episode.terminations[t])
    env.close()

    # Minari -> HDF5 -> Minari keeps actions, spaces, boundaries, flags and seeds
    assert alm_cli("dataset", "convert", "ours/replay-v0", tmp_path / "r.hdf5").exit_code == 0
    assert alm_cli("dataset", "convert", tmp_path / "r.hdf5", "ours/again-v0").exit_code == 0
    again = minari.load_dataset("ours/again-v0")
    assert again.action_space == dataset.action_space
    assert again.observation_space == dataset.observation_space
    pairs = zip(again.iterate_episodes(), dataset.iterate_episodes(), strict=True)
    for ours, theirs in pairs:
        for name in ("actions", "observations", "rewards", "terminations", "truncations"):
            np.testing.assert_array_equal(getattr(ours, name), getattr(theirs, name))
    again_seeds = again.storage.get_episode_metadata(range(again.total_episodes))
    assert [m["seed"] for m in again_seeds] == seeds


def test_read_hdf5_without_env_gives_no_box_and_training_needs_one(tmp_path) -> None:
    path = tmp_path / "anonymous.hdf5"
    d4rl_pendulum_file(path, env_id=None)
    data = read_hdf5(path)
    assert data.action_box is None
    with pytest.raises(DatasetError, match="action box is unknown"):
        data.agent_actions()
