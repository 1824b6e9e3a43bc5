"""Playing episodes: the one episode loop (``run_episode``) that evaluation, the analyses
and ``dataset collect`` all use, and the evaluation protocol built on it.

A policy maps one observation (D,) to one action (A,) in the units the env expects.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from alm_offline.scores import normalized_score

EVAL_SEED_OFFSET = 10_000

Frame = np.ndarray  # (H, W, 3) uint8
Policy = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Episode:
    """One episode: observations (T+1, D), actions (T, A), rewards (T,) and the flags (T,)
    of each step; ``total_reward`` is the sum of the rewards in step order (float64)."""

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminations: np.ndarray
    truncations: np.ndarray
    total_reward: float

    @property
    def length(self) -> int:
        return len(self.rewards)


def run_episode(
    policy: Policy,
    env: gym.Env,
    seed: int,
    *,
    max_steps: int | None = None,
    on_frame: Callable[[Frame], None] | None = None,
) -> Episode:
    """``policy`` from ``env.reset(seed=seed)`` until the episode ends, or for at most
    ``max_steps`` steps (the last step then counts as truncated unless it terminated).
    ``on_frame`` receives ``env.render()`` after the reset and after every step."""
    obs, _ = env.reset(seed=seed)
    if on_frame is not None:
        on_frame(env.render())
    observations, actions, rewards, terminations, truncations = [obs], [], [], [], []
    total = 0.0
    while max_steps is None or len(actions) < max_steps:
        action = policy(obs)
        obs, reward, terminated, truncated, _ = env.step(action)
        observations.append(obs)
        actions.append(action)
        rewards.append(float(reward))
        total += float(reward)
        terminations.append(bool(terminated))
        truncations.append(bool(truncated))
        if on_frame is not None:
            on_frame(env.render())
        if terminated or truncated:
            break
    if max_steps is not None and len(actions) == max_steps and not terminations[-1]:
        truncations[-1] = True
    return Episode(
        observations=np.asarray(observations, dtype=np.float32),
        actions=np.asarray(actions, dtype=np.float32).reshape(len(actions), -1),
        rewards=np.asarray(rewards, dtype=np.float64),
        terminations=np.asarray(terminations, dtype=bool),
        truncations=np.asarray(truncations, dtype=bool),
        total_reward=total,
    )


def evaluate(
    policy: Policy,
    env: gym.Env,
    episodes: int,
    seed: int,
    on_frame: Callable[[Frame], None] | None = None,
) -> np.ndarray:
    """Undiscounted returns (episodes,) of ``policy`` in ``env``.

    Episode i starts from ``reset(seed=seed + EVAL_SEED_OFFSET + i)``, so every evaluation
    of a run sees the same start states. ``on_frame`` receives ``env.render()`` after the
    reset and after every step of the first episode (the env must render ``rgb_array``).
    """
    returns = np.zeros(episodes, dtype=np.float64)
    for episode in range(episodes):
        frames = on_frame if episode == 0 else None
        played = run_episode(policy, env, seed + EVAL_SEED_OFFSET + episode, on_frame=frames)
        returns[episode] = played.total_reward
    return returns


def evaluate_seeds(
    act: Callable[[np.ndarray], np.ndarray],
    envs: Sequence[gym.Env],
    episodes: int,
    seeds: Sequence[int],
) -> np.ndarray:
    """Undiscounted returns (S, episodes) of S seeds' policies, played side by side.

    ``act`` maps observations (S, D) to actions (S, A), row s for seed s, so one call acts
    for every seed; env s plays seed s's episodes, episode i from
    ``reset(seed=seeds[s] + EVAL_SEED_OFFSET + i)`` as ``evaluate``, whose returns seed s's
    row equals. A seed whose episodes are over keeps its last observation in the batch and
    its actions are ignored.
    """
    count = len(envs)
    returns = np.zeros((count, episodes), dtype=np.float64)
    played = [0] * count
    obs = [env.reset(seed=seeds[s] + EVAL_SEED_OFFSET)[0] for s, env in enumerate(envs)]
    active = [episodes > 0] * count
    while any(active):
        actions = act(np.stack(obs))
        for s in (s for s in range(count) if active[s]):  # the envs, not the networks
            obs[s], reward, terminated, truncated, _ = envs[s].step(actions[s])
            returns[s, played[s]] += float(reward)
            if terminated or truncated:
                played[s] += 1
                active[s] = played[s] < episodes
                if active[s]:
                    obs[s], _ = envs[s].reset(seed=seeds[s] + EVAL_SEED_OFFSET + played[s])
    return returns


def eval_row(
    where: dict[str, float], returns: np.ndarray, refs: tuple[float, float] | None
) -> dict[str, Any]:
    """An eval.jsonl row: ``where`` (the step) + return statistics of ``returns`` (episodes,)
    and, with ``refs`` (min, max), normalised scores."""
    row: dict[str, Any] = {
        **where,
        "return_mean": float(returns.mean()),
        "return_std": float(returns.std()),
        "return_min": float(returns.min()),
        "return_max": float(returns.max()),
        "returns": [float(r) for r in returns],
    }
    if refs is not None:
        scores = normalized_score(returns, *refs)
        row["normalized_score_mean"] = float(scores.mean())
        row["normalized_score_std"] = float(scores.std())
    return row
