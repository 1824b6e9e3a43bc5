"""Time dataset I/O on a synthetic D4RL-sized file (HalfCheetah dims, 1M transitions).

Writes a D4RL-layout HDF5 file (obs 17, action 6, 1000 episodes of 1000 steps ending in
timeouts, with next_observations and an ``infos/`` group), then times:

* load: HDF5 -> validated ``EpisodeDataset`` -> ``ReplayBuffer.load_episodes`` (target < 10 s)
* to Minari: ``EpisodeDataset`` -> Minari dataset folder (target < 60 s)
* from Minari: Minari folder -> ``EpisodeDataset`` (no target; for reference)

Usage: ``python benchmarks/dataset_io.py [--episodes N] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from alm_offline.core.replay import ReplayBuffer
from alm_offline.datasets import load_dataset, read_minari_folder, write_minari

OBS_DIM, ACTION_DIM = 17, 6
TARGETS = {"load": 10.0, "to_minari": 60.0}


def write_synthetic(path: Path, episodes: int, length: int, seed: int = 0) -> int:
    """A D4RL-layout file of ``episodes`` x ``length`` transitions; returns the count."""
    rng = np.random.default_rng(seed)
    n = episodes * length
    obs = rng.standard_normal((episodes, length + 1, OBS_DIM), dtype=np.float32)
    timeouts = np.zeros((episodes, length), dtype=bool)
    timeouts[:, -1] = True
    with h5py.File(path, "w") as file:
        file["observations"] = obs[:, :-1].reshape(n, OBS_DIM)
        file["next_observations"] = obs[:, 1:].reshape(n, OBS_DIM)
        file["actions"] = rng.uniform(-1, 1, (n, ACTION_DIM)).astype(np.float32)
        file["rewards"] = rng.standard_normal(n, dtype=np.float32)
        file["terminals"] = np.zeros(n, dtype=bool)
        file["timeouts"] = timeouts.ravel()
        file["infos/qpos"] = rng.standard_normal((n, 9), dtype=np.float32)
        file.create_group("metadata").attrs["algorithm"] = "synthetic"
    return n


def run(episodes: int, length: int, workdir: Path) -> dict:
    source = workdir / "halfcheetah-synthetic-v0.hdf5"
    transitions = write_synthetic(source, episodes, length)
    timings = {}

    start = time.perf_counter()
    dataset = load_dataset(source, env_id="HalfCheetah-v5")
    replay = ReplayBuffer(len(dataset.observations), OBS_DIM, ACTION_DIM, seq_len=3)
    replay.load_episodes(*dataset.replay_arrays())
    timings["load"] = time.perf_counter() - start

    start = time.perf_counter()
    write_minari(dataset, workdir / "halfcheetah-synthetic-v0")
    timings["to_minari"] = time.perf_counter() - start

    start = time.perf_counter()
    read_minari_folder(workdir / "halfcheetah-synthetic-v0")
    timings["from_minari"] = time.perf_counter() - start
    return {"transitions": transitions, "episodes": episodes, "seconds": timings}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=1000)
    parser.add_argument("--length", type=int, default=1000, help="steps per episode")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        result = run(args.episodes, args.length, Path(workdir))
    print(f"{result['transitions']} transitions, {result['episodes']} episodes")
    print(f"{'stage':<12}{'seconds':>10}{'target':>10}")
    for stage, seconds in result["seconds"].items():
        target = TARGETS.get(stage)
        print(f"{stage:<12}{seconds:>10.2f}{'' if target is None else f'< {target:g}':>10}")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
