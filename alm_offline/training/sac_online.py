"""Online SAC, the paper's model-free baseline: ``alm baseline sac --env ENV``.

d3rlpy's SAC at its MuJoCo settings, trained by ``sac_behaviour.SacRun``'s loop (two
[256, 256] critics, batch 256, learning rates 3e-4, one update per env step once 1000 steps
are taken, the first 5000 actions uniform), into a run dir like ``alm train-online``'s:

* ``eval.jsonl``: the runs' evaluation (``training.evaluation.RunEvaluation``:
  ``eval.episodes`` deterministic episodes, episode i from ``seed + 10000 + i``, in an env
  seeded ``seed + 1``) every ``eval.every`` env steps and at the end;
* ``metrics.jsonl``: d3rlpy's losses, their mean over each ``log_every`` env steps;
* ``checkpoints/latest.pt`` every ``checkpoint_every`` env steps: the models, targets and
  optimisers, every transition, the RNGs, the counters; a resume replays the running
  episode, so it continues exactly as an unbroken run does on the same machine;
* ``checkpoints/best.d3`` (at the best evaluation) and ``checkpoints/d3rlpy.d3`` (the final
  policy), which ``alm eval`` loads; ``summary.json``.

Runs in the baselines venv (d3rlpy); one seed per run (a sweep runs seeds 1..N).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np

from alm_offline.config import ONLINE, RunConfig
from alm_offline.runtime.files import replaced_on_success
from alm_offline.training.baselines import import_d3rlpy
from alm_offline.training.evaluation import Counters, RunEvaluation, evaluation_due, run_summary
from alm_offline.training.loggers import RunLogger, make_run_logger
from alm_offline.training.rundir import write_summary
from alm_offline.training.sac_behaviour import SacRun, SacSettings, policy_of
from alm_offline.training.threads import ThreadPolicy

SAC_RANDOM_STEPS = 5_000  # uniform actions first, as d3rlpy's and D4RL's MuJoCo SAC


class OnlineSac(SacRun):
    """One seed of online SAC writing a run dir (see the module docstring)."""

    def __init__(self, cfg: RunConfig, run_dir: Path, logger: RunLogger, quiet: bool) -> None:
        settings = SacSettings(
            env_id=cfg.env,
            steps=cfg.steps,
            seed=cfg.seed,
            snapshot_every=cfg.checkpoint_every,
            eval_episodes=cfg.eval.episodes,
            random_steps=SAC_RANDOM_STEPS,
        )
        super().__init__(settings, Path(run_dir) / "checkpoints", log=lambda line: None)
        self.cfg, self.logger, self.quiet = cfg, logger, quiet
        self.counters = Counters()
        self.evaluation = RunEvaluation(cfg, cfg.env, "env_step")
        self.window: list[dict[str, float]] = []  # the losses since the last metrics row
        self.started = time.perf_counter()
        self.seconds_before = 0.0  # wall seconds of the sessions before a resume

    @property
    def checkpoint_path(self) -> Path:
        return self.work_dir / "latest.pt"

    def resume(self) -> dict[str, Any]:
        state = super().resume()
        self.counters = Counters(**state["counters"])
        self.seconds_before = self.counters.wall_seconds
        self.logger.truncate_after("env_step", state["step"])
        return state

    def after_step(self, step: int, losses: dict[str, float] | None) -> None:
        counters, cfg = self.counters, self.cfg
        counters.env_steps = step
        if losses is not None:
            counters.updates += 1
            self.window.append(losses)
        if step % cfg.log_every == 0 and self.window:
            keys = self.window[0]
            means = {f"sac/{k}": float(np.mean([row[k] for row in self.window])) for k in keys}
            self.logger.metrics({"env_step": step, "updates": counters.updates, **means})
            self.window = []
        if evaluation_due(cfg, step):
            act = policy_of(self.sac, deterministic=True)
            wall = self.seconds_before + time.perf_counter() - self.started
            self.evaluation(
                act, counters, self.logger, self._save_best, env_step=step, wall_seconds=wall
            )
            if not self.quiet:
                mean = counters.last_eval["return_mean"]
                print(f"sac env step {step}: eval {mean:.1f}", flush=True)
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            counters.wall_seconds = self.seconds_before + time.perf_counter() - self.started
            self.save_checkpoint(step, counters=dataclasses.asdict(counters))

    def _save_best(self) -> None:
        with replaced_on_success(self.work_dir / "best.d3") as tmp:
            self.sac.save(str(tmp))

    def finish(self, run_dir: Path) -> dict[str, Any]:
        """The final policy saved and the summary written; the summary."""
        final = self.work_dir / "d3rlpy.d3"
        with replaced_on_success(final) as tmp:
            self.sac.save(str(tmp))
        counters = self.counters
        counters.wall_seconds = self.seconds_before + time.perf_counter() - self.started
        summary = run_summary(
            counters,
            "env_step",
            self.work_dir / "best.d3",
            "cpu",
            run_dir,
            env=self.cfg.env,
            mode=ONLINE.name,
            env_steps=counters.env_steps,
            method="sac",
            seed=self.cfg.seed,
            checkpoint=str(final),
            env_steps_per_sec=counters.env_steps / max(counters.wall_seconds, 1e-9),
            d3rlpy_version=import_d3rlpy().__version__,
            sac_settings=dataclasses.asdict(self.settings),
        )
        write_summary(run_dir, summary)
        return summary


def train_sac_online(
    cfg: RunConfig, run_dir: Path, *, resume: bool = False, quiet: bool = False
) -> dict[str, Any]:
    """Train online SAC on ``cfg.env`` for ``cfg.steps`` env steps (``cfg.seed``); returns
    the summary written to ``run_dir``."""
    ThreadPolicy(cfg.threads)
    run_dir = Path(run_dir)
    run_dir.joinpath("checkpoints").mkdir(parents=True, exist_ok=True)
    with make_run_logger(cfg, run_dir, resume_step=None) as logger:
        run = OnlineSac(cfg, run_dir, logger, quiet)
        try:
            if not resume and run.checkpoint_path.exists():
                run.checkpoint_path.unlink()  # an --overwrite'n run starts afresh
            run.train()
            summary = run.finish(run_dir)
        finally:
            run.close()
            run.evaluation.close()
    return summary
