"""A hand-written expert for InvertedPendulum-v5 and a D4RL-layout dataset of its noisy play.

    python benchmarks/pendulum_expert.py OUT.hdf5 [--steps 15000] [--noise 0.3] [--seed 0]

The controller is linear state feedback, clipped to the env's action box [-3, 3]:
``a = 1.0 x + 10.0 theta + 1.0 x_dot + 1.0 theta_dot`` on the observation
[cart position, pole angle, cart velocity, pole angular velocity]. A positive force pushes
the cart to +x and tips the pole towards negative angles, so every gain is positive (the
cart runs under a falling pole; the position and velocity gains bring it back to the
middle). With Gaussian noise of std 0.3 (env units) on every action it balances the pole
for the whole episode (return 1000, the task's maximum) on every start state tried.

The file written has the D4RL arrays at the root (observations, actions IN ENV UNITS,
rewards, terminals, timeouts, next_observations) and a group ``metadata`` with the
attributes ``env_id="InvertedPendulum-v5"`` and ``action_units="env"``. The env is a raw
``gymnasium.make("InvertedPendulum-v5")`` (not ``alm_offline.runtime.envs.make_env``, which
rescales actions to [-1, 1]).
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np

ENV_ID = "InvertedPendulum-v5"
ACTION_LIMIT = 3.0  # the env's box is [-3, 3]
GAINS = np.array([1.0, 10.0, 1.0, 1.0])  # on [x, theta, x_dot, theta_dot]


def expert_action(obs: np.ndarray) -> np.ndarray:
    """obs (4,) -> action (1,) float32 in env units, clipped to [-3, 3]."""
    force = float(GAINS @ np.asarray(obs, dtype=np.float64))
    return np.array([np.clip(force, -ACTION_LIMIT, ACTION_LIMIT)], dtype=np.float32)


def collect_expert(steps: int, noise: float = 0.3, seed: int = 0) -> dict[str, np.ndarray]:
    """``steps`` transitions of the expert with N(0, noise^2) action noise (env units).

    Episode i starts from ``reset(seed=seed + i)``; the noise comes from
    ``np.random.default_rng(seed)``. Returns D4RL arrays: observations, next_observations
    (N, 4) float32, actions (N, 1) float32 in env units, rewards (N,) float32, terminals,
    timeouts (N,) bool. An episode cut by the env's time limit, or by ``steps`` running out,
    ends with a timeout (not a terminal).
    """
    env = gym.make(ENV_ID)
    rng = np.random.default_rng(seed)
    rows: dict[str, list] = {
        k: [] for k in ("observations", "actions", "rewards", "terminals", "timeouts")
    }
    next_obs: list[np.ndarray] = []
    episode = 0
    obs, _ = env.reset(seed=seed + episode)
    for step in range(steps):
        action = expert_action(obs) + noise * rng.standard_normal(1)
        action = np.clip(action, -ACTION_LIMIT, ACTION_LIMIT).astype(np.float32)
        new_obs, reward, terminated, truncated, _ = env.step(action)
        truncated = truncated or (step == steps - 1 and not terminated)
        rows["observations"].append(obs)
        rows["actions"].append(action)
        rows["rewards"].append(reward)
        rows["terminals"].append(terminated)
        rows["timeouts"].append(truncated)
        next_obs.append(new_obs)
        obs = new_obs
        if terminated or truncated:
            episode += 1
            obs, _ = env.reset(seed=seed + episode)
    env.close()
    return {
        "observations": np.asarray(rows["observations"], dtype=np.float32),
        "actions": np.asarray(rows["actions"], dtype=np.float32).reshape(steps, 1),
        "rewards": np.asarray(rows["rewards"], dtype=np.float32),
        "terminals": np.asarray(rows["terminals"], dtype=bool),
        "timeouts": np.asarray(rows["timeouts"], dtype=bool),
        "next_observations": np.asarray(next_obs, dtype=np.float32),
    }


def episode_returns(data: dict[str, np.ndarray]) -> np.ndarray:
    """(E,) undiscounted return of each episode of ``collect_expert``'s arrays."""
    ends = np.flatnonzero(data["terminals"] | data["timeouts"])
    starts = np.concatenate([[0], ends[:-1] + 1])
    return np.add.reduceat(data["rewards"].astype(np.float64), starts)


def write_hdf5(path: str, data: dict[str, np.ndarray]) -> None:
    """D4RL layout: the arrays at the root, ``metadata`` attrs env_id and action_units."""
    import h5py

    with h5py.File(path, "w") as f:
        for key, array in data.items():
            f.create_dataset(key, data=array)
        meta = f.create_group("metadata")
        meta.attrs["env_id"] = ENV_ID
        meta.attrs["action_units"] = "env"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="the .hdf5 file to write")
    parser.add_argument("--steps", type=int, default=15_000)
    parser.add_argument("--noise", type=float, default=0.3, help="action noise std, env units")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    data = collect_expert(args.steps, args.noise, args.seed)
    write_hdf5(args.out, data)
    returns = episode_returns(data)
    print(
        f"wrote {args.out}: {args.steps} transitions, {len(returns)} episodes, "
        f"mean return {returns.mean():.1f} (min {returns.min():.1f})"
    )


if __name__ == "__main__":
    main()
