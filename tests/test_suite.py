"""alm dataset make-suite: random, medium and medium-replay Minari datasets per env."""

from __future__ import annotations

import json
import subprocess
import sys

import minari
import numpy as np
import pytest
from conftest import TINY_OVERRIDES

from alm_offline.core.replay import ReplayBuffer
from alm_offline.datasets.convert import save_dataset
from alm_offline.datasets.episodes import DatasetError
from alm_offline.datasets.suite import merge_record, replay_dataset, suite_id


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


@pytest.mark.slow
def test_make_suite_writes_three_minari_datasets_that_minari_reads(tmp_path, minari_store):
    tiny = [o for o in TINY_OVERRIDES if not o.startswith(("env=", "steps=", "agent.buffer"))]
    result = subprocess.run(
        [
            sys.executable, "-m", "cli", "dataset", "make-suite",
            "--envs", "Hopper-v5", "--prefix", "t", "--steps", "1500",
            "--train-steps", "400", "--config", "quick", "--work-dir", str(tmp_path / "w"),
            *tiny,
        ],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads((tmp_path / "w" / "suite.json").read_text())
    rows = {row["id"]: row for row in record["datasets"]}
    assert list(rows) == ["t/hopper/random-v0", "t/hopper/medium-v0", "t/hopper/medium-replay-v0"]
    for dataset_id, row in rows.items():
        data = minari.load_dataset(dataset_id)
        assert data.total_steps == row["steps"]
        assert data.total_episodes == row["episodes"]
        returns = [float(ep.rewards.sum()) for ep in data.iterate_episodes()]
        assert np.isclose(np.mean(returns), row["return_mean"], rtol=1e-5)
        assert 0 < row["normalized_score_mean"] < 100  # D4RL's hopper reference scores
    assert rows["t/hopper/random-v0"]["steps"] == 1500
    assert rows["t/hopper/medium-v0"]["steps"] == 1500
    assert rows["t/hopper/medium-replay-v0"]["steps"] == 400  # the whole training run
    behaviour = record["behaviour"]["Hopper-v5"]
    assert [at for at, _ in behaviour["evaluations"]][-1] == 400
    # the replay's episodes are the training run's, whose warm-up is uniform random actions
    replay = minari.load_dataset("t/hopper/medium-replay-v0")
    first = next(iter(replay.iterate_episodes()))
    assert np.all(np.abs(first.actions) <= 1.0) and first.actions.std() > 0.3


# --------------------------------------------------- make-suite: checked before training
@pytest.fixture
def no_training(monkeypatch):
    """make-suite's behaviour runs, replaced by a failure: a hostile input must be refused
    before any of them starts (and so before anything is written)."""
    import alm_offline.training.start as start

    def refuse(*args, **kwargs):
        raise AssertionError("make-suite started a behaviour run")

    monkeypatch.setattr(start, "start_online", refuse)
    monkeypatch.setattr(start, "train", refuse)


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
        (["--steps", str(10**12)], "GB available"),
        (["--train-steps", str(10**11)], "GB available"),
        (["--seed", "-1"], "seed"),
        (["--seed", str(2**32 - 1)], "seed"),
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
