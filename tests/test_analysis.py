"""Bias of the bound and latent-model rollout analyses on one real tiny run, and `alm analyze`."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import assert_one_line_error, train_tiny_run

from alm_offline.core.losses import lower_bound_estimate
from alm_offline.runtime.envs import make_env
from alm_offline.runtime.rollout import run_episode
from alm_offline.tools.analysis import (
    ACCURACY_THRESHOLD,
    AnalysisError,
    bias_analysis,
    deterministic,
    learned_rewards,
    monte_carlo_returns,
    rollout_analysis,
)
from alm_offline.training.checkpoint import checkpoint_path, load_agent
from cli import alm


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    return train_tiny_run(tmp_path_factory.mktemp("analysis") / "run")


@pytest.fixture(scope="module")
def loaded(run_dir):
    agent, cfg, _ = load_agent(run_dir)
    return agent, cfg


def real_observations(agent, cfg, n: int = 12) -> torch.Tensor:
    """Up to n real states of the deterministic policy, then random ones: (n, D)."""
    env = make_env(cfg.env, seed=5)
    try:
        obs = run_episode(deterministic(agent), env, seed=5, max_steps=n).observations[:n]
    finally:
        env.close()
    extra = np.random.default_rng(0).normal(size=(n - len(obs), obs.shape[1]))
    return torch.as_tensor(np.concatenate([obs, extra]), dtype=torch.float32)


def test_monte_carlo_returns_by_hand():
    # G2 = 3, G1 = 2 + 0.5 * 3 = 3.5, G0 = 1 + 0.5 * 3.5 = 2.75
    np.testing.assert_allclose(monte_carlo_returns(np.array([1.0, 2.0, 3.0]), 0.5), [2.75, 3.5, 3])
    np.testing.assert_allclose(monte_carlo_returns(np.array([4.0]), 0.9), [4.0])
    assert monte_carlo_returns(np.zeros(0), 0.9).shape == (0,)
    with pytest.raises(AnalysisError):
        monte_carlo_returns(np.zeros((2, 2)), 0.9)


@pytest.mark.slow
def test_lower_bound_estimate_matches_a_per_state_loop(loaded):
    agent, cfg = loaded
    wm, gamma, coef, horizon = agent.wm, 0.9, 0.3, 3
    obs = real_observations(agent, cfg)
    estimate = lower_bound_estimate(wm, obs.unsqueeze(0), horizon, gamma, coef)  # one seed
    assert estimate.shape == (1, len(obs))
    expected = []
    with torch.no_grad():
        for i in range(len(obs)):
            z = wm.encode(obs[None, i : i + 1])[0]  # (S=1, 1, Z)
            total = 0.0
            for t in range(horizon):
                a = wm.pi(z)
                z_next = wm.next(z, a)[0]
                logits = wm.logits(z, a, z_next)[0, 0]
                step = wm.reward(z, a)[0, 0, 0] + coef * (logits[1] - logits[0])
                total += gamma**t * float(step)
                z = z_next
            q = wm.q(z, wm.pi(z))  # (2, 1, 1, 1): twin, seed, state, 1
            total += gamma**horizon * float(torch.minimum(q[0], q[1]))
            expected.append(total)
    np.testing.assert_allclose(estimate[0].numpy(), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="horizon"):
        lower_bound_estimate(wm, obs.unsqueeze(0), 0, gamma, coef)


@pytest.mark.slow
def test_bias_analysis_states_returns_and_normalisation(loaded):
    agent, cfg = loaded
    result = bias_analysis(agent, cfg, max_start_steps=20, min_states=50, seed=7)
    n = result.n_states
    assert n >= 50 and result.horizon == cfg.agent.seq_len and result.gamma == cfg.agent.gamma
    for array in (result.mc_returns, result.estimates, result.normalized_bias):
        assert array.shape == (n,) and np.all(np.isfinite(array))
    assert result.step_index.max() < 20
    assert result.episodes == len(result.episode_lengths) == result.episode_index.max() + 1
    kept = np.minimum(result.episode_lengths, 20)
    assert kept.sum() == n and kept[:-1].sum() < 50  # stopped as soon as it had enough

    # episode 0 again: MC returns recomputed directly, estimates recomputed in one batch
    env = make_env(cfg.env, seed=7)
    try:
        episode = run_episode(deterministic(agent), env, seed=7)
    finally:
        env.close()
    assert episode.length == result.episode_lengths[0]
    keep = min(episode.length, 20)
    gamma, rewards = cfg.agent.gamma, episode.rewards
    direct = [
        sum(gamma ** (k - t) * rewards[k] for k in range(t, len(rewards))) for t in range(keep)
    ]
    first = result.episode_index == 0
    np.testing.assert_allclose(result.mc_returns[first], direct, rtol=1e-10)
    again = lower_bound_estimate(
        agent.wm,
        torch.as_tensor(episode.observations[:keep]).unsqueeze(0),  # the one seed
        cfg.agent.seq_len,
        gamma,
        cfg.agent.classifier_coef,
    )
    assert again.shape == (1, keep)
    np.testing.assert_allclose(result.estimates[first], again[0].numpy(), rtol=1e-5, atol=1e-5)

    bias = result.estimates - result.mc_returns
    scale = abs(result.mc_returns.mean())
    np.testing.assert_allclose(result.normalized_bias, bias / scale, rtol=1e-12)
    assert result.bias_mean == pytest.approx(bias.mean())
    assert result.bias_std == pytest.approx(bias.std())
    assert result.normalized_bias_mean == pytest.approx(result.bias_mean / scale)
    assert result.normalized_bias_std == pytest.approx(result.bias_std / scale)

    summary = json.loads(json.dumps(result.as_dict()))
    assert summary["n_states"] == n and len(summary["samples"]["mc_return"]) == min(n, 256)

    exact = bias_analysis(agent, cfg, episodes=2, max_start_steps=5, seed=7)
    assert exact.episodes == 2 and exact.n_states == sum(min(x, 5) for x in exact.episode_lengths)
    with pytest.raises(AnalysisError):
        bias_analysis(agent, cfg, episodes=0)


@pytest.mark.slow
def test_rollout_reproduces_the_model_step_by_step(loaded):
    agent, cfg = loaded
    horizon = 15
    result = rollout_analysis(agent, cfg, horizon=horizon, seed=3, coords=2)
    t, z_dim = result.steps, cfg.agent.latent_dim
    assert 1 <= t <= horizon and result.ended_early == (t < horizon)
    assert result.observations.shape == (t + 1, agent.obs_dim)
    assert result.actions.shape == (t, agent.action_dim)
    assert result.true_latents.shape == result.predicted_latents.shape == (t + 1, z_dim)
    assert result.errors.shape == result.relative_errors.shape == (t + 1,)
    assert result.true_coords.shape == result.predicted_coords.shape == (t + 1, 2)
    assert result.errors[0] == 0.0
    assert np.all(np.isfinite(result.errors)) and np.all(result.errors[1:] > 0)  # model != encoder
    np.testing.assert_allclose(result.relative_errors, result.errors / result.latent_norm_mean)

    with torch.no_grad():
        obs = torch.as_tensor(result.observations)
        true = agent.wm.encode(obs.unsqueeze(0))[0][0]  # the one seed's (T+1, Z)
        z, predicted = true[0], [true[0]]
        for a in torch.as_tensor(result.actions):
            # one step of one state: z (S=1, 1, Z), a (S=1, 1, A)
            z = agent.wm.next(z.reshape(1, 1, -1), a.reshape(1, 1, -1))[0][0, 0]
            predicted.append(z)
    np.testing.assert_allclose(result.true_latents, true.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(
        result.predicted_latents, torch.stack(predicted).numpy(), rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(
        result.errors,
        np.linalg.norm(torch.stack(predicted).numpy() - true.numpy(), axis=1),
        rtol=1e-4,
        atol=1e-5,
    )

    k = result.first_accurate_steps
    assert 0 <= k <= t and np.all(result.relative_errors[: k + 1] <= ACCURACY_THRESHOLD)
    assert k == t or result.relative_errors[k + 1] > ACCURACY_THRESHOLD
    assert json.loads(json.dumps(result.as_dict()))["steps"] == t
    with pytest.raises(AnalysisError, match="horizon"):
        rollout_analysis(agent, cfg, horizon=0)


def read_png(path: Path) -> np.ndarray:
    image = matplotlib.image.imread(path)
    assert image.shape[:2] == (400, 1000)  # figsize 10 x 4 at dpi 100
    assert image[..., :3].std() > 0.01  # not blank
    return image


@pytest.mark.slow
def test_cli_bias_writes_json_and_png(run_dir):
    result = CliRunner().invoke(
        alm, ["analyze", "bias", str(run_dir), "--json", "--min-states", "200"]
    )
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    out = run_dir / "analysis"
    stored = json.loads((out / "bias.json").read_text())
    assert printed == stored
    assert stored["n_states"] >= 200 and stored["env"] == "InvertedPendulum-v5"
    assert stored["updates"] == 200 and stored["checkpoint"] == str(checkpoint_path(run_dir))
    for key in ("bias_mean", "bias_std", "normalized_bias_mean", "normalized_bias_std"):
        assert isinstance(stored[key], float)
    assert stored["files"] == {"json": str(out / "bias.json"), "png": str(out / "bias.png")}
    read_png(out / "bias.png")
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files


@pytest.mark.slow
def test_cli_rollout_from_a_checkpoint_file_and_out(run_dir, tmp_path):
    out = tmp_path / "figs"
    result = CliRunner().invoke(
        alm,
        ["analyze", "rollout", str(checkpoint_path(run_dir)), "--horizon", "10", "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    assert (
        "stays within relative error" in result.stdout and str(out / "rollout.png") in result.stdout
    )
    stored = json.loads((out / "rollout.json").read_text())
    assert stored["horizon"] == 10 and 1 <= stored["steps"] <= 10
    assert len(stored["errors"]) == stored["steps"] + 1 and stored["errors"][0] == 0.0
    assert np.array(stored["true_coords"]).shape == (stored["steps"] + 1, 3)
    read_png(out / "rollout.png")

    # default out dir of a checkpoint file: its run dir's analysis/
    result = CliRunner().invoke(
        alm, ["analyze", "rollout", str(checkpoint_path(run_dir)), "--horizon", "10", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == json.loads(
        (run_dir / "analysis" / "rollout.json").read_text()
    )


@pytest.mark.slow
def test_cli_bad_input_is_one_line(run_dir, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    for command in ("bias", "rollout"):
        result = CliRunner().invoke(alm, ["analyze", command, str(empty)])
        assert_one_line_error(result, "no checkpoint")
    result = CliRunner().invoke(alm, ["analyze", "rollout", str(run_dir), "--horizon", "0"])
    assert_one_line_error(result, "horizon must be at least 1")
    result = CliRunner().invoke(alm, ["analyze", "bias", str(run_dir), "--episodes", "0"])
    assert_one_line_error(result, "episodes must be at least 1")
    assert not (tmp_path / "empty" / "analysis").exists()


@pytest.mark.slow
def test_rollout_from_a_later_state_is_the_same_trajectory_shifted(loaded):
    agent, cfg = loaded
    whole = rollout_analysis(agent, cfg, horizon=4, seed=5)
    later = rollout_analysis(agent, cfg, horizon=2, seed=5, start=2)
    np.testing.assert_array_equal(later.observations, whole.observations[2:])
    np.testing.assert_array_equal(later.actions, whole.actions[2:])
    assert later.errors[0] == 0.0  # the unroll starts from the encoding of state 2
    with pytest.raises(AnalysisError, match="before start=1000"):
        rollout_analysis(agent, cfg, horizon=2, seed=5, start=1000)


@pytest.mark.slow
def test_mc_returns_use_the_rewards_the_agent_learned(loaded):
    _, cfg = loaded
    rewards = np.array([1.0, -2.0, 5.0])
    assert learned_rewards(rewards, cfg) is rewards  # the paper's main method: raw rewards
    shifted = replace(cfg, agent=replace(cfg.agent, log_reward_shift=10.0))
    np.testing.assert_allclose(learned_rewards(rewards, shifted), 10.0 * np.log1p(rewards / 10.0))
