"""threads=0 sizes torch's pool to the cores other processes leave free (threads.py)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import torch

from alm_offline.training import threads
from alm_offline.training.threads import ThreadPolicy, usable_cores

BUSY_LOOP = "while True: pass"


def test_a_fixed_thread_count_is_kept():
    policy = ThreadPolicy(1)
    assert torch.get_num_threads() == 1 and policy.adjust(force=True) == 1


def test_auto_takes_one_thread_beside_processes_that_keep_every_core_busy():
    cores = len(usable_cores())
    busy = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(cores)]
    try:
        time.sleep(0.5)
        ThreadPolicy(0)
        assert torch.get_num_threads() == 1
    finally:
        for process in busy:
            process.kill()
            process.wait()


def fake_proc(monkeypatch, cores: int, samples: list[tuple[int, int, int]]) -> None:
    """/proc readings in sequence: (busy jiffies of all cores, total jiffies, own jiffies)."""
    readings = iter(samples)
    current: dict[str, tuple[int, int, int]] = {}

    def cpu(_cores):
        current["now"] = next(readings, current.get("now"))  # the last one repeats
        return current["now"][:2]

    monkeypatch.setattr(threads, "usable_cores", lambda: list(range(cores)))
    monkeypatch.setattr(threads, "_cpu_jiffies", cpu)
    monkeypatch.setattr(threads, "_own_jiffies", lambda: current["now"][2])
    monkeypatch.setattr(threads, "SAMPLE_SECONDS", 0.0)


@pytest.mark.parametrize(
    ("busy", "own", "expected"),
    [
        (0, 0, 4),  # idle: every core
        (400, 400, 4),  # only this process busy (4 cores of its own work): still every core
        (300, 0, 1),  # others keep 3 of 4 cores busy: the one left
        (150, 50, 3),  # others use 1 core: 3
        (400, 0, 1),  # fully busy: one thread, never zero
    ],
)
def test_auto_counts_what_other_processes_use(monkeypatch, busy, own, expected):
    # 4 cores over 100 jiffies each: total grows by 400 between the two looks
    fake_proc(monkeypatch, 4, [(1000, 5000, 70), (1000 + busy, 5400, 70 + own)])
    ThreadPolicy(0)
    assert torch.get_num_threads() == expected


def test_auto_rechecks_only_after_its_interval(monkeypatch):
    # looks: start, after the sample, the mark after it; then the recheck and its mark
    fake_proc(monkeypatch, 2, [(0, 1000, 0), (0, 1200, 0), (0, 1200, 0), (200, 1400, 0)])
    policy = ThreadPolicy(0)
    assert torch.get_num_threads() == 2
    assert policy.adjust() == 2  # within RECHECK_SECONDS: no look at /proc
    monkeypatch.setattr(threads, "RECHECK_SECONDS", 0.0)
    assert policy.adjust() == 1  # the other process took both cores since the last look
