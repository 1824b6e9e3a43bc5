"""The bootstrap's aggregates (tools/stats.py) are rliable's, to the bit: the IQM and the
probability of improvement computed as array operations equal ``rliable.metrics``' own on
score sets with ties, one run and uneven run counts, so every interval is rliable's."""

from __future__ import annotations

import numpy as np
import pytest
from rliable import metrics

from alm_offline.tools.stats import (
    improvement_probability,
    iqm,
    probability_of_improvement,
    summarise_seeds,
)


def score_sets(count: int = 400) -> list[tuple[np.ndarray, np.ndarray]]:
    """(runs_x, 1) and (runs_y, 1) score pairs, every other one rounded to make ties."""
    rng = np.random.default_rng(0)
    pairs = []
    for index in range(count):
        x = rng.normal(50, 20, size=(1 + index % 11, 1))
        y = rng.normal(50, 20, size=(1 + index % 7, 1))
        pairs.append((np.round(x), np.round(y)) if index % 2 else (x, y))
    return pairs


def test_the_iqm_is_rliables_to_the_bit():
    for x, _ in score_sets():
        assert iqm(x) == metrics.aggregate_iqm(x)
    assert iqm(np.array([[1.0], [2.0], [3.0], [100.0]])) == 2.5  # the middle two


def test_the_probability_of_improvement_is_rliables_to_the_bit():
    for x, y in score_sets():
        assert improvement_probability(x, y) == metrics.probability_of_improvement(x, y)
        assert improvement_probability(x, x) == 0.5
    above = np.array([[3.0], [4.0]])
    assert improvement_probability(above, np.array([[1.0], [3.0]])) == pytest.approx(0.875)


def test_intervals_are_seeded_and_leave_the_callers_rng_alone():
    np.random.seed(123)
    expected_draw = np.random.rand()
    np.random.seed(123)
    first = summarise_seeds([10.0, 12.0, 30.0, 11.0, 15.0])
    assert np.random.rand() == expected_draw
    assert summarise_seeds([10.0, 12.0, 30.0, 11.0, 15.0]) == first
    assert first.iqm.value == pytest.approx(np.mean([11.0, 12.0, 15.0]))
    assert first.iqm.low <= first.iqm.value <= first.iqm.high
    win = probability_of_improvement([5.0, 6.0, 7.0], [1.0, 2.0, 3.0])
    assert (win.value, win.low, win.high) == (1.0, 1.0, 1.0)
