"""D4RL's recipe (Fu et al. 2020) for one env: SAC's levels written as D4RL-layout HDF5 files.

``make_sac_suite`` trains the behaviour SAC (``sac_behaviour``), then writes into ``out_dir``:

* ``FAMILY-sac-expert.hdf5``: the final policy, actions sampled, ``steps`` transitions;
* ``FAMILY-sac-medium.hdf5``: the snapshot whose evaluation is closest to ``MEDIUM_SHARE``
  (0.45) of the final one, sampled the same way;
* ``FAMILY-sac-medium-replay.hdf5``: every env step SAC took up to that snapshot, in order
  (random warm-up included; the episode running at the snapshot ends unflagged there);
* ``FAMILY-sac-medium-expert.hdf5``: medium's episodes, then expert's;

each with env-unit actions, terminals apart from timeouts, ``infos/qpos``, ``infos/qvel``
(replayed, ``datasets.states``) and ``metadata/``, gzip-compressed; and ``suite.json`` with
the SAC curve and each file's episodes, steps, return statistics, normalised score and
sha256. Rollouts use 1000-step episodes (the envs' limit). The medium rollout's torch and
numpy seeds are ``seed + 1``, the expert's ``seed + 2``: a remade file is the same bytes.

A rerun goes on from the SAC run's checkpoint and skips files ``suite.json``'s progress
record in ``work_dir`` lists with their digest. Run in the baselines venv:
``python -m alm_offline.training.sac_suite --env Hopper-v5 --out DIR --work-dir DIR``.
"""

from __future__ import annotations

import argparse
import fcntl
import itertools
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alm_offline.datasets.action_box import ActionBox
from alm_offline.datasets.collect import collect
from alm_offline.datasets.episodes import DatasetError, EpisodeDataset, concatenate
from alm_offline.datasets.hdf5 import write_hdf5
from alm_offline.datasets.states import replayed_states
from alm_offline.datasets.suite import suite_family
from alm_offline.errors import AlmError
from alm_offline.runtime.files import sha256_of, write_text_atomic
from alm_offline.scores import reference_scores
from alm_offline.training.sac_behaviour import (
    SacRun,
    SacSettings,
    TransitionLog,
    load_snapshot,
    policy_of,
)

MEDIUM_SHARE = 0.45  # D4RL: medium reaches about a third to a half of the expert's return
SAC_LEVELS = ("medium", "medium-replay", "expert", "medium-expert")
SUITE_FILE = "suite.json"
PROGRESS_FILE = "made.json"  # in the work dir: files written so far, with their sha256


def sac_file_name(env_id: str, level: str) -> str:
    """``Hopper-v5``, ``medium`` -> ``hopper-sac-medium.hdf5``."""
    return f"{suite_family(env_id)}-sac-{level}.hdf5"


def medium_snapshot(evaluations: list[list[float]]) -> int:
    """The step of the snapshot whose evaluation is closest to ``MEDIUM_SHARE`` of the final
    one (the earliest on a tie). evaluations: [[step, mean return]], in order."""
    target = MEDIUM_SHARE * evaluations[-1][1]
    distances = [abs(value - target) for _, value in evaluations]
    return int(evaluations[int(np.argmin(distances))][0])


def log_dataset(log: TransitionLog, rows: int, env_id: str, seed: int) -> EpisodeDataset:
    """The first ``rows`` logged env steps as episodes, actions in the env's units; an
    episode still running at ``rows`` is held as truncated and written unflagged."""
    box = ActionBox.of_env(env_id)
    ends = np.flatnonzero(log.terminated[:rows] | log.truncated[:rows])
    bounds = [0, *(ends + 1).tolist()]
    if bounds[-1] != rows:
        bounds.append(rows)
    episodes = []
    for start, stop in itertools.pairwise(bounds):
        episodes.append(
            {
                "observations": np.concatenate(
                    [log.obs[start:stop], log.next_obs[stop - 1 : stop]]
                ),
                "actions": box.denormalize(log.action[start:stop]),
                "rewards": log.reward[start:stop],
                "terminations": log.terminated[start:stop],
                "truncations": log.truncated[start:stop],
            }
        )
    open_end = not (log.terminated[rows - 1] or log.truncated[rows - 1])
    if open_end:
        episodes[-1]["truncations"] = episodes[-1]["truncations"].copy()
        episodes[-1]["truncations"][-1] = True
    seeds = np.array(log.episode_seeds[: len(episodes)], np.int64)
    ref_min, ref_max = reference_scores(env_id) or (None, None)
    return EpisodeDataset.from_episodes(
        episodes,
        env_id=env_id,
        action_box=box,
        episode_seeds=seeds,
        open_end=open_end,
        ref_min_score=ref_min,
        ref_max_score=ref_max,
    )


class SacSuite:
    """One env's SAC suite: ``make`` trains (or resumes) and writes what is missing."""

    def __init__(
        self,
        settings: SacSettings,
        work_dir: Path,
        out_dir: Path,
        steps: int = 100_000,
        log: Callable[[str], Any] = print,
    ) -> None:
        self.settings, self.steps, self.log = settings, steps, log
        self.work_dir, self.out_dir = Path(work_dir), Path(out_dir)
        self.made: dict[str, dict[str, Any]] = read_progress(self.work_dir)

    def make(self) -> dict[str, Any]:
        """Train, write the four files and ``suite.json``; returns what it holds."""
        s, started = self.settings, time.perf_counter()
        run = SacRun(s, self.work_dir, self.log)
        try:
            curve = run.train()
            medium_step = medium_snapshot(curve)
            if all(self._made(level) for level in SAC_LEVELS):
                self.log(f"{s.env_id}: every file is made already")
            else:
                self._write_levels(run, medium_step)
        finally:
            run.close()
        record = {
            "env_id": s.env_id,
            "recipe": "D4RL (Fu et al. 2020) with d3rlpy's online SAC",
            "sac": {**asdict(s), "hidden": list(s.hidden)},
            "rollout_steps": self.steps,
            "torch_threads": torch.get_num_threads(),
            "versions": _versions(),
            "sac_curve": curve,
            "medium_snapshot": medium_step,
            "files": {name: self.made[name] for name in sorted(self.made)},
        }
        write_text_atomic(self.out_dir / SUITE_FILE, json.dumps(record, indent=1) + "\n")
        seconds = time.perf_counter() - started
        self.log(f"{s.env_id}: suite made in {self.out_dir} ({seconds:.0f} s)")
        return record

    def _write_levels(self, run: SacRun, medium_step: int) -> None:
        """Roll out the medium and expert snapshots and write the four files (each unless
        made already)."""
        s = self.settings
        self.log(f"{s.env_id}: medium = the {medium_step}-step snapshot; rolling out")
        medium = self._rollout(medium_step, s.seed + 1, "medium")
        expert = self._rollout(s.steps, s.seed + 2, "expert")
        self._write("medium", medium)
        replay = log_dataset(run.transitions, medium_step, s.env_id, s.seed)
        replay.metadata = {
            "algorithm": f"d3rlpy SAC's online training, env steps 1-{medium_step}",
            "description": "every env step of the SAC run up to the medium snapshot "
            "(D4RL's medium-replay), random warm-up included",
        }
        self._write("medium-replay", replay)
        self._write("expert", expert)
        mixed = concatenate(medium, expert)
        mixed.metadata = {
            "algorithm": f"{medium.metadata['algorithm']}, then {expert.metadata['algorithm']}",
            "description": "the medium file's episodes, then the expert file's "
            "(D4RL's medium-expert)",
        }
        self._write("medium-expert", mixed)

    def _made(self, level: str) -> bool:
        """Whether ``level``'s file is in ``out_dir`` with the digest the record gives it."""
        name = sac_file_name(self.settings.env_id, level)
        path = self.out_dir / name
        return name in self.made and path.exists() and sha256_of(path) == self.made[name]["sha256"]

    def _rollout(self, step: int, seed: int, name: str) -> EpisodeDataset | None:
        """``steps`` transitions sampled from the ``step`` snapshot (seeded by ``seed``)."""
        sac = load_snapshot(self.settings, self.work_dir, step)
        torch.manual_seed(seed)
        data = collect(
            self.settings.env_id,
            policy_of(sac, deterministic=False),
            self.steps,
            seed=seed,
            algorithm=f"d3rlpy SAC, {step}-step snapshot, actions sampled",
        )
        data.metadata["description"] = (
            f"{data.num_steps} steps of the {step}-step SAC snapshot's sampled actions "
            f"({name}); actions in the env's own units"
        )
        return data

    def _write(self, level: str, data: EpisodeDataset) -> None:
        name = sac_file_name(self.settings.env_id, level)
        path = self.out_dir / name
        if self._made(level):
            self.log(f"{name}: already made")
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        write_hdf5(data, path, overwrite=True, infos=replayed_states(data), compression="gzip")
        returns = data.episode_returns()
        self.made[name] = {
            "level": level,
            "episodes": data.num_episodes,
            "steps": data.num_steps,
            "return_mean": round(float(returns.mean()), 2),
            "return_std": round(float(returns.std()), 2),
            "return_min": round(float(returns.min()), 2),
            "return_max": round(float(returns.max()), 2),
            "normalized_score": round(float(data.normalized_score(returns.mean())), 2),
            "sha256": sha256_of(path),
        }
        write_text_atomic(self.work_dir / PROGRESS_FILE, json.dumps(self.made, indent=1) + "\n")
        score = self.made[name]["normalized_score"]
        self.log(f"{name}: {data.num_episodes} episodes, normalised score {score}")


def read_progress(work_dir: Path) -> dict[str, dict[str, Any]]:
    """The files a work dir's run has written so far, with their statistics and sha256."""
    path = Path(work_dir) / PROGRESS_FILE
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path} cannot be read ({exc}): remove it to remake") from None


TUNABLE = ("steps", "seed", "snapshot_every", "random_steps", "update_start", "eval_episodes")


def settings_options(settings: SacSettings) -> list[str]:
    """The command-line options of ``main`` that give ``settings``' tunable fields."""
    names = {"steps": "--sac-steps"}
    pairs = [(names.get(k, "--" + k.replace("_", "-")), getattr(settings, k)) for k in TUNABLE]
    return ["--env", settings.env_id, *(str(item) for pair in pairs for item in pair)]


def _versions() -> dict[str, str]:
    import d3rlpy
    import gymnasium
    import mujoco

    return {
        "d3rlpy": d3rlpy.__version__,
        "gymnasium": gymnasium.__version__,
        "mujoco": mujoco.__version__,
        "torch": torch.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    """The subprocess entry make-suite starts in the baselines venv."""
    parser = argparse.ArgumentParser(prog="python -m alm_offline.training.sac_suite")
    parser.add_argument("--env", required=True)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--work-dir", required=True, type=Path)
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--sac-steps", type=int, default=150_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--snapshot-every", type=int, default=10_000)
    parser.add_argument("--random-steps", type=int, default=5_000)
    parser.add_argument("--update-start", type=int, default=1_000)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--exit-with-parent", action="store_true")
    args = parser.parse_args(argv)
    if args.exit_with_parent:
        _exit_with_parent()
    torch.set_num_threads(1)
    settings = SacSettings(
        env_id=args.env,
        steps=args.sac_steps,
        seed=args.seed,
        snapshot_every=args.snapshot_every,
        eval_episodes=args.eval_episodes,
        random_steps=args.random_steps,
        update_start=args.update_start,
    )
    try:
        with _work_dir_lock(args.work_dir):
            SacSuite(settings, args.work_dir, args.out, args.steps, log=_flushed).make()
    except AlmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _exit_with_parent() -> None:
    """Exit when the process that started this one is gone (a killed make-suite), so that
    no orphan goes on writing into the work dir its rerun resumes."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


@contextmanager
def _work_dir_lock(work_dir: Path) -> Iterator[None]:
    """An exclusive lock on ``work_dir`` for the run's life (released by the OS on a kill)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    with open(work_dir / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DatasetError(f"{work_dir} is in use by another make-suite") from None
        yield


def _flushed(line: str) -> None:
    print(line, flush=True)


if __name__ == "__main__":
    sys.exit(main())
