"""What can train into a run dir: ALM and d3rlpy's baselines, as one table.

A ``Method`` is looked up by the config's ``method`` key (``config.METHODS``); the run's
start (start.py) and its training call go through the table, never through a test of the
method's name. Adding a baseline: its row of ``alm_offline/baseline_table.py``; its row
here follows from ``config.BASELINE_METHODS``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from alm_offline.config import (
    BASELINE_METHODS,
    EVAL_LATENTS,
    METHODS,
    ConfigError,
    RunConfig,
    run_mode,
)
from alm_offline.datasets.episodes import EpisodeDataset
from alm_offline.training import baselines
from alm_offline.training.checkpoint import load_agent, resolve_checkpoint
from alm_offline.training.offline import train_offline
from alm_offline.training.online import train_online
from alm_offline.training.sac_online import train_sac_online

# (cfg, run_dir, dataset or None online, resume=, quiet=) -> the summary written
Train = Callable[..., dict[str, Any]]


@dataclass(frozen=True)
class SavedPolicy:
    """A run's trained policy, loaded to act: ``act`` maps an observation (D,) to an action
    (A,) in the agent's [-1, 1] box, deterministically."""

    act: Callable[[np.ndarray], np.ndarray]
    dims: tuple[int, int]  # (obs, action)
    cfg: RunConfig
    checkpoint: Path
    run_dir: Path
    latent: str  # the z an ALM policy acts on (mean | sample); "-" for a baseline


# (run dir or checkpoint file, which (latest | best), device, latent or None, seed)
LoadPolicy = Callable[[Path, str, str, "str | None", int], SavedPolicy]


def load_alm_policy(
    path: Path, which: str, device: str, latent: str | None, seed: int
) -> SavedPolicy:
    """An ALM checkpoint's policy acting on the encoder's mean or a sampled z (``latent``;
    None takes the run's ``eval.latent``)."""
    checkpoint, run_dir = resolve_checkpoint(path, which)
    agent, cfg, _ = load_agent(checkpoint, device)
    latent = latent or cfg.eval.latent
    if latent not in EVAL_LATENTS:
        raise ConfigError(f"--latent must be one of {', '.join(EVAL_LATENTS)}, got '{latent}'")
    dims = (agent.obs_dim, agent.action_dim)
    return SavedPolicy(agent.eval_policy(latent, seed), dims, cfg, checkpoint, run_dir, latent)


def load_baseline_policy(
    path: Path, which: str, device: str, latent: str | None, seed: int
) -> SavedPolicy:
    """A d3rlpy baseline's greedy policy (it has no latent to choose)."""
    cfg = baselines.baseline_run(path)
    if latent is not None:
        raise ConfigError(f"--latent is for ALM runs; '{path}' is a {cfg.method} run")
    checkpoint, run_dir = baselines.baseline_checkpoint(path, which)
    act, dims = baselines.load_baseline_policy(checkpoint, device)
    return SavedPolicy(act, dims, cfg, checkpoint, run_dir, "-")


@dataclass(frozen=True)
class Method:
    """One learner: how it trains offline (and online, if it can), what it checks before
    a run dir is written, the prefix of its default run dir, whether a run resumes."""

    name: str
    train_offline: Train | None  # None: an online method only
    run_prefix: str
    load_policy: LoadPolicy
    train_online: Train | None = None
    check: Callable[[str, EpisodeDataset], None] | None = None  # (name, dataset) -> raises
    needs: Callable[[], Any] | None = None  # imports its extra, or names the install
    resumable: bool = True
    online_prefix: str = ""  # the prefix of its default run dir online
    seeds_in_process: bool = True  # trains seeds=1,2,3 in one process (else one seed a run)

    def train(
        self,
        mode: str,
        cfg: RunConfig,
        run_dir: Path,
        dataset: EpisodeDataset | None,
        *,
        resume: bool,
        quiet: bool,
    ) -> dict[str, Any]:
        """Train in ``mode`` (online or offline) to ``cfg.steps``."""
        if run_mode(mode).online:
            return self.train_online(cfg, run_dir, resume=resume, quiet=quiet)
        return self.train_offline(cfg, run_dir, dataset, resume=resume, quiet=quiet)


ALM = Method("alm", train_offline, "offline-", load_alm_policy, train_online=train_online)

SAC = Method(
    "sac",
    None,
    "sac-",
    load_baseline_policy,
    train_online=train_sac_online,
    needs=baselines.import_d3rlpy,
    online_prefix="sac-",
    seeds_in_process=False,
)

TABLE: dict[str, Method] = {
    "alm": ALM,
    **{
        name: Method(
            name,
            baselines.train_baseline,
            f"{name.replace('+', '')}-",
            load_baseline_policy,
            check=baselines.check_baseline_data,
            needs=baselines.import_d3rlpy,
            resumable=False,
        )
        for name in BASELINE_METHODS
    },
    "sac": SAC,
}
assert tuple(TABLE) == METHODS, "config.METHODS and the table must name the same methods"


def method_for(name: str, mode: str = "offline") -> Method:
    """The row of ``name``; ``ConfigError`` when it cannot train in ``mode``."""
    method = TABLE.get(name)
    if method is None:
        raise ConfigError(f"method must be one of {', '.join(METHODS)}, got '{name}'")
    if run_mode(mode).online and method.train_online is None:
        raise ConfigError(f"method={name} is an offline baseline: alm baseline {name}")
    if not run_mode(mode).online and method.train_offline is None:
        raise ConfigError(f"method={name} is an online baseline: alm baseline {name} --env ENV")
    return method


def load_policy(
    path: str | Path,
    *,
    which: str = "latest",
    device: str = "cpu",
    latent: str | None = None,
    seed: int = 0,
) -> SavedPolicy:
    """The policy saved in a run dir (its ``which`` checkpoint: latest or best) or in a
    checkpoint file, loaded by the method that trained it (a baseline's run dir stores its
    method; anything else is ALM's)."""
    stored = baselines.baseline_run(path)
    method = TABLE[stored.method if stored is not None else ALM.name]
    return method.load_policy(Path(path), which, device, latent, seed)
