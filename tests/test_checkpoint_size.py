"""Checkpoints sized by their own data: each seed's holds its own filled rows, copies and
not views of a shared or larger storage (issue 41)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch
from conftest import train_tiny_run

from alm_offline.core.replay import ReplayBuffer, ReplayStorage
from alm_offline.training.checkpoint import atomic_torch_save

CAPACITY = "agent.buffer_size=20000"  # far more than the 300 env steps a tiny run fills


def replay_bytes(path: Path) -> int:
    """Bytes of the checkpoint's stored tensors (its zip's data records)."""
    with zipfile.ZipFile(path) as archive:
        return sum(info.file_size for info in archive.infolist() if "/data/" in info.filename)


def test_a_batched_seeds_checkpoint_is_the_size_of_a_lone_seeds(tmp_path):
    alone = train_tiny_run(tmp_path / "one", CAPACITY, "seeds=1")
    batch = train_tiny_run(tmp_path / "five", CAPACITY, "seeds=1,2,3,4,5")
    one = (alone / "s1" / "checkpoints" / "latest.pt").stat().st_size
    for seed in range(1, 6):
        size = (batch / f"s{seed}" / "checkpoints" / "latest.pt").stat().st_size
        assert size <= 1.1 * one, (seed, size, one)
    state = torch.load(batch / "s3" / "checkpoints" / "latest.pt", weights_only=True)
    obs = state["replay"]["obs"]
    assert obs.shape[0] == state["replay"]["size"] < 400  # 300 steps and episode starts
    assert obs.untyped_storage().nbytes() == obs.numel() * obs.element_size()


def test_the_replay_part_grows_with_rows_filled_not_capacity(tmp_path):
    sizes = {}
    for capacity in (1000, 100_000):
        for rows in (100, 400):
            storage = ReplayStorage(2, capacity, 4, 1, torch.device("cpu"))  # two seeds
            replay = ReplayBuffer(capacity, 4, 1, 3, storage=storage, row=1)
            replay.start_episode(torch.zeros(4).numpy())
            for _ in range(rows):
                replay.add(torch.zeros(1).numpy(), 0.0, False, torch.ones(4).numpy())
            path = tmp_path / f"{capacity}-{rows}.pt"
            atomic_torch_save(replay.state_dict(), path)
            sizes[capacity, rows] = replay_bytes(path)
    assert sizes[1000, 100] == sizes[100_000, 100]  # the capacity does not count
    assert sizes[1000, 400] == sizes[100_000, 400]
    assert sizes[1000, 400] > 3 * sizes[1000, 100]  # the rows filled do


def test_own_storage_copies_views_and_keeps_compact_tensors():
    from alm_offline.training.checkpoint import own_storage

    big = torch.arange(12.0).reshape(3, 4)
    compact = torch.ones(2)
    state = own_storage({"a": [big[1:2]], "b": (compact,), "c": 3})
    view = state["a"][0]
    assert view.tolist() == [[4.0, 5.0, 6.0, 7.0]]
    assert view.untyped_storage().nbytes() == 4 * 4
    assert state["b"][0] is compact and state["c"] == 3


SLOW_SAVE = """
import signal, sys, time
from pathlib import Path
import torch
import cli
from alm_offline.training import checkpoint
signal.signal(signal.SIGTERM, cli.exit_on_sigterm)  # as cli.main installs it
# Python's own SIGINT handler, as an interactive shell starts it: a suite run as a background
# job of a script (`make test &`) inherits SIGINT ignored, and so would this child
signal.signal(signal.SIGINT, signal.default_int_handler)

class Slow:  # a save that takes long enough to be interrupted in the middle
    def __init__(self):
        self.tensors = [torch.ones(1_000_000)] * 400  # 1.6 GB to write, 4 MB held

real_save = torch.save
def slow_save(obj, file):
    print("saving", flush=True)
    for tensor in obj.tensors:
        real_save(tensor, file)
        time.sleep(0.01)  # about 4 s in all: the signal lands mid-save on a busy machine too
checkpoint.torch.save = slow_save
checkpoint.atomic_torch_save(Slow(), Path(sys.argv[1]))
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_save_interrupted_by_a_signal_leaves_no_temporary_file(tmp_path, signum):
    path = tmp_path / "checkpoints" / "latest.pt"
    child = subprocess.Popen(
        [sys.executable, "-c", SLOW_SAVE, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout.readline() == "saving\n"
    deadline = time.monotonic() + 30
    while not list(path.parent.glob(".latest.pt.tmp-*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(path.parent.glob(".latest.pt.tmp-*")), "the save never started writing"
    child.send_signal(signum)
    assert child.wait(timeout=30) != 0
    assert sorted(p.name for p in path.parent.iterdir()) == []  # no temporary, no checkpoint


def test_the_cli_entry_point_turns_sigterm_into_an_exit(monkeypatch):
    import cli

    monkeypatch.setattr(cli, "alm", lambda **kwargs: None)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        cli.main()
        assert signal.getsignal(signal.SIGTERM) is cli.exit_on_sigterm
        with pytest.raises(SystemExit) as exited:
            cli.exit_on_sigterm(signal.SIGTERM, None)
        assert exited.value.code == 143
    finally:
        signal.signal(signal.SIGTERM, previous)
