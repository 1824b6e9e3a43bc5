"""The machinery every training loop shares: ``TrainingRun``.

It seeds torch and the trainer's numpy generator, builds the agent and the evaluation env,
keeps the counters a resume continues from, and owns the run's checkpoints, evaluation
rows (through ``evaluation.RunEvaluation``, which the baselines share), metrics window,
logger session and summary. The loops in ``online.py`` and ``offline.py`` drive it and hold
only what is their own (the env and its episodes online, the dataset offline).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alm_offline.config import RunConfig, resolve_device
from alm_offline.core.agent import AlmAgent
from alm_offline.core.fused import fusion_decision
from alm_offline.core.metrics import MetricsWindow, NonFiniteError
from alm_offline.core.replay import ReplayBuffer
from alm_offline.core.updater import EagerUpdater
from alm_offline.training.checkpoint import (
    checkpoint_path,
    read_resume_checkpoint,
    restore,
    save_checkpoint,
)
from alm_offline.training.evaluation import Counters, RunEvaluation, summary_fields
from alm_offline.training.loggers import RunLogger, make_run_logger
from alm_offline.training.progress import ProgressDisplay
from alm_offline.training.rundir import write_summary
from alm_offline.training.threads import ThreadPolicy


class TrainingRun:
    """One run's shared machinery; the loops drive it (see the module docstring).

    ``step_key`` names the x-axis of the logs (``env_step`` online, ``updates`` offline);
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
        eval_env_id: str,
        step_key: str,
        refs: tuple[float | None, float | None] = (None, None),
        planned_updates: int,
    ) -> None:
        self.threads = ThreadPolicy(cfg.threads)
        self.cfg, self.run_dir, self.step_key = cfg, run_dir, step_key
        self.device = resolve_device(cfg.device)
        torch.manual_seed(cfg.seed)
        self.np_rng = np.random.default_rng(cfg.seed)
        self.evaluation = RunEvaluation(cfg, eval_env_id, step_key, refs)
        fused, self.fusion_reason = fusion_decision(cfg.agent.compile, planned_updates, self.device)
        self.agent = AlmAgent(*dims, cfg.agent, self.device, fused=fused)
        self.refs = self.evaluation.refs
        self.counters = Counters()
        self.window = MetricsWindow()
        self.logger: RunLogger | None = None
        self.display: ProgressDisplay | None = None
        self._session_start = time.perf_counter()
        self._wall_before = 0.0

    def new_replay(self, capacity: int) -> ReplayBuffer:
        """An empty replay of the agent's dims and sequence length, on its device."""
        agent = self.agent
        return ReplayBuffer(
            capacity, agent.obs_dim, agent.action_dim, self.cfg.agent.seq_len, self.device
        )

    def restore(self, replay: ReplayBuffer | None = None) -> dict[str, Any]:
        """Load the run's latest checkpoint (its config must match; ``steps`` may differ)."""
        state = read_resume_checkpoint(self.run_dir, self.cfg)
        counters = restore(state, agent=self.agent, np_rng=self.np_rng, replay=replay)
        self.counters = Counters(**counters)
        return state

    @contextmanager
    def session(
        self, resumed: bool, done: int, label: str, quiet: bool
    ) -> Iterator[ProgressDisplay]:
        """Open the logger (a resumed run drops rows past its checkpoint) and the progress
        display; name the run dir in a ``NonFiniteError``."""
        self._session_start, self._wall_before = time.perf_counter(), self.counters.wall_seconds
        self.logger = make_run_logger(self.cfg, self.run_dir, resume_step=done if resumed else None)
        if resumed:
            self.logger.truncate_after(self.step_key, done)
        enabled = None if not quiet else False
        try:
            with self.logger, ProgressDisplay(self.cfg.steps, done, label, enabled) as bar:
                self.display = bar
                yield bar
        except NonFiniteError as exc:
            raise NonFiniteError(f"{exc} (run dir {self.run_dir})") from None

    def update(self, updater: EagerUpdater, std: float) -> None:
        """One agent update; its metrics join the window, which is logged every ``log_every``.
        Before the update that compiles the fused update, the progress display says so."""
        if self.display is not None and self.agent.compiles_next_update:
            self.display.note(
                "compiling the fused update (seconds from Inductor's cache, up to a minute without)"
            )
        self.window.add(self.counters.updates, updater.step(std))
        self.counters.updates += 1

    def log(self, **where: float) -> None:
        """The window's means as one metrics row, at ``where`` (steps, schedules)."""
        self.threads.adjust()
        row = self.window.flush()
        if row:
            self.logger.metrics({**where, **row})

    def evaluate(self, **where: int) -> None:
        """The shared evaluation protocol (``RunEvaluation``), logged; best.pt on a new best."""
        policy = self.agent.eval_policy(self.cfg.eval.latent, self.cfg.seed)
        best = checkpoint_path(self.run_dir, "best")
        self.evaluation(policy, self.counters, self.logger, lambda: self._save(best), **where)

    @property
    def eval_seconds(self) -> float:
        """This session's time in evaluations."""
        return self.evaluation.seconds

    def checkpoint(self, **state: Any) -> None:
        """Save everything a resume needs (``state``: replay, env_rng, extra)."""
        self.window.check_finite()
        self._save(checkpoint_path(self.run_dir), **state)

    def _save(self, path: Path, **state: Any) -> None:
        self.counters.wall_seconds = self._wall_before + time.perf_counter() - self._session_start
        save_checkpoint(
            path,
            cfg=self.cfg,
            agent=self.agent,
            counters=asdict(self.counters),
            np_rng=self.np_rng,
            **state,
        )

    def finish(self, **fields: Any) -> dict[str, Any]:
        """Close the eval env and write ``summary.json``: ``fields`` + the shared entries."""
        self.evaluation.close()
        best = checkpoint_path(self.run_dir, "best")
        summary = {
            **fields,
            **summary_fields(self.counters, self.step_key, best),
            "device": str(self.device),
            "fused_update": self.agent.fused_update is not None,
            "fused_update_reason": self.fusion_reason,
            **self._compile_fields(),
            "run_dir": str(self.run_dir),
        }
        write_summary(self.run_dir, summary)
        return summary

    def _compile_fields(self) -> dict[str, Any]:
        """This session's compile of the fused update (time, Inductor cache), if it ran."""
        fused = self.agent.fused_update
        report = None if fused is None else fused.report
        if report is None:
            return {}
        return {"compile_seconds": round(report.seconds, 2), "compile_cache": report.cache}
