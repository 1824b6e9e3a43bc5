"""make-suite's SAC loop beside d3rlpy's own ``fit_online`` at the same settings (issue 47).

``alm dataset make-suite --behaviour sac`` trains d3rlpy's SAC with a loop of its own (so it
can checkpoint and resume). This runs d3rlpy's ``fit_online`` on the same env, with the same
settings (two [256, 256] critics, batch 256, learning rates 3e-4, updates from step 1000,
5000 uniform first steps) and seed, and prints its deterministic evaluation every 10000 env
steps, for comparison with the first rows of the suite's ``suite.json`` SAC curve. The RNG
streams differ (d3rlpy samples its buffer and its random actions its own way), so the curves
agree in level, not digit for digit. In the baselines venv:

    .venv-baselines/bin/python benchmarks/sac_fit_online_check.py [--env Hopper-v5] [--steps 20000]
"""

from __future__ import annotations

import argparse
import os
import tempfile

import d3rlpy
import gymnasium as gym
import torch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--env", default="Hopper-v5")
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    d3rlpy.seed(args.seed)
    env, eval_env = gym.make(args.env), gym.make(args.env)
    encoder = d3rlpy.models.encoders.VectorEncoderFactory([256, 256])
    sac = d3rlpy.algos.SACConfig(
        batch_size=256,
        actor_learning_rate=3e-4,
        critic_learning_rate=3e-4,
        temp_learning_rate=3e-4,
        actor_encoder_factory=encoder,
        critic_encoder_factory=encoder,
    ).create(device="cpu:0")
    buffer = d3rlpy.dataset.create_fifo_replay_buffer(limit=args.steps, env=env)
    with tempfile.TemporaryDirectory() as logs:
        sac.fit_online(
            env,
            buffer,
            eval_env=eval_env,
            n_steps=args.steps,
            n_steps_per_epoch=min(10000, args.steps),
            update_start_step=1000,
            random_steps=5000,
            show_progress=False,
            logger_adapter=d3rlpy.logging.FileAdapterFactory(root_dir=logs),
        )
        (run,) = os.listdir(logs)
        with open(os.path.join(logs, run, "evaluation.csv")) as f:
            for line in f:
                _, step, value = line.strip().split(",")
                print(f"{args.env}: fit_online {step} env steps, evaluation {float(value):.1f}")


if __name__ == "__main__":
    main()
