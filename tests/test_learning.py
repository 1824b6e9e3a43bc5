"""ALM learns a real MuJoCo task in a few CPU minutes (configs/quick.yaml)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from alm_offline.runtime.envs import make_env
from alm_offline.runtime.rollout import evaluate
from cli import alm

# trains the quick config's five seeds for about 6 CPU minutes: `make test-learning`, apart
# from `make test` (whose 15-minute budget it would take half of, docs/seeds.md)
pytestmark = [pytest.mark.slow, pytest.mark.learning]

# InvertedPendulum-v5 over 5 seeded episodes: uniform random actions score about 5,
# doing nothing (zero torque) about 26. The trained agent must beat both clearly.
MARGIN_OVER_RANDOM = 8.0


def test_quick_config_learns_inverted_pendulum_on_five_seeds_in_one_process(tmp_path):
    """Learning parity of batched seeds (docs/seeds.md): the quick config with seeds=1..5 in
    one process balances the pole (best checkpoint >= 950) on at least four seeds, as
    one-seed runs do, and every seed beats the random and zero-torque policies."""
    env = make_env("InvertedPendulum-v5")
    rng = np.random.default_rng(0)
    random_return = evaluate(
        lambda o: rng.uniform(-1, 1, 1).astype(np.float32), env, 5, seed=1
    ).mean()
    zero_return = evaluate(lambda o: np.zeros(1, np.float32), env, 5, seed=1).mean()
    assert random_return < 10 and zero_return < 30

    run_dir = tmp_path / "quick"
    result = CliRunner().invoke(
        alm,
        ["train-online", "--config", "quick", "--quiet", "seeds=1,2,3,4,5", f"run_dir={run_dir}"],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["seeds"] == [1, 2, 3, 4, 5] and summary["env_steps"] == 6000
    best = summary["best_eval_return_mean_seeds"]
    assert sum(b >= 950 for b in best) >= 4, best
    for seed in range(1, 6):
        seed_summary = json.loads((run_dir / f"s{seed}" / "summary.json").read_text())
        assert seed_summary["env_steps"] == 6000 and seed_summary["seed"] == seed
        assert seed_summary["best_eval_return_mean"] > MARGIN_OVER_RANDOM * random_return
        assert seed_summary["best_eval_return_mean"] > zero_return + 10
        assert (run_dir / f"s{seed}" / "checkpoints" / "best.pt").is_file()
    assert "mean over seeds" in result.output and "next: alm eval" in result.output
