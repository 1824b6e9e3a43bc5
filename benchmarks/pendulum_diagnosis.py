"""How an InvertedPendulum-v5 policy fails: chattering, saturation, drift to the rail end.

    python benchmarks/pendulum_diagnosis.py RUN_DIR|CHECKPOINT [--best] [--episodes 5]

Rolls out the deterministic policy on the evaluation's episode seeds (``seed + 10000 + i``)
and prints, per episode: its length, the fraction of steps with |a| > 0.95 (the [-1, 1]
box), the fraction of steps whose action flips sign against the previous one with both
above 0.5 in size (bang-bang chattering), the mean action, and the cart position and pole
angle at the end. Then the run's world-model KL and world gradient norm over training from
its metrics.jsonl, when there is one.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from alm_offline.checkpoint import load_agent, resolve_checkpoint
from alm_offline.envs import make_env
from alm_offline.evaluate import EVAL_SEED_OFFSET


def rollout(agent, env, seed: int) -> dict[str, float]:
    """One deterministic episode -> its length and action statistics."""
    obs, _ = env.reset(seed=seed)
    actions, done = [], False
    while not done:
        action = agent.act(obs, 0.0, deterministic=True)
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
    for i in range(args.episodes):
        row = rollout(agent, env, cfg.seed + EVAL_SEED_OFFSET + i)
        print("  " + "  ".join(f"{k} {v:.3g}" for k, v in row.items()))
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
