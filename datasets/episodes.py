"""The in-memory dataset: whole episodes concatenated in Minari's layout, plus reference scores.

Episode ``i`` has ``T_i >= 1`` transitions and ``T_i + 1`` observations (its final observation
included). Arrays of all episodes are concatenated in order, which is exactly what
``ReplayBuffer.load_episodes`` takes. Actions live in the normalised box [-1, 1]^A of
``alm_offline.envs.make_env``.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from alm_offline.envs import EnvSpec
from alm_offline.evaluate import normalized_score


class DatasetError(ValueError):
    """A dataset that cannot be read, written or used; the message is one line."""


class DatasetWarning(UserWarning):
    """Something about a dataset the user should know (e.g. inferred episode ends)."""


# D4RL reference returns (random policy, expert policy) per MuJoCo locomotion family.
D4RL_REF_SCORES: dict[str, tuple[float, float]] = {
    "halfcheetah": (-280.178953, 12135.0),
    "hopper": (-20.272305, 3234.3),
    "walker2d": (1.629008, 4592.3),
    "ant": (-325.6, 3879.7),
}

_FAMILY_RE = re.compile(
    r"^(?:[\w.-]+/)*(" + "|".join(D4RL_REF_SCORES) + r")(?:[-_/]|$)", re.IGNORECASE
)


def d4rl_ref_scores(name: str) -> tuple[float, float] | None:
    """(min, max) D4RL reference scores for an env id or dataset name, None when unknown.

    Matches ``HalfCheetah-v5``, ``halfcheetah-medium-v2``, ``mujoco/hopper/expert-v0``; not
    ``T-Ant-v5`` (a different observation) nor ``antmaze-*``.
    """
    match = _FAMILY_RE.match(name)
    return D4RL_REF_SCORES[match.group(1).lower()] if match else None


def typed_array(name: str, array: np.ndarray, dtype: type) -> np.ndarray:
    """``array`` as ``dtype``; ``DatasetError`` when it is not numeric or boolean."""
    array = np.asarray(array)
    if array.dtype.kind not in "biuf":
        raise DatasetError(f"{name} must be numeric, got dtype {array.dtype}")
    return array.astype(dtype, copy=False)


@dataclass
class EpisodeDataset:
    """Episodes concatenated (Minari layout); dtypes are coerced on construction.

    observations: (sum(T_i + 1), D) float32; actions: (sum T_i, A) float32;
    rewards, terminations, truncations: (sum T_i,) float32 / bool / bool;
    episode_lengths: (E,) int64 holding T_i.
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

    def __post_init__(self) -> None:
        self.observations = typed_array("observations", self.observations, np.float32)
        self.actions = typed_array("actions", self.actions, np.float32)
        self.rewards = typed_array("rewards", self.rewards, np.float32)
        self.terminations = typed_array("terminations", self.terminations, np.bool_)
        self.truncations = typed_array("truncations", self.truncations, np.bool_)
        self.episode_lengths = typed_array("episode_lengths", self.episode_lengths, np.int64)

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

    def episode_returns(self) -> np.ndarray:
        """(E,) undiscounted return of each episode, float64."""
        return np.add.reduceat(self.rewards.astype(np.float64), self.step_starts())

    # ------------------------------------------------------------- checking
    def validate(self, env_spec: EnvSpec | None = None, clip_actions: bool = False) -> None:
        """Raise ``DatasetError`` unless the dataset is consistent and usable.

        Checks shapes against ``episode_lengths``, finite values, termination/truncation
        flags only on episode ends, actions within [-1, 1] (clipped in place, with a
        ``DatasetWarning``, when ``clip_actions``) and the dims of ``env_spec`` when given.
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
        if (self.ref_min_score is None) != (self.ref_max_score is None):
            raise DatasetError("reference scores need both a min and a max")

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
        outside = np.abs(self.actions) > 1.0
        count = int(np.count_nonzero(outside))
        if not count:
            return
        excess = float(np.abs(self.actions).max() - 1.0)
        message = f"{count} action values lie outside [-1, 1] (by up to {excess:.4g})"
        if not clip_actions:
            raise DatasetError(
                f"{message}; actions must be normalised to the env's [-1, 1] box "
                "(clip them with --clip-actions)"
            )
        self.actions = np.clip(self.actions, -1.0, 1.0)
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
            "actions": {"shape": list(self.actions.shape), "dtype": str(self.actions.dtype)},
            "episode_length": {
                "mean": float(self.episode_lengths.mean()),
                "min": int(self.episode_lengths.min()),
                "max": int(self.episode_lengths.max()),
            },
            "returns": stats,
            "terminations": int(self.terminations.sum()),
            "truncations": int(self.truncations.sum()),
            "env_id": self.env_id,
            "ref_min_score": self.ref_min_score,
            "ref_max_score": self.ref_max_score,
            "normalized_return_mean": None,
            "metadata": {k: _plain(v) for k, v in self.metadata.items()},
        }
        if self.ref_min_score is not None and self.ref_max_score is not None:
            summary["normalized_return_mean"] = float(self.normalized_score(returns).mean())
        return summary


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
