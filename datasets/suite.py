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
import time
from pathlib import Path
from typing import Any

import numpy as np

from .action_box import ActionBox
from .convert import save_dataset
from .episodes import DatasetError, EpisodeDataset
from .minari_io import check_minari_id, store_path

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


def merge_record(path: Path, record: dict[str, Any]) -> dict[str, Any]:
    """Write ``record`` into the suite file at ``path``, keeping what an earlier (or a
    concurrent, other-env) make-suite wrote for other datasets and envs; returns the whole."""
    from alm_offline.runtime.files import write_text_atomic

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


def save_suite_dataset(
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
