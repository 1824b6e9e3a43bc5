"""D4RL's reference returns and the normalised score: one table, one lookup.

normalised score = 100 (R - random) / (expert - random), with D4RL's random-policy and
expert-policy returns of each MuJoCo locomotion family.
"""

from __future__ import annotations

import re

import numpy as np

# (random policy, expert policy) returns per family, as D4RL publishes them
D4RL_REFERENCE_SCORES: dict[str, tuple[float, float]] = {
    "halfcheetah": (-280.178953, 12135.0),
    "hopper": (-20.272305, 3234.3),
    "walker2d": (1.629008, 4592.3),
    "ant": (-325.6, 3879.7),
}

_FAMILY = re.compile(
    r"^(?:[\w.-]+/)*(" + "|".join(D4RL_REFERENCE_SCORES) + r")(?:[-_/]|$)", re.IGNORECASE
)


def reference_scores(name: str) -> tuple[float, float] | None:
    """D4RL's (random, expert) returns for an env id or dataset name; None when unknown.

    Matches ``HalfCheetah-v5``, ``hopper-medium-v2``, ``mujoco/hopper/expert-v0``; not
    ``T-Ant-v5`` (another observation) nor ``antmaze-*``.
    """
    match = _FAMILY.match(name)
    return D4RL_REFERENCE_SCORES[match.group(1).lower()] if match else None


def normalized_score(returns: np.ndarray | float, ref_min: float, ref_max: float) -> np.ndarray:
    """100 * (return - ref_min) / (ref_max - ref_min), elementwise: (...) -> (...) float64."""
    return 100.0 * (np.asarray(returns, dtype=np.float64) - ref_min) / (ref_max - ref_min)
