"""Action units: the env's own box on disk, the agent's [-1, 1] box in the learner.

D4RL files and Minari datasets store actions in the env's own units (``Humanoid-v5`` acts
in [-0.4, 0.4], ``InvertedPendulum-v5`` in [-3, 3]). The agent acts in [-1, 1]^A, which
``alm_offline.runtime.envs.make_env`` maps linearly onto the env's box. ``ActionBox`` is that map:
``normalize`` takes env units to the agent's box, ``denormalize`` takes them back. Both work
in float64 as ``mid + half * a`` so that a box of [-1, 1] is the identity, bit for bit.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from .errors import DatasetError


@dataclass(frozen=True, eq=False)
class ActionBox:
    """A bounded box of actions: low, high (A,) float32 with low < high everywhere."""

    low: np.ndarray
    high: np.ndarray

    def __post_init__(self) -> None:
        low = np.asarray(self.low, dtype=np.float32).reshape(-1)
        high = np.asarray(self.high, dtype=np.float32).reshape(-1)
        if low.shape != high.shape or low.size == 0:
            raise DatasetError(f"an action box needs low and high of one shape, got {low}, {high}")
        if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high)) and np.all(low < high)):
            raise DatasetError(f"the action box {_span(low, high)} is not finite with low < high")
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)

    @classmethod
    def unit(cls, dim: int) -> ActionBox:
        """The agent's box [-1, 1]^dim."""
        return cls(-np.ones(dim, np.float32), np.ones(dim, np.float32))

    @classmethod
    def from_space(cls, space: object, source: str) -> ActionBox:
        """The box of a gymnasium ``Box`` space (``DatasetError`` for anything else)."""
        if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
            raise DatasetError(f"{source} does not declare a flat Box action space: {space}")
        return cls(space.low, space.high)

    @classmethod
    def of_env(cls, env_id: str) -> ActionBox:
        """The raw action box of the gymnasium env ``env_id`` (``DatasetError`` if unknown)."""
        return cls.from_space(env_spaces(env_id)[1], env_id)

    @property
    def dim(self) -> int:
        return int(self.low.shape[0])

    def same_as(self, other: ActionBox) -> bool:
        return np.array_equal(self.low, other.low) and np.array_equal(self.high, other.high)

    def normalize(self, actions: np.ndarray) -> np.ndarray:
        """(N, A) env units -> (N, A) float32 in the agent's [-1, 1] box."""
        mid, half = self._mid_half()
        scaled = (np.asarray(actions, dtype=np.float64) - mid) / half
        return np.clip(scaled, -1.0, 1.0).astype(np.float32)

    def denormalize(self, actions: np.ndarray) -> np.ndarray:
        """(N, A) in [-1, 1] -> (N, A) float32 env units, within the box."""
        mid, half = self._mid_half()
        env = mid + half * np.asarray(actions, dtype=np.float64)
        return np.clip(env.astype(np.float32), self.low, self.high)

    def count_outside(self, actions: np.ndarray) -> tuple[int, float]:
        """How many values of (N, A) ``actions`` lie outside the box, and by how much at most."""
        below = np.maximum(self.low - actions, 0.0)
        above = np.maximum(actions - self.high, 0.0)
        excess = np.maximum(below, above)
        return int(np.count_nonzero(excess)), float(excess.max(initial=0.0))

    def clip(self, actions: np.ndarray) -> np.ndarray:
        return np.clip(actions, self.low, self.high).astype(np.float32)

    def as_space(self) -> gym.spaces.Box:
        return gym.spaces.Box(self.low, self.high, (self.dim,), np.float32)

    def describe(self) -> str:
        """``[-3, 3]`` when every dimension shares its bounds, else the per-dim lists."""
        return _span(self.low, self.high)

    def _mid_half(self) -> tuple[np.ndarray, np.ndarray]:
        low, high = self.low.astype(np.float64), self.high.astype(np.float64)
        return (high + low) / 2.0, (high - low) / 2.0


BOUND_OPTIONS = "--action-low/--action-high"


def box_from_bounds(low: Sequence[float], high: Sequence[float], dim: int) -> ActionBox:
    """The box ``--action-low``/``--action-high`` declare for actions of ``dim`` dims.

    Each bound is one value (for every dim) or ``dim`` values; all must be finite with low <
    high in every dim, else a one-line ``DatasetError`` naming the options.
    """
    bounds = {"--action-low": list(low), "--action-high": list(high)}
    if not all(bounds.values()):
        raise DatasetError(f"give both {' and '.join(bounds)}, or neither")
    for option, values in bounds.items():
        if len(values) not in (1, dim):
            raise DatasetError(
                f"{option} has {len(values)} values, the actions {dim} dims: give one value "
                f"for every dim or {dim} comma-separated values"
            )
        if not all(np.isfinite(values)):
            raise DatasetError(f"{option} must be finite numbers, got {_numbers(values)}")
    low_, high_ = (np.broadcast_to(np.float32(v), (dim,)) for v in bounds.values())
    if not np.all(low_ < high_):
        raise DatasetError(
            f"{BOUND_OPTIONS} must have low < high in every dim, got {_span(low_, high_)}"
        )
    return ActionBox(low_, high_)


def _numbers(values: Sequence[float]) -> str:
    return ",".join(f"{v:g}" for v in values)


def _span(low: np.ndarray, high: np.ndarray) -> str:
    if low.size and np.all(low == low[0]) and np.all(high == high[0]):
        return f"[{low[0]:g}, {high[0]:g}]"
    return f"[{', '.join(f'{v:g}' for v in low)}] to [{', '.join(f'{v:g}' for v in high)}]"


@functools.lru_cache(maxsize=32)
def env_spaces(env_id: str) -> tuple[gym.Space, gym.Space]:
    """(observation space, action space) of the raw gymnasium env ``env_id``."""
    import alm_offline.runtime.envs  # noqa: F401  (registers T-Ant-v5 / T-Humanoid-v5)

    if env_id not in gym.registry:
        raise DatasetError(f"env id {env_id!r} is not a registered gymnasium env")
    try:
        env = gym.make(env_id)
    except (gym.error.Error, ImportError) as exc:
        raise DatasetError(f"env {env_id!r} cannot be made to read its spaces: {exc}") from None
    try:
        return env.observation_space, env.action_space
    finally:
        env.close()
