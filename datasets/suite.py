"""A D4RL-style dataset suite made here: D4RL's five levels per env.

For each env, ``make_suite`` writes the Minari datasets of its ``levels`` (all five by
default) into the local store, with D4RL's reference scores where D4RL has the env family:

* ``random``: ``steps`` transitions of the seeded uniform policy (D4RL's recipe; episodes end
  at the env's 1000-step limit or its termination);
* ``medium``: an ALM behaviour policy trained online here (``behaviour`` config,
  ``train_steps`` env steps), then sampled for ``steps`` transitions with Gaussian noise of
  its final exploration std (the stochastic policy it trained with);
* ``medium-replay``: that training run's whole replay buffer, in order, with its episode
  boundaries (the run's last episode, cut by the end of training, is flagged a timeout);
* ``expert``: the same run resumed and trained on to ``expert_steps`` env steps (D4RL's
  expert is a policy trained to convergence; its medium one reaches about a third of the
  expert's return), then sampled as medium is, with the same noise;
* ``medium-expert``: medium's episodes followed by expert's (``2 x steps`` transitions).

The medium policy is kept as ``checkpoints/medium.pt`` before the run goes on (the run's
``latest.pt`` moves on to the expert, kept as ``checkpoints/expert.pt``); medium-replay is
read from ``medium.pt``, so the ring buffer may wrap in the expert phase. Ids are
``PREFIX/FAMILY/KIND-v0`` (``alm-suite/halfcheetah/medium-v0``). The behaviour runs live in
``work_dir`` with ``suite.json``: each dataset's size, return statistics, how long its part
took and the behaviour run's evaluations (the expert phase's apart, under ``expert``).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from alm_offline.errors import WriteError
from alm_offline.scores import reference_scores
from alm_offline.training.envs import EnvSpec, describe_env
from alm_offline.training.tempfiles import temporary_path

from .action_box import ActionBox
from .atomic import check_can_create
from .collect import collect, policy_for, random_policy
from .convert import check_writable, save_dataset
from .episodes import DatasetError, EpisodeDataset, concatenate
from .minari_io import check_minari_id, store_path
from .safety import MEMORY_HEADROOM, available_memory

SUITE_KINDS = ("random", "medium", "medium-replay", "expert", "medium-expert")  # D4RL's order
BEHAVIOUR_KINDS = SUITE_KINDS[1:]  # the levels that train the behaviour run
EXPERT_KINDS = ("expert", "medium-expert")  # the levels that train it on to expert_steps
EXPERT_FACTOR = 3  # expert_steps by default: 3 x train_steps
SUITE_FILE = "suite.json"
SET_HERE = {  # behaviour-run keys make-suite sets itself, and the option that sets each
    "env": "--envs",
    "steps": "--train-steps and --expert-steps",
    "seed": "--seed",
    "run_dir": "--work-dir",
    "agent.buffer_size": "--train-steps (2 x it + 2)",
}


def suite_family(env_id: str) -> str:
    """``HalfCheetah-v5`` -> ``halfcheetah``."""
    return env_id.split("-")[0].lower()


def suite_id(prefix: str, env_id: str, kind: str) -> str:
    """``PREFIX/FAMILY/KIND-v0``: ``alm-suite``, ``HalfCheetah-v5``, ``medium`` ->
    ``alm-suite/halfcheetah/medium-v0``; ``DatasetError`` when that is no Minari id (the
    dataset would land outside the store)."""
    dataset_id = f"{prefix}/{suite_family(env_id)}/{kind}-v0"
    try:
        return check_minari_id(dataset_id)
    except DatasetError as exc:
        raise DatasetError(f"--prefix {prefix!r} does not make dataset ids: {exc}") from None


def replay_dataset(replay: dict[str, Any], env_id: str) -> EpisodeDataset:
    """A checkpoint's replay state (``ReplayBuffer.state_dict``) as episodes, in order.

    Slots hold observations; a slot whose ``has_next`` is false is its episode's final
    observation. Actions are in the agent's [-1, 1] box. ``DatasetError`` when the buffer
    wrapped (its oldest episodes are gone): give the run a buffer larger than its steps.
    """
    size = int(replay["size"])
    if size >= int(replay["capacity"]):
        raise DatasetError(
            f"the behaviour run's replay filled its {replay['capacity']} slots and lost its "
            "oldest steps; train with agent.buffer_size larger than the run's steps"
        )
    has_next = replay["has_next"].numpy().astype(bool)
    finals = np.flatnonzero(~has_next)  # (E,) slot of each episode's last observation
    starts = np.concatenate([[0], finals[:-1] + 1])
    lengths = finals - starts
    keep = lengths > 0  # an episode of a reset observation alone has no transition
    steps = np.flatnonzero(has_next)
    terminated = replay["terminated"].numpy()[steps] > 0.5
    truncated = np.zeros_like(terminated)
    last_steps = np.cumsum(lengths[keep]) - 1
    truncated[last_steps] = ~terminated[last_steps]
    obs_rows = np.ones(size, dtype=bool)
    obs_rows[finals[~keep]] = False  # those episodes' only observation
    action_dim = replay["action"].shape[1]
    return EpisodeDataset(
        observations=replay["obs"].numpy()[obs_rows],
        actions=replay["action"].numpy()[steps],
        rewards=replay["reward"].numpy()[steps],
        terminations=terminated,
        truncations=truncated,
        episode_lengths=lengths[keep],
        env_id=env_id,
        action_box=ActionBox.unit(action_dim),
    )


def dataset_stats(dataset: EpisodeDataset) -> dict[str, Any]:
    """Size and return statistics of a dataset (a row of the suite's table), from
    ``EpisodeDataset.summary``."""
    summary = dataset.summary()
    stats = {"steps": summary["steps"], "episodes": summary["episodes"]}
    stats.update({f"return_{key}": value for key, value in summary["returns"].items()})
    if summary["normalized_return_mean"] is not None:
        stats["normalized_score_mean"] = summary["normalized_return_mean"]
    return stats


def suite_levels(names: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The levels ``names`` asks for, in D4RL's order (``SUITE_KINDS``); ``DatasetError``
    for none, an empty name (``random,``), a repeated one, or a name that is no level."""
    if not any(names):
        raise DatasetError("--levels names no level")
    if "" in names:
        raise DatasetError(f"--levels has an empty item in '{','.join(names)}'")
    repeated = [name for i, name in enumerate(names) if name in names[:i]]
    if repeated:
        raise DatasetError(f"--levels names '{repeated[0]}' twice; each level once")
    unknown = [name for name in names if name not in SUITE_KINDS]
    if unknown:
        raise DatasetError(
            f"--levels: unknown level {unknown[0]!r} (the levels: {', '.join(SUITE_KINDS)})"
        )
    return tuple(kind for kind in SUITE_KINDS if kind in names)


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
    from alm_offline.training.checkpoint import checkpoint_path, read_checkpoint
    from alm_offline.training.start import start_online, train  # training is needed only here

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
        _save(record, dataset, suite_id(prefix, env_id, kind), started, overwrite, log)

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
    from alm_offline.config import load_config, resolve_device
    from alm_offline.training.loggers import check_backends
    from alm_offline.training.methods import method_for
    from alm_offline.training.rundir import holds_run

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
    policy, name = policy_for(str(checkpoint), env)
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


def merge_record(path: Path, record: dict[str, Any]) -> dict[str, Any]:
    """Write ``record`` into the suite file at ``path``, keeping what an earlier (or a
    concurrent, other-env) make-suite wrote for other datasets and envs; returns the whole."""
    from alm_offline.training.rundir import write_text_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        merged = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        merged = {}
    rows = {row["id"]: row for row in merged.get("datasets", [])}
    rows.update({row["id"]: row for row in record["datasets"]})
    merged.update(prefix=record["prefix"], seed=record["seed"], datasets=list(rows.values()))
    merged["behaviour"] = {**merged.get("behaviour", {}), **record["behaviour"]}
    write_text_atomic(path, json.dumps(merged, indent=2) + "\n")
    return merged


def _save(
    record: dict[str, Any],
    dataset: EpisodeDataset,
    dataset_id: str,
    started: float,
    overwrite: bool,
    log: Any,
) -> None:
    """Write ``dataset`` as the Minari id and add its row (seconds since ``started``)."""
    save_dataset(dataset, store_path(dataset_id), "minari", overwrite=overwrite)
    row = {"id": dataset_id, **dataset_stats(dataset)}
    row["seconds"] = time.perf_counter() - started
    record["datasets"].append(row)
    log(
        f"{dataset_id}: {row['steps']} steps, {row['episodes']} episodes, return "
        f"{row['return_mean']:.1f} +- {row['return_std']:.1f} ({row['seconds']:.0f} s)"
    )
