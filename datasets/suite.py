"""A D4RL-style dataset suite made here: random, medium and medium-replay per env.

For each env, ``make_suite`` writes three Minari datasets into the local store, with D4RL's
reference scores where D4RL has the env family:

* ``random``: ``steps`` transitions of the seeded uniform policy (D4RL's recipe; episodes end
  at the env's 1000-step limit or its termination);
* ``medium``: an ALM behaviour policy trained online here (``behaviour`` config,
  ``train_steps`` env steps), then sampled for ``steps`` transitions with Gaussian noise of
  its final exploration std (the stochastic policy it trained with);
* ``medium-replay``: that training run's whole replay buffer, in order, with its episode
  boundaries (the run's last episode, cut by the end of training, is flagged a timeout).

Ids are ``PREFIX/FAMILY/KIND-v0`` (``alm-suite/halfcheetah/medium-v0``). The behaviour
runs live in ``work_dir`` with ``suite.json``: each dataset's size, return statistics,
how long its part took and the behaviour run's evaluations.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from alm_offline.scores import reference_scores
from alm_offline.training.envs import describe_env

from .action_box import ActionBox
from .collect import collect, policy_for, random_policy
from .convert import check_writable, save_dataset
from .episodes import DatasetError, EpisodeDataset

SUITE_KINDS = ("random", "medium", "medium-replay")
SUITE_FILE = "suite.json"


def suite_id(prefix: str, env_id: str, kind: str) -> str:
    """``PREFIX/FAMILY/KIND-v0``: ``alm-suite``, ``HalfCheetah-v5``, ``medium`` ->
    ``alm-suite/halfcheetah/medium-v0``."""
    family = env_id.split("-")[0].lower()
    return f"{prefix}/{family}/{kind}-v0"


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


def make_suite(
    env_ids: list[str],
    *,
    prefix: str = "alm-suite",
    steps: int = 100_000,
    train_steps: int = 20_000,
    behaviour_config: str = "behaviour",
    behaviour_overrides: tuple[str, ...] = (),
    work_dir: str | Path = "suites/alm-suite",
    seed: int = 0,
    overwrite: bool = False,
    log: Any = print,
) -> dict[str, Any]:
    """Make the suite for ``env_ids``; returns what ``suite.json`` holds.

    Everything is checked before anything trains: the envs, the destinations (which must
    not exist unless ``overwrite``) and the behaviour config.
    """
    from alm_offline.training.checkpoint import checkpoint_path, read_checkpoint
    from alm_offline.training.start import start_online, train  # training is needed only here

    work_dir = Path(work_dir)
    for env_id in env_ids:
        describe_env(env_id)
        for kind in SUITE_KINDS:
            check_writable(suite_id(prefix, env_id, kind), "minari", overwrite)
    record: dict[str, Any] = {"prefix": prefix, "seed": seed, "datasets": [], "behaviour": {}}
    for env_id in env_ids:
        family = env_id.split("-")[0].lower()
        started = time.perf_counter()
        uniform = random_policy(describe_env(env_id).action_dim, seed)
        random = collect(env_id, uniform, steps, seed=seed, algorithm="random")
        _save(record, random, suite_id(prefix, env_id, "random"), started, overwrite, log)

        started = time.perf_counter()
        run_dir = work_dir / f"{family}-behaviour"
        overrides = (
            f"env={env_id}",
            f"steps={train_steps}",
            f"seed={seed}",
            f"agent.buffer_size={2 * train_steps + 2}",  # an observation more per episode
            f"run_dir={run_dir}",
            *behaviour_overrides,
        )
        start = start_online(behaviour_config, overrides, overwrite=overwrite)
        log(f"{env_id}: training the behaviour policy ({train_steps} env steps) in {run_dir}")
        summary = train(start, quiet=True)
        train_seconds = time.perf_counter() - started
        record["behaviour"][env_id] = {
            "run_dir": str(run_dir),
            "config": behaviour_config,
            "overrides": list(overrides),
            "evaluations": summary["evaluations"],
            "final_eval_return_mean": summary["eval_return_mean"],
            "seconds": train_seconds,
        }

        started = time.perf_counter()
        checkpoint = checkpoint_path(run_dir)
        policy, name = policy_for(str(checkpoint), env_id)
        noise = start.cfg.agent.expl_std_end
        medium = collect(env_id, policy, steps, seed=seed + 1, noise=noise, algorithm=name)
        _save(record, medium, suite_id(prefix, env_id, "medium"), started, overwrite, log)

        started = time.perf_counter()
        replay = replay_dataset(read_checkpoint(checkpoint)["replay"], env_id)
        replay.ref_min_score, replay.ref_max_score = reference_scores(env_id) or (None, None)
        replay.metadata = {
            "algorithm": f"replay buffer of {name}",
            "description": f"the {train_steps}-step online training run of the medium policy",
        }
        mid = suite_id(prefix, env_id, "medium-replay")
        _save(record, replay, mid, started, overwrite, log)
    return merge_record(work_dir / SUITE_FILE, record)


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
    save_dataset(dataset, dataset_id, "minari", overwrite=overwrite)
    row = {"id": dataset_id, **dataset_stats(dataset)}
    row["seconds"] = time.perf_counter() - started
    record["datasets"].append(row)
    log(
        f"{dataset_id}: {row['steps']} steps, {row['episodes']} episodes, return "
        f"{row['return_mean']:.1f} +- {row['return_std']:.1f} ({row['seconds']:.0f} s)"
    )
