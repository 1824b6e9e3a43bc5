"""Training loops: online (act, step, store, update) and offline (update on a dataset).

Data flows one way: config -> env + replay -> ``agent.update`` -> metrics -> JSONL files and
checkpoints. Checkpoints are taken at episode ends (after ``checkpoint_every`` env steps),
where the training env's only state is its reset RNG, so a resumed run continues exactly
as if it had never stopped; the final checkpoint of a run may fall mid-episode, and a run
extended from it starts a new episode (the cut one counts as truncated).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .agent import AlmAgent, Metrics, exploration_std, resolve_device
from .checkpoint import (
    CheckpointError,
    checkpoint_config,
    checkpoint_path,
    read_checkpoint,
    restore,
    save_checkpoint,
)
from .config import RunConfig, to_dict
from .datasets.convert import load_dataset
from .datasets.episodes import DatasetError, EpisodeDataset
from .envs import env_spec, make_env, rng_state, set_rng_state
from .evaluate import evaluate, normalized_score
from .loggers import make_run_logger
from .progress import ProgressDisplay
from .replay import ReplayBuffer
from .rundir import write_summary
from .updater import make_updater


class NonFiniteError(RuntimeError):
    """A loss or gradient norm became NaN or infinite."""


class MetricsWindow:
    """Per-update metric tensors, turned into floats only when flushed (one host sync)."""

    def __init__(self) -> None:
        self._rows: list[Metrics] = []
        self._first_update = 0
        self._started = time.perf_counter()

    def add(self, update_index: int, metrics: Metrics) -> None:
        if not self._rows:
            self._first_update = update_index
        self._rows.append(metrics)

    def __len__(self) -> int:
        return len(self._rows)

    def _table(self) -> tuple[list[str], torch.Tensor]:
        """(keys, (updates, metrics) tensor); raises ``NonFiniteError`` at the first bad update."""
        keys = list(self._rows[0])
        table = torch.stack([torch.stack([row[k].float() for k in keys]) for row in self._rows])
        finite = torch.isfinite(table).cpu()
        if not bool(finite.all()):
            bad_row, bad_col = (~finite).nonzero()[0].tolist()
            raise NonFiniteError(
                f"non-finite {keys[bad_col]} at update {self._first_update + bad_row}; "
                "the last checkpoint predates it"
            )
        return keys, table

    def check_finite(self) -> None:
        """Raise ``NonFiniteError`` if any update in the window went non-finite."""
        if self._rows:
            self._table()

    def flush(self) -> dict[str, float]:
        """Means over the window (after ``check_finite``), and updates per second."""
        if not self._rows:
            return {}
        keys, table = self._table()
        elapsed = time.perf_counter() - self._started
        out = dict(zip(keys, table.mean(0).tolist(), strict=True))
        out["updates_per_sec"] = len(self._rows) / max(elapsed, 1e-9)
        self._rows.clear()
        self._started = time.perf_counter()
        return out


@dataclass
class Counters:
    """What a resumed run must continue from."""

    env_steps: int = 0
    updates: int = 0
    episodes: int = 0
    wall_seconds: float = 0.0
    last_eval: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "env_steps": self.env_steps,
            "updates": self.updates,
            "episodes": self.episodes,
            "wall_seconds": self.wall_seconds,
            "last_eval": dict(self.last_eval),
        }


def seed_everything(seed: int) -> np.random.Generator:
    """Seed torch (CPU and CUDA) and return the trainer's numpy generator."""
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def set_threads(cfg: RunConfig) -> None:
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)


def eval_row(returns: np.ndarray, **where: int) -> dict[str, Any]:
    return {
        **where,
        "return_mean": float(returns.mean()),
        "return_std": float(returns.std()),
        "return_min": float(returns.min()),
        "return_max": float(returns.max()),
        "returns": [float(r) for r in returns],
    }


def load_resume_state(run_dir: Path, cfg: RunConfig) -> dict[str, Any]:
    """The latest checkpoint of ``run_dir``, checked against ``cfg`` (``steps`` may differ)."""
    state = read_checkpoint(checkpoint_path(run_dir))
    saved = to_dict(checkpoint_config(state))
    wanted = to_dict(cfg)
    saved.pop("steps"), wanted.pop("steps")
    if saved != wanted:
        diff = sorted(k for k in wanted if saved.get(k) != wanted[k])
        raise CheckpointError(
            f"checkpoint in '{run_dir}' was made with another config ({', '.join(diff)})"
        )
    return state


def train_online(
    cfg: RunConfig, run_dir: Path, *, resume: bool = False, quiet: bool = False
) -> dict[str, Any]:
    """Train ALM online for ``cfg.steps`` env steps; returns the summary written to the run dir."""
    set_threads(cfg)
    device = resolve_device(cfg.device)
    np_rng = seed_everything(cfg.seed)
    env = make_env(cfg.env, seed=cfg.seed)
    eval_env = make_env(cfg.env, seed=cfg.seed + 1)
    spec = env_spec(env)
    agent = AlmAgent(spec.obs_dim, spec.action_dim, cfg.agent, device)
    replay = ReplayBuffer(
        cfg.agent.buffer_size, spec.obs_dim, spec.action_dim, cfg.agent.seq_len, device
    )
    counters = Counters()

    if resume:
        state = load_resume_state(run_dir, cfg)
        counters = Counters(**restore(state, agent=agent, np_rng=np_rng, replay=replay))
        if state["rng"]["env"] is not None:
            set_rng_state(env, state["rng"]["env"])
            obs, _ = env.reset()
        else:  # the run's final checkpoint, taken mid-episode: start a fresh episode
            obs, _ = env.reset(seed=int(np_rng.integers(2**31)))
    else:
        obs, _ = env.reset(seed=cfg.seed)
    replay.start_episode(obs)

    updater = make_updater(agent, replay)
    window = MetricsWindow()
    warmup = cfg.agent.warmup_steps
    next_checkpoint = (counters.env_steps // cfg.checkpoint_every + 1) * cfg.checkpoint_every
    session_start = time.perf_counter()
    steps_at_start, wall_before = counters.env_steps, counters.wall_seconds

    def checkpoint(env_rng: dict | None) -> None:
        counters.wall_seconds = wall_before + time.perf_counter() - session_start
        save_checkpoint(
            checkpoint_path(run_dir),
            cfg=cfg,
            agent=agent,
            counters=counters.as_dict(),
            np_rng=np_rng,
            replay=replay,
            env_rng=env_rng,
        )

    def log_window() -> None:
        row = window.flush()
        if row:
            elapsed = time.perf_counter() - session_start
            logger.metrics(
                {
                    "env_step": counters.env_steps,
                    "updates": counters.updates,
                    "exploration_std": exploration_std(cfg.agent, counters.updates),
                    "env_steps_per_sec": (counters.env_steps - steps_at_start) / max(elapsed, 1e-9),
                    **row,
                }
            )

    logger = make_run_logger(cfg, run_dir, resume_step=counters.env_steps if resume else None)
    if resume:
        logger.truncate_after("env_step", counters.env_steps)
    with (
        logger,
        ProgressDisplay(
            cfg.steps, counters.env_steps, cfg.env, enabled=None if not quiet else False
        ) as bar,
    ):
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
                std = exploration_std(cfg.agent, counters.updates)
                window.add(counters.updates, updater.step(std))
                counters.updates += 1
                if counters.updates % cfg.log_every == 0:
                    log_window()

            eval_due = counters.env_steps % cfg.eval.every == 0 or counters.env_steps == cfg.steps
            if eval_due and cfg.eval.episodes > 0:
                returns = evaluate(
                    lambda o: agent.act(o, 0.0, deterministic=True),
                    eval_env,
                    cfg.eval.episodes,
                    cfg.seed,
                )
                counters.last_eval = eval_row(
                    returns, env_step=counters.env_steps, updates=counters.updates
                )
                logger.evaluation(counters.last_eval)

            if terminated or truncated:
                counters.episodes += 1
                if counters.env_steps >= next_checkpoint and counters.env_steps < cfg.steps:
                    window.check_finite()
                    checkpoint(rng_state(env))
                    next_checkpoint = (
                        counters.env_steps // cfg.checkpoint_every + 1
                    ) * cfg.checkpoint_every
                if counters.env_steps < cfg.steps:
                    obs, _ = env.reset()
                    replay.start_episode(obs)
            if counters.env_steps % 100 == 0 or counters.env_steps == cfg.steps:
                last = counters.last_eval.get("return_mean")
                bar.advance(
                    counters.env_steps,
                    f"updates {counters.updates}" + ("" if last is None else f"  eval {last:.1f}"),
                )
        log_window()
    checkpoint(None)
    env.close()
    eval_env.close()
    summary = {
        "env": cfg.env,
        "mode": "online",
        "env_steps": counters.env_steps,
        "updates": counters.updates,
        "episodes": counters.episodes,
        "eval_return_mean": counters.last_eval.get("return_mean"),
        "eval_return_std": counters.last_eval.get("return_std"),
        "wall_seconds": counters.wall_seconds,
        "device": str(device),
        "run_dir": str(run_dir),
    }
    write_summary(run_dir, summary)
    return summary


# --------------------------------------------------------------------------- offline
def bundled_dataset_path() -> Path:
    """The small dataset shipped with the package (see datasets/bundled/README.md)."""
    from importlib import resources

    bundled = resources.files("alm_offline.datasets").joinpath("bundled")
    return Path(str(bundled.joinpath(BUNDLED_DATASET)))


BUNDLED_DATASET = "inverted_pendulum-alm-v0.hdf5"


def load_offline_dataset(cfg: RunConfig) -> EpisodeDataset:
    """The run's dataset, validated against its evaluation env (``DatasetError``/``EnvError``)."""
    spec = cfg.dataset or str(bundled_dataset_path())
    dataset = load_dataset(
        spec,
        env_id=cfg.env or None,
        ref_min=cfg.eval.ref_min,
        ref_max=cfg.eval.ref_max,
        clip_actions=cfg.clip_actions,
    )
    if dataset.env_id is None:
        raise DatasetError(f"dataset '{spec}' names no env; pass env=ENV_ID for evaluation")
    if dataset.num_steps == 0:
        raise DatasetError(f"dataset '{spec}' holds no transitions")
    if int(dataset.episode_lengths.max()) < cfg.agent.seq_len:
        raise DatasetError(
            f"dataset '{spec}' has no episode with seq_len={cfg.agent.seq_len} steps"
        )
    return dataset


def resolve_offline_config(cfg: RunConfig, dataset: EpisodeDataset) -> RunConfig:
    """``cfg`` with the evaluation env and the dataset path settled (what config.yaml records)."""
    return replace(cfg, env=dataset.env_id, dataset=cfg.dataset or str(bundled_dataset_path()))


def _fingerprint(dataset: EpisodeDataset) -> list[float]:
    return [
        float(dataset.num_episodes),
        float(dataset.num_steps),
        float(np.float64(dataset.rewards).sum()),
        float(np.float64(dataset.observations[:, 0]).sum()),
    ]


def train_offline(
    cfg: RunConfig,
    run_dir: Path,
    *,
    resume: bool = False,
    quiet: bool = False,
    dataset: EpisodeDataset | None = None,
) -> dict[str, Any]:
    """Train ALM on a fixed dataset for ``cfg.steps`` updates (App. A.7: bound + BC term)."""
    set_threads(cfg)
    device = resolve_device(cfg.device)
    dataset = dataset if dataset is not None else load_offline_dataset(cfg)
    np_rng = seed_everything(cfg.seed)
    eval_env = make_env(dataset.env_id, seed=cfg.seed + 1)
    agent = AlmAgent(dataset.obs_dim, dataset.action_dim, cfg.agent, device)
    replay = ReplayBuffer(
        len(dataset.observations), dataset.obs_dim, dataset.action_dim, cfg.agent.seq_len, device
    )
    replay.load_episodes(
        dataset.observations,
        dataset.agent_actions(),
        dataset.rewards,
        dataset.terminations,
        dataset.episode_lengths,
    )
    refs = (dataset.ref_min_score, dataset.ref_max_score)
    known_refs = refs[0] is not None and refs[1] is not None
    if not known_refs and not quiet:
        print(
            "note: no reference scores for this dataset; reporting raw returns "
            "(give --ref-min/--ref-max for normalised scores)",
            file=sys.stderr,
        )
    counters = Counters()
    if resume:
        state = load_resume_state(run_dir, cfg)
        if state["extra"].get("dataset_fingerprint") != _fingerprint(dataset):
            raise CheckpointError(f"the dataset of '{run_dir}' changed since the checkpoint")
        counters = Counters(**restore(state, agent=agent, np_rng=np_rng))

    updater = make_updater(agent, replay)
    window = MetricsWindow()
    session_start, wall_before = time.perf_counter(), counters.wall_seconds

    def checkpoint() -> None:
        window.check_finite()
        counters.wall_seconds = wall_before + time.perf_counter() - session_start
        save_checkpoint(
            checkpoint_path(run_dir),
            cfg=cfg,
            agent=agent,
            counters=counters.as_dict(),
            np_rng=np_rng,
            extra={"dataset_fingerprint": _fingerprint(dataset)},
        )

    logger = make_run_logger(cfg, run_dir, resume_step=counters.updates if resume else None)
    if resume:
        logger.truncate_after("updates", counters.updates)
    with (
        logger,
        ProgressDisplay(
            cfg.steps, counters.updates, f"offline {dataset.env_id}", None if not quiet else False
        ) as bar,
    ):
        while counters.updates < cfg.steps:
            std = exploration_std(cfg.agent, counters.updates)
            window.add(counters.updates, updater.step(std))
            counters.updates += 1
            if counters.updates % cfg.log_every == 0:
                logger.metrics(
                    {"updates": counters.updates, "exploration_std": std, **window.flush()}
                )
            eval_due = counters.updates % cfg.eval.every == 0 or counters.updates == cfg.steps
            if eval_due and cfg.eval.episodes > 0:
                returns = evaluate(
                    lambda o: agent.act(o, 0.0, deterministic=True),
                    eval_env,
                    cfg.eval.episodes,
                    cfg.seed,
                )
                row = eval_row(returns, updates=counters.updates)
                if known_refs:
                    scores = normalized_score(returns, *refs)
                    row["normalized_score_mean"] = float(scores.mean())
                    row["normalized_score_std"] = float(scores.std())
                counters.last_eval = row
                logger.evaluation(row)
            if counters.updates % cfg.checkpoint_every == 0 and counters.updates < cfg.steps:
                checkpoint()
            if counters.updates % 50 == 0 or counters.updates == cfg.steps:
                last = counters.last_eval.get("return_mean")
                bar.advance(counters.updates, "" if last is None else f"eval {last:.1f}")
        rows = window.flush()
        if rows:
            logger.metrics({"updates": counters.updates, **rows})
    checkpoint()
    eval_env.close()
    returns = dataset.episode_returns()
    summary = {
        "env": dataset.env_id,
        "mode": "offline",
        "dataset": cfg.dataset,
        "dataset_return_mean": float(returns.mean()),
        "env_steps": 0,
        "updates": counters.updates,
        "eval_return_mean": counters.last_eval.get("return_mean"),
        "eval_return_std": counters.last_eval.get("return_std"),
        "normalized_score_mean": counters.last_eval.get("normalized_score_mean"),
        "normalized_score_std": counters.last_eval.get("normalized_score_std"),
        "ref_min_score": refs[0],
        "ref_max_score": refs[1],
        "wall_seconds": counters.wall_seconds,
        "device": str(device),
        "run_dir": str(run_dir),
    }
    write_summary(run_dir, summary)
    return summary
