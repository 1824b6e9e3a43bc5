"""`alm analyze model-kl`: the model KL's split, by hand and on real tiny runs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import TINY_OFFLINE, assert_one_line_error, train_tiny_run

from alm_offline.core.losses import gaussian_kl, gaussian_kl_split
from alm_offline.datasets import bundled_dataset_path
from alm_offline.datasets.convert import load_dataset
from alm_offline.tools.model_kl import kl_parts, model_kl, replay_transitions
from alm_offline.training.checkpoint import checkpoint_path, load_agent, read_checkpoint
from cli import alm


def test_split_by_hand_and_sums_to_the_kl():
    mean_p, std_p = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.2, 0.1]])
    mean_q, std_q = torch.tensor([[0.0, 0.0]]), torch.tensor([[0.1, 0.1]])
    mean_part, spread_part = gaussian_kl_split(mean_p, std_p, mean_q, std_q)
    assert mean_part.item() == pytest.approx(0.5 * (1.0 / 0.1) ** 2)  # 50, dim 2 adds 0
    assert spread_part.item() == pytest.approx(0.5 * (4.0 - 1.0 - math.log(4.0)), rel=1e-6)
    g = torch.Generator().manual_seed(0)
    args = [torch.randn(3, 5, 7, generator=g) for _ in range(2)]
    stds = [torch.rand(3, 5, 7, generator=g) + 0.1 for _ in range(2)]
    mean_part, spread_part = gaussian_kl_split(args[0], stds[0], args[1], stds[1])
    assert mean_part.shape == (3, 5)
    torch.testing.assert_close(
        mean_part + spread_part, gaussian_kl(args[0], stds[0], args[1], stds[1])
    )


def test_transitions_skip_episode_ends_and_wrap():
    replay = {
        "obs": torch.arange(5.0)[:, None],
        "action": torch.arange(5.0)[:, None] * 10,
        "has_next": torch.tensor([True, False, True, True, True]),
    }
    s, a, s_next = replay_transitions(replay)
    assert s[:, 0].tolist() == [0, 2, 3, 4] and a[:, 0].tolist() == [0, 20, 30, 40]
    assert s_next[:, 0].tolist() == [1, 3, 4, 0]  # the last row's next is the first
    dataset = load_dataset(str(bundled_dataset_path()))
    obs, next_obs = dataset.transition_observations()
    first = dataset.episode(0)["observations"]
    assert obs.shape == next_obs.shape == (dataset.num_steps, dataset.obs_dim)
    np.testing.assert_array_equal(obs[: len(first) - 1], first[:-1])
    np.testing.assert_array_equal(next_obs[: len(first) - 1], first[1:])
    second = dataset.episode(1)["observations"]  # after episode 0's last transition
    np.testing.assert_array_equal(obs[len(first) - 1], second[0])


@pytest.fixture(scope="module")
def online_run(tmp_path_factory):
    torch.set_num_threads(1)
    return train_tiny_run(tmp_path_factory.mktemp("model-kl") / "run")


def test_parts_match_a_transition_by_transition_computation(online_run):
    agent, _, state = load_agent(online_run)
    s, a, s_next = replay_transitions(state["replay"])
    parts = kl_parts(agent, s, a, s_next)
    wm = agent.wm
    with torch.no_grad():
        rows = [
            (
                wm.next(wm.encode(s[i : i + 1][None])[0], a[i : i + 1][None]),
                wm.encode_target(s_next[i : i + 1][None]),
            )
            for i in range(len(s))
        ]
    kls = [gaussian_kl(*model, *target).item() for model, target in rows]
    assert parts["kl"] == pytest.approx(float(np.mean(kls)), rel=1e-4)
    target_means = torch.cat([target[0][0] for _, target in rows]).double()  # (T, Z)
    model_means = torch.cat([model[0][0] for model, _ in rows]).double()
    errors = (model_means - target_means).pow(2).sum(-1).mean()
    variance = target_means.var(dim=0).sum()
    assert parts["missed"] == pytest.approx(float(errors / variance), rel=1e-4)
    latent_sd = float((variance / target_means.shape[1]).sqrt())
    assert parts["latent_sd"] == pytest.approx(latent_sd, rel=1e-4)
    assert parts["span"] == pytest.approx(latent_sd / parts["target_std"], rel=1e-6)
    assert parts["mean_part"] + parts["spread_part"] == pytest.approx(parts["kl"])


def test_cli_on_an_online_run_reads_its_replay(online_run):
    result = CliRunner().invoke(
        alm,
        ["analyze", "model-kl", str(online_run), "--which", "best", "--which", "latest", "--json"],
    )
    assert result.exit_code == 0, result.output
    best, latest = json.loads(result.stdout)
    assert latest["updates"] == read_checkpoint(checkpoint_path(online_run))["counters"]["updates"]
    assert best["updates"] <= latest["updates"]
    replay = read_checkpoint(checkpoint_path(online_run))["replay"]
    assert latest["transitions"] == int(replay["has_next"].sum())
    assert latest["kl"] > 0 and latest["target_std"] > 0 and latest["missed"] > 0


def test_cli_on_an_offline_run_reads_its_dataset(tmp_path):
    run_dir = tmp_path / "offline"
    data = str(bundled_dataset_path())
    result = CliRunner().invoke(
        alm, ["train-offline", "--dataset", data, "--quiet", *TINY_OFFLINE, f"run_dir={run_dir}"]
    )
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(alm, ["analyze", "model-kl", str(run_dir)])
    assert result.exit_code == 0, result.output
    header, _, row = result.stdout.strip().splitlines()
    assert header.startswith("| run | updates | KL |") and row.startswith(f"| {run_dir} | 60 |")
    on_own = model_kl(run_dir)
    assert on_own.transitions == load_dataset(data).num_steps
    assert model_kl(run_dir, data=data).kl == pytest.approx(on_own.kl)


def test_cli_bad_input_is_one_line(online_run, tmp_path):
    missing = CliRunner().invoke(alm, ["analyze", "model-kl", str(tmp_path / "none")])
    assert_one_line_error(missing, "no checkpoint")
    bad_data = CliRunner().invoke(
        alm, ["analyze", "model-kl", str(online_run), "--data", str(tmp_path / "x.hdf5")]
    )
    assert_one_line_error(bad_data, "x.hdf5")
