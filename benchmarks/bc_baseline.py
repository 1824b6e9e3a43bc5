"""Behaviour-cloning baseline: an MLP policy regressed on a dataset's actions, evaluated.

The comparison point for offline ALM on the same data (docs/offline.md):

    python benchmarks/bc_baseline.py DATASET [--env ENV] [--updates 3000] [--episodes 5]

The policy is a 2x256 ELU MLP with a tanh output trained by Adam on the mean squared error
to the dataset's actions (the log-likelihood of a fixed-std Gaussian policy), the same
quantity as ALM's BC term but on raw observations. Prints the deterministic evaluation
return, the dataset's average return and, when reference scores are known, normalised
scores; ``--json PATH`` also writes them.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from torch import nn

from alm_offline.datasets import load_dataset
from alm_offline.runtime.envs import make_env
from alm_offline.runtime.rollout import evaluate


def train_bc(
    observations: np.ndarray, actions: np.ndarray, updates: int, batch_size: int, seed: int
) -> nn.Module:
    """observations (N, D), actions (N, A) in [-1, 1] -> policy (B, D) -> (B, A)."""
    torch.manual_seed(seed)
    obs = torch.as_tensor(observations)
    act = torch.as_tensor(actions)
    policy = nn.Sequential(
        nn.Linear(obs.shape[1], 256),
        nn.ELU(),
        nn.Linear(256, 256),
        nn.ELU(),
        nn.Linear(256, act.shape[1]),
        nn.Tanh(),
    )
    optimizer = torch.optim.Adam(policy.parameters(), lr=3e-4)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(updates):
        idx = torch.randint(len(obs), (batch_size,), generator=generator)
        loss = (policy(obs[idx]) - act[idx]).pow(2).sum(-1).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return policy.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", help="D4RL-layout .hdf5, Minari folder or Minari id")
    parser.add_argument("--env", default=None, help="evaluation env id (default: the dataset's)")
    parser.add_argument("--updates", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--episodes", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", default=None, help="also write the result to this file")
    args = parser.parse_args()

    data = load_dataset(args.dataset, env_id=args.env)
    # the observation each action was taken in: every observation but each episode's last
    taken_in = np.delete(data.observations, data.final_observation_index(), axis=0)
    start = time.perf_counter()
    policy = train_bc(taken_in, data.agent_actions(), args.updates, args.batch_size, args.seed)
    env = make_env(data.env_id, seed=args.seed + 1)

    @torch.no_grad()
    def act(obs: np.ndarray) -> np.ndarray:
        return policy(torch.as_tensor(obs).unsqueeze(0)).squeeze(0).numpy()

    returns = evaluate(act, env, args.episodes, args.seed)
    result = {
        "dataset": args.dataset,
        "env": data.env_id,
        "updates": args.updates,
        "bc_return_mean": float(returns.mean()),
        "bc_return_std": float(returns.std()),
        "dataset_return_mean": float(data.episode_returns().mean()),
        "wall_seconds": time.perf_counter() - start,
    }
    if data.ref_min_score is not None and data.ref_max_score is not None:
        result["bc_normalized_score_mean"] = float(data.normalized_score(returns).mean())
        result["dataset_normalized_score_mean"] = float(
            data.normalized_score(data.episode_returns()).mean()
        )
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w") as file:
            json.dump(result, file, indent=2)


if __name__ == "__main__":
    main()
