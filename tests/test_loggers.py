"""Logging backends: TensorBoard event files read back, resume purging, W&B fail-fast."""

from __future__ import annotations

import itertools
import shutil
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import TINY_OVERRIDES, train_tiny_run

from alm_offline.config import LoggerConfig, load_config
from alm_offline.training.checkpoint import checkpoint_path
from alm_offline.training.loggers import (
    LoggerError,
    TensorBoardLogger,
    check_backends,
    make_run_logger,
    read_jsonl,
)
from alm_offline.training.online import train_online
from cli import alm


def event_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value), ...]} of the run's event files, as TensorBoard sees them."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tensorboard"))
    acc.Reload()
    return {
        tag: [(event.step, event.value) for event in acc.Scalars(tag)]
        for tag in acc.Tags()["scalars"]
    }


def jsonl_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """The same view built from metrics.jsonl and eval.jsonl (online: steps are env steps)."""
    out: dict[str, list[tuple[int, float]]] = {}
    for row in read_jsonl(run_dir / "metrics.jsonl"):
        for key, value in row.items():
            if key not in ("env_step", "updates") and isinstance(value, float | int):
                out.setdefault(key, []).append((row["env_step"], float(value)))
    for row in read_jsonl(run_dir / "eval.jsonl"):
        for key in ("return_mean", "return_std", "return_min", "return_max"):
            out.setdefault(f"eval/{key}", []).append((row["env_step"], row[key]))
    return out


def assert_same_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    events, rows = event_scalars(run_dir), jsonl_scalars(run_dir)
    assert sorted(events) == sorted(rows)
    for tag, expected in rows.items():
        got = events[tag]
        assert [step for step, _ in got] == [step for step, _ in expected], tag
        assert [value for _, value in got] == pytest.approx(
            [value for _, value in expected], rel=1e-6, abs=1e-6
        ), tag
    return events


@pytest.fixture(scope="module")
def tb_run(tmp_path_factory) -> Path:
    """A finished 300-step online run with TensorBoard on (never modified by the tests)."""
    run_dir = tmp_path_factory.mktemp("tb") / "run"
    train_tiny_run(run_dir, "logger.tensorboard=true")
    return run_dir


@pytest.mark.slow
def test_event_files_match_jsonl(tb_run):
    events = assert_same_scalars(tb_run)
    assert {"loss/critic", "eval/return_mean", "updates_per_sec", "exploration_std"} <= set(events)
    assert [step for step, _ in events["loss/critic"]] == [150, 200, 250, 300]
    assert [step for step, _ in events["eval/return_mean"]] == [150, 300]
    assert "returns" not in events and "env_step" not in events and "updates" not in events


@pytest.mark.slow
def test_resume_purges_events_of_the_interrupted_session(tb_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(tb_run, run_dir)
    saved = tmp_path / "latest-300.pt"
    shutil.copy(checkpoint_path(run_dir), saved)

    def resume_to_400() -> None:
        cfg = load_config(str(run_dir / "config.yaml"), ("steps=400",))
        train_online(cfg, run_dir, resume=True, quiet=True)

    resume_to_400()
    # a crash after step 400's events were written but before its checkpoint: the run goes
    # back to the 300-step checkpoint and writes steps 301..400 again
    shutil.copy(saved, checkpoint_path(run_dir))
    resume_to_400()
    assert len(list((run_dir / "tensorboard").glob("events.out.tfevents.*"))) == 3

    events = assert_same_scalars(run_dir)
    for tag, points in events.items():
        steps = [step for step, _ in points]
        assert all(a < b for a, b in itertools.pairwise(steps)), (tag, steps)
        assert steps[-1] == 400, tag
    assert [step for step, _ in events["loss/critic"]] == [150, 200, 250, 300, 350, 400]
    assert [step for step, _ in events["eval/return_mean"]] == [150, 300, 400]


@pytest.fixture
def without_wandb(monkeypatch):
    """Make ``wandb`` unimportable (``find_spec`` -> None), as on a machine without it."""
    monkeypatch.setitem(sys.modules, "wandb", None)


def test_wandb_missing_is_a_one_line_error_before_anything_is_written(tmp_path, without_wandb):
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(
        alm, ["train-online", "--config", "quick", "logger.wandb=true", f"run_dir={run_dir}"]
    )
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)  # no traceback
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert "pip install 'alm-offline[wandb]'" in lines[0]
    assert not run_dir.exists()


def test_check_backends_without_wandb(without_wandb):
    check_backends(LoggerConfig(tensorboard=True, wandb=False))
    with pytest.raises(LoggerError, match=r"pip install 'alm-offline\[wandb\]'"):
        check_backends(LoggerConfig(wandb=True))
    cfg = load_config(None, (*TINY_OVERRIDES, "logger.wandb=true"))
    with pytest.raises(LoggerError):
        make_run_logger(cfg, Path("never-created"))
    assert not Path("never-created").exists()


@pytest.mark.slow
def test_jsonl_only_when_tensorboard_is_off(tmp_path):
    run_dir = tmp_path / "run"
    train_tiny_run(run_dir, "steps=200", "eval.every=200")
    assert not (run_dir / "tensorboard").exists()
    assert [row["env_step"] for row in read_jsonl(run_dir / "metrics.jsonl")] == [150, 200]
    assert [row["env_step"] for row in read_jsonl(run_dir / "eval.jsonl")] == [200]


def test_offline_rows_use_updates_as_step(tmp_path):
    logger = TensorBoardLogger(tmp_path)
    logger.metrics({"updates": 10, "loss/critic": 1.5, "note": "text", "flag": None})
    logger.metrics({"updates": 20, "loss/critic": 0.5})
    row = {"updates": 20, "return_mean": 3.0, "return_std": 0.5, "return_min": 2.5}
    logger.evaluation({**row, "return_max": 3.5, "returns": [2.5, 3.5]})
    logger.evaluation({"updates": 30, **{k: 1.0 for k in list(row)[1:]}, "return_max": 1.0})
    logger.close()
    events = event_scalars(tmp_path)
    assert events["loss/critic"] == [(10, 1.5), (20, 0.5)]
    assert events["eval/return_max"] == [(20, 3.5), (30, 1.0)]
    assert "note" not in events and "flag" not in events and "eval/returns" not in events
    assert "eval/normalized_score_mean" not in events

    scored = TensorBoardLogger(tmp_path / "scored")
    scored.evaluation({**row, "return_max": 3.5, "normalized_score_mean": 42.0})
    scored.close()
    assert event_scalars(tmp_path / "scored")["eval/normalized_score_mean"] == [(20, 42.0)]


@pytest.mark.slow  # W&B starts a service process; waits a second between sessions
def test_wandb_offline_run_keeps_its_id(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = load_config(None, (*TINY_OVERRIDES, "logger.wandb=true"))
    with make_run_logger(cfg, tmp_path) as logger:
        logger.metrics({"env_step": 150, "updates": 50, "loss/critic": 1.0})
    first = (tmp_path / "wandb_id.txt").read_text()
    # W&B names an offline run folder by the second it starts: two in one second share one
    time.sleep(1.1)
    with make_run_logger(cfg, tmp_path, resume_step=150) as logger:
        logger.evaluation({"env_step": 300, "updates": 200, "return_mean": 1.0})
    assert (tmp_path / "wandb_id.txt").read_text() == first
    assert len(first.strip()) == 16
    # both sessions wrote an offline W&B run of that id, with its data file
    runs = sorted((tmp_path / "wandb").glob(f"offline-run-*-{first.strip()}"))
    assert len(runs) == 2 and all(list(run.glob("*.wandb")) for run in runs)


@pytest.mark.slow  # a subprocess: W&B's login state is per process
def test_wandb_without_a_login_is_refused_before_the_run_dir(tmp_path):
    """No API key (and not WANDB_MODE=offline): one error line, no run dir, no traceback."""
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if k not in ("WANDB_API_KEY", "WANDB_MODE")}
    env.update(HOME=str(tmp_path), NETRC=str(tmp_path / "no-netrc"))  # no key anywhere
    env["WANDB_CONFIG_DIR"] = str(tmp_path / "wandb-config")
    run_dir = tmp_path / "run"
    args = ["train-online", *TINY_OVERRIDES, "logger.wandb=true", f"run_dir={run_dir}"]
    done = subprocess.run(
        [sys.executable, "-m", "cli", *args],
        capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=120,
        cwd=Path(__file__).resolve().parents[1],
    )  # fmt: skip
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: logger.wandb=true: No API key")
    assert "WANDB_MODE=offline" in lines[0]
    assert not run_dir.exists()
