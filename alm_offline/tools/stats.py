"""Scores as offline RL papers report them, with ``rliable``'s interval estimates.

A run's score is the mean of its last ``LAST_EVALS`` evaluations (D4RL-normalised); per method
and dataset the seeds' scores give a mean, a std, and the interquartile mean (IQM) with a 95%
stratified-bootstrap interval; two methods on one dataset give the probability that one
beats the other, with its interval (Agarwal et al. 2021). The bootstrap is rliable's.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

LAST_EVALS = 3  # a run's score: the mean of its last three evaluations
BOOTSTRAP_REPS = 2000  # rliable's default is 50000; 2000 keeps a table in seconds
CONFIDENCE = 0.95
BOOTSTRAP_SEED = 0  # every interval its own seeded draw: the same scores, the same interval


def final_score(scores: Sequence[float], last: int = LAST_EVALS) -> float:
    """The mean of the last ``last`` evaluation scores (all of them when there are fewer)."""
    if not len(scores):
        raise ValueError("a run with no evaluation has no score")
    return float(np.mean(np.asarray(scores, dtype=np.float64)[-last:]))


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its 95% interval."""

    value: float
    low: float
    high: float

    def describe(self, digits: int = 1) -> str:
        return f"{self.value:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


@dataclass(frozen=True)
class SeedSummary:
    """One method on one dataset over its seeds: ``scores`` (N,) one per seed."""

    scores: tuple[float, ...]
    mean: float
    std: float  # over seeds, ddof=0 as the tables have always given it
    iqm: Estimate

    def as_dict(self) -> dict[str, object]:
        return {
            "scores": list(self.scores),
            "mean": self.mean,
            "std": self.std,
            "iqm": self.iqm.value,
            "iqm_ci": [self.iqm.low, self.iqm.high],
        }


def _interval_estimates(
    scores: dict[str, Any], func: Callable[..., np.ndarray]
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """rliable's stratified-bootstrap estimates, seeded (the same scores, the same intervals).

    rliable's resampling draws from numpy's global RNG whatever ``random_state`` says
    (``StratifiedBootstrap.update_indices`` calls ``np.random.choice``), so each call seeds
    that RNG itself and gives the caller's state back afterwards."""
    from rliable import library

    caller_state = np.random.get_state()
    np.random.seed(BOOTSTRAP_SEED)
    try:
        with warnings.catch_warnings():  # arch's notice that RandomState is deprecated
            warnings.simplefilter("ignore", FutureWarning)
            return library.get_interval_estimates(
                scores,
                func,
                reps=BOOTSTRAP_REPS,
                confidence_interval_size=CONFIDENCE,
                random_state=np.random.RandomState(BOOTSTRAP_SEED),
            )
    finally:
        np.random.set_state(caller_state)


def iqm(scores: np.ndarray) -> float:
    """rliable's ``aggregate_iqm`` (the 25%-trimmed mean over every entry of ``scores``),
    the same partition and mean as its ``scipy.stats.trim_mean`` and so the same bits,
    without scipy's per-call argument handling, which took most of a bootstrap's time."""
    flat = np.asarray(scores, dtype=np.float64).ravel()
    low = int(0.25 * flat.size)
    high = flat.size - low
    return float(np.partition(flat, (low, high - 1))[low:high].mean())


def improvement_probability(scores_x: np.ndarray, scores_y: np.ndarray) -> float:
    """rliable's ``probability_of_improvement`` of (runs, tasks) ``scores_x`` over
    ``scores_y``: per task the Mann-Whitney U of X over Y (ties counting half) over the
    number of pairs, averaged over tasks; as array operations instead of a scipy call."""
    x = np.asarray(scores_x, dtype=np.float64)
    y = np.asarray(scores_y, dtype=np.float64)
    above = x[:, None, :] > y[None, :, :]  # (runs_x, runs_y, tasks)
    ties = x[:, None, :] == y[None, :, :]
    u_statistic = above.sum(axis=(0, 1)) + 0.5 * ties.sum(axis=(0, 1))  # (tasks,)
    return float(np.mean(u_statistic / (len(x) * len(y))))


def summarise_seeds(scores: Sequence[float]) -> SeedSummary:
    """Mean, std and the IQM with its stratified-bootstrap interval of one cell's seeds."""
    values = np.asarray(scores, dtype=np.float64)
    if values.ndim != 1 or not values.size:
        raise ValueError("summarise_seeds needs one score per seed")
    points, intervals = _interval_estimates(
        {"cell": values.reshape(-1, 1)},  # (runs, tasks): one task
        lambda x: np.array([iqm(x)]),
    )
    low, high = intervals["cell"][:, 0]
    return SeedSummary(
        scores=tuple(float(v) for v in values),
        mean=float(values.mean()),
        std=float(values.std()),
        iqm=Estimate(float(points["cell"][0]), float(low), float(high)),
    )


def probability_of_improvement(x: Sequence[float], y: Sequence[float]) -> Estimate:
    """P(a run of X scores above a run of Y), ties counting half, with its 95% interval
    (rliable's stratified independent bootstrap over each method's seeds)."""
    xs = np.asarray(x, dtype=np.float64).reshape(-1, 1)
    ys = np.asarray(y, dtype=np.float64).reshape(-1, 1)
    if not xs.size or not ys.size:
        raise ValueError("probability_of_improvement needs scores of both methods")
    points, intervals = _interval_estimates({"x,y": (xs, ys)}, improvement_probability)
    low, high = np.asarray(intervals["x,y"]).reshape(2, -1)[:, 0]
    return Estimate(float(np.asarray(points["x,y"]).ravel()[0]), float(low), float(high))


BANDS = ("ci", "std")  # a curve's band over seeds: the mean's 95% bootstrap interval, or ± std


def mean_interval(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per column of ``values`` (runs, points): the mean over runs and its 95% bootstrap
    interval (rliable, runs resampled), for a curve's band: three (points,) arrays."""
    values = np.asarray(values, dtype=np.float64)
    if values.shape[0] < 2:
        return values.mean(0), values.mean(0), values.mean(0)
    points, intervals = _interval_estimates({"curve": values}, lambda x: x.mean(axis=0))
    return points["curve"], intervals["curve"][0], intervals["curve"][1]
