"""The in-memory dataset: whole episodes concatenated in Minari's layout, plus reference scores.

Episode ``i`` has ``T_i >= 1`` transitions and ``T_i + 1`` observations (its final observation
included). Arrays of all episodes are concatenated in order, which is exactly what
``ReplayBuffer.load_episodes`` takes. ``actions`` are held exactly as the source stores
them, in the units of ``action_box`` (the env's own box for D4RL and Minari data), so that
writing them back is bit for bit; ``agent_actions()`` gives them in the agent's [-1, 1] box.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import gymnasium as gym
import numpy as np

from alm_offline.errors import printable
from alm_offline.runtime.envs import EnvSpec
from alm_offline.scores import normalized_score

from .action_box import ActionBox
from .errors import DatasetError, DatasetWarning


def typed_array(name: str, array: np.ndarray, dtype: type) -> np.ndarray:
    """``array`` as ``dtype``; ``DatasetError`` when it is not numeric or boolean."""
    array = np.asarray(array)
    if array.dtype.kind not in "biuf":
        raise DatasetError(f"{name} must be numeric, got dtype {array.dtype}")
    return array.astype(dtype, copy=False)


def flag_array(name: str, array: np.ndarray) -> np.ndarray:
    """``array`` as bool; ``DatasetError`` unless every value is exactly 0 or 1 (or bool)."""
    array = np.asarray(array)
    if array.dtype.kind == "b":
        return array
    if array.dtype.kind not in "iuf":
        raise DatasetError(f"{name} must be boolean or 0/1, got dtype {array.dtype}")
    bad = ~((array == 0) | (array == 1))  # NaN compares unequal to both
    if bad.any():
        example = array[bad].flat[0]
        raise DatasetError(
            f"{name} hold {int(bad.sum())} values that are not 0 or 1 (for example {example})"
        )
    return array.astype(np.bool_)


def check_ref_scores(ref_min: object, ref_max: object, source: str) -> None:
    """``DatasetError`` unless both are None, or both finite numbers with max > min."""
    if ref_min is None and ref_max is None:
        return
    if (ref_min is None) != (ref_max is None):
        raise DatasetError(f"{source}: give both reference scores (min and max) or neither")
    for name, value in (("min", ref_min), ("max", ref_max)):
        is_number = isinstance(value, (int, float, np.integer, np.floating))
        if isinstance(value, (bool, np.bool_)) or not is_number or not np.isfinite(value):
            raise DatasetError(f"{source}: the reference {name} score {value!r} is not a number")
    if not ref_max > ref_min:
        raise DatasetError(f"{source}: the reference max {ref_max} must exceed the min {ref_min}")


@dataclass
class EpisodeDataset:
    """Episodes concatenated (Minari layout); dtypes are coerced on construction.

    observations: (sum(T_i + 1), D) float32; actions: (sum T_i, A) float32 in the units of
    ``action_box`` (None until known); rewards, terminations, truncations: (sum T_i,)
    float32 / bool / bool (flags must be 0 or 1); episode_lengths: (E,) int64 holding T_i;
    episode_seeds: (E,) int64 reset seeds (-1 where none is recorded) or None. ``open_end``:
    the source stopped mid-episode (its last row flagged neither terminal nor timeout); that
    episode is held as truncated and written back unflagged to HDF5.
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminations: np.ndarray
    truncations: np.ndarray
    episode_lengths: np.ndarray
    env_id: str | None = None
    ref_min_score: float | None = None
    ref_max_score: float | None = None
    metadata: dict = field(default_factory=dict)
    action_box: ActionBox | None = None
    episode_seeds: np.ndarray | None = None
    open_end: bool = False

    def __post_init__(self) -> None:
        self.observations = typed_array("observations", self.observations, np.float32)
        self.actions = typed_array("actions", self.actions, np.float32)
        self.rewards = typed_array("rewards", self.rewards, np.float32)
        self.terminations = flag_array("terminations", self.terminations)
        self.truncations = flag_array("truncations", self.truncations)
        self.episode_lengths = typed_array("episode_lengths", self.episode_lengths, np.int64)
        if self.episode_seeds is not None:
            self.episode_seeds = typed_array("episode_seeds", self.episode_seeds, np.int64)

    @classmethod
    def from_episodes(cls, episodes: list[dict[str, np.ndarray]], **fields) -> EpisodeDataset:
        """Concatenate per-episode dicts with keys observations (T+1, D), actions (T, A),
        rewards, terminations, truncations (T,); ``fields`` are the remaining attributes."""
        if not episodes:
            raise DatasetError("the dataset has no episodes")
        keys = ("observations", "actions", "rewards", "terminations", "truncations")
        arrays = {k: np.concatenate([np.asarray(ep[k]) for ep in episodes]) for k in keys}
        lengths = np.array([len(ep["rewards"]) for ep in episodes], dtype=np.int64)
        return cls(**arrays, episode_lengths=lengths, **fields)

    # ------------------------------------------------------------------ shape
    @property
    def num_episodes(self) -> int:
        return len(self.episode_lengths)

    @property
    def num_steps(self) -> int:
        return int(self.episode_lengths.sum())

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays (what a file of the dataset holds, give or take its layout)."""
        arrays = (self.observations, self.actions, self.rewards, self.terminations)
        return sum(a.nbytes for a in (*arrays, self.truncations, self.episode_lengths))

    @property
    def obs_dim(self) -> int:
        return int(self.observations.shape[1])

    @property
    def action_dim(self) -> int:
        return int(self.actions.shape[1])

    def step_starts(self) -> np.ndarray:
        """(E,) index of each episode's first transition."""
        return np.concatenate([[0], np.cumsum(self.episode_lengths)[:-1]]).astype(np.int64)

    def final_observation_index(self) -> np.ndarray:
        """(E,) index in ``observations`` of each episode's last observation (no action)."""
        return np.cumsum(self.episode_lengths + 1) - 1

    def transition_observations(self) -> tuple[np.ndarray, np.ndarray]:
        """Each transition's observation and next observation, both (sum T_i, D), in the
        order of ``actions`` (an episode's last observation starts none)."""
        starts_one = np.ones(len(self.observations), dtype=bool)
        starts_one[self.final_observation_index()] = False
        rows = np.flatnonzero(starts_one)
        return self.observations[rows], self.observations[rows + 1]

    def episode(self, i: int) -> dict[str, np.ndarray]:
        """Episode ``i`` as views: observations (T+1, D), actions (T, A), rewards ... (T,)."""
        return self._slice(self.step_starts()[i], self.episode_lengths[i], i)

    def iter_episodes(self) -> Iterator[dict[str, np.ndarray]]:
        """Every episode in order, as ``episode(i)`` gives it."""
        for i, (start, length) in enumerate(
            zip(self.step_starts(), self.episode_lengths, strict=True)
        ):
            yield self._slice(start, length, i)

    def _slice(self, start: int, length: int, i: int) -> dict[str, np.ndarray]:
        steps = slice(start, start + length)
        return {
            "observations": self.observations[start + i : start + i + length + 1],
            "actions": self.actions[steps],
            "rewards": self.rewards[steps],
            "terminations": self.terminations[steps],
            "truncations": self.truncations[steps],
        }

    def agent_actions(self) -> np.ndarray:
        """(sum T_i, A) float32 actions in the agent's [-1, 1] box (what the learner sees)."""
        return self._known_box().normalize(self.actions)

    def actions_in(self, box: ActionBox) -> np.ndarray:
        """(sum T_i, A) float32 actions in the units of ``box``; exact when it is ``action_box``."""
        own = self._known_box()
        return self.actions if own.same_as(box) else box.denormalize(own.normalize(self.actions))

    def env_unit_box(self) -> ActionBox:
        """The box writers store actions in: the env's own when gymnasium knows ``env_id``
        (and its dims match), else ``action_box`` (``DatasetError`` when neither is known)."""
        if self.env_id is not None and self.env_id in gym.registry:
            box = ActionBox.of_env(self.env_id)
            if box.dim == self.action_dim:
                return box
        return self._known_box()

    def _known_box(self) -> ActionBox:
        if self.action_box is None:
            raise DatasetError(
                "the dataset's action box is unknown; declare it (--action-low/--action-high) "
                "or name its env (--env ENV_ID) so that its actions can be read in their units"
            )
        return self.action_box

    def replay_arrays(self) -> tuple[np.ndarray, ...]:
        """What ``ReplayBuffer.load_episodes`` takes: observations, actions in the agent's
        [-1, 1] box, rewards, terminations and episode lengths."""
        return (
            self.observations,
            self.agent_actions(),
            self.rewards,
            self.terminations,
            self.episode_lengths,
        )

    def fingerprint(self) -> list[float]:
        """Sizes and sums that change when the data does (a resumed run checks it)."""
        return [
            float(self.num_episodes),
            float(self.num_steps),
            float(np.float64(self.rewards).sum()),
            float(np.float64(self.observations[:, 0]).sum()),
        ]

    def episode_returns(self) -> np.ndarray:
        """(E,) undiscounted return of each episode, float64."""
        return np.add.reduceat(self.rewards.astype(np.float64), self.step_starts())

    # ------------------------------------------------------------- checking
    def validate(self, env_spec: EnvSpec | None = None, clip_actions: bool = False) -> None:
        """Raise ``DatasetError`` unless the dataset is consistent and usable.

        Checks shapes against ``episode_lengths``, finite values, termination/truncation
        flags only on episode ends, actions within ``action_box`` when it is known (clipped to
        it in place, with a ``DatasetWarning``, when ``clip_actions``), the dims of
        ``env_spec`` when given and the reference scores.
        """
        self._check_shapes()
        for name in ("observations", "actions", "rewards"):
            bad = int(np.count_nonzero(~np.isfinite(getattr(self, name))))
            if bad:
                raise DatasetError(f"{name} hold {bad} NaN or infinite values")
        self._check_flags()
        self._check_action_range(clip_actions)
        if env_spec is not None and (env_spec.obs_dim, env_spec.action_dim) != (
            self.obs_dim,
            self.action_dim,
        ):
            raise DatasetError(
                f"dataset has obs dim {self.obs_dim} and action dim {self.action_dim}, "
                f"env {env_spec.env_id} has {env_spec.obs_dim} and {env_spec.action_dim}"
            )
        check_ref_scores(self.ref_min_score, self.ref_max_score, "the dataset")
        if self.episode_seeds is not None and self.episode_seeds.shape != (self.num_episodes,):
            raise DatasetError(
                f"episode_seeds has shape {self.episode_seeds.shape}, expected "
                f"({self.num_episodes},), one per episode"
            )

    def _check_shapes(self) -> None:
        lengths = self.episode_lengths
        if lengths.ndim != 1 or len(lengths) == 0:
            raise DatasetError("the dataset has no episodes")
        if lengths.min() < 1:
            raise DatasetError("every episode needs at least one transition")
        steps = self.num_steps
        expected = {
            "observations": (steps + self.num_episodes, 2),
            "actions": (steps, 2),
            "rewards": (steps, 1),
            "terminations": (steps, 1),
            "truncations": (steps, 1),
        }
        for name, (rows, ndim) in expected.items():
            array = getattr(self, name)
            if array.ndim != ndim or len(array) != rows:
                raise DatasetError(
                    f"{name} has shape {array.shape}, expected {rows} rows ({ndim}-D) for "
                    f"{self.num_episodes} episodes of {steps} steps in total"
                )

    def _check_flags(self) -> None:
        inner = np.ones(self.num_steps, dtype=bool)
        inner[np.cumsum(self.episode_lengths) - 1] = False
        for name in ("terminations", "truncations"):
            bad = int(np.count_nonzero(getattr(self, name) & inner))
            if bad:
                raise DatasetError(f"{bad} {name} fall inside an episode instead of at its end")

    def _check_action_range(self, clip_actions: bool) -> None:
        if self.action_box is None:  # units unknown: nothing to check them against
            return
        box = self.action_box
        if box.dim != self.action_dim:
            raise DatasetError(
                f"the action box {box.describe()} has {box.dim} dims, the actions {self.action_dim}"
            )
        count, excess = box.count_outside(self.actions)
        if not count:
            return
        owner = f" of {self.env_id}" if self.env_id else ""
        message = (
            f"{count} action values lie outside the action box {box.describe()}{owner} "
            f"(by up to {excess:.4g})"
        )
        if not clip_actions:
            raise DatasetError(
                f"{message}; datasets hold actions in the env's own units "
                "(clip them into the box with --clip-actions)"
            )
        self.actions = box.clip(self.actions)
        warnings.warn(f"clipped {message}", DatasetWarning, stacklevel=2)

    # -------------------------------------------------------------- scoring
    def normalized_score(self, returns: np.ndarray | float) -> np.ndarray:
        """D4RL normalised score: 100 * (return - ref_min) / (ref_max - ref_min)."""
        if self.ref_min_score is None or self.ref_max_score is None:
            raise DatasetError("the dataset has no reference scores to normalise with")
        return normalized_score(
            np.asarray(returns, dtype=np.float64), self.ref_min_score, self.ref_max_score
        )

    def summary(self) -> dict:
        """Plain-JSON description: sizes, shapes, dtypes, return statistics, flags, scores."""
        returns = self.episode_returns()
        stats = {
            "mean": float(returns.mean()),
            "std": float(returns.std()),
            "min": float(returns.min()),
            "max": float(returns.max()),
        }
        summary = {
            "episodes": self.num_episodes,
            "steps": self.num_steps,
            "observations": {
                "shape": list(self.observations.shape),
                "dtype": str(self.observations.dtype),
            },
            "actions": {
                "shape": list(self.actions.shape),
                "dtype": str(self.actions.dtype),
                "min": self.actions.min(axis=0).tolist(),  # per dim, as stored
                "max": self.actions.max(axis=0).tolist(),
            },
            "episode_length": {
                "mean": float(self.episode_lengths.mean()),
                "min": int(self.episode_lengths.min()),
                "max": int(self.episode_lengths.max()),
            },
            "returns": stats,
            "terminations": int(self.terminations.sum()),
            "truncations": int(self.truncations.sum()),
            "env_id": self.env_id,
            "action_box": None if self.action_box is None else self.action_box.describe(),
            "ref_min_score": self.ref_min_score,
            "ref_max_score": self.ref_max_score,
            "normalized_return_mean": None,
            "metadata": {k: _plain(v) for k, v in self.metadata.items()},
        }
        if self.ref_min_score is not None and self.ref_max_score is not None:
            summary["normalized_return_mean"] = float(self.normalized_score(returns).mean())
        return summary

    def describe(self, name: str) -> str:
        """``alm dataset info``: one ``key: value`` line per fact of ``summary()``."""
        summary = self.summary()
        returns, lengths = summary["returns"], summary["episode_length"]
        obs, act = summary["observations"], summary["actions"]
        rows = [
            ("dataset", name),
            ("env", summary["env_id"] or "unknown"),
            ("episodes", summary["episodes"]),
            ("steps", summary["steps"]),
            ("observations", f"{tuple(obs['shape'])} {obs['dtype']}"),
            ("actions", f"{tuple(act['shape'])} {act['dtype']}"),
            ("action range", f"min {min(act['min']):.4g}, max {max(act['max']):.4g} (as stored)"),
            ("action box", _describe_box(summary["action_box"])),
            (
                "episode length",
                f"mean {lengths['mean']:.1f}, min {lengths['min']}, max {lengths['max']}",
            ),
            ("returns", ", ".join(f"{k} {v:.2f}" for k, v in returns.items())),
            ("terminations", summary["terminations"]),
            ("truncations", summary["truncations"]),
        ]
        if summary["ref_min_score"] is not None:
            scores = (
                f"min {summary['ref_min_score']}, max {summary['ref_max_score']} "
                f"(normalised mean return {summary['normalized_return_mean']:.2f})"
            )
            rows.append(("reference scores", scores))
        rows += list(summary["metadata"].items())
        return "\n".join(f"{printable(key) + ':':<18}{printable(value)}" for key, value in rows)


def concatenate(first: EpisodeDataset, second: EpisodeDataset) -> EpisodeDataset:
    """The episodes of ``first`` followed by those of ``second`` (D4RL's medium-expert).

    Both must have the same env, obs and action dims, action box and reference scores
    (``DatasetError`` otherwise). Episode seeds are kept (-1 for a dataset that has none);
    ``open_end`` is ``second``'s (``first``'s open episode is held truncated, as it is);
    ``metadata`` is left for the caller.
    """
    for name in ("env_id", "obs_dim", "action_dim", "ref_min_score", "ref_max_score"):
        if getattr(first, name) != getattr(second, name):
            raise DatasetError(
                f"cannot concatenate datasets of {name} {getattr(first, name)} and "
                f"{getattr(second, name)}"
            )
    boxes = (first.action_box, second.action_box)
    if None in boxes:
        same_box = boxes[0] is None and boxes[1] is None
    else:
        same_box = boxes[0].same_as(boxes[1])
    if not same_box:
        shown = [box.describe() if box is not None else "unknown" for box in boxes]
        raise DatasetError(f"cannot concatenate datasets of action boxes {shown[0]} and {shown[1]}")
    seeds = None
    if first.episode_seeds is not None or second.episode_seeds is not None:
        seeds = np.concatenate(
            [
                data.episode_seeds
                if data.episode_seeds is not None
                else np.full(data.num_episodes, -1, dtype=np.int64)
                for data in (first, second)
            ]
        )
    arrays = ("observations", "actions", "rewards", "terminations", "truncations")
    return EpisodeDataset(
        **{name: np.concatenate([getattr(first, name), getattr(second, name)]) for name in arrays},
        episode_lengths=np.concatenate([first.episode_lengths, second.episode_lengths]),
        env_id=first.env_id,
        ref_min_score=first.ref_min_score,
        ref_max_score=first.ref_max_score,
        action_box=first.action_box,
        episode_seeds=seeds,
        open_end=second.open_end,
    )


def _describe_box(box: str | None) -> str:
    """The ``action box`` line of ``describe``: the box, or what an unknown one means."""
    if box is None:
        return (
            "unknown: actions in stored units (declare the box with --action-low/--action-high "
            "or name the env with --env)"
        )
    return f"{box} (the units of the stored actions)"


def _plain(value: object) -> object:
    """A JSON-friendly version of a metadata value."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return repr(value)
