"""Shared fixtures: tiny configs that train in seconds on a CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from alm_offline.config import load_config
from alm_offline.core.replay import ReplayBuffer
from alm_offline.training.online import train_online
from alm_offline.training.rundir import prepare_new

if os.environ.get("PYTEST_XDIST_WORKER"):  # pytest -n: workers share the cores
    # the processes a test starts (CLI runs, trials, d3rlpy) take one OpenMP thread each,
    # idle threads yielding the core, as the in-process tests do (_one_thread below)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# the longest files first: with one pytest worker per core (make test: -n auto --dist
# loadfile) a worker takes a file whole, so the long ones must not start last; in the order
# of their seconds in a full `make test --durations` (AMD EPYC, 2 workers, session 52)
LONGEST_FIRST = (
    "test_grid.py",
    "test_fused.py",
    "test_offline.py",
    "test_baselines.py",
    "test_sweep.py",
    "test_online_grid.py",
    "test_sac_online.py",
    "test_sweep_cluster.py",
    "test_gpu_check.py",
    "test_seeds.py",
    "test_cli_online.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: each file's own order is kept


# a tiny offline run (60 updates) on whichever dataset the test gives
TINY_OFFLINE = (
    "device=cpu",
    "threads=1",
    "steps=60",
    "checkpoint_every=30",
    "log_every=20",
    "eval.every=30",
    "eval.episodes=1",
    "agent.batch_size=16",
    "agent.hidden_dim=32",
    "agent.model_hidden_dim=32",
    "agent.latent_dim=8",
)
TINY_OVERRIDES = (
    "env=InvertedPendulum-v5",
    "device=cpu",
    "threads=1",
    "steps=300",
    "checkpoint_every=100",
    "log_every=50",
    "eval.every=150",
    "eval.episodes=2",
    "agent.batch_size=16",
    "agent.hidden_dim=32",
    "agent.model_hidden_dim=32",
    "agent.latent_dim=8",
    "agent.warmup_steps=100",
    "agent.buffer_size=1000",
)


def train_tiny_run(run_dir: Path, *extra: str) -> Path:
    """A finished online run of ``TINY_OVERRIDES`` (+ ``extra``) in a new ``run_dir``."""
    cfg = load_config(None, (*TINY_OVERRIDES, f"run_dir={run_dir}", *extra))
    prepare_new(run_dir, cfg, overwrite=False)
    train_online(cfg, run_dir, quiet=True)
    return run_dir


@pytest.fixture(autouse=True)
def minari_store(tmp_path_factory: pytest.TempPathFactory, monkeypatch) -> Path:
    """Every test gets its own empty Minari store (outside ``tmp_path``)."""
    store = tmp_path_factory.mktemp("minari-store")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(store))
    return store


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    yield


def filled_replay(obs_dim: int, action_dim: int, seq_len: int = 3) -> ReplayBuffer:
    """Four random 20-step episodes, the last step of each terminal."""
    rng = np.random.default_rng(0)
    replay = ReplayBuffer(200, obs_dim, action_dim, seq_len)
    for _ in range(4):
        replay.start_episode(rng.normal(size=obs_dim))
        for t in range(20):
            replay.add(
                rng.uniform(-1, 1, action_dim), rng.normal(), t == 19, rng.normal(size=obs_dim)
            )
    return replay


@pytest.fixture(scope="module")
def baselines_python() -> str:
    """The python of the venv that has d3rlpy (make baselines-env; make test passes it as
    ALM_BASELINES_PYTHON)."""
    root = Path(__file__).resolve().parents[1]
    path = os.environ.get("ALM_BASELINES_PYTHON") or str(root / ".venv-baselines/bin/python")
    if not Path(path).is_file():
        pytest.fail(f"no d3rlpy venv at {path}: run make baselines-env (make test does)")
    return os.path.abspath(path)  # the tests run it from other folders; not resolve(): a
    # venv's python is a symlink to the base interpreter, and following it leaves the venv


def reproducible_evals(run_dir: Path) -> list[dict]:
    """A run dir's eval.jsonl rows less ``wall_seconds``, the one entry (the run's seconds
    before each evaluation) that a rerun or an exact resume does not reproduce."""
    rows = [json.loads(line) for line in (run_dir / "eval.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k != "wall_seconds"} for row in rows]


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m cli ARGS`` in ``cwd`` as a user runs it, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "cli", *args], cwd=cwd, capture_output=True, text=True, check=False
    )


def assert_one_line_error(result, fragment: str) -> None:
    """A CLI result that failed with exit 2 and one ``error:`` line holding ``fragment``."""
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)  # no traceback
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert fragment in lines[0]


def load_benchmark(name: str):
    """The module ``benchmarks/NAME.py`` (benchmarks are scripts, not an installed package)."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def seed_batches(replay: ReplayBuffer, batch_size: int, seeds: int = 1):
    """(sequences, transitions) for ``seeds`` seeds drawn from ``replay`` (shared), each
    leading with the seed dim, as ``agent.update`` takes them."""
    from alm_offline.core.replay import SeedReplay

    shared = SeedReplay.shared(replay, seeds)
    return shared.sample_sequences(batch_size), shared.sample_transitions(batch_size)
