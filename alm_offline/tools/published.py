"""The paper's published ALM(3) results, on this project's env-step axis.

Two sources, both as published:

- the reference repository's per-seed learning curves (``published_alm.json``, read from
  RajGhugare19/alm ``scores/*.csv``: 5 seeds, an evaluation of 5 deterministic episodes every
  5000 of its x), whose x is the reference's ``_train_step``: the updates after its warm-up
  of 4999 random steps (``workspaces/mujoco_workspace.py``: ``_explore`` runs
  ``range(1, explore_steps)`` and never counts them; ``_eval`` logs at ``step=_train_step``).
  This project's warm-up is 5000 env steps (``agent.warmup_steps``) and it evaluates by env
  step, so x published is this project's ``env_step = x + warmup_steps`` (10000 for x = 5000
  at the default), the row whose ``updates`` is x;
- the paper's Table 1 (mean ± std over 5 seeds at "200k"), on the same axis: env step 205000.

docs/reference-loop.md has the loop detail behind the conversion.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

CURVES_FILE = Path(__file__).with_name("published_alm.json")
WARMUP_STEPS = 5000  # this project's default agent.warmup_steps: env step = published x + this
TABLE1_X = 200_000  # the paper's Table 1 is at 200k of the curves' x

# The paper's Table 1: ALM(3) return, (mean, std) over 5 seeds. (Its Walker2d entry differs
# from the released Walker2d curve's 200k point, 1954; both are as published.)
PAPER_TABLE1: dict[str, tuple[float, float]] = {
    "T-Humanoid-v5": (5306.0, 437.0),
    "T-Ant-v5": (4887.0, 1027.0),
    "HalfCheetah-v5": (10789.0, 366.0),
    "Walker2d-v5": (3006.0, 1183.0),
    "Hopper-v5": (2546.0, 1074.0),
}


@dataclass(frozen=True)
class PublishedCurve:
    """One env's released per-seed curve: ``returns[i, k]`` is seed k's at ``env_steps[i]``."""

    env: str
    x: np.ndarray  # (N,) int64, the reference's x (updates after its warm-up)
    env_steps: np.ndarray  # (N,) int64, x + warmup_steps: this project's axis
    returns: np.ndarray  # (N, 5) float64

    @property
    def mean(self) -> np.ndarray:
        """(N,) mean over the seeds."""
        return self.returns.mean(axis=1)


@dataclass(frozen=True)
class PublishedPoint:
    """The published figure at one env step: mean, spread and seeds, and where it comes from."""

    env_step: int
    x: int  # the published axis
    mean: float
    std: float  # population std over the seeds
    stderr: (
        float  # standard error of the mean: sample std / sqrt(seeds) (Table 1: its std / sqrt 5)
    )
    seeds: int
    source: str  # "curve" (scores/*.csv) or "table1"


@cache
def _curves_file() -> dict:
    return json.loads(CURVES_FILE.read_text())


def published_envs() -> tuple[str, ...]:
    """The envs with a released curve (this project's ids)."""
    return tuple(_curves_file()["curves"])


def published_curve(env: str, warmup_steps: int = WARMUP_STEPS) -> PublishedCurve | None:
    """``env``'s released curve on this project's env-step axis, or None when there is none."""
    raw = _curves_file()["curves"].get(env)
    if raw is None:
        return None
    x = np.asarray(raw["x"], dtype=np.int64)
    return PublishedCurve(
        env=env,
        x=x,
        env_steps=x + warmup_steps,
        returns=np.asarray(raw["returns"], dtype=np.float64),
    )


def published_at(
    env: str, env_step: int, warmup_steps: int = WARMUP_STEPS
) -> PublishedPoint | None:
    """The published return of ``env`` at this project's ``env_step``: the curve's point at
    x = env_step - warmup_steps, else Table 1's at x = 200k; None where nothing was published.
    """
    x = env_step - warmup_steps
    curve = published_curve(env, warmup_steps)
    if curve is not None:
        rows = np.flatnonzero(curve.x == x)
        if rows.size:
            seeds = curve.returns[rows[0]]
            std = float(seeds.std())
            return PublishedPoint(
                env_step=env_step,
                x=x,
                mean=float(seeds.mean()),
                std=std,
                stderr=float(seeds.std(ddof=1) / math.sqrt(seeds.size)),
                seeds=int(seeds.size),
                source="curve",
            )
    if x == TABLE1_X and env in PAPER_TABLE1:
        mean, std = PAPER_TABLE1[env]
        return PublishedPoint(env_step, x, mean, std, std / math.sqrt(5), 5, "table1")
    return None
