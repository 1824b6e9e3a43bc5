"""Collect a dataset by running a policy in a real environment made by ``make_env``."""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import numpy as np

from alm_offline.envs import make_env

from .episodes import DatasetError, EpisodeDataset, d4rl_ref_scores

Policy = Callable[[np.ndarray], np.ndarray]


def random_policy(action_dim: int, seed: int = 0) -> Policy:
    """Uniform actions in [-1, 1]^A from a seeded numpy Generator."""
    rng = np.random.default_rng(seed)

    def act(obs: np.ndarray) -> np.ndarray:
        return rng.uniform(-1.0, 1.0, action_dim).astype(np.float32)

    return act


def collect(
    env_id: str,
    policy: Policy,
    steps: int | None = None,
    episodes: int | None = None,
    seed: int = 0,
    noise: float = 0.0,
    *,
    algorithm: str = "policy",
) -> EpisodeDataset:
    """Run ``policy`` (obs (D,) -> action (A,) in [-1, 1]) in ``env_id``.

    Give exactly one of ``steps`` (that many transitions; the episode running at the end
    is truncated there) or ``episodes`` (that many whole episodes). Gaussian noise of std
    ``noise`` is added to each action, and actions are clipped to [-1, 1] before being
    stepped and recorded. The first reset is seeded with ``seed``, the noise with it too.
    Raises ``EnvError`` for an unknown env and ``DatasetError`` for bad arguments or actions.
    """
    if (steps is None) == (episodes is None):
        raise DatasetError("give exactly one of steps or episodes")
    if (steps if steps is not None else episodes) < 1:
        raise DatasetError("steps and episodes must be positive")
    if noise < 0:
        raise DatasetError(f"noise must be >= 0, got {noise}")
    env = make_env(env_id, seed=seed)
    act = _checked(policy, env.action_space.shape[0], noise, np.random.default_rng([seed, 1]))
    collected: list[dict[str, np.ndarray]] = []
    total = 0
    try:
        obs, _ = env.reset(seed=seed)
        while True:
            episode = _run_episode(env, act, obs, None if steps is None else steps - total)
            collected.append(episode)
            total += len(episode["rewards"])
            if len(collected) == episodes or total == steps:
                break
            obs, _ = env.reset()
    finally:
        env.close()
    dataset = EpisodeDataset.from_episodes(collected, env_id=env_id)
    if (scores := d4rl_ref_scores(env_id)) is not None:
        dataset.ref_min_score, dataset.ref_max_score = scores
    mean_return = float(dataset.episode_returns().mean())
    dataset.metadata = {
        "algorithm": algorithm,
        "description": (
            f"{dataset.num_steps} steps of {env_id} from policy {algorithm} "
            f"(noise std {noise}, seed {seed}); actions normalised to [-1, 1]"
        ),
        "seed": seed,
        "noise": noise,
        "mean_return": mean_return,
    }
    return dataset


def _checked(policy: Policy, action_dim: int, noise: float, rng: np.random.Generator) -> Policy:
    """``policy`` with its output checked, Gaussian noise of std ``noise`` added, clipped."""

    def act(obs: np.ndarray) -> np.ndarray:
        action = np.asarray(policy(obs), dtype=np.float32)
        if action.shape != (action_dim,) or not np.all(np.isfinite(action)):
            raise DatasetError(
                f"the policy returned an action of shape {action.shape} with values "
                f"{action}; expected {action_dim} finite values"
            )
        if noise > 0:
            action = action + rng.normal(0.0, noise, action_dim).astype(np.float32)
        return np.clip(action, -1.0, 1.0)

    return act


def _run_episode(
    env: gym.Env, act: Policy, obs: np.ndarray, budget: int | None
) -> dict[str, np.ndarray]:
    """One episode from ``obs``; truncated early when ``budget`` transitions are reached."""
    observations, actions, rewards, terminations, truncations = [obs], [], [], [], []
    while True:
        action = act(obs)
        obs, reward, terminated, truncated, _ = env.step(action)
        observations.append(obs)
        actions.append(action)
        rewards.append(reward)
        terminations.append(terminated)
        out_of_budget = len(rewards) == budget
        truncations.append(truncated or (out_of_budget and not terminated))
        if terminated or truncated or out_of_budget:
            return {
                "observations": np.asarray(observations, dtype=np.float32),
                "actions": np.asarray(actions, dtype=np.float32),
                "rewards": np.asarray(rewards, dtype=np.float32),
                "terminations": np.asarray(terminations, dtype=bool),
                "truncations": np.asarray(truncations, dtype=bool),
            }
