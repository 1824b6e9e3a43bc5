"""The maths of ALM against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
from torch import distributions as td

from alm_offline.core.losses import (
    actor_svg_loss,
    actor_td3_loss,
    behaviour_log_ratio,
    behaviour_policy_loss,
    classifier_reward,
    gaussian_kl,
    gaussian_log_prob,
    lambda_returns,
    likelihood_bc_loss,
)
from alm_offline.core.networks import (
    ACTION_EPS,
    POLICY_LOG_STD,
    STD_MAX,
    STD_MIN,
    TwinCritic,
    WorldModel,
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


def test_gaussian_log_prob_by_hand():
    x, mu = torch.tensor([[0.3, -0.2]]), torch.tensor([[0.1, 0.2]])
    std = torch.tensor([[0.5, 0.1]])
    by_hand = sum(
        -0.5 * ((xi - mi) / si) ** 2 - math.log(si) - 0.5 * math.log(2 * math.pi)
        for xi, mi, si in ((0.3, 0.1, 0.5), (-0.2, 0.2, 0.1))
    )  # -0.3058 + (-8 + 2.3026 - 0.9189)
    assert gaussian_log_prob(x, mu, std).item() == pytest.approx(by_hand, abs=1e-5)
    assert by_hand == pytest.approx(-6.9221, abs=1e-4)
    # a float std is every dim's
    torch.testing.assert_close(
        gaussian_log_prob(x, mu, 0.5), td.Normal(mu, 0.5).log_prob(x).sum(-1)
    )


def test_behaviour_log_ratio_by_hand_and_its_expectation_is_minus_the_kl():
    a = torch.tensor([0.3])
    ratio = behaviour_log_ratio(
        a, torch.tensor([0.1]), torch.tensor([0.5]), torch.tensor([0.2]), 0.1
    )
    # log N(0.3; 0.1, 0.5^2) - log N(0.3; 0.2, 0.1^2) = (-0.08 - log 0.5) - (-0.5 - log 0.1)
    assert ratio.item() == pytest.approx(-0.08 + math.log(0.5) * -1 + 0.5 + math.log(0.1), abs=1e-5)
    assert ratio.item() == pytest.approx(-1.1894, abs=1e-4)
    # with a ~ pi_phi its mean is -KL(pi_phi || pi_b): the term the paper's bound carries
    gen = torch.Generator().manual_seed(0)
    mp, sp = torch.tensor([0.2, -0.1]), torch.tensor([0.1, 0.3])
    mb, sb = torch.tensor([0.0, 0.1]), torch.tensor([0.4, 0.2])
    actions = mp + sp * torch.randn(200_000, 2, generator=gen)
    estimate = behaviour_log_ratio(actions, mb, sb, mp, sp).mean()
    assert estimate.item() == pytest.approx(-gaussian_kl(mp, sp, mb, sb).item(), abs=0.01)


def zeroed_head(net: torch.nn.Module) -> None:
    """Zero an MLP's last layer: its output is 0 whatever the input."""
    last = [m for m in net.modules() if hasattr(m, "weight")][-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()


def tiny_world_model(**switches) -> WorldModel:
    torch.manual_seed(0)
    return WorldModel(2, 2, latent_dim=3, hidden_dim=8, model_hidden_dim=8, **switches)


def test_likelihood_bc_loss_is_the_policys_negative_log_likelihood_summed_over_steps():
    wm = tiny_world_model()
    zeroed_head(wm.actor.net)  # pi(z) = tanh(0) = 0
    latents = torch.randn(1, 2, 4, 3)  # (S, K, B, Z)
    action = torch.tensor([0.3, -0.4]).expand(1, 2, 4, 2)
    terms = likelihood_bc_loss(wm, latents, action, 0.1)
    # per step: (0.09 + 0.16) / (2 * 0.01) + 2 log(0.1 sqrt(2 pi)) = 12.5 - 1.8379
    per_step = 12.5 + 2 * (math.log(0.1) + 0.5 * math.log(2 * math.pi))
    assert terms.per_step.item() == pytest.approx(per_step, abs=1e-4)
    assert terms.loss.item() == pytest.approx(2 * per_step, abs=1e-4)  # summed over K = 2
    assert terms.loss.shape == (1,)


def test_behaviour_policy_loss_fits_pi_b_and_leaves_the_latents_alone():
    wm = tiny_world_model(behaviour_policy=True)
    zeroed_head(wm.behaviour.net)  # mean tanh(0) = 0, log-std at the middle of its range
    z = torch.randn(1, 5, 3, requires_grad=True)
    action = torch.tensor([0.2, -0.1]).expand(1, 5, 2)
    terms = behaviour_policy_loss(wm, z, action)
    log_std = sum(POLICY_LOG_STD) / 2
    by_hand = sum(
        a**2 / (2 * math.exp(2 * log_std)) + log_std + 0.5 * math.log(2 * math.pi)
        for a in (0.2, -0.1)
    )
    assert terms.nll.item() == pytest.approx(by_hand, rel=1e-5)
    terms.loss.sum().backward()
    assert z.grad is None  # pi_b shapes no encoder
    assert wm.behaviour.net[-1].weight.grad.abs().sum() > 0


def test_behaviour_kl_term_enters_the_actors_returns_at_the_rollouts_actions():
    """K = 1: the lambda-return is r_0 + w ratio_0 + g V_1, so the loss moves by
    -w mean(ratio_0), ratio_0 = log pi_b(a_0|z_0) - log pi(a_0|z_0) at the action drawn."""
    wm = tiny_world_model(behaviour_policy=True)
    z = torch.randn(1, 6, 3)
    kwargs = dict(horizon=1, std=0.2, stddev_clip=0.3, gamma=0.9, lambda_=0.95, classifier_coef=0.1)
    torch.manual_seed(5)
    plain = actor_svg_loss(wm, z, **kwargs)
    torch.manual_seed(5)
    with_term = actor_svg_loss(wm, z, behaviour_weight=2.0, **kwargs)
    torch.manual_seed(5)  # a_0 as the rollout drew it: the first draw
    mean = wm.pi(z)
    a0 = (mean + (0.2 * torch.randn_like(mean)).clamp(-0.3, 0.3)).clamp(
        -1 + ACTION_EPS, 1 - ACTION_EPS
    )
    mb, sb = wm.behaviour_policy(z)
    ratio = td.Normal(mb, sb).log_prob(a0).sum(-1) - td.Normal(mean, 0.2).log_prob(a0).sum(-1)
    assert with_term.behaviour_kl.item() == pytest.approx(-ratio.mean().item(), abs=1e-5)
    assert (with_term.loss - plain.loss).item() == pytest.approx(
        -2.0 * ratio.mean().item(), abs=1e-4
    )
    assert plain.behaviour_kl.item() == 0.0
    torch.testing.assert_close(with_term.imagined_reward, plain.imagined_reward)


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


def test_behaviour_kl_term_of_the_td3_actor_at_one_sampled_action():
    wm = tiny_world_model(behaviour_policy=True)
    z = torch.randn(1, 6, 3)
    plain = actor_td3_loss(wm, z)
    torch.manual_seed(2)
    with_term = actor_td3_loss(wm, z, std=0.2, stddev_clip=0.3, behaviour_weight=0.5)
    torch.manual_seed(2)
    mean = wm.pi(z)
    a = (mean + (0.2 * torch.randn_like(mean)).clamp(-0.3, 0.3)).clamp(
        -1 + ACTION_EPS, 1 - ACTION_EPS
    )
    mb, sb = wm.behaviour_policy(z)
    ratio = td.Normal(mb, sb).log_prob(a).sum(-1) - td.Normal(mean, 0.2).log_prob(a).sum(-1)
    assert with_term.behaviour_kl.item() == pytest.approx(-ratio.mean().item(), abs=1e-5)
    assert (with_term.loss - plain.loss).item() == pytest.approx(
        -0.5 * ratio.mean().item(), abs=1e-5
    )
    assert plain.behaviour_kl.item() == 0.0
