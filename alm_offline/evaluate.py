"""Deterministic evaluation and normalised scores."""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import numpy as np

EVAL_SEED_OFFSET = 10_000


def evaluate(
    policy: Callable[[np.ndarray], np.ndarray], env: gym.Env, episodes: int, seed: int
) -> np.ndarray:
    """Undiscounted returns (episodes,) of ``policy`` in ``env``.

    Episode i starts from ``reset(seed=seed + EVAL_SEED_OFFSET + i)``, so every evaluation
    of a run sees the same start states.
    """
    returns = np.zeros(episodes, dtype=np.float64)
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + EVAL_SEED_OFFSET + episode)
        done = False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(policy(obs))
            returns[episode] += float(reward)
            done = terminated or truncated
    return returns


def normalized_score(returns: np.ndarray, ref_min: float, ref_max: float) -> np.ndarray:
    """D4RL convention: 100 * (return - random) / (expert - random)."""
    return 100.0 * (np.asarray(returns) - ref_min) / (ref_max - ref_min)
