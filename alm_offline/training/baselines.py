"""Offline baselines from d3rlpy: BC, TD3+BC, IQL and CQL with d3rlpy's own D4RL settings.

``train_baseline`` trains one of them on an ``EpisodeDataset`` and writes the same run dir as
``alm train-offline`` (config.yaml, eval.jsonl, metrics.jsonl, summary.json), evaluated with
the same seeded protocol (``evaluate``: episode i from ``seed + 10000 + i``, deterministic
actions), so plots, sweeps and tables treat offline ALM and the baselines alike. d3rlpy is
an optional extra: without it, ``BaselineError`` names the install.

Each baseline's settings and data checks are its row of ``alm_offline/baseline_table.py``
(d3rlpy's ``reproductions/offline/*.py``; BC at ``BCConfig``'s defaults). The learner sees
actions in the agent's [-1, 1] box, as ALM does, and acts in the env through the same
``RescaleAction`` wrapper.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alm_offline.baseline_table import BASELINES
from alm_offline.config import (
    BASELINE_METHODS,
    ONLINE_BASELINES,
    RunConfig,
    load_config,
    resolve_device,
)
from alm_offline.datasets.episodes import EpisodeDataset
from alm_offline.errors import AlmError, first_line
from alm_offline.training.evaluation import (
    Counters,
    RunEvaluation,
    evaluation_due,
    offline_fields,
    run_summary,
)
from alm_offline.training.loggers import make_run_logger
from alm_offline.training.rundir import write_summary
from alm_offline.training.threads import ThreadPolicy

D3RLPY_MISSING = "alm baseline needs d3rlpy: pip install 'alm-offline[baselines]'"


class BaselineError(AlmError):
    """A baseline that cannot run as asked (one-line message)."""


def import_d3rlpy() -> Any:
    """The d3rlpy module, or ``BaselineError`` naming the install when it is missing."""
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # the old gym's NumPy 2 notice
            d3rlpy = importlib.import_module("d3rlpy")
    except ImportError:
        raise BaselineError(D3RLPY_MISSING) from None
    structlog = importlib.import_module("structlog")  # d3rlpy's logger: warnings and up only
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    return d3rlpy


def algo_config(method: str, d3rlpy: Any, steps: int, dataset_name: str) -> Any:
    """d3rlpy's config object for ``method`` with its D4RL reproduction settings (its row of
    ``BASELINES``)."""
    if method not in BASELINES:
        raise BaselineError(f"unknown baseline '{method}' ({', '.join(BASELINES)})")
    return BASELINES[method].make(d3rlpy, steps, dataset_name)


def to_mdp_dataset(dataset: EpisodeDataset, d3rlpy: Any) -> Any:
    """The dataset as a d3rlpy ``MDPDataset`` that keeps every transition.

    An MDPDataset takes each row's next observation from the following row and drops the
    last row of an episode that ends in a timeout, so a truncated episode of T steps is given
    T + 1 rows: its final observation with a zero action and reward, flagged timeout. A
    terminated episode keeps its T rows, the last flagged terminal (terminal wins over a
    timeout on the same step).
    """
    observations, actions, rewards, terminals, timeouts = [], [], [], [], []
    agent_actions = dataset.agent_actions()
    for start, ep in zip(dataset.step_starts(), dataset.iter_episodes(), strict=True):
        length = len(ep["rewards"])
        acts = agent_actions[start : start + length]
        ends_terminal = bool(ep["terminations"][-1])
        rows = length if ends_terminal else length + 1
        observations.append(ep["observations"][:rows])
        actions.append(np.concatenate([acts, np.zeros((rows - length, acts.shape[1]))]))
        rewards.append(np.concatenate([ep["rewards"], np.zeros(rows - length)]))
        flags = np.zeros(rows, dtype=np.float32)
        flags[-1] = 1.0
        terminals.append(flags if ends_terminal else np.zeros(rows, dtype=np.float32))
        timeouts.append(np.zeros(rows, dtype=np.float32) if ends_terminal else flags)
    return d3rlpy.dataset.MDPDataset(
        observations=np.concatenate(observations).astype(np.float32),
        actions=np.concatenate(actions).astype(np.float32),
        rewards=np.concatenate(rewards).astype(np.float32),
        terminals=np.concatenate(terminals),
        timeouts=np.concatenate(timeouts),
        action_space=d3rlpy.ActionSpace.CONTINUOUS,
        action_size=dataset.action_dim,
    )


def check_baseline_data(method: str, dataset: EpisodeDataset) -> None:
    """``BaselineError`` for data the baseline cannot learn from (its row's ``refuses``)."""
    why = BASELINES[method].refuses(dataset.episode_returns())
    if why is not None:
        raise BaselineError(why)


def _d3rlpy_device(device: torch.device) -> str | bool:
    return f"cuda:{device.index or 0}" if device.type == "cuda" else False


def train_baseline(
    cfg: RunConfig,
    run_dir: Path,
    dataset: EpisodeDataset,
    *,
    resume: bool = False,
    quiet: bool = False,
) -> dict[str, Any]:
    """Train d3rlpy's ``cfg.method`` for ``cfg.steps`` updates on ``dataset`` (checked by
    ``check_baseline_data`` before the run dir was made), evaluating every ``eval.every``
    updates with the runs' shared protocol; returns the summary written to ``run_dir``.
    d3rlpy's fitter cannot continue a run, so ``resume`` is refused (``BaselineError``)."""
    if resume:
        raise BaselineError(f"'{run_dir}' is a d3rlpy {cfg.method} run, which cannot resume")
    d3rlpy = import_d3rlpy()
    device = resolve_device(cfg.device)
    threads = ThreadPolicy(cfg.threads)
    d3rlpy.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    mdp = to_mdp_dataset(dataset, d3rlpy)
    algo = algo_config(cfg.method, d3rlpy, cfg.steps, cfg.dataset or "").create(
        device=_d3rlpy_device(device)
    )
    refs = (dataset.ref_min_score, dataset.ref_max_score)
    evaluation = RunEvaluation(cfg, dataset.env_id, "updates", refs)
    counters = Counters()
    checkpoints = run_dir / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    best = checkpoints / "best.d3"
    act = _deterministic(algo)
    with make_run_logger(cfg, run_dir) as logger:

        def on_step(_algo: Any, _epoch: int, step: int) -> None:
            counters.updates = step
            if not evaluation_due(cfg, step):
                return
            evaluation(act, counters, logger, lambda: algo.save(str(best)), updates=step)
            last = counters.last_eval.get("return_mean")
            if not quiet and last is not None and counters.last_eval["updates"] == step:
                print(f"{cfg.method} update {step}: eval {last:.1f}", flush=True)

        per_epoch = math.gcd(cfg.steps, cfg.log_every)
        started = time.perf_counter()
        for epoch, metrics in algo.fitter(
            mdp,
            n_steps=cfg.steps,
            n_steps_per_epoch=per_epoch,
            logger_adapter=d3rlpy.logging.NoopAdapterFactory(),
            show_progress=False,
            save_interval=cfg.steps,
            callback=on_step,
        ):
            threads.adjust()
            logger.metrics({"updates": epoch * per_epoch, **_plain_metrics(metrics)})
        counters.wall_seconds = time.perf_counter() - started
    evaluation.close()
    checkpoint = checkpoints / "d3rlpy.d3"
    algo.save(str(checkpoint))
    summary = run_summary(
        counters,
        "updates",
        best,
        device,
        run_dir,
        **offline_fields(dataset, cfg.dataset, refs),
        method=cfg.method,
        checkpoint=str(checkpoint),
        updates_per_sec=cfg.steps / max(counters.wall_seconds - evaluation.seconds, 1e-9),
        d3rlpy_version=d3rlpy.__version__,
        d3rlpy_config=algo.config.serialize(),
    )
    write_summary(run_dir, summary)
    return summary


def baseline_run(path: str | Path) -> RunConfig | None:
    """The stored config of a baseline's run dir (or of a ``.d3`` checkpoint inside one);
    None for anything else (an ALM run or checkpoint)."""
    path = Path(path)
    run_dir = path if path.is_dir() else path.parent.parent
    stored = run_dir / "config.yaml"
    if (path.is_dir() or path.suffix == ".d3") and stored.is_file():
        cfg = load_config(str(stored))
        return cfg if cfg.method in (*BASELINE_METHODS, *ONLINE_BASELINES) else None
    return None


def baseline_checkpoint(path: str | Path, which: str = "latest") -> tuple[Path, Path]:
    """(checkpoint file, run dir) of a baseline run dir (``which``: latest = the final
    model, d3rlpy.d3; best = best.d3) or of a ``.d3`` file inside one."""
    path = Path(path)
    if not path.is_dir():
        return path, path.parent.parent
    name = "d3rlpy.d3" if which == "latest" else f"{which}.d3"
    checkpoint = path / "checkpoints" / name
    if not checkpoint.is_file():
        kind = "" if which == "latest" else f"{which} "
        state = "is still training or was interrupted" if which == "latest" else "has none"
        raise BaselineError(f"baseline run dir '{path}' has no {kind}model yet: it {state}")
    return checkpoint, path


def load_baseline_policy(
    checkpoint: Path, device: str = "cpu"
) -> tuple[Callable[[np.ndarray], np.ndarray], tuple[int, int]]:
    """The deterministic policy of a saved d3rlpy model (obs (D,) -> action (A,), in the
    agent's [-1, 1] box) and its (obs, action) dims."""
    d3rlpy = import_d3rlpy()
    try:
        algo = d3rlpy.load_learnable(str(checkpoint), device=_d3rlpy_device(resolve_device(device)))
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise BaselineError(f"cannot load '{checkpoint}': {first_line(exc)}") from None

    return _deterministic(algo), (int(algo.observation_shape[0]), int(algo.action_size))


def _deterministic(algo: Any) -> Callable[[np.ndarray], np.ndarray]:
    """A d3rlpy learner's greedy action for one observation (D,) -> (A,)."""
    return lambda obs: algo.predict(obs[None].astype(np.float32))[0]


def _plain_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """d3rlpy's epoch metrics (losses, timings) as floats, its keys under ``d3rlpy/``."""
    return {f"d3rlpy/{key}": float(value) for key, value in metrics.items()}
