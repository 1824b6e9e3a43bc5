"""What every method's run shares around its learner: the evaluation protocol, the best
evaluation, and the entries of ``summary.json`` that come from them.

ALM's ``TrainingRun`` and the d3rlpy baselines both evaluate through ``RunEvaluation``, so a
row of eval.jsonl, the best checkpoint and a summary mean the same for every method.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from alm_offline.config import OFFLINE, RunConfig
from alm_offline.datasets.episodes import EpisodeDataset
from alm_offline.runtime.envs import make_env
from alm_offline.runtime.provenance import code_provenance
from alm_offline.runtime.rollout import Policy, eval_row, evaluate
from alm_offline.training.loggers import RunLogger


@dataclass
class Counters:
    """What a resumed run must continue from."""

    env_steps: int = 0
    updates: int = 0
    episodes: int = 0
    wall_seconds: float = 0.0
    last_eval: dict[str, Any] = field(default_factory=dict)
    best_eval: dict[str, Any] = field(default_factory=dict)  # the row best.pt was saved at
    evaluations: list[list[float]] = field(default_factory=list)  # [step, return mean] rows


def evaluation_due(cfg: RunConfig, step: int) -> bool:
    """Whether the loops evaluate at ``step`` (env steps online, updates offline): every
    ``eval.every`` steps and at the last; never with ``eval.every=0``."""
    every = cfg.eval.every
    return every > 0 and (step % every == 0 or step == cfg.steps)


class RunEvaluation:
    """Deterministic returns over ``eval.episodes`` fixed-seed episodes (episode i from
    ``seed + 10000 + i``) in the run's own evaluation env (seeded ``seed + 1``), with
    ``refs`` (min, max) adding normalised scores. ``eval.episodes=0``, ``eval.every=0`` or
    no env (``env_id`` None or empty: an offline dataset that names none) evaluate nothing,
    and then no env is made."""

    def __init__(
        self,
        cfg: RunConfig,
        env_id: str | None,
        step_key: str,
        refs: tuple[float | None, float | None] = (None, None),
    ) -> None:
        self.cfg, self.step_key = cfg, step_key
        self.refs = refs if None not in refs else None
        self.enabled = bool(env_id) and cfg.eval.every > 0 and cfg.eval.episodes > 0
        self.env = make_env(env_id, seed=cfg.seed + 1) if self.enabled else None
        self.seconds = 0.0  # this session's time in evaluations

    def __call__(
        self,
        policy: Policy,
        counters: Counters,
        logger: RunLogger,
        save_best: Callable[[], None],
        **where: float,
    ) -> None:
        """Evaluate ``policy`` at ``where`` (the step keys, and ``wall_seconds``: the run's
        time before this evaluation, where the loop knows it): one eval.jsonl row, the counters'
        last/best rows and curve, and ``save_best()`` when the mean return is a new best."""
        if not self.enabled:
            return
        started = time.perf_counter()
        returns = evaluate(policy, self.env, self.cfg.eval.episodes, self.cfg.seed)
        self.record(returns, counters, logger, save_best, **where)
        self.seconds += time.perf_counter() - started

    def record(
        self,
        returns: np.ndarray,
        counters: Counters,
        logger: RunLogger,
        save_best: Callable[[], None],
        **where: float,
    ) -> None:
        """The rows of an evaluation whose returns (episodes,) were played elsewhere (a
        batched run plays every seed's at once, ``rollout.evaluate_seeds``)."""
        row = eval_row(where, returns, self.refs)
        counters.last_eval = row
        counters.evaluations.append([where[self.step_key], row["return_mean"]])
        logger.evaluation(row)
        if row["return_mean"] > counters.best_eval.get("return_mean", -math.inf):
            counters.best_eval = row
            save_best()

    def close(self) -> None:
        if self.env is not None:
            self.env.close()


def run_summary(
    counters: Counters,
    step_key: str,
    best_checkpoint: Path | None,
    device: Any,
    run_dir: Path,
    **fields: Any,
) -> dict[str, Any]:
    """A run's ``summary.json``, every method's: ``fields`` (what only this method or mode
    knows, e.g. ``offline_fields``), then the entries all write (``best_checkpoint`` when
    one was saved)."""
    last, best = counters.last_eval, counters.best_eval
    return {
        **fields,
        "updates": counters.updates,
        "eval_return_mean": last.get("return_mean"),
        "eval_return_std": last.get("return_std"),
        "best_eval_return_mean": best.get("return_mean"),
        "best_eval_at": best.get(step_key),
        "best_checkpoint": str(best_checkpoint) if best and best_checkpoint else None,
        "evaluations": counters.evaluations,
        "step_key": step_key,
        "wall_seconds": counters.wall_seconds,
        "normalized_score_mean": last.get("normalized_score_mean"),
        "normalized_score_std": last.get("normalized_score_std"),
        "device": str(device),
        "run_dir": str(run_dir),
        "code": code_provenance(),  # the checkout and commit that trained it
    }


def offline_fields(
    dataset: EpisodeDataset, spec: str, refs: tuple[float | None, float | None]
) -> dict[str, Any]:
    """The summary entries of a run on a dataset (``spec`` as the config names it), every
    offline method's."""
    return {
        "env": dataset.env_id,
        "mode": OFFLINE.name,
        "dataset": spec,
        "dataset_return_mean": float(dataset.episode_returns().mean()),
        "env_steps": 0,
        "ref_min_score": refs[0],
        "ref_max_score": refs[1],
    }
