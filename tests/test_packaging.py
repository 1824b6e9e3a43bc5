"""Packaging: the wheel installs `alm_offline` (datasets/ inside it) and `cli`, nothing else.

It must also import from the repository root, where the checkout's `alm_offline/` (first on
sys.path as the cwd, or as the driver's directory in a Ray worker) shadows the installed one.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Imports everything that lives outside the checkout's alm_offline/ folder.
PROBE = (
    "import importlib.resources, alm_offline, alm_offline.datasets, alm_offline.configs; "
    "from alm_offline.config import bundled_config_path; "
    "from alm_offline.datasets import bundled_dataset_path, load_dataset; "
    "assert bundled_config_path('quick').is_file(); "
    "assert importlib.resources.files('alm_offline.configs').joinpath('quick.yaml').is_file(); "
    "assert bundled_dataset_path().is_file(); "
    "from alm_offline.tools.published import published_at; "
    "assert round(published_at('HalfCheetah-v5', 20000).mean) == 2727; "
    "print(alm_offline.__file__); print(alm_offline.datasets.__file__)"
)


def _run(args: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, **kwargs)


@pytest.fixture(scope="module")
def wheel_install(tmp_path_factory) -> tuple[Path, Path]:
    """(wheel, target): the project's wheel, and a folder it is plainly installed into."""
    tmp = tmp_path_factory.mktemp("wheel")
    pip = [sys.executable, "-m", "pip"]
    build = _run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp), str(ROOT)]
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = tmp.glob("alm_offline-*.whl")
    target = tmp / "site"
    install = _run([*pip, "install", "--no-deps", "-q", "--target", str(target), str(wheel)])
    assert install.returncode == 0, install.stderr
    return wheel, target


def _plain_python(code: str, target: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Python with `target` on PYTHONPATH, as after `pip install .` (no editable hook).

    `-S` skips the site-packages .pth files, so an editable install of this environment (its
    import hook) stays out; the dependencies are reached through PYTHONPATH instead.
    """
    path = os.pathsep.join([str(target), *site.getsitepackages()])
    return _run(
        [sys.executable, "-S", "-c", code],
        cwd=cwd,
        env={"PYTHONPATH": path, "PATH": "/usr/bin:/bin"},
    )


def test_installed_top_level_names_do_not_include_datasets():
    top_level = importlib.metadata.distribution("alm-offline").read_text("top_level.txt").split()
    assert sorted(top_level) == ["alm_offline", "cli"]
    assert (
        "datasets" not in importlib.metadata.packages_distributions()
        or "alm-offline" not in (importlib.metadata.packages_distributions()["datasets"])
    )


@pytest.mark.slow
def test_regular_install_from_a_built_wheel(wheel_install, tmp_path):
    wheel, target = wheel_install
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")} == {
        "alm_offline",
        "cli.py",
    }
    assert "alm_offline/datasets/__init__.py" in names
    assert "alm_offline/configs/quick.yaml" in names
    assert "alm_offline/tools/published_alm.json" in names
    sources = {  # every module of the checkout, under the name the wheel installs it as
        *(str(f.relative_to(ROOT)) for f in (ROOT / "alm_offline").rglob("*.py")),
        *(f"alm_offline/datasets/{f.name}" for f in (ROOT / "datasets").glob("*.py")),
    }
    assert sources - set(names) == set()
    probe = "import cli; " + PROBE
    out = _plain_python(probe, target, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    location, datasets_location = out.stdout.split()
    assert location.startswith(str(target)) and datasets_location.startswith(str(target))


@pytest.mark.slow
@pytest.mark.parametrize("how", ["cwd", "ray_worker"])
def test_plain_install_imports_from_the_repository_root(wheel_install, tmp_path, how):
    """The checkout's alm_offline/ shadows the installed package: its subpackages still import.

    `cwd`: `python -c` started in the root. `ray_worker`: a Ray worker puts the driver's
    directory (here the root) at the front of sys.path; Ray itself is not started.
    """
    _, target = wheel_install
    if how == "cwd":
        out = _plain_python(PROBE, target, cwd=ROOT)
    else:
        out = _plain_python(
            f"import sys; sys.path.insert(0, {str(ROOT)!r}); " + PROBE, target, tmp_path
        )
    assert out.returncode == 0, out.stderr
    location, datasets_location = out.stdout.split()
    assert Path(location).parent == ROOT / "alm_offline"
    assert Path(datasets_location).parent == ROOT / "datasets"


@pytest.mark.slow
def test_editable_install_imports_from_the_repository_root():
    # The checkout's alm_offline.egg-info (when the root is on sys.path) has no direct_url.json.
    urls = [
        d.read_text("direct_url.json") for d in importlib.metadata.distributions(name="alm-offline")
    ]
    if not any(json.loads(u).get("dir_info", {}).get("editable") for u in urls if u):
        pytest.skip("alm-offline is not installed in editable mode here")
    out = _run([sys.executable, "-c", PROBE], cwd=ROOT)
    assert out.returncode == 0, out.stderr
    location, datasets_location = out.stdout.split()
    assert Path(location).parent == ROOT / "alm_offline"
    assert Path(datasets_location).parent == ROOT / "datasets"
