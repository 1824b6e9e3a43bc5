"""One trial: its state on disk, its command line, and running it (the body of a Ray task).

Every trial is a ``python -m cli train-online|train-offline|baseline ... run_dir=DIR``
subprocess, so its state is what its run dir holds, whatever happened to the sweep's
driver or worker: ``summary.json`` = finished; ``checkpoints/latest.pt`` = resumable
(ALM's checkpoint; a d3rlpy baseline writes none mid-run, cannot resume and starts
again); otherwise fresh. This module imports nothing heavy: a Ray worker imports it to run a task.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from alm_offline.training.rundir import read_summary

FINISHED, RESUMABLE, FRESH = "finished", "resumable", "fresh"
LOCK_WAIT_S = 30.0  # a killed trial's process may take a moment to go (and free its lock)
PR_SET_PDEATHSIG = 1


def trial_state(run_dir: str | Path) -> str:
    """``finished``, ``resumable`` or ``fresh``, from the files of ``run_dir`` alone."""
    path = Path(run_dir)
    if (path / "summary.json").is_file():
        return FINISHED
    if (path / "checkpoints" / "latest.pt").is_file():  # ALM's resume checkpoint
        return RESUMABLE
    return FRESH


def trial_command(
    trial: dict[str, Any],
    *,
    mode: str,
    state: str,
    python: str,
    config: str | None,
    overrides: Sequence[str],
    threads: int,
    overwrite: bool,
) -> list[str]:
    """The command line that runs ``trial`` from ``state`` (``fresh`` or ``resumable``)."""
    head = [python, "-m", "cli"]
    command = "train-online" if mode == "online" else "train-offline"
    if state == RESUMABLE:
        return [*head, command, "--resume", trial["run_dir"], "--quiet"]
    if mode == "online":
        keys = [f"env={trial['env']}"]
    else:  # the method through train-offline's table (alm baseline ALGO adds method=ALGO)
        keys = ["--dataset", trial["dataset"], f"method={trial['method']}"]
    return [
        *head,
        command,
        *keys,
        "--quiet",
        *(["--overwrite"] if overwrite else []),
        *(["--config", config] if config else []),
        *overrides,
        f"seed={trial['seed']}",
        f"threads={threads}",
        f"run_dir={trial['run_dir']}",
    ]


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the kernel SIGKILL the child when its parent dies (Linux's
    ``PR_SET_PDEATHSIG``): a trial never outlives its Ray worker and keeps no run dir lock."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)  # loaded before the fork
    parent = os.getpid()

    def set_death_signal() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before the call
            os._exit(1)

    return set_death_signal


def wait_for_lock(run_dir: str | Path, timeout: float = LOCK_WAIT_S) -> None:
    """Wait (at most ``timeout`` s) while another process holds ``run_dir``'s RunDirLock:
    after a kill, the dying trial may hold it for a moment. The trial itself reports a
    lock still held after that."""
    lock = Path(run_dir) / ".lock"
    if not lock.is_file():
        return
    deadline = time.monotonic() + timeout
    with lock.open("rb") as file:
        while True:
            try:
                fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return
                time.sleep(0.2)
                continue
            fcntl.flock(file, fcntl.LOCK_UN)
            return


def run_trial(trial: dict[str, Any], command: list[str]) -> dict[str, Any]:
    """Run ``command`` (inside a Ray worker) and return ``trial``'s row; never raises: a
    failure is a ``failed`` row with the last line the trial wrote to stderr."""
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}  # idle OpenMP threads yield the core
    wait_for_lock(trial["run_dir"])
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            env=env,
            check=False,
            preexec_fn=die_with_parent(),  # safe: a worker runs one task at a time
        )
    except OSError as exc:
        return {**trial, "status": "failed", "summary": None, "error": f"OSError: {exc}"}
    summary = read_summary(trial["run_dir"])
    if done.returncode != 0 or not summary:
        lines = done.stderr.strip().splitlines() or [f"exit status {done.returncode}"]
        return {**trial, "status": "failed", "summary": None, "error": lines[-1]}
    return {**trial, "status": "ok", "summary": summary, "error": None}
