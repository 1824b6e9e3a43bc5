"""Collect a dataset by running a policy in a real environment made by ``make_env``."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import closing

import gymnasium as gym
import numpy as np

from alm_offline.runtime.envs import EnvSpec, make_env
from alm_offline.runtime.rollout import Policy, run_episode
from alm_offline.scores import reference_scores

from .action_box import ActionBox
from .episodes import DatasetError, EpisodeDataset


def random_policy(action_dim: int, seed: int = 0) -> Policy:
    """Uniform actions in [-1, 1]^A from a seeded numpy Generator."""
    rng = np.random.default_rng(seed)

    def act(obs: np.ndarray) -> np.ndarray:
        return rng.uniform(-1.0, 1.0, action_dim).astype(np.float32)

    return act


def check_collect_args(seed: int, noise: float) -> None:
    """``DatasetError`` for a seed or a noise std that cannot work."""
    if not 0 <= seed < 2**32:
        raise DatasetError(f"the seed must be in [0, 2^32), got {seed}")
    if not (np.isfinite(noise) and noise >= 0):
        raise DatasetError(f"the noise std must be a finite number >= 0, got {noise}")


PolicyFactory = Callable[[EnvSpec], tuple[Policy, str]]  # env -> (policy, its name)


def policy_for(spec: str | PolicyFactory, env: EnvSpec, seed: int = 0) -> tuple[Policy, str]:
    """The policy ``spec`` names for ``env``, and its name for the metadata: ``random``
    (uniform actions, seeded), or what a factory (``env -> (policy, name)``) makes: the
    data layer runs policies, it does not load agents (``training.checkpoint_policy``
    makes an ALM checkpoint's, which ``alm dataset collect --policy CKPT`` passes)."""
    if callable(spec):
        return spec(env)
    if spec == "random":
        return random_policy(env.action_dim, seed), "random"
    raise DatasetError(f"policy must be 'random' or a policy factory, got {spec!r}")


def collect(
    env_id: str,
    policy: Policy,
    steps: int | None = None,
    episodes: int | None = None,
    seed: int = 0,
    noise: float = 0.0,
    *,
    algorithm: str = "policy",
    env: gym.Env | None = None,
) -> EpisodeDataset:
    """Run ``policy`` (obs (D,) -> action (A,) in the agent's [-1, 1] box) in ``env_id``.

    Give exactly one of ``steps`` (that many transitions; the episode running at the end
    is truncated there) or ``episodes`` (that many whole episodes). Gaussian noise of std
    ``noise`` is added to each action and the action is clipped to [-1, 1], then mapped to
    the env's own box; that env-unit action is what is stepped and recorded. Each episode's
    reset seed is drawn from ``seed`` and recorded (``episode_seeds``), so that replaying the
    recorded actions from those seeds reproduces the episodes; the noise is seeded from
    ``seed`` too. ``env``: ``env_id`` already made by ``make_env(env_id, seed=seed,
    rescale_actions=False)``, collected in and left open for its maker; else it is made and
    closed here. Raises ``EnvError`` for an unknown env and ``DatasetError`` for bad
    arguments or actions.
    """
    if (steps is None) == (episodes is None):
        raise DatasetError("give exactly one of steps or episodes")
    if (steps if steps is not None else episodes) < 1:
        raise DatasetError("steps and episodes must be positive")
    check_collect_args(seed, noise)
    if env is None:
        with closing(make_env(env_id, seed=seed, rescale_actions=False)) as made:
            return collect(
                env_id, policy, steps, episodes, seed, noise, algorithm=algorithm, env=made
            )
    box = ActionBox.from_space(env.action_space, env_id)
    act = _checked(policy, box, noise, np.random.default_rng([seed, 1]))
    seed_source = np.random.default_rng([seed, 2])
    collected: list[dict[str, np.ndarray]] = []
    seeds: list[int] = []
    total = 0
    while len(collected) != episodes and total != steps:
        seeds.append(int(seed_source.integers(2**31)))
        budget = None if steps is None else steps - total
        episode = run_episode(act, env, seeds[-1], max_steps=budget)
        collected.append(
            {
                "observations": episode.observations,
                "actions": episode.actions,
                "rewards": episode.rewards.astype(np.float32),
                "terminations": episode.terminations,
                "truncations": episode.truncations,
            }
        )
        total += episode.length
    dataset = EpisodeDataset.from_episodes(
        collected, env_id=env_id, action_box=box, episode_seeds=np.array(seeds)
    )
    if (scores := reference_scores(env_id)) is not None:
        dataset.ref_min_score, dataset.ref_max_score = scores
    mean_return = float(dataset.episode_returns().mean())
    dataset.metadata = {
        "algorithm": algorithm,
        "description": (
            f"{dataset.num_steps} steps of {env_id} from policy {algorithm} "
            f"(noise std {noise}, seed {seed}); actions in the env's own units"
        ),
        "seed": seed,
        "noise": noise,
        "mean_return": mean_return,
    }
    return dataset


def _checked(policy: Policy, box: ActionBox, noise: float, rng: np.random.Generator) -> Policy:
    """``policy`` with its output checked, Gaussian noise of std ``noise`` added, clipped to
    [-1, 1] and mapped to ``box`` (the env's units)."""
    action_dim = box.dim

    def act(obs: np.ndarray) -> np.ndarray:
        action = np.asarray(policy(obs), dtype=np.float32)
        if action.shape != (action_dim,) or not np.all(np.isfinite(action)):
            raise DatasetError(
                f"the policy returned an action of shape {action.shape} with values "
                f"{action}; expected {action_dim} finite values"
            )
        if noise > 0:
            action = action + rng.normal(0.0, noise, action_dim).astype(np.float32)
        return box.denormalize(np.clip(action, -1.0, 1.0)[None])[0]

    return act
