"""How an InvertedPendulum-v5 policy fails: chattering, saturation, drift to the rail end.

    python benchmarks/pendulum_diagnosis.py RUN_DIR|CHECKPOINT [--best] [--episodes 5]

Rolls out the deterministic policy on the evaluation's episode seeds (``seed + 10000 + i``)
and prints, per episode: its length, the fraction of steps with |a| > 0.95 (the [-1, 1]
box), the fraction of steps whose action flips sign against the previous one with both
above 0.5 in size (bang-bang chattering), the mean action, and the cart position and pole
angle at the end. Then the policy's linear feedback gains (least squares over the states
its episodes visit, in newtons per unit of x, theta, xdot, thetadot) beside the LQR gains
of the env linearised at the upright rest state: a stabilising controller pushes the same
way for a cart off centre as for a pole leaning that way (positive x gain); a negative x
gain leaves a slowly growing mode that walks the cart into the rail end. Last, the run's
world-model KL, world gradient norm and mean critic value over training (metrics.jsonl).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import gymnasium as gym
import numpy as np

from alm_offline.runtime.envs import make_env
from alm_offline.runtime.rollout import EVAL_SEED_OFFSET
from alm_offline.training.checkpoint import load_agent, resolve_checkpoint


def rollout(agent, env, seed: int, visited: list) -> dict[str, float]:
    """One deterministic episode -> its length and action statistics; appends (obs, action)
    pairs to ``visited``."""
    obs, _ = env.reset(seed=seed)
    actions, done = [], False
    while not done:
        action = agent.act(obs, 0.0, deterministic=True)
        visited.append((obs.copy(), float(action[0])))
        actions.append(float(action[0]))
        obs, _, terminated, truncated, _ = env.step(action)
        done = terminated or truncated
    a = np.asarray(actions)
    flips = (np.sign(a[1:]) != np.sign(a[:-1])) & (np.abs(a[1:]) > 0.5) & (np.abs(a[:-1]) > 0.5)
    return {
        "length": len(a),
        "saturated": float(np.mean(np.abs(a) > 0.95)),
        "chattering": float(flips.mean()) if len(a) > 1 else 0.0,
        "mean_action": float(a.mean()),
        "final_x": float(obs[0]),
        "final_angle": float(obs[1]),
    }


def linearised(env_id: str) -> tuple[np.ndarray, np.ndarray]:
    """(A (4, 4), B (4, 1)): s' = A s + B u about the upright rest state, u in newtons, by
    central differences of one env step."""
    env = gym.make(env_id).unwrapped
    env.reset(seed=0)

    def step(state: np.ndarray, force: float) -> np.ndarray:
        env.set_state(state[:2].copy(), state[2:].copy())
        return env.step(np.array([force]))[0].copy()

    rest, eps = np.zeros(4), 1e-5
    a = np.stack(
        [(step(rest + eps * e, 0.0) - step(rest - eps * e, 0.0)) / (2 * eps) for e in np.eye(4)],
        axis=1,
    )
    b = ((step(rest, eps) - step(rest, -eps)) / (2 * eps))[:, None]
    env.close()
    return a, b


def lqr_gains(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(4,) gains g of u = g . (x, theta, xdot, thetadot): discrete LQR, Q = diag(1, 10, 1, 1),
    R = 1."""
    q, r, p = np.diag([1.0, 10.0, 1.0, 1.0]), np.eye(1), np.eye(4)
    for _ in range(5000):  # Riccati iteration to the fixed point
        k = np.linalg.solve(r + b.T @ p @ b, b.T @ p @ a)
        p = q + a.T @ p @ (a - b @ k)
    return -k[0]


def growth(a: np.ndarray, b: np.ndarray, gains: np.ndarray) -> float:
    """Largest |eigenvalue| of the closed loop s' = (A + B g) s: above 1, a mode that grows."""
    return float(np.abs(np.linalg.eigvals(a + b @ gains[None, :4])).max())


def policy_gains(visited: list, force_scale: float) -> np.ndarray:
    """(5,) least-squares fit of the policy's force on (x, theta, xdot, thetadot, 1)."""
    obs = np.stack([o for o, _ in visited])
    force = force_scale * np.array([a for _, a in visited])
    design = np.c_[obs, np.ones(len(obs))]
    return np.linalg.lstsq(design, force, rcond=None)[0]


def gains_text(gains: np.ndarray) -> str:
    names = ("x", "theta", "xdot", "thetadot")
    return "  ".join(f"{n} {g:+.2f}" for n, g in zip(names, gains, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", help="run dir or checkpoint")
    parser.add_argument("--best", action="store_true", help="the run's best.pt")
    parser.add_argument("--episodes", type=int, default=5)
    args = parser.parse_args()
    path, run_dir = resolve_checkpoint(args.target, "best" if args.best else "latest")
    agent, cfg, _ = load_agent(path)
    env = make_env(cfg.env, seed=cfg.seed + 1)
    print(f"{path} ({cfg.env}, seed {cfg.seed})")
    visited: list = []
    for i in range(args.episodes):
        row = rollout(agent, env, cfg.seed + EVAL_SEED_OFFSET + i, visited)
        print("  " + "  ".join(f"{k} {v:.3g}" for k, v in row.items()))
    if cfg.env.startswith("InvertedPendulum"):
        force_scale = float(env.unwrapped.action_space.high[0])  # the env's newtons
        fit = policy_gains(visited, force_scale)
        print(f"  policy gains (N): {gains_text(fit[:4])}")
        print(f"    offset {fit[4]:+.3f} N")
        a, b = linearised(cfg.env)
        lqr = lqr_gains(a, b)
        print(f"  LQR gains (N):    {gains_text(lqr)}")
        print(
            f"  closed loop, linearised: largest |eigenvalue| {growth(a, b, fit):.4f} with the"
            f" policy's gains, {growth(a, b, lqr):.4f} with LQR's (above 1: a growing mode)"
        )
    metrics = Path(run_dir) / "metrics.jsonl"
    if metrics.is_file():
        rows = [json.loads(line) for line in metrics.read_text().splitlines()]
        step = "env_step" if "env_step" in rows[0] else "updates"
        for row in rows[:: max(1, len(rows) // 6)]:
            print(
                f"  {step} {row[step]}: model/kl {row.get('model/kl', float('nan')):.2f}  "
                f"grad_norm/world {row.get('grad_norm/world', float('nan')):.1f}  "
                f"critic/q_mean {row.get('critic/q_mean', float('nan')):.1f}"
            )


if __name__ == "__main__":
    main()
