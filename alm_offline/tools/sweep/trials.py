"""One trial: its state on disk, its command line, and running it (the body of a Ray task).

Every trial is a ``python -m alm_offline.training online|offline ... run_dir=DIR``
subprocess (the library's own training entry, not the ``alm`` CLI above it), so
its state is what its run dir holds, whatever happened to the sweep's driver or worker.

A trial trains one seed (``seed=S``; ``DIR`` is that seed's run dir) or, for ALM, a batch of
seeds in one process (``seeds=1,2,3``; each seed's run dir is ``DIR/s<SEED>``, and
``DIR/summary.json`` is written once every seed has finished). Its state: ``summary.json``
in ``DIR`` = finished; ALM's ``checkpoints/latest.pt`` in ``DIR`` (a batch: ``DIR/config.yaml``
and the checkpoint of every seed) = resumable; otherwise fresh (a d3rlpy baseline writes no
checkpoint mid-run, cannot resume and starts again). A trial comes back as one row per seed.
This module imports nothing heavy: a Ray worker imports it to run a task.
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

from alm_offline.config import run_mode
from alm_offline.runtime.provenance import code_root
from alm_offline.training.rundir import read_summary

FINISHED, RESUMABLE, FRESH = "finished", "resumable", "fresh"
LOCK_WAIT_S = 30.0  # a killed trial's process may take a moment to go (and free its lock)
PR_SET_PDEATHSIG = 1


def is_batched(trial: dict[str, Any]) -> bool:
    """Whether ``trial`` trains two or more seeds in one process (``seeds=...``)."""
    return len(trial["seeds"]) > 1


def seed_run_dir(trial: dict[str, Any], seed: int) -> str:
    """The run dir of ``seed`` within ``trial``: ``DIR/s<SEED>`` for a batch, else ``DIR``."""
    return str(Path(trial["run_dir"]) / f"s{seed}") if is_batched(trial) else trial["run_dir"]


def trial_rows(
    trial: dict[str, Any], status: str = "pending", error: str | None = None
) -> list[dict[str, Any]]:
    """One row per seed of ``trial`` (what ``sweep.json``, the CSV and the table hold): the
    seed's own ``run_dir`` and, as ``trial_dir``, the run dir of the process that trains it."""
    cell = {key: trial[key] for key in ("env", "dataset") if key in trial}
    return [
        {
            **cell,
            "method": trial["method"],
            "seed": seed,
            "run_dir": seed_run_dir(trial, seed),
            "trial_dir": trial["run_dir"],
            "status": status,
            "summary": None,
            "error": error,
        }
        for seed in trial["seeds"]
    ]


def finished_rows(trial: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of a finished trial, each from its seed's own ``summary.json`` (a seed
    without one is a ``failed`` row)."""
    rows = trial_rows(trial)
    for row in rows:
        summary = read_summary(row["run_dir"])
        error = None if summary else f"no summary.json in {row['run_dir']}"
        row.update(status="ok" if summary else "failed", summary=summary or None, error=error)
    return rows


def trial_state(run_dir: str | Path, seeds: Sequence[int] = ()) -> str:
    """``finished``, ``resumable`` or ``fresh``, from the files of ``run_dir`` alone; with
    two or more ``seeds``, of a batched run dir (resumable once every seed has a checkpoint:
    the batch resumes together)."""
    path = Path(run_dir)
    if (path / "summary.json").is_file():  # a batch writes it after all its seeds
        return FINISHED
    if len(seeds) > 1:
        checkpoints = [path / f"s{seed}" / "checkpoints" / "latest.pt" for seed in seeds]
        ready = (path / "config.yaml").is_file() and all(p.is_file() for p in checkpoints)
    else:
        ready = (path / "checkpoints" / "latest.pt").is_file()  # ALM's resume checkpoint
    return RESUMABLE if ready else FRESH


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
    """The command line that runs ``trial`` from ``state`` (``fresh`` or ``resumable``):
    ``seed=S`` for one seed, ``seeds=1,2,3`` for a batch (always ``run_dir=DIR``)."""
    head = [python, "-m", "alm_offline.training", run_mode(mode).name]
    if state == RESUMABLE:
        return [*head, "--resume", trial["run_dir"], "--quiet"]
    if run_mode(mode).online:  # SAC beside ALM through the method key (alm baseline sac)
        method = trial.get("method", "alm")
        keys = [f"env={trial['env']}", *([f"method={method}"] if method != "alm" else [])]
    else:  # the method through train-offline's table (alm baseline ALGO adds method=ALGO)
        keys = [f"dataset={trial['dataset']}", f"method={trial['method']}"]
    seeds = trial["seeds"]
    batch = ",".join(str(seed) for seed in seeds)
    seed_key = f"seeds={batch}" if is_batched(trial) else f"seed={seeds[0]}"
    return [
        *head,
        *keys,
        "--quiet",
        *(["--overwrite"] if overwrite else []),
        *(["--config", config] if config else []),
        *overrides,
        seed_key,
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


def driver_origin() -> dict[str, str]:
    """Where the sweep's driver runs: the checkout (or installed tree) its ``alm_offline``
    comes from and its working directory, for the trials it starts on Ray's workers."""
    return {"code_root": str(code_root()), "cwd": os.getcwd()}


def trial_environment(origin: dict[str, str] | None) -> tuple[dict[str, str], str | None]:
    """The environment and working directory of a trial's process on a Ray worker.

    A worker of a cluster started by ``ray start`` has the environment and directory of
    that command, not the sweep's: a trial started there as they are imports whichever
    ``alm_offline`` that directory or install holds, not the checkout the sweep runs (a
    worktree pinned to a commit). With the driver's ``origin``, the trial imports the
    driver's code (its root first on ``PYTHONPATH``, the working directory kept off
    ``sys.path`` by ``PYTHONSAFEPATH``) and runs in the driver's directory, where either
    exists on the worker's node (on another machine: the node's own)."""
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}  # idle OpenMP threads yield the core
    if origin is None:
        return env, None
    root = Path(origin["code_root"])
    if (root / "alm_offline" / "__init__.py").is_file():
        entries = [str(root), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(entries))
        env["PYTHONSAFEPATH"] = "1"
    cwd = origin["cwd"] if Path(origin["cwd"]).is_dir() else None
    return env, cwd


def run_trial(
    trial: dict[str, Any], command: list[str], origin: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """Run ``command`` (inside a Ray worker, as the sweep's driver at ``origin`` would:
    ``trial_environment``) and return ``trial``'s rows, one per seed; never raises: a
    failure (for a batch: of any seed) makes every seed a ``failed`` row with the last line
    the trial wrote to stderr."""
    env, cwd = trial_environment(origin)
    for seed in trial["seeds"] if is_batched(trial) else ():
        wait_for_lock(seed_run_dir(trial, seed))
    wait_for_lock(trial["run_dir"])
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            env=env,
            cwd=cwd,
            check=False,
            preexec_fn=die_with_parent(),  # safe: a worker runs one task at a time
        )
    except OSError as exc:
        return trial_rows(trial, "failed", f"OSError: {exc}")
    if done.returncode != 0 or not read_summary(trial["run_dir"]):
        lines = done.stderr.strip().splitlines() or [f"exit status {done.returncode}"]
        return trial_rows(trial, "failed", lines[-1])
    return finished_rows(trial)
