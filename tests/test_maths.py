"""The maths of ALM against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
from torch import distributions as td

from alm_offline.core.losses import (
    behaviour_cloning,
    classifier_reward,
    gaussian_kl,
    lambda_returns,
)
from alm_offline.core.networks import (
    ACTION_EPS,
    STD_MAX,
    STD_MIN,
    TwinCritic,
    gaussian_params,
    sample_action,
    seed_generators,
    straight_through_clamp,
)


def test_lambda_returns_small_example():
    rewards = torch.tensor([[1.0, 2.0, 3.0]])  # (S=1, K=3): time at dim 1
    next_values = torch.tensor([[10.0, 20.0, 30.0]])
    # R2 = 3 + .9*30 = 30; R1 = 2 + .9*(.5*20 + .5*30) = 24.5; R0 = 1 + .9*(.5*10 + .5*24.5)
    expected = torch.tensor([[16.525, 24.5, 30.0]])
    got = lambda_returns(rewards, next_values, gamma=0.9, lambda_=0.5)
    torch.testing.assert_close(got, expected)


def test_lambda_returns_limits():
    rewards = torch.tensor([[1.0, 1.0, 1.0]])  # (S=1, K=3)
    values = torch.tensor([[5.0, 6.0, 7.0]])
    # lambda = 0: one-step TD targets r_t + g V_{t+1}
    torch.testing.assert_close(lambda_returns(rewards, values, 0.5, 0.0), 1.0 + 0.5 * values)
    # lambda = 1: Monte-Carlo over the horizon, bootstrapped at the end
    mc0 = 1 + 0.5 * (1 + 0.5 * (1 + 0.5 * 7.0))
    assert lambda_returns(rewards, values, 0.5, 1.0)[0, 0].item() == pytest.approx(mc0)


def test_gaussian_kl_hand_value_and_torch():
    # KL(N(0,1) || N(1,2^2)) = log 2 + (1 + 1) / 8 - 1/2
    kl = gaussian_kl(torch.zeros(1), torch.ones(1), torch.ones(1), 2 * torch.ones(1))
    assert kl.item() == pytest.approx(math.log(2) + 0.25 - 0.5, rel=1e-6)
    g = torch.Generator().manual_seed(0)
    mp, mq = torch.randn(4, 7, generator=g), torch.randn(4, 7, generator=g)
    sp, sq = torch.rand(4, 7, generator=g) + 0.1, torch.rand(4, 7, generator=g) + 0.1
    reference = td.kl_divergence(
        td.Independent(td.Normal(mp, sp), 1), td.Independent(td.Normal(mq, sq), 1)
    )
    torch.testing.assert_close(gaussian_kl(mp, sp, mq, sq), reference)
    assert torch.all(gaussian_kl(mp, sp, mp, sp).abs() < 1e-6)


def test_classifier_reward_is_log_odds():
    logits = torch.tensor([[0.2, 1.5], [3.0, -1.0]])
    reward = classifier_reward(logits)
    torch.testing.assert_close(reward, torch.tensor([1.3, -4.0]))
    prob_real = logits.softmax(-1)[:, 1]
    torch.testing.assert_close(reward, torch.log(prob_real / (1 - prob_real)))


def test_straight_through_clamp_values_and_gradient():
    x = torch.tensor([-2.0, -0.5, 0.0, 0.7, 5.0], requires_grad=True)
    y = straight_through_clamp(x)
    torch.testing.assert_close(
        y.detach(), torch.tensor([-1 + ACTION_EPS, -0.5, 0.0, 0.7, 1 - ACTION_EPS])
    )
    (y * torch.arange(5.0)).sum().backward()
    torch.testing.assert_close(x.grad, torch.arange(5.0))  # identity gradient, clamped or not


def test_sample_action_noise_is_clipped():
    torch.manual_seed(0)
    mean = torch.zeros(10_000, 3)
    action = sample_action(mean, std=5.0, clip=0.3)
    assert action.abs().max().item() == pytest.approx(0.3)
    unclipped = sample_action(mean, std=5.0, clip=None)
    assert unclipped.abs().max().item() == pytest.approx(1 - ACTION_EPS)


def test_gaussian_params_bounds():
    raw = torch.tensor([[1000.0, -1000.0, 0.0, -1e4, 1e4, 0.5]])
    mean, std = gaussian_params(raw)
    assert mean.abs().max().item() <= 30.0
    assert mean[0, 0].item() == pytest.approx(30.0, abs=1e-3)
    assert torch.all(std >= STD_MIN) and torch.all(std <= STD_MAX + 1e-3)  # soft bounds
    assert std[0, 0].item() == pytest.approx(STD_MIN, abs=1e-3)
    assert std[0, 1].item() == pytest.approx(STD_MAX, abs=1e-3)
    # softly bounded: a mid-range raw value passes almost unchanged
    assert gaussian_params(torch.tensor([[0.0, 2.0]]))[1].item() == pytest.approx(2.0, abs=0.2)


def test_behaviour_cloning_matches_gaussian_log_likelihood():
    mu, a, s = torch.tensor([[0.1, -0.4]]), torch.tensor([[0.3, 0.2]]), 0.7
    nll = -td.Normal(mu, s).log_prob(a).sum(-1)
    const = mu.shape[-1] * (math.log(s) + 0.5 * math.log(2 * math.pi))
    torch.testing.assert_close(behaviour_cloning(mu, a) / (2 * s**2), nll - const)
    assert behaviour_cloning(mu, a).item() == pytest.approx(0.2**2 + 0.6**2)


def test_twin_critic_members_are_independent_linear_stacks():
    torch.manual_seed(0)
    seeds = 2  # two seeds, each with its own twin: weights (S, 2, in, out)
    critic = TwinCritic(seed_generators([0, 1]), latent_dim=4, action_dim=2, hidden_dim=8)
    z, a = torch.randn(seeds, 5, 4), torch.randn(seeds, 5, 2)
    out = critic(z, a)
    assert out.shape == (2, seeds, 5, 1)  # twin dim first, then seed
    for s in range(seeds):
        assert not torch.allclose(out[0, s], out[1, s])
    x = torch.cat([z, a], -1)
    fc1, norm, fc2, last = critic.fc1, critic.norm, critic.fc2, critic.out
    for s in range(seeds):
        for m in range(2):  # recompute seed s's member m with plain ops
            h = x[s] @ fc1.weight[s, m] + fc1.bias[s, m]
            h = torch.nn.functional.layer_norm(h, (8,)) * norm.weight[s, m] + norm.bias[s, m]
            h = torch.nn.functional.elu(torch.tanh(h) @ fc2.weight[s, m] + fc2.bias[s, m])
            torch.testing.assert_close(out[m, s], h @ last.weight[s, m] + last.bias[s, m])
    # sequence shapes pass through
    z_seq, a_seq = torch.randn(seeds, 3, 5, 4), torch.randn(seeds, 3, 5, 2)
    assert critic(z_seq, a_seq).shape == (2, seeds, 3, 5, 1)
