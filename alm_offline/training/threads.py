"""How many CPU threads torch uses: fixed, or the cores no other process is using.

On a shared machine OpenMP threads that wait for a descheduled sibling spin rather than
sleep, so a 2-thread torch process beside another busy process ran at a quarter of its
speed alone (benchmarks/README.md, "Shared CPU"). ``threads=0`` (auto) therefore sizes the
pool to the free cores: at the start from a 0.1 s sample of ``/proc/stat``, then again
every ``RECHECK_SECONDS`` from the time other processes used since the last look (this
process's own CPU time, from ``/proc/self/stat``, is not counted as busy). Alone, that is
every core (no loss); beside a busy process it is fewer threads that do not spin against
it. ``threads=N`` keeps N threads (bit-reproducible runs); off Linux, auto is all cores.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch

RECHECK_SECONDS = 5.0
SAMPLE_SECONDS = 0.1


def usable_cores() -> list[int]:
    """The CPUs this process may run on."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return list(range(os.cpu_count() or 1))


def _cpu_jiffies(cores: list[int]) -> tuple[int, int] | None:
    """(busy, total) jiffies summed over ``cores`` from /proc/stat, or None without it."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return None
    wanted = {f"cpu{core}" for core in cores}
    busy = total = 0
    for line in lines:
        name, *fields = line.split()
        if name in wanted:
            values = [int(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal
            idle = values[3] + values[4]
            total += sum(values)
            busy += sum(values) - idle
    return busy, total


def _own_jiffies() -> int:
    """This process's user + system CPU time in jiffies (all its threads)."""
    fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime


class ThreadPolicy:
    """Sets ``torch.set_num_threads``: ``requested`` threads, or (0) the free cores."""

    def __init__(self, requested: int) -> None:
        self.requested = requested
        self.cores = len(usable_cores())
        self._last: tuple[float, int, int, int] | None = None
        if requested > 0:
            torch.set_num_threads(requested)
            return
        self._mark()
        time.sleep(SAMPLE_SECONDS)
        self.adjust(force=True)

    def _mark(self) -> None:
        jiffies = _cpu_jiffies(usable_cores())
        self._last = None if jiffies is None else (time.monotonic(), *jiffies, _own_jiffies())

    def free_cores(self) -> int | None:
        """Cores other processes left idle since the last look (None: cannot tell)."""
        if self._last is None:
            return None
        _, busy0, total0, own0 = self._last
        jiffies = _cpu_jiffies(usable_cores())
        if jiffies is None or jiffies[1] <= total0:
            return None
        busy, total = jiffies
        others = max(busy - busy0 - (_own_jiffies() - own0), 0)
        others_cores = others / (total - total0) * self.cores
        return max(1, min(self.cores, self.cores - int(others_cores + 0.5)))

    def adjust(self, force: bool = False) -> int:
        """Re-size the pool if auto and ``RECHECK_SECONDS`` passed; returns the thread count."""
        if self.requested > 0:
            return self.requested
        recent = self._last is not None and time.monotonic() - self._last[0] < RECHECK_SECONDS
        if recent and not force:
            return torch.get_num_threads()
        free = self.free_cores()
        threads = self.cores if free is None else free
        if threads != torch.get_num_threads():
            torch.set_num_threads(threads)
        self._mark()
        return threads
