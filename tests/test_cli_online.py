"""`alm train-online` through Click's runner and real subprocesses: outputs, bad input, resume."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import TINY_OVERRIDES, assert_one_line_error

from alm_offline.training.checkpoint import checkpoint_path, read_checkpoint
from cli import alm

ALM = "alm"  # the installed console script, found on PATH like a user would


def run_cli(*args: str):
    return CliRunner().invoke(alm, list(args))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    result = run_cli("train-online", "--quiet", *TINY_OVERRIDES, f"run_dir={run_dir}", "seed=3")
    assert result.exit_code == 0, result.output
    assert f"run dir: {run_dir}" in result.output
    return run_dir


@pytest.mark.slow
def test_run_dir_contents(tiny_run):
    summary = json.loads((tiny_run / "summary.json").read_text())
    assert summary["env"] == "InvertedPendulum-v5"
    assert summary["env_steps"] == 300 and summary["updates"] == 200  # 100 warmup steps
    for key in ("eval_return_mean", "eval_return_std", "wall_seconds"):
        assert isinstance(summary[key], float)
    evals = [json.loads(line) for line in (tiny_run / "eval.jsonl").read_text().splitlines()]
    assert [row["env_step"] for row in evals] == [150, 300]
    assert all(len(row["returns"]) == 2 for row in evals)
    metrics = [json.loads(line) for line in (tiny_run / "metrics.jsonl").read_text().splitlines()]
    assert [row["updates"] for row in metrics] == [50, 100, 150, 200]
    for key in (
        "loss/model_bound",
        "model/kl",
        "classifier/accuracy",
        "critic/q_mean",
        "updates_per_sec",
        "env_steps_per_sec",
    ):
        assert key in metrics[-1]
    config = (tiny_run / "config.yaml").read_text()
    assert "batch_size: 16" in config and "seed: 3" in config
    state = read_checkpoint(checkpoint_path(tiny_run))
    assert state["counters"]["env_steps"] == 300


@pytest.mark.slow
def test_same_seed_same_first_evaluation(tiny_run, tmp_path):
    again = tmp_path / "again"
    result = run_cli(
        "train-online", "--quiet", *TINY_OVERRIDES, f"run_dir={again}", "seed=3", "steps=150"
    )
    assert result.exit_code == 0, result.output
    first = json.loads((tiny_run / "eval.jsonl").read_text().splitlines()[0])
    repeat = json.loads((again / "eval.jsonl").read_text().splitlines()[0])
    assert first["returns"] == repeat["returns"]


@pytest.mark.slow
def test_existing_run_is_refused_and_left_intact(tiny_run):
    before = {p: p.read_bytes() for p in tiny_run.rglob("*") if p.is_file()}
    result = run_cli("train-online", "--quiet", *TINY_OVERRIDES, f"run_dir={tiny_run}")
    assert_one_line_error(result, "already holds a run")
    assert {p: p.read_bytes() for p in tiny_run.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["env=NoSuchEnv-v0"], "NoSuchEnv-v0"),
        (["agent.wrong_key=1"], "wrong_key"),
        (["agent.batch_size=abc"], "batch_size"),
        (["steps=0"], "steps must be positive"),
        (["--config", "missing.yaml"], "missing.yaml"),
    ],
)
def test_bad_input_is_a_one_line_error(args, fragment, tmp_path):
    run_dir = tmp_path / "r"
    result = run_cli("train-online", "--quiet", *TINY_OVERRIDES, f"run_dir={run_dir}", *args)
    assert_one_line_error(result, fragment)


@pytest.mark.slow
def test_resume_rejects_corrupt_and_mismatched_checkpoints(tiny_run, tmp_path):
    corrupt = tmp_path / "corrupt"
    shutil.copytree(tiny_run, corrupt)
    checkpoint_path(corrupt).write_bytes(b"not a checkpoint at all")
    assert_one_line_error(run_cli("train-online", "--resume", str(corrupt), "--quiet"), "corrupt")
    assert checkpoint_path(corrupt).read_bytes() == b"not a checkpoint at all"

    mismatched = tmp_path / "mismatched"
    shutil.copytree(tiny_run, mismatched)
    config = mismatched / "config.yaml"
    config.write_text(config.read_text().replace("latent_dim: 8", "latent_dim: 9"))
    assert_one_line_error(
        run_cli("train-online", "--resume", str(mismatched), "--quiet", "steps=400"),
        "another config",
    )
    assert_one_line_error(
        run_cli("train-online", "--resume", str(tmp_path / "nothing")), "not a run directory"
    )
    assert_one_line_error(
        run_cli("train-online", "--resume", str(tiny_run), "agent.lr=0.1"), "only steps=N"
    )


@pytest.mark.slow
def test_resume_extends_a_finished_run(tiny_run, tmp_path):
    extended = tmp_path / "extended"
    shutil.copytree(tiny_run, extended)
    result = run_cli("train-online", "--resume", str(extended), "--quiet", "steps=400")
    assert result.exit_code == 0, result.output
    summary = json.loads((extended / "summary.json").read_text())
    assert (summary["env_steps"], summary["updates"]) == (400, 300)
    evals = [
        json.loads(line)["env_step"] for line in (extended / "eval.jsonl").read_text().splitlines()
    ]
    assert evals == [150, 300, 400]


def _wait_for_checkpoint(
    run_dir: Path, min_steps: int, proc: subprocess.Popen, timeout: float = 120
) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "training ended before it could be killed"
        path = checkpoint_path(run_dir)
        if path.exists():
            steps = torch.load(path, weights_only=True)["counters"]["env_steps"]
            if steps >= min_steps:
                return steps
        time.sleep(0.2)
    raise AssertionError("no checkpoint appeared in time")


@pytest.mark.slow
def test_killed_run_resumes_exactly(tmp_path):
    """SIGKILL a real `alm` process mid-run; the resumed run equals an uninterrupted one."""
    common = [
        *TINY_OVERRIDES,
        "steps=1500",
        "checkpoint_every=100",
        "agent.buffer_size=5000",
        "eval.every=500",
    ]
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    proc = subprocess.Popen([ALM, "train-online", "--quiet", *common, f"run_dir={killed}"])
    try:
        saved_steps = _wait_for_checkpoint(killed, 600, proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert 600 <= saved_steps < 1500
    resumed = subprocess.run(
        [ALM, "train-online", "--resume", str(killed), "--quiet"], capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr
    uninterrupted = subprocess.run(
        [ALM, "train-online", "--quiet", *common, f"run_dir={clean}"],
        capture_output=True,
        text=True,
    )
    assert uninterrupted.returncode == 0, uninterrupted.stderr

    a, b = read_checkpoint(checkpoint_path(killed)), read_checkpoint(checkpoint_path(clean))
    assert a["counters"]["env_steps"] == b["counters"]["env_steps"] == 1500
    assert a["counters"]["updates"] == b["counters"]["updates"]
    assert len(a["replay"]["transition_starts"]["members"]) == 1500  # no lost transitions
    torch.testing.assert_close(a["replay"]["obs"], b["replay"]["obs"], rtol=0, atol=0)
    for key, value in b["agent"]["world_model"].items():
        torch.testing.assert_close(a["agent"]["world_model"][key], value, rtol=0, atol=0)
    assert (killed / "eval.jsonl").read_text().count("\n") == 3
    rows = [json.loads(line) for line in (killed / "eval.jsonl").read_text().splitlines()]
    clean_rows = [json.loads(line) for line in (clean / "eval.jsonl").read_text().splitlines()]
    assert [r["returns"] for r in rows] == [r["returns"] for r in clean_rows]


@pytest.mark.slow
def test_subprocess_help_and_error():
    out = subprocess.run([ALM, "--help"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    listed = [line.split()[0] for line in out.stdout.split("Commands:")[1].splitlines() if line]
    assert listed == sorted(alm.commands)  # the script runs this checkout's CLI
    bad = subprocess.run(
        [ALM, "train-online", "env=Nope-v9", "--quiet"], capture_output=True, text=True
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().startswith("error:") and "Traceback" not in bad.stderr
