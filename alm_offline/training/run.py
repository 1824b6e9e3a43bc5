"""The machinery every training loop shares: ``TrainingRun``, for one seed or several.

A run trains the seeds of its config (``seed``, or ``seeds=...``) as one agent whose update
is one batched computation (core/agent.py). Everything else is each seed's own
(``SeedRun``): its run dir (the run's own for one seed, ``RUN/s<SEED>`` for several), its
numpy generator, evaluation env, counters, logger, checkpoints and summary, so every seed's
run dir is an ordinary one-seed run dir. ``TrainingRun`` seeds torch, builds the agent,
keeps the shared progress (env steps, updates) and the metrics window, evaluates every seed
at once, and saves and restores every seed's checkpoint. The loops in ``online.py`` and
``offline.py`` drive it and hold only what is their own (the envs and their episodes
online, the dataset offline).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alm_offline.config import ConfigError, RunConfig, resolve_device, run_seeds
from alm_offline.core.agent import AlmAgent, seed_state
from alm_offline.core.fused import fusion_decision
from alm_offline.core.metrics import MetricsWindow, NonFiniteError
from alm_offline.core.replay import ReplayBuffer, SeedReplay
from alm_offline.core.updater import EagerUpdater
from alm_offline.runtime.rollout import evaluate_seeds
from alm_offline.training.checkpoint import (
    check_batch,
    checkpoint_path,
    commit_batch,
    pending_path,
    read_resume_checkpoint,
    restore_seeds,
    save_checkpoint,
    settle_batch,
)
from alm_offline.training.evaluation import Counters, RunEvaluation, run_summary
from alm_offline.training.loggers import RunLogger, make_run_logger
from alm_offline.training.progress import ProgressDisplay
from alm_offline.training.resources import peak_rss
from alm_offline.training.rundir import batch_identity, seed_run_dirs, write_summary
from alm_offline.training.threads import ThreadPolicy


class SeedRun:
    """One seed's own part of a run: run dir, config (``seed`` = this seed), numpy
    generator, evaluation, counters (episodes and evaluations) and logger."""

    def __init__(
        self,
        cfg: RunConfig,
        run_dir: Path,
        eval_env_id: str | None,
        step_key: str,
        refs: tuple[float | None, float | None],
    ) -> None:
        self.cfg, self.run_dir, self.seed = cfg, run_dir, cfg.seed
        self.np_rng = np.random.default_rng(cfg.seed)
        self.evaluation = RunEvaluation(cfg, eval_env_id, step_key, refs)
        self.counters = Counters()
        self.logger: RunLogger | None = None


class TrainingRun:
    """A run's shared machinery for its S seeds; the loops drive it (module docstring).

    ``eval_env_id`` is the env evaluations play in (None: an offline dataset that names no
    env, never evaluated); ``step_key`` names the x-axis of the logs (``env_step`` online,
    ``updates`` offline);
    ``refs`` are the (min, max) reference returns that add normalised scores to evaluations;
    ``planned_updates`` (the whole run's, so a resume decides as the first session did)
    settles ``agent.compile=auto``.
    """

    def __init__(
        self,
        cfg: RunConfig,
        run_dir: Path,
        dims: tuple[int, int],
        *,
        eval_env_id: str | None,
        step_key: str,
        refs: tuple[float | None, float | None] = (None, None),
        planned_updates: int,
    ) -> None:
        self.threads = ThreadPolicy(cfg.threads)
        self.cfg, self.run_dir, self.step_key = cfg, run_dir, step_key
        self.seeds = run_seeds(cfg)
        # a batch's identity (batch.json), which every seed's checkpoint records; None alone
        self.batch = batch_identity(run_dir) if cfg.seeds else None
        self.device = resolve_device(cfg.device)
        torch.manual_seed(self.seeds[0])  # the update's noise: one draw for all seeds
        self.seed_runs = [
            SeedRun(seed_cfg, seed_dir, eval_env_id, step_key, refs)
            for seed_dir, seed_cfg in seed_run_dirs(run_dir, cfg)
        ]
        fused, self.fusion_reason = fusion_decision(
            cfg.agent.compile, planned_updates, self.device, seeds=len(self.seeds)
        )
        self.agent = AlmAgent(*dims, cfg.agent, self.device, seeds=self.seeds, fused=fused)
        self.refs = self.seed_runs[0].evaluation.refs
        self.counters = Counters()  # the shared progress: env steps, updates, wall time
        self.window = MetricsWindow(self.seeds)
        self.display: ProgressDisplay | None = None
        self._session_start = time.perf_counter()
        self._wall_before = 0.0

    @property
    def np_rngs(self) -> list[np.random.Generator]:
        return [seed.np_rng for seed in self.seed_runs]

    def new_replay(self, capacity: int) -> ReplayBuffer:
        """An empty replay of the agent's dims and sequence length, on its device, that all
        seeds sample (a dataset)."""
        agent = self.agent
        return ReplayBuffer(
            capacity, agent.obs_dim, agent.action_dim, self.cfg.agent.seq_len, self.device
        )

    def new_seed_replay(self, capacity: int) -> SeedReplay:
        """One empty replay per seed, on one stacked storage (online)."""
        agent = self.agent
        return SeedReplay.create(
            agent.num_seeds,
            capacity,
            agent.obs_dim,
            agent.action_dim,
            self.cfg.agent.seq_len,
            self.device,
        )

    def restore(
        self, replay: SeedReplay | None = None, *, progress: str = "updates"
    ) -> list[dict[str, Any]]:
        """Load every seed's latest checkpoint (its config must match; ``steps`` may differ
        but not fall below the checkpoint's ``progress`` counter, env_steps or updates; a
        batch's must be this batch's, all at one step); returns the checkpoints, in seed
        order. Nothing is written when a check fails."""
        if self.cfg.seeds:  # a save stopped half way: roll it forward or back first
            settle_batch(self.run_dir, [s.run_dir for s in self.seed_runs])
        states = [read_resume_checkpoint(s.run_dir, s.cfg) for s in self.seed_runs]
        if self.cfg.seeds:
            check_batch(states, self.seeds, self.batch)
        done = states[0]["counters"].get(progress, 0)
        if self.cfg.steps < done:
            unit = progress.replace("_", " ")
            raise ConfigError(
                f"steps={self.cfg.steps} is below the run's {done} {unit}: a resume goes on "
                f"from there (give steps={done} or more)"
            )
        buffers = None if replay is None else replay.buffers
        counters = restore_seeds(states, agent=self.agent, np_rngs=self.np_rngs, replays=buffers)
        for seed, saved in zip(self.seed_runs, counters, strict=True):
            seed.counters = Counters(**saved)
        self.counters = Counters(**counters[0])
        return states

    @contextmanager
    def session(
        self, resumed: bool, done: int, label: str, quiet: bool
    ) -> Iterator[ProgressDisplay]:
        """Open every seed's logger (a resumed run drops rows past its checkpoint) and the
        progress display; name the run dir in a ``NonFiniteError``."""
        self._session_start, self._wall_before = time.perf_counter(), self.counters.wall_seconds
        enabled = None if not quiet else False
        try:
            with ExitStack() as stack:
                for seed in self.seed_runs:
                    resume_step = done if resumed else None
                    seed.logger = make_run_logger(seed.cfg, seed.run_dir, resume_step=resume_step)
                    if resumed:
                        seed.logger.truncate_after(self.step_key, done)
                    stack.enter_context(seed.logger)
                bar = stack.enter_context(ProgressDisplay(self.cfg.steps, done, label, enabled))
                self.display = bar
                yield bar
        except NonFiniteError as exc:
            raise NonFiniteError(f"{exc} (run dir {self.run_dir})") from None

    def update(self, updater: EagerUpdater, std: float) -> None:
        """One update of every seed; its metrics (S,) join the window, which is logged every
        ``log_every``. Before the update that compiles the fused update, the progress
        display says so."""
        if self.display is not None and self.agent.compiles_next_update:
            self.display.note(
                "compiling the fused update (seconds from Inductor's cache, up to a minute without)"
            )
        self.window.add(self.counters.updates, updater.step(std))
        self.counters.updates += 1

    def log(self, **where: float) -> None:
        """The window's means as one metrics row per seed, at ``where`` (steps, schedules)."""
        self.threads.adjust()
        for seed, row in zip(self.seed_runs, self.window.flush(), strict=False):
            seed.logger.metrics({**where, **row})

    def evaluate(self, **where: int) -> None:
        """Every seed's evaluation (``RunEvaluation``'s protocol, all seeds' episodes played
        side by side), logged; each seed's best.pt on its new best."""
        cfg = self.cfg
        if not self.evaluates:
            return
        started = time.perf_counter()
        wall = self._wall_before + started - self._session_start  # the run's, before this
        act = self.agent.eval_actions(cfg.eval.latent, self.seeds)
        envs = [seed.evaluation.env for seed in self.seed_runs]
        returns = evaluate_seeds(act, envs, cfg.eval.episodes, self.seeds)
        seconds = time.perf_counter() - started
        for index, seed in enumerate(self.seed_runs):
            best = checkpoint_path(seed.run_dir, "best")

            def save_best(index: int = index, best: Path = best) -> None:
                self._save(index, best)

            seed.evaluation.record(
                returns[index], seed.counters, seed.logger, save_best, **where, wall_seconds=wall
            )
            seed.evaluation.seconds += seconds

    @property
    def evaluates(self) -> bool:
        """Whether this run evaluates at all (an env, ``eval.every`` and ``eval.episodes`` > 0)."""
        return self.seed_runs[0].evaluation.enabled

    @property
    def last_eval_mean(self) -> float | None:
        """The mean over seeds of their last evaluation's mean return (None before one)."""
        means = [s.counters.last_eval.get("return_mean") for s in self.seed_runs]
        return None if None in means else float(np.mean(means))

    @property
    def eval_seconds(self) -> float:
        """This session's time in evaluations."""
        return self.seed_runs[0].evaluation.seconds

    def checkpoint(
        self,
        replay: SeedReplay | None = None,
        env_states: list[dict] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Save everything a resume needs, one checkpoint per seed (its replay and its
        training env's tape online, ``extra`` offline). A batch's are one unit: each seed's
        is written aside, then all are committed (``checkpoint.commit_batch``), so a save
        stopped anywhere resumes every seed from the same step."""
        self.window.check_finite()
        batched = bool(self.cfg.seeds)
        for index, seed in enumerate(self.seed_runs):
            self._save(
                index,
                pending_path(seed.run_dir) if batched else checkpoint_path(seed.run_dir),
                replay=None if replay is None else replay.buffers[index],
                env_rng=None if env_states is None else env_states[index],
                extra=extra,
                batch=self.batch,
            )
        if batched:
            commit_batch(self.run_dir, [seed.run_dir for seed in self.seed_runs])

    def _save(self, index: int, path: Path, **state: Any) -> None:
        self.counters.wall_seconds = self._wall_before + time.perf_counter() - self._session_start
        seed = self.seed_runs[index]
        agent = self.agent
        save_checkpoint(
            path,
            cfg=seed.cfg,
            agent_state=seed_state(agent.state_dict(), index),
            dims=(agent.obs_dim, agent.action_dim),
            counters=asdict(self._seed_counters(seed)),
            np_rng=seed.np_rng,
            **state,
        )

    def _seed_counters(self, seed: SeedRun) -> Counters:
        """A seed's counters with the shared progress filled in."""
        shared = self.counters
        return replace(
            seed.counters,
            env_steps=shared.env_steps,
            updates=shared.updates,
            wall_seconds=shared.wall_seconds,
        )

    def finish(self, **fields: Any) -> dict[str, Any]:
        """Close the eval envs and write each seed's ``summary.json`` (``fields`` + its own
        entries); with several seeds also the run's, ``RUN/summary.json``, written last.
        Returns the run's summary (for one seed, that seed's)."""
        self.counters.wall_seconds = self._wall_before + time.perf_counter() - self._session_start
        fields = {**fields, "peak_rss_bytes": peak_rss()}  # this process's, all seeds'
        summaries = []
        for seed in self.seed_runs:
            seed.evaluation.close()
            summaries.append(self._seed_summary(seed, fields))
            write_summary(seed.run_dir, summaries[-1])
        if not self.cfg.seeds:
            return summaries[0]
        summary = batch_summary(self.seeds, summaries, fields, self.run_dir)
        write_summary(self.run_dir, summary)
        return summary

    def _seed_summary(self, seed: SeedRun, fields: dict[str, Any]) -> dict[str, Any]:
        best = checkpoint_path(seed.run_dir, "best")
        counters = self._seed_counters(seed)
        return {
            **run_summary(
                counters,
                self.step_key,
                best,
                self.device,
                seed.run_dir,
                **fields,
                seed=seed.seed,
                episodes=counters.episodes,
            ),
            "seeds_in_process": len(self.seeds),
            "fused_update": self.agent.fused_update is not None,
            "fused_update_reason": self.fusion_reason,
            **self._compile_fields(),
        }

    def _compile_fields(self) -> dict[str, Any]:
        """This session's compile of the fused update (time, Inductor cache), if it ran."""
        fused = self.agent.fused_update
        report = None if fused is None else fused.report
        if report is None:
            return {}
        return {"compile_seconds": round(report.seconds, 2), "compile_cache": report.cache}


def batch_summary(
    seeds: tuple[int, ...],
    summaries: list[dict[str, Any]],
    fields: dict[str, Any],
    run_dir: Path,
) -> dict[str, Any]:
    """``RUN/summary.json`` of a batched run: the shared fields, each seed's run dir and
    results, and their mean and population std over seeds."""

    def over_seeds(key: str) -> dict[str, Any]:
        values = [s.get(key) for s in summaries]
        if any(v is None for v in values):
            return {f"{key}_seeds": values}
        return {
            f"{key}_seeds": values,
            f"{key}_over_seeds": float(np.mean(values)),
            f"{key}_std_over_seeds": float(np.std(values)),
        }

    return {
        **fields,
        "seeds": list(seeds),
        "runs": {str(seed): s["run_dir"] for seed, s in zip(seeds, summaries, strict=True)},
        **over_seeds("eval_return_mean"),
        **over_seeds("best_eval_return_mean"),
        **over_seeds("normalized_score_mean"),
        "updates": summaries[0]["updates"],
        "wall_seconds": summaries[0]["wall_seconds"],
        "device": summaries[0]["device"],
        "run_dir": str(run_dir),
    }
