"""`alm sweep --address` on a real two-node Ray cluster (``ray start`` head + worker, each a
process group of its own): a killed driver and a killed worker node, then ``--resume``."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from test_sweep import ENV, REPO, TINY, read_csv, tree_hashes

pytest.importorskip("ray")
pytestmark = pytest.mark.slow

# no token auth (Ray 2.60's default for `ray start`); node death noticed within ~2 s
RAY_ENV = {
    "RAY_AUTH_MODE": "disabled",
    "RAY_health_check_period_ms": "500",
    "RAY_health_check_failure_threshold": "3",
    "RAY_health_check_initial_delay_ms": "0",
}


class Cluster:
    """A head and a worker node, each started by ``ray start`` in a new session, so that a
    node is killed by killing its process group (``ray stop`` would stop every Ray here)."""

    def __init__(self) -> None:
        self.temp = tempfile.mkdtemp(prefix="r", dir="/tmp")  # Ray's socket paths are short
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self.env = {**os.environ, **RAY_ENV}
        self.sessions: list[int] = []
        self.head = self._start("--head", f"--port={self.port}", "--include-dashboard=false")
        self.worker = self._start(f"--address={self.address}")

    def _start(self, *args: str) -> int:
        command = ["ray", "start", *args, "--node-ip-address=127.0.0.1", "--num-cpus=1",
                   "--num-gpus=0", f"--temp-dir={self.temp}", "--disable-usage-stats"]  # fmt: skip
        started = subprocess.run(
            command, env=self.env, capture_output=True, text=True, timeout=120,
            start_new_session=True,
        )  # fmt: skip
        session = _newest_session(self.temp)
        self.sessions.append(session)
        assert started.returncode == 0, started.stdout + started.stderr
        return session

    def kill(self, session: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(session, signal.SIGKILL)

    def stop(self) -> None:
        for session in self.sessions:
            self.kill(session)


def _newest_session(temp: str) -> int:
    """The session of the node just started: ``ray start`` (run with start_new_session)
    leaves its daemons in its session, and session ids are the pids of ever newer leaders."""
    sessions = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if temp in (proc / "cmdline").read_bytes().decode(errors="replace"):
                sessions.add(os.getsid(int(proc.name)))
        except OSError:
            continue
    return max(sessions)


@pytest.fixture(scope="module")
def cluster():
    cluster = Cluster()
    try:
        yield cluster
    finally:
        cluster.stop()


def sweep_process(cwd: Path, *args: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "cli", "sweep", *args]
    return subprocess.Popen(
        command, cwd=cwd, env={**os.environ, **RAY_ENV}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def finish(process: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    stdout, stderr = process.communicate(timeout=timeout)
    return process.returncode, stdout + stderr


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def lock_holder(run_dir: Path) -> int | None:
    try:
        return int((run_dir / ".lock").read_text().strip())
    except (OSError, ValueError):
        return None


def alive(pid: int | None) -> bool:
    if pid is None or not Path(f"/proc/{pid}").exists():
        return False
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def eval_steps(run_dir: Path) -> list[int]:
    lines = (run_dir / "eval.jsonl").read_text().splitlines()
    return [json.loads(line)["env_step"] for line in lines]


STEPS = ("steps=600", "checkpoint_every=100", *[o for o in TINY if not o.startswith("steps=")])
GRID = ("--config", "quick", "--envs", ENV, *STEPS)


def test_a_killed_driver_resumes(cluster, tmp_path):
    """SIGKILL the driver once a trial has finished and another is mid-run: ``--resume``
    keeps the finished one byte for byte and continues the other from its checkpoint."""
    out = tmp_path / "sw"
    runs = [out / ENV / f"s{seed}" for seed in (1, 2, 3)]
    driver = sweep_process(tmp_path, *GRID, "--seeds", "1,2,3", "--seeds-per-trial", "1",
                           "--address", cluster.address, "--out", str(out))  # fmt: skip

    def one_done_one_mid_run() -> bool:
        assert driver.poll() is None, finish(driver)[1]
        done = [r for r in runs if (r / "summary.json").is_file()]
        mid = [r for r in runs if not (r / "summary.json").is_file()
               and (r / "checkpoints" / "latest.pt").is_file()]  # fmt: skip
        return bool(done and mid)

    try:
        wait_for(one_done_one_mid_run, 240, "a finished and an interrupted trial")
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    finally:
        driver.kill()
    finished = [r for r in runs if (r / "summary.json").is_file()]
    interrupted = [r for r in runs if r not in finished and (r / "checkpoints/latest.pt").is_file()]
    holders = [lock_holder(r) for r in interrupted]
    wait_for(lambda: not any(alive(p) for p in holders), 30, "the orphaned trials to die")
    kept = {r: tree_hashes(r) for r in finished}
    record = json.loads((out / "sweep.json").read_text())
    assert record["status"] == "running"
    before = {r: eval_steps(r) for r in interrupted}

    code, output = finish(sweep_process(tmp_path, "--resume", str(out)))
    assert code == 0, output
    assert f"({len(interrupted)} resumed)" in output
    for run in finished:
        assert tree_hashes(run) == kept[run]
    for run in interrupted:
        summary = json.loads((run / "summary.json").read_text())
        assert summary["env_steps"] == 600
        steps = eval_steps(run)
        assert steps == [150, 300, 450, 600]
        assert steps[: len(before[run])] == before[run][: len(steps)]  # it continues
    rows = read_csv(out / "results.csv")
    assert [(r["seed"], r["status"]) for r in rows] == [("1", "ok"), ("2", "ok"), ("3", "ok")]
    table = (out / "results.md").read_text()
    assert "failed" not in table and " seeds)" not in table  # every cell, every seed


def test_a_killed_worker_node_is_a_failed_row_then_resumes(cluster, tmp_path):
    """Two trials, one per node; the worker node dies mid-trial: its trial is a failed row
    (no automatic retry), the other finishes; ``--resume`` (on the head alone) continues the
    failed trial from its checkpoint."""
    out = tmp_path / "sw"
    runs = [out / ENV / f"s{seed}" for seed in (1, 2)]
    driver = sweep_process(tmp_path, *GRID, "--seeds", "1,2", "--seeds-per-trial", "1",
                           "--address", cluster.address, "--out", str(out))  # fmt: skip

    def on_worker() -> Path | None:
        for run in runs:
            pid = lock_holder(run)
            if (
                alive(pid)
                and (run / "checkpoints/latest.pt").is_file()
                and not (run / "summary.json").is_file()
            ):
                with contextlib.suppress(ProcessLookupError):
                    if os.getsid(pid) == cluster.worker:
                        return run
        return None

    try:
        wait_for(lambda: on_worker() is not None, 240, "a checkpoint of the worker's trial")
        victim = on_worker()
        cluster.kill(cluster.worker)
        code, output = finish(driver)
    finally:
        driver.kill()
    assert code == 1, output
    assert "1 of 2 trials failed" in output
    record = json.loads((out / "sweep.json").read_text())
    by_dir = {t["run_dir"]: t for t in record["trials"]}
    assert by_dir[str(victim)]["status"] == "failed"
    assert by_dir[str(victim)]["error"].split(":")[0] in {
        "NodeDiedError", "WorkerCrashedError", "ObjectLostError", "OwnerDiedError"
    }  # fmt: skip
    assert not (victim / "summary.json").exists()
    other = next(r for r in runs if r != victim)
    assert by_dir[str(other)]["status"] == "ok"
    kept = tree_hashes(other)

    code, output = finish(sweep_process(tmp_path, "--resume", str(out)))
    assert code == 0, output
    assert "1 of 2 online trials to run (1 resumed)" in output
    assert tree_hashes(other) == kept
    assert json.loads((victim / "summary.json").read_text())["env_steps"] == 600
    assert eval_steps(victim) == [150, 300, 450, 600]
    assert [r["status"] for r in read_csv(out / "results.csv")] == ["ok", "ok"]


def test_a_sweep_refuses_to_join_the_local_ray_another_sweep_owns(tmp_path):
    """Sweep A starts a local Ray of its own; sweep B, given that Ray's address, refuses in
    one line before it writes anything (A would stop that Ray when it ends, and B's trials
    with it: LocalRayletDiedError at issue 28); A finishes every trial."""
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    command = [sys.executable, "-m", "cli", "sweep", "--config", "quick", "--envs", ENV,
               *TINY]  # fmt: skip
    first = subprocess.Popen(
        [*command, "--seeds", "1,2", "--out", str(tmp_path / "a")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    owner = None
    while owner is None and time.monotonic() < deadline and first.poll() is None:
        for path in Path("/tmp/ray").glob("session_*/alm-sweep-owner.json"):
            record = json.loads(path.read_text())
            if record["pid"] == first.pid:
                owner = record
        time.sleep(0.2)
    assert owner is not None, "sweep A never started its Ray"
    second = subprocess.run(
        [*command, "--seeds", "3", "--out", str(tmp_path / "b"), "--address",
         owner["gcs_address"]],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    lines = [line for line in second.stderr.splitlines() if line.startswith("error:")]
    assert second.returncode == 2 and len(lines) == 1, second.stderr
    assert f"is the local Ray of another sweep (pid {first.pid})" in lines[0]
    assert not (tmp_path / "b").exists()
    out, _ = first.communicate(timeout=300)
    assert first.returncode == 0, out
    rows = read_csv(tmp_path / "a" / "results.csv")
    assert [(r["seed"], r["status"]) for r in rows] == [("1", "ok"), ("2", "ok")]


def test_trials_run_the_sweeps_checkout_not_the_clusters(cluster, tmp_path):
    """The cluster was started by ``ray start`` in the repository, with its environment;
    a sweep driven from another checkout (as a worktree pinned to a commit is) must train
    with that checkout's code: here a copy whose quick config has another tau."""
    pinned = tmp_path / "pinned"
    for name in ("alm_offline", "datasets", "configs"):
        shutil.copytree(REPO / name, pinned / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "cli.py", pinned / "cli.py")
    quick = pinned / "configs/quick.yaml"
    assert "  tau: 0.05\n" in quick.read_text()
    quick.write_text(quick.read_text().replace("  tau: 0.05\n", "  tau: 0.04\n"))
    out = tmp_path / "sw"
    driver = sweep_process(pinned, "--config", "quick", "--envs", ENV, *TINY, "--seeds", "1",
                           "--address", cluster.address, "--out", str(out))  # fmt: skip
    code, output = finish(driver)
    assert code == 0, output
    config = yaml.safe_load((out / ENV / "s1" / "config.yaml").read_text())
    assert config["agent"]["tau"] == 0.04  # the copy's; the repository's is 0.05
