"""App. A.7 weighed as the bound weighs it: the BC term's weight, its indexing, the actor's
per-step weights and the TD3+BC-normalised Q of the ablation, against hand-computed values."""

from __future__ import annotations

import pytest
import torch
from torch import distributions as td

from alm_offline.config import AgentConfig, ConfigError, load_config
from alm_offline.core.agent import bc_weight_in_loss
from alm_offline.core.losses import (
    actor_step_weights,
    actor_svg_loss,
    bc_rollout_steps,
    lambda_returns,
    td3_q_objective,
)
from alm_offline.core.networks import ACTION_EPS, WorldModel


def tiny_world_model() -> WorldModel:
    torch.manual_seed(0)
    return WorldModel(2, 2, latent_dim=3, hidden_dim=8, model_hidden_dim=8, behaviour_policy=True)


def test_actor_step_weights_by_hand_and_through_the_lambda_returns():
    # K = 3, g = 0.9, lambda = 0.5: g^j (sum_{i<=j} lambda^i) / K
    by_hand = [1 / 3, 0.9 * 1.5 / 3, 0.81 * 1.75 / 3]
    weights = actor_step_weights(0.9, 0.5, 3)
    assert weights.tolist() == pytest.approx(by_hand, rel=1e-6)
    # the same weights as d(-loss)/d r_j of the loss actor_svg_loss builds
    rewards = torch.zeros(1, 3, 1, requires_grad=True)
    returns = lambda_returns(rewards, torch.zeros(1, 3, 1), 0.9, 0.5)
    objective = (0.9 ** torch.arange(3.0)).unsqueeze(-1) * returns
    objective.mean().backward()
    assert rewards.grad.flatten().tolist() == pytest.approx(by_hand, rel=1e-6)


def test_bc_rollout_steps_pick_a0_to_aK_minus_1_or_a1_to_aK():
    steps = torch.arange(4)  # a_0..a_3 of a K = 3 rollout
    assert steps[bc_rollout_steps("t")].tolist() == [0, 1, 2]
    assert steps[bc_rollout_steps("t+1")].tolist() == [1, 2, 3]
    with pytest.raises(ValueError, match="bc index"):
        bc_rollout_steps("t+2")


def draw(mean: torch.Tensor, std: float) -> torch.Tensor:
    """sample_action's draw, written out: mean + clip(std eps, +-0.3), clamped to the box."""
    noise = (std * torch.randn_like(mean)).clamp(-0.3, 0.3)
    return (mean + noise).clamp(-1 + ACTION_EPS, 1 - ACTION_EPS)


def test_the_bounds_indexing_puts_step_0s_term_at_a1():
    """K = 1, index t+1: R_0 = r_0 + w ratio_1 + g V_1 with ratio_1 = log pi_b(a_1|z_1) -
    log pi(a_1|z_1), a_1 the action the rollout draws at z_1 (the one Q bootstraps with)."""
    wm = tiny_world_model()
    z = torch.randn(1, 6, 3)
    kwargs = dict(horizon=1, std=0.2, stddev_clip=0.3, gamma=0.9, lambda_=0.95, classifier_coef=0.1)
    torch.manual_seed(5)
    plain = actor_svg_loss(wm, z, **kwargs)
    torch.manual_seed(5)
    shifted = actor_svg_loss(wm, z, behaviour_weight=2.0, behaviour_index="t+1", **kwargs)
    torch.manual_seed(5)
    with torch.no_grad():
        a0 = draw(wm.pi(z), 0.2)
        mean, std = wm.next(z, a0)
        z1 = mean + std * torch.randn_like(mean)
        mean1 = wm.pi(z1)
        a1 = draw(mean1, 0.2)
        mb, sb = wm.behaviour_policy(z1)
    ratio = td.Normal(mb, sb).log_prob(a1).sum(-1) - td.Normal(mean1, 0.2).log_prob(a1).sum(-1)
    assert shifted.behaviour_kl.item() == pytest.approx(-ratio.mean().item(), abs=1e-5)
    assert (shifted.loss - plain.loss).item() == pytest.approx(-2.0 * ratio.mean().item(), abs=1e-4)
    torch.manual_seed(5)
    today = actor_svg_loss(wm, z, behaviour_weight=2.0, behaviour_index="t", **kwargs)
    assert today.behaviour_kl.item() != pytest.approx(shifted.behaviour_kl.item(), abs=1e-3)


def test_td3_q_objective_is_td3_bcs_normalised_q():
    q = torch.tensor([[1.0, -3.0]], requires_grad=True)  # (S=1, B=2): mean -1, mean|q| 2
    assert td3_q_objective(q, 0.0).item() == pytest.approx(-1.0)
    normalised = td3_q_objective(q, 2.5)
    assert normalised.item() == pytest.approx(2.5 * -1.0 / 2.0)
    normalised.sum().backward()  # mean|q| is a constant: d/dq = alpha / (B mean|q|)
    assert q.grad.flatten().tolist() == pytest.approx([2.5 / 4, 2.5 / 4])
    # the scale of the returns leaves it unchanged
    assert td3_q_objective(100 * q.detach(), 2.5).item() == pytest.approx(-1.25)


def test_bc_weight_relative_to_kl_is_the_bounds_one_to_one():
    assert bc_weight_in_loss(AgentConfig(bc_weight=1.0)) == 1.0
    relative = AgentConfig(bc_weight=1.0, bc_relative_to_kl=True, classifier_coef=0.1)
    assert bc_weight_in_loss(relative) == pytest.approx(0.1)  # = c, the KL estimate's weight
    likelihood = AgentConfig(bc_weight=2.0, bc_relative_to_kl=True, bc_term="likelihood")
    assert bc_weight_in_loss(likelihood) == pytest.approx(2.0)  # times kl_coef 1


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["agent.td3_alpha=2.5"], "td3_alpha applies to actor_loss=td3"),
        (["agent.bc_index=t+2"], "agent.bc_index must be one of t, t\\+1"),
        (["agent.actor_loss=td3", "agent.td3_alpha=-1"], "agent.td3_alpha must be >= 0"),
    ],
)
def test_bad_bound_options_are_refused(overrides: list[str], message: str):
    with pytest.raises(ConfigError, match=message):
        load_config("offline-locomotion", overrides)
