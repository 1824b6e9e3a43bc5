"""`alm sweep`: bad input found before Ray starts, the grid and its files, resume from the
run dirs, and real local Ray sweeps in subprocesses (cluster runs: test_sweep_cluster.py)."""

from __future__ import annotations

import csv
import json
import shutil
import socket
import subprocess
import sys
import time
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from click.testing import CliRunner
from conftest import assert_one_line_error

from alm_offline.tools.sweep import SweepError, SweepSpec, check_address
from alm_offline.tools.sweep.grid import cell_slugs, grid_trials
from alm_offline.tools.sweep.results import results_csv, results_table
from alm_offline.tools.sweep.trials import die_with_parent, trial_command, trial_state
from cli import alm

ray = pytest.importorskip("ray")

ENV = "InvertedPendulum-v5"
REPO = Path(__file__).resolve().parents[1]
BUNDLED = REPO / "datasets/bundled/inverted_pendulum-alm-v0.hdf5"
TINY = (  # a trial of a few seconds: 300 env steps, checkpoints every 100
    "steps=300",
    "agent.warmup_steps=100",
    "eval.every=150",
    "eval.episodes=1",
    "checkpoint_every=100",
    "log_every=50",
    "agent.batch_size=32",
    "agent.hidden_dim=32",
    "agent.model_hidden_dim=32",
)


def sweep(cwd: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m cli sweep ARGS`` in a real process (its local Ray ends with it)."""
    return subprocess.run(
        [sys.executable, "-m", "cli", "sweep", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def tree_hashes(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (but the lock) -> its bytes."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


# ------------------------------------------------------------- bad input, before Ray starts
ONLINE = ("--config", "quick", "--envs", ENV)
OFFLINE = ("--datasets", str(BUNDLED))


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ((*ONLINE[:2], "--envs", "NoSuchEnv-v9", "--seeds", "1"), "NoSuchEnv-v9"),
        ((*ONLINE, "--seeds", "1,x"), "--seeds must be comma-separated integers"),
        ((*ONLINE, "--seeds", "1,1"), "seed listed twice: 1"),
        ((*ONLINE, "--seeds", "-1"), "seed must be in [0, 2^32)"),
        ((*OFFLINE, "--seeds", "-1"), "seed must be in [0, 2^32)"),
        ((*ONLINE, "--seeds", "1", "steps=0"), "steps must be positive"),
        ((*ONLINE, "--seeds", "1", "--cpus-per-trial", "0"), "--cpus-per-trial must be positive"),
        ((*OFFLINE, "--seeds", "1", "--cpus-per-trial", "0"), "--cpus-per-trial must be positive"),
        ((*OFFLINE, "--seeds", "1", "--cpus-per-trial", "-1"), "must be positive, got -1"),
        ((*OFFLINE, "--seeds", "1", "--gpus-per-trial", "-1"), "--gpus-per-trial must be >= 0"),
        ((*ONLINE, "--seeds", "1", "--gpus-per-trial", "99"), "99.0 GPUs"),
        ((*OFFLINE, "--methods", "alm,bc", "--seeds", "1"), "has no d3rlpy"),
        ((*OFFLINE, "--methods", "alm,xyz", "--seeds", "1"), "--methods must be"),
        ((*OFFLINE, "--seeds", "1", "--python", "/no/python"), "'/no/python' is not a file"),
        ((*ONLINE, "--methods", "bc", "--seeds", "1"), "an online sweep trains alm only"),
        (("--datasets", "/no/such.hdf5", "--seeds", "1"), "/no/such.hdf5"),
        ((*ONLINE, "--seeds", "1", "--address", "127.0.0.1:1"), "127.0.0.1:1"),
        ((*ONLINE, "--seeds", "1", "--address", "nohost"), "host:port or auto"),
        (("--envs", ENV, "--seeds", "1"), "an online sweep needs --config"),
        ((*ONLINE,), "give --seeds"),
    ],
)
def test_bad_input_is_one_line_and_starts_no_ray(tmp_path, args, fragment):
    out = tmp_path / "sw"
    start = time.perf_counter()
    result = CliRunner().invoke(alm, ["sweep", "--out", str(out), *args])
    assert time.perf_counter() - start < 10  # a dead address fails fast, not after Ray's retries
    assert_one_line_error(result, fragment)
    assert not ray.is_initialized()
    assert not out.exists()


def test_an_existing_sweep_needs_resume_or_overwrite(tmp_path):
    (tmp_path / "sweep.json").write_text("{}")
    result = CliRunner().invoke(alm, ["sweep", *ONLINE, "--seeds", "1", "--out", str(tmp_path)])
    assert_one_line_error(
        result, "already holds a sweep; use --resume to continue it or --overwrite"
    )
    assert not ray.is_initialized()
    assert [p.name for p in tmp_path.iterdir()] == ["sweep.json"]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--resume", "{out}"), "holds no sweep (no sweep.json) to resume"),
        (("--resume", "{out}", "--envs", ENV), "--resume takes the grid from OUT/sweep.json"),
        (("--resume", "{out}", "steps=9"), "only --address, --python"),
    ],
)
def test_bad_resume_is_one_line(tmp_path, args, fragment):
    result = CliRunner().invoke(alm, ["sweep", *(a.format(out=tmp_path) for a in args)])
    assert_one_line_error(result, fragment)
    assert list(tmp_path.iterdir()) == []


def test_datasets_with_one_file_name_get_their_own_run_dirs(tmp_path):
    cells = ["a/ip.hdf5", "b/ip.hdf5", "alm-suite/hopper/medium-v0", "c/other.hdf5"]
    assert cell_slugs("offline", cells) == [
        "a_ip.hdf5", "b_ip.hdf5", "alm-suite_hopper_medium-v0", "other.hdf5"
    ]  # fmt: skip
    assert cell_slugs("offline", ["x/a/ip.hdf5", "y/a/ip.hdf5"]) == ["x_a_ip.hdf5", "y_a_ip.hdf5"]
    spec = SweepSpec("offline", "s", None, cells[:2], ["alm", "td3+bc"], [1, 2], [], "python")
    run_dirs = [t["run_dir"] for t in grid_trials(spec, tmp_path)]
    assert len(set(run_dirs)) == 8
    assert run_dirs[:3] == [str(tmp_path / "a_ip.hdf5/alm/s1"), str(tmp_path / "a_ip.hdf5/alm/s2"),
                            str(tmp_path / "a_ip.hdf5/td3bc/s1")]  # fmt: skip
    online = SweepSpec("online", "s", "quick", [ENV], ["alm"], [3], [], "python")
    assert grid_trials(online, tmp_path) == [
        {"env": ENV, "method": "alm", "seed": 3, "run_dir": str(tmp_path / ENV / "s3")}
    ]


def test_a_trial_s_state_comes_from_its_run_dir(tmp_path):
    run = tmp_path / "run"
    assert trial_state(run) == "fresh"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("x")
    assert trial_state(run) == "fresh"  # killed before its first checkpoint
    (run / "checkpoints" / "best.d3").write_bytes(b"x")
    assert trial_state(run) == "fresh"  # a d3rlpy run mid-way cannot resume: run again
    (run / "checkpoints" / "latest.pt").write_bytes(b"x")
    assert trial_state(run) == "resumable"
    (run / "summary.json").write_text("{}")
    assert trial_state(run) == "finished"


def test_trial_commands():
    trial = {"dataset": "d.hdf5", "method": "td3+bc", "seed": 2, "run_dir": "/o/d/s2"}
    common = dict(python="py", config=None, overrides=["steps=5"], threads=1)
    assert trial_command(trial, mode="offline", state="fresh", overwrite=True, **common) == [
        "py", "-m", "cli", "train-offline", "--dataset", "d.hdf5", "method=td3+bc", "--quiet",
        "--overwrite", "steps=5", "seed=2", "threads=1", "run_dir=/o/d/s2",
    ]  # fmt: skip
    alm_trial = {**trial, "method": "alm"}
    resume = trial_command(alm_trial, mode="offline", state="resumable", overwrite=True, **common)
    assert resume == ["py", "-m", "cli", "train-offline", "--resume", "/o/d/s2", "--quiet"]
    online = {"env": ENV, "method": "alm", "seed": 1, "run_dir": "/o/e/s1"}
    command = trial_command(online, mode="online", state="fresh", overwrite=False, **common)
    assert (
        command[3:6] == ["train-online", f"env={ENV}", "--quiet"] and "--overwrite" not in command
    )


def test_a_trial_dies_with_its_worker(tmp_path):
    """The trial's preexec_fn: killing its parent (a Ray worker) SIGKILLs the trial."""
    pid_file = tmp_path / "child.pid"
    parent_code = (
        "import subprocess, sys, time\n"
        "from alm_offline.tools.sweep.trials import die_with_parent\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'],"
        " preexec_fn=die_with_parent())\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", parent_code])
    try:
        deadline = time.monotonic() + 30
        while not pid_file.is_file() or not pid_file.read_text():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        child = int(pid_file.read_text())
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 10
        while Path(f"/proc/{child}").exists() and "Z" not in _proc_state(child):
            assert time.monotonic() < deadline, "the trial outlived its worker"
            time.sleep(0.05)
    finally:
        parent.kill()
    assert die_with_parent() is not None


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "Z"


def test_check_address():
    with pytest.raises(SweepError, match=r"no Ray cluster answers at 127\.0\.0\.1:1: "):
        check_address("127.0.0.1:1")
    check_address("auto")  # passed through to Ray
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))  # Ray's ports speak gRPC
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        check_address(f"127.0.0.1:{port}")
        check_address(f"ray://127.0.0.1:{port}")
    finally:
        server.stop(0)
    listener = socket.create_server(("127.0.0.1", 0))  # accepts, says nothing
    with listener, pytest.raises(SweepError, match="does not answer as a Ray cluster"):
        check_address(f"127.0.0.1:{listener.getsockname()[1]}", timeout=1.0)


def _row(cell: str, method: str, seed: int, value: float | None, key: str = "env") -> dict:
    row = {key: cell, "method": method, "seed": seed, "run_dir": f"/r/{cell}/{seed}"}
    if value is None:
        return {**row, "status": "failed", "summary": None, "error": "E: x"}
    summary = {"eval_return_mean": value, "updates_per_sec": 10.0, "wall_seconds": 4.0}
    return {**row, "status": "ok", "summary": summary, "error": None}


def test_one_table_format_online_with_the_paper_row():
    envs = ["HalfCheetah-v5", "Hopper-v5", "Pusher-v5"]
    trials = [
        _row("HalfCheetah-v5", "alm", 1, 100.0),
        _row("HalfCheetah-v5", "alm", 2, 300.0),
        _row("Hopper-v5", "alm", 1, 50.0),
        _row("Hopper-v5", "alm", 2, None),
        _row("Pusher-v5", "alm", 1, None),
    ]
    record = {
        "mode": "online",
        "name": "online",
        "cells": envs,
        "methods": ["alm"],
        "trials": trials,
    }
    paper = {"HalfCheetah-v5": (10789.0, 366.0), "Hopper-v5": (2546.0, 1074.0)}
    assert results_table(record, paper).splitlines() == [
        "| Method | HalfCheetah-v5 | Hopper-v5 | Pusher-v5 | updates/s | wall s per run |",
        "|---|---|---|---|---|---|",
        "| ALM (this run: online) | 200.0 ± 100.0 | 50.0 ± 0.0 (1/2 seeds) | failed | 10 | 4 |",
        "| ALM(3), paper Table 1 (200k steps) | 10789.0 ± 366.0 | 2546.0 ± 1074.0 | – | – | – |",
    ]
    for row in trials:  # an online run's summary has its wall time but no updates/s
        if row["summary"]:
            row["summary"]["updates_per_sec"] = None
    assert results_table(record, paper).splitlines()[2].endswith("| failed | – | 4 |")
    rows = list(csv.DictReader(results_csv(trials).splitlines()))
    assert [(r["env"], r["status"], r["eval_return_mean"]) for r in rows[2:4]] == [
        ("Hopper-v5", "ok", "50.0"), ("Hopper-v5", "failed", "")
    ]  # fmt: skip


def test_one_table_format_offline_normalised_scores():
    cells = ["a/ip.hdf5", "b/ip.hdf5"]
    trials = [_row(c, m, 1, 7.0, key="dataset") for c in cells for m in ("alm", "bc")]
    trials[0]["summary"]["normalized_score_mean"] = 42.0
    record = {"mode": "offline", "name": "x", "cells": cells, "methods": ["alm", "bc"],
              "trials": trials}  # fmt: skip
    assert results_table(record, {}).splitlines() == [
        "| Method | a_ip.hdf5 | b_ip.hdf5 | updates/s | wall s per run |",
        "|---|---|---|---|---|",
        "| offline ALM | 42.0 ± 0.0 | 7.0 ± 0.0 | 10 | 4 |",
        "| BC (d3rlpy) | 7.0 ± 0.0 | 7.0 ± 0.0 | 10 | 4 |",
    ]


# ------------------------------------------------------------------- real local Ray sweeps
@pytest.mark.slow
def test_a_failed_trial_is_a_row_and_resume_completes_the_grid(tmp_path):
    """s2's run dir is a file: s2 fails in its worker, s1 finishes. ``--resume`` keeps s1
    byte for byte and runs s2 once the file is gone."""
    out = tmp_path / "sw"
    (out / ENV).mkdir(parents=True)
    (out / ENV / "s2").write_text("not a run dir")
    args = (*ONLINE, "--seeds", "1,2", "--out", str(out), "--name", "tiny", *TINY)
    result = sweep(tmp_path, *args)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 of 2 trials failed" in result.stderr
    ok, failed = read_csv(out / "results.csv")
    summary = json.loads((out / ENV / "s1" / "summary.json").read_text())
    assert (ok["seed"], ok["status"], float(ok["eval_return_mean"])) == (
        "1", "ok", summary["eval_return_mean"]
    )  # fmt: skip
    assert summary["env_steps"] == 300 and summary["updates"] == 200
    assert (failed["seed"], failed["status"], failed["eval_return_mean"]) == ("2", "failed", "")
    assert "exists and is not a directory" in failed["error"]
    cell = f"{summary['eval_return_mean']:.1f} ± 0.0 (1/2 seeds)"
    assert f"| ALM (this run: tiny) | {cell} |" in (out / "results.md").read_text()
    assert f"{ENV} s2: failed: error: run dir" in result.stdout
    record = json.loads((out / "sweep.json").read_text())
    assert [t["status"] for t in record["trials"]] == ["ok", "failed"]
    assert record["status"] == "finished" and record["overrides"] == list(TINY)

    again = sweep(tmp_path, *args)  # an existing sweep: refused, untouched
    assert again.returncode == 2 and again.stderr.startswith("error: ")
    assert "--resume" in again.stderr and len(again.stderr.strip().splitlines()) == 1
    before = tree_hashes(out / ENV / "s1")
    (out / ENV / "s2").unlink()
    resumed = sweep(tmp_path, "--resume", str(out))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "1 of 2 online trials to run (0 resumed)" in resumed.stdout
    assert tree_hashes(out / ENV / "s1") == before
    record2 = json.loads((out / "sweep.json").read_text())
    assert record2["trials"][0] == record["trials"][0]
    assert [t["status"] for t in record2["trials"]] == ["ok", "ok"]
    means = [t["summary"]["eval_return_mean"] for t in record2["trials"]]
    cell = f"{sum(means) / 2:.1f} ± {abs(means[0] - means[1]) / 2:.1f}"
    table = (out / "results.md").read_text()
    assert f"| ALM (this run: tiny) | {cell} |" in table and "paper" not in table
    assert table in resumed.stdout and (out / "curves.png").stat().st_size > 1000
    assert [r["status"] for r in read_csv(out / "results.csv")] == ["ok", "ok"]


@pytest.mark.slow
def test_an_offline_sweep_of_two_files_with_one_name(tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        shutil.copy(BUNDLED, tmp_path / folder / "ip.hdf5")
    out = tmp_path / "sw"
    result = sweep(
        tmp_path, "--datasets", "a/ip.hdf5,b/ip.hdf5", "--seeds", "1", "--out", str(out),
        "--config", "offline", "steps=30", "eval.every=30", "eval.episodes=1", "log_every=10",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    record = json.loads((out / "sweep.json").read_text())
    assert [(t["dataset"], t["status"]) for t in record["trials"]] == [
        ("a/ip.hdf5", "ok"), ("b/ip.hdf5", "ok")
    ]  # fmt: skip
    for folder in ("a", "b"):
        summary = json.loads((out / f"{folder}_ip.hdf5/alm/s1/summary.json").read_text())
        assert summary["updates"] == 30 and summary["dataset"].endswith(f"{folder}/ip.hdf5")
    table = (out / "results.md").read_text().splitlines()
    assert table[0] == "| Method | a_ip.hdf5 | b_ip.hdf5 | updates/s | wall s per run |"
    assert table[2].startswith("| offline ALM | ")
    rows = read_csv(out / "results.csv")
    assert [(r["dataset"], r["env"], r["status"]) for r in rows] == [
        ("a/ip.hdf5", ENV, "ok"), ("b/ip.hdf5", ENV, "ok")
    ]  # fmt: skip


@pytest.mark.slow
def test_without_ray_one_line_error(tmp_path):
    code = (
        "import sys; sys.modules['ray'] = None; import cli; "
        f"sys.argv = ['alm', 'sweep', '--config', 'quick', '--envs', '{ENV}', '--seeds', '1',"
        f" '--out', {str(tmp_path / 'sw')!r}]; "
        "cli.main()"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "error: alm sweep needs Ray: pip install 'alm-offline[ray]'"
    assert not (tmp_path / "sw").exists()
