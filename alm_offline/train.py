"""Training loops: online (act, step, store, update) and offline (update on a dataset).

Data flows one way: config -> env + replay -> ``agent.update`` -> metrics -> JSONL files and
checkpoints. ``TrainingRun`` (training_run.py) holds what both loops share, so each loop
shows only what is its own. Online checkpoints are taken at episode ends (after
``checkpoint_every`` env steps), where the training env's only state is its reset RNG, so a
resumed run continues exactly as if it had never stopped; the final checkpoint of a run may
fall mid-episode, and a run extended from it starts a new episode (the cut one counts as
truncated).
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .agent import exploration_std
from .checkpoint import CheckpointError
from .config import RunConfig
from .datasets.episodes import EpisodeDataset
from .envs import env_spec, make_env, rng_state, set_rng_state
from .errors import AlmWarning
from .training_run import TrainingRun
from .updater import make_updater


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


def train_offline(
    cfg: RunConfig,
    run_dir: Path,
    dataset: EpisodeDataset,
    *,
    resume: bool = False,
    quiet: bool = False,
) -> dict[str, Any]:
    """Train ALM on a fixed dataset for ``cfg.steps`` updates (App. A.7: bound + BC term)."""
    refs = (dataset.ref_min_score, dataset.ref_max_score)
    run = TrainingRun(
        cfg,
        run_dir,
        (dataset.obs_dim, dataset.action_dim),
        eval_env_id=dataset.env_id,
        step_key="updates",
        refs=refs,
        planned_updates=cfg.steps,
    )
    replay = run.new_replay(len(dataset.observations))
    replay.load_episodes(*dataset.replay_arrays())
    if run.refs is None and not quiet:
        warnings.warn(
            "no reference scores for this dataset; reporting raw returns "
            "(give --ref-min/--ref-max for normalised scores)",
            AlmWarning,
            stacklevel=2,
        )
    fingerprint = dataset.fingerprint()
    if resume and run.restore()["extra"].get("dataset_fingerprint") != fingerprint:
        raise CheckpointError(f"the dataset of '{run_dir}' changed since the checkpoint")
    counters = run.counters
    if counters.updates == 0:  # obs_norm: the dataset's statistics (a resume restores them)
        run.agent.set_observation_stats(dataset.observations)
    updater = make_updater(run.agent, replay)
    updates_at_start, started = counters.updates, time.perf_counter()

    with run.session(resume, counters.updates, f"offline {dataset.env_id}", quiet) as bar:
        while counters.updates < cfg.steps:
            std = exploration_std(cfg.agent, counters.updates)
            run.update(updater, std)
            if counters.updates % cfg.log_every == 0:
                run.log(updates=counters.updates, exploration_std=std)
            if counters.updates % cfg.eval.every == 0 or counters.updates == cfg.steps:
                run.evaluate(updates=counters.updates)
            if counters.updates % cfg.checkpoint_every == 0 and counters.updates < cfg.steps:
                run.checkpoint(extra={"dataset_fingerprint": fingerprint})
            if counters.updates % 50 == 0 or counters.updates == cfg.steps:
                last = counters.last_eval.get("return_mean")
                bar.advance(counters.updates, "" if last is None else f"eval {last:.1f}")
        run.log(updates=counters.updates)
    training_seconds = time.perf_counter() - started - run.eval_seconds
    run.checkpoint(extra={"dataset_fingerprint": fingerprint})
    last = counters.last_eval
    return run.finish(
        env=dataset.env_id,
        mode="offline",
        dataset=cfg.dataset,
        dataset_return_mean=float(dataset.episode_returns().mean()),
        env_steps=0,
        normalized_score_mean=last.get("normalized_score_mean"),
        normalized_score_std=last.get("normalized_score_std"),
        ref_min_score=refs[0],
        ref_max_score=refs[1],
        updates_per_sec=(counters.updates - updates_at_start) / max(training_seconds, 1e-9),
    )
