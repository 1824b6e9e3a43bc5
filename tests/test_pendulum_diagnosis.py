"""benchmarks/pendulum_diagnosis.py's control check (issue 15): the LQR gains of the
linearised InvertedPendulum-v5 stabilise it, the same gains with the cart-position gain
flipped leave a growing mode, and a policy's gains are read back from its actions."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import load_benchmark

diagnosis = load_benchmark("pendulum_diagnosis")


@pytest.fixture(scope="module")
def linear_env():
    return diagnosis.linearised("InvertedPendulum-v5")


def test_lqr_stabilises_and_a_flipped_cart_gain_does_not(linear_env) -> None:
    a, b = linear_env
    assert a.shape == (4, 4) and b.shape == (4, 1)
    assert abs(b[2, 0]) > 0  # force accelerates the cart
    assert np.abs(np.linalg.eigvals(a)).max() > 1.0  # upright without control falls
    lqr = diagnosis.lqr_gains(a, b)
    assert lqr[1] > 0 and lqr[0] > 0  # push the way the pole leans, and the cart is off centre
    assert diagnosis.growth(a, b, lqr) < 0.99
    flipped = lqr * np.array([-1.0, 1.0, 1.0, 1.0])
    assert diagnosis.growth(a, b, flipped) > 1.0


def test_policy_gains_recover_a_linear_policy() -> None:
    rng = np.random.default_rng(0)
    gains, offset, scale = np.array([0.5, 7.0, 1.0, 1.5]), 0.2, 3.0
    visited = []
    for _ in range(200):
        obs = rng.normal(size=4)
        visited.append((obs, float((gains @ obs + offset) / scale)))
    fit = diagnosis.policy_gains(visited, scale)
    assert np.allclose(fit, [*gains, offset], atol=1e-8)
