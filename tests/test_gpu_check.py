"""The GPU check's plumbing, run here: its CPU mode end to end, and the wheel download."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import load_benchmark

from alm_offline.training.loggers import read_jsonl

ROOT = Path(__file__).resolve().parents[1]
OUT_FILES = {
    "system.json", "log.txt", "tests.txt", "bench.jsonl", "seeds.json", "fidelity.json", "long.json"
}  # fmt: skip


@pytest.mark.slow
def test_the_gpu_check_runs_end_to_end_in_cpu_mode(tmp_path):
    out = tmp_path / "out"
    command = ["bash", "benchmarks/gpu_check.sh", str(out), "--cpu", "--deadline", "300"]
    command += ["--bench-precisions", "fp32,bf16"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=500)
    assert done.returncode == 0, done.stdout + done.stderr
    files = {path.name for path in out.iterdir()}
    assert files == OUT_FILES | {"summary.md"} and len(files) <= 8  # the device call's limit
    bench = read_jsonl(out / "bench.jsonl")
    assert [(row["env"], row["precision"]) for row in bench] == [
        ("HalfCheetah-v5", "fp32"),
        ("HalfCheetah-v5", "bf16"),
        ("Humanoid-v5", "fp32"),
        ("Humanoid-v5", "bf16"),
        ("HalfCheetah-v5", "fp32"),  # the fused step: eager then fused in one bench
    ]
    assert all(row["updates_per_sec"] > 0 and row["device"] == "cpu" for row in bench)
    assert [row["fused"] for row in bench] == [False] * 4 + [True]
    for row in bench[4:]:
        assert row["eager_updates_per_sec"] > 0 and row["compile_seconds"] > 0
        assert row["profile"]["ops_per_update"] > 0
    fidelity = json.loads((out / "fidelity.json").read_text())
    for seed in ("1", "2", "3", "4", "5"):  # one batched process
        run = fidelity["seeds"][seed]
        assert run["finished"] and [step for step, _ in run["evaluations"]] == [250, 500]
    seed_rows = json.loads((out / "seeds.json").read_text())["rows"]
    assert [row["seeds"] for row in seed_rows] == [1, 5]
    assert all(row["seed_updates_per_sec"] > 0 for row in seed_rows)
    assert "| 5 |" in (out / "summary.md").read_text()
    long = json.loads((out / "long.json").read_text())
    assert long["finished"] and long["env_steps"] == 800 and long["env_steps_per_sec"] > 0
    # no GPU here: every CUDA test skips, none fails
    assert re.search(r"^\d+ skipped in ", (out / "tests.txt").read_text(), re.MULTILINE)
    summary = (out / "summary.md").read_text()
    assert "| Humanoid-v5 | bf16 | False | False |" in summary and "seed 5: 250:" in summary
    assert "| HalfCheetah-v5 | fp32 | False | True |" in summary
    assert "report exit 0" in (out / "log.txt").read_text()


def test_the_wheel_list_is_what_the_gpu_image_lacks():
    wheels = load_benchmark("gpu_wheels")
    missing = wheels.missing_packages()
    assert {"gymnasium", "mujoco", "minari", "omegaconf", "farama-notifications"} <= set(missing)
    present = {wheels.normalize(name) for name in wheels.GPU_IMAGE_PACKAGES}
    assert not set(missing) & present and "torch" in present and "numpy" in present
    assert "imageio-ffmpeg" not in missing  # video only: 30 MB the check does not need


@pytest.mark.slow
def test_the_wheels_download_as_cp312_manylinux_and_fit_a_device_call(tmp_path):
    out = tmp_path / "whl"
    done = subprocess.run(
        [sys.executable, "benchmarks/gpu_wheels.py", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    listed = done.stdout.splitlines()[0].split()
    wheels = sorted(out.glob("*.whl"))
    assert len(wheels) == len(listed)
    for wheel in wheels:
        tags = wheel.name.split("-")[-3:]
        assert tags[0] in {"py3", "py2.py3", "cp312"}, wheel.name
        assert re.fullmatch(r"(any|.*manylinux.*x86_64)\.whl", tags[2]), wheel.name
    assert sum(w.stat().st_size for w in wheels) < 64 * 2**20
