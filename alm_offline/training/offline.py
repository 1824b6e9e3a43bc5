"""The offline training loop: ALM's updates on a fixed dataset (App. A.7: bound + BC term).

``TrainingRun`` (run.py) holds what this loop shares with the online one; this module
holds only what is its own: the dataset, loaded into the replay once, and its fingerprint,
which a resume checks.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

from alm_offline.config import RunConfig
from alm_offline.core.agent import exploration_std
from alm_offline.core.updater import make_updater
from alm_offline.datasets.episodes import EpisodeDataset
from alm_offline.errors import AlmWarning
from alm_offline.training.checkpoint import CheckpointError
from alm_offline.training.evaluation import evaluation_due, offline_fields
from alm_offline.training.run import TrainingRun


def train_offline(
    cfg: RunConfig,
    run_dir: Path,
    dataset: EpisodeDataset,
    *,
    resume: bool = False,
    quiet: bool = False,
) -> dict[str, Any]:
    """Train ALM on a fixed dataset for ``cfg.steps`` updates (App. A.7: bound + BC term),
    every seed of ``cfg`` on the same data, each drawing its own batches; evaluated in the
    dataset's env, never when it names none."""
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
    if run.evaluates and run.refs is None and not quiet:
        warnings.warn(
            "no reference scores for this dataset; reporting raw returns "
            "(give --ref-min/--ref-max for normalised scores)",
            AlmWarning,
            stacklevel=2,
        )
    fingerprint = dataset.fingerprint()
    if resume and any(
        state["extra"].get("dataset_fingerprint") != fingerprint for state in run.restore()
    ):
        raise CheckpointError(f"the dataset of '{run_dir}' changed since the checkpoint")
    counters = run.counters
    if counters.updates == 0:  # obs_norm: the dataset's statistics (a resume restores them)
        run.agent.set_observation_stats(dataset.observations)
    updater = make_updater(run.agent, replay)
    updates_at_start, started = counters.updates, time.perf_counter()

    label = f"offline {dataset.env_id or 'no env'}"
    with run.session(resume, counters.updates, label, quiet) as bar:
        while counters.updates < cfg.steps:
            std = exploration_std(cfg.agent, counters.updates)
            run.update(updater, std)
            if counters.updates % cfg.log_every == 0:
                run.log(updates=counters.updates, exploration_std=std)
            if evaluation_due(cfg, counters.updates):
                run.evaluate(updates=counters.updates)
            if counters.updates % cfg.checkpoint_every == 0 and counters.updates < cfg.steps:
                run.checkpoint(extra={"dataset_fingerprint": fingerprint})
            if counters.updates % 50 == 0 or counters.updates == cfg.steps:
                last = run.last_eval_mean
                bar.advance(counters.updates, "" if last is None else f"eval {last:.1f}")
        run.log(updates=counters.updates)
    training_seconds = time.perf_counter() - started - run.eval_seconds
    run.checkpoint(extra={"dataset_fingerprint": fingerprint})
    return run.finish(
        **offline_fields(dataset, cfg.dataset, refs),
        updates_per_sec=(counters.updates - updates_at_start) / max(training_seconds, 1e-9),
    )
