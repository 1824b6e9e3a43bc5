"""Datasets with no env (issue 28, item 5): D4RL-layout files from robots or simulators that
gymnasium cannot make. `alm dataset info` describes them, `--action-low/--action-high`
declare their action box, `alm train-offline` trains them with evaluation off and resumes,
and `alm eval` asks for `--env`."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner
from conftest import TINY_OFFLINE, assert_one_line_error, train_tiny_run

from alm_offline.config import ConfigError, load_config
from alm_offline.core.replay import ReplayBuffer
from alm_offline.errors import AlmWarning
from alm_offline.training.checkpoint import checkpoint_path, read_checkpoint
from alm_offline.training.start import start_offline
from cli import alm

TINY = TINY_OFFLINE
BOX = ("--action-low", "-2", "--action-high", "2")


def invoke(*args: str | Path):
    return CliRunner().invoke(alm, [str(arg) for arg in args])


def write_custom(
    path: Path,
    *,
    obs_dim: int = 5,
    action_dim: int = 2,
    scale: float = 2.0,
    box: tuple[list[float], list[float]] | None = None,
) -> np.ndarray:
    """A D4RL-layout file of 6 episodes x 50 steps naming no env, actions uniform in
    [-scale, scale] (declared as ``box`` in ``metadata/`` when given); returns the actions."""
    rng = np.random.default_rng(0)
    n, length = 300, 50
    timeouts = np.zeros(n, dtype=bool)
    timeouts[length - 1 :: length] = True
    observations = rng.normal(size=(n, obs_dim)).astype(np.float32)
    actions = rng.uniform(-scale, scale, size=(n, action_dim)).astype(np.float32)
    with h5py.File(path, "w") as file:
        file["observations"] = observations
        file["next_observations"] = rng.normal(size=(n, obs_dim)).astype(np.float32)
        file["actions"] = actions
        file["rewards"] = rng.normal(size=n).astype(np.float32)
        file["terminals"] = np.zeros(n, dtype=bool)
        file["timeouts"] = timeouts
        if box is not None:
            group = file.create_group("metadata")
            group.attrs["action_units"] = "env"
            group.attrs["action_low"] = np.asarray(box[0], dtype=np.float32)
            group.attrs["action_high"] = np.asarray(box[1], dtype=np.float32)
    return actions


@pytest.fixture(scope="module")
def custom(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    path = tmp_path_factory.mktemp("data") / "custom.hdf5"
    return path, write_custom(path)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, custom) -> tuple[Path, object]:
    """A finished 60-update run on the no-env file, its box from the command line."""
    run_dir = tmp_path_factory.mktemp("runs") / "run"
    result = invoke("train-offline", "--dataset", custom[0], *BOX, *TINY, f"run_dir={run_dir}")
    assert result.exit_code == 0, result.output
    return run_dir, result


# ------------------------------------------------------------------ alm dataset info
def test_info_without_a_box_describes_the_actions_as_stored(custom) -> None:
    path, actions = custom
    result = invoke("dataset", "info", path)
    assert result.exit_code == 0, result.output
    rows = dict(line.split(":", 1) for line in result.stdout.splitlines())
    assert rows["env"].strip() == "unknown" and rows["steps"].strip() == "300"
    assert rows["action box"].strip().startswith("unknown: actions in stored units")
    low, high = actions.min(), actions.max()
    assert rows["action range"].strip() == f"min {low:.4g}, max {high:.4g} (as stored)"

    summary = json.loads(invoke("dataset", "info", path, "--json").stdout)
    assert summary["action_box"] is None and summary["env_id"] is None
    assert summary["actions"]["shape"] == [300, 2]
    np.testing.assert_array_equal(summary["actions"]["min"], actions.min(axis=0))
    np.testing.assert_array_equal(summary["actions"]["max"], actions.max(axis=0))


def test_info_and_convert_with_a_command_line_box(custom, tmp_path: Path) -> None:
    path, actions = custom
    summary = json.loads(invoke("dataset", "info", path, "--json", *BOX).stdout)
    assert summary["action_box"] == "[-2, 2]"
    per_dim = ("--action-low", "-2,-3", "--action-high", "2,3")
    summary = json.loads(invoke("dataset", "info", path, "--json", *per_dim).stdout)
    assert summary["action_box"] == "[-2, -3] to [2, 3]"

    # outside the declared box: the existing rule, an error or --clip-actions
    narrow = ("--action-low", "-1", "--action-high", "1")
    outside = int(np.count_nonzero(np.abs(actions) > 1))
    assert_one_line_error(
        invoke("dataset", "info", path, *narrow),
        f"{outside} action values lie outside the action box [-1, 1]",
    )
    out = tmp_path / "clipped.hdf5"
    result = invoke("dataset", "convert", path, out, *narrow, "--clip-actions")
    assert result.exit_code == 0, result.output
    with h5py.File(out) as file:  # stored units kept, the box now declared in the file
        np.testing.assert_array_equal(file["actions"][()], np.clip(actions, -1, 1))
        np.testing.assert_array_equal(file["metadata"].attrs["action_low"], [-1, -1])
        np.testing.assert_array_equal(file["metadata"].attrs["action_high"], [1, 1])
    assert json.loads(invoke("dataset", "info", out, "--json").stdout)["action_box"] == "[-1, 1]"

    # without a box there is nothing to write the actions' units with
    result = invoke("dataset", "convert", path, tmp_path / "unknown.hdf5")
    assert_one_line_error(result, "declares no action box")
    assert not (tmp_path / "unknown.hdf5").exists()


def test_a_command_line_box_must_agree_with_the_files(tmp_path: Path) -> None:
    path = tmp_path / "boxed.hdf5"
    write_custom(path, box=([-2, -2], [2, 2]))
    assert_one_line_error(
        invoke("dataset", "info", path, "--action-low", "-3", "--action-high", "3"),
        f"--action-low/--action-high declare the action box [-3, 3], but {path} declares [-2, 2]",
    )
    result = invoke(
        "dataset", "info", path, "--json", "--action-low", "-2,-2", "--action-high", "2"
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["action_box"] == "[-2, 2]"


@pytest.mark.parametrize(
    ("bounds", "fragment"),
    [
        (("-2,-2,-2", "2"), "--action-low has 3 values, the actions 2 dims"),
        (("-2", "2,2,2,2"), "--action-high has 4 values, the actions 2 dims"),
        (("2", "2"), "must have low < high in every dim, got [2, 2]"),
        (("-1,3", "1,2"), "must have low < high in every dim, got [-1, 3] to [1, 2]"),
        (("abc", "2"), "'abc' is not a number or comma-separated numbers"),
        (("-2,", "2"), "'-2,' is not a number"),
        (("nan", "2"), "'nan' holds a value that is not finite"),
        (("-inf", "2"), "'-inf' holds a value that is not finite"),
        (("-2", None), "give both --action-low and --action-high, or neither"),
    ],
)
def test_bad_bounds_are_one_line_errors(custom, tmp_path: Path, bounds, fragment) -> None:
    low, high = bounds
    args = ["--action-low", low] + (["--action-high", high] if high is not None else [])
    assert_one_line_error(invoke("dataset", "info", custom[0], *args), fragment)
    out = tmp_path / "out.hdf5"
    assert_one_line_error(invoke("dataset", "convert", custom[0], out, *args), fragment)
    run_dir = tmp_path / "run"
    result = invoke("train-offline", "--dataset", custom[0], *args, *TINY, f"run_dir={run_dir}")
    assert_one_line_error(result, fragment)
    assert not out.exists() and not run_dir.exists()


# ------------------------------------------------------------------- train-offline
def test_training_without_env_evaluates_nothing_and_checkpoints(trained, custom) -> None:
    run_dir, result = trained
    assert "warning: dataset" in result.stderr and "names no env: training without" in result.stderr
    assert result.stdout.startswith("no env: no evaluation after 60 updates")
    assert f"alm eval {run_dir} --env ENV_ID" in result.stdout
    stored = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert (stored["env"], stored["dataset"], stored["eval"]["every"]) == ("", str(custom[0]), 0)
    assert (stored["action_low"], stored["action_high"]) == ([-2.0], [2.0])
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["env"] is None and summary["mode"] == "offline" and summary["updates"] == 60
    for key in ("eval_return_mean", "best_eval_return_mean", "best_checkpoint"):
        assert summary[key] is None, key
    assert summary["evaluations"] == [] and summary["normalized_score_mean"] is None
    assert summary["dataset_return_mean"] == pytest.approx(
        np.mean([r.sum() for r in np.split(_rewards(custom[0]), 6)])
    )
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [row["updates"] for row in rows] == [20, 40, 60]
    assert not (run_dir / "eval.jsonl").exists()
    assert not checkpoint_path(run_dir, "best").exists()
    state = read_checkpoint(checkpoint_path(run_dir))
    assert state["counters"]["updates"] == 60 and state["dims"] == {"obs": 5, "action": 2}


def test_training_without_env_resumes(tmp_path: Path, custom) -> None:
    run_dir = tmp_path / "run"
    args = ("train-offline", "--dataset", custom[0], *BOX, "--quiet", *TINY)
    assert invoke(*args, "steps=30", f"run_dir={run_dir}").exit_code == 0
    again = invoke(*args, f"run_dir={run_dir}")  # no warning before the refusal
    assert_one_line_error(again, "already holds a run; use --resume")
    assert_one_line_error(
        invoke("train-offline", "--resume", run_dir, "--action-low", "-1"), "cannot change on"
    )
    result = invoke("train-offline", "--resume", run_dir, "--quiet", "steps=60")
    assert result.exit_code == 0, result.output
    assert "warning" not in result.stderr  # the stored config already says eval.every=0
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["updates"] == 60 and summary["eval_return_mean"] is None
    assert read_checkpoint(checkpoint_path(run_dir))["counters"]["updates"] == 60
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [row["updates"] for row in rows] == [20, 30, 40, 60]


def test_a_declared_box_scales_the_agents_actions_into_the_unit_box(custom, tmp_path) -> None:
    path, actions = custom
    overrides = (*TINY, f"dataset={path}", "action_low=[-2,-3]", "action_high=[2,5]")
    with pytest.warns(AlmWarning, match="names no env: training without evaluation"):
        start = start_offline(None, (*overrides, f"run_dir={tmp_path / 'run'}"))
    assert start.cfg.eval.every == 0 and start.cfg.env == ""
    try:
        replay = ReplayBuffer(len(start.dataset.observations), 5, 2, seq_len=3)
        replay.load_episodes(*start.dataset.replay_arrays())
    finally:
        start.lock.release()
    seen = replay.action[torch.from_numpy(replay.has_next[: replay.size])].numpy()
    expected = (actions - np.array([0.0, 1.0])) / np.array([2.0, 4.0])  # mid, half-width
    np.testing.assert_allclose(seen, expected, rtol=0, atol=1e-6)
    assert seen.min() >= -1.0 and seen.max() <= 1.0 and np.abs(seen).max() > 0.9


def test_training_needs_a_known_box(tmp_path: Path) -> None:
    path = tmp_path / "unit.hdf5"
    write_custom(path, scale=1.0)  # already in [-1, 1], but nothing says so
    run_dir = tmp_path / "run"
    result = invoke("train-offline", "--dataset", path, *TINY, f"run_dir={run_dir}")
    assert_one_line_error(result, "declares no action box, so the units of its actions")
    assert "--action-low/--action-high (-1 and 1 if" in result.output
    assert "env=ENV_ID" in result.output and not run_dir.exists()
    unit = ("--action-low", "-1", "--action-high", "1")
    ok = invoke("train-offline", "--dataset", path, *unit, "--quiet", *TINY, f"run_dir={run_dir}")
    assert ok.exit_code == 0, ok.output


def test_a_dataset_env_gymnasium_lacks_trains_with_eval_every_zero(tmp_path: Path) -> None:
    path = tmp_path / "robot.hdf5"
    write_custom(path, box=([-2, -2], [2, 2]))
    with h5py.File(path, "a") as file:
        file["metadata"].attrs["env_id"] = "MyRobot-v0"
    run_dir = tmp_path / "run"
    result = invoke("train-offline", "--dataset", path, *TINY, f"run_dir={run_dir}")
    assert_one_line_error(result, "eval.every=0 trains without evaluation")
    assert not run_dir.exists()
    result = invoke(
        "train-offline", "--dataset", path, "--quiet", *TINY, "eval.every=0", f"run_dir={run_dir}"
    )
    assert result.exit_code == 0, result.output
    assert json.loads((run_dir / "summary.json").read_text())["env"] == "MyRobot-v0"


# ------------------------------------------------------------------ reading such a run
def test_eval_of_a_run_without_env_asks_for_one(trained) -> None:
    run_dir, _ = trained
    result = invoke("eval", run_dir)
    assert_one_line_error(result, f"'{run_dir}' was trained on dataset '")
    assert "which names no env: evaluate it with --env ENV_ID" in result.output
    assert "(an env of obs/action dims 5/2)" in result.output
    assert_one_line_error(invoke("eval", run_dir, "--env", "InvertedPendulum-v5"), "has 4/1")
    assert_one_line_error(invoke("analyze", "rollout", run_dir), "which names no env")
    assert_one_line_error(invoke("plot", run_dir), "never evaluates (eval.every=0)")
    result = invoke("plot", run_dir, "--metric", "loss/model_bound", "--out", run_dir / "c.png")
    assert result.exit_code == 0, result.output
    assert (run_dir / "c.png").stat().st_size > 0


def test_eval_with_an_env_of_the_same_dims(tmp_path: Path) -> None:
    path = tmp_path / "pendulum-like.hdf5"
    write_custom(path, obs_dim=3, action_dim=1, box=([-2], [2]))  # Pendulum-v1's dims and box
    run_dir = tmp_path / "run"
    result = invoke("train-offline", "--dataset", path, "--quiet", *TINY, f"run_dir={run_dir}")
    assert result.exit_code == 0, result.output
    result = invoke("eval", run_dir, "--env", "Pendulum-v1", "--episodes", "1", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["env"] == "Pendulum-v1" and report["episodes"] == 1
    assert len(report["returns"]) == 1 and report["return_mean"] == report["returns"][0] < 0


# ------------------------------------------------------------------------ eval.every
def test_eval_every_zero_means_never_and_online_runs_take_it(tmp_path: Path) -> None:
    assert load_config(None, ["eval.every=0"]).eval.every == 0
    with pytest.raises(ConfigError, match=r"eval\.every must be >= 0, got -1"):
        load_config(None, ["eval.every=-1"])
    run_dir = train_tiny_run(tmp_path / "run", "steps=150", "eval.every=0")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["env"] == "InvertedPendulum-v5" and summary["env_steps"] == 150
    assert summary["eval_return_mean"] is None and summary["evaluations"] == []


def _rewards(path: Path) -> np.ndarray:
    with h5py.File(path) as file:
        return file["rewards"][()].astype(np.float64)
