"""alm dataset make-suite: D4RL's five levels (random, medium, medium-replay, expert,
medium-expert) as Minari datasets per env."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import minari
import numpy as np
import pytest
from conftest import TINY_OVERRIDES

from alm_offline.core.replay import ReplayBuffer
from alm_offline.datasets.action_box import ActionBox
from alm_offline.datasets.convert import save_dataset
from alm_offline.datasets.episodes import DatasetError, concatenate
from alm_offline.datasets.safety import MEMORY_HEADROOM
from alm_offline.datasets.suite import SUITE_KINDS, merge_record, replay_dataset, suite_id
from alm_offline.training.checkpoint import read_checkpoint


def test_suite_ids_follow_minari_s_namespaces():
    assert suite_id("alm-suite", "HalfCheetah-v5", "medium") == "alm-suite/halfcheetah/medium-v0"
    assert suite_id("x", "Walker2d-v5", "medium-replay") == "x/walker2d/medium-replay-v0"


def test_suite_records_of_two_runs_merge(tmp_path):
    """Two make-suite runs (say one per env, side by side) share one suite.json."""
    path = tmp_path / "suite.json"
    first = {"prefix": "p", "seed": 0, "datasets": [{"id": "p/a/random-v0", "steps": 1}],
             "behaviour": {"A-v5": {"seconds": 1}}}  # fmt: skip
    second = {"prefix": "p", "seed": 0, "datasets": [{"id": "p/b/random-v0", "steps": 2}],
              "behaviour": {"B-v5": {"seconds": 2}}}  # fmt: skip
    merge_record(path, first)
    merge_record(path, second)
    again = {**first, "datasets": [{"id": "p/a/random-v0", "steps": 3}]}
    merged = merge_record(path, again)
    assert json.loads(path.read_text()) == merged
    assert merged["datasets"] == [
        {"id": "p/a/random-v0", "steps": 3}, {"id": "p/b/random-v0", "steps": 2}
    ]  # fmt: skip
    assert set(merged["behaviour"]) == {"A-v5", "B-v5"}


def _fill(
    replay: ReplayBuffer,
    rng,
    episodes: list[tuple[int, bool]],
    obs_dim: int = 3,
    action_dim: int = 2,
) -> list[np.ndarray]:
    """Episodes of (length, terminated) through the online API, action t/10 at step t;
    returns their obs arrays."""
    written = []
    for length, terminated in episodes:
        obs = rng.normal(size=(length + 1, obs_dim)).astype(np.float32)
        replay.start_episode(obs[0])
        for t in range(length):
            action = np.full(action_dim, t / 10, dtype=np.float32)
            replay.add(action, float(t), terminated and t == length - 1, obs[t + 1])
        written.append(obs)
    return written


def test_a_replay_reads_back_as_its_episodes_in_order():
    rng = np.random.default_rng(0)
    replay = ReplayBuffer(100, 3, 2, seq_len=1)
    shape = [(4, True), (6, False), (3, True), (5, False)]  # the last: cut by the run's end
    written = _fill(replay, rng, shape)
    data = replay_dataset(replay.state_dict(), "InvertedPendulum-v5")
    assert data.episode_lengths.tolist() == [4, 6, 3, 5]
    assert np.array_equal(data.observations, np.concatenate(written))
    assert data.rewards.tolist() == [float(t) for length, _ in shape for t in range(length)]
    ends = np.cumsum(data.episode_lengths) - 1
    assert data.terminations[ends].tolist() == [True, False, True, False]
    assert data.truncations[ends].tolist() == [False, True, False, True]
    assert data.terminations.sum() == 2 and data.truncations.sum() == 2
    assert np.allclose(data.agent_actions()[:4, 0], [0.0, 0.1, 0.2, 0.3])


def test_a_replay_is_written_in_env_units_that_minari_reads(minari_store):
    """The replay holds agent actions in [-1, 1]; the medium-replay dataset stores them in
    InvertedPendulum-v5's own [-3, 3], and Minari's own loader reads them so."""
    replay = ReplayBuffer(100, 4, 1, seq_len=1)
    _fill(replay, np.random.default_rng(1), [(5, True), (4, False)], obs_dim=4, action_dim=1)
    data = replay_dataset(replay.state_dict(), "InvertedPendulum-v5")
    save_dataset(data, "t/pendulum/medium-replay-v0", "minari")
    back = minari.load_dataset("t/pendulum/medium-replay-v0")
    episodes = list(back.iterate_episodes())
    assert [len(ep.actions) for ep in episodes] == [5, 4]
    assert np.allclose(episodes[0].actions[:, 0], 3 * np.arange(5) / 10)
    assert [bool(ep.terminations[-1]) for ep in episodes] == [True, False]
    assert [bool(ep.truncations[-1]) for ep in episodes] == [False, True]


def test_a_wrapped_replay_is_refused():
    replay = ReplayBuffer(10, 3, 2, seq_len=1)
    _fill(replay, np.random.default_rng(0), [(6, True), (6, True)])
    with pytest.raises(DatasetError, match="larger than the run's steps"):
        replay_dataset(replay.state_dict(), "InvertedPendulum-v5")


def test_two_datasets_concatenate_episode_by_episode():
    first = replay_dataset(_filled(), "InvertedPendulum-v5")
    replay = ReplayBuffer(100, 4, 1, seq_len=1)
    _fill(replay, np.random.default_rng(2), [(3, False), (7, True), (2, True)], 4, 1)
    second = replay_dataset(replay.state_dict(), "InvertedPendulum-v5")
    second.episode_seeds = np.array([11, 12, 13])
    both = concatenate(first, second)
    both.validate()
    assert both.episode_lengths.tolist() == [5, 4, 3, 7, 2]
    assert both.episode_seeds.tolist() == [-1, -1, 11, 12, 13]  # first recorded none
    for i in range(5):
        source, j = (first, i) if i < 2 else (second, i - 2)
        for key, value in both.episode(i).items():
            assert np.array_equal(value, source.episode(j)[key]), (i, key)
    assert both.env_id == "InvertedPendulum-v5" and both.action_box.same_as(first.action_box)

    with pytest.raises(DatasetError, match="env_id InvertedPendulum-v5 and Hopper-v5"):
        concatenate(first, replace(second, env_id="Hopper-v5"))
    with pytest.raises(DatasetError, match="action boxes"):
        concatenate(first, replace(second, action_box=ActionBox(low=[-3.0], high=[3.0])))
    with pytest.raises(DatasetError, match="obs_dim 4 and 3"):
        concatenate(first, replay_dataset(_filled_3d(), "InvertedPendulum-v5"))


def _filled_3d() -> dict:
    replay = ReplayBuffer(100, 3, 1, seq_len=1)
    _fill(replay, np.random.default_rng(3), [(4, True)], obs_dim=3, action_dim=1)
    return replay.state_dict()


def _suite_command(tmp_path, *args: str) -> subprocess.CompletedProcess:
    tiny = [o for o in TINY_OVERRIDES if not o.startswith(("env=", "steps=", "agent.buffer"))]
    return subprocess.run(
        [
            sys.executable, "-m", "cli", "dataset", "make-suite", "--prefix", "t",
            "--config", "quick", "--work-dir", str(tmp_path / "w"), *args, *tiny,
        ],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
    )  # fmt: skip


def _episodes(dataset_id: str) -> list:
    return list(minari.load_dataset(dataset_id).iterate_episodes())


@pytest.mark.slow
def test_make_suite_writes_five_minari_datasets_that_minari_reads(tmp_path, minari_store):
    result = _suite_command(
        tmp_path, "--envs", "Hopper-v5", "--steps", "1500", "--train-steps", "300",
        "--expert-steps", "700",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads((tmp_path / "w" / "suite.json").read_text())
    rows = {row["id"]: row for row in record["datasets"]}
    assert list(rows) == [f"t/hopper/{kind}-v0" for kind in SUITE_KINDS]
    for dataset_id, row in rows.items():
        data = minari.load_dataset(dataset_id)
        assert data.total_steps == row["steps"]
        assert data.total_episodes == row["episodes"]
        returns = [float(ep.rewards.sum()) for ep in data.iterate_episodes()]
        assert np.isclose(np.mean(returns), row["return_mean"], rtol=1e-5)
        assert 0 < row["normalized_score_mean"] < 100  # D4RL's hopper reference scores
    assert rows["t/hopper/random-v0"]["steps"] == 1500
    assert rows["t/hopper/medium-v0"]["steps"] == 1500
    assert rows["t/hopper/medium-replay-v0"]["steps"] == 300  # the whole training run
    assert rows["t/hopper/expert-v0"]["steps"] == 1500
    assert rows["t/hopper/medium-expert-v0"]["steps"] == 3000
    behaviour = record["behaviour"]["Hopper-v5"]
    assert [at for at, _ in behaviour["evaluations"]] == [150, 300]  # the medium policy's
    # the expert phase: the same run resumed to --expert-steps, recorded apart
    expert = behaviour["expert"]
    assert expert["steps"] == 700 and [at for at, _ in expert["evaluations"]] == [450, 600, 700]
    medium_state = read_checkpoint(behaviour["checkpoint"])  # checkpoints/medium.pt
    expert_state = read_checkpoint(expert["checkpoint"])  # checkpoints/expert.pt
    assert medium_state["counters"]["env_steps"] == 300
    assert expert_state["counters"]["env_steps"] == expert_state["config"]["steps"] == 700
    assert medium_state["replay"]["size"] < medium_state["replay"]["capacity"] == 602
    assert expert_state["replay"]["size"] == 602  # the ring wrapped in the expert phase
    # medium-expert: exactly medium's episodes, then expert's
    medium, expert_episodes = _episodes("t/hopper/medium-v0"), _episodes("t/hopper/expert-v0")
    mixed = _episodes("t/hopper/medium-expert-v0")
    assert len(mixed) == len(medium) + len(expert_episodes)
    for got, want in zip(mixed, medium + expert_episodes, strict=True):
        for key in ("observations", "actions", "rewards", "terminations", "truncations"):
            assert np.array_equal(getattr(got, key), getattr(want, key))
    # the replay's episodes are the training run's, whose warm-up is uniform random actions
    replay = minari.load_dataset("t/hopper/medium-replay-v0")
    first = next(iter(replay.iterate_episodes()))
    assert np.all(np.abs(first.actions) <= 1.0) and first.actions.std() > 0.3


@pytest.mark.slow
def test_make_suite_levels_without_the_expert_skip_its_training(tmp_path, minari_store):
    result = _suite_command(
        tmp_path, "--envs", "InvertedPendulum-v5", "--steps", "100", "--train-steps", "150",
        "--levels", "medium,random",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "expert" not in result.stdout
    record = json.loads((tmp_path / "w" / "suite.json").read_text())
    ids = ["t/invertedpendulum/random-v0", "t/invertedpendulum/medium-v0"]  # D4RL's order
    assert [row["id"] for row in record["datasets"]] == ids
    assert sorted(minari.list_local_datasets()) == sorted(ids)
    assert "expert" not in record["behaviour"]["InvertedPendulum-v5"]
    checkpoints = tmp_path / "w" / "invertedpendulum-behaviour" / "checkpoints"
    assert not (checkpoints / "expert.pt").exists()
    assert read_checkpoint(checkpoints / "latest.pt")["counters"]["env_steps"] == 150


def test_the_memory_check_counts_medium_expert_twice(monkeypatch):
    import alm_offline.tools.make_suite as suite
    from alm_offline.runtime.envs import describe_env

    envs = [describe_env("InvertedPendulum-v5")]
    row = 4 * (2 * 4 + 1 + 1) + 2  # bytes of one transition: obs, next obs, action, reward
    monkeypatch.setattr(suite, "available_memory", lambda: 1.5 * row * 10**6 * MEMORY_HEADROOM)
    suite._check_memory(envs, ("random", "medium", "expert"), 10**6, 10)
    with pytest.raises(DatasetError, match="GB available"):
        suite._check_memory(envs, SUITE_KINDS, 10**6, 10)


# --------------------------------------------------- make-suite: checked before training
@pytest.fixture
def no_training(monkeypatch):
    """make-suite's behaviour runs, replaced by a failure: a hostile input must be refused
    before any of them starts (and so before anything is written)."""
    import alm_offline.tools.make_suite as suite

    def refuse(*args, **kwargs):
        raise AssertionError("make-suite started a behaviour run")

    monkeypatch.setattr(suite, "start_online", refuse)
    monkeypatch.setattr(suite, "train", refuse)


def _tree(root) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _make_suite(work, *args: str):
    from click.testing import CliRunner

    from cli import alm

    base = ["--envs", "InvertedPendulum-v5", "--steps", "20", "--train-steps", "20"]
    return CliRunner().invoke(
        alm, ["dataset", "make-suite", *base, "--work-dir", str(work), *map(str, args)]
    )


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--prefix", ""], "--prefix '' does not make dataset ids: '/invertedpendulum/random-v0'"),
        (["--prefix", "/tmp/abs"], "is not a Minari dataset id"),
        (["--prefix", "a/../.."], "is not a Minari dataset id"),
        (["--prefix", "x//y"], "is not a Minari dataset id"),
        (["--prefix", "my suite"], "is not a Minari dataset id"),
        (["--envs", "NoSuch-v1"], "NoSuch-v1"),
        (["--envs", "InvertedPendulum-v5,InvertedPendulum-v5"], "twice"),
        (["--envs", "InvertedPendulum-v5,InvertedPendulum-v4"], "twice"),
        (["--steps", "0"], "--steps"),
        (["--steps", "-5"], "--steps"),
        (["--train-steps", "0"], "--train-steps"),
        (["--expert-steps", "20"], "--expert-steps (20) must be larger than --train-steps (20)"),
        (["--expert-steps", "3", "--levels", "random"], "must be larger than --train-steps"),
        (["--expert-steps", "0"], "--expert-steps"),
        (["--levels", "random,expert,nosuch"], "--levels: unknown level 'nosuch'"),
        (["--levels", "Expert"], "unknown level 'Expert' (the levels: random, medium,"),
        (["--levels", ","], "--levels names no level"),
        (["--levels", "random,random"], "--levels names 'random' twice"),
        (["--levels", "random,"], "--levels has an empty item in 'random,'"),
        (["--levels", "medium,,random"], "--levels has an empty item"),
        (["--steps", str(10**12)], "GB available"),
        (["--train-steps", str(10**11)], "GB available"),
        (["--seed", "-1"], "seed"),
        (["--seed", str(2**32 - 1)], "seed"),
        (["--seed", str(2**32 - 2)], "expert seed + 2"),
        (["--config", "nosuch"], "nosuch"),
        (["nosuch.key=1"], "nosuch"),
        (["method=iql"], "offline baseline"),
        (["steps=5"], "steps= is set by make-suite"),
        (["env=Hopper-v5"], "env= is set by make-suite"),
    ],
)
def test_make_suite_refuses_bad_input_before_anything(
    args, fragment, tmp_path, minari_store, no_training
):
    from conftest import assert_one_line_error

    assert_one_line_error(_make_suite(tmp_path / "work", *args), fragment)
    assert _tree(tmp_path) == [] and _tree(minari_store) == []


def test_make_suite_refuses_an_existing_dataset_or_run(tmp_path, minari_store, no_training):
    from conftest import assert_one_line_error

    data = replay_dataset(_filled(), "InvertedPendulum-v5")
    save_dataset(data, "t/invertedpendulum/medium-v0", "minari")
    before = _tree(minari_store)
    assert_one_line_error(_make_suite(tmp_path / "w", "--prefix", "t"), "already exists")
    assert _tree(minari_store) == before and not (tmp_path / "w").exists()

    run_dir = tmp_path / "w" / "invertedpendulum-behaviour"
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text("env: InvertedPendulum-v5\n")
    assert_one_line_error(_make_suite(tmp_path / "w"), "already holds a run")
    assert _tree(minari_store) == before and _tree(tmp_path / "w") == [
        "invertedpendulum-behaviour", "invertedpendulum-behaviour/config.yaml"
    ]  # fmt: skip


def test_make_suite_refuses_unwritable_places(tmp_path, minari_store, no_training, monkeypatch):
    from conftest import assert_one_line_error

    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert_one_line_error(_make_suite(blocker / "work"), "cannot write")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(blocker / "store"))
    assert_one_line_error(_make_suite(tmp_path / "work"), "cannot write")
    assert _tree(tmp_path) == ["a-file"] and blocker.read_text() == "x"


def test_suite_ids_are_checked():
    with pytest.raises(DatasetError, match="is not a Minari dataset id"):
        suite_id("", "Hopper-v5", "random")
    with pytest.raises(DatasetError, match="is not a Minari dataset id"):
        suite_id("../up", "Hopper-v5", "random")


def _filled() -> dict:
    replay = ReplayBuffer(100, 4, 1, seq_len=1)
    _fill(replay, np.random.default_rng(1), [(5, True), (4, False)], obs_dim=4, action_dim=1)
    return replay.state_dict()
