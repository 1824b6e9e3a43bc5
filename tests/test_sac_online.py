"""`alm baseline sac --env ENV`: d3rlpy's online SAC into a run dir like train-online's, in
the baselines venv: the run dir's files, a run killed with SIGKILL and resumed gives the same
evaluations as an unbroken one, `alm eval` replays its evaluation, bad input is one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from alm_offline.training.loggers import read_jsonl
from cli import alm
from tests.conftest import assert_one_line_error

REPO = Path(__file__).resolve().parents[1]
ENV = "InvertedPendulum-v5"
TOY = ("steps=2400", "eval.every=600", "eval.episodes=2", "checkpoint_every=600",
       "log_every=300", "threads=1")  # fmt: skip
CHILD_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def baseline(python: str, *args: str) -> list[str]:
    return [python, "-m", "cli", "baseline", "sac", *args, "--quiet"]


def checkpoint_step(run_dir: Path) -> int | None:
    try:
        return int(torch.load(run_dir / "checkpoints/latest.pt", weights_only=False)["step"])
    except Exception:  # not there yet, or being replaced
        return None


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, baselines_python: str) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sac")
    unbroken, killed = root / "unbroken", root / "killed"
    done = subprocess.run(
        baseline(baselines_python, "--env", ENV, *TOY, f"run_dir={unbroken}"),
        cwd=REPO, env=CHILD_ENV, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    child = subprocess.Popen(
        baseline(baselines_python, "--env", ENV, *TOY, f"run_dir={killed}"),
        cwd=REPO, env=CHILD_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while (checkpoint_step(killed) or 0) < 1200:  # past two checkpoints, mid-run
        assert child.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert not (killed / "summary.json").exists()
    resumed = subprocess.run(
        baseline(baselines_python, "--resume", str(killed)),
        cwd=REPO, env=CHILD_ENV, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    return {"unbroken": unbroken, "killed": killed}


@pytest.mark.slow
def test_sac_writes_a_train_online_run_dir(runs):
    run = runs["unbroken"]
    assert {p.name for p in (run / "checkpoints").iterdir()} == {"latest.pt", "best.d3",
                                                                  "d3rlpy.d3"}  # fmt: skip
    rows = read_jsonl(run / "eval.jsonl")
    assert [row["env_step"] for row in rows] == [600, 1200, 1800, 2400]
    assert all(len(row["returns"]) == 2 for row in rows)
    metrics = read_jsonl(run / "metrics.jsonl")
    assert [row["env_step"] for row in metrics] == [
        1200,
        1500,
        1800,
        2100,
        2400,
    ]  # updates from 1001
    assert {"sac/critic_loss", "sac/actor_loss", "sac/temp"} <= set(metrics[-1])
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["method"], summary["env"], summary["env_steps"]) == ("sac", ENV, 2400)
    assert summary["updates"] == 2400 - 1000 and summary["step_key"] == "env_step"
    assert summary["eval_return_mean"] == rows[-1]["return_mean"]


@pytest.mark.slow
def test_a_killed_sac_run_resumes_to_the_same_evaluations(runs):
    unbroken = read_jsonl(runs["unbroken"] / "eval.jsonl")
    resumed = read_jsonl(runs["killed"] / "eval.jsonl")
    assert [r["returns"] for r in resumed] == [r["returns"] for r in unbroken]
    keys = ("updates", "evaluations", "eval_return_mean", "best_eval_at")
    summaries = [json.loads((runs[k] / "summary.json").read_text()) for k in runs]
    first, second = ({k: s[k] for k in keys} for s in summaries)
    assert first == second


@pytest.mark.slow
def test_alm_eval_replays_a_sac_run_s_evaluation(runs, baselines_python):
    done = subprocess.run(
        [baselines_python, "-m", "cli", "eval", str(runs["unbroken"]), "--episodes", "2",
         "--seed", "1", "--json"],
        cwd=REPO, env=CHILD_ENV, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    last = read_jsonl(runs["unbroken"] / "eval.jsonl")[-1]
    assert json.loads(done.stdout)["returns"] == pytest.approx(last["returns"])


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["sac"], "needs --env ENV_ID (or --resume RUN_DIR)"),
        (["sac", "--env", ENV, "--dataset", "x.hdf5"], "trains online: give --env"),
        (["td3+bc", "--env", ENV], "--env and --resume are for alm baseline sac"),
        (["sac", "--env", ENV, "seeds=1,2"], "trains one seed per run"),
    ],
)
def test_bad_sac_input_is_one_line(tmp_path, args, fragment):
    result = CliRunner().invoke(alm, ["baseline", *args, f"run_dir={tmp_path / 'r'}"])
    assert_one_line_error(result, fragment)
    assert not (tmp_path / "r").exists()


def test_an_online_sweep_puts_sac_beside_alm_in_folders_of_their_own(tmp_path):
    from alm_offline.tools.sweep import SweepSpec
    from alm_offline.tools.sweep.spec import grid_trials
    from alm_offline.tools.sweep.trials import trial_command

    spec = SweepSpec("online", "s", "quick", [ENV], ["alm", "sac"], [1, 2], [], "py")
    trials = grid_trials(spec, tmp_path)
    assert [(t["method"], t["seeds"], Path(t["run_dir"]).relative_to(tmp_path).as_posix())
            for t in trials] == [("alm", [1, 2], f"{ENV}/alm"), ("sac", [1], f"{ENV}/sac/s1"),
                                 ("sac", [2], f"{ENV}/sac/s2")]  # fmt: skip
    sac = trial_command(trials[1], mode="online", state="fresh", python="py", config="quick",
                        overrides=[], threads=1, overwrite=False)  # fmt: skip
    assert sac[3:6] == ["online", f"env={ENV}", "method=sac"] and "seed=1" in sac
    alone = SweepSpec("online", "s", "quick", [ENV], ["alm"], [1, 2], [], "py")
    assert grid_trials(alone, tmp_path)[0]["run_dir"] == str(tmp_path / ENV)  # as before
