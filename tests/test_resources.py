"""Resource checks before work (issue 41): a run's memory and disk estimated from its config,
against real runs' peak RSS and disk, and what exceeds the machine refused in one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

RUN = [
    "--config", "quick", "steps=300", "agent.warmup_steps=100", "eval.every=150",
    "eval.episodes=1", "checkpoint_every=150", "agent.buffer_size=100000", "threads=1",
    "agent.batch_size=32",
]  # fmt: skip


def seeds(count: int) -> str:
    return "seeds=" + ",".join(str(s) for s in range(1, count + 1))


def disk_of(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


@pytest.mark.slow
@pytest.mark.parametrize("count", [1, 5, 20])
def test_the_estimate_is_within_a_quarter_of_peak_rss_and_disk(tmp_path, count):
    run = tmp_path / "run"
    child = subprocess.Popen(
        [sys.executable, "-m", "cli", "train-online", *RUN, seeds(count), f"run_dir={run}",
         "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert child.wait() == 0, child.stderr.read()
    estimate = json.loads((run / "resources.json").read_text())
    # the run's own VmHWM: ru_maxrss would start from this pytest process's RSS (fork)
    peak = json.loads((run / "summary.json").read_text())["peak_rss_bytes"]
    assert estimate["seeds"] == count
    assert 0.75 * peak <= estimate["memory_bytes"] <= 1.25 * peak, (estimate, peak)
    disk = disk_of(run)
    assert 0.75 * disk <= estimate["disk_bytes"] <= 1.25 * disk, (estimate, disk)


def test_a_run_larger_than_the_machine_is_refused_before_anything(tmp_path):
    run = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "cli", "train-online", *RUN, seeds(5000), f"run_dir={run}"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: seeds=1,2,3,...,5000 (5000 seeds) needs about ")
    assert "GiB of memory" in lines[0] and "is free" in lines[0]
    assert not run.exists()


def test_bench_refuses_a_seed_count_larger_than_the_machine(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "cli", "bench", "--seeds", "1,100000", "--env",
         "InvertedPendulum-v5", "--out", str(tmp_path / "bench.json")],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: alm bench --seeds 100000 needs"), lines
    assert list(tmp_path.iterdir()) == []
