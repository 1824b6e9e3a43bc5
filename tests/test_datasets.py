"""Dataset library: episodes, D4RL HDF5, Minari, conversion, collection, replay loading."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import warnings
from pathlib import Path

import gymnasium as gym
import h5py
import minari
import numpy as np
import pytest
import torch

from alm_offline.core.replay import ReplayBuffer
from alm_offline.datasets import (
    ActionBox,
    DatasetError,
    DatasetWarning,
    EpisodeDataset,
    collect,
    convert,
    list_datasets,
    load_dataset,
    random_policy,
    read_hdf5,
    read_minari_folder,
    read_minari_id,
    write_hdf5,
    write_minari,
)
from alm_offline.runtime.envs import describe_env

ARRAYS = ("observations", "actions", "rewards", "terminations", "truncations", "episode_lengths")
D4RL_ARRAYS = ("observations", "actions", "rewards", "terminals", "timeouts", "next_observations")


@pytest.fixture(scope="module")
def pendulum() -> EpisodeDataset:
    """300 random steps of InvertedPendulum-v5: many short terminated episodes."""
    return collect("InvertedPendulum-v5", random_policy(1, seed=0), steps=300, seed=0)


@pytest.fixture(scope="module")
def cheetah() -> EpisodeDataset:
    """1200 random steps of HalfCheetah-v5: one full episode and one cut at the step limit."""
    return collect("HalfCheetah-v5", random_policy(6, seed=1), steps=1200, seed=1)


def synthetic(lengths: list[int], ends: list[str], obs_dim: int = 3, act_dim: int = 2, seed=0):
    """An EpisodeDataset of the given episode lengths; ends[i] is 'term', 'trunc' or 'both'."""
    rng = np.random.default_rng(seed)
    steps = sum(lengths)
    terminations = np.zeros(steps, dtype=bool)
    truncations = np.zeros(steps, dtype=bool)
    last = np.cumsum(lengths) - 1
    for index, end in zip(last, ends, strict=True):
        terminations[index] = end in ("term", "both")
        truncations[index] = end in ("trunc", "both")
    return EpisodeDataset(
        observations=rng.standard_normal((steps + len(lengths), obs_dim)),
        actions=rng.uniform(-1, 1, (steps, act_dim)),
        rewards=rng.standard_normal(steps),
        terminations=terminations,
        truncations=truncations,
        episode_lengths=lengths,
        action_box=ActionBox.unit(act_dim),
    )


def write_d4rl(path: Path, data: EpisodeDataset, timeouts: bool = True, next_obs: bool = True):
    """Write ``data`` the way D4RL files look, with ``infos/`` and ``metadata/`` groups."""
    write_hdf5(data, path)
    with h5py.File(path, "a") as file:
        if not timeouts:
            del file["timeouts"]
        if not next_obs:
            del file["next_observations"]
        n = len(file["rewards"])
        file["infos/qpos"] = np.zeros((n, 4))
        file["infos/action_log_probs"] = np.zeros(n)
        del file["metadata"]
        file["metadata/algorithm"] = np.bytes_("SAC")
        file["metadata/iteration"] = np.int64(1000)
        file["metadata/policy/fc0/weight"] = np.zeros((4, 4))
        file["metadata"].attrs["env_id"] = "Hopper-v5"
        file["metadata"].attrs["ref_min_score"] = -1.5
        file["metadata"].attrs["ref_max_score"] = 10.0
    return path


def assert_same_arrays(a: EpisodeDataset, b: EpisodeDataset) -> None:
    for name in ARRAYS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and np.array_equal(x, y), name


def hdf5_arrays(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as file:
        return {name: file[name][()] for name in D4RL_ARRAYS}


# ------------------------------------------------------------------ episodes
def test_normalized_score_follows_d4rl(cheetah: EpisodeDataset) -> None:
    low, high = cheetah.ref_min_score, cheetah.ref_max_score
    scores = cheetah.normalized_score(np.array([low, high, (low + high) / 2]))
    np.testing.assert_allclose(scores, [0.0, 100.0, 50.0])
    with pytest.raises(DatasetError, match="no reference scores"):
        synthetic([2], ["term"]).normalized_score(1.0)


def test_returns_and_summary(pendulum: EpisodeDataset) -> None:
    returns = pendulum.episode_returns()
    assert returns.shape == (pendulum.num_episodes,)
    assert np.isclose(returns.sum(), pendulum.rewards.astype(np.float64).sum())
    summary = json.loads(json.dumps(pendulum.summary()))
    assert summary["episodes"] == pendulum.num_episodes and summary["steps"] == 300
    n_obs = 300 + pendulum.num_episodes
    assert summary["observations"] == {"shape": [n_obs, 4], "dtype": "float32"}
    assert summary["terminations"] + summary["truncations"] == pendulum.num_episodes


def test_construction_rejects_non_numeric_arrays() -> None:
    data = synthetic([2], ["term"])
    with pytest.raises(DatasetError, match="rewards must be numeric"):
        EpisodeDataset(
            data.observations,
            data.actions,
            np.array(["a", "b"]),
            data.terminations,
            data.truncations,
            data.episode_lengths,
        )


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda d: d.observations.__setitem__((1, 0), np.nan), "observations hold 1 NaN"),
        (lambda d: d.rewards.__setitem__(0, np.inf), "rewards hold 1 NaN or infinite"),
        (lambda d: d.terminations.__setitem__(0, True), "1 terminations fall inside"),
        (lambda d: setattr(d, "rewards", d.rewards[:-1]), "rewards has shape"),
        (lambda d: setattr(d, "observations", d.observations[:-1]), "observations has shape"),
        (lambda d: setattr(d, "episode_lengths", np.array([3, 0, 2])), "at least one"),
        (lambda d: setattr(d, "ref_min_score", 1.0), "both reference scores"),
    ],
)
def test_validate_names_the_problem(corrupt, message: str) -> None:
    data = synthetic([3, 2], ["term", "trunc"])
    corrupt(data)
    with pytest.raises(DatasetError, match=message):
        data.validate()


def test_actions_out_of_range_fail_or_clip() -> None:
    data = synthetic([3, 2], ["term", "trunc"])
    data.actions[0, 0], data.actions[2, 1] = 1.5, -1.25
    match = r"2 action values lie outside the action box \[-1, 1\] \(by up to 0.5"
    with pytest.raises(DatasetError, match=match):
        data.validate()
    with pytest.warns(DatasetWarning, match="clipped 2 action values"):
        data.validate(clip_actions=True)
    assert data.actions[0, 0] == 1.0 and data.actions[2, 1] == -1.0


def test_validate_checks_env_dims(pendulum: EpisodeDataset) -> None:
    pendulum.validate(describe_env("InvertedPendulum-v5"))
    with pytest.raises(DatasetError, match="env Hopper-v5 has 11 and 3"):
        pendulum.validate(describe_env("Hopper-v5"))


# ------------------------------------------------------------------- collect
def test_collect_steps_ends_last_episode_truncated(pendulum: EpisodeDataset) -> None:
    pendulum.validate(describe_env("InvertedPendulum-v5"))
    assert pendulum.num_steps == 300 and pendulum.num_episodes > 5
    ends = np.cumsum(pendulum.episode_lengths) - 1
    assert np.all(pendulum.terminations[ends] | pendulum.truncations[ends])
    assert pendulum.terminations[ends[:-1]].all()  # the pendulum falls before the time limit
    assert pendulum.truncations[-1] and not pendulum.terminations[-1]
    assert pendulum.metadata["mean_return"] == pytest.approx(pendulum.episode_returns().mean())
    assert pendulum.env_id == "InvertedPendulum-v5" and pendulum.ref_min_score is None


def test_collect_full_episodes_and_d4rl_scores(cheetah: EpisodeDataset) -> None:
    assert cheetah.episode_lengths.tolist() == [1000, 200]
    assert cheetah.truncations.sum() == 2 and not cheetah.terminations.any()
    assert (cheetah.ref_min_score, cheetah.ref_max_score) == (-280.178953, 12135.0)
    episodes = collect("InvertedPendulum-v5", random_policy(1, seed=3), episodes=4, seed=3)
    assert episodes.num_episodes == 4


def test_collect_is_seeded_and_noise_is_clipped() -> None:
    def run(noise: float) -> EpisodeDataset:
        return collect("Hopper-v5", lambda obs: np.zeros(3), steps=50, seed=7, noise=noise)

    assert_same_arrays(run(0.5), run(0.5))
    noisy = run(5.0)
    assert np.abs(noisy.actions).max() == 1.0
    assert not np.array_equal(noisy.actions, run(0.0).actions)


def test_collect_rejects_bad_arguments_and_actions() -> None:
    with pytest.raises(DatasetError, match="exactly one"):
        collect("Hopper-v5", lambda obs: np.zeros(3), steps=10, episodes=1)
    with pytest.raises(DatasetError, match="expected 3 finite values"):
        collect("Hopper-v5", lambda obs: np.zeros(2), steps=10)


# ---------------------------------------------------------------------- hdf5
def test_d4rl_file_with_timeouts_infos_and_metadata(tmp_path: Path) -> None:
    data = synthetic([4, 3, 5, 2], ["term", "trunc", "both", "trunc"])
    path = write_d4rl(tmp_path / "hopper-medium-v2.hdf5", data)
    loaded = read_hdf5(path)
    assert_same_arrays(loaded, data)
    assert loaded.env_id == "Hopper-v5"
    assert (loaded.ref_min_score, loaded.ref_max_score) == (-1.5, 10.0)
    assert loaded.metadata["algorithm"] == "SAC" and loaded.metadata["iteration"] == 1000


def test_file_ending_mid_episode_reads_as_truncated(tmp_path: Path) -> None:
    data = synthetic([3, 4], ["term", "trunc"])
    path = write_d4rl(tmp_path / "cut.hdf5", data)
    with h5py.File(path, "a") as file:
        file["timeouts"][-1] = False
    loaded = read_hdf5(path)
    assert loaded.episode_lengths.tolist() == [3, 4] and loaded.truncations[-1]


def test_missing_timeouts_inferred_from_next_observations(tmp_path: Path) -> None:
    data = synthetic([4, 3, 5], ["trunc", "term", "trunc"])
    path = write_d4rl(tmp_path / "old.hdf5", data, timeouts=False)
    with pytest.warns(DatasetWarning, match="no timeouts.*discontinuities"):
        loaded = read_hdf5(path)
    assert_same_arrays(loaded, data)


def test_missing_timeouts_and_next_observations_use_the_step_limit(tmp_path: Path) -> None:
    data = synthetic([4, 4, 2, 4], ["trunc", "trunc", "term", "trunc"])
    path = write_d4rl(tmp_path / "older.hdf5", data, timeouts=False, next_obs=False)
    with pytest.warns(DatasetWarning) as record:
        loaded = read_hdf5(path, max_episode_steps=4)
    messages = " | ".join(str(w.message) for w in record)
    assert "limit of 4 steps" in messages and "dropped the last transition" in messages
    assert loaded.episode_lengths.tolist() == [3, 3, 1, 3]
    assert not loaded.terminations.any() and loaded.truncations.sum() == 4
    kept = [data.episode(i) for i in range(4)]
    np.testing.assert_array_equal(
        loaded.observations, np.concatenate([ep["observations"][:-1] for ep in kept])
    )
    np.testing.assert_array_equal(
        loaded.actions, np.concatenate([ep["actions"][:-1] for ep in kept])
    )
    with pytest.warns(DatasetWarning) as record:
        assert read_hdf5(path).episode_lengths.tolist() == [9, 3]
    assert "inferred from terminals only" in str(record[0].message)


def test_missing_next_observations_drops_one_step_episodes(tmp_path: Path) -> None:
    data = synthetic([3, 1, 2], ["trunc", "term", "term"])
    path = write_d4rl(tmp_path / "nonext.hdf5", data, next_obs=False)
    with pytest.warns(DatasetWarning, match="and 1 one-step episodes"):
        loaded = read_hdf5(path)
    assert loaded.episode_lengths.tolist() == [2, 1]
    np.testing.assert_array_equal(loaded.observations[3:], data.observations[6:8])


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_bytes(b"not an hdf5 file at all"), "is not an HDF5 file"),
        (
            lambda p: h5py.File(p, "w").create_dataset("observations", data=np.zeros((3, 2))),
            "lacks the D4RL arrays actions, rewards, terminals",
        ),
    ],
)
def test_read_hdf5_rejects_bad_files(tmp_path: Path, make, message: str) -> None:
    path = tmp_path / "bad.hdf5"
    make(path)
    with pytest.raises(DatasetError, match=message):
        read_hdf5(path)


def test_read_hdf5_rejects_mismatched_lengths_and_strings(tmp_path: Path) -> None:
    path = write_d4rl(tmp_path / "a.hdf5", synthetic([3, 2], ["term", "trunc"]))
    with h5py.File(path, "a") as file:
        rewards = file["rewards"][()]
        del file["rewards"]
        file["rewards"] = rewards[:-1]
    with pytest.raises(DatasetError, match="rewards has 4 rows, observations has 5"):
        read_hdf5(path)
    with h5py.File(path, "a") as file:
        del file["rewards"]
        file["rewards"] = np.array([b"x"] * 5)
    with pytest.raises(DatasetError, match="rewards must be numeric"):
        read_hdf5(path)


# --------------------------------------------------------------------- minari
def test_hdf5_to_minari_to_hdf5_is_bit_for_bit(tmp_path: Path) -> None:
    data = synthetic(
        [5, 3, 7, 1, 4], ["term", "trunc", "both", "term", "trunc"], obs_dim=11, act_dim=3
    )
    source = write_d4rl(tmp_path / "source.hdf5", data)
    convert(source, tmp_path / "hop-v0")
    back = convert(tmp_path / "hop-v0", tmp_path / "back.hdf5")
    original, final = hdf5_arrays(source), hdf5_arrays(tmp_path / "back.hdf5")
    for name in D4RL_ARRAYS:
        assert original[name].dtype == final[name].dtype, name
        assert np.array_equal(original[name], final[name]), name
    assert back.episode_lengths.tolist() == [5, 3, 7, 1, 4]
    assert (back.ref_min_score, back.ref_max_score, back.env_id) == (-1.5, 10.0, "Hopper-v5")
    with h5py.File(tmp_path / "back.hdf5") as file:
        assert file["metadata"].attrs["ref_min_score"] == -1.5
        assert file["metadata"].attrs["algorithm"] == "SAC"


def test_collected_data_round_trips_through_minari(cheetah: EpisodeDataset, tmp_path) -> None:
    write_minari(cheetah, tmp_path / "cheetah-v0")
    back = read_minari_folder(tmp_path / "cheetah-v0")
    assert_same_arrays(back, cheetah)
    assert (back.env_id, back.ref_min_score, back.ref_max_score) == (
        "HalfCheetah-v5",
        cheetah.ref_min_score,
        cheetah.ref_max_score,
    )
    assert back.metadata["mean_return"] == cheetah.metadata["mean_return"]


def test_minari_output_opens_with_minari(pendulum: EpisodeDataset, minari_store: Path) -> None:
    write_minari(pendulum, minari_store / "alm" / "pendulum-random-v0")
    dataset = minari.load_dataset("alm/pendulum-random-v0")
    assert dataset.total_episodes == pendulum.num_episodes and dataset.total_steps == 300
    assert dataset.action_space == gym.spaces.Box(-3.0, 3.0, (1,), np.float32)  # env units
    assert dataset.env_spec.id == "InvertedPendulum-v5"
    first = next(dataset.iterate_episodes())
    np.testing.assert_array_equal(first.observations, pendulum.episode(0)["observations"])
    assert "alm/pendulum-random-v0" in minari.list_local_datasets()
    assert_same_arrays(read_minari_id("alm/pendulum-random-v0"), pendulum)


@pytest.mark.slow
def test_minari_command_line_shows_our_dataset(pendulum: EpisodeDataset, minari_store) -> None:
    write_minari(pendulum, minari_store / "alm" / "pendulum-random-v0")
    result = subprocess.run(
        ["minari", "show", "alm/pendulum-random-v0"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "MINARI_DATASETS_PATH": str(minari_store), "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stderr
    assert "alm/pendulum-random-v0" in result.stdout
    episodes_row = next(line for line in result.stdout.splitlines() if "Total Episodes" in line)
    assert str(pendulum.num_episodes) in episodes_row


def test_truncated_task_env_spec_serialises(tmp_path: Path) -> None:
    data = synthetic([3, 2], ["term", "trunc"], obs_dim=27, act_dim=8)
    data.env_id = "T-Ant-v5"
    write_minari(data, tmp_path / "tant-v0")
    metadata = json.loads((tmp_path / "tant-v0" / "data" / "metadata.json").read_text())
    spec = json.loads(metadata["env_spec"])
    assert spec["id"] == "T-Ant-v5"
    assert spec["kwargs"]["include_cfrc_ext_in_observation"] is False
    assert read_minari_folder(tmp_path / "tant-v0").env_id == "T-Ant-v5"


def test_minari_destination_names(tmp_path: Path, minari_store: Path) -> None:
    data = synthetic([2], ["term"])
    with pytest.raises(DatasetError, match="named like NAME-v0"):
        write_minari(data, tmp_path / "not-an-id")
    assert write_minari(data, minari_store / "ns" / "sub" / "name-v3") == "ns/sub/name-v3"
    assert write_minari(data, tmp_path / "elsewhere-v1") == "elsewhere-v1"


def test_missing_minari_id_says_how_to_get_it() -> None:
    with pytest.raises(
        DatasetError,
        match=r"first with `alm dataset info mujoco/hopper/x-v0 --download` or `minari download",
    ):
        load_dataset("mujoco/hopper/x-v0")  # a caller without --download names one with it
    with pytest.raises(DatasetError, match=r"with --download or `minari download mujoco/hop"):
        load_dataset("mujoco/hopper/x-v0", download=False)


def test_minari_folder_without_metadata(tmp_path: Path) -> None:
    (tmp_path / "broken-v0" / "data").mkdir(parents=True)
    (tmp_path / "broken-v0" / "data" / "main_data.hdf5").write_bytes(b"")
    with pytest.raises(DatasetError, match="not a Minari dataset folder"):
        load_dataset(tmp_path / "broken-v0")


# -------------------------------------------------------------------- convert
def test_load_dataset_dispatch_and_reference_scores(cheetah, tmp_path, minari_store) -> None:
    write_hdf5(cheetah, tmp_path / "c.hdf5")
    write_minari(cheetah, minari_store / "c-v0")
    with h5py.File(tmp_path / "c.hdf5", "a") as file:
        del file["metadata"]  # no env, no scores, no action box: --env is needed
    with pytest.raises(DatasetError, match=r"names no env.*--env ENV_ID"):
        load_dataset(tmp_path / "c.hdf5")
    named = tmp_path / "halfcheetah-random-v2.hdf5"
    shutil.copy(tmp_path / "c.hdf5", named)
    by_name = load_dataset(named, env_id="HalfCheetah-v5")  # the name decides the scores
    assert by_name.ref_max_score == 12135.0
    with h5py.File(named, "a") as file:
        file.create_group("metadata").attrs.update(
            {"action_low": -np.ones(6), "action_high": np.ones(6)}
        )
    by_file = load_dataset(named)  # a declared box is enough without an env
    assert by_file.env_id is None and by_file.ref_max_score == 12135.0
    assert load_dataset(tmp_path / "c.hdf5", env_id="HalfCheetah-v5").ref_max_score == 12135.0
    by_id = load_dataset("c-v0")
    by_folder = load_dataset(minari_store / "c-v0" / "data")
    assert_same_arrays(by_id, by_folder)
    assert by_id.env_id == "HalfCheetah-v5"
    given = load_dataset("c-v0", ref_min=0.0, ref_max=50.0)
    assert (given.ref_min_score, given.ref_max_score) == (0.0, 50.0)
    with pytest.raises(DatasetError, match="both reference scores"):
        load_dataset("c-v0", ref_min=0.0)
    with pytest.raises(DatasetError, match="neither a file, a folder nor a Minari"):
        load_dataset("no such thing")


def test_convert_refuses_existing_destination_then_replaces(pendulum, tmp_path) -> None:
    source = write_hdf5(pendulum, tmp_path / "p.hdf5")
    for dst in (tmp_path / "out.hdf5", tmp_path / "out-v0"):
        convert(source, dst)
        before = sorted(p.name for p in tmp_path.iterdir())
        with pytest.raises(DatasetError, match="already exists"):
            convert(source, dst)
        convert(source, dst, overwrite=True, ref_min=1.0, ref_max=2.0)
        assert load_dataset(dst).ref_max_score == 2.0
        assert sorted(p.name for p in tmp_path.iterdir()) == before  # no staging leftovers
    with pytest.raises(DatasetError, match="is the source"):
        convert(source, source, overwrite=True)


def test_interrupted_write_leaves_no_destination(pendulum, tmp_path, monkeypatch) -> None:
    def fail(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(minari, "create_dataset_from_buffers", fail)
    with pytest.raises(KeyboardInterrupt):
        write_minari(pendulum, tmp_path / "half-v0")
    monkeypatch.setattr(h5py.Group, "create_dataset", fail)
    with pytest.raises(KeyboardInterrupt):
        write_hdf5(pendulum, tmp_path / "half.hdf5")
    assert list(tmp_path.iterdir()) == []


def test_list_datasets(pendulum, tmp_path, minari_store) -> None:
    write_minari(pendulum, minari_store / "alm" / "p-v0")
    write_hdf5(pendulum, tmp_path / "p.hdf5")
    (tmp_path / "junk.h5").write_bytes(b"junk")
    listing = list_datasets(tmp_path)
    assert [row["id"] for row in listing["minari"]] == ["alm/p-v0"]
    assert listing["minari"][0]["episodes"] == pendulum.num_episodes
    rows = {Path(row["path"]).name: row for row in listing["hdf5"]}
    assert rows["p.hdf5"]["episodes"] == pendulum.num_episodes
    assert rows["p.hdf5"]["env_id"] == "InvertedPendulum-v5"
    assert "error" in rows["junk.h5"]


# --------------------------------------------------------------------- replay
def test_replay_sequences_never_cross_episode_ends(pendulum: EpisodeDataset) -> None:
    seq_len = 8
    assert (pendulum.episode_lengths < seq_len).any()  # short episodes must be skipped
    replay = ReplayBuffer(len(pendulum.observations) + 10, 4, 1, seq_len=seq_len)
    replay.load_episodes(
        pendulum.observations,
        pendulum.actions,
        pendulum.rewards,
        pendulum.terminations,
        pendulum.episode_lengths,
    )
    where = {}  # observation row -> (episode, step)
    for i in range(pendulum.num_episodes):
        for t, row in enumerate(pendulum.episode(i)["observations"]):
            where[row.tobytes()] = (i, t)
    assert len(where) == len(pendulum.observations)
    batch = replay.sample_sequences(512, generator=torch.Generator().manual_seed(0))
    obs = batch.obs.numpy()  # (K+1, B, D)
    for b in range(obs.shape[1]):
        places = [where[obs[k, b].tobytes()] for k in range(seq_len + 1)]
        episode, start = places[0]
        assert places == [(episode, start + k) for k in range(seq_len + 1)]
        assert pendulum.episode_lengths[episode] >= seq_len
        steps = pendulum.step_starts()[episode] + start + np.arange(seq_len)
        np.testing.assert_array_equal(batch.reward[:, b].numpy(), pendulum.rewards[steps])
        np.testing.assert_array_equal(
            batch.terminated[:, b].numpy(), pendulum.terminations[steps].astype(np.float32)
        )
    transitions = replay.sample_transitions(512, generator=torch.Generator().manual_seed(1))
    for b in range(512):
        episode, t = where[transitions.obs[b].numpy().tobytes()]
        assert where[transitions.next_obs[b].numpy().tobytes()] == (episode, t + 1)


def test_no_warnings_on_clean_round_trip(cheetah: EpisodeDataset, tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", DatasetWarning)
        write_hdf5(cheetah, tmp_path / "c.hdf5")
        convert(tmp_path / "c.hdf5", tmp_path / "c-v0")


def test_a_new_format_is_one_row_of_the_table(pendulum, tmp_path, monkeypatch) -> None:
    """Reading, writing, the source-is-destination check and ``alm dataset list`` all go
    through ``FORMATS``: a format added as one row (HDF5 bytes under a ``.alt`` suffix)
    works with nothing else changed; convert.py names no format."""
    import importlib

    from alm_offline.datasets import describe_listing
    from alm_offline.datasets.formats import FORMATS, DatasetFormat, listing_row

    convert_module = importlib.import_module("alm_offline.datasets.convert")
    from alm_offline.datasets.hdf5 import hdf5_overview, read_hdf5

    def alt_listing(folder):
        files = sorted(folder.glob("*.alt")) if folder is not None else []
        return {"alt": [hdf5_overview(p) for p in files]}

    alt = DatasetFormat(
        name="alt",
        detect_rule="a name ending in .alt",
        suffixes=(".alt",),
        detect=lambda spec: str(spec).endswith(".alt"),
        read=lambda spec, download, env: read_hdf5(Path(spec)),
        locate=lambda dst: Path(dst),
        check_destination=lambda path: None,
        write=lambda data, path, overwrite: str(write_hdf5(data, path, overwrite=overwrite)),
        source_path=lambda spec: Path(spec),
        listing=alt_listing,
        listing_lines=lambda got: [listing_row(r["path"], r, "{episodes} eps") for r in got["alt"]],
    )
    monkeypatch.setattr("alm_offline.datasets.formats.FORMATS", {"alt": alt, **FORMATS})
    monkeypatch.setattr(convert_module, "FORMATS", {"alt": alt, **FORMATS})
    source = write_hdf5(pendulum, tmp_path / "p.hdf5")
    written = convert(source, tmp_path / "copy.alt")
    assert load_dataset(tmp_path / "copy.alt").fingerprint() == written.fingerprint()
    listing = list_datasets(tmp_path)
    assert [Path(row["path"]).name for row in listing["alt"]] == ["copy.alt"]
    assert [Path(row["path"]).name for row in listing["hdf5"]] == ["p.hdf5"]
    assert f"copy.alt  {pendulum.num_episodes} eps" in describe_listing(listing)
    with pytest.raises(DatasetError, match="is the source"):
        convert(tmp_path / "copy.alt", tmp_path / "copy.alt", overwrite=True)
    tree = ast.parse(Path(convert_module.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not imported & {"hdf5", "minari_io", "minari", "h5py"}, imported


def test_a_minari_id_converted_onto_itself_is_refused(pendulum, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "store"))
    convert(write_hdf5(pendulum, tmp_path / "p.hdf5"), "alm-test/self-v0")
    with pytest.raises(DatasetError, match="is the source"):
        convert("alm-test/self-v0", "alm-test/self-v0", overwrite=True)
