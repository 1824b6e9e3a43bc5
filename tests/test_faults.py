"""Faults, races and hostile input (issue 14): nothing lost, nothing silent.

Real processes and real files throughout: a full disk is a real write limit
(``RLIMIT_FSIZE``), a read-only folder is a real permission (as root, the process runs
without the capabilities that let root ignore file modes), two writers are two processes.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import TINY_OVERRIDES, assert_one_line_error, train_tiny_run

from alm_offline.datasets import bundled_dataset_path
from alm_offline.training.checkpoint import checkpoint_path, read_checkpoint
from cli import alm

ALM = "alm"
pytestmark = pytest.mark.slow


def run_cli(*args: object):
    return CliRunner().invoke(alm, [str(a) for a in args])


def run_alm(*args: object, preexec=None, timeout: float = 300) -> subprocess.CompletedProcess:
    """The installed ``alm`` script in a real process."""
    return subprocess.run(
        [ALM, *map(str, args)],
        capture_output=True,
        text=True,
        preexec_fn=preexec,
        timeout=timeout,
    )


def assert_one_error_line(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    """A process that failed with exit 2 and printed exactly one ``error:`` line."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def full_disk_after(limit: int):
    """preexec_fn: files of the process cannot grow past ``limit`` bytes (EFBIG)."""

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def without_root_overrides() -> None:
    """preexec_fn: as root, drop the capabilities that bypass file modes, so a read-only
    folder is read-only for this process too (a normal user needs nothing)."""
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2, 3):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def make_read_only(path: Path) -> None:
    for item in [path, *path.rglob("*")]:
        item.chmod(item.stat().st_mode & ~0o222)


def dead_pid() -> int:
    """The PID of a process that has exited."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A finished tiny online run (300 env steps, checkpoint included)."""
    return train_tiny_run(tmp_path_factory.mktemp("faults") / "run")


@pytest.fixture
def run_copy(finished_run, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy)
    return copy


# ----------------------------------------------------------------- 2. corruption
def test_a_corrupt_checkpoint_is_refused(run_copy):
    """2000 bytes flipped inside a tensor's stored data: ``torch.load`` alone loads it."""
    path = checkpoint_path(run_copy)
    with zipfile.ZipFile(path) as archive:
        storages = [info for info in archive.infolist() if "/data/" in info.filename]
        member = max(storages, key=lambda info: info.file_size)  # a tensor's bytes
    data = bytearray(path.read_bytes())
    name_length, extra_length = struct.unpack("<HH", data[member.header_offset + 26 :][:4])
    start = member.header_offset + 30 + name_length + extra_length + member.file_size // 2
    data[start : start + 2000] = bytes(b ^ 0xFF for b in data[start : start + 2000])
    path.write_bytes(bytes(data))
    torch.load(path, weights_only=True)  # loads: nothing but the CRCs tells the damage
    result = run_cli("train-online", "--resume", run_copy, "--quiet", "steps=400")
    assert_one_line_error(result, "is corrupt")
    assert_one_line_error(run_cli("eval", run_copy, "--episodes", "1"), "is corrupt")
    assert json.loads((run_copy / "summary.json").read_text())["env_steps"] == 300


# ------------------------------------------------------------- 3. one writer
def _wait_for(predicate, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_a_run_dir_has_one_writer_and_a_killed_one_leaves_no_lock(tmp_path):
    run_dir = tmp_path / "run"
    writer = subprocess.Popen(
        [ALM, "train-online", "--quiet", *TINY_OVERRIDES, "steps=100000", f"run_dir={run_dir}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_for(lambda: checkpoint_path(run_dir).is_file(), writer)
        config_before = (run_dir / "config.yaml").read_text()
        resume = run_cli("train-online", "--resume", run_dir, "--quiet", "steps=400")
        assert_one_line_error(resume, f"pid {writer.pid}")
        overwrite = run_cli(
            "train-online",
            "--overwrite",
            "--quiet",
            *TINY_OVERRIDES,
            "seed=9",
            f"run_dir={run_dir}",
        )
        assert_one_line_error(overwrite, "in use")
        assert (run_dir / "config.yaml").read_text() == config_before
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    saved = read_checkpoint(checkpoint_path(run_dir))["counters"]["env_steps"]
    resumed = run_cli("train-online", "--resume", run_dir, "--quiet", f"steps={saved + 100}")
    assert resumed.exit_code == 0, resumed.output  # the OS released the dead writer's lock
    steps = [json.loads(line)["env_step"] for line in (run_dir / "eval.jsonl").open()]
    assert steps == sorted(set(steps))  # no duplicated or interleaved rows


# --------------------------------------------------------- 4. a torn last line
def test_resume_drops_a_torn_final_line_and_only_a_final_one(tmp_path):
    run_dir = train_tiny_run(tmp_path / "run", "steps=200")
    for name in ("metrics.jsonl", "eval.jsonl"):
        with open(run_dir / name, "a", encoding="utf-8") as file:
            file.write('{"env_step": 250, "return_me')  # a kill mid-append
    result = run_cli("train-online", "--resume", run_dir, "--quiet", "steps=300")
    assert result.exit_code == 0, result.output
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").open()]
    assert [row["updates"] for row in metrics] == [50, 100, 150, 200]
    evals = [json.loads(line) for line in (run_dir / "eval.jsonl").open()]
    assert [row["env_step"] for row in evals] == [150, 200, 300]

    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    lines[1] = lines[1][:20]  # damage that is not a cut-off end
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    result = run_cli("train-online", "--resume", run_dir, "--quiet", "steps=400")
    assert_one_line_error(result, "metrics.jsonl line 2")


# ------------------------------------------------------- 5. values that cannot work
@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("seed=-1", "seed"),
        (f"seed={2**64 + 1}", "seed"),
        ("device=cuda:abc", "device"),
        pytest.param(
            "device=cuda",
            "CUDA",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present"),
        ),
        ("agent.lr=nan", "agent.lr"),
        ("agent.expl_std_start=nan", "agent.expl_std_start"),
        ("agent.max_grad_norm=nan", "agent.max_grad_norm"),
        ("agent.tau=nan", "agent.tau"),
    ],
)
def test_values_that_pass_the_type_check_but_cannot_work(tmp_path, override, fragment):
    run_dir = tmp_path / "run"
    result = run_cli("train-online", *TINY_OVERRIDES, override, f"run_dir={run_dir}")
    assert_one_line_error(result, fragment)
    assert not run_dir.exists()


def test_offline_on_a_dataset_naming_an_unknown_env_leaves_no_run_dir(tmp_path):
    data = tmp_path / "data.hdf5"
    shutil.copy(bundled_dataset_path(), data)
    with h5py.File(data, "r+") as file:
        group = file.require_group("metadata")
        group.attrs["env_id"] = "NoSuchEnv-v0"
        group.attrs["action_units"] = "env"
        group.attrs["action_low"] = np.array([-3.0], dtype=np.float32)
        group.attrs["action_high"] = np.array([3.0], dtype=np.float32)
    run_dir = tmp_path / "run"
    result = run_cli("train-offline", "--dataset", data, "steps=10", f"run_dir={run_dir}")
    assert_one_line_error(result, "NoSuchEnv-v0")
    assert not run_dir.exists()


COLLECT = ("dataset", "collect", "--steps", "10", "--env")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (lambda run, tmp: ["eval", run, "--seed", "-1"], "--seed"),
        (lambda run, tmp: ["eval", run, "--device", "bogus"], "bogus"),
        (lambda run, tmp: ["analyze", "bias", run, "--seed", "-1", "--out", tmp], "--seed"),
        (
            lambda run, tmp: [*COLLECT, "InvertedPendulum-v5", "--seed", "-1", "--out", tmp / "a"],
            "seed",
        ),
        (
            lambda run, tmp: [
                *COLLECT,
                "InvertedPendulum-v5",
                "--noise",
                "nan",
                "--out",
                tmp / "b",
            ],
            "noise",
        ),
        (
            lambda run, tmp: [
                *COLLECT,
                "HalfCheetah-v5",
                "--policy",
                checkpoint_path(run),
                "--out",
                tmp / "c.hdf5",
            ],
            "HalfCheetah-v5 has 17/6",
        ),
    ],
)
def test_bad_values_for_the_agent_commands(finished_run, tmp_path, args, fragment):
    out = tmp_path / "out"
    result = run_cli(*args(finished_run, out))
    assert_one_line_error(result, fragment)
    assert not out.exists()


# ------------------------------------------------------------ 6. faults, one line
def test_a_full_disk_during_a_minari_conversion(tmp_path):
    proc = run_alm(
        "dataset",
        "convert",
        bundled_dataset_path(),
        tmp_path / "pendulum-v0",
        preexec=full_disk_after(64 * 1024),
    )
    assert_one_error_line(proc, str(tmp_path / "pendulum-v0"), "File too large")
    assert sorted(os.listdir(tmp_path)) == []  # no dataset, no staging folder


def test_a_full_disk_during_a_checkpoint_write(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_alm(
        "train-online",
        "--quiet",
        *TINY_OVERRIDES,
        f"run_dir={run_dir}",
        preexec=full_disk_after(48 * 1024),
    )
    line = assert_one_error_line(proc, "checkpoint", "File too large")
    assert str(run_dir) in line
    assert not list((run_dir / "checkpoints").iterdir())  # no partial checkpoint left


def test_read_only_run_dirs_and_folders(run_copy, tmp_path):
    make_read_only(run_copy)
    try:
        proc = run_alm(
            "train-online",
            "--resume",
            run_copy,
            "--quiet",
            "steps=400",
            preexec=without_root_overrides,
        )
        assert_one_error_line(proc, str(run_copy), "Permission denied")
        proc = run_alm(
            "train-online",
            "--overwrite",
            "--quiet",
            *TINY_OVERRIDES,
            f"run_dir={run_copy}",
            preexec=without_root_overrides,
        )
        assert_one_error_line(proc, str(run_copy), "Permission denied")
        proc = run_alm(
            "plot", run_copy, "--out", run_copy / "curves.png", preexec=without_root_overrides
        )
        assert_one_error_line(proc, "curves.png", "Permission denied")
        proc = run_alm(
            "eval",
            run_copy,
            "--episodes",
            "1",
            "--video",
            run_copy / "eval.mp4",
            preexec=without_root_overrides,
        )
        assert_one_error_line(proc, "eval.mp4", "Permission denied")
        started = time.monotonic()
        proc = run_alm(
            "dataset",
            "collect",
            "--env",
            "InvertedPendulum-v5",
            "--steps",
            "100000",
            "--out",
            run_copy / "data.hdf5",
            preexec=without_root_overrides,
        )
        assert_one_error_line(proc, "data.hdf5", "Permission denied")
        assert time.monotonic() - started < 60  # refused before 100k steps were collected
    finally:
        for item in [run_copy, *run_copy.rglob("*")]:
            item.chmod(item.stat().st_mode | 0o200)
    assert json.loads((run_copy / "summary.json").read_text())["env_steps"] == 300


# ------------------------------------------------------------------ 7. leftovers
def test_a_dead_processs_temporaries_are_cleaned_up(run_copy, tmp_path):
    pid = dead_pid()
    stale_checkpoint = run_copy / "checkpoints" / f".latest.pt.tmp-{pid}"
    stale_checkpoint.write_bytes(b"\0" * 1000)
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        live_checkpoint = run_copy / "checkpoints" / f".latest.pt.tmp-{alive.pid}"
        live_checkpoint.write_bytes(b"\0" * 10)  # a running process's: not ours to remove
        result = run_cli("train-online", "--resume", run_copy, "--quiet", "steps=320")
        assert result.exit_code == 0, result.output
        assert not stale_checkpoint.exists() and live_checkpoint.exists()
    finally:
        alive.kill()
        alive.wait()

    stale_stage = tmp_path / f".pendulum.hdf5.tmp-{pid}-x1y2"
    stale_stage.mkdir()
    (stale_stage / "partial.hdf5").write_bytes(b"\0" * 1000)
    result = run_cli("dataset", "convert", bundled_dataset_path(), tmp_path / "pendulum.hdf5")
    assert result.exit_code == 0, result.output
    assert not stale_stage.exists() and (tmp_path / "pendulum.hdf5").is_file()


# ------------------------------------------------------------- 8. untrusted input
def test_environment_interpolations_are_not_resolved_into_run_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("ALM_TEST_SECRET", "hunter2")
    run_dir = tmp_path / "run"
    config = tmp_path / "secret.yaml"
    config.write_text("logger:\n  wandb_project: ${oc.env:ALM_TEST_SECRET}\n")
    result = run_cli("train-online", "--config", config, *TINY_OVERRIDES, f"run_dir={run_dir}")
    assert_one_line_error(result, "oc.env")
    result = run_cli(
        "train-online", *TINY_OVERRIDES, "seed=${oc.env:ALM_TEST_SECRET}", f"run_dir={run_dir}"
    )
    assert_one_line_error(result, "oc.env")
    assert not run_dir.exists()


def test_a_run_dirs_config_is_not_resolved(run_copy, monkeypatch):
    monkeypatch.setenv("ALM_TEST_SECRET", "hunter2")
    stored = run_copy / "config.yaml"
    stored.write_text(
        stored.read_text().replace(
            "wandb_project: alm-offline", "wandb_project: ${oc.env:ALM_TEST_SECRET}"
        )
    )
    assert "${oc.env:ALM_TEST_SECRET}" in stored.read_text()
    result = run_cli("train-online", "--resume", run_copy, "--quiet", "steps=320")
    assert_one_line_error(result, "oc.env")
    assert "hunter2" not in stored.read_text()


def test_hdf5_external_links_are_refused(tmp_path):
    other = tmp_path / "other.hdf5"
    with h5py.File(other, "w") as file:
        file["secret"] = np.arange(10, dtype=np.float32)
    data = tmp_path / "linked.hdf5"
    shutil.copy(bundled_dataset_path(), data)
    with h5py.File(data, "r+") as file:
        del file["rewards"]
        file["rewards"] = h5py.ExternalLink(str(other), "secret")
    for args in (["dataset", "info", data], ["dataset", "list", tmp_path]):
        result = run_cli(*args)
        assert "external link" in result.output, result.output
    assert_one_line_error(run_cli("dataset", "info", data), "external link")


def test_control_characters_in_metadata_are_escaped(tmp_path):
    data = tmp_path / "data.hdf5"
    shutil.copy(bundled_dataset_path(), data)
    with h5py.File(data, "r+") as file:
        file.require_group("metadata").attrs["description"] = "red \x1b[31mALERT\x1b[0m\x07 bell"
        file["metadata"].attrs["env_id"] = "InvertedPendulum-v5\x1b[2J"
    result = run_cli("dataset", "info", data, "--env", "InvertedPendulum-v5")
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "\x07" not in result.output
    assert "\\x1b[31mALERT" in result.output


def test_sweep_refuses_an_address_that_does_not_answer_as_ray(tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]

    def accept_and_stay_silent() -> None:
        try:
            conn, _ = listener.accept()
            conn.recv(1024)
            time.sleep(5)
            conn.close()
        except OSError:
            pass

    threading.Thread(target=accept_and_stay_silent, daemon=True).start()
    try:
        result = run_cli(
            "sweep",
            "--config",
            "quick",
            "--envs",
            "InvertedPendulum-v5",
            "--seeds",
            "1",
            "--address",
            f"127.0.0.1:{port}",
            "--out",
            tmp_path / "sweep",
        )
    finally:
        listener.close()
    assert_one_line_error(result, "does not answer as a Ray cluster")
    help_text = run_cli("sweep", "--help").output
    assert "trust" in help_text


def test_the_one_temporary_then_rename_keeps_the_old_file_on_failure(tmp_path):
    """Issue 42: one helper writes through ``.NAME.tmp-PID`` for every module; a failed
    write leaves the old file and no temporary, a dead writer's temporary (with or without
    a suffix) is removed by the next writer."""
    from alm_offline.runtime.files import replaced_on_success

    out = tmp_path / "curves.png"
    out.write_text("old")
    dead = [tmp_path / ".curves.png.tmp-999999", tmp_path / ".curves.png.tmp-999999.png"]
    for path in dead:
        path.write_text("left by a killed writer")
    with pytest.raises(RuntimeError), replaced_on_success(out, ".png") as tmp:
        assert tmp.name.endswith(".png") and tmp.parent == tmp_path
        tmp.write_text("half")
        raise RuntimeError("disk full")
    assert out.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.png"]
    with replaced_on_success(out) as tmp:
        tmp.write_text("new")
    assert out.read_text() == "new" and len(list(tmp_path.iterdir())) == 1
