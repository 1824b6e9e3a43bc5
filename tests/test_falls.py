"""`alm analyze falls`: the fall shares by hand, the rollouts before a fall recomputed, the
termination head's predictions, on a tiny offline run on Hopper-v5 data that falls."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import TINY_OFFLINE, assert_one_line_error

from alm_offline.datasets import collect, random_policy, write_hdf5
from alm_offline.datasets.episodes import EpisodeDataset
from alm_offline.tools.falls import fall_shares, falls_analysis
from alm_offline.training.checkpoint import load_agent
from cli import alm


def test_fall_shares_by_hand() -> None:
    # episodes of 5 (falls), 2 (falls), 4 (timeout): 11 transitions, K = 3
    lengths = [5, 2, 4]
    ends = np.zeros(11, bool)
    ends[[4, 6]] = True
    truncated = np.zeros(11, bool)
    truncated[10] = True
    data = EpisodeDataset(
        observations=np.zeros((14, 1)), actions=np.zeros((11, 1)), rewards=np.zeros(11),
        terminations=ends, truncations=truncated, episode_lengths=np.array(lengths),
    )  # fmt: skip
    fall, sequence, near = fall_shares(data, 3)
    assert fall == pytest.approx(2 / 11)
    assert sequence == pytest.approx(1 / (3 + 0 + 2))  # 3 + 0 + 2 sequences, 1 ends falling
    assert near == pytest.approx((3 + 2) / 11)


@pytest.fixture(scope="module")
def falling_run(tmp_path_factory) -> tuple:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("falls")
    data = collect("Hopper-v5", random_policy(3, seed=0), steps=600, seed=0)
    path = write_hdf5(data, root / "hopper-random.hdf5")
    run_dir = root / "run"
    args = ["train-offline", "--dataset", str(path), "--quiet", *TINY_OFFLINE]
    result = CliRunner().invoke(alm, [*args, "agent.termination=learned", f"run_dir={run_dir}"])
    assert result.exit_code == 0, result.output
    return run_dir, data


def test_rollouts_before_a_fall_recomputed(falling_run) -> None:
    run_dir, data = falling_run
    facts = falls_analysis(run_dir)
    assert facts.horizon == 3 and facts.transitions == data.num_steps
    ends = np.cumsum(data.episode_lengths) - 1
    falls = ends[data.terminations[ends]]
    assert len(falls) > 10  # random actions topple the hopper
    assert facts.fall_share == pytest.approx(len(falls) / data.num_steps)
    one = facts.before_fall[0]
    assert one.k == 1 and one.states == len(falls)
    assert one.real_return == pytest.approx(float(data.rewards[falls].mean()), rel=1e-6)
    agent, _, _ = load_agent(run_dir)
    obs, _ = data.transition_observations()
    wm, seeds = agent.wm, agent.num_seeds
    with torch.no_grad():
        z = wm.encode(torch.as_tensor(obs[falls]).expand(seeds, -1, -1))[0]
        a = torch.as_tensor(data.agent_actions()[falls]).expand(seeds, -1, -1)
        reward = wm.reward(z, a).squeeze(-1)
        head = torch.sigmoid(wm.termination_logit(z, a)).mean()
    assert one.imagined_to_fall == pytest.approx(float(reward.mean()), rel=1e-5)
    assert facts.head_on_falls == pytest.approx(float(head), rel=1e-5)
    assert 0 < facts.head_elsewhere < 1


def test_cli_json_and_bad_input(falling_run, tmp_path) -> None:
    run_dir, _ = falling_run
    result = CliRunner().invoke(alm, ["analyze", "falls", str(run_dir), "--json"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    assert [item["k"] for item in row["before_fall"]] == [1, 2, 3]
    text = CliRunner().invoke(alm, ["analyze", "falls", str(run_dir)])
    assert "| k before fall |" in text.stdout and "termination head: p(end)" in text.stdout
    missing = CliRunner().invoke(alm, ["analyze", "falls", str(tmp_path / "none")])
    assert_one_line_error(missing, "none")
