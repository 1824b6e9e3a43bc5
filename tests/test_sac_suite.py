"""`alm dataset make-suite --behaviour sac`: D4RL's recipe with d3rlpy's online SAC, at toy sizes.

The pure parts by hand (the medium snapshot, the log's episodes, the HDF5 infos, the replayed
states); the command end to end in the baselines venv: the layout read back, a make-suite
killed with SIGKILL and rerun gives the same bytes as an unbroken one, bad input is one line.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from alm_offline.datasets import collect, load_dataset, random_policy, write_hdf5
from alm_offline.datasets.episodes import DatasetError
from alm_offline.datasets.states import replayed_states
from alm_offline.training.sac_behaviour import TransitionLog
from alm_offline.training.sac_suite import log_dataset, medium_snapshot
from cli import alm
from tests.conftest import assert_one_line_error

REPO = Path(__file__).resolve().parents[1]
TOY = (
    "--envs", "Hopper-v5", "--steps", "300", "--train-steps", "600", "--snapshot-every", "200",
    "--random-steps", "200", "--update-start", "100", "--eval-episodes", "1",
)  # fmt: skip
LEVELS = ("medium", "medium-replay", "expert", "medium-expert")


def make_suite_command(python: str, root: Path) -> list[str]:
    out, work = root / "out", root / "work"
    return [sys.executable, "-m", "cli", "dataset", "make-suite", "--behaviour", "sac", *TOY,
            "--out", str(out), "--work-dir", str(work), "--python", python]  # fmt: skip


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def unbroken(tmp_path_factory: pytest.TempPathFactory, baselines_python: str) -> Path:
    root = tmp_path_factory.mktemp("unbroken")
    done = subprocess.run(
        make_suite_command(baselines_python, root), capture_output=True, text=True, cwd=REPO
    )
    assert done.returncode == 0, done.stderr
    assert "Hopper-v5: SAC 600/600 env steps" in done.stdout
    return root / "out" / "hopper-sac"


# ---------------------------------------------------------------- the pure parts


def test_medium_is_the_snapshot_closest_to_045_of_the_final() -> None:
    curve = [[10, 100.0], [20, 400.0], [30, 500.0], [40, 1000.0]]
    assert medium_snapshot(curve) == 20  # 0.45 x 1000 = 450: 400 and 500 tie, the earlier
    assert medium_snapshot([[10, -50.0], [20, 60.0], [30, 200.0]]) == 20  # 90: 140, 30, 110
    assert medium_snapshot([[5, 3.0]]) == 5


def test_log_dataset_splits_episodes_and_writes_env_units() -> None:
    log = TransitionLog.empty(7, 2, 3)
    flags = [(0, 0), (1, 0), (0, 0), (0, 1), (0, 0), (0, 0), (0, 0)]  # terminal, timeout
    for t, (terminated, truncated) in enumerate(flags):
        obs, nxt = np.full(2, t, np.float32), np.full(2, t + 0.5, np.float32)
        log.append(obs, np.full(3, 0.5, np.float32), float(t), nxt, terminated, truncated)
    log.episode_seeds = [11, 12, 13, 14]
    data = log_dataset(log, 6, "Hopper-v5", seed=0)  # rows 0-5: the third episode runs on
    assert data.episode_lengths.tolist() == [2, 2, 2]
    assert data.terminations.tolist() == [False, True, False, False, False, False]
    assert data.truncations.tolist() == [False, False, False, True, False, True]
    assert data.open_end and data.episode_seeds.tolist() == [11, 12, 13]
    assert data.observations[:, 0].tolist() == [0, 1, 1.5, 2, 3, 3.5, 4, 5, 5.5]
    assert np.array_equal(data.actions, np.full((6, 3), 0.5, np.float32))  # Hopper: [-1, 1]
    assert data.ref_min_score is not None and data.ref_max_score > data.ref_min_score


def test_write_hdf5_infos_read_back_and_wrong_rows_refused(tmp_path: Path) -> None:
    data = collect("Hopper-v5", random_policy(3, seed=1), steps=40, seed=1)
    states = replayed_states(data)
    assert states["qpos"].shape == (40, 6) and states["qvel"].shape == (40, 6)
    # D4RL's qpos excludes the root x from the observation: obs[:5] = qpos[1:]
    observations, _ = data.transition_observations()
    assert np.allclose(observations[:, :5], states["qpos"][:, 1:], atol=1e-6)
    path = write_hdf5(data, tmp_path / "h.hdf5", infos=states, compression="gzip")
    with h5py.File(path) as file:
        assert np.array_equal(file["infos/qpos"][:], states["qpos"])
        assert file["observations"].compression == "gzip"
    again = write_hdf5(data, tmp_path / "h2.hdf5", infos=states, compression="gzip")
    assert path.read_bytes() == again.read_bytes()  # no times in the file: a remake is equal
    with pytest.raises(DatasetError, match="infos/qvel has 39 rows for 40"):
        write_hdf5(data, tmp_path / "bad.hdf5", infos={"qvel": states["qvel"][:39]})
    assert not (tmp_path / "bad.hdf5").exists()


def test_replay_that_leaves_the_recording_is_refused() -> None:
    data = collect("Hopper-v5", random_policy(3, seed=2), steps=30, seed=2)
    data.actions[5] = -data.actions[5]
    with pytest.raises(DatasetError, match="leaves the recorded observations at transition 6"):
        replayed_states(data)


# ---------------------------------------------------------------- the command


def test_sac_suite_files_in_d4rl_layout(unbroken: Path) -> None:
    suite = json.loads((unbroken / "suite.json").read_text())
    assert [row[0] for row in suite["sac_curve"]] == [200, 400, 600]
    assert suite["medium_snapshot"] in (200, 400, 600)
    assert suite["sac"]["hidden"] == [256, 256] and suite["sac"]["batch_size"] == 256
    for level in LEVELS:
        path = unbroken / f"hopper-sac-{level}.hdf5"
        row = suite["files"][path.name]
        assert row["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        data = load_dataset(path)  # the env from metadata/env_id
        assert data.env_id == "Hopper-v5" and data.num_steps == row["steps"]
        assert abs(data.episode_returns().mean() - row["return_mean"]) < 0.01
        with h5py.File(path) as file:
            assert {"observations", "next_observations", "actions", "rewards", "terminals",
                    "timeouts", "infos", "metadata"} <= set(file)  # fmt: skip
            terminals, timeouts = file["terminals"][:], file["timeouts"][:]
            assert not np.any(terminals & timeouts)
            assert file["infos/qpos"].shape == (row["steps"], 6)
    medium = load_dataset(unbroken / "hopper-sac-medium.hdf5")
    expert = load_dataset(unbroken / "hopper-sac-expert.hdf5")
    mixed = load_dataset(unbroken / "hopper-sac-medium-expert.hdf5")
    assert medium.num_steps == expert.num_steps == 300 and mixed.num_steps == 600
    assert np.array_equal(mixed.actions, np.concatenate([medium.actions, expert.actions]))
    replay = load_dataset(unbroken / "hopper-sac-medium-replay.hdf5")
    assert replay.num_steps == suite["medium_snapshot"]
    assert replay.terminations.any()  # Hopper falls under random actions


def test_killed_make_suite_resumes_to_the_same_bytes(
    tmp_path: Path, unbroken: Path, baselines_python: str
) -> None:
    command = make_suite_command(baselines_python, tmp_path)
    child = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    checkpoint = tmp_path / "work" / "hopper-sac" / "sac-checkpoint.pt"
    deadline = time.monotonic() + 300
    while not checkpoint.exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert child.poll() is None, child.stderr.read()
    os.kill(child.pid, signal.SIGKILL)  # make-suite itself: its SAC child follows it
    child.wait()
    assert not (tmp_path / "out" / "hopper-sac" / "suite.json").exists()
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert digests(tmp_path / "out" / "hopper-sac") == digests(unbroken)
    again = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    assert "every file is made already" in again.stdout  # a finished suite is re-recorded
    assert digests(tmp_path / "out" / "hopper-sac") == digests(unbroken)


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ((), "--behaviour sac needs --out"),
        (("--out", "X", "--prefix", "p"), "--prefix does not apply to --behaviour sac"),
        (("--out", "X", "seed=3"), "OVERRIDES does not apply to --behaviour sac"),
        (("--out", "X", "--envs", "Nope-v0"), "Nope-v0"),
        (("--out", "X", "--snapshot-every", "0"), "--snapshot-every must be a positive"),
        (("--out", "X", "--python", "/no/python"), "'/no/python' is not a file"),
    ],
)
def test_sac_suite_bad_input_is_one_line(
    tmp_path: Path, monkeypatch, extra: tuple[str, ...], fragment: str
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(alm, ["dataset", "make-suite", "--behaviour", "sac", *extra])
    assert_one_line_error(result, fragment)
    assert not (tmp_path / "X").exists()


def test_alm_only_options_refused_for_sac_and_back(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(alm, ["dataset", "make-suite", "--out", "X"])
    assert_one_line_error(result, "--out does not apply to --behaviour alm")


def test_a_file_not_made_by_the_run_is_kept(
    tmp_path: Path, baselines_python: str, monkeypatch
) -> None:
    stranger = tmp_path / "out" / "hopper-sac" / "hopper-sac-medium.hdf5"
    stranger.parent.mkdir(parents=True)
    stranger.write_bytes(b"someone's data")
    monkeypatch.chdir(tmp_path)
    args = ["dataset", "make-suite", "--behaviour", "sac", *TOY, "--out", "out"]
    result = CliRunner().invoke(alm, [*args, "--python", baselines_python])
    assert_one_line_error(result, "was not made by the run in suites/sac/hopper-sac")
    assert stranger.read_bytes() == b"someone's data"
    assert not (tmp_path / "suites").exists()
