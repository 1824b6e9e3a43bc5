"""The online training loop: act, step the env, store, update (the paper's Algorithm 1).

``TrainingRun`` (run.py) holds what this loop shares with the offline one, so this module
shows only what is its own: the env and its episodes. Checkpoints are taken at episode ends
(after ``checkpoint_every`` env steps), where the training env's only state is its reset
RNG, so a resumed run continues exactly as if it had never stopped; the final checkpoint of
a run may fall mid-episode, and a run extended from it starts a new episode (the cut one
counts as truncated).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from alm_offline.config import RunConfig
from alm_offline.core.agent import exploration_std
from alm_offline.core.updater import make_updater
from alm_offline.training.envs import env_spec, make_env, rng_state, set_rng_state
from alm_offline.training.run import TrainingRun


def train_online(
    cfg: RunConfig, run_dir: Path, *, resume: bool = False, quiet: bool = False
) -> dict[str, Any]:
    """Train ALM online for ``cfg.steps`` env steps; returns the summary written to the run dir."""
    env = make_env(cfg.env, seed=cfg.seed)
    spec = env_spec(env)
    run = TrainingRun(
        cfg,
        run_dir,
        (spec.obs_dim, spec.action_dim),
        eval_env_id=cfg.env,
        step_key="env_step",
        planned_updates=max(cfg.steps - cfg.agent.warmup_steps, 0),
    )
    replay = run.new_replay(cfg.agent.buffer_size)
    np_rng, agent = run.np_rng, run.agent
    if resume:
        state = run.restore(replay)
        if state["rng"]["env"] is not None:
            set_rng_state(env, state["rng"]["env"])
            obs, _ = env.reset()
        else:  # the run's final checkpoint, taken mid-episode: start a fresh episode
            obs, _ = env.reset(seed=int(np_rng.integers(2**31)))
    else:
        obs, _ = env.reset(seed=cfg.seed)
    replay.start_episode(obs)
    counters = run.counters  # restored ones on resume
    updater = make_updater(agent, replay)
    warmup, every = cfg.agent.warmup_steps, cfg.checkpoint_every
    next_checkpoint = (counters.env_steps // every + 1) * every
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
                action = np_rng.uniform(-1.0, 1.0, spec.action_dim).astype(np.float32)
            else:
                action = agent.act(obs, exploration_std(cfg.agent, counters.updates))
            next_obs, reward, terminated, truncated, _ = env.step(action)
            counters.env_steps += 1
            replay.add(action, float(reward), bool(terminated), next_obs)
            obs = next_obs

            if counters.env_steps > warmup and replay.can_sample():
                if counters.updates == 0:  # obs_norm: the warm-up data's statistics
                    agent.set_observation_stats(replay.observations())
                run.update(updater, exploration_std(cfg.agent, counters.updates))
                if counters.updates % cfg.log_every == 0:
                    log()
            if counters.env_steps % cfg.eval.every == 0 or counters.env_steps == cfg.steps:
                run.evaluate(env_step=counters.env_steps, updates=counters.updates)
            if terminated or truncated:
                counters.episodes += 1
                if next_checkpoint <= counters.env_steps < cfg.steps:
                    run.checkpoint(replay=replay, env_rng=rng_state(env))
                    next_checkpoint = (counters.env_steps // every + 1) * every
                if counters.env_steps < cfg.steps:
                    obs, _ = env.reset()
                    replay.start_episode(obs)
            if counters.env_steps % 100 == 0 or counters.env_steps == cfg.steps:
                last = counters.last_eval.get("return_mean")
                info = "" if last is None else f"  eval {last:.1f}"
                bar.advance(counters.env_steps, f"updates {counters.updates}{info}")
        log()
    run.checkpoint(replay=replay, env_rng=None)
    env.close()
    return run.finish(
        env=cfg.env, mode="online", env_steps=counters.env_steps, episodes=counters.episodes
    )
