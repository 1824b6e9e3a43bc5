"""A penalty on the size of the policy's mean action along the imagined rollout
(``agent.action_penalty``; off in the paper): a smooth policy instead of a bang-bang one."""

from __future__ import annotations

import pytest
import torch

from alm_offline.config import AgentConfig
from alm_offline.core.agent import AlmAgent
from alm_offline.core.losses import actor_svg_loss

OBS, ACT = 5, 2


def small_agent(**overrides) -> AlmAgent:
    torch.manual_seed(0)
    cfg = AgentConfig(hidden_dim=16, model_hidden_dim=16, latent_dim=4, batch_size=8, **overrides)
    return AlmAgent(OBS, ACT, cfg)


def svg_loss(agent: AlmAgent, z: torch.Tensor, horizon: int, penalty: float) -> torch.Tensor:
    torch.manual_seed(7)  # both calls draw the same noise, so the same rollout
    return actor_svg_loss(
        agent.wm,
        z,
        horizon=horizon,
        std=0.3,
        stddev_clip=0.3,
        gamma=0.99,
        lambda_=0.95,
        classifier_coef=0.1,
        action_penalty=penalty,
    ).loss


def test_action_penalty_adds_its_weight_times_the_mean_squared_action() -> None:
    agent = small_agent()
    with torch.no_grad():
        agent.wm.actor.net[-1].bias.fill_(1.0)  # a policy pushed towards +1
    z = torch.randn(1, 32, 4)  # (S=1, B, Z)
    diff = svg_loss(agent, z, horizon=1, penalty=0.5) - svg_loss(agent, z, horizon=1, penalty=0.0)
    assert diff.shape == (1,)  # a loss per seed
    expected = 0.5 * agent.wm.pi(z)[0].pow(2).mean()
    assert diff[0].item() == pytest.approx(expected.item(), rel=1e-5)
    assert expected.item() > 0.1

    # along a K-step rollout it pulls every mean action towards 0: the actor's output bias,
    # positive here, gets a positive gradient (gradient descent lowers it)
    bias = agent.wm.actor.net[-1].bias
    penalised = svg_loss(agent, z, horizon=3, penalty=1.0) - svg_loss(agent, z, 3, penalty=0.0)
    (grad,) = torch.autograd.grad(penalised.sum(), [bias])  # S = 1: the sum is seed 0's
    assert grad.shape == (1, 1, ACT)
    assert torch.all(grad > 0)
