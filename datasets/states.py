"""MuJoCo states of a recorded dataset, by replaying it: D4RL's ``infos/qpos`` and ``infos/qvel``.

A dataset that records each episode's reset seed (``episode_seeds``, as ``collect`` and the
SAC suite write) can be played again: reset with the seed, step the recorded env-unit
actions. MuJoCo is deterministic, so the replay passes through the recorded observations;
it is checked against them, and a mismatch is a ``DatasetError``.
"""

from __future__ import annotations

from contextlib import closing

import numpy as np

from alm_offline.runtime.envs import make_env

from .episodes import DatasetError, EpisodeDataset


def replayed_states(dataset: EpisodeDataset) -> dict[str, np.ndarray]:
    """``{"qpos": (N, nq), "qvel": (N, nv)}``: the state at each transition's observation.

    Raises ``DatasetError`` when the dataset has no env, no episode seeds, or when a replayed
    observation differs from the recorded one.
    """
    if dataset.env_id is None or dataset.episode_seeds is None:
        raise DatasetError("replaying a dataset needs its env id and its episodes' reset seeds")
    if np.any(dataset.episode_seeds < 0):
        raise DatasetError("some episodes record no reset seed: they cannot be replayed")
    with closing(make_env(dataset.env_id, rescale_actions=False)) as env:
        data = env.unwrapped.data
        qpos = np.zeros((dataset.num_steps, data.qpos.shape[0]), np.float64)
        qvel = np.zeros((dataset.num_steps, data.qvel.shape[0]), np.float64)
        row = 0
        for seed, episode in zip(dataset.episode_seeds, dataset.iter_episodes(), strict=True):
            obs, _ = env.reset(seed=int(seed))
            for t, action in enumerate(episode["actions"]):
                _check_same(obs, episode["observations"][t], row)
                qpos[row], qvel[row] = data.qpos, data.qvel
                obs, *_ = env.step(action)
                row += 1
            _check_same(obs, episode["observations"][-1], row - 1)
    return {"qpos": qpos, "qvel": qvel}


def _check_same(replayed: np.ndarray, recorded: np.ndarray, row: int) -> None:
    if not np.array_equal(np.asarray(replayed, np.float32), recorded):
        raise DatasetError(
            f"replaying the recorded actions leaves the recorded observations at transition "
            f"{row}: the dataset was made with another env version or its seeds are wrong"
        )
