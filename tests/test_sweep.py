"""`alm sweep`: real local Ray runs in subprocesses, a trial that fails, and bad input."""

from __future__ import annotations

import csv
import json
import os
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

from alm_offline.tools.sweep import SweepError, check_address, failed_row, results_table, run_on_ray
from cli import alm

ray = pytest.importorskip("ray")

ENV = "InvertedPendulum-v5"
SHORT = (
    "steps=1200",
    "agent.warmup_steps=1000",
    "eval.every=600",
    "eval.episodes=2",
    "checkpoint_every=600",
    "log_every=100",
)


def sweep(tmp_path: Path, out: Path, *args: str) -> subprocess.CompletedProcess:
    """``python -m cli sweep`` in a real process (its local Ray instance ends with it)."""
    command = [sys.executable, "-m", "cli", "sweep", "--config", "quick", "--envs", ENV]
    command += ["--cpus-per-trial", "1", "--out", str(out), *args, *SHORT]
    return subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_sweep_runs_every_trial(tmp_path):
    out = tmp_path / "sw"
    result = sweep(tmp_path, out, "--seeds", "1,2", "--name", "tiny")
    assert result.returncode == 0, result.stdout + result.stderr
    summaries = {}
    for seed in (1, 2):
        run_dir = out / ENV / f"s{seed}"
        summaries[seed] = json.loads((run_dir / "summary.json").read_text())
        assert summaries[seed]["env_steps"] == 1200 and summaries[seed]["updates"] == 200
        assert (run_dir / "checkpoints" / "latest.pt").is_file()
    rows = read_csv(out / "results.csv")
    assert [(r["env"], r["seed"], r["status"]) for r in rows] == [(ENV, s, "ok") for s in "12"]
    for row in rows:
        summary = summaries[int(row["seed"])]
        assert float(row["eval_return_mean"]) == summary["eval_return_mean"]
        assert float(row["eval_return_std"]) == summary["eval_return_std"]
        assert row["error"] == "" and Path(row["run_dir"]) == out / ENV / f"s{row['seed']}"
    means = [summaries[s]["eval_return_mean"] for s in (1, 2)]
    cell = f"{sum(means) / 2:.1f} ± {abs(means[0] - means[1]) / 2:.1f}"
    table = (out / "results.md").read_text()
    assert f"| ALM (this run: tiny) | {cell} |" in table
    assert "paper" not in table  # InvertedPendulum is not in the paper's Table 1
    assert table in result.stdout and f"sweep folder: {out}" in result.stdout
    assert result.stdout.count("InvertedPendulum-v5 s") == 2  # one line per finished trial
    assert (out / "curves.png").stat().st_size > 1000
    record = json.loads((out / "sweep.json").read_text())
    assert record["status"] == "finished" and record["seeds"] == [1, 2]
    assert record["overrides"] == list(SHORT)
    assert [t["summary"]["eval_return_mean"] for t in record["trials"]] == means


@pytest.mark.slow
def test_failed_trial_keeps_the_others(tmp_path):
    out = tmp_path / "sw"
    (out / ENV).mkdir(parents=True)
    (out / ENV / "s2").write_text("not a run dir")  # s2 fails inside its worker
    result = sweep(tmp_path, out, "--seeds", "1,2")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 of 2 trials failed" in result.stderr
    summary = json.loads((out / ENV / "s1" / "summary.json").read_text())
    ok, failed = read_csv(out / "results.csv")
    assert (ok["seed"], ok["status"]) == ("1", "ok")
    assert float(ok["eval_return_mean"]) == summary["eval_return_mean"]
    assert (failed["seed"], failed["status"], failed["eval_return_mean"]) == ("2", "failed", "")
    assert failed["error"].startswith(f"RunDirError: run dir '{out / ENV / 's2'}'")
    assert failed["error"].endswith("exists and is not a directory")
    cell = f"{summary['eval_return_mean']:.1f} ± 0.0 (1/2 seeds)"
    assert f"| ALM (this run: quick) | {cell} |" in (out / "results.md").read_text()
    assert f"{ENV} s2: failed: RunDirError" in result.stdout
    record = json.loads((out / "sweep.json").read_text())
    assert [t["status"] for t in record["trials"]] == ["ok", "failed"]
    assert (out / "curves.png").is_file()


@pytest.mark.slow
def test_crashed_worker_is_a_failed_row():
    rows = {}
    run_on_ray(
        ray,
        None,
        lambda: os._exit(3),  # pickled by value for the worker
        [()],
        lambda i, exc: failed_row(ENV, 7, "/nowhere/s7", exc),
        lambda i, row, done: rows.update({i: row}),
        cpus_per_trial=1,
        gpus_per_trial=0,
    )
    row = rows[0]
    assert (row["env"], row["seed"], row["run_dir"]) == (ENV, 7, "/nowhere/s7")
    assert (row["status"], row["summary"]) == ("failed", None)
    assert row["error"].startswith("WorkerCrashedError: ") and "\n" not in row["error"]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--envs", "NoSuchEnv-v9", "--seeds", "1"), "NoSuchEnv-v9"),
        (("--envs", ENV, "--seeds", "1,x"), "--seeds must be comma-separated integers"),
        (("--envs", ENV, "--seeds", "1,1"), "seed listed twice: 1"),
        (("--envs", ENV, "--seeds", "1", "steps=0"), "steps must be positive"),
        (("--envs", ENV, "--seeds", "1", "--address", "127.0.0.1:1"), "127.0.0.1:1"),
        (("--envs", ENV, "--seeds", "1", "--address", "nohost"), "host:port or auto"),
        (("--envs", ENV, "--seeds", "1", "--gpus-per-trial", "99"), "99.0 GPUs"),
    ],
)
def test_bad_input_is_one_line_and_starts_no_ray(tmp_path, args, fragment):
    out = tmp_path / "sw"
    start = time.perf_counter()
    result = CliRunner().invoke(alm, ["sweep", "--config", "quick", "--out", str(out), *args])
    assert time.perf_counter() - start < 5  # a dead address fails fast, not after Ray's retries
    assert_one_line_error(result, fragment)
    assert not ray.is_initialized()
    assert not out.exists()


def test_existing_sweep_is_refused(tmp_path):
    (tmp_path / "sweep.json").write_text("{}")
    result = CliRunner().invoke(
        alm, ["sweep", "--config", "quick", "--envs", ENV, "--seeds", "1", "--out", str(tmp_path)]
    )
    assert_one_line_error(result, "already holds a sweep; use --overwrite")
    assert not ray.is_initialized()


@pytest.mark.slow
def test_without_ray_one_line_error(tmp_path):
    code = (
        "import sys; sys.modules['ray'] = None; import cli; "
        "sys.argv = ['alm', 'sweep', '--config', 'quick', '--envs', 'x', '--seeds', '1']; "
        "cli.main()"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "error: alm sweep needs Ray: pip install 'alm-offline[ray]'"


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


def test_results_table_columns_and_paper_row():
    def trial(env: str, seed: int, value: float | None) -> dict:
        if value is None:
            return {"env": env, "seed": seed, "status": "failed", "summary": None}
        return {"env": env, "seed": seed, "status": "ok", "summary": {"eval_return_mean": value}}

    trials = [
        trial("HalfCheetah-v5", 1, 100.0),
        trial("HalfCheetah-v5", 2, 300.0),
        trial("Hopper-v5", 1, 50.0),
        trial("Hopper-v5", 2, None),
        trial("Pusher-v5", 1, None),
    ]
    paper = {"HalfCheetah-v5": (10789.0, 366.0), "Hopper-v5": (2546.0, 1074.0)}
    envs = ["HalfCheetah-v5", "Hopper-v5", "Pusher-v5"]
    lines = results_table(trials, envs, "online", paper).splitlines()
    assert lines == [
        "| Method | HalfCheetah-v5 | Hopper-v5 | Pusher-v5 |",
        "|---|---|---|---|",
        "| ALM (this run: online) | 200.0 ± 100.0 | 50.0 ± 0.0 (1/2 seeds) | failed |",
        "| ALM(3), paper Table 1 (200k steps) | 10789.0 ± 366.0 | 2546.0 ± 1074.0 | – |",
    ]
    assert len(results_table(trials[4:], ["Pusher-v5"], "x", paper).splitlines()) == 3
