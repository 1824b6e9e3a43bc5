"""The online training loop: act, step the envs, store, update (the paper's Algorithm 1).

``TrainingRun`` (run.py) holds what this loop shares with the offline one, so this module
shows only what is its own: each seed's training env and its episodes. The S seeds step in
lockstep: one batched ``act`` for all of them, then each seed's env steps and its replay
stores (a loop over the envs, outside the update), then one batched update.

Checkpoints are taken every ``checkpoint_every`` env steps, mid-episode or not: each seed's
checkpoint holds its env's ``EpisodeTape`` (the episode's reset and the actions since),
which a resume replays, so a resumed run continues exactly as if it had never stopped.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from alm_offline.config import ONLINE, RunConfig, run_seeds
from alm_offline.core.agent import exploration_std
from alm_offline.core.updater import make_updater
from alm_offline.runtime.envs import EpisodeTape, SeedEnvs, env_spec, make_env
from alm_offline.training.evaluation import evaluation_due
from alm_offline.training.run import TrainingRun


def train_online(
    cfg: RunConfig, run_dir: Path, *, resume: bool = False, quiet: bool = False
) -> dict[str, Any]:
    """Train ALM online for ``cfg.steps`` env steps (every seed of ``cfg``); returns the
    summary written to the run dir."""
    seeds = run_seeds(cfg)
    envs = [make_env(cfg.env, seed=seed) for seed in seeds]
    spec = env_spec(envs[0])
    run = TrainingRun(
        cfg,
        run_dir,
        (spec.obs_dim, spec.action_dim),
        eval_env_id=cfg.env,
        step_key="env_step",
        planned_updates=max(cfg.steps - cfg.agent.warmup_steps, 0),
    )
    replay = run.new_seed_replay(cfg.agent.buffer_size)
    agent, buffers = run.agent, replay.buffers
    if resume:
        saved = [state["rng"]["env"] for state in run.restore(replay, progress="env_steps")]
        begun = [EpisodeTape.replay(env, tape) for env, tape in zip(envs, saved, strict=True)]
        stepper = SeedEnvs(envs, buffers, begun)
    else:
        stepper = SeedEnvs.start(envs, buffers, list(seeds))
    counters = run.counters  # restored ones on resume
    updater = make_updater(agent, replay)
    warmup, every = cfg.agent.warmup_steps, cfg.checkpoint_every
    steps_at_start, started = counters.env_steps, time.perf_counter()

    def log() -> None:
        run.log(
            env_step=counters.env_steps,
            updates=counters.updates,
            exploration_std=exploration_std(cfg.agent, counters.updates),
            env_steps_per_sec=(counters.env_steps - steps_at_start)
            / max(time.perf_counter() - started, 1e-9),
        )

    with run.session(resume, counters.env_steps, cfg.env, quiet) as bar:
        while counters.env_steps < cfg.steps:
            if counters.env_steps < warmup:
                actions = np.stack(
                    [rng.uniform(-1.0, 1.0, spec.action_dim) for rng in run.np_rngs]
                ).astype(np.float32)
            else:
                std = exploration_std(cfg.agent, counters.updates)
                actions = agent.act(stepper.observations(), std)
            counters.env_steps += 1
            ended = stepper.step(actions)

            if counters.env_steps > warmup and replay.can_sample():
                if counters.updates == 0:  # obs_norm: each seed's warm-up data's statistics
                    agent.set_observation_stats(replay.observations())
                run.update(updater, exploration_std(cfg.agent, counters.updates))
                if counters.updates % cfg.log_every == 0:
                    log()
            if evaluation_due(cfg, counters.env_steps):
                run.evaluate(env_step=counters.env_steps, updates=counters.updates)
            for index in ended:
                run.seed_runs[index].counters.episodes += 1
                stepper.restart(index)
            if counters.env_steps % every == 0 and counters.env_steps < cfg.steps:
                run.checkpoint(replay=replay, env_states=stepper.tape_states())
            if counters.env_steps % 100 == 0 or counters.env_steps == cfg.steps:
                last = run.last_eval_mean
                info = "" if last is None else f"  eval {last:.1f}"
                bar.advance(counters.env_steps, f"updates {counters.updates}{info}")
        log()
    run.checkpoint(replay=replay, env_states=stepper.tape_states())
    for env in envs:
        env.close()
    return run.finish(env=cfg.env, mode=ONLINE.name, env_steps=counters.env_steps)
