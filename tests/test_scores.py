"""D4RL reference scores: one table, one lookup for env ids and dataset names alike."""

from __future__ import annotations

import numpy as np
import pytest

from alm_offline.scores import normalized_score, reference_scores

EXPECTED = {
    "halfcheetah": (-280.178953, 12135.0),
    "hopper": (-20.272305, 3234.3),
    "walker2d": (1.629008, 4592.3),
    "ant": (-325.6, 3879.7),
}


@pytest.mark.parametrize(
    ("name", "family"),
    [
        ("HalfCheetah-v5", "halfcheetah"),
        ("halfcheetah-medium-v2", "halfcheetah"),
        ("Hopper-v5", "hopper"),
        ("hopper-medium-v2", "hopper"),  # the env-id lookup of old missed this one
        ("mujoco/hopper/expert-v0", "hopper"),
        ("walker2d_random-v2.hdf5", "walker2d"),
        ("Ant-v5", "ant"),
        ("T-Ant-v5", None),
        ("antmaze-umaze-v2", None),
        ("InvertedPendulum-v5", None),
    ],
)
def test_reference_scores_by_family(name: str, family: str | None) -> None:
    assert reference_scores(name) == (EXPECTED[family] if family else None)


def test_normalized_score_is_d4rl_convention() -> None:
    low, high = EXPECTED["hopper"]
    scores = normalized_score(np.array([low, high, (low + high) / 2]), low, high)
    np.testing.assert_allclose(scores, [0.0, 100.0, 50.0])
    assert scores.dtype == np.float64
