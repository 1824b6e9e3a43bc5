"""What can train into a run dir: ALM and d3rlpy's baselines, as one table.

A ``Method`` is looked up by the config's ``method`` key (``config.METHODS``); the run's
start (start.py) and its training call go through the table, never through a test of the
method's name. Adding a baseline: its d3rlpy settings in baselines.py, its name in
``config.BASELINE_METHODS``, and its row here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alm_offline.config import BASELINE_METHODS, METHODS, ConfigError, RunConfig
from alm_offline.datasets.episodes import EpisodeDataset
from alm_offline.training import baselines
from alm_offline.training.offline import train_offline
from alm_offline.training.online import train_online

# (cfg, run_dir, dataset or None online, resume=, quiet=) -> the summary written
Train = Callable[..., dict[str, Any]]


@dataclass(frozen=True)
class Method:
    """One learner: how it trains offline (and online, if it can), what it checks before
    a run dir is written, the prefix of its default run dir, whether a run resumes."""

    name: str
    train_offline: Train
    run_prefix: str
    train_online: Train | None = None
    check: Callable[[str, EpisodeDataset], None] | None = None  # (name, dataset) -> raises
    needs: Callable[[], Any] | None = None  # imports its extra, or names the install
    resumable: bool = True

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
        if mode == "online":
            return self.train_online(cfg, run_dir, resume=resume, quiet=quiet)
        return self.train_offline(cfg, run_dir, dataset, resume=resume, quiet=quiet)


ALM = Method("alm", train_offline, "offline-", train_online=train_online)

TABLE: dict[str, Method] = {
    "alm": ALM,
    **{
        name: Method(
            name,
            baselines.train_baseline,
            f"{name.replace('+', '')}-",
            check=baselines.check_baseline_data,
            needs=baselines.import_d3rlpy,
            resumable=False,
        )
        for name in BASELINE_METHODS
    },
}
assert tuple(TABLE) == METHODS, "config.METHODS and the table must name the same methods"


def method_for(name: str, mode: str = "offline") -> Method:
    """The row of ``name``; ``ConfigError`` when it cannot train in ``mode``."""
    method = TABLE.get(name)
    if method is None:
        raise ConfigError(f"method must be one of {', '.join(METHODS)}, got '{name}'")
    if mode == "online" and method.train_online is None:
        raise ConfigError(f"method={name} is an offline baseline: alm baseline {name}")
    return method
