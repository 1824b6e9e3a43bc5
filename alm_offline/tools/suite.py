"""``alm dataset make-suite``: a D4RL-style suite made here, its behaviour policies trained.

The data layer (``datasets/suite.py``) names the levels and writes the datasets; this module
drives the behaviour runs that make them (``alm train-online`` with ``configs/behaviour.yaml``,
then sampling from their checkpoints), which is training, so it lives above the data layer.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

from alm_offline.config import load_config, resolve_device
from alm_offline.datasets.atomic import check_can_create
from alm_offline.datasets.collect import collect, random_policy
from alm_offline.datasets.convert import check_writable
from alm_offline.datasets.episodes import DatasetError, EpisodeDataset, concatenate
from alm_offline.datasets.minari_io import store_path
from alm_offline.datasets.safety import MEMORY_HEADROOM, available_memory
from alm_offline.datasets.suite import (
    BEHAVIOUR_KINDS,
    EXPERT_FACTOR,
    EXPERT_KINDS,
    SET_HERE,
    SUITE_FILE,
    SUITE_KINDS,
    merge_record,
    replay_dataset,
    save_suite_dataset,
    suite_family,
    suite_id,
    suite_levels,
)
from alm_offline.errors import WriteError
from alm_offline.runtime.envs import EnvSpec, describe_env
from alm_offline.runtime.files import temporary_path
from alm_offline.scores import reference_scores
from alm_offline.training.checkpoint import checkpoint_path, checkpoint_policy, read_checkpoint
from alm_offline.training.loggers import check_backends
from alm_offline.training.methods import method_for
from alm_offline.training.rundir import holds_run
from alm_offline.training.start import start_online, train


def make_suite(
    env_ids: list[str],
    *,
    prefix: str = "alm-suite",
    steps: int = 100_000,
    train_steps: int = 20_000,
    expert_steps: int | None = None,
    levels: list[str] | tuple[str, ...] = SUITE_KINDS,
    behaviour_config: str = "behaviour",
    behaviour_overrides: tuple[str, ...] = (),
    work_dir: str | Path = "suites/alm-suite",
    seed: int = 0,
    overwrite: bool = False,
    log: Any = print,
) -> dict[str, Any]:
    """Make the suite's ``levels`` for ``env_ids``; returns what ``suite.json`` holds.

    ``expert_steps`` (default ``EXPERT_FACTOR x train_steps``) is where the expert phase
    ends. Everything is checked before anything is collected, trained or written (see
    ``check_suite``).
    """

    work_dir = Path(work_dir)
    levels = suite_levels(levels)
    expert_steps = EXPERT_FACTOR * train_steps if expert_steps is None else expert_steps
    envs = check_suite(
        env_ids,
        prefix=prefix,
        steps=steps,
        train_steps=train_steps,
        expert_steps=expert_steps,
        levels=levels,
        behaviour_config=behaviour_config,
        behaviour_overrides=behaviour_overrides,
        work_dir=work_dir,
        seed=seed,
        overwrite=overwrite,
    )
    record: dict[str, Any] = {"prefix": prefix, "seed": seed, "datasets": [], "behaviour": {}}

    def save(dataset: EpisodeDataset, env_id: str, kind: str, started: float) -> None:
        save_suite_dataset(record, dataset, suite_id(prefix, env_id, kind), started, overwrite, log)

    for env in envs:
        env_id = env.env_id
        if "random" in levels:
            started = time.perf_counter()
            uniform = random_policy(env.action_dim, seed)
            random = collect(env_id, uniform, steps, seed=seed, algorithm="random")
            save(random, env_id, "random", started)
        if not set(levels) & set(BEHAVIOUR_KINDS):
            continue

        started = time.perf_counter()
        run_dir = _run_dir(work_dir, env_id)
        overrides = _behaviour_overrides(env_id, train_steps, seed, run_dir, behaviour_overrides)
        start = start_online(behaviour_config, overrides, overwrite=overwrite)
        log(f"{env_id}: training the behaviour policy ({train_steps} env steps) in {run_dir}")
        summary = train(start, quiet=True)
        medium_checkpoint = _keep(checkpoint_path(run_dir), "medium")
        behaviour = {
            "run_dir": str(run_dir),
            "config": behaviour_config,
            "overrides": list(overrides),
            "checkpoint": str(medium_checkpoint),
            "evaluations": summary["evaluations"],
            "final_eval_return_mean": summary["eval_return_mean"],
            "seconds": time.perf_counter() - started,
        }
        record["behaviour"][env_id] = behaviour
        noise = start.cfg.agent.expl_std_end

        medium = None
        if set(levels) & {"medium", "medium-expert"}:
            started = time.perf_counter()
            medium, _ = _sample(medium_checkpoint, env, steps, seed + 1, noise)
            if "medium" in levels:
                save(medium, env_id, "medium", started)

        if "medium-replay" in levels:
            started = time.perf_counter()
            replay = replay_dataset(read_checkpoint(medium_checkpoint)["replay"], env_id)
            replay.ref_min_score, replay.ref_max_score = reference_scores(env_id) or (None, None)
            replay.metadata = {
                "algorithm": f"replay buffer of alm ({medium_checkpoint})",
                "description": f"the {train_steps}-step online training run of the medium policy",
            }
            save(replay, env_id, "medium-replay", started)

        if not set(levels) & set(EXPERT_KINDS):
            continue
        started = time.perf_counter()
        log(f"{env_id}: training on to the expert policy ({expert_steps} env steps)")
        resumed = start_online(None, (f"steps={expert_steps}",), resume=run_dir)
        summary = train(resumed, quiet=True)
        expert_checkpoint = _keep(checkpoint_path(run_dir), "expert")
        behaviour["expert"] = {
            "steps": expert_steps,
            "checkpoint": str(expert_checkpoint),
            "evaluations": [row for row in summary["evaluations"] if row[0] > train_steps],
            "final_eval_return_mean": summary["eval_return_mean"],
            "seconds": time.perf_counter() - started,
        }

        started = time.perf_counter()
        expert, name = _sample(expert_checkpoint, env, steps, seed + 2, noise)
        if "expert" in levels:
            save(expert, env_id, "expert", started)
        if "medium-expert" in levels:
            started = time.perf_counter()
            mixed = concatenate(medium, expert)
            mixed.metadata = {
                "algorithm": f"{medium.metadata['algorithm']}, then {name}",
                "description": (
                    f"the medium dataset's {medium.num_episodes} episodes, then the expert "
                    f"dataset's {expert.num_episodes} (D4RL's medium-expert)"
                ),
            }
            save(mixed, env_id, "medium-expert", started)
    return merge_record(work_dir / SUITE_FILE, record)


def check_suite(
    env_ids: list[str],
    *,
    prefix: str,
    steps: int,
    train_steps: int,
    expert_steps: int,
    levels: tuple[str, ...],
    behaviour_config: str,
    behaviour_overrides: tuple[str, ...],
    work_dir: Path,
    seed: int,
    overwrite: bool,
) -> list[EnvSpec]:
    """Everything ``make_suite`` needs for ``levels`` (from ``suite_levels``), checked
    without writing anything; returns the envs.

    The sizes (``expert_steps`` beyond ``train_steps``) and the seed (medium uses
    ``seed + 1``, expert ``seed + 2``); the dataset ids (Minari ids, one family per env); the
    overrides (none of the keys make-suite sets); the envs and the memory; each level's
    destination in the store (absent unless ``overwrite``, creatable); when a level needs
    the behaviour run, each run's config and its run dir (holding no run unless
    ``overwrite``, creatable); and ``suite.json``. Raises an ``AlmError`` (``DatasetError``,
    ``ConfigError``, ...).
    """

    if not env_ids:
        raise DatasetError("--envs names no env")
    for name, value in (("--steps", steps), ("--train-steps", train_steps)):
        if value < 1:
            raise DatasetError(f"{name} must be a positive number, got {value}")
    if expert_steps <= train_steps:
        raise DatasetError(
            f"--expert-steps ({expert_steps}) must be larger than --train-steps ({train_steps}): "
            "the expert phase trains the behaviour run on from there"
        )
    if not 0 <= seed < 2**32 - 2:
        raise DatasetError(
            f"--seed must be in [0, 2^32 - 2) (medium uses seed + 1, expert seed + 2), got {seed}"
        )
    seen: dict[str, str] = {}
    for env_id in env_ids:
        for kind in levels:
            suite_id(prefix, env_id, kind)
        family = suite_family(env_id)
        if family in seen:
            raise DatasetError(
                f"--envs names the env family {family!r} twice ({seen[family]}, {env_id}): "
                f"both would make {prefix}/{family}/*"
            )
        seen[family] = env_id
    for override in behaviour_overrides:
        key = override.split("=", 1)[0].strip()
        if key in SET_HERE:
            raise DatasetError(f"{key}= is set by make-suite: use {SET_HERE[key]}")
    envs = [describe_env(env_id) for env_id in env_ids]
    _check_memory(envs, levels, steps, train_steps)
    for env_id in env_ids:
        for kind in levels:
            check_writable(store_path(suite_id(prefix, env_id, kind)), "minari", overwrite)
    trained = env_ids if set(levels) & set(BEHAVIOUR_KINDS) else []  # else no run dir
    for env_id in trained:
        run_dir = _run_dir(work_dir, env_id)
        overrides = _behaviour_overrides(env_id, train_steps, seed, run_dir, behaviour_overrides)
        cfg = load_config(behaviour_config, overrides)
        method_for(cfg.method, "online")
        check_backends(cfg.logger)
        resolve_device(cfg.device)
        if run_dir.exists() and not run_dir.is_dir():
            raise DatasetError(f"behaviour run dir {run_dir} exists and is not a folder")
        if holds_run(run_dir) and not overwrite:
            raise DatasetError(
                f"behaviour run dir {run_dir} already holds a run (pass --overwrite to "
                "replace it and the suite's datasets)"
            )
        check_can_create(run_dir / "config.yaml")
    check_can_create(work_dir / SUITE_FILE)
    return envs


def _check_memory(
    envs: list[EnvSpec], levels: tuple[str, ...], steps: int, train_steps: int
) -> None:
    """``DatasetError`` when the largest part (a ``steps`` dataset, medium-expert's
    ``2 * steps``, or the behaviour run's replay of ``2 * train_steps + 2`` slots) would not
    fit in the memory available."""
    largest = max(4 * (2 * env.obs_dim + env.action_dim + 1) + 2 for env in envs)
    rows = 2 * steps if "medium-expert" in levels else steps
    needed = largest * max(rows, 2 * train_steps + 2)  # bytes, float32 arrays and flags
    available = available_memory()
    if available is not None and needed * MEMORY_HEADROOM > available:
        raise DatasetError(
            f"--steps {steps} / --train-steps {train_steps} need about {needed / 1e9:.1f} GB "
            f"(several copies of it), more than the {available / 1e9:.1f} GB available"
        )


def _run_dir(work_dir: Path, env_id: str) -> Path:
    return work_dir / f"{suite_family(env_id)}-behaviour"


def _sample(
    checkpoint: Path, env: EnvSpec, steps: int, seed: int, noise: float
) -> tuple[EpisodeDataset, str]:
    """``steps`` transitions of the checkpoint's policy with Gaussian ``noise``, and the
    policy's name."""
    policy, name = checkpoint_policy(checkpoint, env)
    return collect(env.env_id, policy, steps, seed=seed, noise=noise, algorithm=name), name


def _keep(checkpoint: Path, name: str) -> Path:
    """A copy of ``checkpoint`` beside it as ``NAME.pt`` (through a temporary and a rename),
    which the run's later checkpoints leave alone; returns its path."""
    kept = checkpoint.with_name(f"{name}.pt")
    tmp = temporary_path(kept)
    try:
        shutil.copyfile(checkpoint, tmp)
        os.replace(tmp, kept)
    except OSError as exc:
        raise WriteError.of(kept, exc, "checkpoint") from None
    finally:
        tmp.unlink(missing_ok=True)
    return kept


def _behaviour_overrides(
    env_id: str, train_steps: int, seed: int, run_dir: Path, extra: tuple[str, ...]
) -> tuple[str, ...]:
    """The behaviour run's overrides: make-suite's own, then the user's ``extra``."""
    return (
        f"env={env_id}",
        f"steps={train_steps}",
        f"seed={seed}",
        f"agent.buffer_size={2 * train_steps + 2}",  # an observation more per episode
        f"run_dir={run_dir}",
        *extra,
    )
