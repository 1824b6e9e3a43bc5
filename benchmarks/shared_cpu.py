"""``alm bench --device cpu`` alone and beside one other busy 2-thread torch process.

    python benchmarks/shared_cpu.py [--configs paper,quick]

For each config (paper defaults, and the quick config of ``make run``) and each thread
setting (``threads=2``, the old fixed choice on this 2-core machine, and ``threads=0``, auto:
the free cores, alm_offline/training/threads.py) it runs ``alm bench`` once alone and once while a
competitor (a 2-thread torch process multiplying 256x256 matrices, default OpenMP wait
policy) runs, and prints updates/s, env steps/s of the online loop and loaded/alone.
Take it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMPETITOR = """
import torch
torch.set_num_threads(2)
a, b = torch.randn(256, 256), torch.randn(256, 256)
while True:
    a @ b
"""
CONFIGS = {"paper": ("--updates", "10"), "quick": ("--config", "quick", "--updates", "200")}


def bench(config: str, threads: int) -> dict:
    command = [sys.executable, "-m", "cli", "bench", "--device", "cpu", "--json"]
    command += [*CONFIGS[config], f"threads={threads}"]
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def measure(config: str, threads: int, loaded: bool) -> dict:
    competitor = None
    if loaded:
        competitor = subprocess.Popen([sys.executable, "-c", COMPETITOR])
        time.sleep(1.5)
    try:
        return bench(config, threads)
    finally:
        if competitor is not None:
            competitor.kill()
            competitor.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="paper,quick")
    args = parser.parse_args()
    print(
        "| config | threads | alone updates/s | loaded updates/s | loaded/alone | "
        "alone env steps/s | loaded env steps/s |"
    )
    print("|---|---|---|---|---|---|---|")
    for config in args.configs.split(","):
        for threads in (2, 0):
            alone = measure(config, threads, loaded=False)
            loaded = measure(config, threads, loaded=True)
            label = f"{threads}" if threads else f"auto ({alone['threads']} / {loaded['threads']})"
            print(
                f"| {config} | {label} | {alone['updates_per_sec']:.2f} | "
                f"{loaded['updates_per_sec']:.2f} | "
                f"{loaded['updates_per_sec'] / alone['updates_per_sec']:.2f} | "
                f"{alone['env_steps_per_sec']:.2f} | {loaded['env_steps_per_sec']:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
