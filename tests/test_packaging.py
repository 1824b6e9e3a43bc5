"""Packaging: the wheel installs `alm_offline` (datasets/ inside it) and `cli`, nothing else."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_installed_top_level_names_do_not_include_datasets():
    top_level = importlib.metadata.distribution("alm-offline").read_text("top_level.txt").split()
    assert sorted(top_level) == ["alm_offline", "cli"]
    assert (
        "datasets" not in importlib.metadata.packages_distributions()
        or "alm-offline" not in (importlib.metadata.packages_distributions()["datasets"])
    )


def test_regular_install_from_a_built_wheel(tmp_path):
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = tmp_path.glob("alm_offline-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")} == {
        "alm_offline",
        "cli.py",
    }
    assert "alm_offline/datasets/__init__.py" in names
    assert "alm_offline/configs/quick.yaml" in names
    target = tmp_path / "site"
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(target),
            str(wheel),
        ],
        capture_output=True,
        text=True,
    )
    assert install.returncode == 0, install.stderr
    probe = (
        "import alm_offline, alm_offline.datasets, cli; "
        "from alm_offline.config import bundled_config_path; "
        "print(alm_offline.__file__); print(bundled_config_path('quick').is_file())"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr
    location, has_config = out.stdout.split()
    assert location.startswith(str(target)) and has_config == "True"
