"""Download the wheels the GPU machines lack, for ``benchmarks/gpu_check.sh`` to install there.

The lent GPU machines (one H100 or H200, Python 3.12, torch with CUDA preinstalled, no
network) have most of the scientific stack but not gymnasium, mujoco, minari or omegaconf.
This walks the dependency closure of the project's requirements as installed *here*, drops
every package the GPU image already holds (``GPU_IMAGE_PACKAGES``, read off the machine's
package list) and downloads the rest, each at the version installed here, as cp312
manylinux x86-64 wheels into ``OUT`` (default ``.whl``, git-ignored). Nothing is descended
into once it is present there, so that machine's own versions of those packages are used.

    python benchmarks/gpu_wheels.py [--out .whl] [--dry-run]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, requires, version
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent

# The GPU image's packages (the device tool's KINDS.md, read 2026-11-17).
GPU_IMAGE_PACKAGES = """
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs
botorch build certifi charset-normalizer chex click cloudpickle cmake colorama contourpy
coverage cuda-bindings cuda-core cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython
diffrax e3nn einops equinox etils execnet filelock flatbuffers flax fonttools formulaic
frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize
hypothesis idna imageio iniconfig interface-meta jax jaxlib jaxtyping jinja2 joblib
kiwisolver lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml
markdown markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack
multidict multipledispatch mypy-extensions nanobind narwhals networkx ninja numba numba-
cuda numpy numpyro onnx onnx-ir onnxruntime onnxscript opencv-python-headless optax opt-
einsum opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec patsy peft
pillow pip pluggy portalocker prometheus-client propcache protobuf psutil pyarrow pybind11
py-cpuinfo pygments pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark
pytest-cov pytest-mock pytest-timeout pytest-xdist python-dateutil pytorch-lightning
pyyaml regex requests rich sacrebleu safetensors scikit-build-core scikit-image scikit-
learn scipy seaborn sentencepiece sentence-transformers setuptools shellingham simplejson
six sortedcontainers statsmodels sympy tabulate tensorboard tensorboard-data-server
tensorstore threadpoolctl tifffile tiktoken timm tokenizers toolz torch torchaudio
torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers treescope triton
typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt
xarray xxhash yarl zipp
""".split()  # noqa: SIM905

# Needed only for ``alm eval --video`` (a 30 MB ffmpeg binary): not part of the GPU check.
NOT_CARRIED = {"imageio-ffmpeg", "rliable"}  # rliable: an sdist (no wheel), for tables only

PLATFORMS = [f"manylinux_2_{n}_x86_64" for n in (17, 24, 27, 28, 31, 34, 35)]
PLATFORMS += ["manylinux2014_x86_64", "manylinux1_x86_64"]
CARRY_LIMIT_MIB = 64


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def project_requirements() -> list[Requirement]:
    """The installed project's own requirements (no extras)."""
    lines = requires("alm-offline") or []
    return [req for req in map(Requirement, lines) if req.marker is None]


def missing_packages() -> dict[str, str]:
    """{name: version installed here} of the closure's packages the GPU image lacks."""
    present = {normalize(name) for name in GPU_IMAGE_PACKAGES}
    env = {**default_environment(), "python_version": "3.12", "python_full_version": "3.12.3"}
    todo = [(req, frozenset(req.extras)) for req in project_requirements()]
    found: dict[str, str] = {}
    while todo:
        req, extras = todo.pop()
        name = normalize(req.name)
        if name in present or name in found or name in NOT_CARRIED:
            continue
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            sys.exit(f"error: {name} is required but not installed here (pip install -e . first)")
        for line in requires(name) or []:
            dep = Requirement(line)
            markers_ok = dep.marker is None or any(
                dep.marker.evaluate({**env, "extra": extra}) for extra in (extras or {""})
            )
            if markers_ok:
                todo.append((dep, frozenset(dep.extras)))
    return dict(sorted(found.items()))


def download(packages: dict[str, str], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    platform_args = [arg for p in PLATFORMS for arg in ("--platform", p)]
    command = [
        sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
        "--python-version", "3.12", "--implementation", "cp", *platform_args, "-d", str(out),
        *(f"{name}=={ver}" for name, ver in packages.items()),
    ]  # fmt: skip
    subprocess.run(command, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / ".whl"), help="wheel folder (git-ignored)")
    parser.add_argument("--dry-run", action="store_true", help="list the wheels, fetch none")
    args = parser.parse_args()
    packages = missing_packages()
    print(" ".join(f"{name}=={ver}" for name, ver in packages.items()))
    if args.dry_run:
        return
    out = Path(args.out)
    for stale in out.glob("*.whl"):  # one version of each: two stop the install there
        stale.unlink()
    download(packages, out)
    wheels = sorted(out.glob("*.whl"))
    mib = sum(w.stat().st_size for w in wheels) / 2**20
    print(f"{len(wheels)} wheels, {mib:.1f} MiB in {out}")
    if len(wheels) != len(packages):
        sys.exit(f"error: expected {len(packages)} wheels, got {len(wheels)}")
    if mib > CARRY_LIMIT_MIB:
        sys.exit(f"error: {mib:.1f} MiB is over the {CARRY_LIMIT_MIB} MiB a device call carries")


if __name__ == "__main__":
    main()
