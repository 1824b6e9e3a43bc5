"""Starting a run: its config, run dir and (offline) dataset, settled before anything trains.

``start_online`` / ``start_offline`` turn the command line's words (a config name or file,
KEY=VALUE overrides, ``--resume RUN_DIR``, ``--overwrite``) into a ``RunStart``; ``train``
runs it. Everything is checked before the run dir is written, so a bad config, env, logger
backend or dataset leaves nothing on disk. A resumed run keeps the config stored in its run
dir: only ``steps`` may change.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from alm_offline.config import ConfigError, RunConfig, load_config, resolve_device, run_seeds
from alm_offline.datasets.convert import bundled_dataset_path, load_dataset
from alm_offline.datasets.episodes import DatasetError, EpisodeDataset
from alm_offline.errors import AlmWarning
from alm_offline.runtime.envs import EnvError, describe_env
from alm_offline.runtime.files import write_text_atomic
from alm_offline.training.loggers import check_backends
from alm_offline.training.methods import method_for
from alm_offline.training.resources import check_resources, estimate_run
from alm_offline.training.rundir import (
    RESOURCES_FILE,
    RunDirError,
    RunDirLock,
    default_run_dir,
    prepare_new,
    refuse_seed_dir,
)


@dataclass(frozen=True)
class RunStart:
    """A run ready to train: ``mode`` is ``online`` or ``offline`` (then ``dataset`` is set).
    ``lock`` holds the run dir for this process until ``train`` ends."""

    mode: str
    cfg: RunConfig
    run_dir: Path
    resume: bool
    lock: RunDirLock
    dataset: EpisodeDataset | None = None


def start_online(
    config: str | None,
    overrides: tuple[str, ...],
    *,
    resume: str | Path | None = None,
    overwrite: bool = False,
) -> RunStart:
    """A new online run (its run dir created, config.yaml written) or a resumed one."""
    if resume is not None:
        cfg = resumed_config(resume, config, overrides, "online")
        return RunStart("online", cfg, Path(resume), True, RunDirLock(Path(resume)))
    cfg = load_config(config, overrides)
    method = method_for(cfg.method, "online")
    if not method.seeds_in_process and len(run_seeds(cfg)) > 1:
        raise ConfigError(f"method={cfg.method} trains one seed per run: give seed=S, not seeds")
    if method.needs is not None:
        method.needs()  # its install named before anything is written
    check_backends(cfg.logger)
    spec = describe_env(cfg.env)
    prefix = method.online_prefix
    estimate = None
    if method.seeds_in_process:  # ALM's replay and networks; d3rlpy's SAC sizes itself
        estimate = estimate_run(cfg, spec.obs_dim, spec.action_dim, online=True)
        check_resources(estimate, _planned_run_dir(cfg, prefix), _what(cfg))
    run_dir, lock = _new_run_dir(cfg, prefix, overwrite, "online")
    if estimate is not None:
        write_text_atomic(run_dir / RESOURCES_FILE, json.dumps(estimate.as_dict()) + "\n")
    return RunStart("online", cfg, run_dir, False, lock)


def start_offline(
    config: str | None,
    overrides: tuple[str, ...],
    *,
    resume: str | Path | None = None,
    overwrite: bool = False,
) -> RunStart:
    """A new offline run on ``dataset=`` (default: the bundled dataset) or a resumed one.

    The dataset is loaded and checked first; the config.yaml written records its
    evaluation env and path, so that a resume reads the same data. A dataset that names no
    env (and no ``env=``) trains without evaluation: the config written says
    ``eval.every=0``, and a warning says so.
    """
    if resume is not None:
        cfg = resumed_config(resume, config, overrides, "offline")
        if not method_for(cfg.method).resumable:
            raise RunDirError(f"'{resume}' is a {cfg.method} run, which cannot resume")
        dataset = load_offline_dataset(cfg)
        return RunStart("offline", cfg, Path(resume), True, RunDirLock(Path(resume)), dataset)
    cfg = load_config(config or "offline", overrides)
    method = method_for(cfg.method)
    if method.needs is not None:
        method.needs()  # its install named before any data is read
    dataset = load_offline_dataset(cfg)
    if method.check is not None:
        method.check(cfg.method, dataset)
    evaluation_off = dataset.env_id is None and cfg.eval.every > 0
    cfg = replace(
        cfg,
        env=dataset.env_id or "",
        dataset=cfg.dataset or str(bundled_dataset_path()),
        eval=replace(cfg.eval, every=0) if evaluation_off else cfg.eval,
    )
    check_backends(cfg.logger)
    estimate = None
    if cfg.method == "alm":  # d3rlpy's baselines size themselves
        estimate = estimate_run(
            cfg, dataset.obs_dim, dataset.action_dim, online=False, dataset_rows=dataset.num_steps
        )
        check_resources(estimate, _planned_run_dir(cfg, method.run_prefix), _what(cfg))
    run_dir, lock = _new_run_dir(cfg, method.run_prefix, overwrite, "offline")
    if estimate is not None:
        write_text_atomic(run_dir / RESOURCES_FILE, json.dumps(estimate.as_dict()) + "\n")
    if evaluation_off:
        warnings.warn(
            f"dataset '{cfg.dataset}' names no env: training without evaluation (eval.every=0); "
            f"evaluate the run later with alm eval {run_dir} --env ENV_ID",
            AlmWarning,
            stacklevel=2,
        )
    return RunStart("offline", cfg, run_dir, False, lock, dataset)


def train(start: RunStart, *, quiet: bool = False) -> dict[str, Any]:
    """Train ``start`` to ``cfg.steps``; returns the summary written to its run dir."""
    method = method_for(start.cfg.method, start.mode)
    with start.lock:
        return method.train(
            start.mode, start.cfg, start.run_dir, start.dataset, resume=start.resume, quiet=quiet
        )


def resumed_config(
    run_dir: str | Path, config: str | None, overrides: tuple[str, ...], mode: str = "online"
) -> RunConfig:
    """The stored config of ``run_dir``, with at most a new ``steps``. A seed dir of a
    batched run is refused: its seeds resume together, from the batch's run dir."""
    refuse_seed_dir(Path(run_dir), mode)
    stored = Path(run_dir) / "config.yaml"
    if not stored.is_file():
        raise RunDirError(f"'{run_dir}' is not a run directory (no config.yaml)")
    steps = tuple(o for o in overrides if o.split("=", 1)[0] == "steps")
    if len(steps) != len(overrides):
        raise ConfigError("only steps=N may be given with --resume (the run keeps its config)")
    if config is not None:
        raise ConfigError("--config cannot be combined with --resume")
    cfg = load_config(str(stored), steps)
    check_backends(cfg.logger)
    resolve_device(cfg.device)
    return cfg


def load_offline_dataset(cfg: RunConfig) -> EpisodeDataset:
    """The run's dataset (``cfg.dataset``, else the bundled one), checked for training."""
    spec = cfg.dataset if cfg.dataset is not None else str(bundled_dataset_path())
    with warnings.catch_warnings(record=True) as said:  # shown once the data is usable
        warnings.simplefilter("always")
        dataset = load_dataset(
            spec,
            env_id=cfg.env or None,
            ref_min=cfg.eval.ref_min,
            ref_max=cfg.eval.ref_max,
            clip_actions=cfg.clip_actions,
            action_low=cfg.action_low,
            action_high=cfg.action_high,
        )
    _check_trainable(spec, dataset, cfg)
    for warning in said:
        warnings.warn(warning.message, warning.category, stacklevel=2)
    return dataset


def _check_trainable(spec: str, dataset: EpisodeDataset, cfg: RunConfig) -> None:
    if dataset.env_id is not None and cfg.eval.every > 0:
        try:
            describe_env(dataset.env_id)  # evaluation needs the env itself
        except EnvError as exc:
            raise EnvError(f"{exc}; eval.every=0 trains without evaluation") from None
    if dataset.num_steps == 0:
        raise DatasetError(f"dataset '{spec}' holds no transitions")
    if int(dataset.episode_lengths.max()) < cfg.agent.seq_len:
        raise DatasetError(
            f"dataset '{spec}' has no episode with seq_len={cfg.agent.seq_len} steps"
        )


def _what(cfg: RunConfig) -> str:
    """How a resource error names the run: ``seeds=1,2,3 (3 seeds)``, long lists cut."""
    seeds = cfg.seeds
    if not seeds:
        return "this run"
    shown = seeds if len(seeds) <= 6 else [*seeds[:3], "...", seeds[-1]]
    return f"seeds={','.join(map(str, shown))} ({len(seeds)} seeds)"


def _planned_run_dir(cfg: RunConfig, prefix: str) -> Path:
    return Path(cfg.run_dir) if cfg.run_dir else default_run_dir(cfg, prefix)


def _new_run_dir(
    cfg: RunConfig, prefix: str, overwrite: bool, mode: str
) -> tuple[Path, RunDirLock]:
    """Check the device and that the run dir is no batch's seed dir, then lock, clear
    (``overwrite``) and write it."""
    resolve_device(cfg.device)
    run_dir = Path(cfg.run_dir) if cfg.run_dir else default_run_dir(cfg, prefix)
    refuse_seed_dir(run_dir, mode)
    lock = RunDirLock(run_dir)
    try:
        prepare_new(run_dir, cfg, overwrite)
    except BaseException:
        lock.release()
        raise
    return run_dir, lock
