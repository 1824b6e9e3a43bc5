"""d3rlpy's offline baselines, one row each: the name ``method=`` takes, the d3rlpy config
the row builds with d3rlpy's own D4RL settings, and the data it refuses.

The one place a baseline is named: ``config.BASELINE_METHODS`` is this table's keys and
``training/baselines.py`` builds and checks through it. A new baseline is one row here (and
a test). The settings are those of d3rlpy's ``reproductions/offline/*.py`` (TD3+BC: alpha 2.5,
observation standardisation; IQL: expectile 0.7, temperature 3, return-based reward scale
x1000, cosine actor schedule over the run; CQL: 3x256 networks, conservative weight 5, 10 on
``*medium-v0``, fixed alpha); BC, which has no reproduction there, uses ``BCConfig``'s
defaults. Nothing here imports d3rlpy: each row's ``make`` takes the module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Baseline:
    """One d3rlpy baseline."""

    # (d3rlpy module, the run's updates, the dataset's name) -> d3rlpy's config object
    make: Callable[[Any, int, str], Any]
    # the episode returns -> why the data cannot train it (None: it can)
    refuses: Callable[[np.ndarray], str | None] = lambda returns: None


def _td3_plus_bc(d3rlpy: Any, steps: int, dataset_name: str) -> Any:
    return d3rlpy.algos.TD3PlusBCConfig(
        actor_learning_rate=3e-4,
        critic_learning_rate=3e-4,
        batch_size=256,
        target_smoothing_sigma=0.2,
        target_smoothing_clip=0.5,
        alpha=2.5,
        update_actor_interval=2,
        observation_scaler=d3rlpy.preprocessing.StandardObservationScaler(),
    )


def _iql(d3rlpy: Any, steps: int, dataset_name: str) -> Any:
    schedule = d3rlpy.optimizers.CosineAnnealingLRFactory(T_max=steps)
    return d3rlpy.algos.IQLConfig(
        actor_learning_rate=3e-4,
        critic_learning_rate=3e-4,
        actor_optim_factory=d3rlpy.optimizers.AdamFactory(lr_scheduler_factory=schedule),
        batch_size=256,
        weight_temp=3.0,
        max_weight=100.0,
        expectile=0.7,
        reward_scaler=d3rlpy.preprocessing.ReturnBasedRewardScaler(multiplier=1000.0),
    )


def _iql_refuses(returns: np.ndarray) -> str | None:
    """IQL's reward scale divides by the spread of episode returns."""
    if float(returns.max() - returns.min()) == 0.0:
        return (
            "iql scales rewards by the spread of episode returns, and every episode of this "
            f"dataset returns {returns[0]:g}"
        )
    return None


def _cql(d3rlpy: Any, steps: int, dataset_name: str) -> Any:
    encoder = d3rlpy.models.encoders.VectorEncoderFactory([256, 256, 256])
    return d3rlpy.algos.CQLConfig(
        actor_learning_rate=1e-4,
        critic_learning_rate=3e-4,
        temp_learning_rate=1e-4,
        actor_encoder_factory=encoder,
        critic_encoder_factory=encoder,
        batch_size=256,
        n_action_samples=10,
        alpha_learning_rate=0.0,
        conservative_weight=10.0 if "medium-v0" in dataset_name else 5.0,
    )


BASELINES: dict[str, Baseline] = {
    "bc": Baseline(lambda d3rlpy, steps, dataset_name: d3rlpy.algos.BCConfig()),
    "td3+bc": Baseline(_td3_plus_bc),
    "iql": Baseline(_iql, _iql_refuses),
    "cql": Baseline(_cql),
}
